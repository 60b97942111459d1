import { createCollectingReporter } from '@pideploy/core';
import { describe, expect, it } from 'vitest';
import { createFleetStops } from './fleet-stops.js';

const hosts = ['pi1', 'pi2', 'pi3', 'pi4'].map((name) => ({ name }));

function recordingContext() {
  const reporter = createCollectingReporter();
  return { events: reporter.events, context: { reporter, signal: new AbortController().signal } };
}

describe('createFleetStops', () => {
  it('holds back every later host once a canary failed, and says so once', () => {
    const { events, context } = recordingContext();
    const stops = createFleetStops({ hosts, canary: 2 });
    expect(stops.canaryCount).toBe(2);
    expect(stops.holdBack('pi1', context)).toBeUndefined();
    expect(stops.holdBack('pi2', context)).toBeUndefined();
    stops.finished({ host: 'pi1', ok: true });
    stops.finished({ host: 'pi2', ok: false });
    stops.canariesDone();
    expect(stops.holdBack('pi3', context)).toMatchObject({ code: 'PIDEPLOY_HOST_NOT_STARTED', message: 'pi3 was not started: the canary pi2 failed' });
    expect(stops.holdBack('pi4', context)?.message).toBe('pi4 was not started: the canary pi2 failed');
    expect(events.filter((event) => event.type === 'log')).toEqual([{ type: 'log', level: 'warn', message: 'not starting more hosts: the canary pi2 failed' }]);
  });

  it('lets the others start when every canary succeeded', () => {
    const { context } = recordingContext();
    const stops = createFleetStops({ hosts, canary: 1 });
    stops.finished({ host: 'pi1', ok: true });
    stops.canariesDone();
    expect(stops.holdBack('pi2', context)).toBeUndefined();
    // A later failure is not a canary's: without maxFailures every host is still tried.
    stops.finished({ host: 'pi2', ok: false });
    expect(stops.holdBack('pi3', context)).toBeUndefined();
  });

  it('holds back the rest once maxFailures hosts failed', () => {
    const { context } = recordingContext();
    const stops = createFleetStops({ hosts, maxFailures: 2 });
    stops.finished({ host: 'pi1', ok: false });
    expect(stops.holdBack('pi2', context)).toBeUndefined();
    stops.finished({ host: 'pi2', ok: false });
    expect(stops.holdBack('pi3', context)?.message).toBe('pi3 was not started: 2 hosts failed (pi1, pi2), the most allowed (max failures 2)');
  });

  it('names at most five of the failed hosts', () => {
    const { context } = recordingContext();
    const many = Array.from({ length: 8 }, (_, index) => ({ name: `pi${index + 1}` }));
    const stops = createFleetStops({ hosts: many, maxFailures: 6 });
    for (const host of many.slice(0, 6)) stops.finished({ host: host.name, ok: false });
    expect(stops.holdBack('pi7', context)?.message).toBe('pi7 was not started: 6 hosts failed (pi1, pi2, pi3, pi4, pi5, …), the most allowed (max failures 6)');
  });

  it('refuses counts that are not whole numbers, and caps canaries at the hosts there are', () => {
    expect(() => createFleetStops({ hosts, maxFailures: 0 })).toThrow(expect.objectContaining({ code: 'PIDEPLOY_USAGE' }));
    expect(() => createFleetStops({ hosts, canary: 1.5 })).toThrow(/canary must be a whole number/u);
    expect(createFleetStops({ hosts, canary: 9 }).canaryCount).toBe(4);
    expect(createFleetStops({ hosts }).canaryCount).toBe(0);
  });
});

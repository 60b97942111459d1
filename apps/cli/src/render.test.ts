import { describe, expect, it } from 'vitest';
import { PideployError } from '@pideploy/core';
import { createBufferIo } from './io.js';
import { createRenderer, describeEvent, progressBar, shouldRenderLive } from './render.js';
import { beginPrompt } from './terminal.js';

describe('createRenderer', () => {
  it('writes NDJSON events, result and error on stdout with --json, nothing human on stdout', () => {
    const io = createBufferIo();
    const renderer = createRenderer(io, { json: true, verbose: false });
    renderer.emit({ type: 'lab-host-up', host: 'pi1', address: '10.250.1.2', reused: false });
    renderer.result({ ok: true }, 'human text');
    renderer.failure(new PideployError({ code: 'PIDEPLOY_USAGE', message: 'bad', hint: 'do x' }), false);
    const lines = io.out().trim().split('\n').map((line) => JSON.parse(line) as Record<string, unknown>);
    expect(lines).toEqual([
      { event: { type: 'lab-host-up', host: 'pi1', address: '10.250.1.2', reused: false } },
      { result: { ok: true } },
      { error: { code: 'PIDEPLOY_USAGE', message: 'bad', hint: 'do x', isRetryable: false } },
    ]);
  });

  it('redraws one progress line in place on a TTY and clears it before log lines', () => {
    const io = createBufferIo();
    const renderer = createRenderer(io, { json: false, verbose: false, live: true });
    renderer.emit({ type: 'copy-progress', host: 'pi1', bytesSent: 512, bytesTotal: 1024, bytesPerSecond: 256 });
    renderer.emit({ type: 'log', level: 'info', message: 'hello', host: 'pi1' });
    renderer.emit({ type: 'copy-end', host: 'pi1', pathsSent: 2, bytesSent: 1024, durationMs: 4000 });
    const err = io.err();
    expect(err.startsWith('[pi1] copying  [██████████░░░░░░░░░░] 512 B/1.0 KiB 256 B/s ETA 2.0 s')).toBe(true);
    expect(err).toContain('\r\u001b[K[pi1] hello\n[pi1] copying');
    expect(err.endsWith('\r\u001b[K[pi1] copied 2 path(s), 1.0 KiB in 4.0 s\n')).toBe(true);
  });

  it('holds everything back while a password prompt is on screen, then writes it in order without redrawing the old progress line', () => {
    const io = createBufferIo();
    const renderer = createRenderer(io, { json: false, verbose: false, live: true });
    renderer.emit({ type: 'build-progress', built: 1, total: 4 });
    const before = io.err();
    expect(before).toContain('1/4');
    const endPrompt = beginPrompt();
    expect(io.err()).toBe(`${before}\r\u001b[K`); // the progress line goes before the question
    renderer.emit({ type: 'log', level: 'info', message: 'built while asking', host: 'pi1' });
    renderer.emit({ type: 'build-progress', built: 2, total: 4 });
    expect(io.err()).toBe(`${before}\r\u001b[K`);
    endPrompt();
    const after = io.err().slice(before.length + 4);
    expect(after.startsWith('[pi1] built while asking\n')).toBe(true);
    expect(after).toContain('2/4');
    expect(after).not.toContain('1/4');
    // Without a progress line on screen, a prompt erases nothing.
    const quiet = createBufferIo();
    const quietRenderer = createRenderer(quiet, { json: false, verbose: false, live: true });
    quietRenderer.emit({ type: 'log', level: 'info', message: 'just a line', host: 'pi1' });
    beginPrompt()();
    expect(quiet.err()).toBe('[pi1] just a line\n');
  });

  it('keeps progress out of append-only logs unless --verbose, then one line per 10 %', () => {
    const quiet = createBufferIo();
    const quietRenderer = createRenderer(quiet, { json: false, verbose: false, live: false });
    for (let built = 0; built <= 100; built += 1) quietRenderer.emit({ type: 'build-progress', built, total: 100 });
    expect(quiet.err()).toBe('');
    const verbose = createBufferIo();
    const verboseRenderer = createRenderer(verbose, { json: false, verbose: true, live: false });
    for (let built = 0; built <= 100; built += 1) verboseRenderer.emit({ type: 'build-progress', built, total: 100 });
    expect(verbose.err().trim().split('\n')).toHaveLength(11);
  });

  it('draws live only on a TTY outside CI', () => {
    const tty = (env: NodeJS.ProcessEnv) => ({ ...createBufferIo({ env }), stderr: { write: () => true, isTTY: true } });
    expect(shouldRenderLive(tty({}))).toBe(true);
    expect(shouldRenderLive(tty({ CI: 'true' }))).toBe(false);
    expect(shouldRenderLive(tty({ TERM: 'dumb' }))).toBe(false);
    expect(shouldRenderLive(createBufferIo())).toBe(false);
    expect(progressBar(0.5, 4)).toBe('[██░░]');
    expect(progressBar(Number.NaN, 2)).toBe('[░░]');
  });

  it('describes a binary cache push in one line', () => {
    const line = describeEvent({ type: 'cache-push', cache: '/var/cache/fleet', pathsPushed: 3, pathsPresent: 28, narBytesPushed: 2048, fileBytesPushed: 1024, durationMs: 1500 }, false);
    expect(line).toBe('pushed 3 path(s) to the binary cache /var/cache/fleet (2.0 KiB NAR, 1.0 KiB compressed), 28 already there, in 1.5 s');
  });
});

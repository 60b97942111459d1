import { PideployError } from '@pideploy/core';
import { describe, expect, it } from 'vitest';
import { nixOptionArguments, parseMaxJobs, parseNixSetting } from './nix-options.js';

function usageError(work: () => unknown): PideployError {
  try {
    work();
  } catch (error) {
    if (PideployError.isInstance(error)) return error;
    throw error;
  }
  throw new Error('expected a PideployError');
}

describe('nixOptionArguments', () => {
  it('gives nothing for no options', () => {
    expect(nixOptionArguments(undefined)).toEqual({ evaluation: [], build: [] });
    expect(nixOptionArguments({})).toEqual({ evaluation: [], build: [] });
  });

  it('passes the trace and the settings to the evaluation, everything but -L to the build', () => {
    const args = nixOptionArguments({
      showTrace: true,
      keepGoing: true,
      maxJobs: 3,
      cores: 0,
      printBuildLogs: true,
      settings: { sandbox: 'relaxed', 'max-silent-time': '3600' },
    });
    expect(args.evaluation).toEqual(['--show-trace', '--option', 'max-silent-time', '3600', '--option', 'sandbox', 'relaxed']);
    expect(args.build).toEqual(['--show-trace', '--keep-going', '--max-jobs', '3', '--cores', '0', '--option', 'max-silent-time', '3600', '--option', 'sandbox', 'relaxed']);
  });

  it('orders settings by name, so equal options give equal arguments', () => {
    expect(nixOptionArguments({ settings: { b: '1', a: '2' } })).toEqual(nixOptionArguments({ settings: { a: '2', b: '1' } }));
    expect(nixOptionArguments({ maxJobs: 'auto' }).build).toEqual(['--max-jobs', 'auto']);
  });

  it('refuses what Nix could misread as another flag, and numbers below 0', () => {
    expect(usageError(() => nixOptionArguments({ settings: { '--impure': 'true' } })).message).toBe('"--impure" is not a Nix setting name');
    expect(usageError(() => nixOptionArguments({ settings: { sandbox: 'true\n--impure' } })).code).toBe('PIDEPLOY_USAGE');
    expect(usageError(() => nixOptionArguments({ cores: -1 })).message).toContain('--cores takes a whole number');
    expect(usageError(() => nixOptionArguments({ maxJobs: 1.5 })).message).toContain('--max-jobs takes a whole number');
  });
});

describe('parseNixSetting and parseMaxJobs', () => {
  it('splits at the first =, keeping = in the value', () => {
    expect(parseNixSetting('extra-substituters=http://cache/?priority=10')).toEqual({ name: 'extra-substituters', value: 'http://cache/?priority=10' });
    expect(parseNixSetting('sandbox=')).toEqual({ name: 'sandbox', value: '' });
  });

  it('says what to type for a setting without a value', () => {
    const error = usageError(() => parseNixSetting('sandbox'));
    expect(error.message).toBe('--option takes NAME=VALUE, not "sandbox"');
    expect(error.hint).toContain('--option sandbox=true');
    expect(usageError(() => parseNixSetting('Sandbox=true')).hint).toContain('lower case');
  });

  it('takes a number or auto for --max-jobs', () => {
    expect(parseMaxJobs('4')).toBe(4);
    expect(parseMaxJobs('0')).toBe(0);
    expect(parseMaxJobs('auto')).toBe('auto');
    expect(usageError(() => parseMaxJobs('four')).message).toBe('--max-jobs takes a whole number or auto, not "four"');
  });
});

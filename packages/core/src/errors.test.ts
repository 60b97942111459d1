import { describe, expect, it } from 'vitest';
import { PideployError, tailLines, toPideployError } from './errors.js';

describe('PideployError', () => {
  it('keeps code, hint, retryability and the command failure', () => {
    const error = new PideployError({
      code: 'PIDEPLOY_COMMAND_FAILED',
      message: 'nix-build failed',
      hint: 'see the log above',
      isRetryable: true,
      commandFailure: { command: ['nix-build', 'x.nix'], exitCode: 1, stderrTail: 'error: boom' },
    });
    expect(error.code).toBe('PIDEPLOY_COMMAND_FAILED');
    expect(error.hint).toBe('see the log above');
    expect(error.isRetryable).toBe(true);
    expect(JSON.parse(JSON.stringify(error))).toEqual({
      code: 'PIDEPLOY_COMMAND_FAILED',
      message: 'nix-build failed',
      hint: 'see the log above',
      isRetryable: true,
      commandFailure: { command: ['nix-build', 'x.nix'], exitCode: 1, stderrTail: 'error: boom' },
    });
  });

  it('is recognised across copies by isInstance, and nothing else is', () => {
    const error = new PideployError({ code: 'PIDEPLOY_USAGE', message: 'bad' });
    expect(PideployError.isInstance(error)).toBe(true);
    expect(PideployError.isInstance(new Error('bad'))).toBe(false);
    expect(PideployError.isInstance({ code: 'PIDEPLOY_USAGE' })).toBe(false);
    expect(PideployError.isInstance(null)).toBe(false);
  });

  it('wraps unknown errors as internal ones and passes PideployErrors through', () => {
    const known = new PideployError({ code: 'PIDEPLOY_USAGE', message: 'bad' });
    expect(toPideployError(known)).toBe(known);
    const wrapped = toPideployError(new TypeError('x is undefined'));
    expect(wrapped.code).toBe('PIDEPLOY_INTERNAL');
    expect(wrapped.message).toContain('x is undefined');
    expect(wrapped.cause).toBeInstanceOf(TypeError);
  });

  it('keeps only the tail of long stderr', () => {
    const text = Array.from({ length: 40 }, (_, index) => `line ${index}`).join('\n') + '\n\n';
    const tail = tailLines(text, 3);
    expect(tail).toBe('line 37\nline 38\nline 39');
  });
});

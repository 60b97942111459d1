import { describe, expect, it } from 'vitest';
import { classifyServeFailure, serveCommand, type ServeFailure } from './remote-serve.js';

describe('serveCommand', () => {
  it('runs nix-store --serve --write directly, through sudo -n, or through sudo -S with the password on stdin only', () => {
    expect(serveCommand()).toEqual({ argv: ['nix-store', '--serve', '--write'], stdinPrefix: Buffer.alloc(0) });
    expect(serveCommand({ access: { mode: 'sudo' } }).argv).toEqual(['sudo', '-n', '--', 'nix-store', '--serve', '--write']);
    const withPassword = serveCommand({ access: { mode: 'sudo', password: 's3cret pw' }, remoteStore: '/tmp/s' });
    expect(withPassword.argv).toEqual(['sudo', '-k', '-S', '-p', '', '--', 'nix-store', '--serve', '--write', '--store', '/tmp/s']);
    expect(withPassword.argv.join(' ')).not.toContain('s3cret');
    expect(withPassword.stdinPrefix.toString()).toBe('s3cret pw\n');
    expect(() => serveCommand({ access: { mode: 'sudo', password: 'a\nb' } })).toThrow(expect.objectContaining({ code: 'PIDEPLOY_USAGE' }));
  });
});

describe('classifyServeFailure (stderr as Nix 2.8 and sudo print it)', () => {
  const base: ServeFailure = { host: 'pi1', phase: 'send', stderr: '', exitCode: 1, access: { mode: 'direct' }, path: '/nix/store/x-a', pathsCopied: 3, pathsToSend: 10 };
  const cases: [string, Partial<ServeFailure>, string, RegExp][] = [
    ['wrong password', { phase: 'connect', stderr: 'Sorry, try again.\nsudo: no password was provided\nsudo: 1 incorrect password attempt' }, 'PIDEPLOY_SUDO_PASSWORD_WRONG', /nothing was copied/u],
    ['NOPASSWD missing', { phase: 'connect', stderr: 'sudo: a password is required' }, 'PIDEPLOY_SUDO_PASSWORD_REQUIRED', /needs a password/u],
    ['untrusted user', { stderr: "error: cannot add path '/nix/store/x-a' because it lacks a valid signature" }, 'PIDEPLOY_COPY_UNTRUSTED_USER', /not a trusted Nix user.*3 of 10/u],
    ['store full', { stderr: "error: writing to file: No space left on device" }, 'PIDEPLOY_TARGET_STORE_FULL', /ran out of space while receiving \/nix\/store\/x-a/u],
    ['no nix', { phase: 'connect', exitCode: 127, stderr: 'bash: line 1: nix-store: command not found' }, 'PIDEPLOY_REMOTE_NIX_MISSING', /not on the PATH/u],
    ['hash mismatch', { stderr: "error: hash mismatch importing path '/nix/store/x-a';\n  specified: sha256:00\n  got: sha256:11" }, 'PIDEPLOY_COPY_HASH_MISMATCH', /do not match/u],
    ['connection cut', { exitCode: null }, 'PIDEPLOY_COPY_CONNECTION_LOST', /was cut while sending \/nix\/store\/x-a \(3 of 10 paths copied\)/u],
    ['other', { stderr: 'error: something else\n' }, 'PIDEPLOY_COPY_FAILED', /exit 1.*: error: something else$/u],
  ];
  it.each(cases)('%s', (_name, failure, code, message) => {
    const error = classifyServeFailure({ ...base, ...failure });
    expect(error.code).toBe(code);
    expect(error.message).toMatch(message);
    expect(error.message).not.toContain('\n');
    expect(error.hint).toBeTruthy();
  });
});

import { describe, expect, it } from 'vitest';
import { classifyServeFailure, serveCommand, storeSpawner, type RemoteSpawner, type ServeFailure } from './remote-serve.js';

describe('serveCommand and storeSpawner', () => {
  it('runs nix-store --serve --write on the session, or on the sudo runner for sudo access', () => {
    expect(serveCommand()).toEqual(['nix-store', '--serve', '--write']);
    expect(serveCommand({ remoteStore: '/tmp/s' })).toEqual(['nix-store', '--serve', '--write', '--store', '/tmp/s']);
    const session: RemoteSpawner = { spawn: () => Promise.reject(new Error('session')) };
    const runner: RemoteSpawner = { spawn: () => Promise.reject(new Error('runner')) };
    expect(storeSpawner(session, { mode: 'direct' })).toBe(session);
    expect(storeSpawner(session, { mode: 'sudo', runner })).toBe(runner);
  });
});

describe('classifyServeFailure (stderr as Nix 2.8 and sudo print it)', () => {
  const base: ServeFailure = { host: 'pi1', phase: 'send', stderr: '', exitCode: 1, path: '/nix/store/x-a', pathsCopied: 3, pathsToSend: 10 };
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

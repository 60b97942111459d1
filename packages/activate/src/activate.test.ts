import { execFile, execFileSync } from 'node:child_process';
import { closeSync, constants, openSync, readFileSync, readdirSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { createBaseContext } from '@pideploy/core';
import type { SshSession } from '@pideploy/ssh';
import { activationFailureHint, activationIsDone, busyErrorOf, checkHealthCheckUse, healthCheckUrlFor, healthChecksGate, hostBusyError, readHostSystems, rollbackArguments, speaksActivationProtocol, stateFromDecisionOutput, stateWaitCommand, stateWaitRound, systemStatus } from './activate.js';
import { ACTIVATION_STATE_DIR, parseActivationState, renderActivationScript } from './activation-script.js';
import { temporaryDirectory } from './test-support/temporary-directory.js';

describe('checkHealthCheckUse', () => {
  const url = 'http://127.0.0.1:8080/health';
  const refusal = (input: Parameters<typeof checkHealthCheckUse>[0]): string => {
    try {
      checkHealthCheckUse(input);
    } catch (error) {
      return `${(error as { code: string }).code}: ${(error as Error).message}`;
    }
    return 'accepted';
  };

  it('accepts checks that gate a confirmation, and no checks at all', () => {
    expect(refusal({ host: 'pi1', action: 'switch', healthChecks: { url, command: ['true'] } })).toBe('accepted');
    // Timeouts longer than the confirmation's are fine: a check gets at most the time left when it runs.
    expect(refusal({ host: 'pi1', action: 'test', rollback: { confirmTimeoutSeconds: 5 }, healthChecks: { url, timeoutMs: 60_000 } })).toBe('accepted');
    expect(refusal({ host: 'pi1', action: 'boot', rollback: { enabled: false } })).toBe('accepted');
    expect(refusal({ host: 'pi1', action: 'boot', healthChecks: {} })).toBe('accepted');
  });

  it('refuses a URL with an unknown placeholder before the host is touched', () => {
    expect(refusal({ host: 'pi1', action: 'switch', healthChecks: { url: 'http://{ip}/' } })).toBe('PIDEPLOY_USAGE: the health check URL http://{ip}/ has an unknown placeholder {ip}');
  });

  it('refuses checks nothing would roll back after: no rollback, boot, dry-activate', () => {
    expect(refusal({ host: 'pi1', action: 'switch', rollback: { enabled: false }, healthChecks: { url } })).toBe(
      'PIDEPLOY_USAGE: pi1 has a health check, but the magic rollback is off: the check runs before the confirmation (or after a reboot), and nothing would roll back a failed one',
    );
    expect(refusal({ host: 'pi2', action: 'boot', healthChecks: { command: ['true'] } })).toMatch(/^PIDEPLOY_USAGE: pi2 has a health check, but --action boot has no confirmation/u);
    expect(refusal({ host: 'pi2', action: 'dry-activate', healthChecks: { url } })).toMatch(/--action dry-activate has no confirmation/u);
    // A reboot gates the checks only with the rollback on, and only after switch or boot.
    expect(refusal({ host: 'pi2', action: 'boot', reboot: true, rollback: { enabled: false }, healthChecks: { url } })).toMatch(/^PIDEPLOY_USAGE: pi2 has a health check, but the magic rollback is off/u);
    expect(refusal({ host: 'pi2', action: 'test', reboot: true, rollback: { enabled: false }, healthChecks: { url } })).toMatch(/the magic rollback is off/u);
  });

  it('accepts checks for a boot (or switch) followed by a reboot: they gate the host\'s return', () => {
    expect(refusal({ host: 'pi1', action: 'boot', reboot: true, healthChecks: { command: ['true'] } })).toBe('accepted');
    expect(refusal({ host: 'pi1', action: 'switch', reboot: true, healthChecks: { url } })).toBe('accepted');
    expect([healthChecksGate('boot', undefined, true), healthChecksGate('boot', undefined, false), healthChecksGate('test', { enabled: false }, true), healthChecksGate('switch', { enabled: false }, true)]).toEqual([true, false, false, false]);
  });
});

describe('healthCheckUrlFor', () => {
  it('fills in {host} and {hostname}, an IPv6 address in brackets', () => {
    expect(healthCheckUrlFor('http://{hostname}:8080/health?from={host}', { host: 'pi1', hostname: '10.0.0.7' })).toBe('http://10.0.0.7:8080/health?from=pi1');
    expect(healthCheckUrlFor('https://{hostname}/', { host: 'pi1', hostname: 'fd00::7' })).toBe('https://[fd00::7]/');
  });

  it('refuses an unknown placeholder, naming it and the known ones', () => {
    expect(() => healthCheckUrlFor('http://{address}/', { host: 'pi1', hostname: 'pi1.local' })).toThrow(
      expect.objectContaining({
        code: 'PIDEPLOY_USAGE',
        message: 'the health check URL http://{address}/ has an unknown placeholder {address}',
        hint: "use {host} (the host's name) or {hostname} (the address its SSH connection goes to)",
      }),
    );
  });

  it('refuses what is not an http(s) URL once filled in', () => {
    expect(() => healthCheckUrlFor('http://pi 1/', { host: 'pi1', hostname: 'x' })).toThrow(/^the health check URL for pi1 is not a valid http\(s\) URL: http:\/\/pi 1\/$/u);
  });
});

describe('activationIsDone', () => {
  const next = '/nix/store/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-nixos-system-pi-next';
  const old = '/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-nixos-system-pi-old';
  const bundle = '/nix/store/cccccccccccccccccccccccccccccccc-pideploy-bundle-pi1';
  const otherBundle = '/nix/store/dddddddddddddddddddddddddddddddd-pideploy-bundle-pi1';
  const runsNext = { running: next, profile: next, currentConfiguration: bundle };

  it('is done when the host runs and boots the system and its GC root is the bundle', () => {
    expect(activationIsDone(runsNext, { action: 'switch', toplevel: next, bundle })).toBe(true);
    expect(activationIsDone(runsNext, { action: 'switch', toplevel: old, bundle })).toBe(false);
  });

  it('is not done for a new bundle of the same system: activating it moves the GC root', () => {
    expect(activationIsDone(runsNext, { action: 'switch', toplevel: next, bundle: otherBundle })).toBe(false);
    expect(activationIsDone({ running: next, profile: next }, { action: 'switch', toplevel: next, bundle })).toBe(false);
    // Without a bundle, the GC root is not asked about.
    expect(activationIsDone(runsNext, { action: 'switch', toplevel: next })).toBe(true);
  });

  it('asks only what the action changes: boot the profile, test the running system', () => {
    const bootsNext = { running: old, profile: next, currentConfiguration: bundle };
    expect(activationIsDone(bootsNext, { action: 'boot', toplevel: next, bundle })).toBe(true);
    expect(activationIsDone(bootsNext, { action: 'switch', toplevel: next, bundle })).toBe(false);
    expect(activationIsDone(bootsNext, { action: 'test', toplevel: next, bundle })).toBe(false);
    const runsOnlyNext = { running: next, profile: old, currentConfiguration: bundle };
    expect(activationIsDone(runsOnlyNext, { action: 'test', toplevel: next, bundle })).toBe(true);
    expect(activationIsDone(runsOnlyNext, { action: 'boot', toplevel: next, bundle })).toBe(false);
  });

  it('with a specialisation: done when the host boots the system and runs that specialisation of it', () => {
    const runsKiosk = { running: old, profile: next, runningSpecialisation: 'kiosk', currentConfiguration: bundle };
    expect(activationIsDone(runsKiosk, { action: 'switch', toplevel: next, specialisation: 'kiosk', bundle })).toBe(true);
    expect(activationIsDone(runsKiosk, { action: 'test', toplevel: next, specialisation: 'kiosk', bundle })).toBe(true);
    expect(activationIsDone(runsKiosk, { action: 'switch', toplevel: next, specialisation: 'maintenance', bundle })).toBe(false);
    // The system itself is not its specialisation, nor the other way round.
    expect(activationIsDone(runsKiosk, { action: 'switch', toplevel: next, bundle })).toBe(false);
    expect(activationIsDone(runsNext, { action: 'switch', toplevel: next, specialisation: 'kiosk', bundle })).toBe(false);
    // A specialisation of another system than the boot default is not known to run.
    expect(activationIsDone({ ...runsKiosk, profile: old }, { action: 'test', toplevel: next, specialisation: 'kiosk', bundle })).toBe(false);
  });

  it('is never done while another deployment has the host, nor for dry-activate', () => {
    expect(activationIsDone({ ...runsNext, busyWith: { id: '20261207T033802Z-a4e039', state: 'awaiting-confirmation' } }, { action: 'switch', toplevel: next, bundle })).toBe(false);
    expect(activationIsDone(runsNext, { action: 'dry-activate', toplevel: next, bundle })).toBe(false);
  });
});

describe('busyErrorOf', () => {
  // (The script's own refusals are read in activation-script.test.ts; these are the lines it never prints.)
  it('reads the line of a script older than the log= field: the log is where the script keeps them', () => {
    const older = { exitCode: 3, stderr: '@@pideploy-busy id=20250101T120000Z-3f9a1c state=activating deadline= bundle= lock=/run/pideploy/active.4\n' };
    expect(busyErrorOf('pi1', older, [])?.hint).toBe('wait until it ends (its log: /run/pideploy/20250101T120000Z-3f9a1c.log on the host); if nothing runs it any more, remove /run/pideploy/active.4 on the host');
  });

  it('is undefined for any other result', () => {
    expect(busyErrorOf('pi1', { exitCode: 1, stderr: '@@pideploy-busy id= state=starting deadline= bundle= log= lock=/x\n' }, [])).toBeUndefined();
    expect(busyErrorOf('pi1', { exitCode: 3, stderr: 'something else\n' }, [])).toBeUndefined();
  });
});

describe('stateWaitRound', () => {
  it('looks every 0.1 s until the 3 s mark, then every 0.5 s in rounds of 10 s', () => {
    const lasts = (round: { everySeconds: string; looks: number }) => Number(round.everySeconds) * round.looks * 1000;
    for (const elapsed of [0, 1234, 2950]) {
      expect(stateWaitRound(elapsed).everySeconds).toBe('0.1');
      expect(elapsed + lasts(stateWaitRound(elapsed))).toBeGreaterThanOrEqual(3000);
      expect(elapsed + lasts(stateWaitRound(elapsed))).toBeLessThan(3100);
    }
    expect(stateWaitRound(3000)).toEqual({ everySeconds: '0.5', looks: 20 });
    expect(lasts(stateWaitRound(60_000))).toBe(10_000);
  });

  it('stateWaitRound plans a 60 s activation in 7 rounds (the deployer sends one SSH command per round), not the 200 polls of a 300 ms poll', () => {
    let elapsed = 0;
    let commands = 0;
    while (elapsed < 60_000) {
      const round = stateWaitRound(elapsed);
      elapsed += Number(round.everySeconds) * round.looks * 1000;
      commands += 1;
    }
    expect(commands).toBe(7);
  });
});

describe('the wait for an activation\'s state, run by a real sh', () => {
  const stateFile = () => path.join(temporaryDirectory(path.join(os.tmpdir(), 'pideploy-wait-')), 'd1.state');
  const stateText = (state: string) => `id=d1\nstate=${state}\naction=switch\n`;
  const run = (argv: readonly string[], env?: NodeJS.ProcessEnv) =>
    new Promise<{ code: number | null; stdout: string; ms: number }>((resolve) => {
      const started = Date.now();
      execFile(argv[0] as string, argv.slice(1), env === undefined ? {} : { env }, (error, stdout) => resolve({ code: error === null ? 0 : (error.code as number), stdout, ms: Date.now() - started }));
    });
  /** Processes whose environment holds `tag` (what a waiter run with it left behind, its timer's sleep included). */
  const processesTagged = (tag: string) =>
    readdirSync('/proc')
      .filter((entry) => /^\d+$/u.test(entry))
      .filter((pid) => {
        try {
          return readFileSync(`/proc/${pid}/environ`, 'latin1').includes(tag);
        } catch {
          return false;
        }
      });

  it('returns within a look of the state becoming final, and prints the state file', async () => {
    const file = stateFile();
    writeFileSync(file, stateText('activating'));
    setTimeout(() => writeFileSync(file, stateText('awaiting-confirmation')), 500);
    const result = await run(stateWaitCommand(file, { everySeconds: '0.1', looks: 100 }));
    expect(result.code).toBe(0);
    expect(result.stdout).toBe(stateText('awaiting-confirmation'));
    expect(result.ms).toBeGreaterThanOrEqual(450);
    expect(result.ms).toBeLessThan(1500);
  });

  /** A state file with the deployment's wake FIFO beside it, as the activation script makes them. */
  const stateFileWithFifo = () => {
    const file = stateFile();
    execFileSync('mkfifo', ['-m', '600', file.replace(/\.state$/u, '.wake')]);
    return file;
  };
  /** What the script's save_state does after each state change: one line into the FIFO, opened read-write (never blocks). */
  const wake = (file: string, line = '\n') => {
    const fd = openSync(file.replace(/\.state$/u, '.wake'), constants.O_RDWR | constants.O_NONBLOCK);
    writeSync(fd, line);
    closeSync(fd);
  };
  const inShell = (shell: string, argv: readonly string[]) => [shell, ...argv.slice(1)];

  for (const shell of ['dash', 'bash']) {
    it(`${shell}: is woken through the deployment's FIFO as the state changes, not at its next look`, async () => {
      const file = stateFileWithFifo();
      writeFileSync(file, stateText('activating'));
      setTimeout(() => {
        writeFileSync(file, stateText('awaiting-confirmation'));
        wake(file);
      }, 300);
      // Looking every 5 s, it would see the change after 5 s.
      const tag = `PIDEPLOY_WAIT_TEST=${path.basename(path.dirname(file))}`;
      const result = await run(inShell(shell, stateWaitCommand(file, { everySeconds: '5', looks: 2 })), { ...process.env, PIDEPLOY_WAIT_TEST: path.basename(path.dirname(file)) });
      expect(result).toMatchObject({ code: 0, stdout: stateText('awaiting-confirmation') });
      expect(result.ms).toBeGreaterThanOrEqual(250);
      expect(result.ms).toBeLessThan(1000);
      // Its timer was still sleeping towards the 10 s deadline: nothing of it is left (an orphaned
      // sleep would hold the waiter's environment, and with it store paths, until then). A loaded
      // machine gets 3 s to end the timer and its sleep.
      const goneBy = Date.now() + 3000;
      while (processesTagged(tag).length > 0 && Date.now() < goneBy) await new Promise((resolve) => setTimeout(resolve, 100));
      expect(processesTagged(tag)).toEqual([]);
    });

    it(`${shell}: a wake that changes nothing keeps it waiting; the round ends at its deadline, and no timer outlives it`, async () => {
      const file = stateFileWithFifo();
      writeFileSync(file, stateText('activating'));
      setTimeout(() => wake(file), 200);
      const round = await run(inShell(shell, stateWaitCommand(file, { everySeconds: '0.5', looks: 2 })));
      expect(round).toMatchObject({ code: 0, stdout: stateText('activating') });
      expect(round.ms).toBeGreaterThanOrEqual(900);
      expect(round.ms).toBeLessThan(3000);
      // The timer (a subshell with the waiter's command line) is gone within its last second's sleep.
      await new Promise((resolve) => setTimeout(resolve, 1500));
      const left = await new Promise<string>((resolve) => execFile('pgrep', ['-f', file], (_error, stdout) => resolve(stdout)));
      expect(left).toBe('');
    });
  }

  it('two waiters on one FIFO (a reconnect): neither outlasts its own deadline by more than a second, even when the other took its timeout line (one may end early: the deployer asks again)', async () => {
    const file = stateFileWithFifo();
    writeFileSync(file, stateText('activating'));
    const rounds = await Promise.all([run(stateWaitCommand(file, { everySeconds: '0.5', looks: 2 })), run(stateWaitCommand(file, { everySeconds: '0.5', looks: 4 }))]);
    for (const round of rounds) expect(round).toMatchObject({ code: 0, stdout: stateText('activating') });
    // Deadlines 1 s and 2 s; a stolen timeout line is written again a second later.
    expect(rounds[0]!.ms).toBeLessThan(1000 + 1500);
    expect(rounds[1]!.ms).toBeLessThan(2000 + 1500);
  });

  it('ends the round after its looks while the activation still runs; fails when there is no state file', async () => {
    const file = stateFile();
    writeFileSync(file, stateText('activating'));
    const round = await run(stateWaitCommand(file, { everySeconds: '0.1', looks: 5 }));
    expect(round.code).toBe(0);
    expect(round.stdout).toBe(stateText('activating'));
    expect(round.ms).toBeLessThan(2000);
    expect((await run(stateWaitCommand(`${file}.missing`, { everySeconds: '0.1', looks: 5 }))).code).not.toBe(0);
  });
});

describe('readHostSystems: who has the host (its probe run by a real sh, here)', () => {
  const stateDir = temporaryDirectory(path.join(os.tmpdir(), 'pideploy-probe-'));
  // A stand-in session (unit test) that runs the probe on this machine, with its state directory here.
  const local = {
    display: 'local',
    host: { alias: 'local' },
    exec: async (argv: readonly string[]) => {
      const [file, ...args] = argv.map((word) => (word === ACTIVATION_STATE_DIR ? stateDir : word)) as [string, ...string[]];
      return await new Promise((resolve) => {
        execFile(file, args, { encoding: 'utf8' }, (error, stdout, stderr) => resolve({ exitCode: error === null ? 0 : (error.code as number), stdout, stderr, signal: null }));
      });
    },
  } as unknown as SshSession;
  const now = Math.floor(Date.now() / 1000);
  const holding = (lines: string | undefined) => {
    for (const name of readdirSync(stateDir)) rmSync(path.join(stateDir, name));
    writeFileSync(path.join(stateDir, 'active.1'), 'd1\n');
    if (lines !== undefined) writeFileSync(path.join(stateDir, 'd1.state'), `id=d1\n${lines}\n`);
  };

  it('says a deployment awaiting its confirmation has the host, and that it was left behind a minute past its deadline', async () => {
    holding(`state=awaiting-confirmation\naction=switch\ntoplevel=/nix/store/a\nupdated=${now - 10}\ndeadline=${now + 100}`);
    expect((await readHostSystems(local)).busyWith).toEqual({ id: 'd1', state: 'awaiting-confirmation' });
    holding(`state=awaiting-confirmation\naction=switch\ntoplevel=/nix/store/a\nupdated=${now - 200}\ndeadline=${now - 61}`);
    expect((await readHostSystems(local)).busyWith).toEqual({ id: 'd1', state: 'awaiting-confirmation', leftBehind: true });
  });

  it('a start cut off over a minute ago was left behind; one a moment ago, or without its state yet, was not; a finished one has no host', async () => {
    holding(`state=starting\naction=switch\ntoplevel=/nix/store/a\nupdated=${now - 120}`);
    expect((await readHostSystems(local)).busyWith).toEqual({ id: 'd1', state: 'starting', leftBehind: true });
    holding(`state=starting\naction=switch\ntoplevel=/nix/store/a\nupdated=${now - 5}`);
    expect((await readHostSystems(local)).busyWith).toEqual({ id: 'd1', state: 'starting' });
    holding(undefined);
    expect((await readHostSystems(local)).busyWith).toEqual({ id: 'd1', state: 'starting' });
    holding(`state=activating\naction=switch\ntoplevel=/nix/store/a\nupdated=${now - 900}`);
    expect((await readHostSystems(local)).busyWith).toEqual({ id: 'd1', state: 'activating' });
    holding(`state=confirmed\naction=switch\ntoplevel=/nix/store/a\nupdated=${now - 900}`);
    expect((await readHostSystems(local)).busyWith).toBeUndefined();
  });

  it('hostBusyError says what was not done and what to run once it ended', () => {
    const error = hostBusyError('pi1', { id: 'd1', state: 'awaiting-confirmation' }, 'nothing was copied or changed', 'pideploy deploy pi1');
    expect([error.code, error.message, error.hint]).toEqual([
      'PIDEPLOY_ACTIVATION_BUSY',
      'pi1 is busy, nothing was copied or changed: deployment d1 is awaiting-confirmation there',
      'wait until it ends (pideploy status pi1 shows it), then pideploy deploy pi1',
    ]);
    expect(hostBusyError('pi1', { id: '', state: 'starting' }, 'nothing was collected', 'run pideploy gc again').message).toBe('pi1 is busy, nothing was collected: another deployment is starting there');
  });
});

describe('a host command that fails', () => {
  // A stand-in session (unit test): the status script's shell exits 1 with a message.
  const failing = (stderr: string) =>
    ({ display: 'deploy@pi1', host: { alias: 'pi1' }, exec: async () => ({ exitCode: 1, stdout: '', stderr, signal: null }) }) as unknown as SshSession;

  it('says what failed on which host with the output, and what to do', async () => {
    const error = await systemStatus({ target: 'pi1', session: failing('sh: 1: cannot open /run: Permission denied\n') }, createBaseContext()).catch((caught: unknown) => caught);
    expect(error).toMatchObject({
      code: 'PIDEPLOY_ACTIVATION_REMOTE_FAILED',
      message: 'reading the status on deploy@pi1 failed (exit 1): sh: 1: cannot open /run: Permission denied',
      hint: expect.stringContaining('--verbose'),
    });
    const silent = await systemStatus({ target: 'pi1', session: failing('') }, createBaseContext()).catch((caught: unknown) => caught);
    expect(silent).toMatchObject({ message: 'reading the status on deploy@pi1 failed (exit 1)' });
  });
});

describe('what the activation learns from its commands\' own output', () => {
  it('finds no printed state in an older script\'s output, and refuses text after the marker that is not a state file', () => {
    expect(stateFromDecisionOutput('activate: d1: confirmed\n')).toBeUndefined();
    expect(() => stateFromDecisionOutput('@@pideploy-state\nnot a state line\n')).toThrow(/cannot read the activation state/u);
  });

  it('recognises a script that speaks the protocol by its marker line', () => {
    expect(speaksActivationProtocol(renderActivationScript({ shebang: '#!/nix/store/x-bash/bin/sh' }))).toBe(true);
    expect(speaksActivationProtocol('#!/bin/sh\n# pideploy bundle activation (generated)\n')).toBe(false);
    // A bundle of protocol 1 knows no --wait-state: the current script is uploaded instead.
    expect(speaksActivationProtocol('#!/bin/sh\n# pideploy-activate-protocol: 1\n')).toBe(false);
  });
});

describe('activationFailureHint', () => {
  const failed = (action: string, exitCode: number) =>
    parseActivationState(`id=20261207T060000Z-abcdef\nstate=failed-rolled-back\naction=${action}\ntoplevel=/nix/store/x-system\nexit_code=${exitCode}\nmessage=switch-to-configuration ${action} exited ${exitCode}\n`);

  it('points to the log, and to a reboot when the new system cannot switch live (exit 100)', () => {
    const id = '20261207T060000Z-abcdef';
    expect(activationFailureHint(failed('switch', 2), id)).toBe(`the log is /run/pideploy/${id}.log on the host`);
    expect(activationFailureHint(failed('switch', 100), id)).toBe(
      `the new system's init cannot take over from the running one without a reboot: deploy it with --action boot --reboot; the log is /run/pideploy/${id}.log on the host`,
    );
    expect(activationFailureHint(failed('test', 100), id)).toContain('--action boot --reboot');
    // boot does not activate: its exit 100 is not about that.
    expect(activationFailureHint(failed('boot', 100), id)).toBe(`the log is /run/pideploy/${id}.log on the host`);
  });
});

describe('rollbackArguments', () => {
  it('passes only what differs from a plain rollback (switch to the previous generation)', () => {
    expect(rollbackArguments({})).toEqual(['rollback']);
    expect(rollbackArguments({ to: 4, action: 'switch' })).toEqual(['rollback', '--to', '4']);
    expect(rollbackArguments({ to: 4, action: 'boot', deleteGeneration: 5, gcRoot: '/nix/store/abc-pideploy-bundle-pi1' })).toEqual([
      'rollback', '--to', '4', '--action', 'boot', '--delete-generation', '5', '--gc-root', '/nix/store/abc-pideploy-bundle-pi1',
    ]);
  });
});

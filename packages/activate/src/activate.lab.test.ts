import { execFile } from 'node:child_process';
import { mkdtemp } from 'node:fs/promises';
import { readdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { createBaseContext, createCollectingReporter, PideployError, type DeployEvent } from '@pideploy/core';
import { LAB_SUDO_PASSWORD, labCutSshSessions, labDown, labExec, labUp, type LabStatus } from '@pideploy/lab';
import { buildLabSystem, describeLab } from '@pideploy/lab/testing';
import { connectSsh, type SshSession, type SudoPasswordRequest } from '@pideploy/ssh';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { activateSystem, diffSystem, HOST_SYSTEMS_TRUSTED_MS, readHostSystems, rollbackSystem, stateFromDecisionOutput, systemStatus, type ActivationTarget } from './activate.js';
import { activateArguments, activationStatePath, parseActivationState, renderActivationScript, uploadedScriptPath } from './activation-script.js';

const execFileAsync = promisify(execFile);
const instance = Number(process.env['PIDEPLOY_LAB_INSTANCE'] ?? '0');

async function run(argv: readonly string[], env: NodeJS.ProcessEnv, cwd?: string): Promise<string> {
  const [file, ...args] = argv as [string, ...string[]];
  const { stdout } = await execFileAsync(file, args, { env, cwd, maxBuffer: 64 << 20 });
  return stdout;
}

describeLab('activation on lab hosts: profile, switch-to-configuration, magic rollback, status', () => {
  let status: LabStatus;
  let env: NodeJS.ProcessEnv;
  let workDir: string;
  const systems: Record<string, string> = {};
  let bundle = '';
  let otherBundle = '';
  const drvsBefore: Record<string, number> = {};
  const prompts: SudoPasswordRequest[] = [];
  const sudo = {
    passwordProvider: async (request: SudoPasswordRequest) => {
      prompts.push(request);
      return LAB_SUDO_PASSWORD;
    },
  };

  const storeDir = (host: string) => status.hosts.find((entry) => entry.name === host)!.storeDir;
  const drvCount = (host: string) => readdirSync(storeDir(host)).filter((name) => name.endsWith('.drv')).length;
  const labTarget = (target: string): ActivationTarget => ({
    target,
    connect: { sshConfigFile: status.sshConfig, knownHostsFiles: [status.knownHosts], agent: false },
    sudo,
  });
  const onConsole = async (host: string, script: string) => (await labExec(host, ['sh', '-c', script], { instance })).stdout.trim();
  const running = (host: string) => onConsole(host, 'readlink /run/current-system || true');
  const profile = (host: string) => onConsole(host, 'readlink -f /nix/var/nix/profiles/system || true');
  const gcRoot = (host: string) => onConsole(host, 'readlink /etc/nixos/current-configuration || true');

  const build = (label: string, extraConfig: string) => buildLabSystem(status, { label, extraConfig, workDir });

  beforeAll(async () => {
    status = await labUp({
      instance,
      hosts: 4,
      hostSettings: { pi1: { trusted: false, sudo: 'password' }, pi2: { trusted: true, sudo: 'nopasswd' }, pi3: { trusted: false, sudo: 'password' }, pi4: { trusted: true, sudo: 'nopasswd' } },
    });
    env = { ...process.env, ...status.env };
    workDir = await mkdtemp(path.join(os.tmpdir(), 'pideploy-activate-lab-'));
    systems['base'] = await build('base', '');
    systems['next'] = await build('next', '');
    systems['boot'] = await build('boot-only', '');
    systems['test'] = await build('test-only', '');
    systems['fail'] = await build('fail', 'lab.failActivation = true;');
    systems['breakSsh'] = await build('break-ssh', 'lab.breakSsh = true;');
    systems['cut'] = await build('cut', '');
    systems['slow'] = await build('slow', 'lab.activationSeconds = 3;');
    systems['slower'] = await build('slower', 'lab.activationSeconds = 12;');
    // Two bundles of the same system, as a comment changed in configuration.nix makes them.
    const bundleOf = async (note: string) =>
      (
        await run(
          ['nix-build', '--no-out-link', '-E', `derivation { name = "pideploy-bundle"; system = "x86_64-linux"; builder = "/bin/sh"; PATH = "/usr/bin:/bin";
            args = [ "-c" "mkdir $out && ln -s ${systems['next']} $out/toplevel && echo '{\\"version\\":1,\\"host\\":\\"pi1\\"${note}}' > $out/manifest.json" ]; }`],
          env,
        )
      ).trim();
    bundle = await bundleOf('');
    otherBundle = await bundleOf(',\\"note\\":\\"a comment changed\\"');
    for (const host of ['pi1', 'pi2', 'pi3', 'pi4']) {
      await run(['nix-copy-closure', '--to', `root@${host}`, ...Object.values(systems), bundle, otherBundle], env);
      drvsBefore[host] = drvCount(host);
    }
  }, 600_000);

  afterAll(async () => {
    await labDown({ instance });
  }, 120_000);

  it('switch (untrusted user, sudo password): profile + running system, confirmed over a new login, GC root → bundle, ONE prompt', async () => {
    const reporter = createCollectingReporter();
    const context = createBaseContext({ reporter });
    const first = await activateSystem({ ...labTarget('deploy@pi1'), toplevel: systems['base']!, rollback: { enabled: false } }, context);
    expect(first.outcome).toBe('succeeded');
    expect(await running('pi1')).toBe(systems['base']);
    expect(await gcRoot('pi1')).toBe(systems['base']);

    const second = await activateSystem({ ...labTarget('deploy@pi1'), toplevel: systems['next']!, bundle, rollback: { confirmTimeoutSeconds: 20 } }, context);
    expect(second.outcome).toBe('confirmed');
    expect(second.state?.state).toBe('confirmed');
    expect(await running('pi1')).toBe(systems['next']);
    expect(await profile('pi1')).toBe(systems['next']);
    expect(await gcRoot('pi1')).toBe(bundle);
    expect(prompts).toHaveLength(1);
    const types = reporter.events.map((event: DeployEvent) => event.type);
    expect(types).toContain('activate-start');
    expect(types).toContain('activate-end');

    const again = await activateSystem({ ...labTarget('deploy@pi1'), toplevel: systems['next']!, bundle }, context);
    expect(again.outcome).toBe('skipped');
    expect(prompts).toHaveLength(1);

    // The same system in another bundle is activated again, which moves the GC root to that bundle;
    // then it is done. (Back to the first bundle for the tests below.)
    const rebundled = await activateSystem({ ...labTarget('deploy@pi1'), toplevel: systems['next']!, bundle: otherBundle, rollback: { enabled: false } }, context);
    expect(rebundled.outcome).toBe('succeeded');
    expect(await gcRoot('pi1')).toBe(otherBundle);
    expect(reporter.events).toContainEqual(expect.objectContaining({ type: 'log', message: expect.stringContaining(`its /etc/nixos/current-configuration is ${bundle}: activating again`) }));
    expect((await activateSystem({ ...labTarget('deploy@pi1'), toplevel: systems['next']!, bundle: otherBundle }, context)).outcome).toBe('skipped');
    expect((await activateSystem({ ...labTarget('deploy@pi1'), toplevel: systems['next']!, bundle, rollback: { enabled: false } }, context)).outcome).toBe('succeeded');
    expect(await gcRoot('pi1')).toBe(bundle);

    // The confirmation printed the final state (no `cat` after it): asked again by hand, it prints it once more.
    const byHand = await labExec('pi1', [uploadedScriptPath(second.deployId!), 'confirm', second.deployId!], { instance });
    expect(byHand.exitCode).toBe(0);
    expect(stateFromDecisionOutput(byHand.stdout)).toEqual(second.state);

    const session = await connectSsh('deploy@pi1', labTarget('deploy@pi1').connect!, context);
    try {
      const asked = Date.now();
      const read = await readHostSystems(session);
      expect(read).toEqual({ running: systems['next'], profile: systems['next'], currentConfiguration: bundle, readAtMs: expect.any(Number) });
      expect(Math.abs((read.readAtMs ?? 0) - asked)).toBeLessThan(1000);
      // A recent read is trusted as is: told (just now) that pi1 boots `base`, the boot of `base` is skipped without asking pi1.
      const trusted = await activateSystem({ ...labTarget('deploy@pi1'), toplevel: systems['base']!, action: 'boot', hostSystems: { ...read, profile: systems['base'] } }, context);
      expect(trusted.outcome).toBe('skipped');
      expect(await profile('pi1')).toBe(systems['next']);
    } finally {
      await session.close();
    }
    // An older read (made HOST_SYSTEMS_TRUSTED_MS or more ago, while a long build ran) is not trusted
    // for a skip: told that pi1 boots `base` already (it boots `next`), pi1 is read again and the boot
    // of `base` goes ahead.
    const staleRead = { running: systems['next'], profile: systems['base'], readAtMs: Date.now() - HOST_SYSTEMS_TRUSTED_MS - 1 };
    const told = await activateSystem({ ...labTarget('deploy@pi1'), toplevel: systems['base']!, action: 'boot', hostSystems: staleRead }, context);
    expect(told.outcome).toBe('succeeded');
    expect(await profile('pi1')).toBe(systems['base']);
    expect(await running('pi1')).toBe(systems['next']);
  }, 120_000);

  it('boot sets the profile only; test changes the running system only; dry-activate changes nothing', async () => {
    const context = createBaseContext();
    const boot = await activateSystem({ ...labTarget('deploy@pi1'), toplevel: systems['boot']!, action: 'boot' }, context);
    expect(boot.outcome).toBe('succeeded');
    expect(await profile('pi1')).toBe(systems['boot']);
    expect(await running('pi1')).toBe(systems['next']);
    expect(await onConsole('pi1', 'readlink /nix/var/nix/lab-boot/default')).toBe(systems['boot']);

    const test = await activateSystem({ ...labTarget('deploy@pi1'), toplevel: systems['test']!, action: 'test', rollback: { confirmTimeoutSeconds: 20 } }, context);
    expect(test.outcome).toBe('confirmed');
    expect(await running('pi1')).toBe(systems['test']);
    expect(await profile('pi1')).toBe(systems['boot']);

    const dry = await activateSystem({ ...labTarget('deploy@pi1'), toplevel: systems['next']!, action: 'dry-activate' }, context);
    expect(dry.outcome).toBe('succeeded');
    expect(await running('pi1')).toBe(systems['test']);
    expect(await profile('pi1')).toBe(systems['boot']);
    expect(await onConsole('pi1', 'tail -n 1 /etc/lab-activations.log')).toContain(`dry-activate ${systems['next']}`);

    // A failing switch now (running "test", boot default "boot") puts both back as they were.
    const failed = await activateSystem({ ...labTarget('deploy@pi1'), toplevel: systems['fail']! }, context).catch((caught: unknown) => caught);
    expect((failed as PideployError).code).toBe('PIDEPLOY_ACTIVATION_FAILED');
    expect((failed as PideployError).message).toMatch(new RegExp(`the host rolled back to generation \\d+, running ${systems['test']} again`, 'u'));
    expect(await running('pi1')).toBe(systems['test']);
    expect(await profile('pi1')).toBe(systems['boot']);
    expect(await onConsole('pi1', 'readlink /nix/var/nix/lab-boot/default')).toBe(systems['boot']);

    // back to a normal state for the next tests
    const back = await activateSystem({ ...labTarget('deploy@pi1'), toplevel: systems['next']!, bundle, rollback: { confirmTimeoutSeconds: 20 } }, context);
    expect(back.outcome).toBe('confirmed');
    expect(prompts).toHaveLength(1);
  }, 120_000);

  it('a failing activation rolls back at once; the GC root stays', async () => {
    const generationBefore = await onConsole('pi1', 'readlink /nix/var/nix/profiles/system');
    const error = await activateSystem({ ...labTarget('deploy@pi1'), toplevel: systems['fail']! }, createBaseContext()).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(PideployError);
    expect((error as PideployError).code).toBe('PIDEPLOY_ACTIVATION_FAILED');
    const number = /system-(\d+)-link/u.exec(generationBefore)?.[1];
    expect((error as PideployError).message).toContain(`the host rolled back to generation ${number}`);
    expect(await running('pi1')).toBe(systems['next']);
    expect(await profile('pi1')).toBe(systems['next']);
    expect(await gcRoot('pi1')).toBe(bundle);
  }, 120_000);

  it('a switch-to-configuration that outlives the activation timeout is stopped, and the host rolls back at once', async () => {
    const generationBefore = await onConsole('pi1', 'readlink /nix/var/nix/profiles/system');
    const started = performance.now();
    // "slower" takes 12 s to activate.
    const error = await activateSystem({ ...labTarget('deploy@pi1'), toplevel: systems['slower']!, bundle, activationTimeoutSeconds: 2 }, createBaseContext()).catch((caught: unknown) => caught);
    const seconds = (performance.now() - started) / 1000;
    expect(error).toBeInstanceOf(PideployError);
    expect((error as PideployError).code).toBe('PIDEPLOY_ACTIVATION_FAILED');
    expect((error as PideployError).message).toContain('switch-to-configuration switch did not finish within 2 s (--activation-timeout): stopped');
    expect((error as PideployError).message).toContain(`the host rolled back to generation ${/system-(\d+)-link/u.exec(generationBefore)?.[1]}`);
    expect(seconds).toBeLessThan(10);
    expect(await running('pi1')).toBe(systems['next']);
    expect(await profile('pi1')).toBe(systems['next']);
    expect(await gcRoot('pi1')).toBe(bundle);
    // Stopped with what it started (its process group), not left running beside the rollback.
    // ([/]: the pattern does not match grep's own command line.)
    expect(await onConsole('pi1', `ps -eo args | grep -c '[/]${systems['slower']!.slice(1)}/bin/switch-to-configuration' || true`)).toBe('0');
  }, 120_000);

  it('a configuration that breaks SSH: non-zero with a clear message, the host is back on the previous generation within timeout + 10 s', async () => {
    const timeout = 8;
    const started = Date.now();
    const error = await activateSystem(
      { ...labTarget('deploy@pi1'), toplevel: systems['breakSsh']!, rollback: { confirmTimeoutSeconds: timeout } },
      createBaseContext(),
    ).catch((caught: unknown) => caught);
    expect((error as PideployError).code).toBe('PIDEPLOY_ACTIVATION_UNCONFIRMED');
    expect((error as PideployError).message).toMatch(/could not confirm it: a new SSH login .* failed after activation.*rolled back to generation \d+/u);
    for (;;) {
      if ((await running('pi1')) === systems['next']) break;
      expect(Date.now() - started).toBeLessThan((timeout + 10) * 1000);
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
    expect(await profile('pi1')).toBe(systems['next']);
    expect(await gcRoot('pi1')).toBe(bundle);
    expect(prompts).toHaveLength(1);
  }, 120_000);

  it('the watchdog rolls back by itself when nobody confirms, and an SSH cut does not stop it', async () => {
    await using session = await connectSsh('root@pi1', labTarget('root@pi1').connect!, createBaseContext());
    const id = 'watchdog-test-1';
    const script = uploadedScriptPath(id);
    const upload = await session.exec(['sh', '-c', 'mkdir -p /run/pideploy && cat > "$1"', 'sh', script], { stdin: renderActivationScript() });
    expect(upload.exitCode).toBe(0);
    // The lab hosts have no systemd: the worker is detached with setsid (systemd-run is not exercised here).
    expect((await session.exec(['sh', script, 'launcher'])).stdout.trim()).toBe('setsid');
    const start = await session.exec(['sh', script, ...activateArguments({ action: 'switch', toplevel: systems['cut']!, deployId: id, rollback: true, confirmTimeoutSeconds: 4, noWait: true })]);
    expect(start.exitCode).toBe(0);
    const started = Date.now();
    expect(await labCutSshSessions('pi1', { instance })).toBeGreaterThan(0);
    for (;;) {
      const state = parseActivationState(await onConsole('pi1', `cat ${activationStatePath(id)}`));
      if (state.state === 'rolled-back-unconfirmed') break;
      expect(Date.now() - started).toBeLessThan(14_000);
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
    expect(await running('pi1')).toBe(systems['next']);
    expect(await profile('pi1')).toBe(systems['next']);
    const reported = await systemStatus(labTarget('deploy@pi1'), createBaseContext());
    expect(reported.lastDeployment?.id).toBe(id);
    expect(reported.lastDeployment?.state).toBe('rolled-back-unconfirmed');
  }, 120_000);

  it('one deployment at a time: a host awaiting the confirmation of another deployment does not "already run" it; a new activation is refused (busy), changes nothing, and goes ahead once that one is aborted', async () => {
    const context = createBaseContext();
    await using root = await connectSsh('root@pi1', labTarget('root@pi1').connect!, context);
    const id = 'pending-test-1';
    const script = uploadedScriptPath(id);
    // pi1 runs `next` (it does after the tests above; run alone, this test puts it there).
    if ((await running('pi1')) !== systems['next']) await activateSystem({ ...labTarget('deploy@pi1'), toplevel: systems['next']! }, context);
    const before = systems['next']!;
    expect((await root.exec(['sh', '-c', 'mkdir -p /run/pideploy && cat > "$1"', 'sh', script], { stdin: renderActivationScript() })).exitCode).toBe(0);
    // An interrupted deployment: activated, nobody confirms it (it would roll back in 5 minutes).
    // Whatever fails from here on, the pending deployment must not outlive this test (the next ones use pi1).
    await using _pending = { [Symbol.asyncDispose]: async () => void (await root.exec(['sh', script, 'abort', id]).catch(() => undefined)) };
    const start = await root.exec(['sh', script, ...activateArguments({ action: 'switch', toplevel: systems['cut']!, deployId: id, rollback: true, confirmTimeoutSeconds: 300, noWait: true })]);
    expect(start.exitCode).toBe(0);
    const stateOf = async () => parseActivationState(await onConsole('pi1', `cat ${activationStatePath(id)}`)).state;
    const waitingSince = Date.now();
    while ((await stateOf()) !== 'awaiting-confirmation') {
      expect(Date.now() - waitingSince).toBeLessThan(20_000);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    expect(await running('pi1')).toBe(systems['cut']);
    {
      await using deploy = await connectSsh('deploy@pi1', labTarget('deploy@pi1').connect!, context);
      const deployed = (await onConsole('pi1', 'readlink -e /etc/nixos/current-configuration || true')) || undefined;
      expect(await readHostSystems(deploy)).toEqual({ running: systems['cut'], profile: systems['cut'], currentConfiguration: deployed, readAtMs: expect.any(Number), busyWith: { id, state: 'awaiting-confirmation' } });
    }
    // Deploying the same system again is not skipped as done: the host would roll it back by itself.
    const refused = await activateSystem({ ...labTarget('deploy@pi1'), toplevel: systems['cut']! }, context).catch((error: unknown) => error);
    expect(refused).toMatchObject({
      code: 'PIDEPLOY_ACTIVATION_BUSY',
      message: expect.stringMatching(new RegExp(`^deploy@pi1 is busy, nothing was changed: deployment ${id} is awaiting-confirmation there \\(confirmation deadline \\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\dZ by the host's clock\\); one deployment at a time$`, 'u')),
      // The script that started it (uploaded: no bundle) is the one to confirm or abort it with.
      hint: expect.stringContaining(`sudo ${script} confirm ${id} (keep it) or abort ${id} (roll it back)`),
    });
    // Nor is another system activated over it (its watchdog would later roll that back).
    const other = await activateSystem({ ...labTarget('deploy@pi1'), toplevel: before, force: true }, context).catch((error: unknown) => error);
    expect(other).toMatchObject({ code: 'PIDEPLOY_ACTIVATION_BUSY' });
    // Nor a rollback of the profile (the watchdog would then roll back over it).
    expect(await rollbackSystem(labTarget('deploy@pi1'), {}, context).catch((error: unknown) => error)).toMatchObject({ code: 'PIDEPLOY_ACTIVATION_BUSY' });
    expect([await stateOf(), await running('pi1')]).toEqual(['awaiting-confirmation', systems['cut']]);
    // Ended (aborted: rolled back), the host takes the next deployment.
    expect((await root.exec(['sh', script, 'abort', id])).exitCode).toBe(0);
    expect(await running('pi1')).toBe(before);
    const after = await activateSystem({ ...labTarget('deploy@pi1'), toplevel: systems['cut']! }, context);
    expect(after.outcome).toBe('confirmed');
    expect(await running('pi1')).toBe(systems['cut']);
    expect((await activateSystem({ ...labTarget('deploy@pi1'), toplevel: before }, context)).outcome).toBe('confirmed');
  }, 120_000);

  it('SSH sessions cut while the start waits for a slow activation: it completes on the host, the deployer reconnects for its outcome, and status reports it', async () => {
    const reporter = createCollectingReporter();
    const activating = activateSystem({ ...labTarget('deploy@pi1'), toplevel: systems['slow']!, bundle, rollback: { enabled: false } }, createBaseContext({ reporter }));
    // Cut once the worker activates (switch-to-configuration waits 3 s) while the start waits for its outcome.
    const stateOf = `grep -l '^toplevel=${systems['slow']}$' /run/pideploy/*.state 2>/dev/null | head -n 1 | xargs -r grep '^state='`;
    for (let tries = 0; (await onConsole('pi1', stateOf)) !== 'state=activating'; tries += 1) {
      expect(tries).toBeLessThan(100);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    await labCutSshSessions('pi1', { instance });
    const result = await activating;
    expect(result.outcome).toBe('succeeded');
    expect(reporter.events).toContainEqual(expect.objectContaining({ type: 'log', level: 'warn', message: 'connection to deploy@pi1 lost during activation; reconnecting' }));
    expect(reporter.events.filter((event: DeployEvent) => event.type === 'activate-start')).toHaveLength(1);
    const reported = await systemStatus(labTarget('deploy@pi1'), createBaseContext());
    expect(reported.runningSystem).toBe(systems['slow']);
    expect(reported.lastDeployment?.state).toBe('succeeded');
    expect(reported.lastDeployment?.toplevel).toBe(systems['slow']);
  }, 120_000);

  it('a short activation\'s outcome comes with its start; a longer one (12 s, past the start\'s 10 s) through the FIFO wait, soon after it ends; then it is confirmed', async () => {
    const commands: string[][] = [];
    // The session as it is, except that the commands run without sudo are written down.
    const observed = (session: SshSession): SshSession =>
      new Proxy(session, {
        get(target, property) {
          if (property === 'exec') {
            return (command: readonly string[], options?: object) => {
              commands.push([...command]);
              return target.exec(command, options);
            };
          }
          const value: unknown = Reflect.get(target, property, target);
          return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
        },
      });
    await using session = await connectSsh('deploy@pi1', labTarget('deploy@pi1').connect!, createBaseContext());
    const quick = await activateSystem({ ...labTarget('deploy@pi1'), session: observed(session), toplevel: systems['next']!, bundle, rollback: { confirmTimeoutSeconds: 20 } }, createBaseContext());
    expect(quick.outcome).toBe('confirmed');
    expect(commands.filter((command) => command.includes('wait-for-state'))).toEqual([]);

    const started = performance.now();
    const slow = await activateSystem({ ...labTarget('deploy@pi1'), session: observed(session), toplevel: systems['slower']!, bundle, rollback: { confirmTimeoutSeconds: 20 } }, createBaseContext());
    const seconds = (performance.now() - started) / 1000;
    expect(slow.outcome).toBe('confirmed');
    expect(commands.filter((command) => command.includes('wait-for-state')).length).toBeGreaterThanOrEqual(1);
    // 12 s of switch-to-configuration, plus the start, the confirmation and the lab's own steps.
    expect(seconds).toBeGreaterThanOrEqual(12);
    expect(seconds).toBeLessThan(16);
    expect(await running('pi1')).toBe(systems['slower']);
  }, 120_000);

  it('status lists generations and the bundle manifest; rollback --to goes back', async () => {
    const context = createBaseContext();
    const before = await systemStatus(labTarget('deploy@pi1'), context);
    expect(before.generations.length).toBeGreaterThanOrEqual(3);
    expect(before.generations.filter((generation) => generation.current)).toHaveLength(1);
    expect(before.currentConfiguration).toBe(bundle);
    expect(before.manifest).toEqual({ version: 1, host: 'pi1' });
    const target = before.generations.find((generation) => !generation.current)!;
    const rolled = await rollbackSystem(labTarget('deploy@pi1'), { to: target.number }, context);
    expect(rolled.generation).toBe(target.number);
    expect(await running('pi1')).toBe(await profile('pi1'));
    // Recorded like a deployment (it held the host while it switched): status shows it.
    const after = await systemStatus(labTarget('deploy@pi1'), context);
    // That generation (base) was activated without a bundle: the GC root names its system now, not the bundle it left.
    expect(await profile('pi1')).toBe(systems['base']);
    expect(rolled.bundle).toBeUndefined();
    expect(after.currentConfiguration).toBe(systems['base']);
    expect(after.lastDeployment).toMatchObject({
      state: 'succeeded',
      action: 'switch',
      newGeneration: target.number,
      message: `rolled back by hand to generation ${target.number}; /etc/nixos/current-configuration -> ${systems['base']} (no bundle of it on this host)`,
    });
    expect(after.lastDeployment?.id).toMatch(/-rollback-\d+$/u);
    // Back to a generation of the system the bundle deployed (next): the root names that bundle again,
    // though a later activation (slow) rooted it for another system, whose note is not believed.
    const nextGeneration = (await onConsole('pi1', `for link in /nix/var/nix/profiles/system-*-link; do [ "$(readlink -f "$link")" = ${systems['next']} ] && echo "$link"; done | tail -n 1`)).replace(/^.*system-(\d+)-link$/u, '$1');
    const forward = await rollbackSystem(labTarget('deploy@pi1'), { to: Number(nextGeneration) }, context);
    expect([forward.runningSystem, forward.bundle]).toEqual([systems['next'], bundle]);
    expect(await gcRoot('pi1')).toBe(bundle);
    expect(await onConsole('pi1', `cat /nix/var/pideploy/bundles/${path.basename(systems['next']!)}`)).toBe(bundle);
    expect((await systemStatus(labTarget('deploy@pi1'), context)).deployedSystem).toBe(systems['next']);
    const slowGeneration = (await onConsole('pi1', `for link in /nix/var/nix/profiles/system-*-link; do [ "$(readlink -f "$link")" = ${systems['slow']} ] && echo "$link"; done | tail -n 1`)).replace(/^.*system-(\d+)-link$/u, '$1');
    const mismatched = await rollbackSystem(labTarget('deploy@pi1'), { to: Number(slowGeneration) }, context);
    expect([mismatched.runningSystem, mismatched.bundle]).toEqual([systems['slow'], undefined]);
    expect(await gcRoot('pi1')).toBe(systems['slow']);
    const diff = await diffSystem(labTarget('deploy@pi1'), systems['next']!, context, { env });
    expect(diff.pathsAdded.length + diff.pathsRemoved.length).toBeGreaterThanOrEqual(0);
  }, 120_000);

  it('NOPASSWD user and root login work too, with magic rollback', async () => {
    const context = createBaseContext();
    const viaNopasswd = await activateSystem({ ...labTarget('deploy@pi2'), toplevel: systems['base']!, rollback: { enabled: false } }, context);
    expect(viaNopasswd.outcome).toBe('succeeded');
    const viaNopasswdConfirmed = await activateSystem({ ...labTarget('deploy@pi2'), toplevel: systems['next']!, bundle, rollback: { confirmTimeoutSeconds: 20 } }, context);
    expect(viaNopasswdConfirmed.outcome).toBe('confirmed');
    const viaRoot = await activateSystem(
      { ...labTarget('root@pi2'), toplevel: systems['test']!, rollback: { confirmTimeoutSeconds: 20 }, healthChecks: { command: ['test', '-e', '/run/current-system'] } },
      context,
    );
    expect(viaRoot.outcome).toBe('confirmed');
    expect(await running('pi2')).toBe(systems['test']);
    expect(await gcRoot('pi2')).toBe(systems['test']);
    expect(prompts).toHaveLength(1);
  }, 120_000);

  it('a failing health check rolls back', async () => {
    const error = await activateSystem(
      { ...labTarget('root@pi2'), toplevel: systems['cut']!, rollback: { confirmTimeoutSeconds: 20 }, healthChecks: { command: ['false'] } },
      createBaseContext(),
    ).catch((caught: unknown) => caught);
    expect((error as PideployError).code).toBe('PIDEPLOY_ACTIVATION_UNCONFIRMED');
    expect((error as PideployError).message).toContain('the health check `false` exited 1');
    // back on the previous generation (the root test switched to the "test" system)
    expect(await running('pi2')).toBe(systems['test']);
    expect(await profile('pi2')).toBe(systems['test']);
    expect(await gcRoot('pi2')).toBe(systems['test']);
  }, 120_000);

  it('first deployment to a host that runs a system but has NO profile generation: the watchdog alone puts the running system back (SSH broken, sessions cut)', async () => {
    // pi3 as a host installed by other means: it runs "base" (GC-rooted), its system profile is empty.
    await onConsole('pi3', `nix-store --add-root /etc/nixos/current-configuration --indirect -r ${systems['base']} >/dev/null && ${systems['base']}/bin/switch-to-configuration test 2>/dev/null`);
    expect(await running('pi3')).toBe(systems['base']);
    expect(await onConsole('pi3', 'ls /nix/var/nix/profiles | grep -c "^system" || true')).toBe('0');
    const timeout = 8;
    // The link dies as the deployer starts confirming: it can neither confirm nor ask for the rollback.
    const reporter = createCollectingReporter();
    const context = createBaseContext({
      reporter: {
        emit: (event) => {
          reporter.emit(event);
          if (event.type === 'phase-start' && event.phase === 'confirm') void labCutSshSessions('pi3', { instance });
        },
      },
    });
    const started = Date.now();
    const error = await activateSystem({ ...labTarget('deploy@pi3'), toplevel: systems['breakSsh']!, bundle, rollback: { confirmTimeoutSeconds: timeout } }, context).catch(
      (caught: unknown) => caught,
    );
    expect((error as PideployError).code).toBe('PIDEPLOY_ACTIVATION_UNCONFIRMED');
    expect((error as PideployError).message).toContain(`the host rolls back by itself within ${timeout} s`);
    expect(reporter.events.some((event) => event.type === 'log' && event.level === 'warn' && event.message.includes('nothing to roll back to'))).toBe(false);
    for (;;) {
      if ((await running('pi3')) === systems['base']) break;
      expect(Date.now() - started).toBeLessThan((timeout + 10) * 1000);
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
    const elapsed = Date.now() - started;
    console.log(`pi3: back on its previous running system ${elapsed} ms after the activation began (confirm timeout ${timeout} s)`);
    // The watchdog did it (not an abort from the deployer), and the boot default is the old system too.
    const state = parseActivationState(await onConsole('pi3', 'cat "$(ls -t /run/pideploy/*.state | head -n 1)"'));
    expect(state).toMatchObject({ state: 'rolled-back-unconfirmed', previousSystem: systems['base'], previousGeneration: undefined, toplevel: systems['breakSsh'] });
    expect(state.message).toContain(`no confirmation within ${timeout}s`);
    expect(await profile('pi3')).toBe(systems['base']);
    expect(await onConsole('pi3', 'for link in /nix/var/nix/profiles/system-*-link; do readlink "$link"; done')).toBe(systems['base']);
    expect(await onConsole('pi3', 'readlink /nix/var/nix/lab-boot/default')).toBe(systems['base']);
    expect(await gcRoot('pi3')).toBe(systems['base']);
    // New logins work again.
    const reported = await systemStatus(labTarget('deploy@pi3'), createBaseContext());
    expect(reported.runningSystem).toBe(systems['base']);
    expect(reported.generations).toHaveLength(1);
  }, 120_000);

  it('a host that ran no system at all cannot be rolled back: a warning first, then PIDEPLOY_ROLLBACK_IMPOSSIBLE with a hint', async () => {
    expect(await running('pi4')).toBe('');
    const reporter = createCollectingReporter();
    const error = await activateSystem(
      { ...labTarget('deploy@pi4'), toplevel: systems['breakSsh']!, rollback: { confirmTimeoutSeconds: 5 } },
      createBaseContext({ reporter }),
    ).catch((caught: unknown) => caught);
    expect(reporter.events.some((event) => event.type === 'log' && event.level === 'warn' && event.message.includes('nothing to roll back to'))).toBe(true);
    expect(error).toBeInstanceOf(PideployError);
    expect((error as PideployError).code).toBe('PIDEPLOY_ROLLBACK_IMPOSSIBLE');
    expect((error as PideployError).message).toMatch(/could not confirm it: a new SSH login .* failed after activation: .*, and deploy@pi4 cannot be rolled back: no system ran there before/u);
    expect((error as PideployError).hint).toContain('console');
    const state = parseActivationState(await onConsole('pi4', 'cat "$(ls -t /run/pideploy/*.state | head -n 1)"'));
    expect(state.state).toBe('failed');
    expect(state.message).toContain('rollback impossible');
    expect(await running('pi4')).toBe(systems['breakSsh']);
  }, 120_000);

  it('never evaluates or builds on the targets: no new .drv in their stores', () => {
    for (const host of ['pi1', 'pi2', 'pi3', 'pi4']) expect(drvCount(host)).toBe(drvsBefore[host]);
  });
});

import { mkdtemp, rename, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { labDown, labExec, labUp, type LabStatus } from '@pideploy/lab';
import { describeLab } from '@pideploy/lab/testing';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { deployResultsOf, runBuiltPideploy, runBuiltPideployWithLabSudo } from '../testing/built-cli.js';

interface HostResult {
  readonly host: string;
  readonly ok: boolean;
  readonly toplevel?: string;
  readonly activation?: { readonly outcome: string; readonly action: string };
  readonly reboot?: { readonly outcome: string; readonly bootIdBefore: string; readonly bootId: string; readonly runningSystem: string };
  readonly phases: readonly { readonly phase: string }[];
  readonly bundle?: string;
  readonly rebootNeededFor?: readonly string[];
  readonly error?: { readonly code: string; readonly message: string; readonly hint?: string };
}

const pideploy = (args: readonly string[], cwd: string, env: NodeJS.ProcessEnv) => runBuiltPideployWithLabSudo(args, { cwd, env });

const resultOf = (stdout: string) => deployResultsOf<HostResult>(stdout);

const onConsole = async (host: string, command: string) => (await labExec(host, ['sh', '-c', command])).stdout.trim();

describeLab('pideploy deploy --action boot --reboot: every host reboots into its new system', () => {
  let status: LabStatus;
  let project: string;
  let env: NodeJS.ProcessEnv;
  const setSalt = (salt: string) => writeFile(path.join(project, 'configuration.nix'), `{ ... }: { imports = [ ./common.nix ]; environment.etc."pideploy-reboot".text = "${salt}"; }\n`);

  beforeAll(async () => {
    status = await labUp({ hosts: 2 });
    env = { ...process.env, ...status.env };
    project = await mkdtemp(path.join(os.tmpdir(), 'pideploy-reboot-'));
    const init = await runBuiltPideploy(['init', project, '--lab', '--force'], { env: process.env });
    expect([init.code, init.stderr]).toEqual([0, expect.not.stringContaining('pideploy:')]);
    await rename(path.join(project, 'configuration.nix'), path.join(project, 'common.nix'));
    await setSalt('first');
    const first = await pideploy(['deploy', '--parallel', '2', '--json'], project, env);
    expect(resultOf(first.stdout).map((host) => host.activation?.outcome), first.stderr).toEqual(['confirmed', 'confirmed']);
  });
  afterAll(async () => {
    await labDown();
  });

  it('refuses --reboot with --action test before touching any host', async () => {
    const before = await onConsole('pi1', 'cat /proc/sys/kernel/random/boot_id');
    const refused = await pideploy(['deploy', '--action', 'test', '--reboot'], project, env);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain('pideploy: --reboot with --action test: test does not make the system the boot default');
    expect(refused.stderr).toContain('hint: use --action boot (or switch) with --reboot');
    const alone = await pideploy(['deploy', '--reboot-timeout', '60'], project, env);
    expect([alone.code, alone.stderr]).toEqual([2, expect.stringContaining('pideploy: --reboot-timeout without --reboot')]);
    expect(await onConsole('pi1', 'cat /proc/sys/kernel/random/boot_id')).toBe(before);
  });

  it('activates with boot, reboots both hosts in parallel and checks that each runs its new system', async () => {
    const running = { pi1: await onConsole('pi1', 'readlink /run/current-system'), pi2: await onConsole('pi2', 'readlink /run/current-system') };
    await setSalt('second');
    const run = await pideploy(['deploy', '--action', 'boot', '--reboot', '--reboot-timeout', '60', '--parallel', '2', '--json'], project, env);
    expect(run.code, run.stderr).toBe(0);
    const results = resultOf(run.stdout);
    expect(results).toHaveLength(2);
    for (const host of results) {
      expect(host.activation).toMatchObject({ action: 'boot', outcome: 'succeeded' });
      expect(host.reboot?.outcome).toBe('rebooted');
      expect(host.reboot?.bootId).not.toBe(host.reboot?.bootIdBefore);
      expect(host.reboot?.runningSystem).toBe(host.toplevel);
      expect(host.toplevel).not.toBe(running[host.host as 'pi1' | 'pi2']);
      expect(host.phases.map((phase) => phase.phase)).toContain('reboot');
      // The host itself: a new boot, running and booted the new system, whose /etc is live.
      expect(await onConsole(host.host, 'cat /proc/sys/kernel/random/boot_id')).toBe(host.reboot?.bootId);
      expect(await onConsole(host.host, 'readlink /run/current-system')).toBe(host.toplevel);
      expect(await onConsole(host.host, 'readlink /run/booted-system')).toBe(host.toplevel);
      expect(await onConsole(host.host, 'cat /etc/pideploy-reboot')).toBe('second');
    }
    // The events say when each host rebooted.
    const events = run.stdout.trim().split('\n').slice(0, -1).map((line) => (JSON.parse(line) as { event: { type: string; phase?: string; host?: string; ok?: boolean } }).event);
    expect(events.filter((event) => event.type === 'phase-end' && event.phase === 'reboot' && event.ok).map((event) => event.host).sort()).toEqual(['pi1', 'pi2']);
  });

  it('skips the activation and the reboot of a host that booted and runs the system already; the table has a reboot column', async () => {
    const bootIds = { pi1: await onConsole('pi1', 'cat /proc/sys/kernel/random/boot_id'), pi2: await onConsole('pi2', 'cat /proc/sys/kernel/random/boot_id') };
    const run = await pideploy(['deploy', '--action', 'boot', '--reboot', '--parallel', '2'], project, env);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stderr).toContain('pi1 booted /nix/store/');
    expect(run.stderr).toContain('and runs it: no reboot needed');
    const table = `${run.stdout}${run.stderr}`.split('\n');
    expect(table.find((line) => line.startsWith('host '))).toMatch(/activate +reboot$/u);
    expect(table.filter((line) => /^pi[12] +skipped /u.test(line))).toHaveLength(2);
    expect(await onConsole('pi1', 'cat /proc/sys/kernel/random/boot_id')).toBe(bootIds.pi1);
    expect(await onConsole('pi2', 'cat /proc/sys/kernel/random/boot_id')).toBe(bootIds.pi2);
  });

  const generationOf = async (host: string) => Number(/^system-(\d+)-link$/u.exec(await onConsole(host, 'readlink /nix/var/nix/profiles/system'))?.[1]);

  it('boots a host that comes back unhealthy back into what it ran: the rejected generation deleted, the bundle deployed before rooted again', async () => {
    const before = {
      running: await onConsole('pi1', 'readlink /run/current-system'),
      generation: await generationOf('pi1'),
      deployed: await onConsole('pi1', 'readlink /etc/nixos/current-configuration'),
      bootId: await onConsole('pi1', 'cat /proc/sys/kernel/random/boot_id'),
    };
    await setSalt('unhealthy');
    const run = await pideploy(['deploy', 'pi1', '--action', 'boot', '--reboot', '--reboot-timeout', '60', '--health-check-command', 'test -e /etc/pideploy-healthy', '--health-check-timeout', '2', '--json'], project, env);
    expect(run.code, run.stderr).toBe(1);
    const [pi1] = resultOf(run.stdout);
    expect(pi1?.activation).toMatchObject({ action: 'boot', outcome: 'succeeded' });
    expect(pi1?.error?.code).toBe('PIDEPLOY_REBOOT_UNHEALTHY');
    expect(pi1?.error?.message).toMatch(
      new RegExp(`^pi1 came back from its reboot running ${pi1?.toplevel}, but the health check \`sh -c 'test -e /etc/pideploy-healthy'\` exited 1 \\(tried \\d times in 2 s\\); it was rolled back to generation ${before.generation} \\(${before.running}\\) and rebooted into it$`, 'u'),
    );
    // Two boots later it runs and boots what it ran before, from the generation it had; the new one is gone.
    expect(await onConsole('pi1', 'cat /proc/sys/kernel/random/boot_id')).not.toBe(before.bootId);
    expect(await onConsole('pi1', 'readlink /run/current-system')).toBe(before.running);
    expect(await onConsole('pi1', 'readlink /run/booted-system')).toBe(before.running);
    expect(await onConsole('pi1', 'cat /etc/pideploy-reboot')).toBe('second');
    expect(await generationOf('pi1')).toBe(before.generation);
    expect(await onConsole('pi1', `ls /nix/var/nix/profiles | grep -c '^system-${before.generation + 1}-link$' || true`)).toBe('0');
    expect(await onConsole('pi1', 'readlink /etc/nixos/current-configuration')).toBe(before.deployed);
    expect(pi1?.bundle).not.toBe(before.deployed);
    // The table says which phase failed, and why.
    const table = await pideploy(['deploy', 'pi1', '--action', 'boot', '--reboot', '--reboot-timeout', '60', '--health-check-command', 'test -e /etc/pideploy-healthy', '--health-check-timeout', '1'], project, env);
    expect(table.code).toBe(1);
    expect(table.stderr).toContain('rolled back to generation');
    expect(`${table.stdout}${table.stderr}`).toMatch(/^pi1 +FAILED .* [0-9.]+ s$/mu);
  });

  it('rolls a host back to its previous generation at its next boot, and reboots it into it (pideploy rollback --action boot --reboot)', async () => {
    const generation = await generationOf('pi1');
    const previous = await onConsole('pi1', `ls /nix/var/nix/profiles | sed -n 's/^system-\\([0-9]*\\)-link$/\\1/p' | sort -n | awk '$1 < ${generation}' | tail -n 1`);
    const previousSystem = await onConsole('pi1', `readlink -f /nix/var/nix/profiles/system-${previous}-link`);
    const running = await onConsole('pi1', 'readlink /run/current-system');
    expect(previousSystem).not.toBe(running);
    const rolled = await pideploy(['rollback', 'pi1', '--action', 'boot', '--reboot', '--reboot-timeout', '60'], project, env);
    expect(rolled.code, rolled.stderr).toBe(0);
    const [said, rebooted] = rolled.stdout.trim().split('\n');
    expect(said).toBe(`pi1: generation ${previous} (${previousSystem}) boots next; running ${running} until then`);
    expect(rebooted).toMatch(new RegExp(`^pi1: rebooted into ${previousSystem} in [0-9.]+ s \\(boot [0-9a-f-]+\\)$`, 'u'));
    expect(await onConsole('pi1', 'readlink /run/current-system')).toBe(previousSystem);
    expect(await onConsole('pi1', 'readlink /run/booted-system')).toBe(previousSystem);
    expect(await onConsole('pi1', 'cat /etc/pideploy-reboot')).toBe('first');
    // Its GC root followed, across the reboot: it names the bundle of the first deployment, whose system it runs again.
    const rootedBundle = await onConsole('pi1', 'readlink -f /etc/nixos/current-configuration');
    expect(rootedBundle).toMatch(/^\/nix\/store\/[0-9a-z]{32}-/u);
    expect(await onConsole('pi1', `readlink -f ${rootedBundle}/toplevel`)).toBe(previousSystem);
    expect(await onConsole('pi1', `cat ${rootedBundle}/configuration.nix`)).toContain('"first"');
    const settled = await runBuiltPideploy(['status', 'pi1', '--short'], { cwd: project, env });
    expect(settled.code, settled.stderr).toBe(0);
    expect(settled.stdout).toMatch(/^pi1 .* ok$/mu);
    // Nonsense is refused before the host is touched.
    const refused = await pideploy(['rollback', 'pi1', '--action', 'test'], project, env);
    expect([refused.code, refused.stderr]).toEqual([2, 'pideploy: rollback --action test: a rollback switches to the generation or makes it the boot default\nhint: use --action switch (default) or boot\n']);
  });

  it('says when a switch brought a kernel the host did not boot with (deploy and status), until a reboot runs it; --reboot-if-needed reboots just then', async () => {
    const withKernel = (version: string, salt: string) =>
      writeFile(path.join(project, 'configuration.nix'), `{ ... }: { imports = [ ./common.nix ]; environment.etc."pideploy-reboot".text = "${salt}"; lab.kernel = "${version}"; }\n`);
    const statusOf = async () => {
      const run = await runBuiltPideploy(['status', 'pi2', '--json'], { cwd: project, env });
      expect(run.code, run.stderr).toBe(0);
      return { text: (await runBuiltPideploy(['status', 'pi2'], { cwd: project, env })).stdout, json: (JSON.parse(run.stdout.trim().split('\n').at(-1) ?? '{}') as { result: { rebootNeededFor: string[] }[] }).result[0] };
    };
    // pi2 boots a system without kernel links; its next one has them: switched, it runs on the old ones.
    await setSalt('no kernel');
    const booted = await pideploy(['deploy', 'pi2', '--action', 'boot', '--reboot', '--reboot-timeout', '60'], project, env);
    expect(booted.code, booted.stderr).toBe(0);
    await withKernel('6.6.1-lab', 'kernel');
    const switched = await pideploy(['deploy', 'pi2', '--json'], project, env);
    expect(switched.code, switched.stderr).toBe(0);
    const [pi2] = resultOf(switched.stdout);
    expect(pi2?.activation?.outcome).toBe('confirmed');
    expect(pi2?.rebootNeededFor).toEqual(['kernel', 'initrd', 'kernel-modules']);
    // A warning (with --json, an event on stdout).
    expect(`${switched.stdout}${switched.stderr}`).toContain('pi2 runs its new system on the kernel, initrd, kernel-modules it booted with: reboot it to run the new one (pideploy deploy pi2 --reboot)');
    expect(await onConsole('pi2', 'readlink /run/current-system')).toBe(pi2?.toplevel);
    expect(await onConsole('pi2', `readlink ${pi2?.toplevel}/kernel`)).toMatch(/^\/nix\/store\/[a-z0-9]{32}-linux-6\.6\.1-lab-Image$/u);
    // The table ends saying it again, with the command.
    const table = await pideploy(['deploy', 'pi2'], project, env);
    expect(table.code, table.stderr).toBe(0);
    expect(`${table.stdout}${table.stderr}`).toContain('reboot needed: pi2 (a new kernel, initrd or kernel modules load only at a boot): pideploy deploy pi2 --reboot\n');
    const needed = await statusOf();
    expect(needed.json?.rebootNeededFor).toEqual(['kernel', 'initrd', 'kernel-modules']);
    expect(needed.text).toContain("  reboot:    needed: the profile's kernel, initrd, kernel-modules are not the ones it booted with\n");
    // One line per host for a fleet, with the same news.
    const short = await runBuiltPideploy(['status', '--short'], { cwd: project, env });
    expect(short.code, short.stderr).toBe(0);
    const [title, ...lines] = short.stdout.trimEnd().split('\n');
    expect(title).toMatch(/^host +gen +running +last deployment +notes$/u);
    expect(lines.find((line) => line.startsWith('pi2 '))).toMatch(
      new RegExp(`^pi2 +\\d+ +${path.basename(pi2?.toplevel ?? '?').slice(33).replaceAll('.', '\\.')} +switch → confirmed +reboot needed \\(kernel, initrd, kernel-modules\\)$`, 'u'),
    );
    // pi1 has no kernel to report (the test before rolled it back to the system of its first bundle).
    expect(lines.find((line) => line.startsWith('pi1 '))).toMatch(/^pi1 +\d+ +nixos-system-\S+ +.* (ok|boots .* next)$/u);

    // The hint's command: nothing to activate, a reboot into it; then nothing is said.
    const rebooted = await pideploy(['deploy', 'pi2', '--reboot', '--reboot-timeout', '60', '--json'], project, env);
    expect(rebooted.code, rebooted.stderr).toBe(0);
    const [after] = resultOf(rebooted.stdout);
    expect([after?.activation?.outcome, after?.reboot?.outcome, after?.rebootNeededFor]).toEqual(['skipped', 'rebooted', undefined]);
    expect(await onConsole('pi2', 'readlink /run/booted-system')).toBe(pi2?.toplevel);
    const done = await statusOf();
    expect(done.json?.rebootNeededFor).toEqual([]);
    expect(done.text).not.toContain('reboot:');

    // Another system with the same kernel switches without a word about rebooting, and
    // --reboot-if-needed does not reboot it.
    await withKernel('6.6.1-lab', 'same kernel');
    const bootId = await onConsole('pi2', 'cat /proc/sys/kernel/random/boot_id');
    const same = await pideploy(['deploy', 'pi2', '--reboot-if-needed', '--json'], project, env);
    expect(same.code, same.stderr).toBe(0);
    const [sameKernel] = resultOf(same.stdout);
    expect([sameKernel?.activation?.outcome, sameKernel?.reboot, sameKernel?.rebootNeededFor]).toEqual(['confirmed', undefined, undefined]);
    expect(`${same.stdout}${same.stderr}`).not.toContain('reboot it');
    expect(await onConsole('pi2', 'cat /etc/pideploy-reboot')).toBe('same kernel');
    expect(await onConsole('pi2', 'cat /proc/sys/kernel/random/boot_id')).toBe(bootId);

    // A new kernel with --reboot-if-needed: switched, confirmed, then rebooted into it at once.
    await withKernel('6.6.2-lab', 'new kernel');
    const upgraded = await pideploy(['deploy', 'pi2', '--reboot-if-needed', '--reboot-timeout', '60', '--json'], project, env);
    expect(upgraded.code, upgraded.stderr).toBe(0);
    const [newKernel] = resultOf(upgraded.stdout);
    expect([newKernel?.activation?.outcome, newKernel?.reboot?.outcome, newKernel?.rebootNeededFor]).toEqual(['confirmed', 'rebooted', undefined]);
    expect(await onConsole('pi2', 'cat /proc/sys/kernel/random/boot_id')).toBe(newKernel?.reboot?.bootId);
    expect(await onConsole('pi2', 'readlink /run/booted-system')).toBe(newKernel?.toplevel);
    expect(await onConsole('pi2', 'readlink /run/booted-system/kernel')).toMatch(/-linux-6\.6\.2-lab-Image$/u);
    expect((await statusOf()).json?.rebootNeededFor).toEqual([]);

    // A test of yet another kernel is not told to reboot: a reboot would boot the default it left.
    await withKernel('6.6.3-lab', 'test kernel');
    const tested = await pideploy(['deploy', 'pi2', '--action', 'test', '--json'], project, env);
    expect(tested.code, tested.stderr).toBe(0);
    const [testKernel] = resultOf(tested.stdout);
    expect([testKernel?.activation?.outcome, testKernel?.rebootNeededFor]).toEqual(['confirmed', undefined]);
    expect(await onConsole('pi2', `readlink /run/current-system`)).toBe(testKernel?.toplevel);
  });
});

import { copyFile, mkdtemp, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { labDown, labExec, labUp, type LabStatus } from '@pideploy/lab';
import { describeLab, sudoPasswordChecksFrom } from '@pideploy/lab/testing';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { runBuiltPideploy, runBuiltPideployWithLabSudo } from '../testing/built-cli.js';

interface GarbageLine {
  readonly result?: {
    readonly ok: boolean;
    readonly results: readonly {
      readonly host: string;
      readonly ok: boolean;
      readonly garbage?: {
        readonly deletedGenerations: readonly number[];
        readonly keptGenerations: readonly { readonly number: number; readonly because: readonly string[] }[];
        readonly bootLoaderUpdated: boolean;
        readonly pathsDeleted?: number;
        readonly bytesFreed?: number;
      };
      readonly error?: { readonly code: string; readonly message: string };
    }[];
  };
}

const PROFILE = '/nix/var/nix/profiles/system';
const onConsole = async (command: string) => (await labExec('pi1', ['sh', '-c', command])).stdout.trim();
const generationsOnHost = async () => (await onConsole(`nix-env -p ${PROFILE} --list-generations`)).split('\n').map((line) => Number(line.trim().split(/\s+/u)[0]));

describeLab('pideploy gc: old system generations deleted, the boot loader rewritten, the garbage collected (lab: password sudo)', () => {
  let status: LabStatus;
  let project: string;
  let env: NodeJS.ProcessEnv;
  const pideploy = (args: readonly string[]) => runBuiltPideployWithLabSudo(args, { cwd: project, env });
  const deployWithSalt = async (salt: string, ...extra: string[]) => {
    await writeFile(path.join(project, 'configuration.nix'), `{ ... }: { imports = [ ./common.nix ]; environment.etc."salt".text = "${salt}"; }\n`);
    return pideploy(['deploy', 'pi1', ...extra]);
  };
  const systemOf = (generation: number) => onConsole(`readlink -e ${PROFILE}-${generation}-link`);

  beforeAll(async () => {
    status = await labUp({ hosts: 1 });
    env = { ...process.env, ...status.env };
    project = await mkdtemp(path.join(os.tmpdir(), 'pideploy-gc-'));
    const init = await runBuiltPideploy(['init', project, '--lab', '--force'], { env: process.env });
    expect([init.code, init.stderr]).toEqual([0, expect.not.stringContaining('pideploy:')]);
    await copyFile(path.join(project, 'configuration.nix'), path.join(project, 'common.nix'));
    for (const salt of ['one', 'two', 'three']) {
      const run = await deployWithSalt(salt);
      expect([run.code, run.stderr]).toEqual([0, expect.not.stringContaining('pideploy:')]);
    }
  });
  afterAll(async () => {
    await labDown();
  });

  it('keeps the N newest generations and the one the host booted, deletes the others and their store paths, in one root command', async () => {
    // The three deployments made three generations (a lab host kept from an earlier run has older ones too).
    const generations = await generationsOnHost();
    expect(generations.length).toBeGreaterThanOrEqual(3);
    const [booted, middle, newest] = generations.slice(-3) as [number, number, number];
    const older = generations.slice(0, -3);
    const dry = await pideploy(['gc', 'pi1', '--keep', '1', '--dry-run']);
    expect([dry.code, dry.stdout]).toEqual([0, `pi1: would delete generations ${[...older, booted, middle].join(', ')}; kept ${newest} (newest, current, running)\n`]);
    expect(await generationsOnHost()).toEqual(generations);

    // As after a switch without a reboot: the host booted the first of the three and runs the last.
    await onConsole(`ln -sfn "$(readlink -e ${PROFILE}-${booted}-link)" /run/booted-system`);
    const [bootedSystem, middleSystem, newestSystem] = [await systemOf(booted), await systemOf(middle), await systemOf(newest)];
    // Nix counts what running processes refer to as roots: the activations' short-lived timers
    // (at most 10 s) still name the middle system. Wait until only its profile link does.
    const rootsOfMiddle = async () => (await onConsole(`nix-store -q --roots ${middleSystem}`)).split('\n').filter((line) => line.startsWith('/proc/'));
    const rootsDeadline = Date.now() + 30_000;
    while ((await rootsOfMiddle()).length > 0 && Date.now() < rootsDeadline) await new Promise((resolve) => setTimeout(resolve, 500));
    expect(await rootsOfMiddle()).toEqual([]);
    const checks = sudoPasswordChecksFrom(status.hosts[0]!);
    const run = await pideploy(['gc', 'pi1', '--keep', '1', '--json']);
    expect([run.code, run.stderr]).toEqual([0, expect.not.stringContaining('pideploy:')]);
    const result = (JSON.parse(run.stdout.trim().split('\n').at(-1) ?? '{}') as GarbageLine).result;
    const garbage = result?.results[0]?.garbage;
    expect(garbage?.deletedGenerations).toEqual([...older, middle]);
    expect(garbage?.keptGenerations).toEqual([
      { number: newest, because: ['newest', 'current', 'running'] },
      { number: booted, because: ['booted'] },
    ]);
    expect(garbage?.bootLoaderUpdated).toBe(true);
    expect(garbage?.pathsDeleted).toBeGreaterThan(0);
    expect(garbage?.bytesFreed).toBeGreaterThan(0);
    expect(await generationsOnHost()).toEqual([booted, newest]);
    // The middle generation's system is gone from the host's store; what runs and what booted are there.
    expect((await labExec('pi1', ['nix-store', '--check-validity', middleSystem])).exitCode).not.toBe(0);
    expect((await labExec('pi1', ['nix-store', '--check-validity', bootedSystem, newestSystem])).exitCode).toBe(0);
    expect(await onConsole('readlink -e /run/current-system')).toBe(newestSystem);
    // One password check: the collection itself.
    expect(checks()).toEqual([expect.stringMatching(/^deploy sudo -k -S -p {2}-- sh -c .* pideploy-gc \/nix\/var\/nix\/profiles\/system 1 run$/u)]);

    const again = await pideploy(['gc', 'pi1', '--keep', '1']);
    expect([again.code, again.stdout]).toEqual([0, expect.stringMatching(new RegExp(`^pi1: no generation to delete; kept ${newest} \\(newest, current, running\\), ${booted} \\(booted\\); \\d+ store paths, .+ freed\\n$`, 'u'))]);
    await onConsole('rm -f /run/booted-system');
  });

  it('leaves a host alone while a deployment has it (its rollback may need an old generation)', async () => {
    // A deployment whose health check takes a while: the host awaits its confirmation meanwhile.
    const deploying = deployWithSalt('four', '--health-check-command', 'sleep 8');
    const awaiting = async () => (await onConsole('cat /run/pideploy/*.state 2>/dev/null')).includes('state=awaiting-confirmation');
    const deadline = Date.now() + 60_000;
    while (!(await awaiting()) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 200));
    expect(await awaiting()).toBe(true);
    const before = await generationsOnHost();
    const busy = await pideploy(['gc', 'pi1', '--keep', '1', '--json']);
    expect(busy.code).toBe(1);
    const error = (JSON.parse(busy.stdout.trim().split('\n').at(-1) ?? '{}') as GarbageLine).result?.results[0]?.error;
    expect(error?.code).toBe('PIDEPLOY_ACTIVATION_BUSY');
    expect(error?.message).toMatch(/^pi1 is busy, nothing was collected: deployment \S+ is awaiting-confirmation there$/u);
    expect(await generationsOnHost()).toEqual(before);
    const deployed = await deploying;
    expect([deployed.code, deployed.stderr]).toEqual([0, expect.not.stringContaining('pideploy:')]);
  });
});

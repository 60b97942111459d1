import { spawn } from 'node:child_process';
import { mkdtemp, rename, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { LAB_SUDO_PASSWORD, labDown, labExec, labUp, type LabStatus } from '@pideploy/lab';
import { describeLab, isProcessRunning } from '@pideploy/lab/testing';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { BUILT_PIDEPLOY_BIN, runBuiltPideploy } from '../testing/built-cli.js';

/** The slow derivation's builder (aarch64 busybox under qemu). */
const BUILDER = 'busybox sleep 60';

describeLab('Ctrl-C during pideploy deploy', () => {
  let status: LabStatus;
  let project: string;
  let env: NodeJS.ProcessEnv;
  beforeAll(async () => {
    status = await labUp({ hosts: 2 });
    env = { ...process.env, ...status.env };
    project = await mkdtemp(path.join(os.tmpdir(), 'pideploy-interrupt-'));
    expect((await runBuiltPideploy(['init', project, '--lab', '--force'], { env: process.env })).code).toBe(0);
    await rename(path.join(project, 'configuration.nix'), path.join(project, 'common.nix'));
  });
  afterAll(async () => {
    await labDown();
  });

  it('stops the build, exits 130 with one line, starts no other host and leaves the hosts as they were', async () => {
    const salt = `slow-${Date.now()}`;
    // A package whose (emulated) build takes a minute: the deploy is interrupted while it builds.
    await writeFile(
      path.join(project, 'configuration.nix'),
      `{ pkgs, ... }: { imports = [ ./common.nix ]; environment.systemPackages = [ (pkgs.runCommand "${salt}" { } "sleep 60; mkdir $out") ]; }\n`,
    );
    const before = await Promise.all(['pi1', 'pi2'].map(async (host) => (await labExec(host, ['readlink', '-e', '/run/current-system'])).stdout.trim()));
    const child = spawn(process.execPath, [BUILT_PIDEPLOY_BIN, 'deploy', 'pi1', 'pi2', '--sudo-password-stdin', '--json'], { cwd: project, env, stdio: ['pipe', 'pipe', 'pipe'] });
    child.stdin.end(`${LAB_SUDO_PASSWORD}\n`);
    let stdout = '';
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const builderRunning = () => isProcessRunning(BUILDER);
    let interruptedAt = 0;
    let builderSeen = false;
    child.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk.toString();
      if (interruptedAt === 0 && stdout.includes(salt)) {
        // The slow derivation is being built (a build-progress event names it): once its
        // builder process runs, press Ctrl-C.
        interruptedAt = -1;
        void (async () => {
          for (let tries = 0; tries < 100 && !builderSeen; tries += 1) {
            builderSeen = await builderRunning();
            if (!builderSeen) await new Promise((resolve) => setTimeout(resolve, 100));
          }
          interruptedAt = performance.now();
          child.kill('SIGINT');
        })();
      }
    });
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    const exitedAfterMs = performance.now() - interruptedAt;

    expect(interruptedAt, stderr).toBeGreaterThan(0);
    expect(builderSeen).toBe(true);
    expect(code, stderr).toBe(130);
    expect(exitedAfterMs).toBeLessThan(5000);
    const errorLines = stdout.split('\n').filter((line) => line.startsWith('{"error"'));
    expect(errorLines).toHaveLength(1);
    expect(JSON.parse(errorLines[0] ?? '{}')).toMatchObject({ error: { code: 'PIDEPLOY_INTERRUPTED' } });
    const result = stdout
      .split('\n')
      .filter((line) => line.startsWith('{"result"'))
      .map((line) => JSON.parse(line) as { result: { results: { host: string; ok: boolean; error?: { code: string; message: string } }[] } })[0]?.result;
    expect(result?.results.map((host) => [host.host, host.ok, host.error?.code])).toEqual([
      ['pi1', false, 'PIDEPLOY_INTERRUPTED'],
      ['pi2', false, 'PIDEPLOY_INTERRUPTED'],
    ]);
    expect(result?.results[1]?.error?.message).toContain('before this host was started');
    // pi2 was never contacted after the interrupt, and nothing of the build is left running here.
    await new Promise((resolve) => setTimeout(resolve, 1000));
    expect(await builderRunning()).toBe(false);
    const after = await Promise.all(['pi1', 'pi2'].map(async (host) => (await labExec(host, ['readlink', '-e', '/run/current-system'])).stdout.trim()));
    expect(after).toEqual(before);
    for (const host of ['pi1', 'pi2']) {
      expect((await labExec(host, ['sh', '-c', `ls /nix/store | grep -c ${salt} || true`])).stdout.trim()).toBe('0');
    }
  });
});

import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { planLabHost, resolveLabInstance } from '@pideploy/lab';
import { describeLab } from '@pideploy/lab/testing';
import { afterAll, beforeAll, expect, it } from 'vitest';

const execFileAsync = promisify(execFile);
const bin = fileURLToPath(new URL('../dist/bin.js', import.meta.url));

function environmentWithoutLabDir(): NodeJS.ProcessEnv {
  const environment = { ...process.env };
  delete environment['PIDEPLOY_LAB_DIR'];
  return environment;
}

/** Runs the built `pideploy` binary, as the real user would, and returns what it printed. */
async function pideploy(args: readonly string[], asUser?: number): Promise<{ stdout: string; stderr: string; code: number }> {
  const argv = asUser === undefined ? [process.execPath, bin, ...args] : ['setpriv', `--reuid=${asUser}`, `--regid=${asUser}`, '--clear-groups', process.execPath, bin, ...args];
  try {
    const { stdout, stderr } = await execFileAsync(argv[0]!, argv.slice(1), { env: environmentWithoutLabDir() });
    return { stdout, stderr, code: 0 };
  } catch (error) {
    const failure = error as { stdout: string; stderr: string; code: number };
    return { stdout: failure.stdout, stderr: failure.stderr, code: failure.code };
  }
}

describeLab('pideploy lab (the CLI against the real lab)', () => {
  beforeAll(async () => {
    await pideploy(['lab', 'down']);
  });
  afterAll(async () => {
    await pideploy(['lab', 'down']);
  });

  it('refuses to run without root: one line, a hint, exit 1, nothing created', async () => {
    const result = await pideploy(['lab', 'up', '--lab-dir', '/tmp/pideploy-lab-not-root'], 65534);
    expect(result.code).toBe(1);
    expect(result.stderr).toBe(
      'pideploy: pideploy lab up needs root: it creates network namespaces, mounts, users and binfmt entries\nhint: run it as root, e.g. sudo pideploy lab up\n',
    );
    const { existsSync } = await import('node:fs');
    expect(existsSync('/tmp/pideploy-lab-not-root')).toBe(false);
  });

  it('brings a host up, describes it as JSON, runs console commands, and goes down', async () => {
    const up = await pideploy(['lab', 'up', '--hosts', '1']);
    expect(up.code).toBe(0);
    expect(up.stderr).toContain(`[pi1] up at ${planLabHost(1, resolveLabInstance()).address}`);
    expect(up.stdout).toContain('deploy@pi1');

    const status = await pideploy(['lab', 'status', '--json']);
    const parsed = JSON.parse(status.stdout) as {
      result: { hosts: { name: string; target: string; sudoPassword: string; trusted: boolean; sshdLog: string; sshConfig: string; knownHosts: string }[] };
    };
    expect(parsed.result.hosts).toHaveLength(1);
    expect(parsed.result.hosts[0]).toMatchObject({ name: 'pi1', target: 'deploy@pi1', sudoPassword: 'pideploy-lab-sudo', trusted: true });

    const exec = await pideploy(['lab', 'exec', 'pi1', '--', 'sh', '-c', 'hostname; exit 3']);
    expect(exec).toMatchObject({ stdout: 'pi1\n', code: 3 });

    const hostInterface = planLabHost(1, resolveLabInstance()).hostInterface;
    const qdisc = async () => (await execFileAsync('tc', ['qdisc', 'show', 'dev', hostInterface])).stdout;
    const slow = await pideploy(['lab', 'link', 'pi1', '--rate-mbit', '100']);
    expect(slow).toMatchObject({ stdout: 'pi1: what is sent to it is limited to 100 Mbit/s\n', code: 0 });
    expect(await qdisc()).toMatch(/tbf .*rate 100Mbit/u);
    const lifted = await pideploy(['lab', 'link', 'pi1', '--unshaped']);
    expect(lifted).toMatchObject({ stdout: 'pi1: the link is no longer limited\n', code: 0 });
    expect(await qdisc()).not.toContain('tbf');

    const unknown = await pideploy(['lab', 'exec', 'pi7', '--', 'true']);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain('no lab host named "pi7" (the lab has pi1)');

    const down = await pideploy(['lab', 'down']);
    expect(down.code).toBe(0);
    expect(down.stderr).toContain('[pi1] down');
    const after = await pideploy(['lab', 'status', '--json']);
    expect((JSON.parse(after.stdout) as { result: { up: boolean } }).result.up).toBe(false);
  });
});

import { readFileSync } from 'node:fs';
import { mkdtemp, rename, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { LAB_SUDO_PASSWORD, labDown, labExec, labUp, type LabStatus } from '@pideploy/lab';
import { describeLab } from '@pideploy/lab/testing';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { deployResultsOf, runBuiltPideploy, runBuiltPideployWithLabSudo } from '../testing/built-cli.js';

interface HostResult {
  readonly host: string;
  readonly ok: boolean;
  readonly toplevel?: string;
  readonly bundle?: string;
  readonly activation?: { readonly outcome: string };
  readonly error?: { readonly code: string; readonly message: string; readonly hint?: string };
}

const pideploy = (args: readonly string[], cwd: string, env: NodeJS.ProcessEnv) => runBuiltPideployWithLabSudo(args, { cwd, env });

const resultOf = (stdout: string) => deployResultsOf<HostResult>(stdout);

async function runs(host: string): Promise<string> {
  return (await labExec(host, ['readlink', '/run/current-system'])).stdout.trim();
}

describeLab('health checks gate the confirmation (pideploy.json and flags; a failed one rolls the host back)', () => {
  let status: LabStatus;
  let project: string;
  let env: NodeJS.ProcessEnv;
  let server: Server;
  let baseUrl: string;
  // The health endpoint, served from this machine: each request is recorded, and a host's answer is set per host.
  const requests: string[] = [];
  const answers = new Map<string, number>([['pi2', 503]]);
  const setSalt = (salt: string) => writeFile(path.join(project, 'configuration.nix'), `{ ... }: { imports = [ ./common.nix ]; environment.etc."pideploy-health".text = "${salt}"; }\n`);

  beforeAll(async () => {
    server = createServer((request, response) => {
      requests.push(request.url ?? '');
      const host = /^\/health\/([^/?]+)/u.exec(request.url ?? '')?.[1] ?? '';
      response.writeHead(answers.get(host) ?? 200).end();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    status = await labUp({ hosts: 3 });
    env = { ...process.env, ...status.env };
    project = await mkdtemp(path.join(os.tmpdir(), 'pideploy-health-'));
    const init = await runBuiltPideploy(['init', project, '--lab', '--force'], { env: process.env });
    expect([init.code, init.stderr]).toEqual([0, expect.not.stringContaining('pideploy:')]);
    await rename(path.join(project, 'configuration.nix'), path.join(project, 'common.nix'));
    // Every host checks that the new system's /etc is live; pi3's own check cannot pass.
    const configFile = path.join(project, 'pideploy.json');
    const config = JSON.parse(readFileSync(configFile, 'utf8')) as { defaults?: Record<string, unknown>; hosts: Record<string, Record<string, unknown>> };
    config.defaults = { ...config.defaults, healthCheck: { command: 'grep -qx "$(cat /etc/pideploy-health-wanted)" /etc/pideploy-health' } };
    (config.hosts['pi3'] as Record<string, unknown>)['healthCheck'] = { command: 'test -e /etc/pideploy-no-such-file', timeoutSeconds: 5 };
    await writeFile(configFile, `${JSON.stringify(config, null, 2)}\n`);
    // Every host starts on a system of its own, deployed without the checks.
    await setSalt('initial');
    const initial = await pideploy(['deploy', '--parallel', '3', '--no-health-check', '--json'], project, env);
    expect(resultOf(initial.stdout).map((host) => host.activation?.outcome), initial.stderr).toEqual(['confirmed', 'confirmed', 'confirmed']);
  });
  afterAll(async () => {
    server.close();
    await labDown();
  });

  it('confirms the host whose checks pass and rolls back the others, each with the reason', async () => {
    const before = Object.fromEntries(await Promise.all(status.hosts.map(async (host) => [host.name, await runs(host.name)] as const)));
    await setSalt('checked');
    // What the command compares with is on the hosts, outside any system: the check reads the live /etc.
    for (const host of status.hosts) await labExec(host.name, ['sh', '-c', 'echo checked > /etc/pideploy-health-wanted']);
    const run = await pideploy(['deploy', '--parallel', '3', '--health-check-url', `${baseUrl}/health/{host}?via={hostname}`, '--json'], project, env);
    expect(run.code, run.stderr).toBe(1);
    const results = Object.fromEntries(resultOf(run.stdout).map((host) => [host.host, host]));

    // pi1 passed both checks (pideploy.json's command, the flag's URL): confirmed, on the new system.
    expect(results['pi1']?.activation?.outcome, run.stderr).toBe('confirmed');
    expect(await runs('pi1')).toBe(results['pi1']?.toplevel);
    expect((await labExec('pi1', ['cat', '/etc/pideploy-health'])).stdout.trim()).toBe('checked');
    // pi2's command passed, its URL answered 503: rolled back to what it ran.
    expect(results['pi2']?.error?.code).toBe('PIDEPLOY_ACTIVATION_UNCONFIRMED');
    expect(results['pi2']?.error?.message).toContain(`the health check ${baseUrl}/health/pi2?via=${status.hosts[1]?.address} answered HTTP 503`);
    expect(results['pi2']?.error?.hint).toBe('the new system failed its health check: fix the service (or the check) and deploy again');
    expect(await runs('pi2')).toBe(before['pi2']);
    // pi3's own command (its healthCheck replaces the defaults') failed: rolled back, its URL never asked.
    expect(results['pi3']?.error?.message).toContain('the health check `sh -c \'test -e /etc/pideploy-no-such-file\'` exited 1');
    expect(await runs('pi3')).toBe(before['pi3']);
    // {host} and {hostname} were filled in per host: the address each SSH connection went to.
    expect(requests.filter((url) => url.startsWith('/health/')).sort()).toEqual([`/health/pi1?via=${status.hosts[0]?.address}`, `/health/pi2?via=${status.hosts[1]?.address}`]);
    expect(run.stdout).not.toContain(LAB_SUDO_PASSWORD);
  });

  it("pideploy activate runs the host's pideploy.json check too, with the flags' URL", async () => {
    // pi2 is back on its old system; the new one is in its store. With the URL still failing, it rolls back again.
    const built = await pideploy(['deploy', 'pi2', '--dry-run', '--json'], project, env);
    const next = resultOf(built.stdout)[0];
    const before = await runs('pi2');
    const args = ['activate', 'pi2', '--toplevel', next?.toplevel ?? '?', '--bundle', next?.bundle ?? '?', '--health-check-url', `${baseUrl}/health/{host}`];
    const refused = await pideploy(args, project, env);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain(`the health check ${baseUrl}/health/pi2 answered HTTP 503`);
    expect(await runs('pi2')).toBe(before);
    // The service is fixed: the same activation is confirmed (pideploy.json's command passed too).
    answers.set('pi2', 200);
    const confirmed = await pideploy(args, project, env);
    expect([confirmed.code, confirmed.stderr]).toEqual([0, expect.not.stringContaining('pideploy:')]);
    expect(confirmed.stdout).toContain('confirmed');
    expect(await runs('pi2')).toBe(next?.toplevel);
    // With the command made to fail, activate refuses to confirm even though the URL answers 2xx.
    await labExec('pi2', ['sh', '-c', 'echo something-else > /etc/pideploy-health-wanted']);
    const forced = await pideploy([...args, '--force'], project, env);
    expect(forced.code).toBe(1);
    expect(forced.stderr).toMatch(/the health check `sh -c .+` exited 1/u);
    expect(await runs('pi2')).toBe(next?.toplevel);
  });

  it("a check gets no more than the time left before the host's confirmation deadline: it fails, saying so, and the host rolls back", async () => {
    const built = await pideploy(['deploy', 'pi3', '--dry-run', '--json'], project, env);
    const next = resultOf(built.stdout)[0];
    const before = await runs('pi3');
    expect(next?.toplevel).not.toBe(before);
    const started = Date.now();
    // A 60 s timeout, 8 s to confirm: the check is stopped with the deadline still ahead (3 s are kept for the confirmation).
    const slow = await pideploy(
      ['activate', 'pi3', '--toplevel', next?.toplevel ?? '?', '--confirm-timeout', '8', '--health-check-command', 'sleep 30', '--health-check-timeout', '60'],
      project,
      env,
    );
    expect(slow.code).toBe(1);
    expect(slow.stderr).toMatch(/the health check `sh -c 'sleep 30'` did not finish within [0-5](?:\.\d+)? s \(the time left before pi3's confirmation deadline \(--confirm-timeout 8\)\)/u);
    expect(slow.stderr).toMatch(/the host rolled back to generation \d+/u);
    expect(Date.now() - started).toBeLessThan(30_000);
    expect(await runs('pi3')).toBe(before);
  });
});

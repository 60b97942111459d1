import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { createBaseContext } from '@pideploy/core';
import { LAB_SUDO_PASSWORD, labDown, labExec, labStatus, labUp, type LabHostStatus, type LabStatus } from '@pideploy/lab';
import { queryClosurePathInfos } from '@pideploy/nix';
import { connectSsh, createSudo, type SshSession } from '@pideploy/ssh';
import { expect, it } from 'vitest';
import { generateCacheKey, pushToBinaryCache } from '../src/cache-push.js';
import { serveBinaryCache } from '../src/cache-server.js';
import { substituteFromCache } from '../src/cache-substitute.js';
import { copyClosure } from '../src/copy-closure.js';
import type { StoreAccess } from '../src/remote-serve.js';

/*
 * Fleet of N=5 lab hosts: copyClosure to each host (in parallel, one session each) against the
 * fleet cache (push once into a fresh signed cache, serve it, every host substitutes through an
 * ssh -R tunnel over its one session, in parallel). Wall time (push included), bytes on the
 * hosts' links (all 5 veths, both directions) and logins; median of RUNS. The closures are
 * deleted from every host before each run. pi1/pi2 trusted, pi3…pi5 untrusted (sudo password).
 * Scenario (c) shapes each host's link (tc tbf on the lab's own veth, removed afterwards) to model
 * Pis on a 100 Mbit/s network, where bytes on the link, not the memory-speed veth, set the pace.
 */

const run = promisify(execFile);
const instance = Number(process.env['PIDEPLOY_LAB_INSTANCE'] ?? '0');
const RUNS = Number(process.env['PIDEPLOY_BENCH_RUNS'] ?? '3');
const HOSTS = 5;

interface Sample {
  readonly seconds: number;
  readonly wireBytes: number;
  readonly logins: number;
  readonly pushSeconds?: number;
}

it('fleet of 5: copyClosure to each vs push once + substitute on each', async () => {
  const untrusted = { trusted: false } as const;
  await labUp({ instance, hosts: HOSTS, hostSettings: { pi3: untrusted, pi4: untrusted, pi5: untrusted } });
  const lab: LabStatus = await labStatus({ instance });
  const hosts = lab.hosts.slice(0, HOSTS) as LabHostStatus[];
  const env = { ...process.env, ...lab.env };
  const work = mkdtempSync(path.join(tmpdir(), 'pideploy-cache-bench-'));
  const salt = `${Date.now()}`;
  const build = async (expression: string) => (await run('nix-build', ['--no-out-link', '-E', expression], { env, maxBuffer: 1 << 24 })).stdout.trim();
  // (a) 200 small paths of hex text (compressible, like the many small files of a system);
  // (b) one 128 MiB path: 64 MiB of random bytes + 64 MiB of text (a binary-like 2:1 mix).
  const many = await build(`let leaf = i: builtins.derivation { name = "cache-bench-leaf-\${toString i}"; system = "x86_64-linux"; builder = "/bin/sh"; PATH = "/usr/bin:/bin"; salt = "${salt}";
      args = ["-c" "head -c 5500 /dev/urandom | od -An -x | head -c 5500 > $out"]; };
    in builtins.derivation { name = "cache-bench-many"; system = "x86_64-linux"; builder = "/bin/sh"; leaves = map leaf (builtins.genList (i: i) 200); args = ["-c" "echo $leaves > $out"]; }`);
  const big = await build(`builtins.derivation { name = "cache-bench-big"; system = "x86_64-linux"; builder = "/bin/sh"; PATH = "/usr/bin:/bin"; salt = "${salt}";
      args = ["-c" "mkdir $out; head -c 67108864 /dev/urandom > $out/random; head -c 50331648 /dev/urandom | od -An -x | head -c 67108864 > $out/text"]; }`);
  const key = await generateCacheKey({ name: 'cache-bench-1', directory: path.join(work, 'keys'), localNixEnv: env });

  const counter = (host: LabHostStatus, name: string) => Number(readFileSync(`/sys/class/net/${host.hostInterface}/statistics/${name}`, 'utf8'));
  const wire = () => hosts.reduce((sum, host) => sum + counter(host, 'tx_bytes') + counter(host, 'rx_bytes'), 0);
  const logins = () => hosts.reduce((sum, host) => sum + (readFileSync(host.sshdLog, 'utf8').match(/Accepted publickey/gu) ?? []).length, 0);
  // Untrusted hosts: the sudo runner of the same session (the mode is known: no extra check).
  const access = async (host: LabHostStatus, session: SshSession): Promise<StoreAccess> =>
    host.trusted ? { mode: 'direct' } : { mode: 'sudo', runner: await createSudo(session, { assumeMode: 'password', password: LAB_SUDO_PASSWORD }) };
  const connect = (host: LabHostStatus) => connectSsh(host.name, { sshConfigFile: lab.sshConfig, agent: false }, createBaseContext());
  const forgetEverywhere = async (paths: readonly string[]) => {
    for (const host of hosts) {
      const result = await labExec(host.name, ['nix-store', '--delete', ...paths], { instance });
      expect(result.exitCode, result.stderr).toBe(0);
    }
  };
  const measure = async (body: () => Promise<number | undefined>): Promise<Sample> => {
    const [wire0, logins0] = [wire(), logins()];
    const start = performance.now();
    const pushSeconds = await body();
    const seconds = (performance.now() - start) / 1000;
    await new Promise((resolve) => setTimeout(resolve, 300));
    return { seconds, wireBytes: wire() - wire0, logins: logins() - logins0, ...(pushSeconds === undefined ? {} : { pushSeconds }) };
  };

  const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] as number;
  const rows: Record<string, unknown>[] = [];
  const shape = async (rate: string | undefined) => {
    for (const host of hosts) {
      await run('tc', ['qdisc', 'del', 'dev', host.hostInterface, 'root']).catch(() => undefined);
      if (rate !== undefined) await run('tc', ['qdisc', 'add', 'dev', host.hostInterface, 'root', 'tbf', 'rate', rate, 'burst', '64kb', 'latency', '50ms']);
    }
  };
  for (const scenario of [
    { name: '(a) 200 small paths', path: many, rate: undefined },
    { name: '(b) one 128 MiB path (½ random, ½ text)', path: big, rate: undefined },
    { name: '(c) = (b), each host link shaped to 100 Mbit/s', path: big, rate: '100mbit' },
  ]) {
    await shape(scenario.rate);
    const closure = await queryClosurePathInfos([scenario.path], { env });
    const narBytes = closure.reduce((sum, info) => sum + info.narSize, 0);
    const samples: { copy: Sample[]; cache: Sample[] } = { copy: [], cache: [] };
    for (let round = 0; round < RUNS; round += 1) {
      await forgetEverywhere(closure.map((info) => info.path));
      samples.copy.push(
        await measure(async () => {
          await Promise.all(
            hosts.map(async (host) => {
              await using session = await connect(host);
              await copyClosure({ host: host.name, session, paths: [scenario.path], closure, access: await access(host, session) }, createBaseContext());
            }),
          );
          return undefined;
        }),
      );
      await forgetEverywhere(closure.map((info) => info.path));
      const cacheDirectory = path.join(work, `cache-${round}-${rows.length}`);
      samples.cache.push(
        await measure(async () => {
          const pushStart = performance.now();
          const pushed = await pushToBinaryCache({ paths: [scenario.path], cacheDirectory, secretKeyFile: key.secretKeyFile, closure, localNixEnv: env }, createBaseContext());
          const pushSeconds = (performance.now() - pushStart) / 1000;
          await using server = await serveBinaryCache({ directory: cacheDirectory });
          await Promise.all(
            hosts.map(async (host) => {
              await using session = await connect(host);
              const result = await substituteFromCache(
                { host: host.name, session, paths: [scenario.path], cacheUrl: server.url, publicKey: pushed.publicKey, closure: pushed.closure, access: await access(host, session) },
                createBaseContext(),
              );
              expect(result.pathsFetched).toHaveLength(closure.length);
            }),
          );
          return pushSeconds;
        }),
      );
      rmSync(cacheDirectory, { recursive: true, force: true });
    }
    const summary = (list: Sample[]) => ({
      seconds: median(list.map((sample) => sample.seconds)),
      wireBytes: median(list.map((sample) => sample.wireBytes)),
      logins: Math.max(...list.map((sample) => sample.logins)),
      pushSeconds: median(list.map((sample) => sample.pushSeconds ?? 0)),
    });
    await shape(undefined);
    const copy = summary(samples.copy);
    const cache = summary(samples.cache);
    rows.push({
      scenario: scenario.name,
      'NAR B (1 host)': narBytes,
      'copy ×5 s': copy.seconds.toFixed(3),
      'cache s (push+5 subst.)': cache.seconds.toFixed(3),
      'of which push s': cache.pushSeconds.toFixed(3),
      'time ratio cache/copy': (cache.seconds / copy.seconds).toFixed(2),
      'copy link B': copy.wireBytes,
      'cache link B': cache.wireBytes,
      'link bytes ratio': (cache.wireBytes / copy.wireBytes).toFixed(3),
      logins: `${copy.logins} / ${cache.logins}`,
    });
  }
  console.table(rows);
  writeFileSync(new URL('./cache-results.json', import.meta.url), `${JSON.stringify({ version: 1, hosts: HOSTS, runs: RUNS, date: new Date().toISOString(), rows }, null, 2)}\n`);
  rmSync(work, { recursive: true, force: true });
  if (instance !== 0 || process.env['CI'] !== undefined) await labDown({ instance });
});

import { execFile } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { createBaseContext } from '@pideploy/core';
import { labDown, labExec, labStatus, labUp, type LabHostStatus, type LabStatus } from '@pideploy/lab';
import { queryClosurePathInfos } from '@pideploy/nix';
import { connectSsh } from '@pideploy/ssh';
import { expect, it } from 'vitest';
import { copyClosure } from '../src/copy-closure.js';

/*
 * pideploy's copy against `nix-copy-closure --to` on the same lab host, in the same run:
 * (a) 200 small paths, (b) one 200 MiB path, (c) a no-op copy. Wall time, bytes on the wire
 * (host-side veth counters, both directions) and SSH logins; median of RUNS runs each, the
 * remote closure deleted before every non-no-op run so both tools copy the same thing.
 */

const run = promisify(execFile);
const instance = Number(process.env['PIDEPLOY_LAB_INSTANCE'] ?? '0');
const RUNS = Number(process.env['PIDEPLOY_BENCH_RUNS'] ?? '3');

interface Sample {
  readonly seconds: number;
  readonly wireBytes: number;
  readonly logins: number;
}

it('copy vs nix-copy-closure', async () => {
  await labUp({ instance, hosts: 1 });
  const lab: LabStatus = await labStatus({ instance });
  const host = lab.hosts[0] as LabHostStatus;
  const env = { ...process.env, ...lab.env };
  const salt = `${Date.now()}`;
  const build = async (expression: string) =>
    (await run('nix-build', ['--no-out-link', '-E', expression], { env, maxBuffer: 1 << 24 })).stdout.trim();
  const many = await build(`let leaf = i: builtins.derivation { name = "bench-leaf-\${toString i}"; system = "x86_64-linux"; builder = "/bin/sh"; PATH = "/usr/bin:/bin"; salt = "${salt}";
      args = ["-c" "head -c 5500 /dev/urandom | od -An -x | head -c 5500 > $out"]; };
    in builtins.derivation { name = "bench-many"; system = "x86_64-linux"; builder = "/bin/sh"; leaves = map leaf (builtins.genList (i: i) 200); args = ["-c" "echo $leaves > $out"]; }`);
  const big = await build(`builtins.derivation { name = "bench-big"; system = "x86_64-linux"; builder = "/bin/sh"; PATH = "/usr/bin:/bin"; salt = "${salt}";
      args = ["-c" "head -c 209715200 /dev/urandom > $out"]; }`);
  const closureOf = async (path: string) => (await queryClosurePathInfos([path], { env })).map((info) => info.path);
  const closures = { many: await closureOf(many), big: await closureOf(big) };

  const counter = (name: string) => Number(readFileSync(`/sys/class/net/${host.hostInterface}/statistics/${name}`, 'utf8'));
  const wire = () => counter('tx_bytes') + counter('rx_bytes');
  const logins = () => (readFileSync(host.sshdLog, 'utf8').match(/Accepted publickey/gu) ?? []).length;
  const forget = async (paths: readonly string[]) => {
    const result = await labExec(host.name, ['nix-store', '--delete', ...paths], { instance });
    expect(result.exitCode, result.stderr).toBe(0);
  };
  const measure = async (body: () => Promise<void>): Promise<Sample> => {
    const [wire0, logins0] = [wire(), logins()];
    const start = performance.now();
    await body();
    const seconds = (performance.now() - start) / 1000;
    await new Promise((resolve) => setTimeout(resolve, 300));
    return { seconds, wireBytes: wire() - wire0, logins: logins() - logins0 };
  };
  const tools = {
    'nix-copy-closure': (path: string) => async () => {
      await run('nix-copy-closure', ['--to', host.target, path], { env: { ...env, NIX_SSHOPTS: `-F ${lab.sshConfig}` } });
    },
    pideploy: (path: string) => async () => {
      await using session = await connectSsh(host.name, { sshConfigFile: lab.sshConfig, agent: false }, createBaseContext());
      await copyClosure({ host: host.name, session, paths: [path], localNixEnv: env }, createBaseContext());
    },
    'pideploy (CLI process)': (path: string) => async () => {
      await run('node', [new URL('../../../apps/cli/dist/bin.js', import.meta.url).pathname, 'copy', host.name, '--ssh-config', lab.sshConfig, '--path', path], { env });
    },
  } as const;
  const scenarios = [
    { name: '(a) 200 small paths', path: many, closure: closures.many, noop: false },
    { name: '(b) one 200 MiB path', path: big, closure: closures.big, noop: false },
    { name: '(c) no-op (201 paths present)', path: many, closure: closures.many, noop: true },
  ];
  const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] as number;
  const rows: Record<string, unknown>[] = [];
  for (const scenario of scenarios) {
    const samples: Record<string, Sample[]> = {};
    for (let round = 0; round < RUNS; round += 1) {
      for (const [tool, make] of Object.entries(tools)) {
        if (scenario.noop) await tools['nix-copy-closure'](scenario.path)();
        else await forget(scenario.closure);
        (samples[tool] ??= []).push(await measure(make(scenario.path)));
      }
    }
    const summary = Object.fromEntries(
      Object.entries(samples).map(([tool, list]) => [tool, { seconds: median(list.map((s) => s.seconds)), wireBytes: median(list.map((s) => s.wireBytes)), logins: Math.max(...list.map((s) => s.logins)) }]),
    );
    const peer = summary['nix-copy-closure'] as Sample;
    const ours = summary['pideploy'] as Sample;
    const cli = summary['pideploy (CLI process)'] as Sample;
    rows.push({
      scenario: scenario.name,
      'nix-copy-closure s': peer.seconds.toFixed(3),
      'pideploy s': ours.seconds.toFixed(3),
      'time ratio': (ours.seconds / peer.seconds).toFixed(2),
      'CLI process s': cli.seconds.toFixed(3),
      'CLI ratio': (cli.seconds / peer.seconds).toFixed(2),
      'nix-copy-closure wire B': peer.wireBytes,
      'pideploy wire B': ours.wireBytes,
      'wire ratio': (ours.wireBytes / peer.wireBytes).toFixed(4),
      logins: `${peer.logins} / ${ours.logins} / ${cli.logins}`,
    });
  }
  console.table(rows);
  writeFileSync(new URL('./results.json', import.meta.url), `${JSON.stringify({ version: 1, runs: RUNS, date: new Date().toISOString(), rows }, null, 2)}\n`);
  if (instance !== 0 || process.env['CI'] !== undefined) await labDown({ instance });
});

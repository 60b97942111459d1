import { execFile, execFileSync, spawn, spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { LAB_SUDO_PASSWORD, labDown, labUp, type LabStatus } from '@pideploy/lab';
import { expect, it } from 'vitest';

/*
 * `pideploy deploy` against the Nix tools doing the same job, in the same run:
 * (a) a no-op redeploy of one host: pideploy's wall time minus Nix's own evaluation of the same
 *     expression (`nix-build` of `pideploy build --print-expr`), and against the Nix tools'
 *     no-op equivalent (that nix-build + `nix-copy-closure --to`); NAR bytes sent must be 0 and
 *     the activation skipped;
 * (b) a changed configuration deployed to 10 hosts with --parallel 10 vs to 1 host (goal ≤ 3×),
 *     for aarch64 targets (emulated by the lab) and x86_64 targets (native);
 * (c) `pideploy --help` cold start (a new node process; goal < 300 ms) vs `nix-build --version`.
 * Medians of RUNS runs.
 */

const run = promisify(execFile);
const bin = fileURLToPath(new URL('../dist/bin.js', import.meta.url));
const instance = Number(process.env['PIDEPLOY_LAB_INSTANCE'] ?? '0');
const RUNS = Number(process.env['PIDEPLOY_BENCH_RUNS'] ?? '3');
const HOSTS = 10;

interface DeployJson {
  readonly result: {
    readonly ok: boolean;
    readonly results: readonly {
      readonly host: string;
      readonly ok: boolean;
      readonly toplevel: string;
      readonly copy?: { readonly bytesSent: number; readonly pathsSent: readonly string[] };
      readonly activation?: { readonly outcome: string };
      readonly error?: { readonly message: string };
    }[];
  };
}

const CLOCK_TICKS = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());

/**
 * Runs the CLI with the sudo password on stdin; returns its wall time, its CPU time with all it
 * waited for (its nix, git …: the cutime of a shell around it, from /proc) and its final NDJSON result.
 */
async function timedDeploy(args: readonly string[], cwd: string, env: NodeJS.ProcessEnv): Promise<{ seconds: number; cpuSeconds: number; result: DeployJson['result'] }> {
  const started = performance.now();
  const { stdout, code, stderr, stat } = await new Promise<{ stdout: string; stderr: string; code: number | null; stat: string }>((resolve) => {
    const script = '"$0" "$@"; status=$?; read -r stat </proc/$$/stat; printf "%s" "$stat" >&3; exit $status';
    const child = spawn('sh', ['-c', script, process.execPath, bin, 'deploy', ...args, '--sudo-password-stdin', '--json'], { cwd, env, stdio: ['pipe', 'pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    let stats = '';
    child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (err += chunk.toString()));
    (child.stdio[3] as NodeJS.ReadableStream).on('data', (chunk: Buffer) => (stats += chunk.toString()));
    child.on('close', (exit) => resolve({ stdout: out, stderr: err, code: exit, stat: stats }));
    child.stdin.end(`${LAB_SUDO_PASSWORD}\n`);
  });
  const seconds = (performance.now() - started) / 1000;
  const last = stdout.trim().split('\n').at(-1) ?? '{}';
  const parsed = JSON.parse(last) as Partial<DeployJson>;
  if (code !== 0 || parsed.result?.ok !== true) throw new Error(`deploy ${args.join(' ')} failed (exit ${code}): ${stderr.slice(-2000)} ${last.slice(0, 2000)}`);
  // /proc/PID/stat after the command name: state is field 3; cutime and cstime are fields 16 and 17.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const cpuSeconds = (Number(fields[13]) + Number(fields[14])) / CLOCK_TICKS;
  if (!Number.isFinite(cpuSeconds)) throw new Error(`cannot read the CPU time of the deploy from ${JSON.stringify(stat)}`);
  return { seconds, cpuSeconds, result: parsed.result };
}

async function wallSeconds(argv: readonly string[], options: { env?: NodeJS.ProcessEnv; cwd?: string } = {}): Promise<number> {
  const started = performance.now();
  await run(argv[0] as string, argv.slice(1), { ...options, maxBuffer: 64 << 20 });
  return (performance.now() - started) / 1000;
}

/** Busy and total jiffies of all CPUs (/proc/stat), to tell a CPU-bound run from a slow one. */
function cpuJiffies(): { busy: number; total: number } {
  const fields = (readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '').trim().split(/\s+/u).slice(1).map(Number);
  const [user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0] = fields;
  return { busy: user + nice + system + irq + softirq, total: user + nice + system + idle + iowait + irq + softirq };
}

const median = (values: readonly number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] as number;

/**
 * What starting a process costs on this machine now (fork + exec of /bin/true, median of 50, ms):
 * the ten lab Pis start hundreds (sshd, sudo, their shells), so run (b) moves with it from one VM to
 * the next; the tables of different days compare only beside it.
 */
function processStartMs(): number {
  const times: number[] = [];
  for (let round = 0; round < 50; round += 1) {
    const started = performance.now();
    spawnSync('/bin/true');
    times.push(performance.now() - started);
  }
  return median(times);
}

it('deploy: no-op redeploy, 10 hosts vs 1, CLI cold start', async () => {
  // The hosts as a real one: no hook logging sudo's password checks (tests use it).
  const lab: LabStatus = await labUp({ instance, hosts: HOSTS, recordSudoPasswordChecks: false });
  const env = { ...process.env, ...lab.env, PIDEPLOY_LAB_INSTANCE: String(instance) };
  const project = await mkdtemp(path.join(os.tmpdir(), 'pideploy-bench-deploy-'));
  await run(process.execPath, [bin, 'init', project, '--lab', '--force'], { env });
  await rename(path.join(project, 'configuration.nix'), path.join(project, 'common.nix'));
  const configure = (salt: string) => writeFile(path.join(project, 'configuration.nix'), `{ ... }: { imports = [ ./common.nix ]; environment.etc."bench-salt".text = "${salt}"; }\n`);
  await configure('initial');
  // Every host runs the initial system before measuring.
  await timedDeploy(['--parallel', String(HOSTS)], project, env);

  // (a) no-op redeploy of pi1.
  const expression = (await run(process.execPath, [bin, 'build', 'pi1', '--print-expr'], { cwd: project, env, maxBuffer: 64 << 20 })).stdout;
  const pi1 = lab.hosts[0];
  if (pi1 === undefined) throw new Error('no lab host');
  const noop = { pideploy: [] as number[], nixEval: [] as number[], nixTools: [] as number[], bytesSent: [] as number[] };
  for (let round = 0; round < RUNS; round += 1) {
    const deployed = await timedDeploy(['pi1'], project, env);
    const host = deployed.result.results[0];
    expect(host?.activation?.outcome).toBe('skipped');
    expect(host?.copy?.pathsSent).toEqual([]);
    noop.pideploy.push(deployed.seconds);
    noop.bytesSent.push(host?.copy?.bytesSent ?? Number.NaN);
    const nixEval = await wallSeconds(['nix-build', '--no-out-link', '-E', expression], { env: { ...env, NIX_PATH: '' } });
    noop.nixEval.push(nixEval);
    const copy = await wallSeconds(['nix-copy-closure', '--to', pi1.target, host?.toplevel ?? ''], { env: { ...env, NIX_SSHOPTS: `-F ${pi1.sshConfig}` } });
    noop.nixTools.push(nixEval + copy);
  }

  // (b) a changed configuration to 1 host, then to all 10 at once: with the Pi's aarch64 system
  // (the lab's targets then run it under qemu on this machine's CPUs) and with x86_64 targets
  // (native here, so the ratio measures pideploy rather than the emulation of ten targets).
  const fleetRatio = async (system: string) => {
    const configFile = path.join(project, 'pideploy.json');
    const config = JSON.parse(readFileSync(configFile, 'utf8')) as { defaults: { system: string } };
    config.defaults.system = system;
    writeFileSync(configFile, `${JSON.stringify(config, null, 2)}\n`);
    await configure(`${system}-initial`);
    await timedDeploy(['--parallel', String(HOSTS)], project, env);
    const fleet = { one: [] as number[], ten: [] as number[], tenBusy: [] as number[], oneCpu: [] as number[], tenCpu: [] as number[], tenAllCpu: [] as number[] };
    for (let round = 0; round < RUNS; round += 1) {
      await configure(`one-${Date.now()}`);
      const one = await timedDeploy(['pi1'], project, env);
      fleet.one.push(one.seconds);
      fleet.oneCpu.push(one.cpuSeconds);
      await configure(`ten-${Date.now()}`);
      const before = cpuJiffies();
      const ten = await timedDeploy(['--parallel', String(HOSTS)], project, env);
      const after = cpuJiffies();
      fleet.tenBusy.push((after.busy - before.busy) / (after.total - before.total));
      fleet.tenCpu.push(ten.cpuSeconds);
      fleet.tenAllCpu.push((after.busy - before.busy) / CLOCK_TICKS);
      expect(ten.result.results.filter((host) => host.activation?.outcome === 'confirmed')).toHaveLength(HOSTS);
      fleet.ten.push(ten.seconds);
    }
    return {
      scenario: `(b) changed ${system} system, ${HOSTS} hosts --parallel ${HOSTS} vs 1`,
      'pideploy s': `${median(fleet.ten).toFixed(3)} vs ${median(fleet.one).toFixed(3)}`,
      'Nix s': '-',
      ratio: (median(fleet.ten) / median(fleet.one)).toFixed(2),
      // When the CPUs are saturated the ratio measures this machine, not pideploy (a real fleet
      // activates on its own hardware).
      note:
        `goal ≤ 3×; CPUs busy during the ${HOSTS}-host run: ${(median(fleet.tenBusy) * 100).toFixed(0)} % of ${os.availableParallelism()}; ` +
        `CPU s: pideploy with its nix ${median(fleet.tenCpu).toFixed(2)} vs ${median(fleet.oneCpu).toFixed(2)} for 1 host (${(median(fleet.tenCpu) / median(fleet.oneCpu)).toFixed(2)}×), ` +
        `the rest of the machine (the lab hosts: sshd, sudo, nix-daemon, their activation) ${(median(fleet.tenAllCpu) - median(fleet.tenCpu)).toFixed(2)}; ` +
        // No schedule runs those CPU-seconds (counted over all online CPUs, /proc/stat) on them in less time than this.
        `floor for these CPU-seconds on ${os.cpus().length} CPUs: ${(median(fleet.tenAllCpu) / os.cpus().length).toFixed(3)} s = ${(median(fleet.tenAllCpu) / os.cpus().length / median(fleet.one)).toFixed(2)}× the 1-host run; ` +
        `a process start (fork + exec of /bin/true) costs ${processStartMs().toFixed(2)} ms on this machine now`,
    };
  };
  const fleetRows = [await fleetRatio('aarch64-linux'), await fleetRatio('x86_64-linux')];

  // (c) cold start of a new process.
  const cold = { help: [] as number[], version: [] as number[], nixBuild: [] as number[], node: [] as number[] };
  for (let round = 0; round < Math.max(RUNS, 10); round += 1) {
    cold.help.push(await wallSeconds([process.execPath, bin, '--help']));
    cold.version.push(await wallSeconds([process.execPath, bin, '--version']));
    cold.nixBuild.push(await wallSeconds(['nix-build', '--version']));
    cold.node.push(await wallSeconds([process.execPath, '-e', '0']));
  }

  const overhead = median(noop.pideploy) - median(noop.nixEval);
  const rows = [
    {
      scenario: '(a) no-op redeploy, 1 host',
      'pideploy s': median(noop.pideploy).toFixed(3),
      'Nix s': `${median(noop.nixTools).toFixed(3)} (nix-build ${median(noop.nixEval).toFixed(3)} + nix-copy-closure)`,
      ratio: (median(noop.pideploy) / median(noop.nixTools)).toFixed(2),
      note: `pideploy minus Nix's evaluation: ${overhead.toFixed(3)} s (goal ≤ 1 s); NAR bytes sent ${Math.max(...noop.bytesSent)}`,
    },
    ...fleetRows,
    {
      scenario: '(c) cold start: pideploy --help',
      'pideploy s': median(cold.help).toFixed(3),
      'Nix s': `${median(cold.nixBuild).toFixed(3)} (nix-build --version)`,
      ratio: (median(cold.help) / median(cold.nixBuild)).toFixed(2),
      note: `goal < 0.300 s; --version ${median(cold.version).toFixed(3)} s; bare node ${median(cold.node).toFixed(3)} s`,
    },
  ];
  console.table(rows);
  writeFileSync(new URL('./results.json', import.meta.url), `${JSON.stringify({ version: 1, runs: RUNS, date: new Date().toISOString(), rows }, null, 2)}\n`);
  expect(Math.max(...noop.bytesSent)).toBe(0);
  // The project and its GC roots (one per host and bundle batch): the store may collect them now.
  await rm(project, { recursive: true, force: true });
  if (instance !== 0 || process.env['CI'] !== undefined) await labDown({ instance });
});

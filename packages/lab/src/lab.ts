import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, rmdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { PideployError, createBaseContext, type PideployContext } from '@pideploy/core';
import { DEFAULT_LAB_CACHE_DIR, ensureAarch64Busybox, ensureQemuAarch64Binfmt, removeQemuAarch64Binfmt } from './aarch64.js';
import { createFixtureRepository } from './git-repo.js';
import {
  LAB_DEPLOY_USER,
  LAB_MAX_HOSTS,
  LAB_SUDO_LOG,
  LAB_SUDO_PASSWORD_CHECK_LOG,
  LAB_SUDO_PASSWORD,
  labHostIndex,
  planLabHost,
  resolveLabInstance,
  renderEnvFile,
  renderKnownHosts,
  renderSshConfig,
  type LabHostPlan,
  type LabSudoMode,
} from './host-plan.js';
import {
  LAB_MAX_LINK_RATE_MBIT,
  cutLabHostSshSessions,
  ensureLabHostNetwork,
  isLabHostRunning,
  provisionLabHost,
  readLabHostProcesses,
  restartLabHostNixDaemon,
  runLabHostConsoleCommand,
  shapeLabHostLink,
  startLabHost,
  stopLabHost,
  stopLabHostProcesses,
} from './hosts.js';
import { labLayout, resolveLabDir, type LabLayout } from './layout.js';
import { assembleMiniNixpkgs } from './mini-nixpkgs.js';
import { labLocalNixEnv } from './nix-env.js';
import { isProcessAlive, readPidFile, spawnDetached, terminateProcesses, waitForTcpPort } from './processes.js';
import { runCommand, runCommandAllowingFailure } from './run.js';
import { readLabState, writeLabState, type LabNixpkgsInfo, type LabStateFile } from './state.js';

/** The archive server's port unless `archivePort` says otherwise (fixed so pinned URLs survive restarts). */
export const DEFAULT_ARCHIVE_PORT = 18471;

/** The mini-nixpkgs revisions the lab publishes, oldest first, with their refs. */
const MINI_NIXPKGS_REVISIONS = [
  { version: '24.05-lab', message: 'mini-nixpkgs 24.05-lab', branches: ['nixos-24.05'], tags: ['24.05'] },
  { version: '24.11-lab', message: 'mini-nixpkgs 24.11-lab', branches: ['nixos-24.11', 'nixos-unstable', 'master'], tags: ['24.11'] },
] as const;

/** Options shared by every lab function. */
export interface LabOptions {
  /** The lab directory (default: `$PIDEPLOY_LAB_DIR`, else /var/lib/pideploy-lab, or /var/lib/pideploy-lab-<instance>). */
  readonly labDir?: string | undefined;
  /** Which lab (0…9, default `$PIDEPLOY_LAB_INSTANCE` or 0): labs of different instances run side by side. */
  readonly instance?: number | undefined;
}

/** Resolves instance, directory and layout of the lab the options name. */
function resolveLab(options: LabOptions): { readonly instance: number; readonly layout: LabLayout } {
  const instance = resolveLabInstance(options.instance);
  return { instance, layout: labLayout(resolveLabDir(options.labDir, process.env, instance)) };
}

/** Options of {@link labUp}. */
export interface LabUpOptions extends LabOptions {
  /** Ensure hosts pi1…piN run (default 1). Hosts beyond N that already run are left running. */
  readonly hosts?: number | undefined;
  /** The deploy user is not in the hosts' nix `trusted-users` (default: trusted). */
  readonly untrusted?: boolean | undefined;
  /** The deploy user's sudo needs no password (default: the lab password). */
  readonly nopasswd?: boolean | undefined;
  /** Per-host overrides of the two knobs above, by host name. */
  readonly hostSettings?:
    | Readonly<Record<string, { readonly trusted?: boolean; readonly sudo?: LabSudoMode; readonly storeSizeMiB?: number }>>
    | undefined;
  /** Port of the GitHub stand-in on 127.0.0.1 (default {@link DEFAULT_ARCHIVE_PORT} + instance). */
  readonly archivePort?: number | undefined;
  /**
   * Log every sudo password check on the hosts (`sudoPasswordChecks`; default true). Each check
   * then also starts a small hook (about 5 ms of a host's CPU): benchmarks turn it off.
   */
  readonly recordSudoPasswordChecks?: boolean | undefined;
}

/** One lab host as `lab status` describes it: all a test or script needs to drive and observe it. */
export interface LabHostStatus {
  readonly name: string;
  /** `deploy@pi1`: use with the lab's ssh_config. */
  readonly target: string;
  /** `root@pi1` (root key login is allowed). */
  readonly rootTarget: string;
  readonly user: string;
  readonly address: string;
  readonly port: number;
  readonly sshConfig: string;
  readonly knownHosts: string;
  readonly identityFile: string;
  /** The deploy user's sudo password (lab-only fixed value); null with NOPASSWD. */
  readonly sudoPassword: string | null;
  readonly sudo: LabSudoMode;
  /** Whether the deploy user is in the host nix-daemon's trusted-users. */
  readonly trusted: boolean;
  /** Size limit of the host's store in MiB, or null for an unlimited on-disk store. */
  readonly storeSizeMiB: number | null;
  readonly running: boolean;
  /** sshd's log (LogLevel VERBOSE): count `Accepted publickey` lines to count logins. */
  readonly sshdLog: string;
  /** sudo's log of the deploy user's commands (see `LAB_SUDO_LOG`), seen from this machine. */
  readonly sudoLog: string;
  /** One line per password check of sudo (see `LAB_SUDO_PASSWORD_CHECK_LOG`; unless `labUp` was told not to record them), seen from this machine. */
  readonly sudoPasswordChecks: string;
  readonly nixDaemonLog: string;
  /** The host's own nix store, seen from this machine. */
  readonly storeDir: string;
  readonly netns: string;
  /** The deployer-side veth (byte counters in /sys/class/net/<it>/statistics). */
  readonly hostInterface: string;
  readonly pids: { readonly sshd?: number | undefined; readonly nixDaemon?: number | undefined };
}

/** The whole lab, as `pideploy lab status --json` prints it. */
export interface LabStatus {
  readonly version: 1;
  readonly labDir: string;
  /** The lab instance (0…9). */
  readonly instance: number;
  /** True when at least one host runs. */
  readonly up: boolean;
  readonly sshConfig: string;
  readonly knownHosts: string;
  readonly identityFile: string;
  /** `source` it to point nix, ssh and pideploy at the lab. */
  readonly envFile: string;
  /** Environment for local nix and pideploy (what the env file exports). */
  readonly env: Readonly<Record<string, string>>;
  readonly hosts: readonly LabHostStatus[];
  readonly archiveServer: {
    readonly url: string;
    readonly running: boolean;
    readonly requestLog: string;
  } | null;
  /** mini-nixpkgs as the archive server publishes it (`NixOS/nixpkgs`), each revision with its archive URL. */
  readonly nixpkgs: {
    readonly repository: string;
    readonly branches: Readonly<Record<string, string>>;
    readonly tags: Readonly<Record<string, string>>;
    readonly revisions: readonly { readonly rev: string; readonly version: string; readonly url: string }[];
  } | null;
  readonly aarch64: { readonly busyboxDir: string; readonly binfmtRegisteredByLab: boolean };
}

/** Fails with a one-line error unless running as root. */
export function assertRoot(action: string): void {
  if (process.getuid?.() !== 0) {
    throw new PideployError({
      code: 'PIDEPLOY_NOT_ROOT',
      message: `pideploy lab ${action} needs root: it creates network namespaces, mounts, users and binfmt entries`,
      hint: `run it as root, e.g. sudo pideploy lab ${action}`,
    });
  }
}

const REQUIRED_TOOLS: readonly { readonly tool: string; readonly debianPackage: string }[] = [
  { tool: 'nix-store', debianPackage: 'nix-bin' },
  { tool: 'sshd', debianPackage: 'openssh-server' },
  { tool: 'ssh-keygen', debianPackage: 'openssh-client' },
  { tool: 'sudo', debianPackage: 'sudo' },
  { tool: 'ip', debianPackage: 'iproute2' },
  { tool: 'unshare', debianPackage: 'util-linux' },
  { tool: 'nsenter', debianPackage: 'util-linux' },
  { tool: 'useradd', debianPackage: 'passwd' },
  { tool: 'qemu-aarch64-static', debianPackage: 'qemu-user-static' },
  { tool: 'git', debianPackage: 'git' },
];

async function assertToolsInstalled(): Promise<void> {
  const missing: { tool: string; debianPackage: string }[] = [];
  for (const requirement of REQUIRED_TOOLS) {
    const found = await runCommandAllowingFailure(['sh', '-c', 'command -v "$1"', 'sh', requirement.tool], {
      env: { PATH: `${process.env['PATH'] ?? ''}:/usr/sbin:/sbin` },
    });
    if (found.exitCode !== 0) missing.push(requirement);
  }
  if (missing.length > 0) {
    throw new PideployError({
      code: 'PIDEPLOY_MISSING_TOOL',
      message: `the lab needs ${missing.map((item) => item.tool).join(', ')}, which ${missing.length === 1 ? 'is' : 'are'} not installed`,
      hint: `apt-get install --no-install-recommends ${[...new Set(missing.map((item) => item.debianPackage))].join(' ')}`,
    });
  }
}

async function ensureClientKey(layout: LabLayout): Promise<string> {
  await mkdir(layout.sshDir, { recursive: true, mode: 0o700 });
  if (!existsSync(layout.identityFile)) {
    await runCommand(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-C', 'pideploy-lab', '-f', layout.identityFile]);
  }
  return `${layout.identityFile}.pub`;
}

function archiveServerEntry(): string {
  // src/lab.ts (tests) and dist/index.js (built) both sit one level below the package root.
  const packageRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
  return path.join(packageRoot, 'dist', 'archive-server', 'main.js');
}

async function ensureArchiveServer(layout: LabLayout, port: number): Promise<void> {
  const pidFile = path.join(layout.archiveDir, 'server.pid');
  if (isProcessAlive(readPidFile(pidFile), 'archive-server')) {
    await waitForTcpPort('127.0.0.1', port, 5000);
    return;
  }
  const entry = archiveServerEntry();
  if (!existsSync(entry)) {
    throw new PideployError({
      code: 'PIDEPLOY_LAB_SETUP_FAILED',
      message: `the archive server is not built (${entry} is missing)`,
      hint: 'run `pnpm build` first',
    });
  }
  const pid = spawnDetached(
    [process.execPath, entry, '--root', layout.archiveDir, '--port', String(port), '--host', '127.0.0.1'],
    path.join(layout.logsDir, 'archive-server.log'),
  );
  await writeFile(pidFile, `${pid}\n`);
  try {
    await waitForTcpPort('127.0.0.1', port, 10_000);
  } catch (error) {
    throw new PideployError({
      code: 'PIDEPLOY_LAB_SETUP_FAILED',
      message: `the lab's archive server did not start on 127.0.0.1:${port}`,
      hint: `see ${path.join(layout.logsDir, 'archive-server.log')}; another program may use the port (try --archive-port)`,
      cause: error,
    });
  }
}

async function publishMiniNixpkgs(layout: LabLayout): Promise<LabNixpkgsInfo> {
  const gitDir = path.join(layout.archiveDir, 'git', 'NixOS', 'nixpkgs.git');
  const workDir = await mkdtemp(path.join(layout.root, 'mini-nixpkgs-'));
  try {
    const commits = [];
    for (const revision of MINI_NIXPKGS_REVISIONS) {
      const tree = await assembleMiniNixpkgs({
        destination: path.join(workDir, revision.version),
        aarch64BusyboxDir: layout.aarch64BusyboxDir,
        version: revision.version,
      });
      commits.push({ tree, message: revision.message, branches: [...revision.branches], tags: [...revision.tags] });
    }
    const repository = await createFixtureRepository({ gitDir, commits, defaultBranch: 'master' });
    return {
      repository: 'NixOS/nixpkgs',
      branches: repository.branches,
      tags: repository.tags,
      revisions: repository.commits.map((commit, index) => ({ rev: commit.sha, version: MINI_NIXPKGS_REVISIONS[index]?.version ?? '' })),
    };
  } finally {
    await rm(workDir, { recursive: true, force: true });
  }
}

/** Runs `worker` over `items` with at most `limit` at a time. */
async function forEachLimited<T>(items: readonly T[], limit: number, worker: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const runners = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const item = items[next] as T;
      next += 1;
      await worker(item);
    }
  });
  await Promise.all(runners);
}

function localEnv(layout: LabLayout, archivePort: number, instance: number): Record<string, string> {
  const archiveBase = `http://127.0.0.1:${archivePort}`;
  return {
    ...labLocalNixEnv(layout.xdgCacheDir),
    NIX_SSHOPTS: `-F ${layout.sshConfig}`,
    PIDEPLOY_LAB_DIR: layout.root,
    PIDEPLOY_LAB_INSTANCE: String(instance),
    PIDEPLOY_GITHUB_API: archiveBase,
    PIDEPLOY_GITHUB_ARCHIVE: archiveBase,
  };
}

/**
 * Brings the lab up (idempotent): hosts pi1…piN each with its own network namespace, `/etc`,
 * `/nix` store, nix-daemon, sshd and a sudo-capable `deploy` user; qemu-aarch64 binfmt and a
 * static aarch64 busybox; the GitHub stand-in serving mini-nixpkgs. Re-running restarts only what
 * is dead and re-applies the knobs. Needs root.
 */
export async function labUp(options: LabUpOptions = {}, context: PideployContext = createBaseContext()): Promise<LabStatus> {
  assertRoot('up');
  await assertToolsInstalled();
  const { instance, layout } = resolveLab(options);
  const hostCount = options.hosts ?? 1;
  if (!Number.isInteger(hostCount) || hostCount < 1 || hostCount > LAB_MAX_HOSTS) {
    throw new PideployError({
      code: 'PIDEPLOY_USAGE',
      message: `a lab has 1 to ${LAB_MAX_HOSTS} hosts, not ${hostCount}`,
      hint: 'for example: pideploy lab up --hosts 3',
    });
  }
  for (const directory of [layout.root, layout.logsDir, layout.archiveDir, layout.xdgCacheDir]) {
    await mkdir(directory, { recursive: true });
  }
  const previous = await readLabState(layout.stateFile);
  if (previous !== undefined && previous.instance !== instance) {
    throw new PideployError({
      code: 'PIDEPLOY_USAGE',
      message: `${layout.root} holds lab instance ${previous.instance}, not ${instance}`,
      hint: `use PIDEPLOY_LAB_INSTANCE=${previous.instance}, or another --lab-dir`,
    });
  }
  const archivePort = options.archivePort ?? previous?.archivePort ?? DEFAULT_ARCHIVE_PORT + instance;
  const clientPublicKey = await ensureClientKey(layout);
  // Lab hosts bind their own store over /nix, so the mount point must exist on this machine.
  const createdNixMountPoint = !existsSync('/nix') || (previous?.createdNixMountPoint ?? false);
  await mkdir('/nix', { recursive: true });

  context.reporter.emit({ type: 'log', level: 'info', message: 'registering qemu-aarch64 and fetching the aarch64 busybox' });
  const binfmt = await ensureQemuAarch64Binfmt();
  await ensureAarch64Busybox(layout);
  const binfmtRecord = {
    registeredByLab: binfmt.registeredByLab || (previous?.binfmt.registeredByLab ?? false),
    mountedByLab: binfmt.mountedByLab || (previous?.binfmt.mountedByLab ?? false),
  };

  const nixpkgs = previous?.nixpkgs !== undefined && existsSync(path.join(layout.archiveDir, 'git', 'NixOS', 'nixpkgs.git'))
    ? previous.nixpkgs
    : await publishMiniNixpkgs(layout);
  await ensureArchiveServer(layout, archivePort);

  const hostSettings: Record<string, { index: number; trusted: boolean; sudo: LabSudoMode; storeSizeMiB?: number }> = {
    ...(previous?.hosts ?? {}),
  };
  const plans: LabHostPlan[] = [];
  for (let index = 1; index <= hostCount; index += 1) {
    const plan = planLabHost(index, instance);
    const override = options.hostSettings?.[plan.name];
    hostSettings[plan.name] = {
      index,
      trusted: override?.trusted ?? !(options.untrusted ?? false),
      sudo: override?.sudo ?? (options.nopasswd === true ? 'nopasswd' : 'password'),
      ...(override?.storeSizeMiB === undefined ? {} : { storeSizeMiB: override.storeSizeMiB }),
    };
    plans.push(plan);
  }
  // Record the hosts before starting them, so `lab down` finds them even if `up` fails half-way.
  const stateBeforeStart: LabStateFile = {
    version: 1,
    instance,
    hosts: hostSettings,
    binfmt: binfmtRecord,
    createdNixMountPoint,
    archivePort,
    nixpkgs,
  };
  await writeLabState(layout.stateFile, stateBeforeStart);

  await forEachLimited(plans, 4, async (plan) => {
    const settings = hostSettings[plan.name];
    if (settings === undefined) return;
    const hostLayout = layout.host(plan.name);
    // The store size is fixed when a host starts (a tmpfs over /nix, or the on-disk store): a
    // running host asked for another size is stopped and started again with it.
    const previousSize = previous?.hosts[plan.name]?.storeSizeMiB;
    if (previousSize !== settings.storeSizeMiB && isLabHostRunning(hostLayout)) await stopLabHost(plan, hostLayout);
    // Whether sudo's password checks are logged is this `up`'s choice (not a host setting kept in the state file).
    const { nixConfChanged } = await provisionLabHost(plan, hostLayout, { ...settings, recordSudoPasswordChecks: options.recordSudoPasswordChecks ?? true }, clientPublicKey);
    await ensureLabHostNetwork(plan);
    const { alreadyRunning } = await startLabHost(plan, hostLayout, clientPublicKey, settings);
    if (alreadyRunning && nixConfChanged) await restartLabHostNixDaemon(hostLayout);
    context.reporter.emit({ type: 'lab-host-up', host: plan.name, address: plan.address, reused: alreadyRunning });
  });

  const allPlans = Object.values(hostSettings)
    .map((settings) => planLabHost(settings.index, instance))
    .sort((left, right) => left.index - right.index);
  const knownHostEntries = [];
  for (const plan of allPlans) {
    const publicKey = await readFile(path.join(layout.host(plan.name).etc, 'ssh', 'ssh_host_ed25519_key.pub'), 'utf8');
    knownHostEntries.push({ plan, publicKey });
  }
  await writeFile(layout.knownHosts, renderKnownHosts(knownHostEntries), { mode: 0o644 });
  await writeFile(layout.sshConfig, renderSshConfig(allPlans, { identityFile: layout.identityFile, knownHosts: layout.knownHosts }), { mode: 0o644 });
  await writeFile(layout.envFile, renderEnvFile(localEnv(layout, archivePort, instance)), { mode: 0o644 });
  return labStatus({ labDir: layout.root });
}

/** Describes the lab (works without root; reports `up: false` when nothing runs). */
export async function labStatus(options: LabOptions = {}): Promise<LabStatus> {
  const resolved = resolveLab(options);
  const layout = resolved.layout;
  const state = await readLabState(layout.stateFile);
  const instance = state?.instance ?? resolved.instance;
  const archivePort = state?.archivePort ?? DEFAULT_ARCHIVE_PORT + instance;
  const hosts: LabHostStatus[] = Object.entries(state?.hosts ?? {})
    .sort(([, left], [, right]) => left.index - right.index)
    .map(([name, settings]) => {
      const plan = planLabHost(settings.index, instance);
      const hostLayout = layout.host(name);
      const processes = readLabHostProcesses(hostLayout);
      return {
        name,
        target: `${LAB_DEPLOY_USER}@${name}`,
        rootTarget: `root@${name}`,
        user: LAB_DEPLOY_USER,
        address: plan.address,
        port: 22,
        sshConfig: layout.sshConfig,
        knownHosts: layout.knownHosts,
        identityFile: layout.identityFile,
        sudoPassword: settings.sudo === 'nopasswd' ? null : LAB_SUDO_PASSWORD,
        sudo: settings.sudo,
        trusted: settings.trusted,
        storeSizeMiB: settings.storeSizeMiB ?? null,
        running: isLabHostRunning(hostLayout),
        sshdLog: hostLayout.sshdLog,
        sudoLog: path.join(hostLayout.rootHome, LAB_SUDO_LOG.slice('/root/'.length)),
        sudoPasswordChecks: path.join(hostLayout.rootHome, LAB_SUDO_PASSWORD_CHECK_LOG.slice('/root/'.length)),
        nixDaemonLog: path.join(hostLayout.root, 'nix-daemon.log'),
        storeDir: path.join(hostLayout.nix, 'store'),
        netns: plan.netns,
        hostInterface: plan.hostInterface,
        pids: { sshd: processes.sshdPid, nixDaemon: processes.nixDaemonPid },
      };
    });
  const archiveRunning = isProcessAlive(readPidFile(path.join(layout.archiveDir, 'server.pid')), 'archive-server');
  const archiveBase = `http://127.0.0.1:${archivePort}`;
  return {
    version: 1,
    labDir: layout.root,
    instance,
    up: hosts.some((host) => host.running),
    sshConfig: layout.sshConfig,
    knownHosts: layout.knownHosts,
    identityFile: layout.identityFile,
    envFile: layout.envFile,
    env: localEnv(layout, archivePort, instance),
    hosts,
    archiveServer: state === undefined ? null : { url: archiveBase, running: archiveRunning, requestLog: path.join(layout.archiveDir, 'requests.log') },
    nixpkgs:
      state?.nixpkgs === undefined
        ? null
        : {
            repository: state.nixpkgs.repository,
            branches: state.nixpkgs.branches,
            tags: state.nixpkgs.tags,
            revisions: state.nixpkgs.revisions.map((revision) => ({
              ...revision,
              url: `${archiveBase}/${state.nixpkgs?.repository}/archive/${revision.rev}.tar.gz`,
            })),
          },
    aarch64: { busyboxDir: layout.aarch64BusyboxDir, binfmtRegisteredByLab: state?.binfmt.registeredByLab ?? false },
  };
}

/**
 * Stops every lab host and the archive server (only processes the lab started), removes the
 * network namespaces, the binfmt entry if the lab registered it, and the lab directory. The
 * download cache (the arm64 busybox, /var/cache/pideploy-lab) stays unless `purge` is set.
 * Idempotent: a second run does nothing.
 */
export async function labDown(options: LabOptions & { readonly purge?: boolean | undefined } = {}, context: PideployContext = createBaseContext()): Promise<void> {
  assertRoot('down');
  const resolved = resolveLab(options);
  const layout = resolved.layout;
  const state = await readLabState(layout.stateFile).catch(() => undefined);
  const instance = state?.instance ?? resolved.instance;
  const names = new Set<string>(Object.keys(state?.hosts ?? {}));
  const hostsDir = path.join(layout.root, 'hosts');
  if (existsSync(hostsDir)) {
    for (const entry of await readdir(hostsDir)) if (labHostIndex(entry) !== undefined) names.add(entry);
  }
  for (const name of names) {
    const index = labHostIndex(name);
    if (index === undefined) continue;
    await stopLabHost(planLabHost(index, instance), layout.host(name));
    context.reporter.emit({ type: 'lab-host-down', host: name });
  }
  const archivePid = readPidFile(path.join(layout.archiveDir, 'server.pid'));
  if (archivePid !== undefined && isProcessAlive(archivePid, 'archive-server')) await terminateProcesses([archivePid]);
  // binfmt is global: leave it while another lab instance still runs (it may be building for aarch64).
  const otherLabsRunning = (await runCommandAllowingFailure(['ip', 'netns', 'list'])).stdout
    .split('\n')
    .some((line) => line.startsWith('pideploy-lab'));
  if (state !== undefined && !otherLabsRunning) await removeQemuAarch64Binfmt(state.binfmt);
  await rm(layout.root, { recursive: true, force: true });
  if (state?.createdNixMountPoint === true && !otherLabsRunning) await rmdir('/nix').catch(() => undefined);
  // The download cache survives `down` on purpose (no mirror round trip on the next `up`); --purge removes it.
  if (options.purge === true) await rm(process.env['PIDEPLOY_LAB_CACHE_DIR'] ?? DEFAULT_LAB_CACHE_DIR, { recursive: true, force: true });
}

/**
 * Restarts a lab host as a reboot would: its processes stop, `/run` and `/tmp` are lost, the
 * store, profiles and `/etc` stay, and `/run/current-system` comes back from the boot entry.
 */
export async function labRebootHost(hostName: string, options: LabOptions = {}): Promise<void> {
  assertRoot('reboot');
  const { layout, plan, settings } = await knownHost(hostName, options);
  const clientPublicKey = `${layout.identityFile}.pub`;
  await stopLabHostProcesses(plan, layout.host(hostName));
  await startLabHost(plan, layout.host(hostName), clientPublicKey, settings);
}

/** Kills the host's SSH sessions (not its listener), as a dropped link would; returns how many. */
export async function labCutSshSessions(hostName: string, options: LabOptions = {}): Promise<number> {
  assertRoot('cut-ssh');
  const { layout, plan } = await knownHost(hostName, options);
  return cutLabHostSshSessions(plan, layout.host(hostName));
}

/**
 * Limits how fast the deploying machine can send to a lab host, as a slow link to a real Pi
 * would (`{ rateMbit: 100 }` ≈ a Pi 3's Ethernet), or lifts the limit (`{ rateMbit: undefined }`).
 * Lasts until the host's network is made anew (`lab down`, or `lab up` restarting the host). Returns the rate in force.
 */
export async function labShapeLink(hostName: string, link: { readonly rateMbit: number | undefined }, options: LabOptions = {}): Promise<number | undefined> {
  assertRoot('link');
  const { rateMbit } = link;
  if (rateMbit !== undefined && !(Number.isInteger(rateMbit) && rateMbit >= 1 && rateMbit <= LAB_MAX_LINK_RATE_MBIT)) {
    throw new PideployError({
      code: 'PIDEPLOY_USAGE',
      message: `a lab link rate must be a whole number of Mbit/s from 1 to ${LAB_MAX_LINK_RATE_MBIT}, not ${String(rateMbit)}`,
      hint: 'pideploy lab link pi1 --rate-mbit 100',
    });
  }
  const { plan } = await knownHost(hostName, options);
  return shapeLabHostLink(plan, rateMbit);
}

async function knownHost(hostName: string, options: LabOptions) {
  const resolved = resolveLab(options);
  const state = await readLabState(resolved.layout.stateFile);
  const settings = state?.hosts[hostName];
  if (state === undefined || settings === undefined) {
    const known = Object.keys(state?.hosts ?? {});
    throw new PideployError({
      code: 'PIDEPLOY_LAB_UNKNOWN_HOST',
      message: `no lab host named "${hostName}"${known.length > 0 ? ` (the lab has ${known.join(', ')})` : ' (the lab is not up)'}`,
      hint: known.length > 0 ? 'pick one of the names above' : 'run `pideploy lab up` first',
    });
  }
  return { layout: resolved.layout, plan: planLabHost(settings.index, state.instance), settings };
}

/** Options of {@link labExec}. */
export interface LabExecOptions extends LabOptions {
  /** Text for the command's stdin. */
  readonly input?: string | undefined;
}

/**
 * Runs argv as root on a lab host's "console" (inside its namespaces via nsenter, not over SSH)
 * and returns what it printed and its exit code.
 */
export async function labExec(
  hostName: string,
  argv: readonly string[],
  options: LabExecOptions = {},
): Promise<{ readonly stdout: string; readonly stderr: string; readonly exitCode: number }> {
  assertRoot('exec');
  if (argv.length === 0) {
    throw new PideployError({ code: 'PIDEPLOY_USAGE', message: 'lab exec needs a command', hint: 'pideploy lab exec pi1 -- readlink /run/current-system' });
  }
  const sshdPid = await runningHostSshdPid(hostName, options);
  return runLabHostConsoleCommand(sshdPid, argv, { input: options.input });
}

/** The argv prefix that enters a running lab host's namespaces (for callers that want their own stdio). */
export async function labExecPrefix(hostName: string, options: LabOptions = {}): Promise<readonly string[]> {
  const sshdPid = await runningHostSshdPid(hostName, options);
  return ['nsenter', '-t', String(sshdPid), '-m', '-n', '-u', '--'];
}

async function runningHostSshdPid(hostName: string, options: LabOptions): Promise<number> {
  const { layout } = await knownHost(hostName, options);
  const hostLayout = layout.host(hostName);
  const sshdPid = readLabHostProcesses(hostLayout).sshdPid;
  if (sshdPid === undefined || !isLabHostRunning(hostLayout)) {
    throw new PideployError({
      code: 'PIDEPLOY_LAB_NOT_UP',
      message: `lab host ${hostName} is not running`,
      hint: 'run `pideploy lab up` to start it again',
    });
  }
  return sshdPid;
}


import { existsSync } from 'node:fs';
import { mkdir, readFile, rm, writeFile, chmod } from 'node:fs/promises';
import path from 'node:path';
import { PideployError } from '@pideploy/core';
import {
  LAB_SUDO_PASSWORD,
  renderEtcHosts,
  renderHostInitScript,
  renderProvisionScript,
  renderRemoteNixConf,
  renderSshdConfig,
  type LabHostPaths,
  type LabHostPlan,
  type LabHostSettings,
} from './host-plan.js';
import type { LabHostLayout } from './layout.js';
import { isProcessAlive, readPidFile, spawnDetached, terminateProcesses, waitForTcpPort } from './processes.js';
import { runCommand, runCommandAllowingFailure } from './run.js';

/** Pids of a running lab host's processes. */
export interface LabHostProcesses {
  /** `unshare` that holds the host's namespaces (parent of the host's init script). */
  readonly unsharePid?: number | undefined;
  /** The host's sshd -D (started anew by every boot of the host's init); its namespaces are the host's. */
  readonly sshdPid?: number | undefined;
  readonly nixDaemonPid?: number | undefined;
}

/** Whether the host's sshd and nix-daemon are running. */
export function isLabHostRunning(hostLayout: LabHostLayout): boolean {
  return (
    isProcessAlive(readPidFile(path.join(hostLayout.run, 'sshd.pid')), 'sshd') &&
    isProcessAlive(readPidFile(path.join(hostLayout.run, 'nix-daemon.pid')), 'nix-daemon')
  );
}

/** The pids recorded for a host (whether alive or not). */
export function readLabHostProcesses(hostLayout: LabHostLayout): LabHostProcesses {
  return {
    unsharePid: readPidFile(path.join(hostLayout.run, 'unshare.pid')),
    sshdPid: readPidFile(path.join(hostLayout.run, 'sshd.pid')),
    nixDaemonPid: readPidFile(path.join(hostLayout.run, 'nix-daemon.pid')),
  };
}

function hostPaths(hostLayout: LabHostLayout, clientPublicKey: string): LabHostPaths {
  return {
    root: hostLayout.root,
    etc: hostLayout.etc,
    nix: hostLayout.nix,
    home: hostLayout.home,
    rootHome: hostLayout.rootHome,
    run: hostLayout.run,
    clientPublicKey,
  };
}

/** Writes `content` to `file` if it differs; returns true when the file changed. */
async function writeIfChanged(file: string, content: string, mode?: number): Promise<boolean> {
  const current = await readFile(file, 'utf8').catch(() => undefined);
  if (current === content) return false;
  await writeFile(file, content, mode === undefined ? undefined : { mode });
  if (mode !== undefined) await chmod(file, mode);
  return true;
}

/**
 * Creates or updates a lab host's files: a private copy of this machine's `/etc` (made once),
 * its own host key, sshd_config, nix.conf, the deploy user with its password and sudoers,
 * authorised keys for deploy and root, `/etc/nixos`, and an initialised empty `/nix` store.
 * Returns whether the host's nix.conf changed (its daemon must then restart to see it).
 */
export async function provisionLabHost(
  plan: LabHostPlan,
  hostLayout: LabHostLayout,
  settings: LabHostSettings,
  clientPublicKey: string,
): Promise<{ readonly nixConfChanged: boolean }> {
  await mkdir(hostLayout.root, { recursive: true, mode: 0o755 });
  for (const directory of [hostLayout.nix, hostLayout.home, hostLayout.rootHome, hostLayout.run]) {
    await mkdir(directory, { recursive: true });
  }
  await chmod(hostLayout.rootHome, 0o700);
  if (!existsSync(path.join(hostLayout.etc, 'passwd'))) {
    await rm(hostLayout.etc, { recursive: true, force: true });
    await runCommand(['cp', '-a', '/etc', hostLayout.etc], { failureMessage: 'could not copy /etc for the lab host' });
    for (const stale of ['netns', 'nix', 'sudoers.d/pideploy-lab']) {
      await rm(path.join(hostLayout.etc, stale), { recursive: true, force: true });
    }
    const sshDir = path.join(hostLayout.etc, 'ssh');
    await mkdir(sshDir, { recursive: true });
    await runCommand(['find', sshDir, '-maxdepth', '1', '-name', 'ssh_host_*', '-delete']);
    await runCommand(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-C', `root@${plan.name}`, '-f', path.join(sshDir, 'ssh_host_ed25519_key')]);
  }
  await writeIfChanged(path.join(hostLayout.etc, 'ssh', 'sshd_config'), renderSshdConfig(plan), 0o644);
  await mkdir(path.join(hostLayout.etc, 'nix'), { recursive: true });
  const nixConfChanged = await writeIfChanged(path.join(hostLayout.etc, 'nix', 'nix.conf'), renderRemoteNixConf(settings), 0o644);
  await writeIfChanged(path.join(hostLayout.etc, 'hosts'), renderEtcHosts(plan), 0o644);
  await rm(path.join(hostLayout.etc, 'resolv.conf'), { force: true });
  await writeFile(path.join(hostLayout.etc, 'resolv.conf'), '# lab hosts have no DNS and no route out\n');
  const script = renderProvisionScript(plan, hostPaths(hostLayout, clientPublicKey), settings);
  await runCommand(['unshare', '-m', '--propagation', 'private', 'sh', '-c', script], {
    input: `${LAB_SUDO_PASSWORD}\n`,
    failureMessage: `could not provision lab host ${plan.name}`,
  });
  return { nixConfChanged };
}

/** Creates the host's network namespace and veth link if missing. */
export async function ensureLabHostNetwork(plan: LabHostPlan): Promise<void> {
  const namespaces = (await runCommand(['ip', 'netns', 'list'])).stdout;
  const exists = namespaces.split('\n').some((line) => line.split(' ')[0] === plan.netns);
  if (exists) return;
  const steps: string[][] = [
    ['ip', 'netns', 'add', plan.netns],
    ['ip', 'link', 'add', plan.hostInterface, 'type', 'veth', 'peer', 'name', plan.remoteInterface, 'netns', plan.netns],
    ['ip', 'addr', 'add', `${plan.hostAddress}/30`, 'dev', plan.hostInterface],
    ['ip', 'link', 'set', plan.hostInterface, 'up'],
    ['ip', '-n', plan.netns, 'addr', 'add', `${plan.address}/30`, 'dev', plan.remoteInterface],
    ['ip', '-n', plan.netns, 'link', 'set', plan.remoteInterface, 'up'],
    ['ip', '-n', plan.netns, 'link', 'set', 'lo', 'up'],
  ];
  for (const step of steps) {
    await runCommand(step, { failureMessage: `could not set up the network of lab host ${plan.name}` });
  }
}

/**
 * Starts the host (its namespaces, nix-daemon and sshd) unless it already runs, then waits until
 * sshd accepts connections. Returns whether it was already running.
 */
export async function startLabHost(
  plan: LabHostPlan,
  hostLayout: LabHostLayout,
  clientPublicKey: string,
  settings?: LabHostSettings,
): Promise<{ readonly alreadyRunning: boolean }> {
  if (isLabHostRunning(hostLayout)) {
    await waitForTcpPort(plan.address, 22, 10_000);
    return { alreadyRunning: true };
  }
  await stopLabHostProcesses(plan, hostLayout);
  await writeIfChanged(hostLayout.initScript, renderHostInitScript(plan, hostPaths(hostLayout, clientPublicKey), settings), 0o755);
  for (const name of ['sshd.pid', 'nix-daemon.pid', 'unshare.pid']) await rm(path.join(hostLayout.run, name), { force: true });
  const unsharePid = spawnDetached(
    // spawnDetached already makes the child a session leader (a `setsid` command here would fork).
    ['ip', 'netns', 'exec', plan.netns, 'unshare', '-m', '-u', '--propagation', 'private', '--fork', hostLayout.initScript],
    hostLayout.sshdLog,
  );
  await writeFile(path.join(hostLayout.run, 'unshare.pid'), `${unsharePid}\n`);
  try {
    await waitForTcpPort(plan.address, 22, 15_000);
  } catch (error) {
    const log = await readFile(hostLayout.sshdLog, 'utf8').catch(() => '');
    throw new PideployError({
      code: 'PIDEPLOY_LAB_SETUP_FAILED',
      message: `lab host ${plan.name} did not start: ${log.trim().split('\n').slice(-1)[0] ?? (error as Error).message}`,
      hint: `see ${hostLayout.sshdLog}`,
      cause: error,
    });
  }
  return { alreadyRunning: false };
}

/** Restarts only the host's nix-daemon (it reads nix.conf only when it starts). */
export async function restartLabHostNixDaemon(hostLayout: LabHostLayout): Promise<void> {
  const { sshdPid, nixDaemonPid } = readLabHostProcesses(hostLayout);
  if (sshdPid === undefined) return;
  if (nixDaemonPid !== undefined && isProcessAlive(nixDaemonPid, 'nix-daemon')) await terminateProcesses([nixDaemonPid]);
  await runLabHostConsoleCommand(sshdPid, ['rm', '-f', '/nix/var/nix/daemon-socket/socket']);
  const pid = spawnDetached(
    ['nsenter', '-t', String(sshdPid), '-m', '-n', '-u', '--', 'nix-daemon'],
    path.join(hostLayout.root, 'nix-daemon.log'),
  );
  await writeFile(path.join(hostLayout.run, 'nix-daemon.pid'), `${pid}\n`);
}

/** Runs argv as root in the host's namespaces (its "console"), capturing output. */
export async function runLabHostConsoleCommand(
  sshdPid: number,
  argv: readonly string[],
  options: { readonly input?: string | undefined } = {},
): Promise<{ readonly stdout: string; readonly stderr: string; readonly exitCode: number }> {
  return runCommandAllowingFailure(['nsenter', '-t', String(sshdPid), '-m', '-n', '-u', '--', ...argv], options);
}

/** Kills every process of the host: all processes in its netns (sessions included) and the recorded pids. */
export async function stopLabHostProcesses(plan: LabHostPlan, hostLayout: LabHostLayout): Promise<void> {
  const recorded = readLabHostProcesses(hostLayout);
  const inNamespace = await runCommandAllowingFailure(['ip', 'netns', 'pids', plan.netns]);
  const namespacePids = inNamespace.exitCode === 0 ? inNamespace.stdout.split(/\s+/u).filter(Boolean).map(Number) : [];
  const ours = [recorded.sshdPid, recorded.nixDaemonPid, recorded.unsharePid].filter(
    (pid): pid is number =>
      pid !== undefined &&
      (isProcessAlive(pid, 'sshd') || isProcessAlive(pid, 'nix-daemon') || isProcessAlive(pid, 'unshare')),
  );
  await terminateProcesses([...new Set([...namespacePids, ...ours])]);
}

/**
 * Cuts SSH the hard way: kills every sshd session process of the host (not the listening sshd),
 * as a dropped link would. New connections still work.
 */
export async function cutLabHostSshSessions(plan: LabHostPlan, hostLayout: LabHostLayout): Promise<number> {
  const { sshdPid } = readLabHostProcesses(hostLayout);
  const inNamespace = await runCommandAllowingFailure(['ip', 'netns', 'pids', plan.netns]);
  const sessions = inNamespace.stdout
    .split(/\s+/u)
    .filter(Boolean)
    .map(Number)
    .filter((pid) => pid !== sshdPid && isProcessAlive(pid, 'sshd'));
  for (const pid of sessions) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  return sessions.length;
}

/** Highest link rate `labShapeLink` accepts, in Mbit/s (the veth itself does ~1.5 Gbit/s). */
export const LAB_MAX_LINK_RATE_MBIT = 10_000;

/**
 * Limits the rate of what the deploying machine sends to the host (a token bucket on the root
 * namespace's end of the veth; the lab-notes recipe), or removes the limit when `rateMbit` is
 * undefined. Returns the rate now in force (undefined: unshaped).
 */
export async function shapeLabHostLink(plan: LabHostPlan, rateMbit: number | undefined): Promise<number | undefined> {
  if (rateMbit === undefined) {
    const current = await runCommand(['tc', 'qdisc', 'show', 'dev', plan.hostInterface], {
      failureMessage: `could not read the link of ${plan.name}`,
      failureHint: `is the lab host up? (pideploy lab status; pideploy lab up brings it back)`,
    });
    if (/\btbf\b/u.test(current.stdout)) {
      await runCommand(['tc', 'qdisc', 'del', 'dev', plan.hostInterface, 'root'], {
        failureMessage: `could not remove the link limit of ${plan.name}`,
        failureHint: `pideploy lab down removes it with the host's network`,
      });
    }
    return undefined;
  }
  await runCommand(['tc', 'qdisc', 'replace', 'dev', plan.hostInterface, 'root', 'tbf', 'rate', `${rateMbit}mbit`, 'burst', '64kb', 'latency', '50ms'], {
    failureMessage: `could not limit the link of ${plan.name} to ${rateMbit} Mbit/s`,
    failureHint: 'the kernel needs the tbf queueing discipline (sch_tbf); `tc qdisc add … tbf` must work as root',
  });
  return rateMbit;
}

/** Stops the host and removes its network namespace (and so its veth pair). Files stay. */
export async function stopLabHost(plan: LabHostPlan, hostLayout: LabHostLayout): Promise<void> {
  await stopLabHostProcesses(plan, hostLayout);
  const namespaces = (await runCommandAllowingFailure(['ip', 'netns', 'list'])).stdout;
  if (namespaces.split('\n').some((line) => line.split(' ')[0] === plan.netns)) {
    await runCommand(['ip', 'netns', 'del', plan.netns], { failureMessage: `could not remove the network namespace of ${plan.name}` });
  }
}

import { spawn } from 'node:child_process';
import { openSync, closeSync, readFileSync } from 'node:fs';
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

/** True when `pid` is alive and its command line contains `expectedCommand` (guards against pid reuse). */
export function isProcessAlive(pid: number | undefined, expectedCommand: string): boolean {
  if (pid === undefined || !Number.isInteger(pid) || pid <= 0) return false;
  try {
    const commandLine = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ');
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && commandLine.includes(expectedCommand);
  } catch {
    return false;
  }
}

/** Reads a pid file; undefined when missing or malformed. */
export function readPidFile(file: string): number | undefined {
  try {
    const pid = Number(readFileSync(file, 'utf8').trim());
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Starts a long-lived process detached from this one (own session, stdin from /dev/null,
 * stdout+stderr appended to `logFile`) and returns its pid. The caller records the pid to stop it.
 */
export function spawnDetached(argv: readonly string[], logFile: string, env?: NodeJS.ProcessEnv): number {
  const [file, ...args] = argv;
  if (file === undefined) throw new TypeError('spawnDetached needs a non-empty argv');
  const logFd = openSync(logFile, 'a');
  try {
    const child = spawn(file, args, { detached: true, stdio: ['ignore', logFd, logFd], env: env ?? process.env });
    child.unref();
    if (child.pid === undefined) throw new Error(`could not start ${file}`);
    return child.pid;
  } finally {
    closeSync(logFd);
  }
}

/** Sends SIGTERM to each live pid, waits up to `graceMs`, then SIGKILLs what is left. */
export async function terminateProcesses(pids: readonly number[], graceMs = 3000): Promise<void> {
  const alive = (pid: number): boolean => {
    try {
      process.kill(pid, 0);
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
    } catch {
      return false;
    }
  };
  const signal = (pid: number, name: NodeJS.Signals): void => {
    try {
      process.kill(pid, name);
    } catch {
      // already gone
    }
  };
  const targets = pids.filter(alive);
  for (const pid of targets) signal(pid, 'SIGTERM');
  const deadline = Date.now() + graceMs;
  while (Date.now() < deadline && targets.some(alive)) await sleep(50);
  for (const pid of targets.filter(alive)) signal(pid, 'SIGKILL');
  const killDeadline = Date.now() + 2000;
  while (Date.now() < killDeadline && targets.some(alive)) await sleep(25);
}

/** Resolves once something accepts TCP connections on address:port, or rejects after `timeoutMs`. */
export async function waitForTcpPort(address: string, port: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const connected = await new Promise<boolean>((resolve) => {
      const socket = net.connect({ host: address, port, timeout: 500 });
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
      socket.once('timeout', () => {
        socket.destroy();
        resolve(false);
      });
    });
    if (connected) return;
    if (Date.now() > deadline) throw new Error(`nothing listens on ${address}:${port} after ${timeoutMs} ms`);
    await sleep(50);
  }
}

import { spawn } from 'node:child_process';
import { constants } from 'node:os';
import path from 'node:path';
import { PideployError, shellJoin } from '@pideploy/core';
import { loadConfigIfPresent, selectHosts } from '@pideploy/sdk';
import { parseSshTarget } from '@pideploy/ssh';
import type { CommandInvocation, CommandResult } from '../command.js';
import { stringFlag } from '../flags.js';

/** What {@link openSshArguments} logs in to. */
export interface OpenSshLogin {
  /** `user@host[:port]` or `ssh://…`, as pideploy.json's `target`. */
  readonly target: string;
  /** An ssh_config file (`ssh -F`), as the host's `sshConfig`. */
  readonly sshConfigFile?: string | undefined;
  /** Trust and record a host key seen for the first time (a changed one is refused all the same). */
  readonly acceptNewHostKey: boolean;
  /** A command to run there instead of a login shell (quoted once, as `pideploy exec` does). */
  readonly command: readonly string[];
  /** Ask for a terminal for the command (this side has one). */
  readonly terminal: boolean;
}

/**
 * The arguments of OpenSSH's `ssh` that log in where pideploy does, the way it does (pure): the
 * host's target and ssh_config, and its host-key policy (`StrictHostKeyChecking=yes`: an unknown
 * key is refused, never accepted silently; `accept-new` with `--accept-new-host-key`).
 */
export function openSshArguments(login: OpenSshLogin): string[] {
  const target = parseSshTarget(login.target);
  return [
    '-o',
    `StrictHostKeyChecking=${login.acceptNewHostKey ? 'accept-new' : 'yes'}`,
    ...(login.sshConfigFile === undefined ? [] : ['-F', login.sshConfigFile]),
    ...(target.port === undefined ? [] : ['-p', String(target.port)]),
    ...(target.user === undefined ? [] : ['-l', target.user]),
    ...(login.command.length > 0 && login.terminal ? ['-t'] : []),
    '--',
    target.host,
    ...(login.command.length > 0 ? [shellJoin(login.command)] : []),
  ];
}

/** Runs `ssh ARGS` on this terminal; its exit code (128 + the signal's number when a signal ended it). */
function runOpenSsh(args: readonly string[]): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn('ssh', args, { stdio: 'inherit' });
    child.once('error', (error: NodeJS.ErrnoException) => {
      reject(
        error.code === 'ENOENT'
          ? new PideployError({ code: 'PIDEPLOY_MISSING_TOOL', message: 'ssh (the OpenSSH client) is not installed here', hint: 'install it (Debian: apt-get install openssh-client; Nix: nix-env -iA nixpkgs.openssh)' })
          : error,
      );
    });
    child.once('exit', (code, signal) => resolve(code ?? 128 + (signal === null ? 0 : constants.signals[signal])));
  });
}

/**
 * `pideploy ssh <host> [-- command…]`: a login shell (or the command) on a host of pideploy.json
 * by its name, through OpenSSH with the host's target, ssh_config and pideploy's host-key policy;
 * exits with ssh's exit code (the command's, or 255 when ssh itself failed).
 */
export async function sshCommand(invocation: CommandInvocation): Promise<CommandResult> {
  const usage = 'pideploy ssh <host> [-- command…]';
  const command = invocation.afterDoubleDash ?? [];
  const selectors = invocation.positionals.slice(0, invocation.positionals.length - command.length);
  const [name] = selectors;
  if (name === undefined || selectors.length > 1) {
    throw new PideployError({ code: 'PIDEPLOY_USAGE', message: `ssh takes one host${selectors.length > 1 ? `, not ${selectors.length}` : ''}`, hint: `${usage} (for many hosts: pideploy exec --on @tag -- command)` });
  }
  const config = await loadConfigIfPresent({ cwd: invocation.io.cwd, configFile: invocation.global.config });
  let host = config?.hosts.find((entry) => entry.name === name);
  // Not a host's name: a user@host target goes as it is; anything else is a host name misspelt.
  if (host === undefined && config !== undefined && !name.includes('@')) host = selectHosts(config, [name])[0];
  const sshConfigFile = stringFlag(invocation, 'ssh-config') ?? host?.sshConfig;
  const args = openSshArguments({
    target: host?.target ?? name,
    sshConfigFile: sshConfigFile === undefined ? undefined : path.resolve(invocation.io.cwd, sshConfigFile),
    acceptNewHostKey: invocation.flags['accept-new-host-key'] === true,
    command,
    terminal: process.stdin.isTTY === true && invocation.io.stdout.isTTY === true,
  });
  const exitCode = await runOpenSsh(args);
  return { value: { host: host?.name ?? name, exitCode }, text: '', exitCode };
}

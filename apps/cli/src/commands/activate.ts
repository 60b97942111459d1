import { existsSync } from 'node:fs';
import path from 'node:path';
import { activateSystem, diffSystem, formatClosureDiff, rollbackSystem, systemStatus, type ActivationTarget, type SystemStatus } from '@pideploy/activate';
import { PideployError, type ActivationAction } from '@pideploy/core';
import { loadConfig } from '@pideploy/sdk';
import { readSudoPasswordFromFile, readSudoPasswordFromStdin, type CreateSudoOptions, type SudoPasswordRequest } from '@pideploy/ssh';
import type { CommandInvocation, CommandResult } from '../command.js';

const ACTIONS: readonly ActivationAction[] = ['switch', 'boot', 'test', 'dry-activate'];

function stringFlag(invocation: CommandInvocation, name: string): string | undefined {
  const value = invocation.flags[name];
  return typeof value === 'string' ? value : undefined;
}

/**
 * Asks for the sudo password on the terminal without echo. Only when stdin is a TTY; the
 * activation stage remembers the answer, so a run prompts at most once.
 */
async function askOnTerminal(request: SudoPasswordRequest): Promise<string | undefined> {
  const input = process.stdin;
  if (input.isTTY !== true) return undefined;
  process.stderr.write(`[sudo] password for ${request.user}@${request.host}: `);
  return new Promise((resolve) => {
    let answer = '';
    input.setRawMode(true);
    input.resume();
    const onData = (chunk: Buffer) => {
      for (const character of chunk.toString('utf8')) {
        if (character === '\r' || character === '\n' || character === '\u0004') {
          finish(answer);
          return;
        }
        if (character === '\u0003') {
          finish(undefined);
          return;
        }
        if (character === '\u007f') answer = answer.slice(0, -1);
        else answer += character;
      }
    };
    const finish = (value: string | undefined) => {
      input.off('data', onData);
      input.setRawMode(false);
      input.pause();
      process.stderr.write('\n');
      resolve(value);
    };
    input.on('data', onData);
  });
}

/** Sudo options from `--sudo-password-file F` / `--sudo-password-stdin`, else a TTY prompt. */
async function sudoOptions(invocation: CommandInvocation): Promise<CreateSudoOptions> {
  const file = stringFlag(invocation, 'sudo-password-file');
  if (file !== undefined) return { password: await readSudoPasswordFromFile(path.resolve(invocation.io.cwd, file)) };
  if (invocation.flags['sudo-password-stdin'] === true) return { password: await readSudoPasswordFromStdin(process.stdin) };
  return { passwordProvider: askOnTerminal };
}

/** Resolves a host argument: a pideploy.json host name (its target, ssh_config), else an SSH target as is. */
async function resolveTarget(invocation: CommandInvocation, host: string, sudo: CreateSudoOptions): Promise<ActivationTarget> {
  let target = host;
  let sshConfigFile = stringFlag(invocation, 'ssh-config');
  const configFile = invocation.global.config;
  if (configFile !== undefined || existsSync(path.join(invocation.io.cwd, 'pideploy.json'))) {
    const config = await loadConfig({ cwd: invocation.io.cwd, configFile });
    const configured = config.hosts.find((entry) => entry.name === host);
    if (configured !== undefined) {
      target = configured.target;
      sshConfigFile ??= configured.sshConfig;
    }
  }
  return {
    target,
    connect: sshConfigFile === undefined ? {} : { sshConfigFile: path.resolve(invocation.io.cwd, sshConfigFile) },
    sudo,
  };
}

function oneHost(invocation: CommandInvocation, usage: string): string {
  const [host, ...rest] = invocation.positionals;
  if (host === undefined || rest.length > 0) throw new PideployError({ code: 'PIDEPLOY_USAGE', message: `expected exactly one host`, hint: usage });
  return host;
}

function requireToplevel(invocation: CommandInvocation, usage: string): string {
  const toplevel = stringFlag(invocation, 'toplevel');
  if (toplevel === undefined) throw new PideployError({ code: 'PIDEPLOY_USAGE', message: '--toplevel is required', hint: usage });
  return toplevel;
}

function wholeSeconds(text: string | undefined, flag: string): number | undefined {
  if (text === undefined) return undefined;
  if (!/^\d+$/u.test(text)) throw new PideployError({ code: 'PIDEPLOY_USAGE', message: `${flag} takes whole seconds, not "${text}"` });
  return Number(text);
}

/** `pideploy activate <host> --toplevel P [--bundle B] [--action A] [--confirm-timeout S] [--no-rollback] [--force]`. */
export async function activateCommand(invocation: CommandInvocation): Promise<CommandResult> {
  const usage = 'pideploy activate <host> --toplevel P [--action switch|boot|test|dry-activate]';
  const host = oneHost(invocation, usage);
  const toplevel = requireToplevel(invocation, usage);
  const action = (stringFlag(invocation, 'action') ?? 'switch') as ActivationAction;
  if (!ACTIONS.includes(action)) throw new PideployError({ code: 'PIDEPLOY_USAGE', message: `unknown action "${action}"`, hint: `use one of: ${ACTIONS.join(', ')}` });
  const target = await resolveTarget(invocation, host, await sudoOptions(invocation));
  const result = await activateSystem(
    {
      ...target,
      toplevel,
      bundle: stringFlag(invocation, 'bundle'),
      action,
      force: invocation.flags['force'] === true,
      installBootloader: invocation.flags['install-bootloader'] === true,
      rollback: { enabled: invocation.flags['no-rollback'] !== true, confirmTimeoutSeconds: wholeSeconds(stringFlag(invocation, 'confirm-timeout'), '--confirm-timeout') },
    },
    invocation.context,
  );
  const text =
    result.outcome === 'skipped'
      ? `${host} already runs ${toplevel}; nothing to do (--force to activate again)`
      : `${host}: ${action} of ${toplevel} ${result.outcome}${result.deployId === undefined ? '' : ` (deployment ${result.deployId})`}`;
  return { value: result, text };
}

/** `pideploy rollback <host> [--to N]`. */
export async function rollbackCommand(invocation: CommandInvocation): Promise<CommandResult> {
  const host = oneHost(invocation, 'pideploy rollback <host> [--to N]');
  const to = stringFlag(invocation, 'to');
  if (to !== undefined && !/^\d+$/u.test(to)) throw new PideployError({ code: 'PIDEPLOY_USAGE', message: `--to takes a generation number, not "${to}"` });
  const target = await resolveTarget(invocation, host, await sudoOptions(invocation));
  const result = await rollbackSystem(target, { to: to === undefined ? undefined : Number(to) }, invocation.context);
  return { value: result, text: `${host}: now on generation ${result.generation ?? '?'} (${result.runningSystem ?? 'no running system'})` };
}

function formatStatus(status: SystemStatus): string {
  const lines = [
    `${status.host}:`,
    `  running:   ${status.runningSystem ?? '-'}`,
    `  booted:    ${status.bootedSystem ?? '-'}`,
    `  profile:   ${status.profileSystem ?? '-'}`,
    `  deployed:  ${status.currentConfiguration ?? '-'}`,
  ];
  if (status.lastDeployment !== undefined) {
    const last = status.lastDeployment;
    lines.push(`  last deployment ${last.id}: ${last.action} ${last.toplevel} → ${last.state} (${last.message})`);
  }
  lines.push('  generations:');
  for (const generation of status.generations) lines.push(`    ${String(generation.number).padStart(4)}   ${generation.date}${generation.current ? '   (current)' : ''}`);
  return lines.join('\n');
}

/** `pideploy status [host…]` (default: every host of pideploy.json). */
export async function statusCommand(invocation: CommandInvocation): Promise<CommandResult> {
  let hosts = [...invocation.positionals];
  if (hosts.length === 0) {
    const config = await loadConfig({ cwd: invocation.io.cwd, configFile: invocation.global.config });
    hosts = config.hosts.map((host) => host.name);
  }
  const statuses: SystemStatus[] = [];
  for (const host of hosts) statuses.push(await systemStatus(await resolveTarget(invocation, host, {}), invocation.context));
  return { value: statuses, text: statuses.map(formatStatus).join('\n') };
}

/** `pideploy diff <host> --toplevel P`: what switching to P changes, against what the host runs. */
export async function diffCommand(invocation: CommandInvocation): Promise<CommandResult> {
  const usage = 'pideploy diff <host> --toplevel P';
  const host = oneHost(invocation, usage);
  const toplevel = requireToplevel(invocation, usage);
  const diff = await diffSystem(await resolveTarget(invocation, host, {}), toplevel, invocation.context, { env: invocation.io.env });
  const text = formatClosureDiff(diff);
  return { value: diff, text: text === '' ? `${host}: no changes` : text.trimEnd() };
}

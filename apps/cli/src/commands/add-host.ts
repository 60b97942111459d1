import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { PideployError } from '@pideploy/core';
import { checkNewHostName, loadConfig, probeHost, replaceFile, withHostAdded, type HostEntry, type HostProbe, type ResolvedConfig, type SudoMode } from '@pideploy/sdk';
import type { CommandInvocation, CommandResult } from '../command.js';
import { sshTargetFlag, stringFlag, stringFlags } from '../flags.js';

const SUDO_MODES: readonly SudoMode[] = ['password', 'nopasswd', 'root'];
const SUDO_WORDS: Readonly<Record<SudoMode, string>> = { password: 'sudo with a password', nopasswd: 'sudo without a password', root: 'logged in as root' };

/** The configuration of a new host: `--configuration`, else the project's `configuration.nix`; relative to pideploy.json. */
function configurationFor(invocation: CommandInvocation, config: ResolvedConfig): string {
  const given = stringFlag(invocation, 'configuration');
  const file = given === undefined ? path.join(config.directory, 'configuration.nix') : path.resolve(invocation.io.cwd, given);
  if (!existsSync(file)) {
    throw new PideployError({
      code: 'PIDEPLOY_USAGE',
      message: given === undefined ? `no configuration.nix beside ${config.file} for the new host` : `${file} does not exist`,
      hint: 'name the host\'s configuration with --configuration FILE',
    });
  }
  const relative = path.relative(config.directory, file);
  return relative.startsWith('..') ? file : `./${relative}`;
}

/**
 * What the entry says about the machine: flags win; else what the probe found. The system is
 * written only when it is not the one the host would get anyway (the defaults', else aarch64-linux).
 */
function machineSettings(invocation: CommandInvocation, config: ResolvedConfig, probe: HostProbe | undefined): { system: string; sudo: SudoMode } {
  const systemFlag = stringFlag(invocation, 'system');
  const sudoFlag = stringFlag(invocation, 'sudo');
  if (sudoFlag !== undefined && !(SUDO_MODES as readonly string[]).includes(sudoFlag)) {
    throw new PideployError({ code: 'PIDEPLOY_USAGE', message: `--sudo must be one of ${SUDO_MODES.join(', ')}, not "${sudoFlag}"`, hint: 'password: sudo asks for it (once per deployment); nopasswd: it does not; root: the login is root' });
  }
  if (probe !== undefined && systemFlag !== undefined && probe.system !== undefined && probe.system !== systemFlag) {
    invocation.context.reporter.emit({ type: 'log', level: 'warn', message: `${probe.display} is a ${probe.machine} machine (${probe.system}), but --system says ${systemFlag}: using ${systemFlag}` });
  }
  const system = systemFlag ?? probe?.system;
  if (system === undefined) {
    throw new PideployError({
      code: 'PIDEPLOY_USAGE',
      message: `${probe?.display ?? 'the host'} is a ${probe?.machine ?? 'unknown'} machine, which pideploy has no Nix system for`,
      hint: 'give it with --system (aarch64-linux, armv7l-linux, armv6l-linux, x86_64-linux, riscv64-linux)',
    });
  }
  return { system, sudo: (sudoFlag as SudoMode | undefined) ?? probe?.sudo ?? 'password' };
}

/**
 * `pideploy add-host <name> --target USER@HOST [--tag T]… [--configuration FILE] [--system S]
 * [--sudo MODE] [--ssh-config F] [--no-probe] [--accept-new-host-key]`: logs in to the machine once
 * (host key checked) to learn its Nix system and how to get root, then adds it to pideploy.json,
 * validated before it is written (the file is replaced at once, or not at all).
 */
export async function addHostCommand(invocation: CommandInvocation): Promise<CommandResult> {
  const [name, ...extra] = invocation.positionals;
  const target = sshTargetFlag(invocation);
  if (name === undefined || extra.length > 0 || target === undefined) {
    throw new PideployError({ code: 'PIDEPLOY_USAGE', message: 'add-host takes one host name and its --target', hint: 'pideploy add-host kitchen --target deploy@kitchen.local --tag fleet' });
  }
  const config = await loadConfig({ cwd: invocation.io.cwd, configFile: invocation.global.config });
  // Before any connection: a name the file cannot take, or one it has.
  checkNewHostName(config, name);
  const configuration = configurationFor(invocation, config);
  const sshConfigFlag = stringFlag(invocation, 'ssh-config');
  const sshConfig = sshConfigFlag === undefined ? undefined : path.resolve(invocation.io.cwd, sshConfigFlag);
  const probe =
    invocation.flags['no-probe'] === true
      ? undefined
      : await probeHost(target, { ...(sshConfig === undefined ? {} : { sshConfigFile: sshConfig }), acceptNewHostKey: invocation.flags['accept-new-host-key'] === true }, invocation.context);
  if (probe !== undefined && !probe.hasNix) {
    invocation.context.reporter.emit({ type: 'log', level: 'warn', message: `${probe.display} has no nix-store on the login's PATH: pideploy deploys NixOS (install it first, or check the login's PATH)` });
  }
  const { system, sudo } = machineSettings(invocation, config, probe);
  const tags = stringFlags(invocation, 'tag').map((tag) => tag.replace(/^@/u, ''));
  const text = await readFile(config.file, 'utf8');
  const defaults = (JSON.parse(text) as { defaults?: { system?: string; sudo?: SudoMode } }).defaults;
  const entry: HostEntry = {
    target,
    configuration,
    ...(system === (defaults?.system ?? 'aarch64-linux') ? {} : { system }),
    ...(sudo === (defaults?.sudo ?? 'password') ? {} : { sudo }),
    ...(tags.length === 0 ? {} : { tags }),
    ...(sshConfig === undefined ? {} : { sshConfig: path.relative(config.directory, sshConfig).startsWith('..') ? sshConfig : path.relative(config.directory, sshConfig) }),
  };
  const added = withHostAdded(text, config.file, name, entry);
  await replaceFile(config.file, added.text);
  const found = probe === undefined ? 'not probed' : `probed ${probe.display}: ${probe.machine}${probe.nixosVersion === undefined ? '' : `, NixOS ${probe.nixosVersion}`}`;
  return {
    value: { host: name, entry, probe },
    text: `added ${name} to ${config.file}: ${target}, ${system}, ${SUDO_WORDS[sudo]}${tags.length === 0 ? '' : `, tags ${tags.map((tag) => `@${tag}`).join(' ')}`} (${found})\nnext: pideploy deploy ${name}`,
  };
}

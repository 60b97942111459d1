import { PideployError } from '@pideploy/core';
import { labDown, labExec, labShapeLink, labStatus, labUp, parseHostCount, type LabStatus } from '@pideploy/lab';
import type { CommandInvocation, CommandResult } from '../command.js';
import { integerFlag, stringFlag } from '../flags.js';

function labDirOf(invocation: CommandInvocation): string | undefined {
  return stringFlag(invocation, 'lab-dir');
}

/** Human summary of a lab: one line per host plus how to reach it. */
export function describeLabStatus(status: LabStatus): string {
  if (status.hosts.length === 0) return `the lab is not up (${status.labDir}); start it with: pideploy lab up`;
  const hostLines = status.hosts.map(
    (host) =>
      `  ${host.name.padEnd(5)} ${host.running ? 'running' : 'STOPPED'}  ${host.target.padEnd(12)} ${host.address}  ` +
      `${host.trusted ? 'trusted' : 'untrusted'}, sudo ${host.sudo === 'nopasswd' ? 'NOPASSWD' : `password "${host.sudoPassword}"`}`,
  );
  const nixpkgs = status.nixpkgs;
  const nixpkgsLines =
    nixpkgs === null
      ? []
      : [
          `mini-nixpkgs as ${nixpkgs.repository} at ${status.archiveServer?.url ?? '?'} (${status.archiveServer?.running ? 'running' : 'STOPPED'}):`,
          ...Object.entries(nixpkgs.branches).map(([branch, rev]) => `  branch ${branch.padEnd(15)} ${rev}`),
        ];
  return [
    `lab ${status.labDir}:`,
    ...hostLines,
    ...nixpkgsLines,
    `try:   ssh -F ${status.sshConfig} ${status.hosts[0]?.target ?? 'deploy@pi1'} nix-store --version`,
    `env:   source ${status.envFile}`,
  ].join('\n');
}

/** `pideploy lab up [--hosts N] [--untrusted] [--nopasswd]` */
export async function labUpCommand(invocation: CommandInvocation): Promise<CommandResult> {
  const status = await labUp(
    {
      labDir: labDirOf(invocation),
      hosts: parseHostCount(typeof invocation.flags['hosts'] === 'string' ? invocation.flags['hosts'] : undefined),
      untrusted: invocation.flags['untrusted'] === true,
      nopasswd: invocation.flags['nopasswd'] === true,
    },
    invocation.context,
  );
  return { value: status, text: describeLabStatus(status) };
}

/** `pideploy lab down` */
export async function labDownCommand(invocation: CommandInvocation): Promise<CommandResult> {
  await labDown({ labDir: labDirOf(invocation), purge: invocation.flags['purge'] === true }, invocation.context);
  return { value: { down: true }, text: 'lab is down; everything it made is removed' };
}

/** `pideploy lab status [--json]` */
export async function labStatusCommand(invocation: CommandInvocation): Promise<CommandResult> {
  const status = await labStatus({ labDir: labDirOf(invocation) });
  return { value: status, text: describeLabStatus(status) };
}

/** `pideploy lab exec <host> -- <command…>`: passes the command's output and exit code through. */
export async function labExecCommand(invocation: CommandInvocation): Promise<CommandResult> {
  const [host, ...argv] = invocation.positionals;
  if (host === undefined || argv.length === 0) {
    throw new PideployError({
      code: 'PIDEPLOY_USAGE',
      message: 'lab exec needs a host and a command',
      hint: 'pideploy lab exec pi1 -- readlink /run/current-system',
    });
  }
  const result = await labExec(host, argv, { labDir: labDirOf(invocation) });
  invocation.io.stderr.write(result.stderr);
  // Output passes through byte for byte (no added newline); --json wraps it in the result instead.
  if (!invocation.global.json) invocation.io.stdout.write(result.stdout);
  return { value: result, text: '', exitCode: result.exitCode };
}

/** `pideploy lab link <host> (--rate-mbit N | --unshaped)`: a slow link to a lab host, or none. */
export async function labLinkCommand(invocation: CommandInvocation): Promise<CommandResult> {
  const [host, ...extra] = invocation.positionals;
  const rateMbit = integerFlag(invocation, 'rate-mbit', { min: 1, unit: 'Mbit/s' });
  const unshaped = invocation.flags['unshaped'] === true;
  if (host === undefined || extra.length > 0 || (rateMbit === undefined) === !unshaped) {
    throw new PideployError({
      code: 'PIDEPLOY_USAGE',
      message: 'lab link needs one host and either --rate-mbit N or --unshaped',
      hint: 'pideploy lab link pi1 --rate-mbit 100   (later: pideploy lab link pi1 --unshaped)',
    });
  }
  const rate = await labShapeLink(host, { rateMbit }, { labDir: labDirOf(invocation) });
  return {
    value: { host, rateMbit: rate ?? null },
    text: rate === undefined ? `${host}: the link is no longer limited` : `${host}: what is sent to it is limited to ${rate} Mbit/s`,
  };
}

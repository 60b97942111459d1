import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { PideployError } from '@pideploy/core';
import { labStatus } from '@pideploy/lab';
import { addPin, parsePinSourceArguments } from '@pideploy/pin';
import { parseConfig } from '@pideploy/sdk';
import type { CommandInvocation, CommandResult } from '../command.js';
import { renderConfigurationNix, renderHardwareConfigurationNix, renderPideployJson, type InitHost } from './init-templates.js';
import { stringFlag } from '../flags.js';

/** How to name `directory` for a `cd` from `cwd`: relative when below it, else absolute. */
function nextDirectory(cwd: string, directory: string): string {
  const relative = path.relative(cwd, directory);
  return relative.startsWith('..') || path.isAbsolute(relative) ? directory : relative;
}


/**
 * `pideploy init [dir] [--lab] [--host NAME --target USER@HOST] [--branch B]`: scaffolds
 * pideploy.json, a Raspberry Pi configuration.nix (+ hardware-configuration.nix) and the nixpkgs
 * pin. With --lab the hosts are the running lab hosts and the pin comes from the lab's GitHub
 * stand-in (mini-nixpkgs), so `pideploy build pi1` works right after. Existing files are never
 * overwritten without --force, and nothing is written until the pin resolved.
 */
export async function initCommand(invocation: CommandInvocation): Promise<CommandResult> {
  const [dirArgument, ...extra] = invocation.positionals;
  if (extra.length > 0) {
    throw new PideployError({ code: 'PIDEPLOY_USAGE', message: `init takes one directory, got ${invocation.positionals.length}`, hint: 'pideploy init ./my-pi --lab' });
  }
  const directory = path.resolve(invocation.io.cwd, dirArgument ?? '.');
  const force = invocation.flags['force'] === true;
  const lab = invocation.flags['lab'] === true;
  const system = stringFlag(invocation, 'system') ?? 'aarch64-linux';
  const branch = stringFlag(invocation, 'branch') ?? 'nixos-24.05';
  const files = ['pideploy.json', 'configuration.nix', 'hardware-configuration.nix', 'pins.json', 'pins.nix'].map((name) => path.join(directory, name));
  const existing = files.filter((file) => existsSync(file));
  if (existing.length > 0 && !force) {
    throw new PideployError({
      code: 'PIDEPLOY_USAGE',
      message: `${existing[0]} already exists`,
      hint: 'pick an empty directory, or pass --force to overwrite the scaffold',
    });
  }

  let hosts: InitHost[];
  let sshConfig: string | undefined;
  let env = invocation.io.env;
  if (lab) {
    const status = await labStatus();
    if (!status.up || status.hosts.length === 0) {
      throw new PideployError({ code: 'PIDEPLOY_LAB_NOT_UP', message: 'pideploy init --lab needs a running lab', hint: 'run `pideploy lab up` first (as root)' });
    }
    hosts = status.hosts.map((host) => ({ name: host.name, target: host.target, sudo: host.sudo }));
    sshConfig = status.sshConfig;
    // Resolve the pin against the lab's GitHub stand-in (and keep local nix offline, as the lab does).
    env = { ...invocation.io.env, ...status.env };
  } else {
    const name = stringFlag(invocation, 'host') ?? 'pi';
    const target = stringFlag(invocation, 'target') ?? `deploy@${name}.local`;
    hosts = [{ name, target, sudo: 'password' }];
  }
  const pideployJson = renderPideployJson({ hosts, system, sshConfig });
  // Validate what we are about to write with the same schema `pideploy` reads it with.
  parseConfig(pideployJson, path.join(directory, 'pideploy.json'));

  await mkdir(directory, { recursive: true });
  // Pin first: if the network or the branch fails, nothing has been written.
  const source = parsePinSourceArguments({ github: 'NixOS/nixpkgs', branch, tag: undefined, rev: undefined, url: undefined });
  const pin = await addPin(
    {
      env,
      dir: directory,
      name: 'nixpkgs',
      source,
      force: true,
      onDownloadProgress: (progress) => invocation.context.reporter.emit({ type: 'download-progress', ...progress }),
    },
    invocation.context,
  );
  await writeFile(path.join(directory, 'configuration.nix'), renderConfigurationNix(hosts.length === 1 ? (hosts[0]?.name ?? 'pi') : 'pi'));
  await writeFile(path.join(directory, 'hardware-configuration.nix'), renderHardwareConfigurationNix());
  await writeFile(path.join(directory, 'pideploy.json'), pideployJson);
  return {
    value: { directory, hosts, pin: pin.pin },
    text: [
      `wrote pideploy.json, configuration.nix, hardware-configuration.nix, pins.json and pins.nix in ${directory}`,
      `pinned nixpkgs ${branch} at ${pin.pin.type === 'github' ? pin.pin.rev : pin.pin.url}`,
      `next: ${directory === invocation.io.cwd ? '' : `cd ${nextDirectory(invocation.io.cwd, directory)} && `}${lab ? `source ${sshConfig === undefined ? '' : path.join(path.dirname(path.dirname(sshConfig)), 'env')} && ` : ''}pideploy build ${hosts[0]?.name ?? ''}`.trimEnd(),
    ].join('\n'),
  };
}

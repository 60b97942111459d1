import path from 'node:path';
import { PideployError, type PideployContext } from '@pideploy/core';
import {
  addPin,
  describePinSource,
  hashSource,
  parsePinSourceArguments,
  removePins,
  showPins,
  sortedPinNames,
  updatePins,
  verifyPins,
  type Pin,
  type PinNetworkOptions,
  type PinUpdate,
} from '@pideploy/pin';
import { loadConfigIfPresent } from '@pideploy/sdk';
import type { CommandInvocation, CommandResult } from '../command.js';
import { stringFlag } from '../flags.js';


/**
 * The directory of pins.json / pins.nix (pure): `--dir`, else the directory of `--config FILE`,
 * else the current directory; relative paths against `cwd`.
 */
export function pinsDirectory(flags: { readonly dir?: string | undefined; readonly config?: string | undefined }, cwd: string): string {
  if (flags.dir !== undefined) return path.resolve(cwd, flags.dir);
  if (flags.config !== undefined) return path.dirname(path.resolve(cwd, flags.config));
  return cwd;
}

/**
 * The network options of a pin command: download progress becomes `download-progress` events on
 * the command's reporter, so `render.ts` draws them (a bar on a TTY, NDJSON with --json).
 */
function pinRuntime(invocation: CommandInvocation): { readonly options: PinNetworkOptions; readonly context: PideployContext } {
  const { reporter } = invocation.context;
  return {
    options: {
      env: invocation.io.env,
      onDownloadProgress: (progress) => reporter.emit({ type: 'download-progress', ...progress }),
    },
    context: invocation.context,
  };
}

async function withRuntime<T>(invocation: CommandInvocation, work: (options: PinNetworkOptions, context: PideployContext) => Promise<T>): Promise<T> {
  const runtime = pinRuntime(invocation);
  return work(runtime.options, runtime.context);
}

/** The lines `pin show` and `pin add` print for one pin (pure). */
export function describePin(name: string, pin: Pin): string {
  return [
    `${name}  ${describePinSource(pin)}`,
    ...(pin.type === 'github' ? [`  rev        ${pin.rev}`] : []),
    `  url        ${pin.url}`,
    `  sha256     ${pin.sha256}`,
    `  narHash    ${pin.narHash}`,
    `  storePath  ${pin.storePath}`,
  ].join('\n');
}

/** The line `pin update` prints for one pin (pure): old → new rev (or hash), or unchanged. */
export function describePinUpdate(update: PinUpdate): string {
  if (!update.changed) return `${update.name}: unchanged at ${update.newRev ?? `sha256:${update.newSha256}`}`;
  if (update.oldRev !== undefined && update.newRev !== undefined && update.oldRev !== update.newRev) {
    return `${update.name}: ${update.oldRev} → ${update.newRev}`;
  }
  return `${update.name}: sha256:${update.oldSha256} → sha256:${update.newSha256}`;
}

/** `pideploy pin add <name> (--github O/R (--branch B|--tag T|--rev R) | --url URL)` */
export async function pinAddCommand(invocation: CommandInvocation): Promise<CommandResult> {
  const [name, ...extra] = invocation.positionals;
  if (name === undefined || extra.length > 0) {
    throw new PideployError({
      code: 'PIDEPLOY_USAGE',
      message: name === undefined ? 'pin add needs a pin name' : `pin add takes one name, got ${invocation.positionals.length}`,
      hint: 'pideploy pin add nixpkgs --github NixOS/nixpkgs --branch nixos-24.05',
    });
  }
  const source = parsePinSourceArguments({
    github: stringFlag(invocation, 'github'),
    branch: stringFlag(invocation, 'branch'),
    tag: stringFlag(invocation, 'tag'),
    rev: stringFlag(invocation, 'rev'),
    url: stringFlag(invocation, 'url'),
  });
  const dir = pinsDirectory({ dir: stringFlag(invocation, 'dir'), config: invocation.global.config }, invocation.io.cwd);
  const result = await withRuntime(invocation, (options, context) =>
    addPin({ ...options, dir, name, source, force: invocation.flags['force'] === true }, context),
  );
  return {
    value: result,
    text: `${describePin(result.name, result.pin)}\n${result.previous === undefined ? 'wrote' : 'replaced the pin; wrote'} ${result.jsonFile} and ${result.nixFile}`,
  };
}

/** `pideploy pin update [name…]` */
export async function pinUpdateCommand(invocation: CommandInvocation): Promise<CommandResult> {
  const dir = pinsDirectory({ dir: stringFlag(invocation, 'dir'), config: invocation.global.config }, invocation.io.cwd);
  const result = await withRuntime(invocation, (options, context) => updatePins({ ...options, dir, names: invocation.positionals }, context));
  const lines = result.updates.map(describePinUpdate);
  lines.push(result.written ? 'wrote pins.json and pins.nix' : 'nothing changed');
  return { value: result, text: lines.join('\n') };
}

/**
 * `pideploy pin remove <name…>`: refused while a host of the pideploy.json whose pins these are
 * (the one found from here, or --config) is built from one of them (its `nixpkgs`).
 */
export async function pinRemoveCommand(invocation: CommandInvocation): Promise<CommandResult> {
  const dir = pinsDirectory({ dir: stringFlag(invocation, 'dir'), config: invocation.global.config }, invocation.io.cwd);
  const config = await loadConfigIfPresent({ cwd: invocation.io.cwd, configFile: invocation.global.config });
  if (config !== undefined && path.dirname(config.pinsFile) === dir) {
    for (const name of invocation.positionals) {
      const users = config.hosts.filter((host) => host.nixpkgs === name).map((host) => host.name);
      if (users.length > 0) {
        throw new PideployError({
          code: 'PIDEPLOY_USAGE',
          message: `pin ${name} is the nixpkgs of ${users.join(', ')} (${config.file})`,
          hint: `point ${users.length === 1 ? 'that host' : 'those hosts'} at another pin first ("nixpkgs": "…" in pideploy.json), then remove it`,
        });
      }
    }
  }
  const result = await removePins({ dir, names: invocation.positionals });
  return { value: result, text: [...result.removed.map((entry) => `removed ${entry.name}`), 'wrote pins.json and pins.nix'].join('\n') };
}

/** `pideploy pin verify [name…]`: a mismatch fails (exit 1) with Nix's "specified: … got: …". */
export async function pinVerifyCommand(invocation: CommandInvocation): Promise<CommandResult> {
  const dir = pinsDirectory({ dir: stringFlag(invocation, 'dir'), config: invocation.global.config }, invocation.io.cwd);
  const result = await withRuntime(invocation, (options, context) => verifyPins({ ...options, dir, names: invocation.positionals }, context));
  const failed = result.results.filter((entry) => !entry.ok);
  const first = failed[0];
  if (first !== undefined) {
    for (const entry of result.results) {
      if (entry.ok) invocation.context.reporter.emit({ type: 'log', level: 'info', message: `${entry.name}: ok (${entry.specified})` });
    }
    const more = failed.length > 1 ? ` (and ${failed.length - 1} more pin(s) failed: ${failed.slice(1).map((entry) => entry.name).join(', ')})` : '';
    const mismatch = first.specified !== first.got;
    throw new PideployError({
      code: 'PIDEPLOY_PIN_HASH_MISMATCH',
      message: mismatch
        ? `hash mismatch in file downloaded from '${first.url}' (pin ${first.name}): specified: ${first.specified} got: ${first.got}${more}`
        : `pin ${first.name} in pins.json is inconsistent: ${first.problems.join('; ')}${more}`,
      hint: mismatch
        ? `the source behind the URL changed or pins.json was edited; if you trust the new contents run \`pideploy pin update ${first.name}\` (or pin add --force)`
        : `run \`pideploy pin add ${first.name} … --force\` to lock it again`,
    });
  }
  return { value: result, text: result.results.map((entry) => `${entry.name}: ok (${entry.specified})`).join('\n') };
}

/** `pideploy pin show` */
export async function pinShowCommand(invocation: CommandInvocation): Promise<CommandResult> {
  const dir = pinsDirectory({ dir: stringFlag(invocation, 'dir'), config: invocation.global.config }, invocation.io.cwd);
  const result = await showPins({ dir });
  const names = sortedPinNames(result.file);
  const text = names.length === 0 ? `no pins in ${result.jsonFile}` : names.map((name) => describePin(name, result.file.pins[name] as Pin)).join('\n');
  return { value: result, text };
}

/** `pideploy pin hash <dir|file.tar.gz|url> [--sri]`: prints what `nix-prefetch-url --unpack` prints. */
export async function pinHashCommand(invocation: CommandInvocation): Promise<CommandResult> {
  const [source, ...extra] = invocation.positionals;
  if (source === undefined || extra.length > 0) {
    throw new PideployError({
      code: 'PIDEPLOY_USAGE',
      message: source === undefined ? 'pin hash needs a directory, tarball or URL' : 'pin hash takes one directory, tarball or URL',
      hint: 'pideploy pin hash https://github.com/NixOS/nixpkgs/archive/<rev>.tar.gz',
    });
  }
  const result = await withRuntime(invocation, (options, context) =>
    hashSource({ ...options, source, sri: invocation.flags['sri'] === true, cwd: invocation.io.cwd }, context),
  );
  return { value: result, text: result.hash };
}

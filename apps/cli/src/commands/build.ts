import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import {
  BUILD_MODES,
  DEFAULT_PIN_NAME,
  buildToplevel,
  localNixSystem,
  parseRemoteBuilder,
  renderBuildExpression,
  type BuildMode,
  type RemoteBuilder,
} from '@pideploy/build';
import { buildBundle, planBundle, renderPlannedBundleExpression } from '@pideploy/bundle';
import { PideployError } from '@pideploy/core';
import { renderActivationScript } from '@pideploy/activate';
import type { CommandInvocation, CommandResult } from '../command.js';

/** One host to build, resolved from pideploy.json and/or flags. */
export interface BuildTarget {
  readonly name: string;
  readonly configuration: string;
  readonly system: string;
  readonly mode: BuildMode;
  readonly builders: readonly RemoteBuilder[];
}

/** The small part of pideploy.json the build command reads. */
interface BuildConfigFile {
  readonly pins?: string;
  readonly defaults?: { readonly system?: string; readonly buildMode?: BuildMode; readonly builders?: string };
  readonly hosts?: Readonly<Record<string, { readonly configuration?: string; readonly system?: string; readonly buildMode?: BuildMode; readonly builders?: string }>>;
}

/** The activation stage's script with the bundle's placeholders: its own shell, toplevel and path. */
const BUNDLE_ACTIVATE_SCRIPT = renderActivationScript({ shebang: '#!@shell@', defaultToplevel: '@toplevel@', defaultBundle: '@bundle@' });

function stringFlag(invocation: CommandInvocation, name: string): string | undefined {
  const value = invocation.flags[name];
  return typeof value === 'string' ? value : undefined;
}

function parseMode(value: string | undefined, where: string): BuildMode | undefined {
  if (value === undefined) return undefined;
  if (!(BUILD_MODES as readonly string[]).includes(value)) {
    throw new PideployError({ code: 'PIDEPLOY_USAGE', message: `unknown build mode "${value}" (${where})`, hint: `use one of: ${BUILD_MODES.join(', ')}` });
  }
  return value as BuildMode;
}

function parseBuilders(spec: string | undefined): RemoteBuilder[] {
  return spec === undefined || spec.trim() === '' ? [] : spec.split(';').filter((part) => part.trim() !== '').map(parseRemoteBuilder);
}

/** Reads pideploy.json (from --config, else the current directory) if there is one. */
async function readBuildConfig(invocation: CommandInvocation): Promise<{ file: string; config: BuildConfigFile } | undefined> {
  const explicit = invocation.global.config;
  const file = explicit === undefined ? path.join(invocation.io.cwd, 'pideploy.json') : path.resolve(invocation.io.cwd, explicit);
  if (explicit === undefined && !existsSync(file)) return undefined;
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    throw new PideployError({ code: 'PIDEPLOY_CONFIG_NOT_FOUND', message: `cannot read ${file}`, hint: 'check the path given to --config', cause: error });
  }
  try {
    return { file, config: JSON.parse(text) as BuildConfigFile };
  } catch (error) {
    throw new PideployError({ code: 'PIDEPLOY_CONFIG_INVALID', message: `${file} is not valid JSON: ${(error as Error).message}`, hint: 'fix the file', cause: error });
  }
}

/** Resolves the hosts to build from positionals, flags and pideploy.json. */
export function resolveBuildTargets(
  positionals: readonly string[],
  flags: { configuration?: string; system?: string; mode?: string; builders?: string },
  loaded: { file: string; config: BuildConfigFile } | undefined,
  cwd: string,
): BuildTarget[] {
  const baseDir = loaded === undefined ? cwd : path.dirname(loaded.file);
  const defaults = loaded?.config.defaults ?? {};
  const flagMode = parseMode(flags.mode, '--mode');
  if (flags.configuration !== undefined) {
    if (positionals.length > 1) {
      throw new PideployError({ code: 'PIDEPLOY_USAGE', message: '--configuration builds one host', hint: 'name at most one host with --configuration' });
    }
    const name = positionals[0] ?? 'default';
    const host = loaded?.config.hosts?.[name];
    return [
      {
        name,
        configuration: path.resolve(cwd, flags.configuration),
        system: flags.system ?? host?.system ?? defaults.system ?? 'aarch64-linux',
        mode: flagMode ?? parseMode(host?.buildMode ?? defaults.buildMode, 'pideploy.json') ?? 'emulated',
        builders: parseBuilders(flags.builders ?? host?.builders ?? defaults.builders),
      },
    ];
  }
  const hosts = loaded?.config.hosts;
  if (loaded === undefined || hosts === undefined) {
    throw new PideployError({
      code: 'PIDEPLOY_USAGE',
      message: 'nothing to build: no pideploy.json here and no --configuration',
      hint: 'pideploy build --configuration ./configuration.nix --pins ./pins.nix, or run it where pideploy.json is (or pass --config FILE)',
    });
  }
  const names = positionals.length > 0 ? positionals : Object.keys(hosts);
  return names.map((name) => {
    const host = hosts[name];
    if (host === undefined) {
      const known = Object.keys(hosts);
      throw new PideployError({
        code: 'PIDEPLOY_UNKNOWN_HOST',
        message: `no host named "${name}" in ${loaded.file}`,
        hint: known.length > 0 ? `hosts: ${known.join(', ')}` : 'add it under "hosts" in pideploy.json',
      });
    }
    if (host.configuration === undefined) {
      throw new PideployError({ code: 'PIDEPLOY_CONFIG_INVALID', message: `host "${name}" in ${loaded.file} has no "configuration"`, hint: 'set it to the path of its configuration.nix' });
    }
    return {
      name,
      configuration: path.resolve(baseDir, host.configuration),
      system: flags.system ?? host.system ?? defaults.system ?? 'aarch64-linux',
      mode: flagMode ?? parseMode(host.buildMode ?? defaults.buildMode, `${loaded.file} hosts.${name}`) ?? 'emulated',
      builders: parseBuilders(flags.builders ?? host.builders ?? defaults.builders),
    };
  });
}

/** The pin's url/sha256/rev from pins.json beside pins.nix (null fields when there is none). */
async function readPinRecord(pinsNix: string, pinName: string): Promise<{ url: string | null; sha256: string | null; rev: string | null }> {
  try {
    const lock = JSON.parse(await readFile(path.join(path.dirname(pinsNix), 'pins.json'), 'utf8')) as {
      pins?: Record<string, { url?: string; sha256?: string; rev?: string }>;
    };
    const pin = lock.pins?.[pinName];
    return { url: pin?.url ?? null, sha256: pin?.sha256 ?? null, rev: pin?.rev ?? null };
  } catch {
    return { url: null, sha256: null, rev: null };
  }
}

/**
 * `pideploy build [host…] [--print-expr] [--system S] [--mode M] [--configuration FILE] [--pins FILE]`:
 * builds each host's toplevel, then its bundle, and prints the bundle store paths (like nix-build).
 */
export async function buildCommand(invocation: CommandInvocation): Promise<CommandResult> {
  const loaded = await readBuildConfig(invocation);
  const targets = resolveBuildTargets(
    invocation.positionals,
    {
      configuration: stringFlag(invocation, 'configuration'),
      system: stringFlag(invocation, 'system'),
      mode: stringFlag(invocation, 'mode'),
      builders: stringFlag(invocation, 'builders'),
    },
    loaded,
    invocation.io.cwd,
  );
  const projectDir = loaded === undefined ? invocation.io.cwd : path.dirname(loaded.file);
  const pinsFlag = stringFlag(invocation, 'pins');
  const configuredPins = loaded?.config.pins;
  const pinsFile =
    pinsFlag !== undefined
      ? path.resolve(invocation.io.cwd, pinsFlag)
      : configuredPins !== undefined
        ? path.resolve(projectDir, configuredPins.endsWith('.json') ? path.join(path.dirname(configuredPins), 'pins.nix') : configuredPins)
        : path.join(projectDir, 'pins.nix');
  if (!existsSync(pinsFile)) {
    throw new PideployError({
      code: 'PIDEPLOY_PINS_NOT_FOUND',
      message: `no pins file at ${pinsFile}`,
      hint: 'pin nixpkgs first (pideploy pin add nixpkgs --github NixOS/nixpkgs --branch nixos-24.11), or pass --pins FILE',
    });
  }
  const pinName = stringFlag(invocation, 'pin') ?? DEFAULT_PIN_NAME;
  const pin = await readPinRecord(pinsFile, pinName);
  const stateDir = path.join(projectDir, '.pideploy');
  const printExpr = invocation.flags['print-expr'] === true;
  const results: { host: string; bundle: string; toplevel: string; mode: BuildMode; system: string }[] = [];
  const expressions: string[] = [];
  for (const target of targets) {
    const bundleRequest = {
      host: target.name,
      system: target.system,
      buildMode: target.mode,
      buildPlatform: localNixSystem(),
      pinsFile,
      pinName,
      pin,
      configuration: target.configuration,
      projectDir,
      // bin/activate is the activation stage's script (magic rollback), run by hand or by pideploy.
      activateScript: BUNDLE_ACTIVATE_SCRIPT,
    };
    // Missing or outside files fail here, before any Nix work.
    const plan = await planBundle(bundleRequest);
    if (printExpr) {
      const toplevelExpression = renderBuildExpression({
        pinsFile,
        pinName,
        configuration: target.configuration,
        system: target.system,
        mode: target.mode,
        buildPlatform: localNixSystem(),
      });
      expressions.push(renderPlannedBundleExpression(plan, toplevelExpression));
      continue;
    }
    const toplevel = await buildToplevel(
      {
        host: target.name,
        pinsFile,
        pinName,
        configuration: target.configuration,
        system: target.system,
        mode: target.mode,
        buildPlatform: localNixSystem(),
        builders: target.builders,
        stateDir,
      },
      invocation.context,
    );
    const bundle = await buildBundle(
      { ...bundleRequest, toplevel, nixArguments: toplevel.nixArguments, stateDir },
      invocation.context,
    );
    results.push({ host: target.name, bundle: bundle.outPath, toplevel: toplevel.outPath, mode: target.mode, system: target.system });
  }
  if (printExpr) return { value: { expressions }, text: expressions.join('\n') };
  return { value: { bundles: results }, text: results.map((result) => result.bundle).join('\n') };
}

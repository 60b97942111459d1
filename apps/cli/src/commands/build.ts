import { existsSync } from 'node:fs';
import path from 'node:path';
import {
  BUILD_MODES,
  DEFAULT_PIN_NAME,
  localNixSystem,
  parseRemoteBuilder,
  renderBuildExpression,
  type BuildMode,
  type RemoteBuilder,
} from '@pideploy/build';
import { renderPlannedBundleExpression, type BundlePlan } from '@pideploy/bundle';
import { PideployError } from '@pideploy/core';
import { createHostBuilder, loadConfigIfPresent, selectHosts, type HostBuildSpec, type ResolvedConfig } from '@pideploy/sdk';
import type { CommandInvocation, CommandResult } from '../command.js';
import { nixBuildFlags, stringFlag } from '../flags.js';

/** One host to build, resolved from pideploy.json and/or flags. */
export interface BuildTarget {
  readonly name: string;
  readonly configuration: string;
  readonly system: string;
  readonly mode: BuildMode;
  readonly builders: readonly RemoteBuilder[];
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

/**
 * Resolves the hosts to build from positionals (names, globs, @tags), flags and the validated
 * pideploy.json (flags win over the host's settings; `--configuration` builds one host without it).
 */
export function resolveBuildTargets(
  positionals: readonly string[],
  flags: { configuration?: string; system?: string; mode?: string; builders?: string },
  config: ResolvedConfig | undefined,
  cwd: string,
): BuildTarget[] {
  const flagMode = parseMode(flags.mode, '--mode');
  if (flags.configuration !== undefined) {
    if (positionals.length > 1) {
      throw new PideployError({ code: 'PIDEPLOY_USAGE', message: '--configuration builds one host', hint: 'name at most one host with --configuration' });
    }
    const name = positionals[0] ?? 'default';
    const host = config?.hosts.find((item) => item.name === name);
    return [
      {
        name,
        configuration: path.resolve(cwd, flags.configuration),
        system: flags.system ?? host?.system ?? 'aarch64-linux',
        mode: flagMode ?? host?.buildMode ?? 'emulated',
        builders: parseBuilders(flags.builders ?? host?.builders),
      },
    ];
  }
  if (config === undefined) {
    throw new PideployError({
      code: 'PIDEPLOY_USAGE',
      message: 'nothing to build: no pideploy.json here and no --configuration',
      hint: 'pideploy build --configuration ./configuration.nix --pins ./pins.nix, or run it where pideploy.json is (or pass --config FILE)',
    });
  }
  return selectHosts(config, positionals).map((host) => ({
    name: host.name,
    configuration: host.configuration,
    system: flags.system ?? host.system,
    mode: flagMode ?? host.buildMode,
    builders: parseBuilders(flags.builders ?? host.builders),
  }));
}

/**
 * `pideploy build [host…] [--print-expr] [--system S] [--mode M] [--configuration FILE] [--pins FILE]`
 * (and the Nix settings flags, see nixBuildFlags): builds each host's toplevel, then its bundle,
 * and prints the bundle store paths (like nix-build).
 */
export async function buildCommand(invocation: CommandInvocation): Promise<CommandResult> {
  const nixOptions = nixBuildFlags(invocation);
  const config =
    await loadConfigIfPresent({ cwd: invocation.io.cwd, configFile: invocation.global.config });
  const targets = resolveBuildTargets(
    invocation.positionals,
    {
      configuration: stringFlag(invocation, 'configuration'),
      system: stringFlag(invocation, 'system'),
      mode: stringFlag(invocation, 'mode'),
      builders: stringFlag(invocation, 'builders'),
    },
    config,
    invocation.io.cwd,
  );
  const projectDir = config?.directory ?? invocation.io.cwd;
  const pinsFlag = stringFlag(invocation, 'pins');
  // pins.nix sits beside the pins.json lock that pideploy.json names.
  const pinsFile =
    pinsFlag !== undefined
      ? path.resolve(invocation.io.cwd, pinsFlag)
      : path.join(config === undefined ? projectDir : path.dirname(config.pinsFile), 'pins.nix');
  if (!existsSync(pinsFile)) {
    throw new PideployError({
      code: 'PIDEPLOY_PINS_NOT_FOUND',
      message: `no pins file at ${pinsFile}`,
      hint: 'pin nixpkgs first (pideploy pin add nixpkgs --github NixOS/nixpkgs --branch nixos-24.05), or pass --pins FILE',
    });
  }
  const pinName = stringFlag(invocation, 'pin') ?? DEFAULT_PIN_NAME;
  const builder = createHostBuilder({ projectDir, pinsFile, pinName, env: invocation.io.env, nixOptions });
  const specs = targets.map((target) => ({ name: target.name, configuration: target.configuration, system: target.system, buildMode: target.mode, builders: target.builders }));
  // Missing or outside files of every host fail here, before any Nix work.
  const plans = await Promise.all(specs.map((spec) => builder.plan(spec)));
  const printExpr = invocation.flags['print-expr'] === true;
  const results: { host: string; bundle: string; toplevel: string; mode: BuildMode; system: string }[] = [];
  const expressions: string[] = [];
  for (const [index, target] of targets.entries()) {
    if (printExpr) {
      const toplevelExpression = renderBuildExpression({
        pinsFile,
        pinName,
        configuration: target.configuration,
        system: target.system,
        mode: target.mode,
        buildPlatform: localNixSystem(),
      });
      expressions.push(renderPlannedBundleExpression(plans[index] as BundlePlan, toplevelExpression));
      continue;
    }
    const built = await builder.build(specs[index] as HostBuildSpec, invocation.context);
    results.push({ host: target.name, bundle: built.bundle.outPath, toplevel: built.toplevel.outPath, mode: target.mode, system: target.system });
  }
  if (printExpr) return { value: { expressions }, text: expressions.join('\n') };
  return { value: { bundles: results }, text: results.map((result) => result.bundle).join('\n') };
}

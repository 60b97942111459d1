import { existsSync } from 'node:fs';
import path from 'node:path';
import {
  BUILD_MODES,
  DEFAULT_PIN_NAME,
  derivationName,
  localNixSystem,
  parseRemoteBuilder,
  renderBuildExpression,
  type BuildMode,
  type RemoteBuilder,
} from '@pideploy/build';
import { renderPlannedBundleExpression, type BundlePlan } from '@pideploy/bundle';
import { PideployError, toPideployError } from '@pideploy/core';
import { createHostBuilder, loadConfigIfPresent, selectHosts, type HostBuilder, type HostBuildSpec, type ResolvedConfig } from '@pideploy/sdk';
import type { CommandInvocation, CommandResult } from '../command.js';
import { nixBuildFlags, stringFlag } from '../flags.js';
import { describeHostFailure } from '../render.js';

/** One host to build, resolved from pideploy.json and/or flags. */
export interface BuildTarget {
  readonly name: string;
  readonly configuration: string;
  readonly system: string;
  readonly mode: BuildMode;
  readonly builders: readonly RemoteBuilder[];
  /** The pin that is its nixpkgs (pideploy.json `nixpkgs`; undefined: `nixpkgs`). */
  readonly nixpkgs?: string | undefined;
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
        nixpkgs: host?.nixpkgs,
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
    nixpkgs: host.nixpkgs,
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
  // --pin for every host, else each host's pideploy.json nixpkgs, else nixpkgs.
  const pinFlag = stringFlag(invocation, 'pin');
  const builder = createHostBuilder({ projectDir, pinsFile, pinName: pinFlag, env: invocation.io.env, nixOptions });
  const specs = targets.map((target) => ({ name: target.name, configuration: target.configuration, system: target.system, buildMode: target.mode, builders: target.builders, nixpkgs: target.nixpkgs }));
  if (invocation.flags['dry-run'] === true) {
    if (invocation.flags['print-expr'] === true) throw new PideployError({ code: 'PIDEPLOY_USAGE', message: '--dry-run and --print-expr contradict each other', hint: 'give one of them' });
    return await dryBuild(builder, specs, invocation);
  }
  // Missing or outside files of every host fail here, before any Nix work.
  const plans = await Promise.all(specs.map((spec) => builder.plan(spec)));
  const printExpr = invocation.flags['print-expr'] === true;
  const results: { host: string; bundle: string; toplevel: string; mode: BuildMode; system: string }[] = [];
  const expressions: string[] = [];
  for (const [index, target] of targets.entries()) {
    if (printExpr) {
      const toplevelExpression = renderBuildExpression({
        pinsFile,
        pinName: pinFlag ?? target.nixpkgs ?? DEFAULT_PIN_NAME,
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

/** One host of `pideploy build --dry-run`: what its build would do, or why it cannot be built. */
export type DryBuildOutcome =
  | { readonly host: string; readonly ok: true; readonly outPath: string; readonly built: boolean; readonly derivationsToBuild: readonly string[]; readonly pathsToFetch: readonly string[] }
  | { readonly host: string; readonly ok: false; readonly error: ReturnType<PideployError['toJSON']> };

/**
 * `pideploy build --dry-run [host…]` (nixos-rebuild dry-build): every host's configuration is
 * evaluated, even when another one fails, and Nix says what a build would build and fetch;
 * nothing is built. Exit 1 when a host cannot be evaluated (for CI).
 */
async function dryBuild(builder: HostBuilder, specs: readonly HostBuildSpec[], invocation: CommandInvocation): Promise<CommandResult> {
  const outcomes: DryBuildOutcome[] = [];
  const lines: string[] = [];
  for (const spec of specs) {
    try {
      await builder.plan(spec);
      const dry = await builder.dryBuild(spec, invocation.context);
      outcomes.push({ host: spec.name, ok: true, outPath: dry.outPath, built: dry.built, derivationsToBuild: dry.derivationsToBuild, pathsToFetch: dry.pathsToFetch });
      lines.push(
        dry.built
          ? `${spec.name}: built already: ${dry.outPath}`
          : `${spec.name}: would build ${dry.derivationsToBuild.length} derivation(s) and fetch ${dry.pathsToFetch.length} path(s) for ${dry.outPath}`,
        ...dry.derivationsToBuild.map((drvPath) => `  ${derivationName(drvPath)}`),
      );
    } catch (error) {
      // Ctrl-C stops the whole run; anything else is this host's failure, and the next one is evaluated.
      if (invocation.context.signal.aborted) throw error;
      const failure = toPideployError(error);
      outcomes.push({ host: spec.name, ok: false, error: failure.toJSON() });
      lines.push(describeHostFailure(spec.name, failure, 'FAILED: '));
    }
  }
  const failed = outcomes.filter((outcome) => !outcome.ok).length;
  if (failed > 0) lines.push(`${failed} of ${outcomes.length} host(s) cannot be built`);
  return { value: { dryRun: outcomes }, text: lines.join('\n'), exitCode: failed > 0 ? 1 : 0 };
}

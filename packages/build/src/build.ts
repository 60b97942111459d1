import { readFile, readlink } from 'node:fs/promises';
import path from 'node:path';
import { PideployError, createBaseContext, tailLines, type PideployContext } from '@pideploy/core';
import { NO_SEARCH_PATH_ARGUMENTS, ensureStateDir, gcRootPath, nixBuild, nixInstantiate, pinnedNixEnv } from '@pideploy/nix';
import { buildModeArguments, type RemoteBuilder } from './builders.js';
import {
  checkBinfmt,
  checkExtraPlatforms,
  readBinfmtEntries,
  readNixPlatformSettings,
  type DoctorCheck,
} from './doctor.js';
import { DEFAULT_PIN_NAME, localNixSystem, renderBuildExpression, type BuildMode } from './expression.js';
import { createBuildLogTracker, derivationName } from './internal-json.js';
import { DOCTOR_HINT, translateNixFailure } from './nix-errors.js';
import { nixOptionArguments, type NixBuildOptions } from './nix-options.js';

/** What {@link buildToplevel} builds. */
export interface BuildToplevelRequest {
  /** Host name: put on events and in GC root names (default `default`). */
  readonly host?: string | undefined;
  /** Absolute path of `pins.nix`. */
  readonly pinsFile: string;
  /** Attribute of `pins.nix` holding nixpkgs (default `nixpkgs`). */
  readonly pinName?: string | undefined;
  /** Absolute path of the host's configuration.nix. */
  readonly configuration: string;
  /** The target system (e.g. `aarch64-linux`). */
  readonly system: string;
  /** How to build. */
  readonly mode: BuildMode;
  /** `cross`: this machine's system (default: detected). */
  readonly buildPlatform?: string | undefined;
  /** `builders`: remote builders (default: Nix's own `builders` setting). */
  readonly builders?: readonly RemoteBuilder[] | undefined;
  /**
   * Project state directory: GC roots go to `<stateDir>/gcroots/<host>-toplevel` (and `.drv`).
   * Without it nothing is rooted (`--no-out-link`).
   */
  readonly stateDir?: string | undefined;
  /** Environment variables for nix, merged over this process's (`NIX_PATH` is always emptied). */
  readonly env?: Readonly<Record<string, string | undefined>> | undefined;
  /** Skip the binfmt / extra-platforms check before an emulated build. */
  readonly skipPreflight?: boolean | undefined;
  /** Nix settings of this build (`--show-trace`, `--keep-going`, `--max-jobs`, `--cores`, `-L`, `--option`). */
  readonly nixOptions?: NixBuildOptions | undefined;
}

/** What {@link buildToplevel} produced: the build stage's artifact (`version: 1`, JSON-safe). */
export interface BuildToplevelResult {
  readonly version: 1;
  readonly host: string;
  readonly system: string;
  readonly mode: BuildMode;
  /** The generated expression (what `--print-expr` shows). */
  readonly expression: string;
  /** The toplevel's derivation. */
  readonly drvPath: string;
  /** The toplevel's store path. */
  readonly outPath: string;
  /** The GC root pointing at outPath, if a state dir was given. */
  readonly gcRoot: string | undefined;
  /** Extra nix-build arguments (the request's Nix options, then the mode's: builders etc.), for later builds of the same host. */
  readonly nixArguments: readonly string[];
  /** Derivations built in this run, with where (`''` = here, else the builder's URI). */
  readonly built: readonly { readonly drvPath: string; readonly machine: string }[];
  readonly durationMs: number;
}

/** `<stateDir>/gcroots/<host>-<what>` (`@pideploy/nix`'s, where every stage roots its results). */
export { gcRootPath };

/**
 * The checks an emulated build needs before any work: a binfmt handler and `extra-platforms`
 * for the target. Returns the failed checks (empty when the build can go ahead).
 */
export async function preflightEmulation(
  system: string,
  env: Readonly<Record<string, string | undefined>> | undefined,
  signal?: AbortSignal,
): Promise<DoctorCheck[]> {
  if (localNixSystem() === system) return [];
  const failed: DoctorCheck[] = [];
  const binfmt = checkBinfmt(await readBinfmtEntries(), system, true);
  if (binfmt.status === 'fail') failed.push(binfmt);
  const settings = await readNixPlatformSettings(env, signal);
  if (settings !== undefined) {
    const platforms = checkExtraPlatforms(settings, system, true);
    if (platforms.status === 'fail') failed.push(platforms);
  }
  return failed;
}

/** What {@link evaluateExpression} needs besides the request. */
interface EvaluationSettings {
  readonly host: string;
  readonly env: Readonly<Record<string, string | undefined>>;
  /** Root the derivation at `<gcRoot>.drv` (undefined: no root). */
  readonly gcRoot: string | undefined;
  readonly signal: AbortSignal;
  /** Awaited before the evaluation's outcome counts (the emulation check wins over it). */
  readonly settled: Promise<void>;
}

/**
 * Evaluates the host's generated expression once (`nix-instantiate`, NIX_PATH empty, the
 * request's evaluation settings) into the toplevel's derivation; an error is translated, and Nix's
 * output shown (all of it with `--show-trace`, else its end).
 */
async function evaluateExpression(request: BuildToplevelRequest, context: PideployContext, settings: EvaluationSettings): Promise<{ expression: string; drvPath: string }> {
  const expression = renderBuildExpression({
    pinsFile: request.pinsFile,
    pinName: request.pinName ?? DEFAULT_PIN_NAME,
    configuration: request.configuration,
    system: request.system,
    mode: request.mode,
    buildPlatform: request.buildPlatform,
  });
  const { gcRoot, host } = settings;
  const instantiateArgs = [
    ...NO_SEARCH_PATH_ARGUMENTS,
    ...nixOptionArguments(request.nixOptions).evaluation,
    ...(gcRoot === undefined ? [] : ['--add-root', `${gcRoot}.drv`, '--indirect']),
    '-E',
    expression,
  ];
  const instantiated = await nixInstantiate(instantiateArgs, { env: settings.env, signal: settings.signal }).catch(async (error: unknown) => {
    await settings.settled;
    throw error;
  });
  await settings.settled;
  if (instantiated.exitCode !== 0) {
    const error = translateNixFailure({
      command: instantiated.command,
      exitCode: instantiated.exitCode,
      stderr: instantiated.stderr,
      system: request.system,
      doing: `evaluating ${host}'s configuration`,
    });
    // With --show-trace the whole trace is what was asked for; otherwise its end says enough.
    const stderr = instantiated.stderr.replace(/^warning: you did not specify '--add-root'.*\n/mu, '');
    context.reporter.emit({ type: 'log', level: 'info', host, message: request.nixOptions?.showTrace === true ? stderr.replace(/\s+$/u, '') : tailLines(stderr) });
    throw error;
  }
  // With --add-root nix-instantiate prints the root's path, which links to the derivation.
  const drvLine = instantiated.stdout.trim().split('\n').pop() ?? '';
  return { expression, drvPath: gcRoot === undefined ? drvLine : await readlink(drvLine) };
}

/**
 * Builds the host's `config.system.build.toplevel` from the pinned nixpkgs: evaluates the
 * generated expression once (`nix-instantiate`, NIX_PATH empty), then realises the derivation
 * with `nix-build --log-format internal-json`, emitting `build-start`, `build-progress`
 * (built M of N, current derivation) and `build-end`. Emulated builds check binfmt and
 * extra-platforms while Nix evaluates, and fail with the doctor's fix before building anything.
 * @throws PideployError `PIDEPLOY_BUILD_NO_EMULATION`, `PIDEPLOY_BUILD_UNPINNED`,
 *   `PIDEPLOY_BUILD_MISSING_FILE`, `PIDEPLOY_BUILD_EVAL_FAILED`, `PIDEPLOY_BUILD_FAILED`.
 */
export async function buildToplevel(request: BuildToplevelRequest, context: PideployContext = createBaseContext()): Promise<BuildToplevelResult> {
  const started = Date.now();
  const host = request.host ?? 'default';
  const env = pinnedNixEnv(request.env);
  // Checked before any work: a setting Nix could misread stops the build here.
  const optionArguments = nixOptionArguments(request.nixOptions);
  const emit = context.reporter.emit.bind(context.reporter);

  // The emulation check (binfmt, extra-platforms: a `nix show-config`) runs while Nix evaluates,
  // which needs no emulation: it is off the critical path, and a failure stops the evaluation and
  // wins over whatever the evaluation said.
  const evaluation = new AbortController();
  const evaluationSignal = AbortSignal.any([context.signal, evaluation.signal]);
  const preflight =
    request.mode === 'emulated' && request.skipPreflight !== true
      ? preflightEmulation(request.system, env, context.signal).then((failed) => {
          if (failed.length === 0) return;
          evaluation.abort();
          const fix = failed[0]?.fix;
          throw new PideployError({
            code: 'PIDEPLOY_BUILD_NO_EMULATION',
            message: `this machine cannot build ${request.system} under emulation: ${failed.map((check) => check.detail).join('; ')}`,
            hint: `${DOCTOR_HINT}; NixOS: ${fix?.nixos ?? ''}; Debian/Ubuntu: ${fix?.debian ?? ''}`,
          });
        })
      : Promise.resolve();
  preflight.catch(() => undefined);

  const gcRoot = request.stateDir === undefined ? undefined : gcRootPath(request.stateDir, host, 'toplevel');
  if (request.stateDir !== undefined && gcRoot !== undefined) await ensureStateDir(request.stateDir, path.relative(request.stateDir, path.dirname(gcRoot)));
  const { expression, drvPath } = await evaluateExpression(request, context, { host, env, gcRoot, signal: evaluationSignal, settled: preflight });

  // The mode's arguments come last: builders mode keeps its --max-jobs 0 whatever the options say.
  const nixArguments = [...optionArguments.build, ...buildModeArguments(request.mode, request.builders)];
  const buildArgs = [...nixArguments, ...(gcRoot === undefined ? ['--no-out-link'] : ['--out-link', gcRoot]), drvPath];
  const tracker = createBuildLogTracker({ host, emit, printBuildLogs: request.nixOptions?.printBuildLogs });
  const built = await nixBuild(buildArgs, { env, signal: context.signal, onStderrLine: (line) => tracker.handleLine(line) });
  tracker.ensureStarted();
  const summary = tracker.summary();
  if (built.exitCode !== 0) {
    const failed = summary.failedDerivation;
    const errorText = summary.errors.join('\n');
    if (failed === undefined) {
      throw translateNixFailure({
        command: built.command,
        exitCode: built.exitCode,
        stderr: errorText || built.stderr,
        system: request.system,
        doing: `building ${host}'s system`,
      });
    }
    const logTail = summary.logTail.join('\n');
    if (logTail !== '') emit({ type: 'log', level: 'info', host, message: `last ${summary.logTail.length} log lines of ${derivationName(failed)}:\n${logTail}` });
    const platformError = /Exec format error/u.test(logTail + errorText);
    // --keep-going: every derivation that failed is named, the first one's log shown.
    const others = summary.failedDerivations.slice(1);
    const alsoFailed = others.length === 0 ? '' : `; ${others.length} more failed: ${others.map(derivationName).join(', ')}`;
    throw new PideployError({
      code: platformError ? 'PIDEPLOY_BUILD_NO_EMULATION' : 'PIDEPLOY_BUILD_FAILED',
      message: `building ${derivationName(failed)} failed (${failed}): ${summary.errors[0]?.replace(/^builder for '[^']+' /u, '') ?? 'see its log'}${alsoFailed}`,
      hint: platformError
        ? DOCTOR_HINT
        : `its last log lines are above; see the whole log with: nix log ${failed}`,
      commandFailure: { command: built.command, exitCode: built.exitCode ?? undefined, stderrTail: logTail || tailLines(errorText) },
    });
  }
  const outPath = built.stdout.trim().split('\n').pop() ?? '';
  const durationMs = Date.now() - started;
  emit({ type: 'build-end', host, outPath, durationMs });
  return {
    version: 1,
    host,
    system: request.system,
    mode: request.mode,
    expression,
    drvPath,
    outPath,
    gcRoot,
    nixArguments,
    built: summary.builds,
    durationMs,
  };
}

/** What {@link dryBuildToplevel} found: what building the host's system would do (`version: 1`, JSON-safe). */
export interface DryBuildResult {
  readonly version: 1;
  readonly host: string;
  readonly system: string;
  readonly mode: BuildMode;
  /** The toplevel's derivation (evaluated, not rooted). */
  readonly drvPath: string;
  /** The system's store path, as a build would make it. */
  readonly outPath: string;
  /** Nothing to build or fetch: the system is in this machine's store already. */
  readonly built: boolean;
  /** Derivations a build would build (here, under emulation, or on the builders). */
  readonly derivationsToBuild: readonly string[];
  /** Paths a build would fetch from substituters. */
  readonly pathsToFetch: readonly string[];
  readonly durationMs: number;
}

/** The `out` path of a derivation file's text (ATerm: `Derive([("out","/nix/store/…",…`); pure. */
export function derivationOutPath(drvText: string): string | undefined {
  return /^Derive\(\[\("out","(\/[^"]+)"/u.exec(drvText)?.[1];
}

/**
 * A dry build (`nixos-rebuild dry-build`): evaluates the host's configuration as
 * {@link buildToplevel} does, then asks Nix what the build would build and fetch
 * (`nix-build --dry-run`), building nothing and rooting nothing; no emulation check (nothing runs
 * under qemu). For CI: every host's configuration evaluates, and what a build would cost.
 * @throws PideployError `PIDEPLOY_BUILD_UNPINNED`, `PIDEPLOY_BUILD_MISSING_FILE`,
 *   `PIDEPLOY_BUILD_EVAL_FAILED`, `PIDEPLOY_BUILD_FAILED` (Nix could not say).
 */
export async function dryBuildToplevel(request: BuildToplevelRequest, context: PideployContext = createBaseContext()): Promise<DryBuildResult> {
  const started = Date.now();
  const host = request.host ?? 'default';
  const env = pinnedNixEnv(request.env);
  const optionArguments = nixOptionArguments(request.nixOptions);
  const { drvPath } = await evaluateExpression(request, context, { host, env, gcRoot: undefined, signal: context.signal, settled: Promise.resolve() });
  const outPath = derivationOutPath(await readFile(drvPath, 'utf8'));
  // Nix's plan only: its warnings are shown, its build events are not (nothing is built).
  const tracker = createBuildLogTracker({ host, emit: (event) => (event.type === 'log' ? context.reporter.emit(event) : undefined) });
  const args = [...optionArguments.build, ...buildModeArguments(request.mode, request.builders), '--dry-run', drvPath];
  const asked = await nixBuild(args, { env, signal: context.signal, onStderrLine: (line) => tracker.handleLine(line) });
  const summary = tracker.summary();
  if (asked.exitCode !== 0 || outPath === undefined) {
    throw new PideployError({
      code: 'PIDEPLOY_BUILD_FAILED',
      message: `Nix could not say what building ${host}'s system would do: ${summary.errors[0] ?? (outPath === undefined ? `${drvPath} names no out path` : 'see its output')}`,
      hint: 'rerun with --verbose for its full output',
      commandFailure: { command: asked.command, exitCode: asked.exitCode ?? undefined, stderrTail: tailLines(summary.errors.join('\n') || asked.stderr) },
    });
  }
  return {
    version: 1,
    host,
    system: request.system,
    mode: request.mode,
    drvPath,
    outPath,
    built: summary.plannedDerivations.length === 0 && summary.plannedFetches.length === 0,
    derivationsToBuild: summary.plannedDerivations,
    pathsToFetch: summary.plannedFetches,
    durationMs: Date.now() - started,
  };
}

import { lstat, readdir, readFile, readlink, rename, rm, symlink } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { PIDEPLOY_VERSION, PideployError, createBaseContext, tailLines, type PideployContext } from '@pideploy/core';
import { NO_SEARCH_PATH_ARGUMENTS, ensureStateDir, gcRootPath, gcRootsDir, nixErrorHeadline, pinnedNixEnv, runProcess, runStreamingCommand } from '@pideploy/nix';
import {
  bundlePackageSetKey,
  configurationEntry,
  renderBundleExpression,
  renderBundleListExpression,
  type BundleBuildMode,
  type BundleManifest,
  type BundleManifestBase,
  type BundlePin,
} from './expression.js';
import { collectConfigurationFiles, type ConfigurationFiles } from './imports.js';
import { nixPath } from '@pideploy/nix';

/** What {@link planBundle} and {@link buildBundle} need. */
export interface BundleRequest {
  readonly host: string;
  /** Target system (`aarch64-linux`). */
  readonly system: string;
  readonly buildMode: BundleBuildMode;
  /** This machine's system: cross mode's build platform, and where an emulated bundle's builder runs (see `bundleBuilderSystem`). */
  readonly buildPlatform?: string | undefined;
  /** Absolute path of pins.nix. */
  readonly pinsFile: string;
  /** Attribute of pins.nix holding nixpkgs (default `nixpkgs`). */
  readonly pinName?: string | undefined;
  /** The pin as pins.json records it (url, sha256, rev), for the manifest. */
  readonly pin?: Omit<BundlePin, 'name'> | undefined;
  /** Absolute path of the host's configuration.nix. */
  readonly configuration: string;
  /** Files outside it are an error (default: the configuration's directory). */
  readonly projectDir?: string | undefined;
  /** Allow configuration files outside the project. */
  readonly allowOutsideProject?: boolean | undefined;
  /**
   * The text of `bin/activate` (default: the bundle's minimal script). `@shell@`, `@toplevel@` and
   * `@bundle@` in it are replaced by the pinned nixpkgs' shell, the toplevel and the bundle's own path.
   * The deploy pipeline passes the activation stage's script (magic rollback) here.
   */
  readonly activateScript?: string | undefined;
}

/** Everything known about a bundle before Nix runs. */
export interface BundlePlan {
  readonly request: BundleRequest;
  readonly files: ConfigurationFiles;
  readonly manifest: BundleManifestBase;
}

/** What {@link buildBundle} needs on top of the plan's request. */
export interface BuildBundleRequest extends BundleRequest {
  /** The toplevel the build stage made (its artifact's `drvPath`). */
  readonly toplevel: { readonly drvPath: string };
  /** Extra nix-build arguments of the build mode (the build artifact's `nixArguments`). */
  readonly nixArguments?: readonly string[] | undefined;
  /** GC root at `<stateDir>/gcroots/<host>-bundle` (default: none, `--no-out-link`). */
  readonly stateDir?: string | undefined;
  /** Environment variables for nix, merged over this process's (NIX_PATH is always emptied). */
  readonly env?: Readonly<Record<string, string | undefined>> | undefined;
  /** The plan {@link planBundle} made for this same request, to skip collecting the files again. */
  readonly plan?: BundlePlan | undefined;
  /** The bundle's derivation when {@link instantiateBundles} already evaluated it: only built (no evaluation). */
  readonly drvPath?: string | undefined;
}

/** The bundle stage's artifact (`version: 1`). */
export interface BuildBundleResult {
  readonly version: 1;
  readonly host: string;
  /** The bundle's store path. */
  readonly outPath: string;
  readonly gcRoot: string | undefined;
  /** The manifest as written into the bundle. */
  readonly manifest: BundleManifest;
  /** The expression that was built (toplevel by derivation). */
  readonly expression: string;
  readonly durationMs: number;
}

/** The configuration's git commit and whether any bundled file differs from it (null outside git). */
export async function configurationGitState(files: ConfigurationFiles): Promise<{ gitRev: string | null; dirty: boolean | null }> {
  try {
    const rev = await runProcess(['git', '-C', files.root, 'rev-parse', 'HEAD'], { allowNonZeroExit: true, timeoutMs: 10_000 });
    if (rev.exitCode !== 0) return { gitRev: null, dirty: null };
    const status = await runProcess(['git', '-C', files.root, 'status', '--porcelain', '--', ...files.files], { allowNonZeroExit: true, timeoutMs: 10_000 });
    return { gitRev: rev.stdout.trim(), dirty: status.stdout.trim() !== '' };
  } catch {
    return { gitRev: null, dirty: null };
  }
}

/**
 * Collects the configuration's files, reads its git state and fixes the manifest: everything
 * the bundle expression needs except the toplevel.
 */
export async function planBundle(request: BundleRequest): Promise<BundlePlan> {
  const files = await collectConfigurationFiles(request.configuration, {
    projectDir: request.projectDir,
    allowOutsideProject: request.allowOutsideProject,
  });
  const git = await configurationGitState(files);
  const entry = configurationEntry(files);
  return {
    request,
    files,
    manifest: {
      version: 1,
      host: request.host,
      system: request.system,
      buildMode: request.buildMode,
      pin: { name: request.pinName ?? 'nixpkgs', url: request.pin?.url ?? null, sha256: request.pin?.sha256 ?? null, rev: request.pin?.rev ?? null },
      pideployVersion: PIDEPLOY_VERSION,
      configuration: { file: entry.needsWrapper ? entry.relative : 'configuration.nix', gitRev: git.gitRev, dirty: git.dirty },
      files: files.files,
    },
  };
}

function plannedExpressionInput(plan: BundlePlan, toplevelExpression: string) {
  return {
    pinsFile: plan.request.pinsFile,
    pinName: plan.request.pinName,
    buildPlatform: plan.request.buildPlatform,
    toplevelExpression,
    files: plan.files,
    manifest: plan.manifest,
    activateScript: plan.request.activateScript,
  };
}

/**
 * The plan of another host with the same configuration, system, build mode and pin: the files and
 * their git state are the same, only the host (its manifest's and its bundle's name) differs. Pure;
 * a fleet collects a configuration's files once instead of once per host.
 */
export function planBundleForHost(plan: BundlePlan, host: string): BundlePlan {
  if (plan.request.host === host) return plan;
  return { request: { ...plan.request, host }, files: plan.files, manifest: { ...plan.manifest, host } };
}

/** The bundle expression for a plan and a toplevel expression (see {@link renderBundleExpression}). */
export function renderPlannedBundleExpression(plan: BundlePlan, toplevelExpression: string): string {
  return renderBundleExpression(plannedExpressionInput(plan, toplevelExpression));
}

/** Which bundles {@link instantiateBundles} can evaluate together (same pinned package set; pure). */
export function bundleBatchKey(plan: BundlePlan): string {
  return bundlePackageSetKey(plannedExpressionInput(plan, ''));
}

/** One bundle of {@link instantiateBundles}: its plan and the toplevel it is built around. */
export interface BundleToInstantiate {
  readonly plan: BundlePlan;
  readonly toplevel: { readonly drvPath: string };
}

/**
 * Evaluates several hosts' bundles in ONE `nix-instantiate` sharing one import of the pinned
 * nixpkgs (for a fleet, evaluating nixpkgs per host is most of the bundle stage's work); returns
 * each bundle's derivation, in order, for {@link buildBundle}'s `drvPath`. The derivations are
 * the ones each host's own expression gives.
 * @throws TypeError when the plans do not share one {@link bundleBatchKey};
 *   PideployError `PIDEPLOY_BUNDLE_FAILED` when Nix cannot evaluate them.
 */
export async function instantiateBundles(bundles: readonly BundleToInstantiate[], context: PideployContext = createBaseContext(), env?: BuildBundleRequest['env']): Promise<string[]> {
  const expression = renderBundleListExpression(bundles.map((bundle) => plannedExpressionInput(bundle.plan, `import ${nixPath(bundle.toplevel.drvPath)}`)));
  // On stdin: a fleet's expression outgrows what one argument may hold (128 KiB on Linux).
  const args = ['nix-instantiate', ...NO_SEARCH_PATH_ARGUMENTS, '-'];
  const result = await runStreamingCommand(args, { env: pinnedNixEnv(env), signal: context.signal, input: expression });
  const drvPaths = result.stdout.split('\n').filter((line) => line.endsWith('.drv'));
  if (result.exitCode !== 0 || drvPaths.length !== bundles.length) {
    throw new PideployError({
      code: 'PIDEPLOY_BUNDLE_FAILED',
      message: `evaluating the bundles of ${bundles.map((bundle) => bundle.plan.request.host).join(', ')} failed: ${nixErrorHeadline(result.stderr)}`,
      hint: 'build the hosts one at a time (pideploy build HOST) to see which one fails',
      commandFailure: { command: args, exitCode: result.exitCode ?? undefined, stderrTail: tailLines(result.stderr) },
    });
  }
  return drvPaths;
}

/** Where {@link buildBundles} keeps the GC roots of bundles built together (`<stateDir>/gcroots/bundles/`). */
const BATCH_ROOTS_DIRECTORY = 'bundles';


/** Makes `link` a symlink to `target`, replacing what was there in one step (rename). */
async function replaceSymlink(target: string, link: string): Promise<void> {
  const temporary = `${link}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  await symlink(target, temporary);
  await rename(temporary, link);
}

/**
 * Batch roots younger than this are never pruned: another build (a second group of this run, or
 * another pideploy) may have made them and not yet linked its hosts to them.
 */
export const BATCH_ROOT_MIN_AGE_MS = 10 * 60 * 1000;

/**
 * Deletes the roots of bundles built together whose bundle no host's `<host>-bundle` points at any
 * more (the host was built since, alone or in another batch), so the GC can take those bundles;
 * only roots older than {@link BATCH_ROOT_MIN_AGE_MS}.
 */
async function pruneBatchRoots(gcroots: string): Promise<void> {
  const batchDirectory = path.join(gcroots, BATCH_ROOTS_DIRECTORY);
  const batchRoots = await readdir(batchDirectory).catch(() => [] as string[]);
  if (batchRoots.length === 0) return;
  const names = await readdir(gcroots).catch(() => [] as string[]);
  const used = new Set<string>();
  for (const name of names.filter((entry) => entry.endsWith('-bundle'))) {
    const target = await readlink(path.join(gcroots, name)).catch(() => undefined);
    if (target !== undefined) used.add(target);
  }
  for (const entry of batchRoots) {
    const link = path.join(batchDirectory, entry);
    const [target, stat] = await Promise.all([readlink(link).catch(() => undefined), lstat(link).catch(() => undefined)]);
    if (stat === undefined || Date.now() - stat.mtimeMs < BATCH_ROOT_MIN_AGE_MS) continue;
    if (target === undefined || !used.has(target)) await rm(link, { force: true });
  }
}

/**
 * Builds several hosts' bundles, already evaluated by {@link instantiateBundles} (each request's
 * `drvPath`), in ONE `nix-build` (its derivations built in parallel) instead of one per host: a
 * fleet saves a Nix process per host. The GC roots are the ones that nix-build registers, in
 * `<stateDir>/gcroots/bundles/` (`<batch>`, `<batch>-2` …); each host's `<stateDir>/gcroots/<host>-bundle`
 * is a link into the store beside them (a root too where nix-build once made it, since Nix roots
 * that path; a later nix-build of the host alone takes it over), and batch roots of bundles no
 * host links to any more are deleted once older than {@link BATCH_ROOT_MIN_AGE_MS}. One request is
 * {@link buildBundle}.
 * @throws TypeError when a request has no `drvPath` or they differ in `stateDir`, `env` or
 *   `nixArguments`; PideployError `PIDEPLOY_BUNDLE_FAILED` when Nix cannot build them (build the
 *   hosts one at a time to see which one fails).
 */
export async function buildBundles(requests: readonly BuildBundleRequest[], context: PideployContext = createBaseContext()): Promise<BuildBundleResult[]> {
  const first = requests[0];
  if (first === undefined) return [];
  if (requests.length === 1) return [await buildBundle(first, context)];
  const drvPaths = requests.map((request) => {
    if (request.drvPath === undefined) throw new TypeError(`buildBundles: the bundle of ${request.host} is not evaluated (no drvPath)`);
    return request.drvPath;
  });
  const sameSetting = (request: BuildBundleRequest) =>
    request.stateDir === first.stateDir && request.env === first.env && JSON.stringify(request.nixArguments ?? []) === JSON.stringify(first.nixArguments ?? []);
  if (!requests.every(sameSetting)) throw new TypeError('buildBundles: the requests must share stateDir, env and nixArguments');
  const started = Date.now();
  const gcroots = first.stateDir === undefined ? undefined : gcRootsDir(first.stateDir);
  const batchName = `${new Date().toISOString().replace(/[-:.]/gu, '')}-${randomBytes(3).toString('hex')}`;
  const batchLink = gcroots === undefined ? undefined : path.join(gcroots, BATCH_ROOTS_DIRECTORY, batchName);
  if (first.stateDir !== undefined && batchLink !== undefined) await ensureStateDir(first.stateDir, path.relative(first.stateDir, path.dirname(batchLink)));
  const args = [
    'nix-build',
    ...NO_SEARCH_PATH_ARGUMENTS,
    ...(first.nixArguments ?? []),
    // As many builds at once as separate nix-build processes would run, unless the build mode
    // decides (builders mode: --max-jobs 0, nothing built here).
    ...(first.nixArguments?.some((argument) => argument === '--max-jobs' || argument === '-j') === true ? [] : ['--max-jobs', String(requests.length)]),
    ...(batchLink === undefined ? ['--no-out-link'] : ['--out-link', batchLink]),
    ...drvPaths,
  ];
  const result = await runStreamingCommand(args, { env: pinnedNixEnv(first.env), signal: context.signal });
  const outPaths = result.stdout.trim().split('\n').filter((line) => line.startsWith('/'));
  if (result.exitCode !== 0 || outPaths.length !== requests.length) {
    throw new PideployError({
      code: 'PIDEPLOY_BUNDLE_FAILED',
      message: `building the bundles of ${requests.map((request) => request.host).join(', ')} failed: ${nixErrorHeadline(result.stderr)}`,
      hint: 'build the hosts one at a time (pideploy build HOST) to see which one fails',
      commandFailure: { command: args, exitCode: result.exitCode ?? undefined, stderrTail: tailLines(result.stderr) },
    });
  }
  const durationMs = Date.now() - started;
  const results = await Promise.all(
    requests.map(async (request, index) => {
      // nix-build names its roots <link>, <link>-2, <link>-3 … in the order of the derivations.
      const batchRoot = index === 0 ? batchName : `${batchName}-${index + 1}`;
      const gcRoot = gcroots === undefined ? undefined : gcRootPath(first.stateDir as string, request.host, 'bundle');
      const outPath = outPaths[index] as string;
      if (gcRoot !== undefined) {
        // Into the store, so that nix-build (which replaces only such links) can take it over later.
        const registered = await readlink(path.join(gcroots as string, BATCH_ROOTS_DIRECTORY, batchRoot));
        if (registered !== outPath) throw new Error(`buildBundles: nix-build's root ${batchRoot} points at ${registered}, not at ${outPath}`);
        await replaceSymlink(outPath, gcRoot);
      }
      const expression = renderPlannedBundleExpression(request.plan ?? (await planBundle(request)), `import ${nixPath(request.toplevel.drvPath)}`);
      return builtBundle(request, { outPath, gcRoot, expression, durationMs }, context, ` (one nix-build with ${requests.length - 1} other host(s))`);
    }),
  );
  if (gcroots !== undefined) await pruneBatchRoots(gcroots);
  return results;
}

/**
 * Builds the host's bundle around an already built toplevel (`import <drvPath>`: no second
 * evaluation of the NixOS configuration; same path as the self-contained expression) and roots
 * it at `<stateDir>/gcroots/<host>-bundle`.
 * @throws PideployError `PIDEPLOY_BUNDLE_MISSING_FILE`, `PIDEPLOY_BUNDLE_OUTSIDE_PROJECT`, `PIDEPLOY_BUNDLE_NAME_CLASH`, `PIDEPLOY_BUNDLE_FAILED`.
 */
export async function buildBundle(request: BuildBundleRequest, context: PideployContext = createBaseContext()): Promise<BuildBundleResult> {
  const started = Date.now();
  const plan = request.plan ?? (await planBundle(request));
  const expression = renderPlannedBundleExpression(plan, `import ${nixPath(request.toplevel.drvPath)}`);
  const gcRoot = request.stateDir === undefined ? undefined : gcRootPath(request.stateDir, request.host, 'bundle');
  if (request.stateDir !== undefined && gcRoot !== undefined) await ensureStateDir(request.stateDir, path.relative(request.stateDir, path.dirname(gcRoot)));
  const args = [
    'nix-build',
    ...NO_SEARCH_PATH_ARGUMENTS,
    ...(request.nixArguments ?? []),
    ...(gcRoot === undefined ? ['--no-out-link'] : ['--out-link', gcRoot]),
    ...(request.drvPath === undefined ? ['-E', expression] : [request.drvPath]),
  ];
  const result = await runStreamingCommand(args, { env: pinnedNixEnv(request.env), signal: context.signal });
  if (result.exitCode !== 0) {
    const failed = /builder for '([^']+)' failed/u.exec(result.stderr)?.[1];
    throw new PideployError({
      code: 'PIDEPLOY_BUNDLE_FAILED',
      message: `building the bundle of ${request.host} failed: ${nixErrorHeadline(result.stderr)}`,
      hint: failed === undefined ? 'rerun with --verbose to see Nix\'s output' : `see the log with: nix log ${failed}`,
      commandFailure: { command: args, exitCode: result.exitCode ?? undefined, stderrTail: tailLines(result.stderr) },
    });
  }
  const outPath = result.stdout.trim().split('\n').pop() ?? '';
  // This host's root is nix-build's own now: a batch root it pointed at may go.
  if (request.stateDir !== undefined) await pruneBatchRoots(gcRootsDir(request.stateDir));
  return builtBundle(request, { outPath, gcRoot, expression, durationMs: Date.now() - started }, context, '');
}

/** The result for a bundle nix-build has built: its manifest read back from the store. */
async function builtBundle(
  request: BuildBundleRequest,
  built: { readonly outPath: string; readonly gcRoot: string | undefined; readonly expression: string; readonly durationMs: number },
  context: PideployContext,
  how: string,
): Promise<BuildBundleResult> {
  const manifest = JSON.parse(await readFile(path.join(built.outPath, 'manifest.json'), 'utf8')) as BundleManifest;
  context.reporter.emit({ type: 'log', level: 'debug', host: request.host, message: `bundle ${built.outPath} in ${built.durationMs} ms${how}` });
  return { version: 1, host: request.host, manifest, ...built };
}

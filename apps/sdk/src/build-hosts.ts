import path from 'node:path';
import { createBaseContext, PideployError, type PideployContext } from '@pideploy/core';
import {
  DEFAULT_PIN_NAME,
  buildToplevel,
  dryBuildToplevel,
  localNixSystem,
  parseRemoteBuilder,
  renderBuildersSpec,
  type BuildMode,
  type BuildToplevelRequest,
  type BuildToplevelResult,
  type DryBuildResult,
  type NixBuildOptions,
  type RemoteBuilder,
} from '@pideploy/build';
import { projectStateDir } from '@pideploy/nix';
import { buildBundle, buildBundles, bundleBatchKey, instantiateBundles, planBundle, planBundleForHost, type BuildBundleResult, type BundlePlan, type BundleRequest } from '@pideploy/bundle';
import { BUNDLE_ACTIVATE_SCRIPT } from './activate-script.js';
import { readPinRecord } from './pins.js';

/** What is built for one host: where its configuration is and how to build it. */
export interface HostBuildSpec {
  readonly name: string;
  /** Absolute path of the host's configuration.nix. */
  readonly configuration: string;
  /** Target system (`aarch64-linux`). */
  readonly system: string;
  readonly buildMode: BuildMode;
  /** Remote builders (`builders` mode), parsed or as Nix's `builders` string (`;`-separated). */
  readonly builders?: readonly RemoteBuilder[] | string | undefined;
  /** The pin of pins.nix that is the host's nixpkgs (pideploy.json `nixpkgs`; default `nixpkgs`). */
  readonly nixpkgs?: string | undefined;
}

/** Options of {@link createHostBuilder}. */
export interface HostBuilderOptions {
  /** The project directory (pideploy.json's): bundled files must be inside it. */
  readonly projectDir: string;
  /** Absolute path of pins.nix (pins.json beside it gives the manifest's pin record). */
  readonly pinsFile: string;
  /**
   * Attribute of pins.nix holding nixpkgs, for every host (`pideploy build --pin`); default: each
   * host's own ({@link HostBuildSpec.nixpkgs}), else `nixpkgs`.
   */
  readonly pinName?: string | undefined;
  /** GC roots go to `<stateDir>/gcroots/` (default `<projectDir>/.pideploy`). */
  readonly stateDir?: string | undefined;
  /** Environment for local nix (merged over this process's). */
  readonly env?: Readonly<Record<string, string | undefined>> | undefined;
  /** Nix settings of every build (`--show-trace`, `--keep-going`, `--max-jobs`, `--cores`, `-L`, `--option`). */
  readonly nixOptions?: NixBuildOptions | undefined;
}

/** A host's built system and bundle. */
export interface HostBuild {
  readonly host: string;
  readonly toplevel: BuildToplevelResult;
  readonly bundle: BuildBundleResult;
  /** The host whose build of the same configuration this one reused (undefined: built for this host). */
  readonly sharedWith: string | undefined;
}

/** Builds hosts' toplevels and bundles, each distinct configuration once (see {@link createHostBuilder}). */
export interface HostBuilder {
  /** Checks the host's configuration files (missing, outside the project) without running Nix. */
  plan(host: HostBuildSpec): Promise<BundlePlan>;
  /**
   * The toplevel only: built once per distinct configuration, shared by every host asking for it.
   * A caller whose `context.signal` aborts stops waiting; the build itself stops once no caller
   * waits for it any more.
   */
  buildToplevel(host: HostBuildSpec, context?: PideployContext): Promise<{ toplevel: BuildToplevelResult; sharedWith: string | undefined }>;
  /** The host's own bundle around a toplevel built by {@link HostBuilder.buildToplevel}. */
  bundle(host: HostBuildSpec, toplevel: BuildToplevelResult, context?: PideployContext): Promise<BuildBundleResult>;
  /** Toplevel (shared) and the host's own bundle around it. */
  build(host: HostBuildSpec, context?: PideployContext): Promise<HostBuild>;
  /**
   * What building the host's system would do (`nixos-rebuild dry-build`): evaluated once per
   * distinct configuration, nothing built or rooted (see `dryBuildToplevel`).
   */
  dryBuild(host: HostBuildSpec, context?: PideployContext): Promise<DryBuildResult>;
}

function parsedBuilders(builders: HostBuildSpec['builders']): readonly RemoteBuilder[] {
  if (builders === undefined) return [];
  if (typeof builders !== 'string') return builders;
  return builders
    .split(';')
    .filter((part) => part.trim() !== '')
    .map(parseRemoteBuilder);
}

/**
 * The identity of a toplevel build: hosts with the same configuration file, nixpkgs pin, system,
 * build mode and builders get the same system, so it is evaluated and built once (pure).
 */
export function toplevelBuildKey(host: HostBuildSpec, pinName: string = host.nixpkgs ?? DEFAULT_PIN_NAME): string {
  return JSON.stringify([host.configuration, pinName, host.system, host.buildMode, renderBuildersSpec(parsedBuilders(host.builders))]);
}

/**
 * The build + bundle sequence that `pideploy build`, `deploy()` and custom pipelines share:
 * one toplevel per distinct configuration (concurrent requests for the same one wait for the
 * first), then each host's bundle around it (its manifest names the host), with the activation
 * stage's `bin/activate`, the pin record from pins.json and GC roots under the state directory.
 */
export function createHostBuilder(options: HostBuilderOptions): HostBuilder {
  // The host's nixpkgs pin: the builder's (--pin), else its own, else nixpkgs.
  const pinOf = (host: HostBuildSpec): string => options.pinName ?? host.nixpkgs ?? DEFAULT_PIN_NAME;
  const buildKey = (host: HostBuildSpec): string => toplevelBuildKey(host, pinOf(host));
  const stateDir = options.stateDir ?? projectStateDir(options.projectDir);
  /** A build in progress or done: who started it, and how many callers still wait for it. */
  interface SharedBuild {
    readonly key: string;
    readonly owner: string;
    readonly result: Promise<BuildToplevelResult>;
    readonly stop: AbortController;
    waiting: number;
    settled: boolean;
  }
  const toplevels = new Map<string, SharedBuild>();
  /**
   * Waits for `build` on behalf of a caller. When the caller's signal aborts: the last caller
   * stops the build and gets its own (interrupted) error; any other caller just stops waiting.
   */
  const waitFor = async (build: SharedBuild, signal: AbortSignal, host: string): Promise<BuildToplevelResult> => {
    build.waiting += 1;
    let giveUp: () => void = () => undefined;
    const gaveUp = new Promise<never>((_, reject) => {
      giveUp = () => reject(new PideployError({ code: 'PIDEPLOY_INTERRUPTED', message: `stopped waiting for the build of ${host}`, cause: signal.reason }));
    });
    const onAbort = () => {
      build.waiting -= 1;
      if (build.waiting > 0 || build.settled) {
        giveUp();
        return;
      }
      // Nobody waits any more: the build stops (a host asking for this configuration later starts a new one).
      if (toplevels.get(build.key) === build) toplevels.delete(build.key);
      build.stop.abort(signal.reason);
    };
    if (signal.aborted) onAbort();
    else signal.addEventListener('abort', onAbort, { once: true });
    try {
      return await Promise.race([build.result, gaveUp]);
    } finally {
      signal.removeEventListener('abort', onAbort);
    }
  };

  // Each pin's record, read from pins.json once.
  const pinRecords = new Map<string, ReturnType<typeof readPinRecord>>();

  const bundleRequest = async (host: HostBuildSpec): Promise<BundleRequest> => {
    const pinName = pinOf(host);
    let pinRecord = pinRecords.get(pinName);
    if (pinRecord === undefined) {
      pinRecord = readPinRecord(path.join(path.dirname(options.pinsFile), 'pins.json'), pinName);
      pinRecords.set(pinName, pinRecord);
    }
    return {
      host: host.name,
      system: host.system,
      buildMode: host.buildMode,
      buildPlatform: localNixSystem(),
      pinsFile: options.pinsFile,
      pinName,
      pin: await pinRecord,
      configuration: host.configuration,
      projectDir: options.projectDir,
      // bin/activate is the activation stage's script (magic rollback), run by hand or by pideploy.
      activateScript: BUNDLE_ACTIVATE_SCRIPT,
    };
  };

  // One plan per configuration (collecting files and the git state costs processes); the other
  // hosts of that configuration get it with their own name.
  const plans = new Map<string, Promise<BundlePlan>>();
  const planFor = async (host: HostBuildSpec): Promise<BundlePlan> => {
    const key = buildKey(host);
    let plan = plans.get(key);
    if (plan === undefined) {
      plan = bundleRequest(host).then(planBundle);
      plans.set(key, plan);
      // A failed plan (missing file) is not kept: fixing the file and asking again works.
      plan.catch(() => plans.delete(key));
    }
    return planBundleForHost(await plan, host.name);
  };

  // Bundles asked for in the same turn of the event loop (a fleet's hosts get their shared
  // toplevel at the same moment) are evaluated together: one nix-instantiate per pinned package
  // set instead of one evaluation of nixpkgs per host, then built together (one nix-build, see
  // buildBundles); a batch Nix cannot evaluate or build falls back to one evaluation or build per
  // host, so each host gets its own error. Hosts that ask while a batch of their package set is
  // under way wait for it and then go together (see startBatch).
  interface WaitingBundle {
    readonly host: HostBuildSpec;
    readonly toplevel: BuildToplevelResult;
    readonly context: PideployContext;
    readonly resolve: (result: BuildBundleResult) => void;
    readonly reject: (error: unknown) => void;
  }
  interface PlannedBundle extends WaitingBundle {
    readonly plan: BundlePlan;
  }
  let waiting: WaitingBundle[] = [];
  // Each of these settles when every host it was given has its bundle or its error.
  const buildOne = (entry: PlannedBundle, drvPath?: string): Promise<void> =>
    buildBundle(
      { ...entry.plan.request, plan: entry.plan, toplevel: entry.toplevel, nixArguments: entry.toplevel.nixArguments, stateDir, env: options.env, drvPath },
      entry.context,
    ).then(entry.resolve, entry.reject);
  // A batch Nix cannot build falls back to one build per host, so each host gets its own error.
  const buildTogether = (together: readonly { entry: PlannedBundle; drvPath: string | undefined }[]): Promise<unknown> => {
    const context = (together[0] as { entry: PlannedBundle }).entry.context;
    return buildBundles(
      together.map(({ entry, drvPath }) => ({ ...entry.plan.request, plan: entry.plan, toplevel: entry.toplevel, nixArguments: entry.toplevel.nixArguments, stateDir, env: options.env, drvPath })),
      context,
    ).then(
      (results) => together.forEach(({ entry }, index) => entry.resolve(results[index] as BuildBundleResult)),
      (error: unknown) =>
        Promise.all(
          together.map(({ entry, drvPath }) => {
            entry.context.reporter.emit({ type: 'log', level: 'debug', host: entry.host.name, message: `building the bundles together failed, so one at a time: ${error instanceof Error ? error.message : String(error)}` });
            return buildOne(entry, drvPath);
          }),
        ),
    );
  };
  const buildBatch = async (group: readonly PlannedBundle[]): Promise<unknown> => {
    const first = group[0] as PlannedBundle;
    if (group.length === 1) return buildOne(first);
    let drvPaths: (string | undefined)[];
    try {
      drvPaths = await instantiateBundles(
        group.map((entry) => ({ plan: entry.plan, toplevel: entry.toplevel })),
        first.context,
        options.env,
      );
    } catch (error) {
      return Promise.all(
        group.map((entry) => {
          entry.context.reporter.emit({ type: 'log', level: 'debug', host: entry.host.name, message: `evaluating the bundles together failed, so one at a time: ${error instanceof Error ? error.message : String(error)}` });
          return buildOne(entry);
        }),
      );
    }
    group.forEach((entry) => {
      const others = group.filter((other) => other !== entry).map((other) => other.host.name);
      entry.context.reporter.emit({ type: 'log', level: 'debug', host: entry.host.name, message: `bundle evaluated together with ${others.join(', ')} (one nix-instantiate)` });
    });
    // Built together too (one nix-build), per cancellation signal and nix arguments.
    const builds = new Map<AbortSignal, Map<string, { entry: PlannedBundle; drvPath: string | undefined }[]>>();
    group.forEach((entry, index) => {
      const bySignal = builds.get(entry.context.signal) ?? new Map<string, { entry: PlannedBundle; drvPath: string | undefined }[]>();
      builds.set(entry.context.signal, bySignal);
      const key = JSON.stringify(entry.toplevel.nixArguments);
      bySignal.set(key, [...(bySignal.get(key) ?? []), { entry, drvPath: drvPaths[index] }]);
    });
    return Promise.all([...builds.values()].flatMap((bySignal) => [...bySignal.values()]).map(buildTogether));
  };
  // A batch Nix is evaluating or building per package set; hosts that ask meanwhile (their login
  // ended after the shared build) wait for it and then go together as the next batch, instead of
  // one evaluation of nixpkgs each. A host stopped while it waited is not built.
  const running = new Set<string>();
  const queued = new Map<string, PlannedBundle[]>();
  const startBatch = (key: string) => {
    const group: PlannedBundle[] = [];
    for (const entry of queued.get(key) ?? []) {
      if (!entry.context.signal.aborted) group.push(entry);
      else entry.reject(new PideployError({ code: 'PIDEPLOY_INTERRUPTED', message: `stopped waiting to bundle ${entry.host.name}`, cause: entry.context.signal.reason }));
    }
    queued.delete(key);
    if (group.length === 0) return;
    running.add(key);
    // Whatever happens in the batch (even a reporter that throws), its hosts get an answer and the
    // package set is free again for the next batch.
    buildBatch(group)
      .catch((error: unknown) => group.forEach((entry) => entry.reject(error)))
      .finally(() => {
        running.delete(key);
        startBatch(key);
      });
  };
  const flushBundles = async () => {
    const batch = waiting;
    waiting = [];
    const keys = new Set<string>();
    for (const entry of batch) {
      try {
        const planned = { ...entry, plan: await planFor(entry.host) };
        const key = bundleBatchKey(planned.plan);
        queued.set(key, [...(queued.get(key) ?? []), planned]);
        keys.add(key);
      } catch (error) {
        entry.reject(error);
      }
    }
    for (const key of keys) if (!running.has(key)) startBatch(key);
  };

  const toplevelRequest = (host: HostBuildSpec): BuildToplevelRequest => ({
    host: host.name,
    pinsFile: options.pinsFile,
    pinName: pinOf(host),
    configuration: host.configuration,
    system: host.system,
    mode: host.buildMode,
    buildPlatform: localNixSystem(),
    builders: parsedBuilders(host.builders),
    env: options.env,
    nixOptions: options.nixOptions,
  });
  // One dry build per distinct configuration; the other hosts of it get its answer under their name.
  const dryBuilds = new Map<string, Promise<DryBuildResult>>();

  const builder: HostBuilder = {
    plan: planFor,
    buildToplevel: async (host, context = createBaseContext()) => {
      const key = buildKey(host);
      const existing = toplevels.get(key);
      if (existing !== undefined) {
        context.reporter.emit({ type: 'log', level: 'info', host: host.name, message: `same configuration as ${existing.owner}: its build is reused` });
        return { toplevel: await waitFor(existing, context.signal, host.name), sharedWith: existing.owner };
      }
      const stop = new AbortController();
      const result = buildToplevel({ ...toplevelRequest(host), stateDir }, { reporter: context.reporter, signal: stop.signal });
      const build: SharedBuild = { key, owner: host.name, result, stop, waiting: 0, settled: false };
      toplevels.set(key, build);
      // A failed (or stopped) build is not cached: the next host (or a retry) builds again.
      result.then(
        () => (build.settled = true),
        () => {
          build.settled = true;
          if (toplevels.get(key) === build) toplevels.delete(key);
        },
      );
      return { toplevel: await waitFor(build, context.signal, host.name), sharedWith: undefined };
    },
    // Queued synchronously, so hosts asking in the same turn share a batch however long their plans take.
    bundle: (host, toplevel, context = createBaseContext()) =>
      new Promise<BuildBundleResult>((resolve, reject) => {
        waiting.push({ host, toplevel, context, resolve, reject });
        if (waiting.length === 1) setImmediate(() => void flushBundles());
      }),
    build: async (host, context = createBaseContext()) => {
      const { toplevel, sharedWith } = await builder.buildToplevel(host, context);
      return { host: host.name, toplevel, bundle: await builder.bundle(host, toplevel, context), sharedWith };
    },
    dryBuild: async (host, context = createBaseContext()) => {
      const key = buildKey(host);
      let dry = dryBuilds.get(key);
      if (dry === undefined) {
        dry = dryBuildToplevel(toplevelRequest(host), context);
        dryBuilds.set(key, dry);
        dry.catch(() => dryBuilds.delete(key));
      }
      return { ...(await dry), host: host.name };
    },
  };
  return builder;
}

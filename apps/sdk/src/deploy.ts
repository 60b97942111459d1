import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { PideployError, toPideployError, type ActivationAction, type DeployPhase, type PideployContext } from '@pideploy/core';
import { createClosureQuery, projectStateDir, type StorePathInfo } from '@pideploy/nix';
import { activateSystem, asksConfirmation, bootPartsChanged, checkSpecialisationUse, hostBusyError, specialisationSystem, readLocalBootParts, type BootPart, checkHealthCheckUse, healthChecksGate, checkRebootUse, diffSystem, formatClosureDiff, readHostSystems, rebootSystem, speaksActivationProtocol, type ActivationResult, type HealthChecks, type HostSystems, type RebootResult } from '@pideploy/activate';
import { KEY_RECORD_FILE, keyPath, uploadKeys, type InstalledKey, type LoadedKey, type RemovedKey } from '@pideploy/keys';
import { connectSsh, sharePasswordPerRealm, type SshSession, type SudoPasswordProvider, type SudoRunner } from '@pideploy/ssh';
import { checkPinsFiles } from '@pideploy/pin';
import { copyClosure, openServeConnection, storeAccessFor, substituteFromCache, type CopyClosureResult, type ServeConnection, type SubstituteFromCacheResult } from '@pideploy/transport';
import type { NixBuildOptions } from '@pideploy/build';
import { createHostBuilder, type HostBuilder } from './build-hosts.js';
import type { FleetCacheSettings, HealthCheckSettings, ResolvedConfig, ResolvedHost } from './config.js';
import { openFleetCache, type FleetCache } from './fleet-cache.js';
import { healthCheckSettingsFor, healthChecksFor } from './health-check.js';
import { mapConcurrently } from './concurrency.js';
import { createFleetStops } from './fleet-stops.js';
import { connectOptionsFor, hostFailure } from './host-connection.js';
import { describeKey, loadHostKeys, staleKeysOnHost } from './keys.js';

/** What {@link deploy} needs. */
export interface DeployRequest {
  readonly config: ResolvedConfig;
  /** The hosts to deploy (see `selectHosts`). */
  readonly hosts: readonly ResolvedHost[];
  /** What `switch-to-configuration` does (default switch). */
  readonly action?: ActivationAction | undefined;
  /**
   * Activate this specialisation of each host's system (NixOS's `specialisation.<name>`) instead of
   * the system itself, which stays the boot default, as `nixos-rebuild --specialisation` does
   * (switch, test, dry-activate; not with `reboot`). Default: each host's pideploy.json
   * `specialisation`; `false`: the system itself, whatever pideploy.json says. Checked against
   * each built system before anything is copied.
   */
  readonly specialisation?: string | false | undefined;
  /** Magic rollback (default on for switch/test). */
  readonly rollback?: boolean | undefined;
  /** Seconds a host waits for the confirmation before rolling back (default 30). */
  readonly confirmTimeoutSeconds?: number | undefined;
  /**
   * Seconds `switch-to-configuration` may run on a host before the host stops it and rolls back
   * (default: pideploy.json `deploy.activationTimeout`, else 600; 0: no limit).
   */
  readonly activationTimeoutSeconds?: number | undefined;
  /** Activate even where the host already runs the built system. */
  readonly force?: boolean | undefined;
  /**
   * Health checks that gate each host's confirmation (a failed one rolls the host back) and, with
   * `reboot`, run again once the host is back (an unhealthy host is booted back into the
   * generation it had): the fields given replace those of the host's pideploy.json `healthCheck`;
   * `false` runs none. Checks given here with nothing to gate (`rollback: false`, action boot
   * without `reboot`, dry-activate) are refused; pideploy.json's are then skipped with a warning.
   */
  readonly healthCheck?: HealthCheckSettings | false | undefined;
  /** `NIXOS_INSTALL_BOOTLOADER=1` (install, not just update, the boot loader). */
  readonly installBootloader?: boolean | undefined;
  /**
   * After the activation (and its confirmation), reboot each host into the new system and wait
   * until it runs it (see `rebootSystem` of `@pideploy/activate`): for `boot` (a new kernel, a
   * system that cannot switch live) and `switch`; refused with `test` and `dry-activate`. A host
   * that booted and runs the system already is not rebooted (unless `force`). `'if-needed'`
   * (with `switch` only) reboots just the hosts whose new system has another kernel, initrd or
   * kernel modules than they booted with, as NixOS's `system.autoUpgrade.allowReboot` does.
   */
  readonly reboot?: boolean | 'if-needed' | undefined;
  /** Seconds each host may take to come back from its reboot (default 300). */
  readonly rebootTimeoutSeconds?: number | undefined;
  /** Build, bundle and diff only: nothing is copied or activated (the keys are read and listed, not uploaded). */
  readonly dryRun?: boolean | undefined;
  /**
   * Upload each host's pideploy.json `keys` (default true): those of `pre-activation` after the
   * copy and before the activation, those of `post-activation` after it (and after the reboot);
   * with a reboot, keys under `/run` (memory, emptied at boot) are uploaded again once the host is
   * back. All are read here before any host is touched. `false`: none (`--no-keys`).
   */
  readonly keys?: boolean | undefined;
  /**
   * Files of keys each host got from earlier deployments that its pideploy.json keys no longer
   * name (see `staleKeyPaths`): removed once the host runs its new system (after a switch or a
   * test, or after the reboot), in the same root command as the post-activation keys. Kept when
   * the host failed or rolled back, after a boot without a reboot, and with `keys: false`.
   */
  readonly staleKeys?: ReadonlyMap<string, readonly string[]> | undefined;
  /** Hosts deployed at once (default 1). */
  readonly parallel?: number | undefined;
  /**
   * Canaries: the first N of `hosts` are deployed first (at most `parallel` at once); the others
   * start only once every canary succeeded. A failed canary leaves them untouched (not even
   * logged into), each reported with `PIDEPLOY_HOST_NOT_STARTED`. Default 0: no canary.
   */
  readonly canary?: number | undefined;
  /**
   * Stop starting hosts once this many have failed: hosts already under way finish, the rest are
   * left untouched and reported with `PIDEPLOY_HOST_NOT_STARTED`. Default: every host is tried,
   * whatever the others did.
   */
  readonly maxFailures?: number | undefined;
  /**
   * Asked for the sudo password when a host needs one: once per distinct SSH target user, the
   * answer validated at once and kept in memory only.
   */
  readonly sudoPasswordProvider?: SudoPasswordProvider | undefined;
  /** A sudo password known in advance (a file, stdin): used for every host that needs one, tried once (a wrong one is not asked again). */
  readonly sudoPassword?: string | undefined;
  /** Compress the SSH connections (zlib), for slow links. */
  readonly compress?: boolean | undefined;
  /** Trust and record host keys seen for the first time (a changed key is always refused). */
  readonly acceptNewHostKey?: boolean | undefined;
  /** Environment for local nix (default this process's). */
  readonly env?: Readonly<Record<string, string | undefined>> | undefined;
  /**
   * Builds to reuse across calls (see {@link hostBuilderFor}): a pipeline that built or deployed a
   * canary with the same builder gets the other hosts' systems without building them again.
   */
  readonly builder?: HostBuilder | undefined;
  /** Nix settings of the builds (`--show-trace`, `--keep-going`, …); ignored when `builder` is given (its own apply). */
  readonly nixOptions?: NixBuildOptions | undefined;
  /**
   * Each host first fetches what it can of the closure from its own binary caches (its
   * `substituters`, e.g. cache.nixos.org), and only the rest goes over SSH (`nix-copy-closure
   * --use-substitutes`, deploy-rs's default): for hosts with a faster way to the cache than to this
   * machine. Undefined: each host's pideploy.json `substituteOnDestination`. `true` is refused with
   * `cache` (the fleet cache is then the hosts' only substituter; pideploy.json's setting is not used then).
   */
  readonly substituteOnDestination?: boolean | undefined;
  /**
   * Fleet cache (see pideploy.json `cache`): each host's closure is pushed once into a signed
   * binary cache and the host substitutes what it lacks from it, instead of a copy per host.
   * Undefined: copy over each host's SSH connection.
   */
  readonly cache?: FleetCacheSettings | undefined;
}

/** How long one phase of one host took. */
export interface PhaseTiming {
  readonly phase: DeployPhase;
  readonly durationMs: number;
}

/** The outcome for one host. */
export interface HostDeployResult {
  readonly host: string;
  readonly ok: boolean;
  readonly bundle?: string | undefined;
  readonly toplevel?: string | undefined;
  /** The host whose build of the same configuration this host reused (built once per configuration). */
  readonly sharedBuildWith?: string | undefined;
  readonly copy?: CopyClosureResult | undefined;
  /** With the fleet cache: what this host's push added to the cache, and what the host fetched from it. */
  readonly cache?: { readonly pathsPushed: number; readonly fileBytesPushed: number; readonly substitute: SubstituteFromCacheResult } | undefined;
  readonly activation?: ActivationResult | undefined;
  /** The keys uploaded to the host, in the order they were (a key uploaded again after a reboot is listed again). */
  readonly keys?: readonly InstalledKey[] | undefined;
  /** The files of keys no longer wanted that the host was asked to remove (see `staleKeys`), and what it did. */
  readonly keysRemoved?: readonly RemovedKey[] | undefined;
  /** With `reboot`: the host's reboot (or that none was needed). */
  readonly reboot?: RebootResult | undefined;
  /**
   * Not rebooted, after a `switch`: what the new system has otherwise than the host booted with,
   * of its kernel, initrd and kernel modules (they load only at a reboot); absent: none. Not said
   * after a `test`: a reboot would boot the old default anyway.
   */
  readonly rebootNeededFor?: readonly BootPart[] | undefined;
  /** The closure diff shown before activating (nix store diff-closures format). */
  readonly diff?: string | undefined;
  readonly error?: PideployError | undefined;
  readonly phases: readonly PhaseTiming[];
}

/** The outcome of a whole deploy (`version: 1`). */
export interface DeployResult {
  readonly version: 1;
  readonly results: readonly HostDeployResult[];
  readonly ok: boolean;
}

async function timed<T>(phase: DeployPhase, host: string | undefined, phases: PhaseTiming[] | undefined, context: PideployContext, work: () => Promise<T>): Promise<T> {
  const started = Date.now();
  context.reporter.emit({ type: 'phase-start', phase, ...(host === undefined ? {} : { host }) });
  let ok = false;
  try {
    const result = await work();
    ok = true;
    return result;
  } finally {
    const durationMs = Date.now() - started;
    phases?.push({ phase, durationMs });
    context.reporter.emit({ type: 'phase-end', phase, ...(host === undefined ? {} : { host }), durationMs, ok });
  }
}

/** The closure of the system a host runs (empty when it runs none), over its serve connection. */
async function runningClosureOverServe(systems: Promise<HostSystems>, serve: ServeConnection): Promise<readonly { path: string; narSize: number }[]> {
  const { running } = await systems;
  return running === undefined ? [] : serve.queryClosure([running]);
}

/** Whether a host directory is under /run (memory: emptied at every boot). */
function isUnderRun(directory: string): boolean {
  return directory === '/run' || directory.startsWith('/run/');
}

/** Whether a locally built bundle's `bin/activate` speaks the activation stage's protocol (then the host need not be asked). */
async function bundleSpeaksProtocol(bundle: string): Promise<boolean> {
  try {
    return speaksActivationProtocol(await readFile(path.join(bundle, 'bin', 'activate'), 'utf8'));
  } catch {
    return false;
  }
}

/** pins.nix, generated beside the pins lock that pideploy.json names. */
function pinsNixOf(config: ResolvedConfig): string {
  return path.join(path.dirname(config.pinsFile), 'pins.nix');
}

/**
 * The host builder for a loaded pideploy.json: pins.nix beside its pins lock, GC roots in
 * `.pideploy/` of its directory. Share one between `deploy()` calls to build each configuration once.
 * @throws PideployError `PIDEPLOY_PINS_NOT_FOUND` when pins.nix does not exist yet.
 */
export function hostBuilderFor(config: ResolvedConfig, env?: Readonly<Record<string, string | undefined>>, nixOptions?: NixBuildOptions): HostBuilder {
  const pinsNix = pinsNixOf(config);
  if (!existsSync(pinsNix)) {
    throw new PideployError({
      code: 'PIDEPLOY_PINS_NOT_FOUND',
      message: `no pins file at ${pinsNix}`,
      hint: 'pin nixpkgs first: pideploy pin add nixpkgs --github NixOS/nixpkgs --branch nixos-24.05',
    });
  }
  return createHostBuilder({ projectDir: config.directory, pinsFile: pinsNix, env, nixOptions });
}

/**
 * A host's health checks for this deployment, refused up front when they could gate nothing:
 * they gate the confirmation (magic rollback) and, with `reboot`, the host's return from it.
 */
function plannedHealthChecks(host: ResolvedHost, request: DeployRequest, action: ActivationAction, context: PideployContext): HealthChecks | undefined {
  const checks = healthChecksFor(healthCheckSettingsFor(host.healthCheck, request.healthCheck));
  if (checks === undefined) return undefined;
  const rollback = { enabled: request.rollback, confirmTimeoutSeconds: request.confirmTimeoutSeconds };
  const reboot = request.reboot === true;
  const given = request.healthCheck !== false && (request.healthCheck?.command !== undefined || request.healthCheck?.url !== undefined);
  if (!healthChecksGate(action, rollback, reboot) && !given) {
    if (request.dryRun !== true) {
      const why = request.rollback === false ? 'the magic rollback is off' : `action ${action} has no confirmation (--reboot would check the host once it is back)`;
      context.reporter.emit({ type: 'log', level: 'warn', host: host.name, message: `${host.name}'s health check (pideploy.json) is skipped: ${why}` });
    }
    return undefined;
  }
  checkHealthCheckUse({ host: host.name, action, rollback, healthChecks: checks, reboot });
  return checks;
}

/**
 * The specialisation a host is to run (pure): the one given for this run, `false` for the system
 * itself, else its pideploy.json `specialisation`.
 */
export function specialisationFor(host: Pick<ResolvedHost, 'specialisation'> | undefined, given: string | false | undefined): string | undefined {
  return given === false ? undefined : (given ?? host?.specialisation);
}

/**
 * Refuses a deployment that cannot be done as asked, before any work (and, in the CLI, before
 * its question and the password): a reboot with an action that boots nothing new, a
 * specialisation that is no name, or with boot or a reboot (pure).
 * @throws PideployError `PIDEPLOY_USAGE`
 */
export function checkDeployRequest(request: Pick<DeployRequest, 'action' | 'reboot' | 'specialisation'> & { readonly hosts: readonly Pick<ResolvedHost, 'specialisation'>[] }): void {
  const action = request.action ?? 'switch';
  checkRebootUse(action, request.reboot);
  for (const host of request.hosts) checkSpecialisationUse({ action, specialisation: specialisationFor(host, request.specialisation), reboot: request.reboot });
}

/**
 * Deploys hosts end to end: for each host it opens ONE SSH connection and checks sudo (asking
 * the password once, at the start, validated before anything is copied or changed) while it
 * builds the toplevel here (once per distinct configuration, shared by the hosts that have it),
 * then the host's bundle,
 * shows the closure diff against what the host runs, copies the missing paths over that same
 * connection, and activates with magic rollback (with `reboot`, then reboots it into the new
 * system). A failing host does not stop the others; the
 * result says per host what happened and how long each phase took.
 */
export async function deploy(request: DeployRequest, context: PideployContext): Promise<DeployResult> {
  if (request.hosts.length === 0) {
    throw new PideployError({ code: 'PIDEPLOY_USAGE', message: 'no hosts to deploy', hint: 'name hosts, or add them to pideploy.json' });
  }
  if (request.substituteOnDestination === true && request.cache !== undefined) {
    throw new PideployError({
      code: 'PIDEPLOY_USAGE',
      message: 'substituting on the hosts from their own caches and the fleet cache do not go together: with the fleet cache, it is the hosts\' only substituter',
      hint: 'give one of them (--substitute-on-destination, or --cache)',
    });
  }
  // Canaries and the failures allowed (checked before any work).
  const stops = createFleetStops(request);
  // Each host's health check, checked before any work: one that could gate nothing is refused
  // (pideploy.json's is skipped, with a warning, for an action or rollback setting that has no
  // confirmation), and so is a URL with an unknown placeholder.
  const action = request.action ?? 'switch';
  checkDeployRequest(request);
  const healthChecks = new Map(request.hosts.map((host) => [host.name, plannedHealthChecks(host, request, action, context)] as const));
  // The pin check: pins.nix is what pins.json records, and each host's nixpkgs is pinned (before any other work).
  await timed('pin', undefined, undefined, context, () =>
    checkPinsFiles({ jsonFile: request.config.pinsFile, nixFile: pinsNixOf(request.config) }, [...new Set(request.hosts.map((host) => host.nixpkgs))]),
  );
  const builder: HostBuilder = request.builder ?? hostBuilderFor(request.config, request.env, request.nixOptions);
  // Every host's configuration files are checked before any connection or Nix work.
  for (const host of request.hosts) await builder.plan(host);
  // Every key is read here (files, commands) before any host is touched: a missing one stops the deployment now.
  const hostKeys = request.keys === false ? new Map<string, LoadedKey[]>() : await loadHostKeys(request.config, request.hosts, { env: request.env, signal: context.signal });
  // One password per SSH login user; hosts logged into as the same user share it.
  const askOncePer = sharePasswordPerRealm(request.sudoPasswordProvider);

  const localNixEnv = { ...process.env, ...(request.env ?? {}) } as NodeJS.ProcessEnv;
  // Every host's bundle holds the same system: its closure is read from the local store once.
  const closureOf = createClosureQuery({ env: localNixEnv, signal: context.signal });

  async function deployHost(host: ResolvedHost): Promise<HostDeployResult> {
    const phases: PhaseTiming[] = [];
    let session: SshSession | undefined;
    const result: {
      bundle?: string;
      toplevel?: string;
      sharedBuildWith?: string;
      copy?: CopyClosureResult;
      cache?: HostDeployResult['cache'];
      activation?: ActivationResult;
      reboot?: RebootResult;
      rebootNeededFor?: readonly BootPart[];
      diff?: string;
      keys?: InstalledKey[];
      keysRemoved?: RemovedKey[];
    } = {};
    const keys = hostKeys.get(host.name) ?? [];
    // Keys it got before that pideploy.json no longer names (never one it names now).
    const wanted = new Set(keys.map((key) => keyPath(key.spec)));
    const stale = request.keys === false ? [] : (request.staleKeys?.get(host.name) ?? []).filter((file) => !wanted.has(file));
    // Sessions opened after the deployment's own (to upload keys after a reboot), closed at the end.
    const laterSessions: SshSession[] = [];
    // The build does not wait for the connection (nor the connection for the build): the SSH
    // login and the sudo password check run while Nix evaluates and builds, so the prompt still
    // comes first and a no-op redeploy costs max(evaluation, login) instead of their sum. A host
    // that fails first stops waiting for its build (which stops if no other host waits for it).
    // The copy goes over this host's SSH connection (not the fleet cache, not a dry run).
    const copiesOverSsh = fleetCache === undefined && request.dryRun !== true;
    let serve: ServeConnection | undefined;
    const hostDone = new AbortController();
    const hostSignal = AbortSignal.any([context.signal, hostDone.signal]);
    const building = builder.buildToplevel(host, { ...context, signal: hostSignal });
    building.catch(() => undefined);
    // The bundle is made as soon as the system is built, while the host may still be logging in:
    // the hosts of a shared build all ask at once, so their bundles are evaluated and built
    // together (the deployment's context, not this host's signal: bundles are built together per
    // signal). A host that fails meanwhile leaves its bundle unused.
    const bundling = building.then(({ toplevel }) => builder.bundle(host, toplevel, context));
    bundling.catch(() => undefined);
    try {
      const connect = connectOptionsFor(host, request);
      let password: string | undefined;
      let hostSystems: Promise<HostSystems> | undefined;
      const sudo = await timed('connect', host.name, phases, context, async () => {
        const opened = await connectSsh(host.target, connect, context);
        session = opened;
        // What the host runs and boots (a read as the login user) goes on a channel of its own
        // beside the sudo detection: one round trip less before the copy can start.
        if (request.dryRun !== true) {
          // With the host's own record of key files, to remove those put there from another clone too.
          hostSystems = readHostSystems(opened, hostSignal, request.keys === false ? {} : { alsoRead: KEY_RECORD_FILE });
          hostSystems.catch(() => undefined);
        }
        // The sudo realm is the login user: hosts logged into as the same user share one prompt.
        const ask = askOncePer(opened.host.user);
        // The copy's root `nix-store --serve --write` starts now and its hello proves the password:
        // no separate `sudo -v`, so the host checks (hashes) the password once less per deployment.
        const proveWith = copiesOverSsh
          ? async (runner: SudoRunner) => {
              serve = await openServeConnection({ host: host.name, session: opened, access: storeAccessFor(runner) }, { ...context, signal: hostSignal });
            }
          : undefined;
        // session.sudo() keeps the validated runner: the copy and the activation on this
        // connection reuse it instead of detecting and validating sudo again. A given password
        // is used instead of the provider and tried once.
        password = request.sudoPassword;
        return opened.sudo({
          password,
          passwordProvider: async (question) => {
            password = await ask(question);
            return password;
          },
          proveWith,
        });
      });
      // What the host runs is read while the system builds, its closure over the serve connection
      // (no nix process on the host): the diff and the activation's start then wait for nothing on the host.
      // Another deployment has the host, so its activation would be refused: said now, before
      // anything is copied or a key is put there (keys its system reads would change under it). One
      // left behind (that the activation takes over from) does not stop this one.
      const holder = (await hostSystems?.catch(() => undefined))?.busyWith;
      if (holder !== undefined && holder.leftBehind !== true) throw hostBusyError(host.name, holder, 'nothing was copied or changed', `pideploy deploy ${host.name}`);
      const runningClosure = serve === undefined || hostSystems === undefined ? undefined : runningClosureOverServe(hostSystems, serve);
      runningClosure?.catch(() => undefined);
      // The build and bundle phases are the time this host still waited for them after connecting.
      const { toplevel, sharedWith } = await timed('build', host.name, phases, context, () => building);
      result.toplevel = toplevel.outPath;
      if (sharedWith !== undefined) result.sharedBuildWith = sharedWith;
      // What the host will run: the system, or that specialisation of it (the diff and the kernel
      // check are against it); a specialisation the built system lacks is said before anything is copied.
      const specialisation = specialisationFor(host, request.specialisation);
      const activatedSystem = specialisation === undefined ? toplevel.outPath : specialisationSystem(toplevel.outPath, specialisation, host.name);
      const bundle = await timed('bundle', host.name, phases, context, () => bundling);
      result.bundle = bundle.outPath;
      const target = { target: host.target, session, connect, sudo: { password }, name: host.name };
      let bundleClosure: StorePathInfo[] | undefined;
      result.diff = await timed('diff', host.name, phases, context, async () => {
        // The bundle's closure holds the system's: one local query serves this diff and the copy.
        bundleClosure = await closureOf([bundle.outPath]);
        // Read over the serve connection during the build; if that failed (the connection dropped
        // while idle), the diff asks the host itself.
        const running = await runningClosure?.catch(() => undefined);
        const diff = formatClosureDiff(
          await diffSystem(target, activatedSystem, context, { env: localNixEnv, closureQuery: closureOf, runningClosure: running === undefined ? undefined : async () => running }),
        );
        for (const line of diff.split('\n').filter(Boolean)) context.reporter.emit({ type: 'log', level: 'info', message: `diff: ${line}`, host: host.name });
        return diff;
      });
      if (request.dryRun === true) {
        for (const key of keys) context.reporter.emit({ type: 'log', level: 'info', host: host.name, message: `would upload key ${describeKey(key)}` });
        for (const file of stale) context.reporter.emit({ type: 'log', level: 'info', host: host.name, message: `would remove key ${file} (no longer in pideploy.json)` });
        return { host: host.name, ok: true, ...result, phases };
      }
      // Not root: the store commands run through this connection's validated sudo runner.
      const access = storeAccessFor(sudo);
      await timed('copy', host.name, phases, context, async () => {
        const closure = bundleClosure ?? (await closureOf([bundle.outPath]));
        if (fleetCache === undefined) {
          // The connection opened at login, unless it ended while idle (then the copy starts a new one).
          const connection = serve?.isOpen === true ? serve : undefined;
          if (connection === undefined) serve?.close();
          serve = undefined;
          result.copy = await copyClosure(
            { host: host.name, session: session as SshSession, paths: [bundle.outPath], closure, access, connection, localNixEnv, substituteOnDestination: request.substituteOnDestination ?? host.substituteOnDestination },
            context,
          );
          return;
        }
        const pushed = await fleetCache.push([bundle.outPath], closure, context);
        const substitute = await substituteFromCache(
          {
            host: host.name,
            session: session as SshSession,
            paths: [bundle.outPath],
            cacheUrl: fleetCache.url,
            tunnel: fleetCache.tunnel,
            publicKey: pushed.publicKey,
            closure: pushed.closure,
            access,
            localNixEnv,
          },
          context,
        );
        result.cache = { pathsPushed: pushed.pathsPushed.length, fileBytesPushed: pushed.fileBytesPushed, substitute };
      });
      // Keys the new system's services read at their start are in place before it activates (one
      // root command). A dry activation changes nothing on the host: its keys are only listed.
      const uploadKeysNow = async (which: readonly LoadedKey[], runner: SudoRunner, remove: readonly string[] = []) => {
        if (which.length === 0 && remove.length === 0) return;
        if (action === 'dry-activate') {
          for (const key of which) context.reporter.emit({ type: 'log', level: 'info', host: host.name, message: `would upload key ${describeKey(key)} (not with dry-activate)` });
          for (const file of remove) context.reporter.emit({ type: 'log', level: 'info', host: host.name, message: `would remove key ${file} (not with dry-activate)` });
          return;
        }
        const { installed, removed } = await timed('keys', host.name, phases, context, () => uploadKeys({ host: host.name, sudo: runner, keys: which, remove }, context));
        result.keys = [...(result.keys ?? []), ...installed];
        if (removed.length > 0) result.keysRemoved = [...(result.keysRemoved ?? []), ...removed];
      };
      await uploadKeysNow(
        keys.filter((key) => key.spec.uploadAt === 'pre-activation'),
        sudo,
      );
      // What the host ran and booted, read while the system built (undefined when that read failed:
      // the activation then reads it itself); the activation, the reboot check and the rollback use it.
      const systemsRead = await hostSystems?.catch(() => undefined);
      result.activation = await timed('activate', host.name, phases, context, async () =>
        activateSystem(
          {
            ...target,
            toplevel: toplevel.outPath,
            bundle: bundle.outPath,
            action,
            specialisation,
            rollback: { enabled: request.rollback, confirmTimeoutSeconds: request.confirmTimeoutSeconds },
            force: request.force,
            // They gate the confirmation, when there is one (else only the reboot's return).
            healthChecks: asksConfirmation(action, { enabled: request.rollback }) ? healthChecks.get(host.name) : undefined,
            installBootloader: request.installBootloader,
            activationTimeoutSeconds: request.activationTimeoutSeconds,
            hostSystems: systemsRead,
            bundleSpeaksProtocol: await bundleSpeaksProtocol(bundle.outPath),
          },
          context,
        ),
      );
      let rebootNow = request.reboot === true;
      if (request.reboot !== true && action === 'switch') {
        // A switch cannot load a new kernel (initrd, modules): the host runs the new system on
        // the one it booted until it reboots. Said, not failed: the user picks the reboot's time
        // (or let it be now, with 'if-needed').
        const changed = bootPartsChanged(systemsRead?.bootedParts, readLocalBootParts(activatedSystem));
        if (changed.length > 0 && request.reboot === 'if-needed') {
          rebootNow = true;
          context.reporter.emit({ type: 'log', level: 'info', host: host.name, message: `${host.name}'s new system has another ${changed.join(', ')} than it booted with: rebooting it` });
        } else if (changed.length > 0) {
          result.rebootNeededFor = changed;
          context.reporter.emit({
            type: 'log',
            level: 'warn',
            host: host.name,
            message: `${host.name} runs its new system on the ${changed.join(', ')} it booted with: reboot it to run the new one (pideploy deploy ${host.name} --reboot)`,
          });
        }
      }
      // Keys no longer wanted go once the host runs its new system: now after a switch or a test,
      // after the reboot for a boot (without one, the old system still runs until the next boot);
      // a dry activation only lists them.
      // Those this clone put there (its record), and those the host's record lists (put there from any clone).
      const everyStale = [...new Set([...stale, ...(request.keys === false ? [] : staleKeysOnHost(systemsRead?.alsoRead, wanted))])];
      const removeStale = action === 'switch' || action === 'test' || action === 'dry-activate' || rebootNow ? everyStale : [];
      if (everyStale.length > 0 && removeStale.length === 0 && action === 'boot') {
        context.reporter.emit({ type: 'log', level: 'info', host: host.name, message: `keys no longer in pideploy.json stay until ${host.name} runs its new system: ${everyStale.join(', ')}` });
      }
      // After the activation: keys for what the new system made (a user, a group) and, after a
      // reboot, again those in /run (memory, emptied at boot); then the keys no longer wanted go.
      // A failure leaves the new system in place and says how to upload them once fixed.
      const uploadAfterActivation = async (rebooted: boolean, runner: SudoRunner) => {
        const which = keys.filter((key) => key.spec.uploadAt === 'post-activation' || (rebooted && isUnderRun(key.spec.destDir)));
        try {
          await uploadKeysNow(which, runner, removeStale);
        } catch (error) {
          const failure = toPideployError(error);
          throw new PideployError({
            code: failure.code,
            message: `${host.name} runs its new system, but ${failure.message}`,
            hint: `${failure.hint ?? 'fix it'}; then: pideploy upload-keys ${host.name}`,
            cause: error,
            commandFailure: failure.commandFailure,
          });
        }
      };
      let uploadedAfter = false;
      if (rebootNow) {
        // Over the deployment's connection if it still lasts (else rebootSystem opens one). Back
        // unhealthy, the host goes back to the generation it had (the one this activation made is
        // deleted) and the bundle deployed before, as the magic rollback would have.
        const activated = result.activation.state;
        const rollbackTo =
          request.rollback === false || activated?.previousGeneration === undefined || activated.previousGeneration === activated.newGeneration
            ? undefined
            : { generation: activated.previousGeneration, rejectedGeneration: activated.newGeneration, gcRoot: systemsRead?.currentConfiguration };
        // Back from its boot, the host gets its keys (over the login that found it back) before
        // its health check: a service that needs one is checked with it in place.
        const onBack = async (back: SshSession) => {
          await uploadAfterActivation(true, await back.sudo({ password, assumeMode: sudo.mode }));
          uploadedAfter = true;
        };
        result.reboot = await timed('reboot', host.name, phases, context, () =>
          rebootSystem(
            {
              ...target,
              toplevel: toplevel.outPath,
              timeoutSeconds: request.rebootTimeoutSeconds,
              force: request.force,
              healthChecks: healthChecks.get(host.name),
              rollbackTo,
              onBack: keys.length === 0 && removeStale.length === 0 ? undefined : onBack,
            },
            context,
          ),
        );
      }
      // No reboot (or none was needed): over the deployment's connection, or a new login if it ended.
      if (!uploadedAfter && (keys.some((key) => key.spec.uploadAt === 'post-activation') || removeStale.length > 0)) {
        let runner = sudo;
        if ((session as SshSession).closed) {
          const fresh = await connectSsh(host.target, connect, context);
          laterSessions.push(fresh);
          runner = await fresh.sudo({ password, assumeMode: sudo.mode });
        }
        await uploadAfterActivation(false, runner);
      }
      return { host: host.name, ok: true, ...result, phases };
    } catch (error) {
      const failure = hostFailure(host, error, context);
      return { host: host.name, ok: false, ...result, error: failure, phases };
    } finally {
      hostDone.abort();
      serve?.close();
      await session?.close();
      for (const later of laterSessions) await later.close();
    }
  }

  // The fleet cache (key, local server) is opened once for all hosts, after the cheap checks.
  const fleetCache: FleetCache | undefined =
    request.cache === undefined || request.dryRun === true
      ? undefined
      : await openFleetCache(request.cache, projectStateDir(request.config.directory), localNixEnv, context);
  const deployOrHoldBack = async (host: ResolvedHost): Promise<HostDeployResult> => {
    // Cancelled (Ctrl-C): hosts not yet started are left alone and reported as such.
    if (context.signal.aborted) {
      return { host: host.name, ok: false, error: new PideployError({ code: 'PIDEPLOY_INTERRUPTED', message: 'interrupted before this host was started' }), phases: [] };
    }
    const heldBack = stops.holdBack(host.name, context);
    if (heldBack !== undefined) return { host: host.name, ok: false, error: heldBack, phases: [] };
    const outcome = await deployHost(host);
    stops.finished(outcome);
    return outcome;
  };
  const parallel = request.parallel ?? 1;
  const canaries = request.hosts.slice(0, stops.canaryCount);
  const results = await (async () => {
    const first = await mapConcurrently(canaries, parallel, deployOrHoldBack);
    stops.canariesDone();
    return [...first, ...(await mapConcurrently(request.hosts.slice(canaries.length), parallel, deployOrHoldBack))];
  })().finally(() => fleetCache?.close());
  return { version: 1, results, ok: results.every((item) => item.ok) };
}

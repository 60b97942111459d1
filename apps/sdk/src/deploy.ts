import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { PideployError, toPideployError, type ActivationAction, type DeployPhase, type PideployContext } from '@pideploy/core';
import { activateSystem, diffSystem, formatClosureDiff, renderActivationScript, type ActivationResult } from '@pideploy/activate';
import { buildToplevel, localNixSystem, parseRemoteBuilder } from '@pideploy/build';
import { buildBundle } from '@pideploy/bundle';
import { connectSsh, createSudo, type SshSession, type SudoPasswordProvider } from '@pideploy/ssh';
import { copyClosure, type CopyClosureResult } from '@pideploy/transport';
import type { ResolvedConfig, ResolvedHost } from './config.js';
import { mapConcurrently } from './concurrency.js';

/** The bundle's bin/activate: the activation stage's script bound to the bundle (see @pideploy/activate). */
export const BUNDLE_ACTIVATE_SCRIPT = renderActivationScript({ shebang: '#!@shell@', defaultToplevel: '@toplevel@', defaultBundle: '@bundle@' });

/** What {@link deploy} needs. */
export interface DeployRequest {
  readonly config: ResolvedConfig;
  /** The hosts to deploy (see `selectHosts`). */
  readonly hosts: readonly ResolvedHost[];
  /** What `switch-to-configuration` does (default switch). */
  readonly action?: ActivationAction | undefined;
  /** Magic rollback (default on for switch/test). */
  readonly rollback?: boolean | undefined;
  /** Seconds a host waits for the confirmation before rolling back (default 30). */
  readonly confirmTimeoutSeconds?: number | undefined;
  /** Activate even where the host already runs the built system. */
  readonly force?: boolean | undefined;
  /** Build, bundle and diff only: nothing is copied or activated. */
  readonly dryRun?: boolean | undefined;
  /** Hosts deployed at once (default 1). */
  readonly parallel?: number | undefined;
  /**
   * Asked for the sudo password when a host needs one: once per distinct SSH target user, the
   * answer validated at once and kept in memory only.
   */
  readonly sudoPasswordProvider?: SudoPasswordProvider | undefined;
  /** Compress the SSH connections (zlib), for slow links. */
  readonly compress?: boolean | undefined;
  /** Trust and record host keys seen for the first time (a changed key is always refused). */
  readonly acceptNewHostKey?: boolean | undefined;
  /** Environment for local nix (default this process's). */
  readonly env?: Readonly<Record<string, string | undefined>> | undefined;
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
  readonly copy?: CopyClosureResult | undefined;
  readonly activation?: ActivationResult | undefined;
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

async function timed<T>(
  phase: DeployPhase,
  host: string,
  phases: PhaseTiming[],
  context: PideployContext,
  work: () => Promise<T>,
): Promise<T> {
  const started = Date.now();
  context.reporter.emit({ type: 'phase-start', phase, host });
  let ok = false;
  try {
    const result = await work();
    ok = true;
    return result;
  } finally {
    const durationMs = Date.now() - started;
    phases.push({ phase, durationMs });
    context.reporter.emit({ type: 'phase-end', phase, host, durationMs, ok });
  }
}

/** The pin's url/sha256/rev recorded in pins.json, for the bundle manifest (null fields when absent). */
export async function readPinRecord(pinsJson: string, pinName: string): Promise<{ url: string | null; sha256: string | null; rev: string | null }> {
  try {
    const lock = JSON.parse(await readFile(pinsJson, 'utf8')) as { pins?: Record<string, { url?: string; sha256?: string; rev?: string }> };
    const pin = lock.pins?.[pinName];
    return { url: pin?.url ?? null, sha256: pin?.sha256 ?? null, rev: pin?.rev ?? null };
  } catch {
    return { url: null, sha256: null, rev: null };
  }
}

/**
 * Deploys hosts end to end: for each host it opens ONE SSH connection and checks sudo (asking
 * the password once, validated before any slow work), builds the toplevel and the bundle here,
 * shows the closure diff against what the host runs, copies the missing paths over that same
 * connection, and activates with magic rollback. A failing host does not stop the others; the
 * result says per host what happened and how long each phase took.
 */
export async function deploy(request: DeployRequest, context: PideployContext): Promise<DeployResult> {
  const pinsNix = path.join(path.dirname(request.config.pinsFile), 'pins.nix');
  const pin = await readPinRecord(request.config.pinsFile, 'nixpkgs');
  const stateDir = path.join(request.config.directory, '.pideploy');
  // One password per SSH login (user@host realm); hosts that share the same login share it.
  const passwords = new Map<string, Promise<string | undefined>>();
  const askOncePer = (realm: string): SudoPasswordProvider => async (question) => {
    if (question.attempt > 1 || !passwords.has(realm)) {
      passwords.set(realm, request.sudoPasswordProvider === undefined ? Promise.resolve(undefined) : request.sudoPasswordProvider(question));
    }
    return passwords.get(realm);
  };

  async function deployHost(host: ResolvedHost): Promise<HostDeployResult> {
    const phases: PhaseTiming[] = [];
    let session: SshSession | undefined;
    const result: { bundle?: string; toplevel?: string; copy?: CopyClosureResult; activation?: ActivationResult; diff?: string } = {};
    try {
      const connect = { ...(host.sshConfig === undefined ? {} : { sshConfigFile: host.sshConfig }), acceptNewHostKey: request.acceptNewHostKey === true, compress: request.compress === true };
      let password: string | undefined;
      const sudo = await timed('connect', host.name, phases, context, async () => {
        const opened = await connectSsh(host.target, connect, context);
        session = opened;
        // The sudo realm is the login user: hosts logged into as the same user share one prompt.
        const ask = askOncePer(opened.host.user);
        return createSudo(opened, {
          passwordProvider: async (question) => {
            password = await ask(question);
            return password;
          },
        });
      });
      const toplevel = await timed('build', host.name, phases, context, () =>
        buildToplevel(
          {
            host: host.name,
            pinsFile: pinsNix,
            configuration: host.configuration,
            system: host.system,
            mode: host.buildMode,
            buildPlatform: localNixSystem(),
            builders: (host.builders ?? '').split(';').filter((part) => part.trim() !== '').map(parseRemoteBuilder),
            stateDir,
            env: request.env,
          },
          context,
        ),
      );
      result.toplevel = toplevel.outPath;
      const bundle = await timed('bundle', host.name, phases, context, () =>
        buildBundle(
          {
            host: host.name,
            system: host.system,
            buildMode: host.buildMode,
            buildPlatform: localNixSystem(),
            pinsFile: pinsNix,
            pin,
            configuration: host.configuration,
            projectDir: request.config.directory,
            activateScript: BUNDLE_ACTIVATE_SCRIPT,
            toplevel,
            nixArguments: toplevel.nixArguments,
            stateDir,
            env: request.env,
          },
          context,
        ),
      );
      result.bundle = bundle.outPath;
      const target = { target: host.target, session, connect, sudo: { password } };
      result.diff = await timed('diff', host.name, phases, context, async () => {
        const diff = formatClosureDiff(await diffSystem(target, toplevel.outPath, context));
        for (const line of diff.split('\n').filter(Boolean)) context.reporter.emit({ type: 'log', level: 'info', message: `diff: ${line}`, host: host.name });
        return diff;
      });
      if (request.dryRun === true) return { host: host.name, ok: true, ...result, phases };
      result.copy = await timed('copy', host.name, phases, context, () =>
        copyClosure(
          {
            host: host.name,
            session: session as SshSession,
            paths: [bundle.outPath],
            access: sudo.mode === 'root' ? { mode: 'direct' } : { mode: 'sudo', password },
            localNixEnv: { ...process.env, ...(request.env ?? {}) } as NodeJS.ProcessEnv,
          },
          context,
        ),
      );
      result.activation = await timed('activate', host.name, phases, context, () =>
        activateSystem(
          {
            ...target,
            toplevel: toplevel.outPath,
            bundle: bundle.outPath,
            action: request.action ?? 'switch',
            rollback: { enabled: request.rollback, confirmTimeoutSeconds: request.confirmTimeoutSeconds },
            force: request.force,
          },
          context,
        ),
      );
      return { host: host.name, ok: true, ...result, phases };
    } catch (error) {
      const failure = toPideployError(error);
      context.reporter.emit({ type: 'log', level: 'warn', message: `${failure.message}${failure.hint === undefined ? '' : ` (hint: ${failure.hint})`}`, host: host.name });
      return { host: host.name, ok: false, ...result, error: failure, phases };
    } finally {
      await session?.close();
    }
  }

  const results = await mapConcurrently(request.hosts, request.parallel ?? 1, deployHost);
  if (request.hosts.length === 0) {
    throw new PideployError({ code: 'PIDEPLOY_USAGE', message: 'no hosts to deploy', hint: 'name hosts, or add them to pideploy.json' });
  }
  return { version: 1, results, ok: results.every((item) => item.ok) };
}

import { PideployError, toPideployError, type PideployContext } from '@pideploy/core';
import { connectSsh, sharePasswordPerRealm, type ConnectSshOptions, type SshSession, type SudoPasswordProvider, type SudoRunner } from '@pideploy/ssh';
import type { ResolvedHost } from './config.js';

/** One host's outcome of a fleet operation: whether it succeeded, and why not. */
export interface FleetHostResult {
  readonly host: string;
  readonly ok: boolean;
  /** Why it failed (the connection, sudo, the work). */
  readonly error?: PideployError | undefined;
}

/** The outcome of a fleet operation (`version: 1`): one result per host, in the order given; `ok` when every host's is. */
export interface FleetResult<HostResult extends FleetHostResult> {
  readonly version: 1;
  readonly results: readonly HostResult[];
  readonly ok: boolean;
}

/** How a fleet operation reaches its hosts (the request fields every one of them takes). */
export interface HostConnectionSettings {
  /** Trust and record host keys seen for the first time (a changed key is always refused). */
  readonly acceptNewHostKey?: boolean | undefined;
  /** Compress the SSH connections (zlib), for slow links. */
  readonly compress?: boolean | undefined;
}

/** The `connectSsh` options for a host of pideploy.json: its ssh_config, and the request's settings. */
export function connectOptionsFor(host: ResolvedHost, settings: HostConnectionSettings): ConnectSshOptions {
  return { ...(host.sshConfig === undefined ? {} : { sshConfigFile: host.sshConfig }), acceptNewHostKey: settings.acceptNewHostKey === true, compress: settings.compress === true };
}

/** A host's failure as its result carries it, said once as a warning (the others go on). */
export function hostFailure(host: ResolvedHost, error: unknown, context: PideployContext): PideployError {
  const failure = toPideployError(error);
  context.reporter.emit({ type: 'log', level: 'warn', host: host.name, message: `${failure.message}${failure.hint === undefined ? '' : ` (hint: ${failure.hint})`}` });
  return failure;
}

/**
 * Runs `work` on one host of pideploy.json over a new SSH connection (closed afterwards). A host
 * not started before a cancellation, or whose connection or work fails, gets `failed(error)`
 * instead (the failure said once as a warning): the fleet operation goes on with the others.
 */
export async function withHostSession<Result>(
  host: ResolvedHost,
  settings: HostConnectionSettings,
  context: PideployContext,
  work: (session: SshSession) => Promise<Result>,
  failed: (error: PideployError) => Result,
): Promise<Result> {
  if (context.signal.aborted) return failed(new PideployError({ code: 'PIDEPLOY_INTERRUPTED', message: 'interrupted before this host was started' }));
  let session: SshSession | undefined;
  try {
    session = await connectSsh(host.target, connectOptionsFor(host, settings), context);
    return await work(session);
  } catch (error) {
    return failed(hostFailure(host, error, context));
  } finally {
    await session?.close();
  }
}

/** How a fleet operation that runs root commands on its hosts gets the sudo password. */
export interface HostSudoSettings {
  /** Asked for the sudo password once per SSH login user. */
  readonly sudoPasswordProvider?: SudoPasswordProvider | undefined;
  /** A sudo password known in advance, tried once. */
  readonly sudoPassword?: string | undefined;
}

/**
 * A fleet operation's way to run one root command per host: `run(session, work)` runs `work`
 * through sudo and lets it prove the password (no separate `sudo -v`: one password check per
 * host), the password asked once per login user across the operation's hosts.
 */
export function rootCommandsFor(settings: HostSudoSettings): <Result>(session: SshSession, signal: AbortSignal, work: (runner: SudoRunner) => Promise<Result>) => Promise<Result> {
  const askOncePer = sharePasswordPerRealm(settings.sudoPasswordProvider);
  return async (session, signal, work) => {
    let result: { value: Awaited<ReturnType<typeof work>> } | undefined;
    await session.sudo({
      password: settings.sudoPassword,
      passwordProvider: askOncePer(session.host.user),
      signal,
      proveWith: async (runner) => {
        result = { value: await work(runner) };
      },
    });
    // createSudo runs proveWith in every mode before it returns.
    if (result === undefined) throw new TypeError('session.sudo() returned without running the root command');
    return result.value;
  };
}

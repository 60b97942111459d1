import { toPideployError, type PideployContext, type PideployError } from '@pideploy/core';
import type { ConnectSshOptions } from '@pideploy/ssh';
import type { ResolvedHost } from './config.js';

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

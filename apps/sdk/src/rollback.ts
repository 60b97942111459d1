import { PideployError, type PideployContext } from '@pideploy/core';
import { REBOOT_ERROR_CODES, rebootSystem, rollbackSystem, type RebootResult, type RollbackResult } from '@pideploy/activate';
import { sharePasswordPerRealm } from '@pideploy/ssh';
import type { ResolvedHost } from './config.js';
import { mapConcurrently } from './concurrency.js';
import { connectOptionsFor, hostFailure, withHostSession, type FleetHostResult, type FleetResult, type HostConnectionSettings, type HostSudoSettings } from './host-connection.js';

/** What {@link rollBackHosts} needs. */
export interface RollBackHostsRequest extends HostConnectionSettings, HostSudoSettings {
  /** The hosts (see `selectHosts`). */
  readonly hosts: readonly ResolvedHost[];
  /** The generation to go back to: one host only (generation numbers are each host's own). Default: each host's previous one. */
  readonly to?: number | undefined;
  /** `switch` (default): run it now; `boot`: make it the boot default only. */
  readonly action?: 'switch' | 'boot' | undefined;
  /** Then reboot each host into the generation it went back to and wait until it runs it. */
  readonly reboot?: boolean | undefined;
  /** Seconds each host may take to come back from its reboot (default 300). */
  readonly rebootTimeoutSeconds?: number | undefined;
  /** Hosts at once (default 1). */
  readonly parallel?: number | undefined;
}

/** The outcome for one host. */
export interface HostRollbackResult extends FleetHostResult {
  readonly rollback?: RollbackResult | undefined;
  /** With `reboot`: the host's reboot (or that none was needed). */
  readonly reboot?: RebootResult | undefined;
}

/** The outcome of {@link rollBackHosts} (`version: 1`). */
export type RollBackHostsResult = FleetResult<HostRollbackResult>;

/**
 * Refuses a rollback that cannot be done, before any host is contacted (pure): a generation
 * number (`to`) is one host's own.
 * @throws PideployError `PIDEPLOY_USAGE`.
 */
export function checkRollBackRequest(request: Pick<RollBackHostsRequest, 'hosts' | 'to'>): void {
  if (request.to !== undefined && request.hosts.length > 1) {
    throw new PideployError({
      code: 'PIDEPLOY_USAGE',
      message: `--to ${request.to} is one host's generation, but ${request.hosts.length} hosts are selected (${request.hosts.map((host) => host.name).join(', ')})`,
      hint: 'without --to each host goes back to its previous generation; or name one host',
    });
  }
}

/**
 * Rolls hosts back to their previous system generation (`nixos-rebuild switch --rollback`, or
 * `boot --rollback`), each over one SSH connection, with the sudo password asked once per login
 * user; with `reboot`, each host is then rebooted into it and must come back running it. A host in
 * the middle of a deployment is refused (`PIDEPLOY_ACTIVATION_BUSY`); a host that fails does not
 * stop the others. For a release that turned out bad after it was confirmed everywhere.
 * @throws PideployError `PIDEPLOY_USAGE` for `to` with several hosts (nothing is contacted).
 */
export async function rollBackHosts(request: RollBackHostsRequest, context: PideployContext): Promise<RollBackHostsResult> {
  checkRollBackRequest(request);
  const askOncePer = sharePasswordPerRealm(request.sudoPasswordProvider);
  const results = await mapConcurrently(request.hosts, request.parallel ?? 1, async (host) =>
    withHostSession<HostRollbackResult>(
      host,
      request,
      context,
      async (session) => {
        const target = {
          target: host.target,
          session,
          connect: connectOptionsFor(host, request),
          sudo: { password: request.sudoPassword, passwordProvider: askOncePer(session.host.user) },
          name: host.name,
        };
        const rollback = await rollbackSystem(target, { to: request.to, action: request.action }, context);
        if (request.reboot !== true) return { host: host.name, ok: true, rollback };
        if (rollback.profileSystem === undefined) {
          throw new PideployError({
            code: REBOOT_ERROR_CODES.refused,
            message: `${host.name} was rolled back, but did not say which system it boots now: not rebooted`,
            hint: `see \`pideploy status ${host.name}\`, then reboot it yourself`,
          });
        }
        try {
          const reboot = await rebootSystem({ ...target, toplevel: rollback.profileSystem, timeoutSeconds: request.rebootTimeoutSeconds }, context);
          return { host: host.name, ok: true, rollback, reboot };
        } catch (error) {
          // Rolled back, not rebooted: the result keeps what the rollback did.
          return { host: host.name, ok: false, rollback, error: hostFailure(host, error, context) };
        }
      },
      (error) => ({ host: host.name, ok: false, error }),
    ),
  );
  return { version: 1, results, ok: results.every((item) => item.ok) };
}

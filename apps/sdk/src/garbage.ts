import { PideployError, type PideployContext } from '@pideploy/core';
import { collectSystemGarbage, hostBusyError, readHostSystems, type SystemGarbageResult } from '@pideploy/activate';
import type { ResolvedHost } from './config.js';
import { mapConcurrently } from './concurrency.js';
import { rootCommandsFor, withHostSession, type FleetHostResult, type FleetResult, type HostConnectionSettings, type HostSudoSettings } from './host-connection.js';

/** What {@link collectGarbageOnHosts} needs. */
export interface CollectGarbageRequest extends HostConnectionSettings, HostSudoSettings {
  /** The hosts (see `selectHosts`). */
  readonly hosts: readonly ResolvedHost[];
  /** How many of the newest system generations each host keeps (default 3); the one it runs, booted or boots next are kept too. */
  readonly keep?: number | undefined;
  /** Say what would be deleted; delete nothing. */
  readonly dryRun?: boolean | undefined;
  /** Hosts at once (default 1). */
  readonly parallel?: number | undefined;
}

/** The outcome for one host. */
export interface HostGarbageResult extends FleetHostResult {
  readonly garbage?: SystemGarbageResult | undefined;
}

/** The outcome of {@link collectGarbageOnHosts} (`version: 1`). */
export type CollectGarbageResult = FleetResult<HostGarbageResult>;

/** Generations kept when the caller does not say. */
export const DEFAULT_GENERATIONS_KEPT = 3;

/**
 * Frees the hosts' stores (SD cards fill up): on each host, over one SSH connection, the system
 * generations older than the `keep` newest go (never the one it runs, booted or boots next), the
 * boot loader is rewritten without them, and the garbage is collected, in ONE root command (the
 * password asked once per login user). A host in the middle of a deployment is left alone (its
 * rollback may need an old generation). A host that fails does not stop the others.
 */
export async function collectGarbageOnHosts(request: CollectGarbageRequest, context: PideployContext): Promise<CollectGarbageResult> {
  const keep = request.keep ?? DEFAULT_GENERATIONS_KEPT;
  if (!Number.isSafeInteger(keep) || keep < 1) {
    throw new PideployError({ code: 'PIDEPLOY_USAGE', message: `keep must be a whole number of at least 1, not ${String(keep)}`, hint: 'keep 1 leaves only the generation the host boots next (and the one it runs)' });
  }
  const asRoot = rootCommandsFor(request);
  const results = await mapConcurrently(request.hosts, request.parallel ?? 1, async (host) =>
    withHostSession<HostGarbageResult>(
      host,
      request,
      context,
      async (session) => {
        // Not while a deployment has the host: its rollback may need a generation this would delete.
        const systems = await readHostSystems(session, context.signal);
        if (systems.busyWith !== undefined) throw hostBusyError(host.name, systems.busyWith, 'nothing was collected', 'run pideploy gc again');
        // The collection itself proves the password (one check per host).
        const result = await asRoot(session, context.signal, (runner) => collectSystemGarbage({ host: host.name, sudo: runner, keep, dryRun: request.dryRun }, context));
        if (result.deletedGenerations.length > 0 && !result.dryRun && !result.bootLoaderUpdated) {
          context.reporter.emit({ type: 'log', level: 'warn', host: host.name, message: `${host.name}: the boot loader could not be rewritten; its menu may still list deleted generations (pideploy deploy ${host.name} --force rewrites it)` });
        }
        return { host: host.name, ok: true, garbage: result };
      },
      (error) => ({ host: host.name, ok: false, error }),
    ),
  );
  return { version: 1, results, ok: results.every((item) => item.ok) };
}

import { PideployError, type PideployContext } from '@pideploy/core';

/** The stop rules of a fleet deployment: canaries first, and at most `maxFailures` failed hosts. */
export interface FleetStops {
  /** How many of the first hosts are canaries. */
  readonly canaryCount: number;
  /** Records a host's outcome. */
  finished(result: { readonly host: string; readonly ok: boolean }): void;
  /** Called once every canary finished. */
  canariesDone(): void;
  /** Why a host must not start (said once per deployment as a warning), or undefined. */
  holdBack(host: string, context: PideployContext): PideployError | undefined;
}

/**
 * The stop rules for `hosts` in deployment order: the first `canary` are canaries (a failed one
 * holds back every later host), and at most `maxFailures` hosts fail before the rest are held back.
 */
export function createFleetStops(request: { readonly hosts: readonly { readonly name: string }[]; readonly canary?: number | undefined; readonly maxFailures?: number | undefined }): FleetStops {
  for (const [name, value, min] of [['canary', request.canary, 0], ['maxFailures', request.maxFailures, 1]] as const) {
    if (value !== undefined && (!Number.isSafeInteger(value) || value < min)) {
      throw new PideployError({ code: 'PIDEPLOY_USAGE', message: `${name} must be a whole number of at least ${min}, not ${String(value)}`, hint: `leave ${name} out, or give e.g. ${name}: 1` });
    }
  }
  const canaryCount = Math.min(request.canary ?? 0, request.hosts.length);
  const canaryNames = new Set(request.hosts.slice(0, canaryCount).map((host) => host.name));
  const failed: string[] = [];
  let failedCanaries: string[] = [];
  let warned = false;
  return {
    canaryCount,
    finished(result) {
      if (!result.ok) failed.push(result.host);
    },
    canariesDone() {
      failedCanaries = failed.filter((name) => canaryNames.has(name));
    },
    holdBack(host, context) {
      const why =
        failedCanaries.length > 0
          ? `the canary ${failedCanaries.join(', ')} failed`
          : request.maxFailures !== undefined && failed.length >= request.maxFailures
            ? `${failed.length} host${failed.length === 1 ? '' : 's'} failed (${failed.length > 5 ? `${failed.slice(0, 5).join(', ')}, …` : failed.join(', ')}), the most allowed (max failures ${request.maxFailures})`
            : undefined;
      if (why === undefined) return undefined;
      if (!warned) {
        warned = true;
        context.reporter.emit({ type: 'log', level: 'warn', message: `not starting more hosts: ${why}` });
      }
      return new PideployError({
        code: 'PIDEPLOY_HOST_NOT_STARTED',
        message: `${host} was not started: ${why}`,
        hint: `fix ${failed.length === 1 ? 'that host' : 'those hosts'} (or leave ${failed.length === 1 ? 'it' : 'them'} out), then deploy the hosts not started again`,
      });
    },
  };
}

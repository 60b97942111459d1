import type { HealthChecks } from '@pideploy/activate';
import type { HealthCheckSettings } from './config.js';

/**
 * A host's health check for one deployment: pideploy.json's (`configured`: the host's own, else
 * the defaults'), with the fields `override` names replaced (the CLI's `--health-check-*` flags);
 * `false` turns it off for this deployment (`--no-health-check`). Undefined: nothing to check.
 */
export function healthCheckSettingsFor(configured: HealthCheckSettings | undefined, override: HealthCheckSettings | false | undefined): HealthCheckSettings | undefined {
  if (override === false) return undefined;
  const merged = { ...configured, ...definedFields(override ?? {}) };
  return merged.command === undefined && merged.url === undefined ? undefined : merged;
}

function definedFields(settings: HealthCheckSettings): HealthCheckSettings {
  return Object.fromEntries(Object.entries(settings).filter(([, value]) => value !== undefined));
}

/**
 * The checks the activation runs (`@pideploy/activate`'s HealthChecks): the command line for
 * `sh -c`; the URL as written (the activation fills in `{host}` and `{hostname}`).
 */
export function healthChecksFor(settings: HealthCheckSettings | undefined): HealthChecks | undefined {
  if (settings === undefined) return undefined;
  return {
    command: settings.command === undefined ? undefined : ['sh', '-c', settings.command],
    url: settings.url,
    timeoutMs: settings.timeoutSeconds === undefined ? undefined : Math.round(settings.timeoutSeconds * 1000),
  };
}

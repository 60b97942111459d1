import type { HealthChecks } from '@pideploy/activate';
import { PideployError } from '@pideploy/core';
import type { HealthCheckSettings, ResolvedHost } from './config.js';

/**
 * A host's health check for one deployment: pideploy.json's (the host's own, else the defaults'),
 * with the fields `override` names replaced (the CLI's `--health-check-*` flags); `false` turns it
 * off for this deployment (`--no-health-check`).
 */
export function healthCheckSettingsFor(host: ResolvedHost, override: HealthCheckSettings | false | undefined): HealthCheckSettings | undefined {
  if (override === false) return undefined;
  const merged = { ...host.healthCheck, ...definedFields(override ?? {}) };
  return merged.command === undefined && merged.url === undefined ? undefined : merged;
}

function definedFields(settings: HealthCheckSettings): HealthCheckSettings {
  return Object.fromEntries(Object.entries(settings).filter(([, value]) => value !== undefined));
}

/**
 * The checks the activation runs for one host: the command line for `sh -c`, the URL with
 * `{host}` (the host's name in pideploy.json) and `{hostname}` (the address its SSH connection
 * went to; an IPv6 one in brackets) filled in.
 * @throws PideployError `PIDEPLOY_USAGE` for an unknown placeholder or a URL that is not one once filled in.
 */
export function healthChecksFor(settings: HealthCheckSettings | undefined, where: { readonly host: string; readonly hostname: string }): HealthChecks | undefined {
  if (settings === undefined) return undefined;
  return {
    command: settings.command === undefined ? undefined : ['sh', '-c', settings.command],
    url: settings.url === undefined ? undefined : fillInUrl(settings.url, where),
    timeoutMs: settings.timeoutSeconds === undefined ? undefined : Math.round(settings.timeoutSeconds * 1000),
  };
}

function fillInUrl(template: string, where: { readonly host: string; readonly hostname: string }): string {
  const hostname = where.hostname.includes(':') && !where.hostname.startsWith('[') ? `[${where.hostname}]` : where.hostname;
  const url = template.replace(/\{[^{}]*\}/gu, (placeholder) => {
    if (placeholder === '{host}') return where.host;
    if (placeholder === '{hostname}') return hostname;
    throw new PideployError({
      code: 'PIDEPLOY_USAGE',
      message: `the health check URL ${template} has an unknown placeholder ${placeholder}`,
      hint: "use {host} (the host's name in pideploy.json) or {hostname} (the address its SSH connection goes to)",
    });
  });
  if (!/^https?:\/\//iu.test(url) || !URL.canParse(url)) {
    throw new PideployError({
      code: 'PIDEPLOY_USAGE',
      message: `the health check URL for ${where.host} is not a valid http(s) URL: ${url}`,
      hint: 'e.g. http://{hostname}:8080/health',
    });
  }
  return url;
}

import path from 'node:path';
import { loadConfig, readDeployRecordOrEmpty, selectHosts, type HostDeployRecord, type ResolvedConfig, type ResolvedHost } from '@pideploy/sdk';
import type { CommandInvocation, CommandResult } from '../command.js';
import { hostSelectors } from '../flags.js';
import { formatColumns } from '../render.js';

/** One host as `pideploy hosts` lists it: its settings from pideploy.json and its last deployment from here. */
export interface HostListing {
  readonly name: string;
  readonly target: string;
  readonly system: string;
  /** The pin that is its nixpkgs. */
  readonly nixpkgs: string;
  readonly buildMode: string;
  readonly tags: readonly string[];
  /** Relative to pideploy.json. */
  readonly configuration: string;
  /** The specialisation of its system it runs (pideploy.json `specialisation`), if set. */
  readonly specialisation: string | undefined;
  readonly sudo: string;
  /** The names of its keys. */
  readonly keys: readonly string[];
  readonly healthCheck: boolean;
  /** Its last deployment from this project (`.pideploy/deployments.json`), if any. */
  readonly lastDeployment: HostDeployRecord | undefined;
}

/** A host of the configuration with its record, as listed (pure). */
export function hostListing(config: Pick<ResolvedConfig, 'directory'>, host: ResolvedHost, last: HostDeployRecord | undefined): HostListing {
  return {
    name: host.name,
    target: host.target,
    system: host.system,
    nixpkgs: host.nixpkgs,
    buildMode: host.buildMode,
    tags: host.tags,
    configuration: path.relative(config.directory, host.configuration),
    specialisation: host.specialisation,
    sudo: host.sudo,
    keys: host.keys.map((key) => key.name),
    healthCheck: host.healthCheck !== undefined,
    lastDeployment: last,
  };
}

/** `switch ok 2026-12-07 10:00`, `switch FAILED PIDEPLOY_SSH_UNREACHABLE 2026-12-07 10:00`, or `-` (pure). */
function describeLast(last: HostDeployRecord | undefined): string {
  if (last === undefined) return '-';
  const when = last.at.replace('T', ' ').slice(0, 16);
  return `${last.action} ${last.ok ? 'ok' : `FAILED ${last.code ?? ''}`.trim()} ${when}`;
}

/** The table of `pideploy hosts` (pure): a row per host, columns as wide as their longest cell. */
export function formatHostTable(hosts: readonly HostListing[]): string {
  const header = ['host', 'target', 'system', 'tags', 'configuration', 'last deployment (UTC)'];
  const rows = hosts.map((host) => [
    host.name,
    host.target,
    // The mode and the nixpkgs pin where they are not the defaults.
    [host.system, ...(host.buildMode === 'emulated' ? [] : [`(${host.buildMode})`]), ...(host.nixpkgs === 'nixpkgs' ? [] : [host.nixpkgs])].join(' '),
    host.tags.join(',') || '-',
    host.specialisation === undefined ? host.configuration : `${host.configuration} (specialisation ${host.specialisation})`,
    describeLast(host.lastDeployment),
  ]);
  return formatColumns(header, rows);
}

/**
 * `pideploy hosts [host…|--on @tag]`: the hosts of pideploy.json a selection names (all by
 * default), with their target, system, tags, configuration and last deployment from this
 * project; connects to nothing. What `--on @canary` would deploy, before deploying it.
 */
export async function hostsCommand(invocation: CommandInvocation): Promise<CommandResult> {
  const config = await loadConfig({ cwd: invocation.io.cwd, configFile: invocation.global.config });
  const hosts = selectHosts(config, hostSelectors(invocation));
  const record = await readDeployRecordOrEmpty(config, (error) =>
    invocation.context.reporter.emit({ type: 'log', level: 'warn', message: `${(error as Error).message}: last deployments not shown` }),
  );
  const listings = hosts.map((host) => hostListing(config, host, record.hosts[host.name]));
  return { value: { hosts: listings }, text: formatHostTable(listings) };
}

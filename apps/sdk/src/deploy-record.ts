import { readFile, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { PideployError } from '@pideploy/core';
import { keyPath } from '@pideploy/keys';
import { ensureStateDir, projectStateDir } from '@pideploy/nix';
import type { ResolvedConfig, ResolvedHost } from './config.js';
import type { DeployResult } from './deploy.js';

/** One host's last deployment from this project. */
export interface HostDeployRecord {
  readonly ok: boolean;
  /** When it ended (ISO 8601). */
  readonly at: string;
  readonly action: string;
  /** The error code when it failed (`PIDEPLOY_HOST_NOT_STARTED` when it was held back). */
  readonly code?: string | undefined;
  /** The bundle it got (when it got that far). */
  readonly bundle?: string | undefined;
  /**
   * The files of keys pideploy put on the host (deploys and `upload-keys` from this project) and
   * has not removed since: those pideploy.json no longer names are removed by the next deploy.
   */
  readonly keys?: readonly string[] | undefined;
}

/** `.pideploy/deployments.json` (`version: 1`): each host's last deployment from this project. */
export interface DeployRecord {
  readonly version: 1;
  readonly hosts: Readonly<Record<string, HostDeployRecord>>;
}

/** Where the record of a project lives. */
export function deployRecordFile(config: Pick<ResolvedConfig, 'directory'>): string {
  return path.join(projectStateDir(config.directory), 'deployments.json');
}

/** The record of a project's deployments; empty when none was made yet. A damaged file is an error (with the fix). */
export async function readDeployRecord(config: Pick<ResolvedConfig, 'directory'>): Promise<DeployRecord> {
  const file = deployRecordFile(config);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return { version: 1, hosts: {} };
    throw error;
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = undefined;
  }
  const record = parsed as Partial<DeployRecord> | undefined;
  if (record?.version !== 1 || typeof record.hosts !== 'object' || record.hosts === null) {
    throw new PideployError({
      code: 'PIDEPLOY_DEPLOY_RECORD_INVALID',
      message: `${file} is not a record of deployments pideploy can read`,
      hint: `remove it (the next deployment writes it again): rm ${file}`,
    });
  }
  return record as DeployRecord;
}

/**
 * The record, or an empty one when it cannot be read (damaged, unreadable): `onUnreadable` hears
 * why. For what the record only helps with (removing dropped keys); `--failed` reads it strictly.
 */
export async function readDeployRecordOrEmpty(config: Pick<ResolvedConfig, 'directory'>, onUnreadable: (error: unknown) => void = () => undefined): Promise<DeployRecord> {
  try {
    return await readDeployRecord(config);
  } catch (error) {
    onUnreadable(error);
    return { version: 1, hosts: {} };
  }
}

/**
 * Records each host's outcome of a deployment (other hosts keep theirs): written to a temp file
 * beside it and renamed over it, so a reader never sees half a file.
 */
export async function recordDeployResult(config: Pick<ResolvedConfig, 'directory'>, result: DeployResult, action: string, now: Date = new Date()): Promise<DeployRecord> {
  const previous = await readDeployRecordOrEmpty(config);
  const hosts: Record<string, HostDeployRecord> = { ...previous.hosts };
  for (const host of result.results) {
    const keys = keysAfter(previous.hosts[host.host]?.keys, host.keys?.map((key) => key.path) ?? [], host.keysRemoved?.map((file) => file.path) ?? []);
    hosts[host.host] = {
      ok: host.ok,
      at: now.toISOString(),
      action,
      ...(host.error === undefined ? {} : { code: host.error.code }),
      ...(host.bundle === undefined ? {} : { bundle: host.bundle }),
      ...(keys.length === 0 ? {} : { keys }),
    };
  }
  return writeDeployRecord(config, { version: 1, hosts });
}

/** The key files a host has after an upload: those it had and those installed, less those removed (sorted). */
function keysAfter(had: readonly string[] | undefined, installed: readonly string[], removed: readonly string[]): string[] {
  const gone = new Set(removed);
  return [...new Set([...(had ?? []), ...installed])].filter((file) => !gone.has(file)).sort();
}

/**
 * Records the key files `upload-keys` put on hosts (their deployment outcomes stay as they were;
 * a host never deployed from here gets a record of its keys only).
 */
export async function recordInstalledKeys(config: Pick<ResolvedConfig, 'directory'>, installed: ReadonlyMap<string, readonly string[]>, now: Date = new Date()): Promise<DeployRecord> {
  const previous = await readDeployRecordOrEmpty(config);
  const hosts: Record<string, HostDeployRecord> = { ...previous.hosts };
  for (const [host, files] of installed) {
    if (files.length === 0) continue;
    const before = previous.hosts[host];
    hosts[host] = { ...(before ?? { ok: true, at: now.toISOString(), action: 'upload-keys' }), keys: keysAfter(before?.keys, files, []) };
  }
  return writeDeployRecord(config, { version: 1, hosts });
}

/**
 * Per host of `hosts`, the key files it has from earlier uploads (the record) that its
 * pideploy.json keys no longer name: what `deploy()`'s `staleKeys` removes. Hosts with none are left out.
 */
export function staleKeyPaths(record: DeployRecord, hosts: readonly ResolvedHost[]): Map<string, string[]> {
  const stale = new Map<string, string[]>();
  for (const host of hosts) {
    const wanted = new Set((host.keys ?? []).map((key) => keyPath(key)));
    const files = (record.hosts[host.name]?.keys ?? []).filter((file) => !wanted.has(file));
    if (files.length > 0) stale.set(host.name, files);
  }
  return stale;
}

async function writeDeployRecord(config: Pick<ResolvedConfig, 'directory'>, record: DeployRecord): Promise<DeployRecord> {
  const file = deployRecordFile(config);
  await ensureStateDir(projectStateDir(config.directory));
  const temp = `${file}.${process.pid}.tmp`;
  try {
    await writeFile(temp, `${JSON.stringify(record, null, 2)}\n`);
    await rename(temp, file);
  } catch (error) {
    await rm(temp, { force: true });
    throw error;
  }
  return record;
}

/** Of `hosts`, those whose last recorded deployment did not succeed (failed, or not started), in their order. */
export function hostsThatFailed(record: DeployRecord, hosts: readonly ResolvedHost[]): readonly ResolvedHost[] {
  return hosts.filter((host) => record.hosts[host.name]?.ok === false);
}

import { open, readFile, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { PideployError } from '@pideploy/core';
import { keyPath } from '@pideploy/keys';
import { ensureStateDir, projectStateDir } from '@pideploy/nix';
import type { ResolvedConfig, ResolvedHost } from './config.js';
import type { DeployResult } from './deploy.js';
import { replaceFile } from './replace-file.js';

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
 * beside it and renamed over it, so a reader never sees half a file, under the record's lock, so
 * a pideploy of the same project finishing at the same moment does not lose this one's hosts.
 * @throws PideployError `PIDEPLOY_DEPLOY_RECORD_BUSY` when another writer holds the lock for 10 s.
 */
export async function recordDeployResult(config: Pick<ResolvedConfig, 'directory'>, result: DeployResult, action: string, now: Date = new Date()): Promise<DeployRecord> {
  return await withRecordLock(config, async () => {
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
  });
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
  return await withRecordLock(config, async () => {
    const previous = await readDeployRecordOrEmpty(config);
    const hosts: Record<string, HostDeployRecord> = { ...previous.hosts };
    for (const [host, files] of installed) {
      if (files.length === 0) continue;
      const before = previous.hosts[host];
      hosts[host] = { ...(before ?? { ok: true, at: now.toISOString(), action: 'upload-keys' }), keys: keysAfter(before?.keys, files, []) };
    }
    return writeDeployRecord(config, { version: 1, hosts });
  });
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

/** How long a writer waits for another one's lock before it gives up (a lock is held for milliseconds). */
const RECORD_LOCK_WAIT_MS = 10_000;
/** A lock older than this is left over by a writer that died (it is held for milliseconds). */
const RECORD_LOCK_STALE_MS = 30_000;

/**
 * Runs `update` (read, merge, write the record) holding `deployments.json.lock` (made with
 * O_EXCL, holding the writer's pid), so that two pideploy runs of one project finishing at the same
 * moment each add their hosts instead of one losing the other's. A lock whose writer is gone (no
 * such process, or older than {@link RECORD_LOCK_STALE_MS}) is taken over.
 * @throws PideployError `PIDEPLOY_DEPLOY_RECORD_BUSY` when another writer holds it for too long.
 */
async function withRecordLock<T>(config: Pick<ResolvedConfig, 'directory'>, update: () => Promise<T>): Promise<T> {
  const lock = `${deployRecordFile(config)}.lock`;
  await ensureStateDir(projectStateDir(config.directory));
  const deadline = Date.now() + RECORD_LOCK_WAIT_MS;
  for (let delay = 5; ; delay = Math.min(delay * 2, 100)) {
    try {
      const handle = await open(lock, 'wx');
      try {
        await handle.writeFile(`${process.pid}\n`);
      } finally {
        await handle.close();
      }
      break;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
    if (await lockIsStale(lock)) {
      // Whoever removes it first takes it over; the others find the new lock and wait.
      await rm(lock, { force: true });
      continue;
    }
    if (Date.now() > deadline) {
      throw new PideployError({
        code: 'PIDEPLOY_DEPLOY_RECORD_BUSY',
        message: `another pideploy has held ${lock} for more than ${RECORD_LOCK_WAIT_MS / 1000} s`,
        hint: `if no pideploy runs in this project, remove it: rm ${lock}`,
      });
    }
    await new Promise((resolve) => setTimeout(resolve, delay));
  }
  try {
    return await update();
  } finally {
    await rm(lock, { force: true });
  }
}

/** Whether a record lock was left by a writer that is gone. */
async function lockIsStale(lock: string): Promise<boolean> {
  let text: string;
  let age: number;
  try {
    text = await readFile(lock, 'utf8');
    age = Date.now() - (await stat(lock)).mtimeMs;
  } catch {
    return false; // gone meanwhile: the next try takes it
  }
  if (age > RECORD_LOCK_STALE_MS) return true;
  const pid = Number(text.trim());
  // Written but not yet filled in: its writer is alive (it fills it right after making it).
  if (!Number.isSafeInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return false;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'ESRCH';
  }
}

async function writeDeployRecord(config: Pick<ResolvedConfig, 'directory'>, record: DeployRecord): Promise<DeployRecord> {
  const file = deployRecordFile(config);
  await ensureStateDir(projectStateDir(config.directory));
  await replaceFile(file, `${JSON.stringify(record, null, 2)}\n`);
  return record;
}

/** Of `hosts`, those whose last recorded deployment did not succeed (failed, or not started), in their order. */
export function hostsThatFailed(record: DeployRecord, hosts: readonly ResolvedHost[]): readonly ResolvedHost[] {
  return hosts.filter((host) => record.hosts[host.name]?.ok === false);
}

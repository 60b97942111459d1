import { PideployError, type PideployContext } from '@pideploy/core';
import { keyPath, parseKeyRecord, readKeyContents, uploadKeys, type InstalledKey, type LoadedKey } from '@pideploy/keys';
import type { ResolvedConfig, ResolvedHost } from './config.js';
import { mapConcurrently } from './concurrency.js';
import { rootCommandsFor, withHostSession, type FleetHostResult, type FleetResult, type HostConnectionSettings, type HostSudoSettings } from './host-connection.js';

/**
 * Every selected host's keys with their contents, read on this machine before any host is touched
 * (a source that many hosts name is read once; key commands run in pideploy.json's directory).
 * @throws PideployError `PIDEPLOY_KEY_SOURCE_FAILED` naming the key and its source.
 */
export async function loadHostKeys(
  config: ResolvedConfig,
  hosts: readonly ResolvedHost[],
  options: { readonly env?: Readonly<Record<string, string | undefined>> | undefined; readonly signal?: AbortSignal | undefined } = {},
): Promise<Map<string, LoadedKey[]>> {
  // (`?? []`: hosts made by hand in a pipeline of plain JavaScript may have no keys field.)
  const keysOf = (host: ResolvedHost) => host.keys ?? [];
  const all = hosts.flatMap(keysOf);
  const loaded = all.length === 0 ? [] : await readKeyContents(all, { cwd: config.directory, env: options.env, signal: options.signal });
  const byHost = new Map<string, LoadedKey[]>();
  let next = 0;
  for (const host of hosts) {
    byHost.set(host.name, loaded.slice(next, next + keysOf(host).length));
    next += keysOf(host).length;
  }
  return byHost;
}

/**
 * The key files a host's own record lists (`KEY_RECORD_FILE`, as `readHostSystems` reads it) that
 * are not `wanted` (pure): keys put there from any clone of the project that pideploy.json no
 * longer names. A line that is not a key's path (absolute, normal, ending in a key name) is no key
 * pideploy put there: left out, never removed.
 */
export function staleKeysOnHost(recorded: readonly string[] | undefined, wanted: ReadonlySet<string>): string[] {
  return parseKeyRecord(recorded).files.filter((file) => !wanted.has(file));
}

/** One line per key, for a dry run and for messages: where it goes, owned by whom, when. */
export function describeKey(key: LoadedKey): string {
  const { spec } = key;
  return `${spec.name} → ${keyPath(spec)} (${spec.permissions} ${spec.user}:${spec.group}, ${spec.uploadAt}, ${key.content.byteLength} bytes)`;
}

/** What {@link uploadKeysToHosts} needs. */
export interface UploadKeysRequest extends HostConnectionSettings, HostSudoSettings {
  readonly config: ResolvedConfig;
  /** The hosts whose keys are uploaded (see `selectHosts`); hosts without keys are not connected to. */
  readonly hosts: readonly ResolvedHost[];
  /** Hosts at once (default 1). */
  readonly parallel?: number | undefined;
  /** Which keys: both (default), or only those uploaded before or after the activation. */
  readonly uploadAt?: 'pre-activation' | 'post-activation' | undefined;
  /** Read the keys and say what would be uploaded, without connecting. */
  readonly dryRun?: boolean | undefined;
  /** Environment of key commands (default this process's). */
  readonly env?: Readonly<Record<string, string | undefined>> | undefined;
}

/** The outcome for one host. */
export interface HostKeysResult extends FleetHostResult {
  /** What the host did with each key (empty for a host without keys). */
  readonly keys: readonly InstalledKey[];
}

/** The outcome of {@link uploadKeysToHosts} (`version: 1`). */
export type UploadKeysResult = FleetResult<HostKeysResult>;

/**
 * Uploads the hosts' keys without deploying (as colmena's `upload-keys`): for each host with keys,
 * one SSH connection and ONE root command (one sudo password check), the password asked once per
 * login user. Every key is read here first: a missing file or a failing command stops it before
 * any host is touched. A host that fails does not stop the others.
 */
export async function uploadKeysToHosts(request: UploadKeysRequest, context: PideployContext): Promise<UploadKeysResult> {
  const chosen = (host: ResolvedHost) => (host.keys ?? []).filter((key) => request.uploadAt === undefined || key.uploadAt === request.uploadAt);
  const withKeys = request.hosts.filter((host) => chosen(host).length > 0);
  if (withKeys.length === 0) {
    throw new PideployError({
      code: 'PIDEPLOY_USAGE',
      message: `no keys to upload to ${request.hosts.map((host) => host.name).join(', ') || 'the selected hosts'}`,
      hint: 'add keys to pideploy.json, e.g. "keys": { "wifi.psk": { "file": "secrets/wifi.psk" } } in a host or in "defaults"',
    });
  }
  const loaded = await loadHostKeys(request.config, request.hosts.map((host) => ({ ...host, keys: chosen(host) })), { env: request.env, signal: context.signal });
  const asRoot = rootCommandsFor(request);
  const results = await mapConcurrently(request.hosts, request.parallel ?? 1, async (host): Promise<HostKeysResult> => {
    const keys = loaded.get(host.name) ?? [];
    if (keys.length === 0) return { host: host.name, ok: true, keys: [] };
    if (request.dryRun === true) {
      for (const key of keys) context.reporter.emit({ type: 'log', level: 'info', host: host.name, message: `would upload key ${describeKey(key)}` });
      return { host: host.name, ok: true, keys: [] };
    }
    return withHostSession<HostKeysResult>(
      host,
      request,
      context,
      async (session) => {
        // The upload itself proves the password (one password check per host).
        const { installed } = await asRoot(session, context.signal, (runner) => uploadKeys({ host: host.name, sudo: runner, keys }, context));
        return { host: host.name, ok: true, keys: installed };
      },
      (error) => ({ host: host.name, ok: false, keys: [], error }),
    );
  });
  return { version: 1, results, ok: results.every((item) => item.ok) };
}

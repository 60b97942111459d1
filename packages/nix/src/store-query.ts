import { runStreamingCommand } from './nix-cli.js';
import { PideployError, tailLines } from '@pideploy/core';

/** One store path's registration in a Nix store (what `nix path-info --json` reports). */
export interface StorePathInfo {
  /** The store path. */
  readonly path: string;
  /** sha256 of its NAR, as Nix printed it (SRI `sha256-…` in Nix 2.8; parse with `parseHash`). */
  readonly narHash: string;
  /** Byte length of its NAR. */
  readonly narSize: number;
  /** Store paths it refers to (may include itself). */
  readonly references: readonly string[];
  /** The derivation that built it, if known. */
  readonly deriver: string | undefined;
  /** When it was registered (seconds since the epoch; 0 if unknown). */
  readonly registrationTime: number;
  /** Signatures (`name:base64`). */
  readonly signatures: readonly string[];
  /** Content address (`fixed:r:sha256:…`) of content-addressed paths. */
  readonly contentAddress: string | undefined;
  /** Whether this store built it itself. */
  readonly ultimate: boolean;
}

/** Options of {@link queryClosurePathInfos}. */
export interface StoreQueryOptions {
  /** Environment variables for nix, merged over this process's environment (`undefined` values remove a variable). */
  readonly env?: Readonly<Record<string, string | undefined>> | undefined;
  /** Cancels the query. */
  readonly signal?: AbortSignal | undefined;
  /** Query another store (`--store URL`), e.g. a chroot store in tests. */
  readonly store?: string | undefined;
}

function asRecord(value: unknown): Record<string, unknown> | undefined {
  return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
}

function pathInfoFrom(path: string, raw: Record<string, unknown>): StorePathInfo {
  const strings = (value: unknown): string[] => (Array.isArray(value) ? value.filter((item): item is string => typeof item === 'string') : []);
  const narHash = raw['narHash'];
  const narSize = raw['narSize'];
  if (typeof narHash !== 'string' || typeof narSize !== 'number') {
    throw new PideployError({
      code: 'PIDEPLOY_STORE_QUERY_FAILED',
      message: `nix path-info gave no narHash/narSize for ${path}`,
      hint: 'the local Nix is too old or printed an unexpected format; report its `nix --version`',
    });
  }
  const deriver = raw['deriver'];
  const contentAddress = raw['ca'];
  const registrationTime = raw['registrationTime'];
  return {
    path,
    narHash,
    narSize,
    references: strings(raw['references']),
    deriver: typeof deriver === 'string' && deriver !== '' ? deriver : undefined,
    registrationTime: typeof registrationTime === 'number' ? registrationTime : 0,
    signatures: strings(raw['signatures']),
    contentAddress: typeof contentAddress === 'string' && contentAddress !== '' ? contentAddress : undefined,
    ultimate: raw['ultimate'] === true,
  };
}

/**
 * Parses `nix path-info --json` output of any Nix version: an array of objects with `path`
 * (Nix ≤ 2.18) or an object keyed by store path (Nix ≥ 2.19, `null` for invalid paths).
 * @throws PideployError `PIDEPLOY_STORE_PATH_NOT_VALID` for a path reported invalid,
 *   `PIDEPLOY_STORE_QUERY_FAILED` for output it cannot read.
 */
export function parsePathInfoJson(text: string): StorePathInfo[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new PideployError({
      code: 'PIDEPLOY_STORE_QUERY_FAILED',
      message: 'nix path-info printed something that is not JSON',
      hint: 'check that `nix path-info --json` works on this machine',
      cause: error,
    });
  }
  const entries: [string, unknown][] = Array.isArray(parsed)
    ? parsed.map((item) => [String(asRecord(item)?.['path'] ?? ''), item])
    : Object.entries(asRecord(parsed) ?? {});
  return entries.map(([path, raw]) => {
    const record = asRecord(raw);
    if (record === undefined || record['valid'] === false) {
      throw new PideployError({
        code: 'PIDEPLOY_STORE_PATH_NOT_VALID',
        message: `${path} is not valid in the local Nix store`,
        hint: 'build it first (pideploy build), or check the path',
      });
    }
    return pathInfoFrom(path, record);
  });
}

/**
 * The closure of `paths` in the local Nix store with each path's info (NAR hash and size,
 * references, deriver, signatures, content address), in one `nix path-info --json --recursive`.
 * Paths may be symlinks to store paths (`./result`). Order is Nix's; sort before sending.
 * @throws PideployError `PIDEPLOY_STORE_PATH_NOT_VALID` when a path is not in the store,
 *   `PIDEPLOY_MISSING_TOOL` without a `nix` command, `PIDEPLOY_STORE_QUERY_FAILED` otherwise.
 */
export async function queryClosurePathInfos(paths: readonly string[], options: StoreQueryOptions = {}): Promise<StorePathInfo[]> {
  return queryPathInfos(paths, true, options);
}

/** A closure query that remembers what it has learnt; see {@link createClosureQuery}. */
export type ClosureQuery = (paths: readonly string[]) => Promise<StorePathInfo[]>;

/**
 * {@link queryClosurePathInfos} for one run that asks for many closures sharing most of their
 * paths (a fleet: each host's bundle around the same system). A store path's info does not
 * change while it is valid, so each is asked once: the first closure in one recursive query,
 * later ones by asking the new paths alone (without `--recursive`: a bundle) and then, with it,
 * only their references not yet known. Queries already running are waited for first, so hosts
 * asking at the same moment share the system's closure. The result has the same paths as
 * {@link queryClosurePathInfos} (its order is not Nix's).
 */
export function createClosureQuery(options: StoreQueryOptions = {}): ClosureQuery {
  /** Paths whose whole closure is in it. */
  const known = new Map<string, StorePathInfo>();
  const running = new Set<Promise<unknown>>();
  const track = <T>(query: Promise<T>): Promise<T> => {
    running.add(query);
    const done = () => running.delete(query);
    query.then(done, done);
    return query;
  };
  const learn = (infos: readonly StorePathInfo[]) => {
    for (const info of infos) known.set(info.path, info);
  };

  /** Learns the closures of `paths` (see above). */
  const learnClosures = async (paths: readonly string[]) => {
    const unknown = [...new Set(paths)].filter((path) => !known.has(path));
    if (unknown.length > 0 && known.size === 0) {
      learn(await track(queryPathInfos(unknown, true, options)));
    } else if (unknown.length > 0) {
      const direct = await track(queryPathInfos(unknown, false, options));
      const asked = new Set(direct.map((info) => info.path));
      const missing = [...new Set(direct.flatMap((info) => info.references))].filter((reference) => !asked.has(reference) && !known.has(reference));
      if (missing.length > 0) learn(await track(queryPathInfos(missing, true, options)));
      learn(direct);
    }
  };
  /**
   * The paths asked for in the same turn of the event loop (a fleet's hosts get their bundles at
   * the same moment), learnt together: one nix process for all of them. Undefined once started.
   */
  let batch: { readonly paths: Set<string>; callers: number; readonly learnt: Promise<void> } | undefined;
  /** Callers of a refused batch asking again alone, in turn. */
  let retries: Promise<void> = Promise.resolve();
  const learnTogether = async (paths: readonly string[]): Promise<void> => {
    if (batch === undefined) {
      const next = { paths: new Set<string>(), callers: 0, learnt: Promise.resolve() };
      next.learnt = new Promise<void>((resolve) => setImmediate(resolve)).then(async () => {
        while (running.size > 0) await Promise.allSettled([...running]);
        if (batch === next) batch = undefined;
        await learnClosures([...next.paths]);
      });
      batch = next;
    }
    const joined = batch;
    for (const path of paths) joined.paths.add(path);
    joined.callers += 1;
    try {
      await joined.learnt;
    } catch (error) {
      // One path Nix refuses fails the whole batch: then each caller asks alone, for its own error.
      if (joined.callers === 1) throw error;
      // One after another: the first to succeed teaches the others the shared closure.
      const alone = retries.then(async () => {
        while (running.size > 0) await Promise.allSettled([...running]);
        await learnClosures(paths);
      });
      retries = alone.catch(() => undefined);
      await alone;
    }
  };

  return async (paths) => {
    await learnTogether(paths);
    let viaLinks: StorePathInfo[] = [];
    // A symlink to a store path (./result) is known under the path it points to: its closure is
    // asked as such (rare; callers hand over store paths).
    const unresolved = paths.filter((path) => !known.has(path));
    if (unresolved.length > 0) {
      viaLinks = await track(queryPathInfos(unresolved, true, options));
      learn(viaLinks);
    }
    const closure = new Map<string, StorePathInfo>();
    const stack = [...paths.filter((path) => known.has(path)).map((path) => known.get(path) as StorePathInfo), ...viaLinks];
    for (let info = stack.pop(); info !== undefined; info = stack.pop()) {
      if (closure.has(info.path)) continue;
      closure.set(info.path, info);
      for (const reference of info.references) {
        if (closure.has(reference)) continue;
        const referenced = known.get(reference);
        // Every path in `known` has its whole closure there; a gap would send an incomplete closure.
        if (referenced === undefined) throw new Error(`closure query: ${info.path} refers to ${reference}, which was never queried`);
        stack.push(referenced);
      }
    }
    return [...closure.values()];
  };
}

async function queryPathInfos(paths: readonly string[], recursive: boolean, options: StoreQueryOptions): Promise<StorePathInfo[]> {
  if (paths.length === 0) return [];
  const argv = [
    'nix',
    '--extra-experimental-features',
    'nix-command',
    'path-info',
    '--json',
    ...(recursive ? ['--recursive'] : []),
    ...(options.store === undefined ? [] : ['--store', options.store]),
    '--',
    ...paths,
  ];
  const result = await runStreamingCommand(argv, { env: options.env, signal: options.signal });
  if (result.exitCode !== 0) {
    const notValid = /path '([^']+)' is not valid|error: (?:getting status of|path) '?([^':]+)'?.*(?:No such file|does not exist)/u.exec(result.stderr);
    if (notValid !== null) {
      throw new PideployError({
        code: 'PIDEPLOY_STORE_PATH_NOT_VALID',
        message: `${notValid[1] ?? notValid[2] ?? paths.join(' ')} is not in the local Nix store`,
        hint: 'build it first (pideploy build), or check the path',
        commandFailure: { command: argv, exitCode: result.exitCode ?? undefined, stderrTail: tailLines(result.stderr) },
      });
    }
    throw new PideployError({
      code: 'PIDEPLOY_STORE_QUERY_FAILED',
      message: `nix path-info failed (exit ${result.exitCode ?? 'signal'}): ${tailLines(result.stderr, 1)}`,
      hint: 'run the command by hand to see why',
      commandFailure: { command: argv, exitCode: result.exitCode ?? undefined, stderrTail: tailLines(result.stderr) },
    });
  }
  return parsePathInfoJson(result.stdout);
}


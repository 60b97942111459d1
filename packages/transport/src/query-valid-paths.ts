import { finishServe, startServeConnection, stateOf } from './copy-closure.js';
import type { RemoteNixOptions, RemoteSpawner } from './remote-serve.js';
import { encodeQueryValidPaths } from './serve-protocol.js';

/** Options of {@link queryValidPaths}. */
export interface QueryValidPathsOptions extends RemoteNixOptions {
  /** Host name for messages. */
  readonly host: string;
  /** Cancels the query. */
  readonly signal?: AbortSignal | undefined;
}

/**
 * Which of `paths` are valid on the host: one read-only `nix-store --serve` (as the login user,
 * no sudo needed) on one channel of the session, the query sent with the hello (one round trip),
 * any number of paths (they go over stdin, not the command line). The same serve connection as a
 * copy's, with `write: false`.
 * @throws PideployError classified like a copy's failures (`PIDEPLOY_REMOTE_NIX_MISSING`, …).
 */
export async function queryValidPaths(session: RemoteSpawner, paths: readonly string[], options: QueryValidPathsOptions): Promise<string[]> {
  if (paths.length === 0) return [];
  const { host, remoteProgram, remoteStore } = options;
  const connection = await startServeConnection({ host, session, remoteProgram, remoteStore, write: false }, options.signal ?? new AbortController().signal);
  const state = stateOf(connection);
  const { remote, reader, watch } = state;
  try {
    remote.stdin.write(encodeQueryValidPaths({ lock: false, substitute: false, paths }));
    await watch.guard(state.greeted);
    watch.phase = 'query';
    const valid = await watch.guard(reader.readStrings('the valid paths'));
    await finishServe(state, host, 'the valid paths');
    return valid;
  } finally {
    connection.close();
  }
}

import { PideployError } from '@pideploy/core';
import { classifyServeFailure, type RemoteNixOptions, type RemoteSpawner } from './remote-serve.js';
import { encodeClientHello, encodeQueryValidPaths, ServeReader, serveProtocolError } from './serve-protocol.js';

/** Options of {@link queryValidPaths}. */
export interface QueryValidPathsOptions extends RemoteNixOptions {
  /** Host name for messages. */
  readonly host: string;
  /** Cancels the query. */
  readonly signal?: AbortSignal | undefined;
}

/**
 * Which of `paths` are valid on the host: one `nix-store --serve` (read-only, as the login user,
 * no sudo needed) on one channel of the session, one round trip, any number of paths (they go
 * over stdin, not the command line).
 * @throws PideployError classified like a copy's failures (`PIDEPLOY_REMOTE_NIX_MISSING`, …).
 */
export async function queryValidPaths(session: RemoteSpawner, paths: readonly string[], options: QueryValidPathsOptions): Promise<string[]> {
  if (paths.length === 0) return [];
  const argv = [options.remoteProgram ?? 'nix-store', '--serve', ...(options.remoteStore === undefined ? [] : ['--store', options.remoteStore])];
  const remote = await session.spawn(argv, { signal: options.signal });
  let stderr = '';
  remote.stderr.on('data', (chunk: Buffer) => {
    stderr = (stderr + chunk.toString('utf8')).slice(-16 * 1024);
  });
  remote.stdin.on('error', () => undefined);
  const failure = async () => {
    const exit = await remote.exit;
    return classifyServeFailure({ host: options.host, phase: 'query', stderr: stderr.trim(), exitCode: exit.exitCode });
  };
  try {
    remote.stdin.write(Buffer.concat([encodeClientHello(), encodeQueryValidPaths({ lock: false, substitute: false, paths })]));
    const reader = new ServeReader(remote.stdout);
    const valid = await (async () => {
      await reader.readServerHello();
      return reader.readStrings('the valid paths');
    })().catch(async (error: unknown) => {
      throw PideployError.isInstance(error) && error.code === 'PIDEPLOY_SERVE_PROTOCOL' ? error : await failure();
    });
    remote.stdin.end();
    const trailing = await reader.readToEnd();
    if (trailing.length > 0) throw serveProtocolError(`${options.host} sent ${trailing.length} unexpected bytes after the valid paths`);
    const exit = await remote.exit;
    if (exit.exitCode !== 0) throw await failure();
    return valid;
  } catch (error) {
    remote.kill('KILL');
    throw error;
  }
}

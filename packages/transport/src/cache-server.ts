import { randomBytes } from 'node:crypto';
import { realpathSync } from 'node:fs';
import { open, realpath } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { PideployError } from '@pideploy/core';
import { cacheContentType, cacheFileForRequest } from './binary-cache-plan.js';

/** One request a {@link BinaryCacheServer} answered. */
export interface CacheRequest {
  /** `GET` or `HEAD` (anything else is answered 405). */
  readonly method: string;
  /** The request path (without the query). */
  readonly path: string;
  /** The HTTP status sent. */
  readonly status: number;
  /** Body bytes sent (0 for HEAD and errors). */
  readonly bytes: number;
}

/** Options of {@link serveBinaryCache}. */
export interface ServeBinaryCacheOptions {
  /** The binary cache directory (what `pushToBinaryCache` wrote). */
  readonly directory: string;
  /**
   * Address to listen on (default `127.0.0.1`: reachable only from this machine, and from hosts
   * through the SSH tunnel of `substituteFromCache`). Give a LAN address for hosts that fetch directly.
   */
  readonly host?: string | undefined;
  /** Port to listen on (default 0: a free port, see `url`). */
  readonly port?: number | undefined;
  /**
   * The path the cache is served under (default: a random one per server, e.g. `/c-1f2e…`).
   * Nix remembers narinfos per cache URL for a month (`narinfo-cache-positive-ttl`), so a URL
   * that is new for every server keeps hosts from trusting what an earlier server said about a
   * cache that was since re-pushed, re-signed or wiped. `''` serves at the root.
   */
  readonly pathPrefix?: string | undefined;
  /** Called after each answered request (for logs; the server also keeps counters). */
  readonly onRequest?: ((request: CacheRequest) => void) | undefined;
}

/** A running binary-cache HTTP server. */
export interface BinaryCacheServer extends AsyncDisposable {
  /** `http://<host>:<port><pathPrefix>`: the cache URL for Nix (`substituters`). */
  readonly url: string;
  /** The address it listens on. */
  readonly host: string;
  /** The port it listens on. */
  readonly port: number;
  /** Requests answered so far. */
  readonly requests: number;
  /** Body bytes sent so far (narinfos, NARs, nix-cache-info). */
  readonly bytesServed: number;
  /** Stops listening and drops open connections; idempotent. */
  close(): Promise<void>;
  /** Same as {@link BinaryCacheServer.close}, for `await using`. */
  [Symbol.asyncDispose](): Promise<void>;
}

/**
 * Serves a binary cache directory over HTTP the way Nix reads one (`GET`/`HEAD` of
 * `<prefix>/nix-cache-info`, `<prefix>/<hash>.narinfo`, `<prefix>/nar/<file>`; 404 for everything
 * else and for missing files). Only regular files inside the directory are served: request paths are matched against
 * what a cache contains, never joined blindly, and symlinks out of it are refused. Nothing is
 * signed or checked here: the hosts' Nix checks the signatures.
 * @throws PideployError `PIDEPLOY_CACHE_SERVER_FAILED` when it cannot listen (address in use …),
 *   `PIDEPLOY_USAGE` when the directory does not exist.
 */
export async function serveBinaryCache(options: ServeBinaryCacheOptions): Promise<BinaryCacheServer> {
  let root: string;
  try {
    root = realpathSync(options.directory);
  } catch (error) {
    throw new PideployError({
      code: 'PIDEPLOY_USAGE',
      message: `the binary cache directory ${options.directory} does not exist`,
      hint: 'push to it first (pushToBinaryCache)',
      cause: error,
    });
  }
  const host = options.host ?? '127.0.0.1';
  const prefix = options.pathPrefix ?? `/c-${randomBytes(8).toString('hex')}`;
  if (prefix !== '' && !/^(?:\/[A-Za-z0-9._-]+)+$/u.test(prefix)) {
    throw new PideployError({ code: 'PIDEPLOY_USAGE', message: `"${prefix}" cannot prefix a cache URL`, hint: "use '' or /name segments of letters, digits and . _ -" });
  }
  let requests = 0;
  let bytesServed = 0;

  const server = http.createServer((request, response) => {
    const requestPath = (request.url ?? '/').split('?')[0] as string;
    const answered = (status: number, bytes: number) => {
      requests += 1;
      bytesServed += bytes;
      options.onRequest?.({ method: request.method ?? '', path: requestPath, status, bytes });
    };
    const fail = (status: number, text: string, headers: Record<string, string> = {}) => {
      response.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(text), ...headers });
      response.end(request.method === 'HEAD' ? undefined : text);
      answered(status, 0);
    };
    if (request.method !== 'GET' && request.method !== 'HEAD') return fail(405, 'method not allowed\n', { allow: 'GET, HEAD' });
    const file = requestPath.startsWith(`${prefix}/`) ? cacheFileForRequest(requestPath.slice(prefix.length)) : undefined;
    if (file === undefined) return fail(404, 'not found\n');
    void sendFile(root, file).then(
      async (opened) => {
        if (opened === undefined) return fail(404, 'not found\n');
        const { handle, size } = opened;
        response.writeHead(200, { 'content-type': cacheContentType(file), 'content-length': size });
        if (request.method === 'HEAD') {
          await handle.close();
          response.end();
          return answered(200, 0);
        }
        let sent = 0;
        const stream = handle.createReadStream();
        stream.on('data', (chunk) => {
          sent += chunk.length;
        });
        stream.pipe(response);
        response.on('close', () => {
          stream.destroy();
          answered(200, sent);
        });
      },
      () => fail(500, 'cannot read the file\n'),
    ).catch(() => response.destroy());
  });
  server.keepAliveTimeout = 30_000;

  await new Promise<void>((resolve, reject) => {
    server.once('error', (error: NodeJS.ErrnoException) =>
      reject(
        new PideployError({
          code: 'PIDEPLOY_CACHE_SERVER_FAILED',
          message: `cannot serve the binary cache on ${host}:${options.port ?? 0}: ${error.code ?? error.message}`,
          hint: error.code === 'EADDRINUSE' ? 'pick another port, or 0 for a free one' : 'check the address: it must belong to this machine',
          cause: error,
        }),
      ),
    );
    server.listen(options.port ?? 0, host, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closing ??= new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
    return closing;
  };
  return {
    url: `http://${host.includes(':') ? `[${host}]` : host}:${port}${prefix}`,
    host,
    port,
    get requests() {
      return requests;
    },
    get bytesServed() {
      return bytesServed;
    },
    close,
    [Symbol.asyncDispose]: close,
  };
}

/** Opens `file` under `root` if it is a regular file that really lies inside `root`; undefined otherwise. */
async function sendFile(root: string, file: string): Promise<{ handle: Awaited<ReturnType<typeof open>>; size: number } | undefined> {
  let real: string;
  try {
    real = await realpath(path.join(root, file));
  } catch {
    return undefined;
  }
  if (!real.startsWith(`${root}${path.sep}`)) return undefined;
  const handle = await open(real, 'r');
  const stat = await handle.stat();
  if (!stat.isFile()) {
    await handle.close();
    return undefined;
  }
  return { handle, size: stat.size };
}

import { appendFileSync, mkdirSync, readFileSync, realpathSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { STATUS_CODES, createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { PideployError } from '@pideploy/core';
import { takeFault, type FaultRule } from './faults.js';
import {
  ensureTarball,
  findRepository,
  readCommit,
  readDefaultBranch,
  readRefs,
  resolveCommit,
  type GitCommitInfo,
  type PublishedRepository,
} from './repository.js';
import { authorizationScheme, isApiRoute, routeRequest, tarballTopDirectory, type ArchiveServerRoute } from './routes.js';

/**
 * A loopback HTTP server standing in for GitHub: the REST API endpoints the pin stage uses,
 * `archive/*.tar.gz` downloads (redirected to a codeload-style path, as GitHub does), and git's
 * dumb HTTP protocol, all served from the bare repositories under `<root>/git/<owner>/<repo>.git`.
 */

/** Options of {@link startArchiveServer}. */
export interface ArchiveServerOptions {
  /**
   * The server's directory: repositories in `git/<owner>/<repo>.git`; the server writes
   * `requests.log`, `cache/` (generated tarballs) and `faults-state.json`, and reads `faults.json`.
   */
  readonly root: string;
  /** A loopback address to listen on (default `127.0.0.1`); anything else is refused. */
  readonly host?: string | undefined;
  /** TCP port (default 0: any free port). */
  readonly port?: number | undefined;
  /** Receives one human-readable line per request and per problem (default: discarded). */
  readonly log?: ((line: string) => void) | undefined;
}

/** A running archive server. */
export interface ArchiveServer {
  /** `http://<host>:<port>`, no trailing slash: the base of API, archive and git URLs. */
  readonly url: string;
  /** The address it listens on. */
  readonly host: string;
  /** The port it listens on (the one chosen when asked for 0). */
  readonly port: number;
  /** The request log (one JSON {@link ArchiveRequestLogEntry} per line). */
  readonly requestLog: string;
  /** Stops listening and cuts open connections (stalled ones included). */
  close(): Promise<void>;
}

/** One line of `<root>/requests.log`. */
export interface ArchiveRequestLogEntry {
  /** ISO 8601 time the answer was sent. */
  readonly time: string;
  /** HTTP method. */
  readonly method: string;
  /** The request target as received (path and query). */
  readonly path: string;
  /** The status sent (0 when the client went away before an answer). */
  readonly status: number;
  /** Body bytes sent. */
  readonly bytes: number;
  /** Whether an `Authorization: Bearer …` or `token …` header came with it (the credential is never recorded). */
  readonly authorized: boolean;
  /** The route kind (`api-commit`, `tarball`, `git-file`, …). */
  readonly route: ArchiveServerRoute['kind'];
  /** Index of the faults.json rule that shaped the answer, if one did. */
  readonly fault?: number | undefined;
}

/** True for the addresses this server may listen on: 127.0.0.0/8, ::1 and `localhost`. */
export function isLoopbackHost(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127(?:\.(?:25[0-5]|2[0-4]\d|1?\d?\d)){3}$/u.test(host);
}

/** The request log's path inside a server root. */
export function requestLogPath(root: string): string {
  return path.join(root, 'requests.log');
}

/** Parses a request log's text (pure); malformed lines are skipped. */
export function parseRequestLog(text: string): ArchiveRequestLogEntry[] {
  return text
    .split('\n')
    .filter((line) => line.trim() !== '')
    .flatMap((line) => {
      try {
        return [JSON.parse(line) as ArchiveRequestLogEntry];
      } catch {
        return [];
      }
    });
}

/** Reads `<root>/requests.log`; empty when there is none yet. */
export function readRequestLog(root: string): ArchiveRequestLogEntry[] {
  try {
    return parseRequestLog(readFileSync(requestLogPath(root), 'utf8'));
  } catch {
    return [];
  }
}

/** An answer before it is sent. */
interface Reply {
  readonly status: number;
  readonly headers: Record<string, string>;
  readonly body: Buffer;
}

const JSON_TYPE = 'application/json; charset=utf-8';
const DOCS = {
  notFound: 'https://docs.github.com/rest',
  commit: 'https://docs.github.com/rest/commits/commits#get-a-commit',
  branch: 'https://docs.github.com/rest/branches/branches#get-a-branch',
} as const;

function jsonReply(status: number, value: unknown, headers: Record<string, string> = {}): Reply {
  return { status, headers: { 'content-type': JSON_TYPE, ...headers }, body: Buffer.from(`${JSON.stringify(value, null, 2)}\n`) };
}

function textReply(status: number, text: string, contentType = 'text/plain; charset=utf-8'): Reply {
  return { status, headers: { 'content-type': contentType }, body: Buffer.from(text) };
}

function githubError(status: number, message: string, documentationUrl: string = DOCS.notFound): Reply {
  return jsonReply(status, { message, documentation_url: documentationUrl });
}

/** The answer a replacing fault rule gives (pure). */
function faultReply(rule: FaultRule): Reply {
  const status = rule.status ?? 200;
  const body = rule.body ?? JSON.stringify({ message: STATUS_CODES[status] ?? 'Error' });
  return { status, headers: { 'content-type': rule.body === undefined ? JSON_TYPE : 'text/plain; charset=utf-8', ...lowerCaseKeys(rule.headers ?? {}) }, body: Buffer.from(body) };
}

function lowerCaseKeys(headers: Readonly<Record<string, string>>): Record<string, string> {
  return Object.fromEntries(Object.entries(headers).map(([name, value]) => [name.toLowerCase(), value]));
}

const GIT_FILE_TYPES: readonly (readonly [RegExp, string])[] = [
  [/^objects\/pack\/.*\.pack$/u, 'application/x-git-packed-objects'],
  [/^objects\/pack\/.*\.idx$/u, 'application/x-git-packed-objects-toc'],
  [/^objects\/[0-9a-f]{2}\//u, 'application/x-git-loose-object'],
];

/**
 * Starts the server and resolves once it listens. Bare repositories can be added or recreated
 * under `<root>/git` while it runs: refs are read on every request.
 */
export async function startArchiveServer(options: ArchiveServerOptions): Promise<ArchiveServer> {
  const host = options.host ?? '127.0.0.1';
  if (!isLoopbackHost(host)) {
    throw new PideployError({
      code: 'PIDEPLOY_USAGE',
      message: `the archive server listens on loopback addresses only, not ${host}`,
      hint: 'use --host 127.0.0.1',
    });
  }
  const root = path.resolve(options.root);
  mkdirSync(root, { recursive: true });
  const realRoot = realpathSync(root);
  const gitRoot = path.join(root, 'git');
  const cacheDir = path.join(root, 'cache');
  const logFile = requestLogPath(root);
  const log = options.log ?? (() => undefined);
  const pendingDelays = new Set<AbortController>();
  const rateLimit = { windowStart: Date.now(), used: { anonymous: 0, authorized: 0 } };
  let baseUrl = '';

  const rateLimitHeaders = (authorized: boolean): Record<string, string> => {
    const now = Date.now();
    if (now - rateLimit.windowStart >= 3_600_000) {
      rateLimit.windowStart = now;
      rateLimit.used = { anonymous: 0, authorized: 0 };
    }
    const kind = authorized ? 'authorized' : 'anonymous';
    const limit = authorized ? 5000 : 60;
    rateLimit.used[kind] += 1;
    // The server never limits by itself (faults.json does that): remaining stays at least 1.
    const used = Math.min(rateLimit.used[kind], limit - 1);
    return {
      'x-ratelimit-limit': String(limit),
      'x-ratelimit-remaining': String(limit - used),
      'x-ratelimit-used': String(used),
      'x-ratelimit-reset': String(Math.floor(rateLimit.windowStart / 1000) + 3600),
      'x-ratelimit-resource': 'core',
    };
  };

  const commitJson = (repository: PublishedRepository, commit: GitCommitInfo): unknown => {
    const apiBase = `${baseUrl}/repos/${repository.owner}/${repository.repo}`;
    return {
      sha: commit.sha,
      url: `${apiBase}/commits/${commit.sha}`,
      html_url: `${baseUrl}/${repository.owner}/${repository.repo}/commit/${commit.sha}`,
      commit: {
        author: commit.author,
        committer: commit.committer,
        message: commit.message,
        tree: { sha: commit.tree, url: `${apiBase}/git/trees/${commit.tree}` },
      },
      parents: commit.parents.map((sha) => ({ sha, url: `${apiBase}/commits/${sha}` })),
    };
  };

  const answer = async (route: ArchiveServerRoute): Promise<Reply> => {
    if (route.kind === 'refused') {
      return route.api ? githubError(route.status, route.status === 404 ? 'Not Found' : route.message) : textReply(route.status, `${route.message}\n`);
    }
    const repository = findRepository(gitRoot, route.owner, route.repo);
    const isApi = isApiRoute(route);
    if (repository === undefined) return isApi ? githubError(404, 'Not Found') : textReply(404, 'Not Found\n');
    switch (route.kind) {
      case 'api-repository': {
        const defaultBranch = readDefaultBranch(repository) ?? 'main';
        return jsonReply(200, {
          name: repository.repo,
          full_name: `${repository.owner}/${repository.repo}`,
          owner: { login: repository.owner, type: 'Organization' },
          private: false,
          fork: false,
          archived: false,
          html_url: `${baseUrl}/${repository.owner}/${repository.repo}`,
          url: `${baseUrl}/repos/${repository.owner}/${repository.repo}`,
          default_branch: defaultBranch,
        });
      }
      case 'api-commit': {
        const resolved = await resolveCommit(repository, route.ref);
        if (resolved === undefined) return githubError(422, `No commit found for SHA: ${route.ref}`, DOCS.commit);
        if (route.shaOnly) return textReply(200, resolved.sha);
        return jsonReply(200, commitJson(repository, await readCommit(repository, resolved.sha)));
      }
      case 'api-branch': {
        const sha = (await readRefs(repository)).branches.get(route.branch);
        if (sha === undefined) return githubError(404, 'Branch not found', DOCS.branch);
        return jsonReply(200, { name: route.branch, commit: commitJson(repository, await readCommit(repository, sha)), protected: false });
      }
      case 'redirect': {
        const resolved = await resolveCommit(repository, route.ref);
        if (resolved === undefined) return isApi ? githubError(404, 'Not Found') : textReply(404, 'Not Found\n');
        // Absolute, like GitHub's redirect to https://codeload.github.com/…; always this server's own loopback address.
        return { status: 302, headers: { location: `${baseUrl}${route.location}`, 'content-type': 'text/html; charset=utf-8' }, body: Buffer.alloc(0) };
      }
      case 'tarball': {
        const resolved = await resolveCommit(repository, route.ref);
        if (resolved === undefined) return textReply(404, 'Not Found\n');
        const prefix = tarballTopDirectory({ owner: repository.owner, repo: repository.repo, ref: route.ref, sha: resolved.sha, refKind: resolved.refKind, naming: route.naming });
        const file = await ensureTarball(repository, resolved.sha, prefix, cacheDir);
        return {
          status: 200,
          headers: {
            'content-type': 'application/x-gzip',
            'content-disposition': `attachment; filename=${prefix}.tar.gz`,
            etag: `"${path.basename(file, '.tar.gz')}"`,
          },
          body: await readFile(file),
        };
      }
      case 'git-file': {
        const file = path.join(repository.gitDir, route.file);
        let realFile: string;
        try {
          realFile = realpathSync(file);
        } catch {
          return textReply(404, 'Not Found\n');
        }
        if (!realFile.startsWith(`${realRoot}${path.sep}`)) return textReply(404, 'Not Found\n');
        const type = GIT_FILE_TYPES.find(([pattern]) => pattern.test(route.file))?.[1] ?? 'text/plain; charset=utf-8';
        return { status: 200, headers: { 'content-type': type, 'cache-control': 'no-cache' }, body: await readFile(realFile) };
      }
    }
  };

  const writeLogEntry = (entry: ArchiveRequestLogEntry): void => {
    try {
      appendFileSync(logFile, `${JSON.stringify(entry)}\n`);
    } catch (error) {
      log(`could not write ${logFile}: ${(error as Error).message}`);
    }
    log(`${entry.method} ${entry.path} ${entry.status} ${entry.bytes}${entry.fault === undefined ? '' : ` (fault ${entry.fault})`}`);
  };

  const handle = async (request: IncomingMessage, response: ServerResponse): Promise<void> => {
    const method = request.method ?? 'GET';
    const target = request.url ?? '/';
    const authorized = authorizationScheme(request.headers) !== undefined;
    const route = routeRequest(method, target, request.headers);
    const fault = takeFault(root, method, target);
    const rule = fault.kind === 'fault' ? fault.rule : undefined;
    let reply: Reply;
    if (fault.kind === 'invalid') {
      log(fault.message);
      reply = textReply(500, `${fault.message}\n`);
    } else if (rule !== undefined && (rule.status !== undefined || rule.body !== undefined)) {
      reply = faultReply(rule);
    } else {
      try {
        reply = await answer(route);
      } catch (error) {
        log(`${method} ${target} failed: ${(error as Error).message}`);
        reply = textReply(500, 'Internal Server Error\n');
      }
      if (rule?.headers !== undefined) reply = { ...reply, headers: { ...reply.headers, ...lowerCaseKeys(rule.headers) } };
    }
    if (isApiRoute(route)) {
      reply = { ...reply, headers: { ...rateLimitHeaders(authorized), ...reply.headers } };
    }
    const entry = (status: number, bytes: number): ArchiveRequestLogEntry => ({
      time: new Date().toISOString(),
      method,
      path: target,
      status,
      bytes,
      authorized,
      route: route.kind,
      ...(fault.kind === 'fault' ? { fault: fault.index } : {}),
    });

    if (rule?.delayMs !== undefined && rule.delayMs > 0) {
      const delay = new AbortController();
      pendingDelays.add(delay);
      try {
        await sleep(rule.delayMs, undefined, { signal: delay.signal });
      } catch {
        // the server is closing
      } finally {
        pendingDelays.delete(delay);
      }
      if (delay.signal.aborted || response.destroyed || request.socket.destroyed) {
        writeLogEntry(entry(0, 0));
        response.destroy();
        return;
      }
    }

    const sendsBody = method !== 'HEAD';
    const truncateAt = rule?.truncateAfterBytes;
    const bodyBytes = sendsBody ? reply.body : Buffer.alloc(0);
    response.writeHead(reply.status, { server: 'pideploy-lab-archive', ...reply.headers, 'content-length': String(reply.body.length) });
    if (sendsBody && truncateAt !== undefined && truncateAt < reply.body.length) {
      const partial = reply.body.subarray(0, truncateAt);
      writeLogEntry(entry(reply.status, partial.length));
      response.write(partial, () => {
        // Close the connection short of Content-Length: the client sees a truncated body.
        response.socket?.destroy();
      });
      return;
    }
    writeLogEntry(entry(reply.status, bodyBytes.length));
    response.end(bodyBytes);
  };

  const server = createServer((request, response) => {
    handle(request, response).catch((error: unknown) => {
      log(`request handling failed: ${(error as Error).message}`);
      if (!response.headersSent) response.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' });
      response.end();
    });
  });
  server.keepAliveTimeout = 5000;

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  const urlHost = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  baseUrl = `http://${urlHost}:${address.port}`;
  server.on('error', (error) => log(`server error: ${error.message}`));

  let closing: Promise<void> | undefined;
  return {
    url: baseUrl,
    host: address.address,
    port: address.port,
    requestLog: logFile,
    close: () => {
      closing ??= new Promise<void>((resolve) => {
        for (const delay of pendingDelays) delay.abort();
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return closing;
    },
  };
}

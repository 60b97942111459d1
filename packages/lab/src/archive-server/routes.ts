import type { IncomingHttpHeaders } from 'node:http';

/**
 * Request routing of the archive server (pure): which GitHub endpoint a request stands for, or
 * why it is refused. The server only ever touches files that a route names, so every path
 * check lives here and is unit-tested without a server.
 */

/** How the top-level directory of a served tarball is named. */
export type TarballNaming =
  /** `github.com/O/R/archive/REF.tar.gz`: `<repo>-<ref as requested>` (tags lose a leading `v` before a digit). */
  | 'archive'
  /** `api.github.com/repos/O/R/tarball/REF`: `<owner>-<repo>-<7-hex sha>`. */
  | 'legacy';

/** What a request asks for. Every `owner`/`repo` is a plain name (no `/`, `.` or `..`). */
export type ArchiveServerRoute =
  /** `GET /repos/:owner/:repo`. */
  | { readonly kind: 'api-repository'; readonly owner: string; readonly repo: string }
  /** `GET /repos/:owner/:repo/commits/:ref`; `shaOnly` when `Accept: application/vnd.github.sha`. */
  | { readonly kind: 'api-commit'; readonly owner: string; readonly repo: string; readonly ref: string; readonly shaOnly: boolean }
  /** `GET /repos/:owner/:repo/branches/:branch`. */
  | { readonly kind: 'api-branch'; readonly owner: string; readonly repo: string; readonly branch: string }
  /** `/:owner/:repo/archive/:ref.tar.gz` or `/repos/:owner/:repo/tarball/:ref`: 302 to `location`, a codeload path on this server (the server makes it absolute). */
  | { readonly kind: 'redirect'; readonly owner: string; readonly repo: string; readonly ref: string; readonly location: string; readonly api: boolean }
  /** `/codeload/:owner/:repo/tar.gz/:ref` (archive naming) or `/codeload/:owner/:repo/legacy.tar.gz/:ref` (legacy naming). */
  | { readonly kind: 'tarball'; readonly owner: string; readonly repo: string; readonly ref: string; readonly naming: TarballNaming }
  /** A file of git's dumb HTTP protocol, `file` relative to the bare repository (allow-listed names only). */
  | { readonly kind: 'git-file'; readonly owner: string; readonly repo: string; readonly file: string }
  /** Refused or unknown: answer `status` with `message` (as GitHub's JSON error when `api`). */
  | { readonly kind: 'refused'; readonly status: 400 | 404 | 405; readonly message: string; readonly api: boolean };

/** The codeload-style path an archive URL redirects to (each ref component URL-encoded). */
export function codeloadPath(owner: string, repo: string, naming: TarballNaming, ref: string): string {
  const format = naming === 'legacy' ? 'legacy.tar.gz' : 'tar.gz';
  return `/codeload/${encodeURIComponent(owner)}/${encodeURIComponent(repo)}/${format}/${ref.split('/').map(encodeURIComponent).join('/')}`;
}

/** Files of a bare repository that git's dumb HTTP protocol reads; nothing else is served. */
const GIT_DUMB_FILE = /^(?:HEAD|packed-refs|info\/refs|objects\/info\/packs|objects\/[0-9a-f]{2}\/[0-9a-f]{38}|objects\/pack\/pack-[0-9a-f]{40}\.(?:pack|idx))$/u;

/** A GitHub owner or repository name as this server accepts it. */
const PLAIN_NAME = /^[A-Za-z0-9_][A-Za-z0-9_.-]*$/u;

/**
 * Splits a request target into decoded path segments (query dropped). Returns a refusal for
 * anything that could climb out of a directory: `.`/`..` segments (raw or percent-encoded),
 * backslashes, NUL, bad percent-encoding, or a target that is not an absolute path.
 */
export function splitRequestPath(target: string): { readonly segments: readonly string[] } | { readonly refusal: string } {
  const pathPart = target.split(/[?#]/u, 1)[0] ?? '';
  if (!pathPart.startsWith('/')) return { refusal: 'the request target is not an absolute path' };
  const segments: string[] = [];
  const rawSegments = pathPart.slice(1).split('/');
  for (const [index, raw] of rawSegments.entries()) {
    let segment: string;
    try {
      segment = decodeURIComponent(raw);
    } catch {
      return { refusal: 'the path has invalid percent-encoding' };
    }
    if (segment === '.' || segment === '..' || segment.split('/').some((part) => part === '.' || part === '..')) {
      return { refusal: 'the path contains a "." or ".." segment' };
    }
    if (segment.includes('\\') || segment.includes('\0')) return { refusal: 'the path contains a backslash or NUL' };
    if (segment === '' && index !== rawSegments.length - 1) return { refusal: 'the path contains an empty segment' };
    if (segment !== '') segments.push(segment);
  }
  return { segments };
}

/** True when `ref` may name a branch, tag, `refs/heads/…`, `refs/tags/…` or (abbreviated) SHA. */
export function isPlausibleRef(ref: string): boolean {
  if (ref === '' || ref.startsWith('-') || ref.startsWith('/') || ref.endsWith('/') || ref.endsWith('.')) return false;
  if (ref.includes('..') || ref.includes('//') || ref.includes('@{')) return false;
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u0020\u007f~^:?*[\\]/u.test(ref)) return false;
  return ref.split('/').every((component) => !component.startsWith('.') && !component.endsWith('.lock'));
}

/** True when the request's Accept header asks for GitHub's bare-SHA media type. */
export function acceptsShaMediaType(headers: IncomingHttpHeaders): boolean {
  const accept = headers['accept'];
  const values = Array.isArray(accept) ? accept : [accept ?? ''];
  return values.some((value) => /application\/vnd\.github(?:\.v3)?\.sha\b/iu.test(value));
}

/** The credential scheme of an `Authorization` header (`bearer` or `token`), without ever returning the secret. */
export function authorizationScheme(headers: IncomingHttpHeaders): 'bearer' | 'token' | undefined {
  const value = headers['authorization'];
  if (typeof value !== 'string') return undefined;
  const match = /^(bearer|token)\s+\S/iu.exec(value.trim());
  return match === null ? undefined : (match[1]?.toLowerCase() as 'bearer' | 'token');
}

/** True for routes GitHub serves from api.github.com: JSON errors and rate-limit headers. */
export function isApiRoute(route: ArchiveServerRoute): boolean {
  return route.kind.startsWith('api-') || ((route.kind === 'redirect' || route.kind === 'refused') && route.api);
}

/**
 * Routes a request (pure). `target` is the raw request target (`req.url`: path and query).
 * Unknown API paths are refused as GitHub's API does (404 JSON); methods other than GET and
 * HEAD get 405.
 */
export function routeRequest(method: string, target: string, headers: IncomingHttpHeaders): ArchiveServerRoute {
  const split = splitRequestPath(target);
  const api = target.startsWith('/repos/');
  if ('refusal' in split) return { kind: 'refused', status: 400, message: split.refusal, api };
  if (method !== 'GET' && method !== 'HEAD') return { kind: 'refused', status: 405, message: `method ${method} is not allowed`, api };
  const { segments } = split;
  const notFound: ArchiveServerRoute = { kind: 'refused', status: 404, message: 'Not Found', api };
  const [first, second, third, fourth, ...rest] = segments;
  if (first === undefined || second === undefined) return notFound;

  if (first === 'repos') {
    const owner = second;
    const repo = third;
    if (repo === undefined || !PLAIN_NAME.test(owner) || !PLAIN_NAME.test(repo)) return notFound;
    if (fourth === undefined) return { kind: 'api-repository', owner, repo };
    const ref = rest.join('/');
    if (!isPlausibleRef(ref)) return notFound;
    if (fourth === 'commits') return { kind: 'api-commit', owner, repo, ref, shaOnly: acceptsShaMediaType(headers) };
    if (fourth === 'branches') return { kind: 'api-branch', owner, repo, branch: ref };
    if (fourth === 'tarball') return { kind: 'redirect', owner, repo, ref, location: codeloadPath(owner, repo, 'legacy', ref), api: true };
    return notFound;
  }

  if (first === 'codeload') {
    const owner = second;
    const repo = third;
    const ref = rest.join('/');
    if (repo === undefined || !PLAIN_NAME.test(owner) || !PLAIN_NAME.test(repo) || !isPlausibleRef(ref)) return notFound;
    if (fourth === 'tar.gz') return { kind: 'tarball', owner, repo, ref, naming: 'archive' };
    if (fourth === 'legacy.tar.gz') return { kind: 'tarball', owner, repo, ref, naming: 'legacy' };
    return notFound;
  }

  const owner = first;
  if (!PLAIN_NAME.test(owner)) return notFound;
  if (second.endsWith('.git')) {
    const repo = second.slice(0, -'.git'.length);
    const file = [third, fourth, ...rest].filter((segment) => segment !== undefined).join('/');
    if (!PLAIN_NAME.test(repo) || !GIT_DUMB_FILE.test(file)) return notFound;
    return { kind: 'git-file', owner, repo, file };
  }
  const repo = second;
  if (!PLAIN_NAME.test(repo) || third !== 'archive' || fourth === undefined) return notFound;
  const archiveName = [fourth, ...rest].join('/');
  if (!archiveName.endsWith('.tar.gz')) return notFound;
  const ref = archiveName.slice(0, -'.tar.gz'.length);
  if (!isPlausibleRef(ref)) return notFound;
  return { kind: 'redirect', owner, repo, ref, location: codeloadPath(owner, repo, 'archive', ref), api: false };
}

/** How a requested ref resolved, as far as archive naming cares. */
export type ResolvedRefKind = 'branch' | 'tag' | 'commit';

/**
 * The single top-level directory of a tarball, as GitHub names it (pure): archive naming gives
 * `<repo>-<ref>` with `refs/heads/`/`refs/tags/` dropped, `/` turned into `-`, and a tag's
 * leading `v` before a digit removed (`v1.2` → `repo-1.2`); a full SHA gives `<repo>-<sha>`.
 * Legacy naming gives `<owner>-<repo>-<first 7 hex of the sha>`.
 */
export function tarballTopDirectory(request: {
  readonly owner: string;
  readonly repo: string;
  readonly ref: string;
  readonly sha: string;
  readonly refKind: ResolvedRefKind;
  readonly naming: TarballNaming;
}): string {
  if (request.naming === 'legacy') return `${request.owner}-${request.repo}-${request.sha.slice(0, 7)}`;
  let name = request.ref.replace(/^refs\/(?:heads|tags)\//u, '');
  if (request.refKind === 'tag' && /^v\d/u.test(name)) name = name.slice(1);
  return `${request.repo}-${name.replaceAll('/', '-')}`;
}

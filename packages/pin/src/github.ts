import { usageError } from './errors.js';

/*
 * Pure GitHub planning: names, refs, URLs, the argv of `git ls-remote` and the reading of its
 * output. Nothing here does I/O; resolve.ts and download.ts are the thin shells around it.
 */

/** The public GitHub API base used when `PIDEPLOY_GITHUB_API` is not set. */
export const DEFAULT_GITHUB_API = 'https://api.github.com';

/** The public GitHub web base (archives, git) used when `PIDEPLOY_GITHUB_ARCHIVE` is not set. */
export const DEFAULT_GITHUB_ARCHIVE = 'https://github.com';

/** A GitHub repository, `owner/repo`. */
export interface GithubRepository {
  /** The user or organisation, e.g. `NixOS`. */
  readonly owner: string;
  /** The repository name, e.g. `nixpkgs`. */
  readonly repo: string;
}

/** What a GitHub pin follows: a branch, a tag, or a fixed commit. */
export type GithubRef =
  | { readonly kind: 'branch'; readonly name: string }
  | { readonly kind: 'tag'; readonly name: string }
  | {
      /** A commit: 40 hex digits, or an abbreviation of at least 7 (resolved through the API). */
      readonly kind: 'rev';
      readonly rev: string;
    };

const GITHUB_NAME = /^[A-Za-z0-9_.-]+$/u;

/**
 * Parses `OWNER/REPO` (GitHub's own name rules: letters, digits, `-`, `_`, `.`; not `.`/`..`).
 * @throws PideployError `PIDEPLOY_USAGE`.
 */
export function parseGithubRepository(text: string): GithubRepository {
  const parts = text.split('/');
  const [owner, repo] = parts;
  const valid = (name: string | undefined): name is string => name !== undefined && GITHUB_NAME.test(name) && name !== '.' && name !== '..';
  if (parts.length !== 2 || !valid(owner) || !valid(repo) || repo.endsWith('.git')) {
    throw usageError(`"${text}" is not a GitHub repository (OWNER/REPO)`, 'give it as --github NixOS/nixpkgs');
  }
  return { owner, repo };
}

/**
 * Why `name` cannot be a branch or tag name (git's `check-ref-format` rules, which also keep it
 * from looking like an option or escaping a URL), or undefined when it is fine.
 */
export function invalidRefNameReason(name: string): string | undefined {
  if (name === '') return 'it is empty';
  if (name.startsWith('-')) return 'it starts with "-"';
  if (name.startsWith('/') || name.endsWith('/') || name.includes('//')) return 'it has an empty path component';
  if (name.endsWith('.') || name.endsWith('.lock')) return 'it ends with "." or ".lock"';
  if (name.includes('..') || name.includes('@{') || name === '@') return 'it contains "..", "@{" or is "@"';
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u0020\u007f~^:?*[\\]/u.test(name)) return 'it contains a space, a control character or one of ~ ^ : ? * [ \\';
  if (name.split('/').some((component) => component.startsWith('.'))) return 'a component starts with "."';
  return undefined;
}

/**
 * Checks a ref for a GitHub pin (branch/tag names by git's rules, revs as 7–40 hex digits).
 * Revs are returned in lower case.
 * @throws PideployError `PIDEPLOY_USAGE`.
 */
export function validateGithubRef(ref: GithubRef): GithubRef {
  if (ref.kind === 'rev') {
    if (!/^[0-9a-fA-F]{7,40}$/u.test(ref.rev)) {
      throw usageError(`"${ref.rev}" is not a commit (7 to 40 hex digits)`, 'give the full 40-hex commit SHA, e.g. --rev 0123456789abcdef0123456789abcdef01234567');
    }
    return { kind: 'rev', rev: ref.rev.toLowerCase() };
  }
  const reason = invalidRefNameReason(ref.name);
  if (reason !== undefined) throw usageError(`"${ref.name}" is not a valid ${ref.kind} name: ${reason}`, `check the ${ref.kind} name`);
  return ref;
}

/** True for a full 40-hex (lower-case) commit SHA. */
export function isFullRev(text: string): boolean {
  return /^[0-9a-f]{40}$/u.test(text);
}

/** `branch nixos-24.05`, `tag 1.0`, `rev 0123abc…`: how messages name a ref. */
export function describeRef(ref: GithubRef): string {
  return ref.kind === 'rev' ? `commit ${ref.rev}` : `${ref.kind} ${ref.name}`;
}

/** The full ref name git uses (`refs/heads/B`, `refs/tags/T`), or the rev itself. */
export function fullRefName(ref: GithubRef): string {
  if (ref.kind === 'branch') return `refs/heads/${ref.name}`;
  if (ref.kind === 'tag') return `refs/tags/${ref.name}`;
  return ref.rev;
}

/**
 * A base URL from the environment: no trailing slash, http(s) only.
 * @throws PideployError `PIDEPLOY_USAGE` when it is not an http(s) URL.
 */
export function normaliseBaseUrl(value: string, variable: string): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw usageError(`${variable}="${value}" is not a URL`, `set ${variable} to an http(s) base URL, e.g. https://api.github.com`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw usageError(`${variable}="${value}" is not an http(s) URL`, `set ${variable} to an http(s) base URL`);
  }
  if (url.username !== '' || url.password !== '') {
    throw usageError(`${variable} must not contain credentials`, 'pass a token with GITHUB_TOKEN instead');
  }
  return value.replace(/\/+$/u, '');
}

/** Where pideploy talks to GitHub. */
export interface GithubEndpoints {
  /** REST API base, e.g. `https://api.github.com`. */
  readonly apiBase: string;
  /** Web base for archives and git, e.g. `https://github.com`. */
  readonly archiveBase: string;
}

/** The API and archive bases from `PIDEPLOY_GITHUB_API` / `PIDEPLOY_GITHUB_ARCHIVE` (or GitHub's). */
export function githubEndpointsFromEnv(env: Readonly<Record<string, string | undefined>>): GithubEndpoints {
  const api = env['PIDEPLOY_GITHUB_API'];
  const archive = env['PIDEPLOY_GITHUB_ARCHIVE'];
  return {
    apiBase: api === undefined || api === '' ? DEFAULT_GITHUB_API : normaliseBaseUrl(api, 'PIDEPLOY_GITHUB_API'),
    archiveBase: archive === undefined || archive === '' ? DEFAULT_GITHUB_ARCHIVE : normaliseBaseUrl(archive, 'PIDEPLOY_GITHUB_ARCHIVE'),
  };
}

function encodeRefPath(ref: string): string {
  return ref.split('/').map(encodeURIComponent).join('/');
}

/**
 * `GET /repos/O/R/commits/<ref>` (with `Accept: application/vnd.github.sha` the body is the bare
 * SHA). Branches and tags are given as `refs/heads/B` / `refs/tags/T`, so that a tag and a
 * branch of the same name are never confused.
 */
export function githubCommitApiUrl(apiBase: string, repository: GithubRepository, ref: GithubRef): string {
  return `${apiBase}/repos/${encodeURIComponent(repository.owner)}/${encodeURIComponent(repository.repo)}/commits/${encodeRefPath(fullRefName(ref))}`;
}

/** `GET /repos/O/R`: tells "no such repository" from "no such branch" after a 404. */
export function githubRepositoryApiUrl(apiBase: string, repository: GithubRepository): string {
  return `${apiBase}/repos/${encodeURIComponent(repository.owner)}/${encodeURIComponent(repository.repo)}`;
}

/** `<archiveBase>/O/R/archive/<rev>.tar.gz`: the tarball `builtins.fetchTarball` downloads for a commit. */
export function githubArchiveUrl(archiveBase: string, repository: GithubRepository, rev: string): string {
  return `${archiveBase}/${encodeURIComponent(repository.owner)}/${encodeURIComponent(repository.repo)}/archive/${rev}.tar.gz`;
}

/** `<archiveBase>/O/R.git`: the git remote `git ls-remote` asks when the API fails. */
export function githubGitUrl(archiveBase: string, repository: GithubRepository): string {
  return `${archiveBase}/${encodeURIComponent(repository.owner)}/${encodeURIComponent(repository.repo)}.git`;
}

/** Request headers for the GitHub API; `Authorization: Bearer <token>` only when a token is given. */
export function githubApiHeaders(token: string | undefined): Record<string, string> {
  return {
    accept: 'application/vnd.github.sha',
    'user-agent': 'pideploy',
    'x-github-api-version': '2022-11-28',
    ...(token === undefined || token === '' ? {} : { authorization: `Bearer ${token}` }),
  };
}

/**
 * The argv of the `git ls-remote` fallback for a branch or tag. Branches use `--refs` (no peeled
 * lines); tags ask for both `refs/tags/T` and the peeled `refs/tags/T^{}` line, which carries the
 * commit of an annotated tag. Patterns are full ref names, matched exactly afterwards by
 * {@link parseLsRemoteOutput} (ls-remote itself matches suffixes).
 */
export function lsRemoteArgv(gitUrl: string, ref: Exclude<GithubRef, { kind: 'rev' }>): string[] {
  if (ref.kind === 'branch') return ['git', 'ls-remote', '--refs', gitUrl, `refs/heads/${ref.name}`];
  return ['git', 'ls-remote', gitUrl, `refs/tags/${ref.name}`, `refs/tags/${ref.name}^{}`];
}

/**
 * The commit a branch or tag points at, from `git ls-remote` output (`<sha>\t<ref>` lines): the
 * line whose ref is exactly `refs/heads/B`, or for a tag the peeled `refs/tags/T^{}` line when
 * there is one (annotated tag) and else `refs/tags/T` (lightweight tag). Undefined when absent.
 */
export function parseLsRemoteOutput(output: string, ref: Exclude<GithubRef, { kind: 'rev' }>): string | undefined {
  const refs = new Map<string, string>();
  for (const line of output.split('\n')) {
    const tab = line.indexOf('\t');
    if (tab < 0) continue;
    const sha = line.slice(0, tab).trim().toLowerCase();
    if (isFullRev(sha)) refs.set(line.slice(tab + 1).trim(), sha);
  }
  const name = fullRefName(ref);
  return ref.kind === 'tag' ? (refs.get(`${name}^{}`) ?? refs.get(name)) : refs.get(name);
}

/** How a GitHub API answer to a commit lookup is to be read (pure). */
export type GithubApiOutcome =
  | { readonly kind: 'ok'; readonly rev: string }
  | { readonly kind: 'not-found' }
  | { readonly kind: 'rate-limited'; readonly resetEpochSeconds: number | undefined }
  | { readonly kind: 'transient'; readonly reason: string }
  | { readonly kind: 'failed'; readonly reason: string };

/**
 * Classifies the API's answer to `GET /repos/O/R/commits/<ref>` (pure): 200 with a SHA body → ok;
 * 404 and 422 ("No commit found for SHA") → not found; 403/429 with `x-ratelimit-remaining: 0`
 * (or a "rate limit" message) → rate limited; 5xx, 408, 429 → transient; anything else → failed.
 */
export function classifyGithubApiResponse(status: number, headers: { get(name: string): string | null }, body: string): GithubApiOutcome {
  if (status === 200) {
    const rev = body.trim().toLowerCase();
    return isFullRev(rev) ? { kind: 'ok', rev } : { kind: 'failed', reason: 'the API answered 200 without a commit SHA' };
  }
  if (status === 404 || status === 422) return { kind: 'not-found' };
  const remaining = headers.get('x-ratelimit-remaining');
  if ((status === 403 || status === 429) && (remaining === '0' || /rate limit/iu.test(body))) {
    const reset = Number(headers.get('x-ratelimit-reset'));
    return { kind: 'rate-limited', resetEpochSeconds: Number.isFinite(reset) && reset > 0 ? reset : undefined };
  }
  const message = githubMessage(body);
  if (isTransientHttpStatusForApi(status)) return { kind: 'transient', reason: `HTTP ${status}${message ? ` (${message})` : ''}` };
  return { kind: 'failed', reason: `HTTP ${status}${message ? ` (${message})` : ''}` };
}

function isTransientHttpStatusForApi(status: number): boolean {
  return status === 408 || status === 429 || (status >= 500 && status !== 501 && status !== 505);
}

function githubMessage(body: string): string | undefined {
  try {
    const value = JSON.parse(body) as { message?: unknown };
    return typeof value.message === 'string' ? value.message.split('\n')[0]?.slice(0, 200) : undefined;
  } catch {
    return undefined;
  }
}

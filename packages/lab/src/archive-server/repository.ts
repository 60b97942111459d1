import { spawn } from 'node:child_process';
import { createWriteStream, existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { mkdir, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import { createHash } from 'node:crypto';
import { PideployError } from '@pideploy/core';
import { FIXTURE_GIT_CONFIG } from '../git-repo.js';
import { runCommandAllowingFailure } from '../run.js';
import type { ResolvedRefKind } from './routes.js';

/**
 * Read-only access to the bare repositories the archive server publishes
 * (`<root>/git/<owner>/<repo>.git`): refs, commits and `git archive` tarballs. Parsers are pure.
 */

/** The branches and tags of a repository. */
export interface RefTable {
  /** Branch name → commit SHA. */
  readonly branches: ReadonlyMap<string, string>;
  /** Tag name → commit SHA (annotated tags peeled). */
  readonly tags: ReadonlyMap<string, string>;
}

/** Parses `git for-each-ref --format='%(refname) %(objectname) %(*objectname)'` output (pure). */
export function parseRefListing(listing: string): RefTable {
  const branches = new Map<string, string>();
  const tags = new Map<string, string>();
  for (const line of listing.split('\n')) {
    const [refname, objectName, peeledName] = line.trim().split(' ');
    if (refname === undefined || objectName === undefined || refname === '') continue;
    const sha = peeledName !== undefined && peeledName !== '' ? peeledName : objectName;
    if (refname.startsWith('refs/heads/')) branches.set(refname.slice('refs/heads/'.length), sha);
    else if (refname.startsWith('refs/tags/')) tags.set(refname.slice('refs/tags/'.length), sha);
  }
  return { branches, tags };
}

/** What a requested ref names before any object lookup. */
export type RefResolution =
  | { readonly kind: 'branch' | 'tag'; readonly name: string; readonly sha: string }
  /** A hex string that may be a (possibly abbreviated) commit SHA: look it up in the object store. */
  | { readonly kind: 'sha-prefix'; readonly prefix: string }
  | { readonly kind: 'unknown' };

/**
 * Resolves a ref as GitHub's URLs accept it (pure): `refs/heads/X`, `refs/tags/X`, a branch
 * name, a tag name (branches win when both exist), else a hex string of 4–40 digits as a SHA.
 * A full 40-hex SHA is always looked up as a SHA, as git does.
 */
export function resolveRefName(ref: string, refs: RefTable): RefResolution {
  const hex = /^[0-9a-fA-F]{4,40}$/u.test(ref) ? ref.toLowerCase() : undefined;
  if (hex !== undefined && hex.length === 40) return { kind: 'sha-prefix', prefix: hex };
  const lookup = (kind: 'branch' | 'tag', name: string): RefResolution | undefined => {
    const sha = (kind === 'branch' ? refs.branches : refs.tags).get(name);
    return sha === undefined ? undefined : { kind, name, sha };
  };
  if (ref.startsWith('refs/heads/')) return lookup('branch', ref.slice('refs/heads/'.length)) ?? { kind: 'unknown' };
  if (ref.startsWith('refs/tags/')) return lookup('tag', ref.slice('refs/tags/'.length)) ?? { kind: 'unknown' };
  return lookup('branch', ref) ?? lookup('tag', ref) ?? (hex === undefined ? { kind: 'unknown' } : { kind: 'sha-prefix', prefix: hex });
}

/** A person line of a commit. */
export interface GitSignature {
  /** Author or committer name. */
  readonly name: string;
  /** Author or committer email. */
  readonly email: string;
  /** ISO 8601 in UTC without milliseconds, as GitHub prints it (`2024-01-01T00:00:00Z`). */
  readonly date: string;
}

/** A parsed commit object. */
export interface GitCommitInfo {
  /** The commit's SHA. */
  readonly sha: string;
  /** Its tree's SHA. */
  readonly tree: string;
  /** Parent commit SHAs, in order. */
  readonly parents: readonly string[];
  /** Who wrote it, when. */
  readonly author: GitSignature;
  /** Who committed it, when (GitHub's `commit.committer.date`). */
  readonly committer: GitSignature;
  /** The message without its final newline. */
  readonly message: string;
}

/** Parses the raw text of a commit object (`git cat-file commit SHA`) (pure). */
export function parseCommitObject(sha: string, raw: string): GitCommitInfo {
  const headerEnd = raw.indexOf('\n\n');
  const header = headerEnd === -1 ? raw : raw.slice(0, headerEnd);
  const message = headerEnd === -1 ? '' : raw.slice(headerEnd + 2).replace(/\n$/u, '');
  let tree = '';
  const parents: string[] = [];
  let author: GitSignature | undefined;
  let committer: GitSignature | undefined;
  for (const line of header.split('\n')) {
    const space = line.indexOf(' ');
    const key = line.slice(0, space);
    const value = line.slice(space + 1);
    if (key === 'tree') tree = value;
    else if (key === 'parent') parents.push(value);
    else if (key === 'author') author = parseSignature(value);
    else if (key === 'committer') committer = parseSignature(value);
  }
  if (tree === '' || author === undefined || committer === undefined) throw new Error(`commit ${sha} could not be parsed`);
  return { sha, tree, parents, author, committer, message };
}

function parseSignature(value: string): GitSignature {
  const match = /^(.*) <([^>]*)> (\d+) [+-]\d{4}$/u.exec(value);
  if (match === null) throw new Error(`unparsable signature: ${value}`);
  const date = new Date(Number(match[3]) * 1000).toISOString().replace(/\.\d{3}Z$/u, 'Z');
  return { name: match[1] ?? '', email: match[2] ?? '', date };
}

/** Environment of every git command the server runs: no system or global config, no prompts. */
const SERVER_GIT_ENV: Readonly<Record<string, string>> = { GIT_CONFIG_NOSYSTEM: '1', GIT_CONFIG_GLOBAL: '/dev/null', GIT_TERMINAL_PROMPT: '0' };

function gitArgv(gitDir: string, subcommand: readonly string[]): string[] {
  return ['git', ...FIXTURE_GIT_CONFIG.flatMap((setting) => ['-c', setting]), `--git-dir=${gitDir}`, ...subcommand];
}

async function git(gitDir: string, subcommand: readonly string[]): Promise<{ stdout: string; exitCode: number }> {
  return runCommandAllowingFailure(gitArgv(gitDir, subcommand), { env: SERVER_GIT_ENV, timeoutMs: 60_000 });
}

/** A published repository, found under `<root>/git`. */
export interface PublishedRepository {
  /** The owner as stored on disk (GitHub matches owner and repo case-insensitively). */
  readonly owner: string;
  /** The repository name as stored on disk, without `.git`. */
  readonly repo: string;
  /** The bare repository's directory. */
  readonly gitDir: string;
}

/**
 * Finds `<gitRoot>/<owner>/<repo>.git`, matching owner and repo case-insensitively as GitHub
 * does. `owner` and `repo` must already be plain names (the router guarantees it).
 */
export function findRepository(gitRoot: string, owner: string, repo: string): PublishedRepository | undefined {
  const ownerName = matchEntry(gitRoot, owner);
  if (ownerName === undefined) return undefined;
  const repoEntry = matchEntry(path.join(gitRoot, ownerName), `${repo}.git`);
  if (repoEntry === undefined) return undefined;
  const gitDir = path.join(gitRoot, ownerName, repoEntry);
  if (!existsSync(path.join(gitDir, 'HEAD'))) return undefined;
  return { owner: ownerName, repo: repoEntry.slice(0, -'.git'.length), gitDir };
}

function matchEntry(directory: string, name: string): string | undefined {
  try {
    if (statSync(path.join(directory, name)).isDirectory()) return name;
  } catch {
    // try case-insensitively below
  }
  try {
    const lower = name.toLowerCase();
    return readdirSync(directory, { withFileTypes: true }).find((entry) => entry.isDirectory() && entry.name.toLowerCase() === lower)?.name;
  } catch {
    return undefined;
  }
}

/** The branches and tags of a repository, read fresh (the repository may have been recreated). */
export async function readRefs(repository: PublishedRepository): Promise<RefTable> {
  const result = await git(repository.gitDir, ['for-each-ref', '--format=%(refname) %(objectname) %(*objectname)', 'refs/heads', 'refs/tags']);
  if (result.exitCode !== 0) throw new Error(`git for-each-ref failed in ${repository.gitDir}`);
  return parseRefListing(result.stdout);
}

/** The branch HEAD points at, or undefined when HEAD is detached or unreadable. */
export function readDefaultBranch(repository: PublishedRepository): string | undefined {
  try {
    const head = readFileSync(path.join(repository.gitDir, 'HEAD'), 'utf8').trim();
    return head.startsWith('ref: refs/heads/') ? head.slice('ref: refs/heads/'.length) : undefined;
  } catch {
    return undefined;
  }
}

/** A ref resolved to a commit. */
export interface ResolvedCommit {
  /** The commit's full SHA. */
  readonly sha: string;
  /** Whether the ref named a branch, a tag or a commit (GitHub names tag archives differently). */
  readonly refKind: ResolvedRefKind;
}

/** Resolves a ref to a commit of the repository, or undefined when there is none. */
export async function resolveCommit(repository: PublishedRepository, ref: string): Promise<ResolvedCommit | undefined> {
  const resolution = resolveRefName(ref, await readRefs(repository));
  if (resolution.kind === 'unknown') return undefined;
  if (resolution.kind !== 'sha-prefix') return { sha: resolution.sha, refKind: resolution.kind };
  // The prefix is validated hex (it cannot look like an option).
  const result = await git(repository.gitDir, ['rev-parse', '--verify', '--quiet', `${resolution.prefix}^{commit}`]);
  const sha = result.stdout.trim();
  return result.exitCode === 0 && /^[0-9a-f]{40}$/u.test(sha) ? { sha, refKind: 'commit' } : undefined;
}

/** Reads and parses a commit. */
export async function readCommit(repository: PublishedRepository, sha: string): Promise<GitCommitInfo> {
  const result = await git(repository.gitDir, ['cat-file', 'commit', sha]);
  if (result.exitCode !== 0) throw new Error(`git cat-file commit ${sha} failed in ${repository.gitDir}`);
  return parseCommitObject(sha, result.stdout);
}

/** The cache file name of a tarball of `sha` with top-level directory `prefix` (pure). */
export function tarballCacheName(sha: string, prefix: string): string {
  const prefixDigest = createHash('sha256').update(prefix).digest('hex').slice(0, 16);
  return `${sha}-${prefixDigest}.tar.gz`;
}

const tarballsInProgress = new Map<string, Promise<string>>();

/**
 * The path of a cached `git archive --format=tar --prefix=<prefix>/ <sha> | gzip` tarball,
 * generating it on first use. Cached files are never rewritten, so a URL's bytes never change.
 */
export async function ensureTarball(repository: PublishedRepository, sha: string, prefix: string, cacheDir: string): Promise<string> {
  const file = path.join(cacheDir, tarballCacheName(sha, prefix));
  if (existsSync(file)) return file;
  const pending = tarballsInProgress.get(file);
  if (pending !== undefined) return pending;
  const work = generateTarball(repository, sha, prefix, file).finally(() => tarballsInProgress.delete(file));
  tarballsInProgress.set(file, work);
  return work;
}

async function generateTarball(repository: PublishedRepository, sha: string, prefix: string, file: string): Promise<string> {
  await mkdir(path.dirname(file), { recursive: true });
  const partial = `${file}.partial-${process.pid}`;
  const child = spawn('git', gitArgv(repository.gitDir, ['archive', '--format=tar', `--prefix=${prefix}/`, sha]).slice(1), {
    env: { ...process.env, ...SERVER_GIT_ENV },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const exited = new Promise<number | null>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', resolve);
  });
  try {
    // level 9 and no name/mtime in the gzip header (zlib writes none), like `gzip -n -9`.
    await pipeline(child.stdout, createGzip({ level: 9 }), createWriteStream(partial));
    const exitCode = await exited;
    if (exitCode !== 0) {
      throw new PideployError({
        code: 'PIDEPLOY_COMMAND_FAILED',
        message: `git archive of ${sha} failed in ${repository.gitDir} (exit ${exitCode}): ${stderr.trim()}`,
      });
    }
    await rename(partial, file);
    return file;
  } catch (error) {
    child.kill();
    await rm(partial, { force: true });
    throw error;
  }
}

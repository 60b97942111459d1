import { existsSync, statSync } from 'node:fs';
import { rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { PideployError } from '@pideploy/core';
import { runCommand } from './run.js';

/**
 * Deterministic bare git repositories for the lab and tests: the same trees, messages and refs
 * always give the same commit SHAs, whoever runs it and whatever their git config says.
 */

/** The author and committer of every fixture commit (and the tagger of every fixture tag). */
export const FIXTURE_GIT_IDENTITY = { name: 'pideploy lab', email: 'lab@pideploy.invalid' } as const;

/** The date of the first fixture commit; commit N is dated N hours later. */
export const FIXTURE_FIRST_COMMIT_EPOCH_SECONDS = 1_704_067_200; // 2024-01-01T00:00:00Z

/** The branch HEAD points at when {@link CreateFixtureRepositoryOptions.defaultBranch} is not given. */
export const DEFAULT_FIXTURE_BRANCH = 'main';

/** One commit of a fixture repository. */
export interface FixtureCommitInput {
  /** A directory whose contents (recursively, nothing ignored) become the commit's tree. Empty directories are dropped, as git does. */
  readonly tree: string;
  /** The commit message. */
  readonly message: string;
  /** Branches (short names, e.g. `nixos-24.05`) that point at this commit. A branch may be listed on one commit only. */
  readonly branches?: readonly string[] | undefined;
  /** Tags (short names) created on this commit, as annotated tags whose message is the tag name. */
  readonly tags?: readonly string[] | undefined;
}

/** Options of {@link createFixtureRepository}. */
export interface CreateFixtureRepositoryOptions {
  /** Where the bare repository goes (conventionally `…/<repo>.git`). Replaced if it already holds a bare repository; any other existing content is refused. */
  readonly gitDir: string;
  /** The commits, oldest first; each is the child of the one before. At least one. */
  readonly commits: readonly FixtureCommitInput[];
  /** The branch HEAD points at (default {@link DEFAULT_FIXTURE_BRANCH}). When no commit lists it, it is created on the last commit. */
  readonly defaultBranch?: string | undefined;
}

/** One commit as created. */
export interface FixtureCommit {
  /** The commit's 40-hex SHA-1. */
  readonly sha: string;
  /** The message as given. */
  readonly message: string;
  /** Branches pointing at it (including the default branch when it was added implicitly). */
  readonly branches: readonly string[];
  /** Tags pointing at it. */
  readonly tags: readonly string[];
}

/** What {@link createFixtureRepository} made. */
export interface FixtureRepository {
  /** The bare repository's directory. */
  readonly gitDir: string;
  /** The commits, in the order given. */
  readonly commits: readonly FixtureCommit[];
  /** The branch HEAD points at. */
  readonly defaultBranch: string;
  /** Branch name → commit SHA. */
  readonly branches: Readonly<Record<string, string>>;
  /** Tag name → the commit SHA it points at (peeled; what `refs/tags/X^{}` shows). */
  readonly tags: Readonly<Record<string, string>>;
  /** Tag name → the SHA of the annotated tag object itself (what `git ls-remote --refs` shows for the tag). */
  readonly tagObjects: Readonly<Record<string, string>>;
}

/** Which commit (by index) each ref points at: the validated plan of a fixture repository's refs. */
export interface FixtureRefPlan {
  /** The branch HEAD points at. */
  readonly defaultBranch: string;
  /** Branch name → index into the commits. */
  readonly branches: ReadonlyMap<string, number>;
  /** Tag name → index into the commits. */
  readonly tags: ReadonlyMap<string, number>;
}

/**
 * Why `name` is not a valid short branch or tag name, or undefined when it is. Follows the
 * rules of `git check-ref-format` (and refuses a leading `-`, so names never look like options).
 */
export function invalidRefNameReason(name: string): string | undefined {
  if (name === '') return 'it is empty';
  if (name.startsWith('-')) return 'it starts with "-"';
  if (name === '@') return 'it is "@"';
  if (name.includes('..')) return 'it contains ".."';
  if (name.includes('@{')) return 'it contains "@{"';
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u0020\u007f~^:?*[\\]/u.test(name)) return 'it contains a space, a control character or one of ~^:?*[\\';
  if (name.endsWith('.') || name.endsWith('/')) return 'it ends with "." or "/"';
  for (const component of name.split('/')) {
    if (component === '') return 'it has an empty path component';
    if (component.startsWith('.')) return 'a path component starts with "."';
    if (component.endsWith('.lock')) return 'a path component ends with ".lock"';
  }
  return undefined;
}

/**
 * Checks the refs of a fixture repository and says which commit each points at (pure).
 * Throws a PideployError for an empty commit list, invalid names, or a branch or tag listed twice.
 */
export function planFixtureRefs(
  commits: readonly Pick<FixtureCommitInput, 'branches' | 'tags'>[],
  defaultBranch: string = DEFAULT_FIXTURE_BRANCH,
): FixtureRefPlan {
  if (commits.length === 0) throw usageError('a fixture repository needs at least one commit');
  const branches = new Map<string, number>();
  const tags = new Map<string, number>();
  const add = (kind: 'branch' | 'tag', table: Map<string, number>, name: string, index: number): void => {
    const reason = invalidRefNameReason(name);
    if (reason !== undefined) throw usageError(`invalid ${kind} name "${name}": ${reason}`);
    const previous = table.get(name);
    if (previous !== undefined) {
      throw usageError(`${kind} "${name}" is listed on commits ${previous} and ${index}; a ${kind} points at one commit`);
    }
    table.set(name, index);
  };
  commits.forEach((commit, index) => {
    for (const branch of commit.branches ?? []) add('branch', branches, branch, index);
    for (const tag of commit.tags ?? []) add('tag', tags, tag, index);
  });
  const reason = invalidRefNameReason(defaultBranch);
  if (reason !== undefined) throw usageError(`invalid default branch name "${defaultBranch}": ${reason}`);
  if (!branches.has(defaultBranch)) branches.set(defaultBranch, commits.length - 1);
  return { defaultBranch, branches, tags };
}

/**
 * Environment for fixture git commands: no system or global config, fixed identity and the
 * date of commit `commitIndex`, no prompts.
 */
export function fixtureGitEnvironment(commitIndex: number): Record<string, string> {
  const date = new Date((FIXTURE_FIRST_COMMIT_EPOCH_SECONDS + commitIndex * 3600) * 1000).toISOString().replace('.000Z', '+00:00');
  return {
    GIT_CONFIG_NOSYSTEM: '1',
    GIT_CONFIG_GLOBAL: '/dev/null',
    GIT_TERMINAL_PROMPT: '0',
    GIT_AUTHOR_NAME: FIXTURE_GIT_IDENTITY.name,
    GIT_AUTHOR_EMAIL: FIXTURE_GIT_IDENTITY.email,
    GIT_AUTHOR_DATE: date,
    GIT_COMMITTER_NAME: FIXTURE_GIT_IDENTITY.name,
    GIT_COMMITTER_EMAIL: FIXTURE_GIT_IDENTITY.email,
    GIT_COMMITTER_DATE: date,
  };
}

/** `git -c …` settings that make fixture commands independent of whatever config is around. */
export const FIXTURE_GIT_CONFIG: readonly string[] = [
  `user.name=${FIXTURE_GIT_IDENTITY.name}`,
  `user.email=${FIXTURE_GIT_IDENTITY.email}`,
  'core.autocrlf=false',
  'core.safecrlf=false',
  'core.fileMode=true',
  'core.symlinks=true',
  'core.excludesFile=/dev/null',
  'core.hooksPath=/dev/null',
  'core.bigFileThreshold=512m',
  'gc.auto=0',
  'commit.gpgSign=false',
  'tag.gpgSign=false',
  'init.defaultBranch=main',
  'safe.directory=*',
];

/** argv of `git <subcommand…>` against the bare repository `gitDir`, with {@link FIXTURE_GIT_CONFIG}. */
export function fixtureGitArgv(gitDir: string, subcommand: readonly string[]): string[] {
  return ['git', ...FIXTURE_GIT_CONFIG.flatMap((setting) => ['-c', setting]), `--git-dir=${gitDir}`, ...subcommand];
}

/**
 * Creates the bare repository `gitDir` with one commit per entry of `commits` (each the child of
 * the previous), branches and annotated tags as listed, HEAD on the default branch, and the
 * files git's dumb HTTP protocol needs (`git update-server-info`). Author, committer, tagger
 * and dates are fixed, so identical input gives identical SHAs. Calling it again replaces the
 * repository (built next to it, then swapped in).
 */
export async function createFixtureRepository(options: CreateFixtureRepositoryOptions): Promise<FixtureRepository> {
  const gitDir = path.resolve(options.gitDir);
  const plan = planFixtureRefs(options.commits, options.defaultBranch ?? DEFAULT_FIXTURE_BRANCH);
  for (const commit of options.commits) {
    if (!isDirectory(commit.tree)) throw usageError(`the tree of fixture commit "${commit.message}" is not a directory: ${commit.tree}`);
  }
  if (existsSync(gitDir) && !looksLikeBareRepository(gitDir)) {
    throw new PideployError({
      code: 'PIDEPLOY_USAGE',
      message: `${gitDir} exists and is not a bare git repository; refusing to replace it`,
      hint: 'pass a gitDir that does not exist yet or that an earlier createFixtureRepository made',
    });
  }

  const buildDir = `${gitDir}.building-${process.pid}`;
  await rm(buildDir, { recursive: true, force: true });
  const git = async (subcommand: readonly string[], commitIndex: number, extraEnv: Record<string, string> = {}): Promise<string> => {
    const result = await runCommand(fixtureGitArgv(buildDir, subcommand), {
      env: { ...fixtureGitEnvironment(commitIndex), ...extraEnv },
      failureMessage: `git ${subcommand[0] ?? ''} failed while creating the fixture repository ${gitDir}`,
    });
    return result.stdout.trim();
  };

  try {
    await runCommand(['git', ...FIXTURE_GIT_CONFIG.flatMap((setting) => ['-c', setting]), 'init', '--quiet', '--bare', `--initial-branch=${plan.defaultBranch}`, buildDir], {
      env: fixtureGitEnvironment(0),
    });
    const indexFile = path.join(buildDir, 'fixture-index');
    const shas: string[] = [];
    for (const [index, commit] of options.commits.entries()) {
      await rm(indexFile, { force: true });
      const indexEnv = { GIT_INDEX_FILE: indexFile };
      await git([`--work-tree=${path.resolve(commit.tree)}`, 'add', '--all', '--force', '--', '.'], index, indexEnv);
      const treeSha = await git(['write-tree'], index, indexEnv);
      const parent = shas[shas.length - 1];
      const sha = await git(['commit-tree', ...(parent === undefined ? [] : ['-p', parent]), '-m', commit.message, treeSha], index);
      shas.push(sha);
    }
    await rm(indexFile, { force: true });

    const branches: Record<string, string> = {};
    for (const [branch, index] of plan.branches) {
      const sha = shas[index] as string;
      await git(['update-ref', `refs/heads/${branch}`, sha], index);
      branches[branch] = sha;
    }
    const tags: Record<string, string> = {};
    const tagObjects: Record<string, string> = {};
    for (const [tag, index] of plan.tags) {
      const sha = shas[index] as string;
      await git(['tag', '--annotate', '--message', tag, tag, sha], index);
      tags[tag] = sha;
      tagObjects[tag] = await git(['rev-parse', '--verify', `refs/tags/${tag}`], index);
    }
    await git(['symbolic-ref', 'HEAD', `refs/heads/${plan.defaultBranch}`], 0);
    await git(['update-server-info'], 0);

    // Swap the new repository in; a server reading the old one sees either the old or the new.
    const retiredDir = `${gitDir}.retired-${process.pid}`;
    await rm(retiredDir, { recursive: true, force: true });
    if (existsSync(gitDir)) await rename(gitDir, retiredDir);
    await rename(buildDir, gitDir);
    await rm(retiredDir, { recursive: true, force: true });

    const refsOf = (table: ReadonlyMap<string, number>, index: number): string[] =>
      [...table].filter(([, commitIndex]) => commitIndex === index).map(([name]) => name);
    return {
      gitDir,
      commits: options.commits.map((commit, index) => ({
        sha: shas[index] as string,
        message: commit.message,
        branches: refsOf(plan.branches, index),
        tags: refsOf(plan.tags, index),
      })),
      defaultBranch: plan.defaultBranch,
      branches,
      tags,
      tagObjects,
    };
  } catch (error) {
    await rm(buildDir, { recursive: true, force: true });
    throw error;
  }
}

function looksLikeBareRepository(directory: string): boolean {
  return isDirectory(directory) && existsSync(path.join(directory, 'HEAD')) && isDirectory(path.join(directory, 'objects')) && isDirectory(path.join(directory, 'refs'));
}

function isDirectory(file: string): boolean {
  try {
    return statSync(file).isDirectory();
  } catch {
    return false;
  }
}

function usageError(message: string): PideployError {
  return new PideployError({ code: 'PIDEPLOY_USAGE', message });
}

import { existsSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createFixtureRepository, type FixtureCommitInput } from './git-repo.js';
import { runCommand } from './run.js';
import { describeLab } from './testing/index.js';

const gitEnv = { GIT_CONFIG_NOSYSTEM: '1', GIT_CONFIG_GLOBAL: '/dev/null' };

async function git(gitDir: string, ...args: string[]): Promise<string> {
  return (await runCommand(['git', `--git-dir=${gitDir}`, ...args], { env: gitEnv })).stdout.trim();
}

describeLab('createFixtureRepository (real git)', () => {
  let workDir = '';
  let commits: FixtureCommitInput[] = [];

  beforeAll(async () => {
    workDir = await mkdtemp(path.join(tmpdir(), 'pideploy-git-repo-'));
    commits = [];
    for (const [index, version] of ['1', '2', '3'].entries()) {
      const tree = path.join(workDir, `tree-${version}`);
      await mkdir(path.join(tree, 'lib'), { recursive: true });
      await writeFile(path.join(tree, 'default.nix'), `{ }: { version = "${version}"; }\n`);
      await writeFile(path.join(tree, 'lib', 'run.sh'), '#!/bin/sh\necho hi\n');
      await chmod(path.join(tree, 'lib', 'run.sh'), 0o755);
      await symlink('default.nix', path.join(tree, 'link.nix'));
      // Ignored by a .gitignore, but fixtures take every file.
      await writeFile(path.join(tree, '.gitignore'), '*.log\n');
      await writeFile(path.join(tree, 'kept.log'), 'kept\n');
      commits.push({
        tree,
        message: `fixture ${version}`,
        branches: [['nixos-24.05'], ['nixos-unstable'], ['master']][index],
        tags: [['24.05'], ['v2.0'], []][index],
      });
    }
  });
  afterAll(async () => {
    await rm(workDir, { recursive: true, force: true });
  });

  it('creates a bare repository with a commit chain, refs, annotated tags, HEAD and dumb-HTTP info', async () => {
    const gitDir = path.join(workDir, 'a', 'fakepkgs.git');
    const repository = await createFixtureRepository({ gitDir, commits, defaultBranch: 'master' });
    expect(repository.commits.map((commit) => commit.message)).toEqual(['fixture 1', 'fixture 2', 'fixture 3']);
    const [first, second, third] = repository.commits.map((commit) => commit.sha);
    expect(repository.branches).toEqual({ 'nixos-24.05': first, 'nixos-unstable': second, master: third });
    expect(repository.tags).toEqual({ '24.05': first, 'v2.0': second });
    expect(repository.commits[1]).toEqual({ sha: second, message: 'fixture 2', branches: ['nixos-unstable'], tags: ['v2.0'] });
    expect(await git(gitDir, 'rev-parse', '--is-bare-repository')).toBe('true');
    expect(await git(gitDir, 'rev-list', 'master')).toBe([third, second, first].join('\n'));
    expect(await git(gitDir, 'symbolic-ref', 'HEAD')).toBe('refs/heads/master');
    expect(await git(gitDir, 'cat-file', '-t', 'refs/tags/24.05')).toBe('tag');
    expect(await git(gitDir, 'rev-parse', 'refs/tags/24.05')).toBe(repository.tagObjects['24.05']);
    expect(await git(gitDir, 'log', '-1', '--format=%an <%ae> %aI %cI', 'nixos-24.05')).toBe(
      'pideploy lab <lab@pideploy.invalid> 2024-01-01T00:00:00+00:00 2024-01-01T00:00:00+00:00',
    );
    expect(await git(gitDir, 'ls-tree', '-r', '--format=%(objectmode) %(path)', 'master')).toBe(
      ['100644 .gitignore', '100644 default.nix', '100644 kept.log', '100755 lib/run.sh', '120000 link.nix'].join('\n'),
    );
    const infoRefs = await readFile(path.join(gitDir, 'info', 'refs'), 'utf8');
    expect(infoRefs).toContain(`${first}\trefs/tags/24.05^{}`);
    expect(infoRefs).toContain(`${third}\trefs/heads/master`);
    expect(existsSync(path.join(gitDir, 'fixture-index'))).toBe(false);
  });

  it('gives the same SHAs for the same input anywhere, whatever the global git config says', async () => {
    const first = await createFixtureRepository({ gitDir: path.join(workDir, 'b', 'x.git'), commits, defaultBranch: 'master' });
    const home = path.join(workDir, 'home');
    await mkdir(home, { recursive: true });
    await writeFile(path.join(home, '.gitconfig'), '[user]\n\tname = Someone Else\n[core]\n\tautocrlf = true\n\tfileMode = false\n[init]\n\tdefaultBranch = trunk\n[tag]\n\tgpgSign = true\n');
    const previousHome = process.env['HOME'];
    process.env['HOME'] = home;
    try {
      const second = await createFixtureRepository({ gitDir: path.join(workDir, 'c', 'y.git'), commits, defaultBranch: 'master' });
      expect(second.commits).toEqual(first.commits);
      expect(second.tagObjects).toEqual(first.tagObjects);
    } finally {
      process.env['HOME'] = previousHome;
    }
  });

  it('recreates cleanly when called again, and a changed tree changes the SHAs', async () => {
    const gitDir = path.join(workDir, 'd', 'z.git');
    const first = await createFixtureRepository({ gitDir, commits });
    expect(first.defaultBranch).toBe('main');
    expect(first.branches['main']).toBe(first.commits[2]?.sha);
    const again = await createFixtureRepository({ gitDir, commits });
    expect(again).toEqual(first);
    expect(await readdir(path.dirname(gitDir))).toEqual(['z.git']);
    const changedTree = path.join(workDir, 'tree-changed');
    await mkdir(changedTree);
    await writeFile(path.join(changedTree, 'default.nix'), '{ }: { version = "changed"; }\n');
    const changed = await createFixtureRepository({ gitDir, commits: [{ tree: changedTree, message: 'only', branches: ['main'] }] });
    expect(changed.commits).toHaveLength(1);
    expect(changed.commits[0]?.sha).not.toBe(first.commits[0]?.sha);
    expect(await git(gitDir, 'for-each-ref', '--format=%(refname)')).toBe('refs/heads/main');
  });

  it('refuses to replace a directory that is not a bare repository', async () => {
    const precious = path.join(workDir, 'precious');
    await mkdir(precious);
    await writeFile(path.join(precious, 'keep.txt'), 'keep');
    await expect(createFixtureRepository({ gitDir: precious, commits })).rejects.toThrow('is not a bare git repository');
    expect(await readFile(path.join(precious, 'keep.txt'), 'utf8')).toBe('keep');
  });
});

import { describe, expect, it } from 'vitest';
import { fixtureGitArgv, fixtureGitEnvironment, invalidRefNameReason, planFixtureRefs } from './git-repo.js';

describe('invalidRefNameReason', () => {
  it('accepts ordinary branch and tag names', () => {
    for (const name of ['main', 'nixos-24.05', 'nixos-unstable', 'feature/x', '24.05', 'v1.2.3']) expect(invalidRefNameReason(name)).toBeUndefined();
  });
  it.each([
    ['', 'it is empty'],
    ['-rf', 'it starts with "-"'],
    ['a..b', 'it contains ".."'],
    ['a b', 'it contains a space'],
    ['a:b', 'it contains a space'],
    ['x/', 'it ends with "." or "/"'],
    ['a//b', 'it has an empty path component'],
    ['.hidden', 'a path component starts with "."'],
    ['x.lock', 'a path component ends with ".lock"'],
    ['a@{1}', 'it contains "@{"'],
  ])('refuses %j', (name, reason) => {
    expect(invalidRefNameReason(name)).toContain(reason);
  });
});

describe('planFixtureRefs', () => {
  it('maps refs to commit indexes and adds a missing default branch on the last commit', () => {
    const plan = planFixtureRefs([{ branches: ['nixos-24.05'], tags: ['24.05'] }, { branches: ['master', 'nixos-unstable'] }, {}], 'main');
    expect(Object.fromEntries(plan.branches)).toEqual({ 'nixos-24.05': 0, master: 1, 'nixos-unstable': 1, main: 2 });
    expect(Object.fromEntries(plan.tags)).toEqual({ '24.05': 0 });
    expect(plan.defaultBranch).toBe('main');
  });
  it('keeps an explicitly placed default branch where it is', () => {
    expect(planFixtureRefs([{ branches: ['master'] }, {}], 'master').branches.get('master')).toBe(0);
  });
  it('refuses no commits, a ref listed twice and invalid names', () => {
    expect(() => planFixtureRefs([])).toThrow('at least one commit');
    expect(() => planFixtureRefs([{ branches: ['a'] }, { branches: ['a'] }])).toThrow('branch "a" is listed on commits 0 and 1');
    expect(() => planFixtureRefs([{ tags: ['t', 't'] }])).toThrow('tag "t" is listed on commits 0 and 0');
    expect(() => planFixtureRefs([{ tags: ['--force'] }])).toThrow('invalid tag name "--force"');
    expect(() => planFixtureRefs([{}], 'bad..name')).toThrow('invalid default branch name');
  });
});

describe('fixture git settings', () => {
  it('fixes identity and dates (one hour apart) and ignores system and global config', () => {
    expect(fixtureGitEnvironment(0)).toMatchObject({
      GIT_AUTHOR_DATE: '2024-01-01T00:00:00+00:00',
      GIT_COMMITTER_DATE: '2024-01-01T00:00:00+00:00',
      GIT_CONFIG_NOSYSTEM: '1',
      GIT_CONFIG_GLOBAL: '/dev/null',
    });
    expect(fixtureGitEnvironment(2).GIT_COMMITTER_DATE).toBe('2024-01-01T02:00:00+00:00');
  });
  it('passes every setting with -c before --git-dir and the subcommand', () => {
    const argv = fixtureGitArgv('/r.git', ['update-server-info']);
    expect(argv[0]).toBe('git');
    expect(argv.slice(-2)).toEqual(['--git-dir=/r.git', 'update-server-info']);
    expect(argv).toContain('core.autocrlf=false');
    expect(argv.filter((argument) => argument === '-c')).toHaveLength((argv.length - 3) / 2);
  });
});

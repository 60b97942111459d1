import { describe, expect, it } from 'vitest';
import {
  classifyGithubApiResponse,
  githubApiHeaders,
  githubArchiveUrl,
  githubCommitApiUrl,
  githubEndpointsFromEnv,
  githubGitUrl,
  lsRemoteArgv,
  parseGithubRepository,
  parseLsRemoteOutput,
  validateGithubRef,
} from './github.js';

const nixpkgs = { owner: 'NixOS', repo: 'nixpkgs' };
const headers = (values: Record<string, string> = {}) => ({ get: (name: string) => values[name] ?? null });

describe('GitHub planning', () => {
  it('parses OWNER/REPO and refuses anything else', () => {
    expect(parseGithubRepository('NixOS/nixpkgs')).toEqual(nixpkgs);
    for (const bad of ['NixOS', 'NixOS/nixpkgs/x', '../x', 'a/..', 'a b/c', 'NixOS/nixpkgs.git', '']) {
      expect(() => parseGithubRepository(bad), bad).toThrow(expect.objectContaining({ code: 'PIDEPLOY_USAGE' }));
    }
  });

  it('validates refs like git and lower-cases revs', () => {
    expect(validateGithubRef({ kind: 'branch', name: 'release/24.05' })).toEqual({ kind: 'branch', name: 'release/24.05' });
    expect(validateGithubRef({ kind: 'rev', rev: 'ABCDEF0' })).toEqual({ kind: 'rev', rev: 'abcdef0' });
    for (const name of ['-x', 'a..b', 'a b', 'x.lock', 'a/', 'x^{}', '.hidden']) {
      expect(() => validateGithubRef({ kind: 'branch', name }), name).toThrow(expect.objectContaining({ code: 'PIDEPLOY_USAGE' }));
    }
    expect(() => validateGithubRef({ kind: 'rev', rev: 'abc' })).toThrow(expect.objectContaining({ code: 'PIDEPLOY_USAGE' }));
  });

  it('builds API, archive and git URLs from the environment', () => {
    expect(githubEndpointsFromEnv({})).toEqual({ apiBase: 'https://api.github.com', archiveBase: 'https://github.com' });
    const endpoints = githubEndpointsFromEnv({ PIDEPLOY_GITHUB_API: 'http://127.0.0.1:9/', PIDEPLOY_GITHUB_ARCHIVE: 'http://127.0.0.1:9' });
    expect(endpoints).toEqual({ apiBase: 'http://127.0.0.1:9', archiveBase: 'http://127.0.0.1:9' });
    expect(githubCommitApiUrl('https://api.github.com', nixpkgs, { kind: 'branch', name: 'release/24.05' })).toBe('https://api.github.com/repos/NixOS/nixpkgs/commits/refs/heads/release/24.05');
    expect(githubCommitApiUrl('https://api.github.com', nixpkgs, { kind: 'tag', name: '24.05' })).toBe('https://api.github.com/repos/NixOS/nixpkgs/commits/refs/tags/24.05');
    expect(githubCommitApiUrl('https://api.github.com', nixpkgs, { kind: 'rev', rev: 'abcdef0' })).toBe('https://api.github.com/repos/NixOS/nixpkgs/commits/abcdef0');
    const rev = '0123456789abcdef0123456789abcdef01234567';
    expect(githubArchiveUrl('https://github.com', nixpkgs, rev)).toBe(`https://github.com/NixOS/nixpkgs/archive/${rev}.tar.gz`);
    expect(githubGitUrl('https://github.com', nixpkgs)).toBe('https://github.com/NixOS/nixpkgs.git');
    expect(() => githubEndpointsFromEnv({ PIDEPLOY_GITHUB_API: 'ftp://x' })).toThrow(expect.objectContaining({ code: 'PIDEPLOY_USAGE' }));
    expect(() => githubEndpointsFromEnv({ PIDEPLOY_GITHUB_API: 'https://user:secret@x' })).toThrow(expect.objectContaining({ code: 'PIDEPLOY_USAGE' }));
  });

  it('sends the token only as a Bearer header, only when set', () => {
    expect(githubApiHeaders(undefined)).not.toHaveProperty('authorization');
    expect(githubApiHeaders('')).not.toHaveProperty('authorization');
    expect(githubApiHeaders('t0k')).toMatchObject({ authorization: 'Bearer t0k', accept: 'application/vnd.github.sha' });
  });

  it('runs git ls-remote with exact refs and matches them exactly (annotated tags peeled)', () => {
    expect(lsRemoteArgv('U', { kind: 'branch', name: 'main' })).toEqual(['git', 'ls-remote', '--refs', 'U', 'refs/heads/main']);
    expect(lsRemoteArgv('U', { kind: 'tag', name: 'v1' })).toEqual(['git', 'ls-remote', 'U', 'refs/tags/v1', 'refs/tags/v1^{}']);
    const a = 'a'.repeat(40);
    const b = 'b'.repeat(40);
    const c = 'c'.repeat(40);
    const output = `${b}\trefs/heads/feature/main\n${a}\trefs/heads/main\n${c}\trefs/tags/main\n`;
    expect(parseLsRemoteOutput(output, { kind: 'branch', name: 'main' })).toBe(a);
    expect(parseLsRemoteOutput(output, { kind: 'branch', name: 'other' })).toBeUndefined();
    expect(parseLsRemoteOutput(`${c}\trefs/tags/v1\n${a}\trefs/tags/v1^{}\n`, { kind: 'tag', name: 'v1' })).toBe(a);
    expect(parseLsRemoteOutput(`${c}\trefs/tags/v1\n`, { kind: 'tag', name: 'v1' })).toBe(c);
  });

  it('classifies API answers', () => {
    const rev = 'A'.repeat(40);
    expect(classifyGithubApiResponse(200, headers(), `${rev}\n`)).toEqual({ kind: 'ok', rev: rev.toLowerCase() });
    expect(classifyGithubApiResponse(200, headers(), '{}').kind).toBe('failed');
    expect(classifyGithubApiResponse(404, headers(), '{"message":"Not Found"}').kind).toBe('not-found');
    expect(classifyGithubApiResponse(422, headers(), '{"message":"No commit found for SHA: x"}').kind).toBe('not-found');
    expect(classifyGithubApiResponse(403, headers({ 'x-ratelimit-remaining': '0', 'x-ratelimit-reset': '1700000000' }), '{}')).toEqual({ kind: 'rate-limited', resetEpochSeconds: 1700000000 });
    expect(classifyGithubApiResponse(403, headers({ 'x-ratelimit-remaining': '10' }), '{"message":"Resource not accessible"}').kind).toBe('failed');
    expect(classifyGithubApiResponse(502, headers(), '')).toEqual({ kind: 'transient', reason: 'HTTP 502' });
    expect(classifyGithubApiResponse(401, headers(), '{"message":"Bad credentials"}')).toEqual({ kind: 'failed', reason: 'HTTP 401 (Bad credentials)' });
  });
});

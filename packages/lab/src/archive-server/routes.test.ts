import { describe, expect, it } from 'vitest';
import {
  acceptsShaMediaType,
  authorizationScheme,
  codeloadPath,
  isApiRoute,
  isPlausibleRef,
  routeRequest,
  splitRequestPath,
  tarballTopDirectory,
} from './routes.js';

const SHA = '0123456789abcdef0123456789abcdef01234567';

describe('routeRequest: GitHub REST API', () => {
  it('routes commits with the sha media type or JSON', () => {
    expect(routeRequest('GET', '/repos/NixOS/nixpkgs/commits/nixos-24.05', { accept: 'application/vnd.github.sha' })).toEqual({
      kind: 'api-commit',
      owner: 'NixOS',
      repo: 'nixpkgs',
      ref: 'nixos-24.05',
      shaOnly: true,
    });
    expect(routeRequest('GET', '/repos/NixOS/nixpkgs/commits/master', { accept: 'application/vnd.github.v3.sha' })).toMatchObject({ shaOnly: true });
    expect(routeRequest('GET', '/repos/NixOS/nixpkgs/commits/master', { accept: 'application/vnd.github+json' })).toMatchObject({ shaOnly: false });
    expect(routeRequest('GET', '/repos/NixOS/nixpkgs/commits/master', {})).toMatchObject({ shaOnly: false });
  });

  it('keeps refs with slashes (raw or encoded) and drops the query', () => {
    expect(routeRequest('GET', '/repos/o/r/commits/refs/heads/feature/x?per_page=1', {})).toMatchObject({ kind: 'api-commit', ref: 'refs/heads/feature/x' });
    expect(routeRequest('GET', '/repos/o/r/commits/feature%2Fx', {})).toMatchObject({ kind: 'api-commit', ref: 'feature/x' });
  });

  it('routes branches, the repository and the API tarball', () => {
    expect(routeRequest('GET', '/repos/o/r/branches/nixos-unstable', {})).toEqual({ kind: 'api-branch', owner: 'o', repo: 'r', branch: 'nixos-unstable' });
    expect(routeRequest('GET', '/repos/o/r', {})).toEqual({ kind: 'api-repository', owner: 'o', repo: 'r' });
    expect(routeRequest('GET', '/repos/o/r/', {})).toEqual({ kind: 'api-repository', owner: 'o', repo: 'r' });
    expect(routeRequest('GET', '/repos/o/r/tarball/refs/tags/v1', {})).toEqual({
      kind: 'redirect',
      owner: 'o',
      repo: 'r',
      ref: 'refs/tags/v1',
      location: '/codeload/o/r/legacy.tar.gz/refs/tags/v1',
      api: true,
    });
  });

  it('answers unknown API paths like GitHub (404 JSON)', () => {
    expect(routeRequest('GET', '/repos/o/r/pulls/1', {})).toEqual({ kind: 'refused', status: 404, message: 'Not Found', api: true });
    expect(routeRequest('GET', '/repos/o', {})).toMatchObject({ kind: 'refused', status: 404, api: true });
    expect(routeRequest('GET', '/repos/o/r/commits/bad..ref', {})).toMatchObject({ kind: 'refused', status: 404 });
    expect(routeRequest('GET', '/repos/o/r/commits/-n', {})).toMatchObject({ kind: 'refused', status: 404 });
  });
});

describe('routeRequest: archives', () => {
  it('redirects archive URLs to a codeload path on the same server', () => {
    expect(routeRequest('GET', `/NixOS/nixpkgs/archive/${SHA}.tar.gz`, {})).toEqual({
      kind: 'redirect',
      owner: 'NixOS',
      repo: 'nixpkgs',
      ref: SHA,
      location: `/codeload/NixOS/nixpkgs/tar.gz/${SHA}`,
      api: false,
    });
    expect(routeRequest('GET', '/NixOS/nixpkgs/archive/refs/heads/nixos-24.05.tar.gz', {})).toMatchObject({
      ref: 'refs/heads/nixos-24.05',
      location: '/codeload/NixOS/nixpkgs/tar.gz/refs/heads/nixos-24.05',
    });
    expect(routeRequest('GET', '/NixOS/nixpkgs/archive/refs/tags/24.05.tar.gz', {})).toMatchObject({ ref: 'refs/tags/24.05' });
    expect(routeRequest('HEAD', '/o/r/archive/main.tar.gz', {})).toMatchObject({ kind: 'redirect' });
  });

  it('serves codeload paths with archive or legacy naming', () => {
    expect(routeRequest('GET', '/codeload/o/r/tar.gz/refs/heads/main', {})).toEqual({ kind: 'tarball', owner: 'o', repo: 'r', ref: 'refs/heads/main', naming: 'archive' });
    expect(routeRequest('GET', '/codeload/o/r/legacy.tar.gz/v1', {})).toMatchObject({ kind: 'tarball', naming: 'legacy' });
    expect(routeRequest('GET', '/codeload/o/r/zip/main', {})).toMatchObject({ kind: 'refused', status: 404, api: false });
  });

  it('refuses other archive formats and unknown paths', () => {
    expect(routeRequest('GET', '/o/r/archive/main.zip', {})).toMatchObject({ kind: 'refused', status: 404 });
    expect(routeRequest('GET', '/o/r/blob/main/README.md', {})).toMatchObject({ kind: 'refused', status: 404 });
    expect(routeRequest('GET', '/', {})).toMatchObject({ kind: 'refused', status: 404 });
  });

  it('tells API routes (JSON errors, rate-limit headers) from github.com routes', () => {
    expect(isApiRoute(routeRequest('GET', '/repos/o/r/tarball/main', {}))).toBe(true);
    expect(isApiRoute(routeRequest('GET', '/repos/o/r/nope', {}))).toBe(true);
    expect(isApiRoute(routeRequest('GET', '/o/r/archive/main.tar.gz', {}))).toBe(false);
    expect(isApiRoute(routeRequest('GET', '/codeload/o/r/tar.gz/main', {}))).toBe(false);
  });

  it('builds codeload paths with encoded ref components', () => {
    expect(codeloadPath('o', 'r', 'archive', 'refs/heads/a b')).toBe('/codeload/o/r/tar.gz/refs/heads/a%20b');
  });
});

describe('routeRequest: git dumb HTTP', () => {
  it('serves only the files the dumb protocol reads', () => {
    expect(routeRequest('GET', '/NixOS/nixpkgs.git/info/refs?service=git-upload-pack', {})).toEqual({
      kind: 'git-file',
      owner: 'NixOS',
      repo: 'nixpkgs',
      file: 'info/refs',
    });
    for (const file of ['HEAD', 'packed-refs', 'objects/info/packs', 'objects/ab/cdef0123456789abcdef0123456789abcdef01', `objects/pack/pack-${SHA}.pack`, `objects/pack/pack-${SHA}.idx`]) {
      expect(routeRequest('GET', `/o/r.git/${file}`, {})).toMatchObject({ kind: 'git-file', file });
    }
    for (const file of ['config', 'hooks/pre-receive.sample', 'description', 'objects/info/alternates', 'refs/heads/main', 'objects/ab/short', 'info/refs/x']) {
      expect(routeRequest('GET', `/o/r.git/${file}`, {})).toMatchObject({ kind: 'refused', status: 404 });
    }
  });

  it('refuses methods other than GET and HEAD', () => {
    expect(routeRequest('POST', '/o/r.git/git-upload-pack', {})).toMatchObject({ kind: 'refused', status: 405 });
  });
});

describe('path traversal', () => {
  const attempts = [
    '/o/r.git/../../../etc/passwd',
    '/o/r.git/%2e%2e/%2e%2e/etc/passwd',
    '/o/r.git/%2E%2E%2F%2E%2E%2Fetc%2Fpasswd',
    '/o/r.git/objects/..%2f..%2fconfig',
    '/../git/o/r.git/HEAD',
    '/o/r.git/./HEAD',
    '/o/r.git/objects\\..\\config',
    '/o/r.git/%5c..%5cconfig',
    '/o/r.git/HEAD%00',
    '/repos/o/../r',
    '/repos/o/r/commits/%2e%2e',
    '/codeload/o/r/tar.gz/..%2F..%2Fx',
  ];
  it.each(attempts)('refuses %s with 400 or 404', (target) => {
    const route = routeRequest('GET', target, {});
    expect(route.kind).toBe('refused');
    expect([400, 404]).toContain(route.kind === 'refused' ? route.status : 0);
  });

  it('refuses bad percent-encoding and relative targets', () => {
    expect(splitRequestPath('/o/%zz')).toEqual({ refusal: 'the path has invalid percent-encoding' });
    expect(splitRequestPath('http://evil/x')).toEqual({ refusal: 'the request target is not an absolute path' });
    expect(splitRequestPath('/a//b')).toEqual({ refusal: 'the path contains an empty segment' });
    expect(splitRequestPath('/a/b/?q=..')).toEqual({ segments: ['a', 'b'] });
  });

  it('refuses owner and repo names that are not plain', () => {
    expect(routeRequest('GET', '/.hidden/r.git/HEAD', {})).toMatchObject({ kind: 'refused', status: 404 });
    expect(routeRequest('GET', '/o/.git/HEAD', {})).toMatchObject({ kind: 'refused', status: 404 });
    expect(routeRequest('GET', '/repos/o%2Fx/r', {})).toMatchObject({ kind: 'refused', status: 404 });
  });
});

describe('refs, headers and top-level directory names', () => {
  it('accepts what GitHub URLs carry as refs and nothing that could be an option or a path trick', () => {
    for (const ref of ['main', 'nixos-24.05', 'refs/heads/feature/x', SHA, 'v1.2.3']) expect(isPlausibleRef(ref)).toBe(true);
    for (const ref of ['', '-x', '/x', 'x/', 'a..b', 'a//b', 'x.lock', '.x', 'a b', 'a:b', 'a~1', 'x@{0}']) expect(isPlausibleRef(ref)).toBe(false);
  });

  it('reads the Authorization scheme without keeping the credential', () => {
    expect(authorizationScheme({ authorization: 'Bearer ghp_secret' })).toBe('bearer');
    expect(authorizationScheme({ authorization: 'token ghp_secret' })).toBe('token');
    expect(authorizationScheme({ authorization: 'Basic abc' })).toBeUndefined();
    expect(authorizationScheme({ authorization: 'Bearer ' })).toBeUndefined();
    expect(authorizationScheme({})).toBeUndefined();
  });

  it('detects the sha media type among several Accept values', () => {
    expect(acceptsShaMediaType({ accept: 'text/plain, application/vnd.github.sha' })).toBe(true);
    expect(acceptsShaMediaType({ accept: 'application/vnd.github.shadow' })).toBe(false);
  });

  it('names the top-level directory as GitHub does', () => {
    const base = { owner: 'NixOS', repo: 'nixpkgs', sha: SHA } as const;
    expect(tarballTopDirectory({ ...base, ref: SHA, refKind: 'commit', naming: 'archive' })).toBe(`nixpkgs-${SHA}`);
    expect(tarballTopDirectory({ ...base, ref: 'nixos-24.05', refKind: 'branch', naming: 'archive' })).toBe('nixpkgs-nixos-24.05');
    expect(tarballTopDirectory({ ...base, ref: 'refs/heads/feature/x', refKind: 'branch', naming: 'archive' })).toBe('nixpkgs-feature-x');
    expect(tarballTopDirectory({ ...base, ref: 'refs/tags/v1.2', refKind: 'tag', naming: 'archive' })).toBe('nixpkgs-1.2');
    expect(tarballTopDirectory({ ...base, ref: 'version', refKind: 'tag', naming: 'archive' })).toBe('nixpkgs-version');
    expect(tarballTopDirectory({ ...base, ref: 'v1.2', refKind: 'branch', naming: 'archive' })).toBe('nixpkgs-v1.2');
    expect(tarballTopDirectory({ ...base, ref: 'main', refKind: 'branch', naming: 'legacy' })).toBe('NixOS-nixpkgs-0123456');
  });
});

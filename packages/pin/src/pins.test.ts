import { describe, expect, it } from 'vitest';
import { defaultCacheDir, hashCacheKey } from './cache.js';
import { httpStatusError, networkError } from './download.js';
import { parsePinSourceArguments } from './pins.js';

describe('pin add arguments', () => {
  it('turns flags into a source', () => {
    expect(parsePinSourceArguments({ github: 'NixOS/nixpkgs', branch: 'nixos-24.05' })).toEqual({
      type: 'github',
      repository: { owner: 'NixOS', repo: 'nixpkgs' },
      ref: { kind: 'branch', name: 'nixos-24.05' },
    });
    expect(parsePinSourceArguments({ github: 'NixOS/nixpkgs', rev: 'ABCDEF0' })).toMatchObject({ ref: { kind: 'rev', rev: 'abcdef0' } });
    expect(parsePinSourceArguments({ url: 'https://example.org/x.tar.gz' })).toEqual({ type: 'url', url: 'https://example.org/x.tar.gz' });
  });

  it('refuses contradictory or incomplete flags as usage errors', () => {
    for (const args of [{}, { github: 'a/b' }, { github: 'a/b', branch: 'x', tag: 'y' }, { github: 'a/b', url: 'https://x/y' }, { url: 'https://x/y', branch: 'b' }, { url: 'not a url' }, { url: 'https://u:p@x/y' }, { url: 'ftp://x/y' }]) {
      expect(() => parsePinSourceArguments(args), JSON.stringify(args)).toThrow(expect.objectContaining({ code: 'PIDEPLOY_USAGE' }));
    }
  });
});

describe('download errors and cache keys', () => {
  it('maps HTTP statuses: 404 is final, 5xx retryable', () => {
    expect(httpStatusError('u', 404, 'Not Found')).toMatchObject({ code: 'PIDEPLOY_PIN_NOT_FOUND', isRetryable: false });
    expect(httpStatusError('u', 503, '')).toMatchObject({ code: 'PIDEPLOY_PIN_HTTP_ERROR', isRetryable: true });
    expect(httpStatusError('u', 403, 'Forbidden')).toMatchObject({ code: 'PIDEPLOY_PIN_HTTP_ERROR', isRetryable: false });
  });

  it('finds the network error code in undici\'s cause chain', () => {
    const refused = new TypeError('fetch failed', { cause: Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ECONNREFUSED' }) });
    expect(networkError('http://127.0.0.1:1/x', refused)).toMatchObject({ code: 'PIDEPLOY_PIN_NETWORK', isRetryable: true, message: 'cannot connect to 127.0.0.1:1: connection refused (http://127.0.0.1:1/x)' });
    const dns = new TypeError('fetch failed', { cause: Object.assign(new Error('getaddrinfo ENOTFOUND x'), { code: 'ENOTFOUND' }) });
    expect(networkError('http://x/y', dns)).toMatchObject({ isRetryable: false });
  });

  it('keys the cache by rule and URL under XDG_CACHE_HOME', () => {
    expect(hashCacheKey('u', 'fetchTarball')).not.toBe(hashCacheKey('u', 'nix-prefetch-url'));
    expect(hashCacheKey('u', 'fetchTarball')).toMatch(/^[0-9a-f]{64}$/u);
    expect(defaultCacheDir({ XDG_CACHE_HOME: '/c' })).toBe('/c/pideploy');
    expect(defaultCacheDir({ XDG_CACHE_HOME: 'relative', HOME: '/h' })).toBe('/h/.cache/pideploy');
  });
});

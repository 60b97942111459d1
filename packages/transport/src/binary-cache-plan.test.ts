import { describe, expect, it } from 'vitest';
import {
  binaryCacheStoreUrl,
  cacheContentType,
  cacheFileForRequest,
  classifySubstituteFailure,
  parseSubstituteProgress,
  planCachePush,
  planSubstitution,
  substituteCommand,
  tunnelEndpoint,
  tunnelledCacheUrl,
  type SubstituteFailure,
} from './binary-cache-plan.js';

const TOP = '/nix/store/qcc8mwk1cik215klxxkm5f6zbpy9wdwp-cachexp-top';
const DEP = '/nix/store/kqyl4bynjws948prlp7z67lfh1kmrpql-cachexp-dep';
const LIB = '/nix/store/pd3xc6cfch7rk4avvjlz5cyqd4ba9d9d-lib';
const closure = [
  { path: TOP, narSize: 100_520, references: [DEP, LIB, TOP] },
  { path: DEP, narSize: 120, references: [LIB] },
  { path: LIB, narSize: 1000, references: [] },
];
const KEY = 'fleet-1:6xKZkw+W0vSnyJUlZ6GmaOcnpEOuKjt4xnSxpQ8vVWA=';

describe('binaryCacheStoreUrl', () => {
  it('builds the file:// store URL nix copy signs with', () => {
    expect(binaryCacheStoreUrl({ directory: '/var/cache/fleet/', secretKeyFile: '/etc/pideploy/fleet-1.secret', compression: 'xz' })).toBe(
      'file:///var/cache/fleet/?compression=xz&secret-key=/etc/pideploy/fleet-1.secret',
    );
    expect(binaryCacheStoreUrl({ directory: '/c' })).toBe('file:///c?compression=zstd');
  });

  it('refuses what a Nix store URL cannot carry instead of mangling it', () => {
    expect(() => binaryCacheStoreUrl({ directory: 'relative/cache' })).toThrow(expect.objectContaining({ code: 'PIDEPLOY_USAGE' }));
    for (const directory of ['/c?x', '/c&secret-key=/tmp/k', '/c=1', '/c%20', '/c#x', '/my cache']) {
      expect(() => binaryCacheStoreUrl({ directory }), directory).toThrow(expect.objectContaining({ code: 'PIDEPLOY_USAGE' }));
    }
    expect(() => binaryCacheStoreUrl({ directory: '/c', secretKeyFile: '/k&compression=none' })).toThrow(expect.objectContaining({ code: 'PIDEPLOY_USAGE' }));
    expect(() => binaryCacheStoreUrl({ directory: '/c', compression: 'lzma' as never })).toThrow(expect.objectContaining({ code: 'PIDEPLOY_USAGE', hint: expect.stringContaining('zstd') }));
  });
});

describe('planCachePush and planSubstitution', () => {
  it('pushes what has no narinfo, dependencies first', () => {
    const plan = planCachePush(closure, [LIB]);
    expect(plan.toPush.map((info) => info.path)).toEqual([DEP, TOP]);
    expect(plan.present).toEqual([LIB]);
    expect(plan.narBytesToPush).toBe(100_640);
    expect(planCachePush(closure, [TOP, DEP, LIB]).toPush).toEqual([]);
  });

  it('fetches only what the host lacks and names only the tops of it on the command line', () => {
    expect(planSubstitution(closure, []).roots).toEqual([TOP]);
    const partial = planSubstitution(closure, [LIB]);
    expect(partial.toSend.map((info) => info.path)).toEqual([DEP, TOP]);
    expect(partial.roots).toEqual([TOP]);
    expect(partial.bytesToSend).toBe(100_640);
    const twoTops = planSubstitution([...closure, { path: '/nix/store/0mdqa9w1p6cmli6976v4wi0sw9r4p5pr-other', narSize: 5, references: [LIB] }], [LIB]);
    expect(twoTops.roots).toEqual(['/nix/store/0mdqa9w1p6cmli6976v4wi0sw9r4p5pr-other', TOP]);
    expect(planSubstitution(closure, [TOP, DEP, LIB])).toMatchObject({ toSend: [], roots: [], bytesToSend: 0 });
  });
});

describe('cacheFileForRequest (the HTTP server’s only way from a request to a file)', () => {
  it('maps what Nix asks for', () => {
    expect(cacheFileForRequest('/nix-cache-info')).toBe('nix-cache-info');
    expect(cacheFileForRequest('/qcc8mwk1cik215klxxkm5f6zbpy9wdwp.narinfo')).toBe('qcc8mwk1cik215klxxkm5f6zbpy9wdwp.narinfo');
    for (const extension of ['', '.xz', '.zst', '.bz2', '.br']) {
      const file = `nar/1f09hpb072xwml360lrgz170zr4b487056lngdzjgikylawc5d51.nar${extension}`;
      expect(cacheFileForRequest(`/${file}`)).toBe(file);
    }
  });

  it('finds nothing else: no traversal, no escapes, no other files', () => {
    for (const request of [
      '/',
      '',
      '/../etc/passwd',
      '/nar/../fleet-1.secret',
      '/%2e%2e/etc/passwd',
      '/nar/%2e%2e%2fsecret',
      '//nix-cache-info',
      '/nix-cache-info/',
      '/nar//1f09hpb072xwml360lrgz170zr4b487056lngdzjgikylawc5d51.nar',
      '/QCC8MWK1CIK215KLXXKM5F6ZBPY9WDWP.narinfo',
      '/qcc8mwk1cik215klxxkm5f6zbpy9wdwe.narinfo', // e is not a nix32 digit
      '/qcc8mwk1cik215klxxkm5f6zbpy9wdwp.narinfo.bak',
      '/nar/1f09hpb072xwml360lrgz170zr4b487056lngdzjgikylawc5d51.nar.sh',
      '/nar/1f09.nar',
      '/fleet-1.secret',
      '/log/qcc8mwk1cik215klxxkm5f6zbpy9wdwp-cachexp-top',
      '/realisations/x.doi',
    ]) {
      expect(cacheFileForRequest(request), request).toBeUndefined();
    }
  });

  it('labels files as Nix’s HTTP caches do', () => {
    expect(cacheContentType('nix-cache-info')).toBe('text/x-nix-cache-info');
    expect(cacheContentType('qcc8mwk1cik215klxxkm5f6zbpy9wdwp.narinfo')).toBe('text/x-nix-narinfo');
    expect(cacheContentType('nar/x.nar.zst')).toBe('application/x-nix-nar');
  });
});

describe('tunnel URLs', () => {
  it('connects the tunnel to the local server and gives the host its own loopback URL', () => {
    expect(tunnelEndpoint('http://127.0.0.1:41234')).toEqual({ host: '127.0.0.1', port: 41234 });
    expect(tunnelEndpoint('http://[::1]:8080/cache/')).toEqual({ host: '::1', port: 8080 });
    expect(tunnelledCacheUrl('http://127.0.0.1:41234', 38001)).toBe('http://127.0.0.1:38001');
    expect(tunnelledCacheUrl('http://127.0.0.1:41234/cache/', 38001)).toBe('http://127.0.0.1:38001/cache');
  });

  it('refuses URLs a TCP tunnel cannot carry', () => {
    for (const url of ['https://cache.example:443', 'file:///var/cache', 'http://127.0.0.1', 'http://u:p@127.0.0.1:80', 'http://127.0.0.1:80/?priority=1', 'not a url']) {
      expect(() => tunnelEndpoint(url), url).toThrow(expect.objectContaining({ code: 'PIDEPLOY_USAGE' }));
    }
  });
});

describe('substituteCommand', () => {
  it('makes the cache the only substituter and the key the only trusted key, signatures required', () => {
    const command = substituteCommand({ paths: [TOP], cacheUrl: 'http://127.0.0.1:38001', publicKeys: [KEY, 'old-1:AAAA'] });
    expect(command).toEqual([
      'nix-store', '--realise',
      '--option', 'substituters', 'http://127.0.0.1:38001',
      '--option', 'trusted-public-keys', `${KEY} old-1:AAAA`,
      '--option', 'require-sigs', 'true',
      '--option', 'narinfo-cache-negative-ttl', '0',
      '--option', 'max-jobs', '8',
      '--', TOP,
    ]);
    expect(substituteCommand({ paths: [TOP], cacheUrl: 'http://x:1', publicKeys: [KEY], maxJobs: 2 })).toContain('2');
    expect(() => substituteCommand({ paths: [TOP], cacheUrl: 'http://x:1', publicKeys: [KEY], maxJobs: 0 })).toThrow(expect.objectContaining({ code: 'PIDEPLOY_USAGE' }));
  });

  it('points at a chroot store for tests (sudo is the spawner\'s business, see storeSpawner)', () => {
    expect(substituteCommand({ paths: [TOP], cacheUrl: 'http://x:1', publicKeys: [KEY], remoteStore: '/tmp/chroot' }).slice(0, 4)).toEqual(['nix-store', '--realise', '--store', '/tmp/chroot']);
  });
});

describe('parseSubstituteProgress', () => {
  it('reads the path Nix starts fetching', () => {
    expect(parseSubstituteProgress(`copying path '${DEP}' from 'http://127.0.0.1:18600'...`)).toBe(DEP);
    expect(parseSubstituteProgress(`copying path '${DEP}' to 'file:///c'...`)).toBeUndefined();
    expect(parseSubstituteProgress('these 2 paths will be fetched (0.10 MiB download, 0.10 MiB unpacked):')).toBeUndefined();
  });
});

describe('classifySubstituteFailure (stderr recorded from Nix 2.8 on a lab host)', () => {
  const base: SubstituteFailure = { host: 'pi1', cacheUrl: 'http://127.0.0.1:18600', keyNames: ['fleet-1'], stderr: '', exitCode: 1, tunnel: true };
  const classify = (stderr: string, extra: Partial<SubstituteFailure> = {}) => classifySubstituteFailure({ ...base, stderr, ...extra });

  it('a cache signed by another key', () => {
    const error = classify(`these 2 paths will be fetched (0.10 MiB download, 0.10 MiB unpacked):
  ${DEP}
  ${TOP}
warning: the substitute for '${TOP}' from 'http://127.0.0.1:18600' is not signed by any of the keys in 'trusted-public-keys'
error: build of '${TOP}' failed`);
    expect(error).toMatchObject({ code: 'PIDEPLOY_CACHE_SIGNATURE_UNTRUSTED', message: expect.stringContaining(`refused ${TOP}`), hint: expect.stringContaining('public key') });
    expect(error.message).toContain('fleet-1');
  });

  it('a damaged NAR', () => {
    const error = classify(`copying path '${TOP}' from 'http://127.0.0.1:18601'...
error: hash mismatch importing path '${TOP}';
         specified: sha256:0nfqkqv7jsl3m3ap3j4d8rbaxi637axfxvnnsdl0yfzpv1ik9dy9
         got:       sha256:1glf42caylr90bgd9mdwvm8l6jg75bzwhgxb289hzpqafmlnikfn
error: build of '${TOP}' failed`);
    expect(error).toMatchObject({ code: 'PIDEPLOY_CACHE_NAR_CORRUPT', message: expect.stringContaining(TOP), hint: expect.stringContaining('push again') });
    for (const damage of ['error: failed to read compressed data (Lzma library error: Corrupted input data)', 'error: Failed to open archive (Truncated zstd input)']) {
      const failure = classify(`copying path '${DEP}' from 'http://127.0.0.1:1'...\ncopying path '${TOP}' from 'http://127.0.0.1:1'...\n${damage}\nerror: build of '${TOP}' failed`);
      expect(failure, damage).toMatchObject({ code: 'PIDEPLOY_CACHE_NAR_CORRUPT', message: expect.stringContaining(`rejected ${TOP}`) });
    }
  });

  it('an unreachable cache (tunnel endpoint down, or no server)', () => {
    const stderr = `warning: error: unable to download 'http://127.0.0.1:18671/nix-cache-info': Couldn't connect to server (7); retrying in 262 ms
warning: unable to download 'http://127.0.0.1:18671/nix-cache-info': Couldn't connect to server (7)
don't know how to build these paths:
  ${TOP}
error: build of '${TOP}' failed`;
    expect(classify(stderr)).toMatchObject({ code: 'PIDEPLOY_CACHE_UNREACHABLE', isRetryable: true, hint: expect.stringContaining('serveBinaryCache') });
    expect(classify(stderr, { tunnel: false })).toMatchObject({ code: 'PIDEPLOY_CACHE_UNREACHABLE', hint: expect.stringContaining('firewall') });
  });

  it('paths missing from the cache', () => {
    expect(classify(`this path will be fetched (0.10 MiB download, 0.10 MiB unpacked):
  ${TOP}
don't know how to build these paths:
  ${DEP}
error: build of '${TOP}' failed`)).toMatchObject({ code: 'PIDEPLOY_CACHE_INCOMPLETE', message: `the cache lacks ${DEP}, which pi1 needs` });
    expect(classify(`error: file 'nar/1f09hpb072xwml360lrgz170zr4b487056lngdzjgikylawc5d51.nar.zst' does not exist in binary cache 'http://127.0.0.1:18635'`)).toMatchObject({
      code: 'PIDEPLOY_CACHE_INCOMPLETE',
    });
  });

  it('an untrusted login user without sudo, and sudo refusals', () => {
    expect(classify(`warning: ignoring the client-specified setting 'substituters', because it is a restricted setting and you are not a trusted user
error: path '${TOP}' is required, but there is no substituter that can build it`)).toMatchObject({ code: 'PIDEPLOY_CACHE_UNTRUSTED_USER', hint: expect.stringContaining('sudo') });
    // What Nix 2.8's daemon says to an untrusted user (recorded on a lab host):
    expect(classify(`warning: ignoring untrusted substituter 'http://127.0.0.1:1/x'
don't know how to build these paths:
  ${TOP}
error: build of '${TOP}' failed`)).toMatchObject({ code: 'PIDEPLOY_CACHE_UNTRUSTED_USER' });
    const wrong = classify('Sorry, try again.\nsudo: no password was provided\nsudo: 1 incorrect password attempt\n');
    expect(wrong).toMatchObject({ code: 'PIDEPLOY_SUDO_PASSWORD_WRONG', message: 'sudo on pi1 rejected the password; nothing was fetched' });
  });

  it('everything else keeps the last line, and a cut connection is retryable', () => {
    expect(classify('error: something new\n')).toMatchObject({ code: 'PIDEPLOY_CACHE_SUBSTITUTE_FAILED', message: expect.stringContaining('error: something new') });
    expect(classify('', { exitCode: null })).toMatchObject({ code: 'PIDEPLOY_COPY_CONNECTION_LOST', isRetryable: true });
    expect(classify('bash: line 1: nix-store: command not found\n', { exitCode: 127 })).toMatchObject({ code: 'PIDEPLOY_REMOTE_NIX_MISSING' });
  });
});

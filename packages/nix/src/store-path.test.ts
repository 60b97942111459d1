import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { encodeNix32 } from './hash.js';
import {
  describeInvalidStorePathName,
  isValidStorePathName,
  makeFixedOutputPath,
  parseStorePath,
  validateStorePathName,
} from './store-path.js';
import { expectedVectors } from './test-support/shared-reference.js';

const vectors = expectedVectors();

describe('fixed-output store paths (expected.json, checked by Nix 2.8)', () => {
  for (const [name, vector] of Object.entries(vectors.storePath)) {
    it(name, () => {
      const path =
        vector.method === 'recursive'
          ? makeFixedOutputPath({ name: vector.name, recursive: true, narHash: vector.nix32 })
          : makeFixedOutputPath({ name: vector.name, recursive: false, fileHash: vector.nix32 });
      expect(path).toBe(vector.path);
      expect(parseStorePath(path).name).toBe(vector.name);
    });
  }

  it('fetchTarball result of x.tar.gz from its SRI hash and raw digest', () => {
    const x = vectors.tarball['x.tar.gz'];
    const expected = x?.fetchTarball2_8?.result;
    expect(makeFixedOutputPath({ name: 'source', recursive: true, narHash: x?.sri as string })).toBe(expected);
    const digest = Buffer.from((x?.sri as string).slice('sha256-'.length), 'base64');
    expect(makeFixedOutputPath({ name: 'source', recursive: true, narHash: digest, storeDir: '/nix/store' })).toBe(expected);
  });

  it('gcroots/auto names are nix32(sha1(path)) (same nix32 over 20 bytes)', () => {
    for (const [rootPath, name] of Object.entries(vectors.gcrootAutoName)) {
      expect(encodeNix32(createHash('sha1').update(rootPath).digest())).toBe(name);
    }
  });
});

describe('store path names', () => {
  it('accepts Nix names and rejects the rest with a reason', () => {
    for (const name of ['source', 'x.tar.gz', 'a', 'A-b_c.d+e?f=g', 'x'.repeat(211), '.hidden', '..foo', '-dash']) {
      expect(isValidStorePathName(name)).toBe(true);
    }
    for (const name of ['', 'x'.repeat(212), 'a b', 'é', 'a/b', '.', '..', '.-x', '..-x', 'a:b']) {
      expect(describeInvalidStorePathName(name)).toBeTruthy();
      expect(() => validateStorePathName(name)).toThrow(expect.objectContaining({ code: 'PIDEPLOY_STORE_PATH_INVALID' }));
    }
    expect(() => makeFixedOutputPath({ name: 'bad name', recursive: true, narHash: Buffer.alloc(32) })).toThrow(/not a valid store path name/u);
  });

  it('parseStorePath splits and checks', () => {
    expect(parseStorePath('/nix/store/54q4m2awlgakfkdib5y3cnnlzvmvhlcn-source')).toEqual({
      storeDir: '/nix/store',
      hashPart: '54q4m2awlgakfkdib5y3cnnlzvmvhlcn',
      name: 'source',
    });
    for (const bad of ['/nix/store/54q4m2awlgakfkdib5y3cnnlzvmvhlcn', '/nix/store/54q4m2awlgakfkdib5y3cnnlzvmvhlce-source', '/tmp/x', '/nix/store/54q4m2awlgakfkdib5y3cnnlzvmvhlcn-source/bin']) {
      expect(() => parseStorePath(bad)).toThrow(expect.objectContaining({ code: 'PIDEPLOY_STORE_PATH_INVALID' }));
    }
  });

  it('rejects a hash that is not sha256', () => {
    expect(() => makeFixedOutputPath({ name: 'source', recursive: true, narHash: Buffer.alloc(20) })).toThrow(expect.objectContaining({ code: 'PIDEPLOY_HASH_INVALID' }));
    expect(() => makeFixedOutputPath({ name: 'source', recursive: true, narHash: 'sha1:143xibwh31h9bvxzalr0sjvbbvpa6ffs' })).toThrow(/should have type 'sha256'/u);
  });
});

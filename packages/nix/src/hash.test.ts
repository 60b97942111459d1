import { createHash } from 'node:crypto';
import { PideployError } from '@pideploy/core';
import { describe, expect, it } from 'vitest';
import { decodeNix32, encodeNix32, formatHash, nix32Length, parseHash, type HashAlgorithm } from './hash.js';
import { expectedVectors } from './test-support/shared-reference.js';

const vectors = expectedVectors();

function parseError(text: string, expectedAlgorithm?: HashAlgorithm): PideployError {
  try {
    parseHash(text, { expectedAlgorithm });
  } catch (error) {
    if (PideployError.isInstance(error)) return error;
    throw error;
  }
  throw new Error(`parseHash accepted '${text}'`);
}

describe('nix32 / hex / SRI vectors from expected.json (real Nix 2.8)', () => {
  for (const [name, vector] of Object.entries(vectors.base32)) {
    it(`${name}`, () => {
      const digest = Buffer.from(vector.hex, 'hex');
      if (vector.input_utf8 !== undefined) {
        expect(createHash('sha256').update(vector.input_utf8, 'utf8').digest('hex')).toBe(vector.hex);
      }
      expect(formatHash(digest, 'nix32')).toBe(vector.nix32);
      expect(formatHash(digest, 'sri')).toBe(vector.sri);
      expect(formatHash(digest, 'hex')).toBe(vector.hex);
      expect(formatHash(digest, 'nix32', { prefixed: true })).toBe(`sha256:${vector.nix32}`);
      for (const text of [vector.nix32, vector.hex, vector.sri, `sha256:${vector.nix32}`, `sha256:${vector.hex}`, vector.hex.toUpperCase(), vector.sri.slice('sha256-'.length)]) {
        expect(parseHash(text, { expectedAlgorithm: 'sha256' }).digest.toString('hex')).toBe(vector.hex);
      }
      expect(parseHash(vector.sri).algorithm).toBe('sha256');
    });
  }

  it('other algorithms (md5, sha1, sha512 of the empty string)', () => {
    for (const [algorithm, vector] of Object.entries(vectors.base32_other_types_of_empty_string)) {
      const digest = Buffer.from(vector.hex, 'hex');
      expect(nix32Length(digest.length)).toBe(vector.len);
      expect(formatHash(digest, 'nix32')).toBe(vector.nix32);
      expect(parseHash(`${algorithm}:${vector.nix32}`).digest.toString('hex')).toBe(vector.hex);
      expect(parseHash(vector.nix32, { expectedAlgorithm: algorithm as HashAlgorithm }).digest.toString('hex')).toBe(vector.hex);
    }
  });
});

describe('parseHash follows Nix 2.8 validation', () => {
  it('rejects nix32 with bits beyond the digest (first char must be 0 or 1 for sha256)', () => {
    const error = parseError(`2${'0'.repeat(51)}`, 'sha256');
    expect(error.code).toBe('PIDEPLOY_HASH_INVALID');
    expect(error.message).toContain('invalid base-32 hash');
    expect(error.hint).toBeTruthy();
    expect(parseHash(`1${'0'.repeat(51)}`, { expectedAlgorithm: 'sha256' }).digest[31]).toBe(0x80);
  });

  it('rejects letters outside the nix32 alphabet (e o u t) and upper case', () => {
    for (const text of [`0e${'0'.repeat(50)}`, `0o${'0'.repeat(50)}`, `0u${'0'.repeat(50)}`, `0t${'0'.repeat(50)}`, '0MDQA9W1P6CMLI6976V4WI0SW9R4P5PRKJ7LZFD1877WK11C9C73']) {
      expect(parseError(text, 'sha256').message).toContain('invalid base-32 hash');
    }
  });

  it('tells encodings apart by length only, and says so', () => {
    expect(parseError('abc', 'sha256').message).toBe("hash 'abc' has wrong length for hash type 'sha256'");
    expect(parseError(`${'g'.repeat(64)}`, 'sha256').message).toContain('invalid base-16 hash');
  });

  it('needs an algorithm from the text or the context, and they must agree', () => {
    expect(parseError('e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855').message).toContain('does not include a type');
    expect(parseError('sha1:143xibwh31h9bvxzalr0sjvbbvpa6ffs', 'sha256').message).toContain("should have type 'sha256'");
    expect(parseError('sha999-AAAA').message).toContain("unknown hash algorithm 'sha999'");
  });

  it('accepts unpadded SRI (as Nix does) but not damaged padding or base64', () => {
    const sri = vectors.base32['empty-string']?.sri as string;
    expect(parseHash(sri.replace(/=+$/u, '')).digest.toString('hex')).toBe(vectors.base32['empty-string']?.hex);
    expect(parseError(`${sri}=`).message).toContain('invalid SRI hash');
    expect(parseError(sri.replace('+', '-')).message).toContain('invalid SRI hash');
    expect(parseError(`sha256-${Buffer.alloc(31).toString('base64')}`).message).toContain('invalid SRI hash');
  });

  it('round-trips random digests through every encoding', () => {
    for (let i = 0; i < 200; i++) {
      const digest = createHash('sha256').update(String(i)).digest();
      for (const encoding of ['nix32', 'hex', 'base64', 'sri'] as const) {
        const text = formatHash(digest, encoding);
        expect(parseHash(text, { expectedAlgorithm: 'sha256' }).digest.equals(digest)).toBe(true);
        expect(parseHash(text, { expectedAlgorithm: 'sha256' }).encoding).toBe(encoding);
      }
    }
  });
});

describe('encodeNix32 / decodeNix32', () => {
  it('handles any length and rejects what does not fit', () => {
    for (let length = 0; length <= 64; length++) {
      const bytes = createHash('sha512').update(String(length)).digest().subarray(0, length);
      const text = encodeNix32(bytes);
      expect(text.length).toBe(nix32Length(length));
      expect(decodeNix32(text, length)?.equals(bytes)).toBe(true);
    }
    expect(decodeNix32('z'.repeat(32), 20)).toBeDefined();
    expect(decodeNix32('z'.repeat(52), 32)).toBeUndefined();
    expect(decodeNix32('0'.repeat(51), 32)).toBeUndefined();
  });

  it('refuses digests whose length matches no algorithm', () => {
    expect(() => formatHash(Buffer.alloc(7), 'nix32')).toThrow(/matches no hash algorithm/u);
    expect(() => formatHash(Buffer.alloc(20), 'sri', { algorithm: 'sha256' })).toThrow(/not a sha256 digest/u);
  });
});

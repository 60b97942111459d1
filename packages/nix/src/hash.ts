import { createHash } from 'node:crypto';
import { nixError } from './errors.js';

/** Hash algorithms Nix knows, with their digest sizes in bytes. */
export const HASH_ALGORITHM_SIZES = { md5: 16, sha1: 20, sha256: 32, sha512: 64 } as const;

/** A hash algorithm Nix knows (`md5`, `sha1`, `sha256`, `sha512`). */
export type HashAlgorithm = keyof typeof HASH_ALGORITHM_SIZES;

/** How a digest is written: Nix's base-32, lowercase hex, standard base64, or SRI (`sha256-<base64>`). */
export type HashEncoding = 'nix32' | 'hex' | 'base64' | 'sri';

/** The 32 digits of Nix's base-32 ("nix32"): no `e`, `o`, `u`, `t`. */
export const NIX32_ALPHABET = '0123456789abcdfghijklmnpqrsvwxyz';

const NIX32_DIGIT_VALUES: ReadonlyMap<string, number> = new Map(
  [...NIX32_ALPHABET].map((character, value) => [character, value]),
);

/** Length of the nix32 form of a digest of `byteLength` bytes (sha256 → 52, sha1 → 32, md5 → 26, sha512 → 103). */
export function nix32Length(byteLength: number): number {
  return byteLength === 0 ? 0 : Math.floor((byteLength * 8 - 1) / 5) + 1;
}

/**
 * Encodes bytes in Nix's base-32: the bytes are one little-endian integer, written most significant
 * digit first (not RFC 4648). Works for any length (20-byte store path hashes, 32-byte sha256 …).
 */
export function encodeNix32(bytes: Uint8Array): string {
  const length = nix32Length(bytes.length);
  let out = '';
  for (let n = length - 1; n >= 0; n--) {
    const bit = n * 5;
    const i = bit >> 3;
    const j = bit & 7;
    const low = (bytes[i] ?? 0) >> j;
    const high = i + 1 < bytes.length ? (bytes[i + 1] ?? 0) << (8 - j) : 0;
    out += NIX32_ALPHABET[(low | high) & 0x1f];
  }
  return out;
}

/**
 * Decodes Nix's base-32 into `byteLength` bytes, with Nix's rules: only lowercase digits of
 * {@link NIX32_ALPHABET}, exactly {@link nix32Length} characters, and no bits beyond the last byte
 * (so the first character of a sha256 is `0` or `1`). Returns undefined when the text is invalid.
 */
export function decodeNix32(text: string, byteLength: number): Buffer | undefined {
  if (text.length !== nix32Length(byteLength)) return undefined;
  const bytes = Buffer.alloc(byteLength);
  for (let n = 0; n < text.length; n++) {
    const digit = NIX32_DIGIT_VALUES.get(text.charAt(text.length - n - 1));
    if (digit === undefined) return undefined;
    const bit = n * 5;
    const i = bit >> 3;
    const j = bit & 7;
    bytes[i] = (bytes[i] ?? 0) | ((digit << j) & 0xff);
    const carry = digit >> (8 - j);
    if (i + 1 < byteLength) bytes[i + 1] = (bytes[i + 1] ?? 0) | carry;
    else if (carry !== 0) return undefined;
  }
  return bytes;
}

/** The result of {@link parseHash}. */
export interface ParsedHash {
  /** The algorithm, from the text's prefix or from `expectedAlgorithm`. */
  readonly algorithm: HashAlgorithm;
  /** The raw digest. */
  readonly digest: Buffer;
  /** The encoding the text used. */
  readonly encoding: HashEncoding;
}

/** Options of {@link parseHash}. */
export interface ParseHashOptions {
  /**
   * The algorithm the context requires (like `--type sha256`). A text without a prefix needs it;
   * a text whose prefix names another algorithm is rejected.
   */
  readonly expectedAlgorithm?: HashAlgorithm | undefined;
}

function shown(text: string): string {
  return text.length > 120 ? `${text.slice(0, 117)}...` : text;
}

function invalidHash(message: string): never {
  throw nixError(
    'PIDEPLOY_HASH_INVALID',
    message,
    'give a sha256 as 52 nix32 characters (nix-prefetch-url output), 64 hex digits, or SRI `sha256-<base64>`',
  );
}

function isHashAlgorithm(name: string): name is HashAlgorithm {
  return Object.hasOwn(HASH_ALGORITHM_SIZES, name);
}

const BASE64_DIGITS = /^[A-Za-z0-9+/]*$/u;

function decodeBase64Strict(text: string, byteLength: number): Buffer | undefined {
  const unpadded = text.replace(/={1,2}$/u, '');
  if (!BASE64_DIGITS.test(unpadded)) return undefined;
  // Padding, when present, must complete the last quantum (Nix also accepts unpadded SRI).
  if (unpadded.length !== text.length && text.length % 4 !== 0) return undefined;
  const decoded = Buffer.from(unpadded, 'base64');
  return decoded.length === byteLength ? decoded : undefined;
}

/**
 * Parses a hash the way Nix's `Hash::parseAny` does (Nix 2.8): `<algo>:<hex|nix32|base64>`,
 * SRI `<algo>-<base64>`, or a bare `<hex|nix32|base64>` whose algorithm comes from
 * `expectedAlgorithm`. Without SRI the encoding is told apart by length only (sha256: 64 hex,
 * 52 nix32, 44 base64). Hex may be upper case; nix32 may not, and must not set bits beyond the digest.
 * Stricter than Nix in one way: base64 may carry only correct `=` padding, nothing after it.
 * @throws PideployError `PIDEPLOY_HASH_INVALID` with a one-line message and hint.
 */
export function parseHash(text: string, options: ParseHashOptions = {}): ParsedHash {
  let rest = text;
  let prefixAlgorithm: string | undefined;
  let isSri = false;
  const colon = text.indexOf(':');
  if (colon >= 0) {
    prefixAlgorithm = text.slice(0, colon);
    rest = text.slice(colon + 1);
  } else {
    const dash = text.indexOf('-');
    if (dash >= 0) {
      prefixAlgorithm = text.slice(0, dash);
      rest = text.slice(dash + 1);
      isSri = true;
    }
  }
  if (prefixAlgorithm !== undefined && !isHashAlgorithm(prefixAlgorithm)) {
    invalidHash(`unknown hash algorithm '${shown(prefixAlgorithm)}' in hash '${shown(text)}'`);
  }
  const expected = options.expectedAlgorithm;
  if (prefixAlgorithm === undefined && expected === undefined) {
    invalidHash(`hash '${shown(text)}' does not include a type, nor is the type otherwise known from context`);
  }
  if (prefixAlgorithm !== undefined && expected !== undefined && prefixAlgorithm !== expected) {
    invalidHash(`hash '${shown(text)}' should have type '${expected}'`);
  }
  const algorithm = (prefixAlgorithm ?? expected) as HashAlgorithm;
  const size = HASH_ALGORITHM_SIZES[algorithm];

  if (!isSri && rest.length === size * 2) {
    if (!/^[0-9a-fA-F]*$/u.test(rest)) invalidHash(`invalid base-16 hash '${shown(rest)}'`);
    return { algorithm, digest: Buffer.from(rest, 'hex'), encoding: 'hex' };
  }
  if (!isSri && rest.length === nix32Length(size)) {
    const digest = decodeNix32(rest, size);
    if (digest === undefined) invalidHash(`invalid base-32 hash '${shown(rest)}'`);
    return { algorithm, digest, encoding: 'nix32' };
  }
  if (isSri || rest.length === Math.ceil(size / 3) * 4) {
    const digest = decodeBase64Strict(rest, size);
    if (digest === undefined) invalidHash(`invalid ${isSri ? 'SRI' : 'base-64'} hash '${shown(text)}'`);
    return { algorithm, digest, encoding: isSri ? 'sri' : 'base64' };
  }
  return invalidHash(`hash '${shown(rest)}' has wrong length for hash type '${algorithm}'`);
}

/** Options of {@link formatHash}. */
export interface FormatHashOptions {
  /** The digest's algorithm; by default inferred from its length (16 md5, 20 sha1, 32 sha256, 64 sha512). */
  readonly algorithm?: HashAlgorithm | undefined;
  /** Prefix hex/nix32/base64 with `<algo>:` (as `nix-store -q --hash` prints). Ignored for SRI. */
  readonly prefixed?: boolean | undefined;
}

function algorithmForDigest(digest: Uint8Array): HashAlgorithm {
  for (const [name, size] of Object.entries(HASH_ALGORITHM_SIZES)) {
    if (size === digest.length) return name as HashAlgorithm;
  }
  throw nixError(
    'PIDEPLOY_HASH_INVALID',
    `a ${digest.length}-byte digest matches no hash algorithm`,
    'pass a 16/20/32/64-byte md5/sha1/sha256/sha512 digest',
  );
}

/**
 * Writes a digest as nix32 (`0mdqa9…`), hex, base64 or SRI (`sha256-47DEQ…=`), like
 * `nix hash to-base32 | to-base16 | to-base64 | to-sri`.
 */
export function formatHash(digest: Uint8Array, encoding: HashEncoding, options: FormatHashOptions = {}): string {
  const algorithm = options.algorithm ?? algorithmForDigest(digest);
  if (digest.length !== HASH_ALGORITHM_SIZES[algorithm]) {
    throw nixError(
      'PIDEPLOY_HASH_INVALID',
      `a ${digest.length}-byte digest is not a ${algorithm} digest`,
      `a ${algorithm} digest has ${HASH_ALGORITHM_SIZES[algorithm]} bytes`,
    );
  }
  const bytes = Buffer.from(digest.buffer, digest.byteOffset, digest.byteLength);
  if (encoding === 'sri') return `${algorithm}-${bytes.toString('base64')}`;
  const body =
    encoding === 'nix32' ? encodeNix32(bytes) : encoding === 'hex' ? bytes.toString('hex') : bytes.toString('base64');
  return options.prefixed === true ? `${algorithm}:${body}` : body;
}

/** sha256 of bytes or a UTF-8 string, as a Buffer. */
export function sha256(data: Uint8Array | string): Buffer {
  return createHash('sha256').update(data).digest();
}

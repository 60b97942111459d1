import { nixError } from './errors.js';
import { NIX32_ALPHABET, encodeNix32, parseHash, sha256 } from './hash.js';

/** The default Nix store directory. */
export const DEFAULT_STORE_DIR = '/nix/store';

/** Length of the nix32 hash part of a store path (160 bits). */
export const STORE_PATH_HASH_LENGTH = 32;

/** Longest store path name Nix accepts. */
export const STORE_PATH_NAME_MAX_LENGTH = 211;

const NAME_CHARACTERS = /^[0-9a-zA-Z+\-._?=]+$/u;

/**
 * Why `name` is not a valid store path name, or undefined when it is. Rules: 1–211 characters
 * from `[0-9a-zA-Z+-._?=]` (Nix 2.8), and, as newer Nix also requires, not `.` or `..` and not
 * starting with `.-` or `..-`.
 */
export function describeInvalidStorePathName(name: string): string | undefined {
  if (name.length === 0) return 'it is empty';
  if (name.length > STORE_PATH_NAME_MAX_LENGTH) return `it is longer than ${STORE_PATH_NAME_MAX_LENGTH} characters`;
  if (!NAME_CHARACTERS.test(name)) {
    const bad = [...name].find((character) => !NAME_CHARACTERS.test(character)) ?? '?';
    return `it contains the character ${JSON.stringify(bad)} (allowed: letters, digits and + - . _ ? =)`;
  }
  if (name === '.' || name === '..') return `it is '${name}'`;
  if (name.startsWith('.-') || name.startsWith('..-')) return "it starts with '.-' or '..-'";
  return undefined;
}

/** True when `name` can be the name part of a store path (see {@link describeInvalidStorePathName}). */
export function isValidStorePathName(name: string): boolean {
  return describeInvalidStorePathName(name) === undefined;
}

/**
 * Throws unless `name` is a valid store path name.
 * @throws PideployError `PIDEPLOY_STORE_PATH_INVALID`.
 */
export function validateStorePathName(name: string): void {
  const problem = describeInvalidStorePathName(name);
  if (problem !== undefined) {
    throw nixError(
      'PIDEPLOY_STORE_PATH_INVALID',
      `'${name.length > 80 ? `${name.slice(0, 77)}...` : name}' is not a valid store path name: ${problem}`,
      'use 1-211 characters from letters, digits and + - . _ ? = (e.g. "source")',
    );
  }
}

/** XOR-folds a digest to `size` bytes, as Nix's `compressHash` does (sha256 → 20 bytes for store paths). */
export function compressHash(digest: Uint8Array, size: number): Buffer {
  const out = Buffer.alloc(size);
  for (let i = 0; i < digest.length; i++) out[i % size] = (out[i % size] as number) ^ (digest[i] as number);
  return out;
}

/**
 * Nix's `makeStorePath(type, hash, name)`: `<storeDir>/<nix32(compress20(sha256("<type>:sha256:<hex>:<storeDir>:<name>")))>-<name>`.
 * @throws PideployError `PIDEPLOY_STORE_PATH_INVALID` for a bad name.
 */
export function makeStorePath(type: string, innerSha256: Uint8Array, name: string, storeDir: string = DEFAULT_STORE_DIR): string {
  validateStorePathName(name);
  const fingerprint = `${type}:sha256:${Buffer.from(innerSha256).toString('hex')}:${storeDir}:${name}`;
  return `${storeDir}/${encodeNix32(compressHash(sha256(fingerprint), 20))}-${name}`;
}

/** Input of {@link makeFixedOutputPath}: a recursive (NAR) or flat (file) sha256 fixed output. */
export type FixedOutputPathInput =
  | {
      /** Store path name, e.g. `source` (what `builtins.fetchTarball` uses by default). */
      readonly name: string;
      /** NAR-serialise the contents (`fetchTarball`, `nix-prefetch-url --unpack`). */
      readonly recursive: true;
      /** sha256 of the NAR: raw 32 bytes, or any text form `parseHash` accepts. */
      readonly narHash: Uint8Array | string;
      /** Store directory (default `/nix/store`). */
      readonly storeDir?: string | undefined;
    }
  | {
      /** Store path name. */
      readonly name: string;
      /** Hash the file's bytes (`fetchurl`, `nix-prefetch-url` without `--unpack`). */
      readonly recursive: false;
      /** sha256 of the file: raw 32 bytes, or any text form `parseHash` accepts. */
      readonly fileHash: Uint8Array | string;
      /** Store directory (default `/nix/store`). */
      readonly storeDir?: string | undefined;
    };

function sha256Digest(value: Uint8Array | string): Buffer {
  if (typeof value === 'string') return parseHash(value, { expectedAlgorithm: 'sha256' }).digest;
  if (value.length !== 32) {
    throw nixError('PIDEPLOY_HASH_INVALID', `a sha256 digest has 32 bytes, got ${value.length}`, 'pass the raw digest or its nix32/hex/SRI text');
  }
  return Buffer.from(value);
}

/**
 * The store path of a fixed-output sha256 path, as `nix-store --print-fixed-path [--recursive] sha256 <hash> <name>`
 * prints it (Nix 2.8): for `recursive` the fingerprint type is `source` with the NAR hash; for flat
 * files it is `output:out` with `sha256("fixed:out:sha256:<hex>:")`. This is where
 * `builtins.fetchTarball { sha256; }` puts (and first looks for) its result.
 * @throws PideployError `PIDEPLOY_HASH_INVALID`, `PIDEPLOY_STORE_PATH_INVALID`.
 */
export function makeFixedOutputPath(input: FixedOutputPathInput): string {
  const storeDir = input.storeDir ?? DEFAULT_STORE_DIR;
  if (input.recursive) return makeStorePath('source', sha256Digest(input.narHash), input.name, storeDir);
  const inner = sha256(`fixed:out:sha256:${sha256Digest(input.fileHash).toString('hex')}:`);
  return makeStorePath('output:out', inner, input.name, storeDir);
}

/** A store path split into its parts. */
export interface ParsedStorePath {
  /** The store directory, e.g. `/nix/store`. */
  readonly storeDir: string;
  /** The 32-character nix32 hash part. */
  readonly hashPart: string;
  /** The name part. */
  readonly name: string;
}

/**
 * Splits `/nix/store/<hash>-<name>` (no trailing components) and checks both parts.
 * @throws PideployError `PIDEPLOY_STORE_PATH_INVALID`.
 */
export function parseStorePath(storePath: string, storeDir: string = DEFAULT_STORE_DIR): ParsedStorePath {
  const invalid = (why: string): never => {
    throw nixError(
      'PIDEPLOY_STORE_PATH_INVALID',
      `'${storePath.length > 120 ? `${storePath.slice(0, 117)}...` : storePath}' is not a store path: ${why}`,
      `a store path looks like ${storeDir}/<32 nix32 characters>-<name>`,
    );
  };
  if (!storePath.startsWith(`${storeDir}/`)) invalid(`it is not directly inside ${storeDir}`);
  const base = storePath.slice(storeDir.length + 1);
  if (base.includes('/')) invalid('it has components after the store path');
  const hashPart = base.slice(0, STORE_PATH_HASH_LENGTH);
  if (hashPart.length !== STORE_PATH_HASH_LENGTH || [...hashPart].some((character) => !NIX32_ALPHABET.includes(character))) {
    invalid('the hash part is not 32 nix32 characters');
  }
  if (base.charAt(STORE_PATH_HASH_LENGTH) !== '-') invalid("the hash part is not followed by '-'");
  const name = base.slice(STORE_PATH_HASH_LENGTH + 1);
  const problem = describeInvalidStorePathName(name);
  if (problem !== undefined) invalid(`its name is invalid: ${problem}`);
  return { storeDir, hashPart, name };
}

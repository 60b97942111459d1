import { createPublicKey, verify } from 'node:crypto';
import { PideployError } from '@pideploy/core';
import { DEFAULT_STORE_DIR, formatHash, parseHash, parseStorePath } from '@pideploy/nix';

/**
 * Nix binary-cache metadata, pure: the `.narinfo` format, the fingerprint Nix signs, ed25519
 * signature checks and the `name:base64` key format. No I/O.
 */

/** One `<hash>.narinfo` of a binary cache, as Nix writes it (Nix 2.8 `NarInfo::to_string`). */
export interface NarInfo {
  /** The store path it describes (`StorePath:`). */
  readonly storePath: string;
  /** The NAR file, relative to the cache root (`URL:`, e.g. `nar/<filehash>.nar.zst`). */
  readonly url: string;
  /** How the NAR file is compressed (`Compression:`; Nix reads a missing field as `bzip2`). */
  readonly compression: string;
  /** Hash of the (compressed) file (`FileHash:`), if given. */
  readonly fileHash: string | undefined;
  /** Size of the (compressed) file in bytes (`FileSize:`), if given. */
  readonly fileSize: number | undefined;
  /** sha256 of the uncompressed NAR (`NarHash:`, `sha256:<nix32>`). */
  readonly narHash: string;
  /** Size of the uncompressed NAR in bytes (`NarSize:`). */
  readonly narSize: number;
  /** Full store paths it refers to (`References:` holds base names). */
  readonly references: readonly string[];
  /** The deriver's full store path (`Deriver:`), if known. */
  readonly deriver: string | undefined;
  /** Signatures `name:base64` (one `Sig:` line each). */
  readonly signatures: readonly string[];
  /** Content address (`CA:`), for content-addressed paths. */
  readonly contentAddress: string | undefined;
}

/** A public key of a binary cache as Nix prints it: `name:base64(32 bytes)`. */
export interface CachePublicKey {
  /** The key's name (the part before the colon; what `Sig:` lines start with). */
  readonly name: string;
  /** The raw 32-byte ed25519 public key. */
  readonly key: Buffer;
}

function narinfoError(message: string): PideployError {
  return new PideployError({
    code: 'PIDEPLOY_CACHE_NARINFO_INVALID',
    message,
    hint: 'the binary cache directory holds a damaged or foreign .narinfo: push to a fresh directory',
  });
}

/**
 * Parses a `.narinfo` (`Key: value` lines). Unknown keys are ignored, as Nix does.
 * @throws PideployError `PIDEPLOY_CACHE_NARINFO_INVALID` without StorePath, URL, NarHash or NarSize.
 */
export function parseNarInfo(text: string, storeDir: string = DEFAULT_STORE_DIR): NarInfo {
  const fields = new Map<string, string>();
  const signatures: string[] = [];
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    const colon = line.indexOf(': ');
    if (colon <= 0) throw narinfoError(`a .narinfo line is not "Key: value": ${JSON.stringify(line.slice(0, 80))}`);
    const key = line.slice(0, colon);
    const value = line.slice(colon + 2);
    if (key === 'Sig') signatures.push(value);
    else fields.set(key, value);
  }
  const required = (key: string): string => {
    const value = fields.get(key);
    if (value === undefined || value === '') throw narinfoError(`a .narinfo has no ${key}:${fields.has('StorePath') ? ` (${fields.get('StorePath')})` : ''}`);
    return value;
  };
  const size = (key: string, value: string | undefined): number | undefined => {
    if (value === undefined) return undefined;
    if (!/^[0-9]+$/u.test(value)) throw narinfoError(`${key} is not a number in the .narinfo of ${fields.get('StorePath') ?? '?'}: ${value}`);
    return Number(value);
  };
  const storePath = required('StorePath');
  const full = (base: string) => `${storeDir}/${base}`;
  const references = (fields.get('References') ?? '').split(' ').filter((base) => base !== '');
  const deriver = fields.get('Deriver');
  return {
    storePath,
    url: required('URL'),
    compression: fields.get('Compression') ?? 'bzip2',
    fileHash: fields.get('FileHash'),
    fileSize: size('FileSize', fields.get('FileSize')),
    narHash: required('NarHash'),
    narSize: size('NarSize', required('NarSize')) as number,
    references: references.map(full),
    deriver: deriver === undefined || deriver === '' || deriver === 'unknown-deriver' ? undefined : full(deriver),
    signatures,
    contentAddress: fields.get('CA') || undefined,
  };
}

/** The file name of a store path's narinfo in a binary cache: `<hash part>.narinfo`. */
export function narInfoFileName(storePath: string, storeDir: string = DEFAULT_STORE_DIR): string {
  return `${parseStorePath(storePath, storeDir).hashPart}.narinfo`;
}

/**
 * What Nix signs for a store path (`ValidPathInfo::fingerprint`):
 * `1;<path>;sha256:<nix32 NAR hash>;<NAR size>;<references, full paths, sorted, comma-separated>`.
 */
export function narInfoFingerprint(info: Pick<NarInfo, 'storePath' | 'narHash' | 'narSize' | 'references'>): string {
  const narHash = formatHash(parseHash(info.narHash, { expectedAlgorithm: 'sha256' }).digest, 'nix32', { prefixed: true });
  return `1;${info.storePath};${narHash};${info.narSize};${[...info.references].sort().join(',')}`;
}

/**
 * Parses a cache public key (`nix-store --generate-binary-cache-key` output, what
 * `trusted-public-keys` lists): `name:base64` of 32 bytes.
 * @throws PideployError `PIDEPLOY_CACHE_KEY_INVALID`.
 */
export function parseCachePublicKey(text: string): CachePublicKey {
  const trimmed = text.trim();
  const colon = trimmed.indexOf(':');
  const name = trimmed.slice(0, colon);
  const key = Buffer.from(trimmed.slice(colon + 1), 'base64');
  if (colon <= 0 || /\s/u.test(trimmed) || key.length !== 32 || key.toString('base64') !== trimmed.slice(colon + 1)) {
    throw new PideployError({
      code: 'PIDEPLOY_CACHE_KEY_INVALID',
      message: `not a binary-cache public key (name:base64 of 32 bytes): ${JSON.stringify(trimmed.length > 80 ? `${trimmed.slice(0, 77)}...` : trimmed)}`,
      hint: 'use the contents of the .public file that generateCacheKey (nix-store --generate-binary-cache-key) wrote',
    });
  }
  return { name, key };
}

/**
 * The public key that belongs to a Nix secret key (`name:base64` of 64 bytes: libsodium's seed
 * followed by the public key). The secret text is only read here, never kept or shown.
 * @throws PideployError `PIDEPLOY_CACHE_KEY_INVALID` (the message never contains the secret).
 */
export function publicKeyOfSecretKey(secretText: string): string {
  const trimmed = secretText.trim();
  const colon = trimmed.indexOf(':');
  const raw = Buffer.from(trimmed.slice(colon + 1), 'base64');
  if (colon <= 0 || raw.length !== 64) {
    throw new PideployError({
      code: 'PIDEPLOY_CACHE_KEY_INVALID',
      message: 'the secret key file does not hold a Nix binary-cache secret key (name:base64 of 64 bytes)',
      hint: 'use the .secret file that generateCacheKey (nix-store --generate-binary-cache-key) wrote',
    });
  }
  return `${trimmed.slice(0, colon)}:${raw.subarray(32).toString('base64')}`;
}

/** DER prefix of an ed25519 SubjectPublicKeyInfo; the raw 32-byte key follows it. */
const ED25519_SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');

/**
 * Whether `info` carries a valid signature by one of `publicKeys` (what Nix checks before it
 * accepts a substitute when `require-sigs` is on).
 */
export function hasValidSignature(info: Pick<NarInfo, 'storePath' | 'narHash' | 'narSize' | 'references' | 'signatures'>, publicKeys: readonly CachePublicKey[]): boolean {
  const fingerprint = Buffer.from(narInfoFingerprint(info), 'utf8');
  return info.signatures.some((signature) => {
    const colon = signature.indexOf(':');
    const name = signature.slice(0, colon);
    const bytes = Buffer.from(signature.slice(colon + 1), 'base64');
    if (colon <= 0 || bytes.length !== 64) return false;
    return publicKeys.some((publicKey) => {
      if (publicKey.name !== name) return false;
      const keyObject = createPublicKey({ key: Buffer.concat([ED25519_SPKI_PREFIX, publicKey.key]), format: 'der', type: 'spki' });
      return verify(null, fingerprint, keyObject, bytes);
    });
  });
}

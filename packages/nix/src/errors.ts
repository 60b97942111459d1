import { PideployError } from '@pideploy/core';

/**
 * Error codes raised by `@pideploy/nix`. Every error is a `PideployError` with one of these codes,
 * a one-line message (what happened) and a one-line hint (what to do).
 */
export type NixErrorCode =
  /** A hash string could not be parsed (encoding, length, alphabet, algorithm). */
  | 'PIDEPLOY_HASH_INVALID'
  /** A file in a tree cannot be put into a NAR (socket, fifo, device). */
  | 'PIDEPLOY_NAR_UNSUPPORTED_FILE_TYPE'
  /** A file changed (shrank) while it was being serialised. */
  | 'PIDEPLOY_NAR_FILE_CHANGED'
  /** A directory entry name cannot appear in a NAR (empty, `.`, `..`, `/`, NUL, duplicate). */
  | 'PIDEPLOY_NAR_INVALID_NAME'
  /** A path to hash could not be read. */
  | 'PIDEPLOY_NAR_READ_FAILED'
  /** The archive is truncated or damaged (bad gzip data, bad tar checksum, stream ended early). */
  | 'PIDEPLOY_ARCHIVE_CORRUPT'
  /** The archive uses a feature this reader does not implement (xz, zip, sparse files …). */
  | 'PIDEPLOY_ARCHIVE_UNSUPPORTED'
  /** An archive member would escape the unpack directory or cannot be unpacked the way Nix does. */
  | 'PIDEPLOY_ARCHIVE_UNSAFE'
  /** The archive unpacks to more bytes than allowed. */
  | 'PIDEPLOY_ARCHIVE_TOO_LARGE'
  /** `builtins.fetchTarball` (Nix 2.8) would reject the archive's top level. */
  | 'PIDEPLOY_ARCHIVE_TOP_LEVEL'
  /** A store path or store path name is malformed. */
  | 'PIDEPLOY_STORE_PATH_INVALID';

/** Builds a PideployError with one of this package's codes. */
export function nixError(code: NixErrorCode, message: string, hint: string, cause?: unknown): PideployError {
  return new PideployError({ code, message, hint, cause });
}

/**
 * Renders raw name bytes for one-line messages: decoded as UTF-8 (invalid sequences become
 * U+FFFD), control characters (Unicode Cc) escaped (`\n`, `\t`, `\x1b` …).
 */
export function displayBytes(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
    .toString('utf8')
    .replace(/\p{Cc}/gu, (character) =>
      character === '\n' ? '\\n' : character === '\t' ? '\\t' : `\\x${character.charCodeAt(0).toString(16).padStart(2, '0')}`,
    );
}

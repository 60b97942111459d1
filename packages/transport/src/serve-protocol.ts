import { PideployError } from '@pideploy/core';

/*
 * The legacy SSH store protocol that `nix-store --serve --write` speaks on stdin/stdout
 * (Nix 2.8 `serve-protocol.hh`, `nix-store.cc` opServe; reference: nix-formats.md §0 and §6).
 * Pure encoders and a pull-based decoder: no processes, no sockets.
 */

/** First u64 the client sends (`SERVE_MAGIC_1`). */
export const SERVE_MAGIC_CLIENT = 0x390c9deb;
/** First u64 the server answers (`SERVE_MAGIC_2`). */
export const SERVE_MAGIC_SERVER = 0x5452eecb;
/** The protocol version pideploy speaks: 2.7, what Nix 2.8 … 2.34 send, understood by every Nix ≥ 2.4. */
export const SERVE_PROTOCOL_VERSION = 0x207;
/** The lowest server version pideploy accepts: 2.5, the first with `cmdAddToStoreNar`. */
export const SERVE_PROTOCOL_MIN_SERVER_VERSION = 0x205;

/** Command codes of the serve protocol (1 and 9 copy to a target; 7 and 2 read what it has). */
export const ServeCommand = {
  queryValidPaths: 1,
  queryPathInfos: 2,
  dumpStorePath: 3,
  importPaths: 4,
  queryClosure: 7,
  addToStoreNar: 9,
} as const;

const ZERO = Buffer.alloc(8);

/** `u64(n)`: 8 bytes little-endian. Numbers must be non-negative safe integers. */
export function encodeU64(value: number | bigint | boolean): Buffer {
  const big = typeof value === 'boolean' ? (value ? 1n : 0n) : BigInt(value);
  if (big < 0n || big > 0xffff_ffff_ffff_ffffn) throw new RangeError(`u64 out of range: ${String(value)}`);
  const out = Buffer.alloc(8);
  out.writeBigUInt64LE(big, 0);
  return out;
}

/** `str(s)`: u64 length, the bytes (strings as UTF-8), zero padding to a multiple of 8. */
export function encodeString(value: string | Uint8Array): Buffer {
  const bytes = typeof value === 'string' ? Buffer.from(value, 'utf8') : Buffer.from(value);
  const padding = (8 - (bytes.length % 8)) % 8;
  return Buffer.concat([encodeU64(bytes.length), bytes, ZERO.subarray(0, padding)]);
}

/** `strs(list)`: u64 count, then each string as {@link encodeString}. */
export function encodeStrings(values: readonly (string | Uint8Array)[]): Buffer {
  return Buffer.concat([encodeU64(values.length), ...values.map((value) => encodeString(value))]);
}

/** The client's opening: magic and version, sent together (the server answers after the magic). */
export function encodeClientHello(version: number = SERVE_PROTOCOL_VERSION): Buffer {
  return Buffer.concat([encodeU64(SERVE_MAGIC_CLIENT), encodeU64(version)]);
}

/** `cmdQueryClosure`: the reply is `strs` of the closure of `paths` (with their outputs when `includeOutputs`). */
export function encodeQueryClosure(paths: readonly string[], includeOutputs = false): Buffer {
  return Buffer.concat([encodeU64(ServeCommand.queryClosure), encodeU64(includeOutputs), encodeStrings(sortedPaths(paths))]);
}

/** `cmdQueryPathInfos`: the reply is read by {@link readPathInfos}. */
export function encodeQueryPathInfos(paths: readonly string[]): Buffer {
  return Buffer.concat([encodeU64(ServeCommand.queryPathInfos), encodeStrings(sortedPaths(paths))]);
}

/** One path's registration as `cmdQueryPathInfos` gives it (to a client of minor version ≥ 4). */
export interface ServePathInfo {
  readonly path: string;
  /** "" when none is known. */
  readonly deriver: string;
  readonly references: readonly string[];
  readonly narSize: number;
  /** `sha256:<nix32>`. */
  readonly narHash: string;
  /** "" for input-addressed paths. */
  readonly contentAddress: string;
  readonly signatures: readonly string[];
}

/**
 * Reads the reply of `cmdQueryPathInfos`: one record per VALID path asked for (the server skips
 * the others), ended by an empty path.
 */
export async function readPathInfos(reader: ServeReader): Promise<ServePathInfo[]> {
  const infos: ServePathInfo[] = [];
  for (;;) {
    const path = await reader.readString('a path info (or the end of them)');
    if (path === '') return infos;
    const deriver = await reader.readString('the deriver');
    const references = await reader.readStrings('the references');
    await reader.readU64('the download size');
    const narSize = await reader.readU64('the NAR size');
    const narHash = await reader.readString('the NAR hash');
    const contentAddress = await reader.readString('the content address');
    const signatures = await reader.readStrings('the signatures');
    infos.push({ path, deriver, references, narSize, narHash, contentAddress, signatures });
  }
}

/** Arguments of `cmdQueryValidPaths`. */
export interface QueryValidPathsRequest {
  /** Ask the server to add temporary GC roots for the valid paths (only honoured with `--write`). */
  readonly lock: boolean;
  /** Let the server substitute missing paths from its own substituters first (`--write` only). */
  readonly substitute: boolean;
  /** Store paths to check; sent sorted, as Nix sends its `StorePathSet`. */
  readonly paths: readonly string[];
}

/** `cmdQueryValidPaths`: the reply is `strs` of the paths that are valid on the server. */
export function encodeQueryValidPaths(request: QueryValidPathsRequest): Buffer {
  return Buffer.concat([
    encodeU64(ServeCommand.queryValidPaths),
    encodeU64(request.lock),
    encodeU64(request.substitute),
    encodeStrings(sortedPaths(request.paths)),
  ]);
}

/** What `cmdAddToStoreNar` registers on the server: the path's info as the local store has it. */
export interface AddToStoreNarRequest {
  /** The store path. */
  readonly path: string;
  /** The deriver, or undefined/empty for none. */
  readonly deriver?: string | undefined;
  /** sha256 of the NAR as lowercase hex (what Nix sends; the server accepts any encoding). */
  readonly narHashHex: string;
  /** Store paths this path refers to; each must already be valid on the server. */
  readonly references: readonly string[];
  /** Seconds since the epoch; 0 = "now". */
  readonly registrationTime: number;
  /** Exact byte length of the NAR that follows; must be > 0. */
  readonly narSize: number;
  /** Signatures to register (needed only when the server checks them). */
  readonly signatures: readonly string[];
  /** Content address (`fixed:r:sha256:…`), or empty for input-addressed paths. */
  readonly contentAddress?: string | undefined;
}

/**
 * The header of `cmdAddToStoreNar`. Exactly `narSize` NAR bytes must follow, then the server
 * answers `u64(1)` once the path is registered (Nix registers it only after the whole NAR arrived
 * and its hash matched).
 */
export function encodeAddToStoreNarHeader(request: AddToStoreNarRequest): Buffer {
  if (!Number.isSafeInteger(request.narSize) || request.narSize <= 0) {
    throw new RangeError(`narSize of ${request.path} must be a positive integer, not ${request.narSize}`);
  }
  return Buffer.concat([
    encodeU64(ServeCommand.addToStoreNar),
    encodeString(request.path),
    encodeString(request.deriver ?? ''),
    encodeString(request.narHashHex),
    encodeStrings(sortedPaths(request.references)),
    encodeU64(request.registrationTime),
    encodeU64(request.narSize),
    encodeU64(0), // ultimate: never claim the target built it
    encodeStrings(request.signatures),
    encodeString(request.contentAddress ?? ''),
  ]);
}

/** Sorted by code units, like Nix's `std::set<StorePath>` (store paths are ASCII). */
function sortedPaths(paths: readonly string[]): string[] {
  return [...paths].sort((left, right) => (left < right ? -1 : left > right ? 1 : 0));
}

/** Raised when the server's bytes do not follow the protocol (or the stream ends early). */
export function serveProtocolError(message: string, hint?: string): PideployError {
  return new PideployError({
    code: 'PIDEPLOY_SERVE_PROTOCOL',
    message,
    hint: hint ?? 'the remote `nix-store --serve` did not answer as Nix does; check that Nix ≥ 2.4 is installed there',
  });
}

/** Error raised by {@link ServeReader} when the stream ends before a value is complete. */
export class ServeStreamEnded extends Error {
  constructor(readonly expected: string) {
    super(`stream ended while reading ${expected}`);
    this.name = 'ServeStreamEnded';
  }
}

/** Longest string the reader accepts (store paths, hashes, signatures are far shorter). */
const MAX_STRING_LENGTH = 1 << 20;
/** Most list entries the reader accepts. */
const MAX_LIST_LENGTH = 1 << 24;

/**
 * Pull-based decoder of the server's replies over an async byte stream (the remote's stdout).
 * Every read waits for exactly the bytes it needs; a stream that ends early raises
 * {@link ServeStreamEnded} (the caller turns it into a message using the remote's stderr).
 */
export class ServeReader {
  private readonly iterator: AsyncIterator<Uint8Array>;
  private buffer: Buffer = Buffer.alloc(0);
  private ended = false;
  /** Bytes consumed so far. */
  position = 0;

  constructor(source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>) {
    this.iterator =
      Symbol.asyncIterator in source
        ? (source as AsyncIterable<Uint8Array>)[Symbol.asyncIterator]()
        : (async function* () {
            yield* source as Iterable<Uint8Array>;
          })();
  }

  private async fill(count: number, expected: string): Promise<void> {
    while (this.buffer.length < count) {
      if (this.ended) throw new ServeStreamEnded(expected);
      const next = await this.iterator.next();
      if (next.done === true) {
        this.ended = true;
        continue;
      }
      const chunk = next.value;
      if (typeof chunk === 'string') throw new TypeError('expected bytes, got a string (set no encoding on the stream)');
      this.buffer = this.buffer.length === 0 ? Buffer.from(chunk) : Buffer.concat([this.buffer, chunk]);
    }
  }

  private take(count: number): Buffer {
    const out = this.buffer.subarray(0, count);
    this.buffer = this.buffer.subarray(count);
    this.position += count;
    return out;
  }

  /** True when the stream has ended and every byte was consumed. */
  async atEnd(): Promise<boolean> {
    try {
      await this.fill(1, 'end');
      return false;
    } catch (error) {
      if (error instanceof ServeStreamEnded) return true;
      throw error;
    }
  }

  /** Reads everything up to the end of the stream (normally nothing is left) and returns it. */
  async readToEnd(): Promise<Buffer> {
    for (;;) {
      const next = this.ended ? { done: true as const, value: undefined } : await this.iterator.next();
      if (next.done === true) {
        this.ended = true;
        return this.take(this.buffer.length);
      }
      this.buffer = Buffer.concat([this.buffer, next.value]);
    }
  }

  /** Reads a u64 as a number (rejects values above 2^53 − 1). */
  async readU64(expected = 'a number'): Promise<number> {
    await this.fill(8, expected);
    const value = this.take(8).readBigUInt64LE(0);
    if (value > BigInt(Number.MAX_SAFE_INTEGER)) throw serveProtocolError(`${expected} is too large (${value})`);
    return Number(value);
  }

  /** Reads a `str`, checking that its padding is zero. */
  async readBytes(expected = 'a string'): Promise<Buffer> {
    const length = await this.readU64(`the length of ${expected}`);
    if (length > MAX_STRING_LENGTH) throw serveProtocolError(`${expected} is ${length} bytes long, more than the protocol ever sends`);
    const padded = (length + 7) & ~7;
    await this.fill(padded, expected);
    const bytes = Buffer.from(this.take(padded));
    for (let index = length; index < padded; index++) {
      if (bytes[index] !== 0) throw serveProtocolError(`non-zero padding after ${expected}`);
    }
    return bytes.subarray(0, length);
  }

  /** Reads a `str` as UTF-8 text. */
  async readString(expected = 'a string'): Promise<string> {
    return (await this.readBytes(expected)).toString('utf8');
  }

  /** Reads `strs` (a list or set of strings). */
  async readStrings(expected = 'a list of strings'): Promise<string[]> {
    const count = await this.readU64(`the length of ${expected}`);
    if (count > MAX_LIST_LENGTH) throw serveProtocolError(`${expected} has ${count} entries, more than the protocol ever sends`);
    const values: string[] = [];
    for (let index = 0; index < count; index++) values.push(await this.readString(expected));
    return values;
  }

  /** Reads exactly `count` raw bytes (e.g. a NAR whose size is known). */
  async readRaw(count: number, expected = 'raw bytes'): Promise<Buffer> {
    await this.fill(count, expected);
    return Buffer.from(this.take(count));
  }

  /**
   * Reads the server's hello and returns its version.
   * @throws PideployError `PIDEPLOY_SERVE_PROTOCOL` on a wrong magic (e.g. a login shell printing
   *   to stdout) or a server older than protocol 2.5.
   */
  async readServerHello(): Promise<number> {
    await this.fill(8, 'the server hello');
    const magicBytes = this.buffer.subarray(0, 8);
    const magic = magicBytes.readBigUInt64LE(0);
    if (magic !== BigInt(SERVE_MAGIC_SERVER)) {
      const printable = magicBytes.toString('latin1').replace(/[^\x20-\x7e]/gu, '.');
      throw serveProtocolError(
        `'nix-store --serve' protocol mismatch: the remote printed "${printable}…" instead of the protocol's magic`,
        'something on the remote (a login script, .bashrc, motd) writes to stdout in non-interactive sessions; make it quiet',
      );
    }
    this.take(8);
    const version = await this.readU64('the server version');
    if ((version & 0xff00) !== 0x200 || version < SERVE_PROTOCOL_MIN_SERVER_VERSION) {
      throw serveProtocolError(
        `the remote nix-store speaks serve protocol ${version >> 8}.${version & 0xff}; pideploy needs 2.5 or newer`,
        'upgrade Nix on the target (any Nix ≥ 2.4 works)',
      );
    }
    return version;
  }
}

/** One decoded client request (what {@link decodeClientStream} returns, for tests and tools). */
export type DecodedClientRequest =
  | { readonly command: 'hello'; readonly version: number }
  | { readonly command: 'queryValidPaths'; readonly lock: boolean; readonly substitute: boolean; readonly paths: readonly string[] }
  | { readonly command: 'addToStoreNar'; readonly request: AddToStoreNarRequest; readonly nar: Buffer };

/**
 * Decodes a complete client→server byte stream of a copy (hello, `cmdQueryValidPaths`,
 * `cmdAddToStoreNar` + NAR): the inverse of the encoders, used to check them against recordings.
 */
export async function decodeClientStream(stream: Uint8Array): Promise<DecodedClientRequest[]> {
  const reader = new ServeReader([stream]);
  const requests: DecodedClientRequest[] = [];
  if ((await reader.readU64('the client magic')) !== SERVE_MAGIC_CLIENT) throw serveProtocolError('not a serve protocol client stream');
  requests.push({ command: 'hello', version: await reader.readU64('the client version') });
  while (!(await reader.atEnd())) {
    const command = await reader.readU64('a command');
    if (command === ServeCommand.queryValidPaths) {
      const lock = (await reader.readU64()) !== 0;
      const substitute = (await reader.readU64()) !== 0;
      requests.push({ command: 'queryValidPaths', lock, substitute, paths: await reader.readStrings() });
    } else if (command === ServeCommand.addToStoreNar) {
      const path = await reader.readString();
      const deriver = await reader.readString();
      const narHashHex = await reader.readString();
      const references = await reader.readStrings();
      const registrationTime = await reader.readU64();
      const narSize = await reader.readU64();
      await reader.readU64(); // ultimate
      const signatures = await reader.readStrings();
      const contentAddress = await reader.readString();
      const nar = await reader.readRaw(narSize, 'the NAR');
      requests.push({
        command: 'addToStoreNar',
        request: { path, deriver, narHashHex, references, registrationTime, narSize, signatures, contentAddress },
        nar,
      });
    } else {
      throw serveProtocolError(`command ${command} is not one a copy sends`);
    }
  }
  return requests;
}

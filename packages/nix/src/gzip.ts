import * as zlib from 'node:zlib';
import type { ByteReader } from './byte-reader.js';
import { nixError } from './errors.js';

/*
 * gzip decoding with libarchive's member rules (what Nix 2.8 unpacks with): members follow each
 * other; after a complete member, bytes that do not start another gzip header are ignored
 * (Node's own Gunzip fails on them and drops the last output). Each member's deflate data goes
 * through zlib's raw inflater; its end is found from the inflater's consumed-input count.
 * The trailer must be present (as in libarchive); unlike libarchive we also check its CRC-32 and
 * length, so a corrupted download fails instead of hashing damaged bytes.
 */

/** Compressed bytes handed to the inflater per write: bounds the output held at once (deflate expands at most ~1032×). */
const INPUT_CHUNK = 32 * 1024;
/** Longest file name / comment field accepted in a gzip header. */
const MAX_HEADER_FIELD = 1024 * 1024;

const FLAG_HCRC = 0x02;
const FLAG_EXTRA = 0x04;
const FLAG_NAME = 0x08;
const FLAG_COMMENT = 0x10;
const FLAG_RESERVED = 0xe0;

function corrupt(message: string, cause?: unknown): never {
  throw nixError(
    'PIDEPLOY_ARCHIVE_CORRUPT',
    message,
    'the download is damaged or not a .tar.gz: download it again, or pass the right compression',
    cause,
  );
}

const CRC_TABLE = (() => {
  const table = new Int32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c;
  }
  return table;
})();

type Crc32 = (data: Uint8Array, value: number) => number;

const crc32: Crc32 =
  typeof (zlib as { crc32?: Crc32 }).crc32 === 'function'
    ? (zlib as unknown as { crc32: Crc32 }).crc32
    : (data, value) => {
        let c = ~value;
        for (let i = 0; i < data.length; i++) c = (CRC_TABLE[(c ^ (data[i] as number)) & 0xff] as number) ^ (c >>> 8);
        return ~c >>> 0;
      };

/** True when `bytes` starts like a gzip member (magic 1f 8b, method 8 = deflate). */
export function looksLikeGzip(bytes: Uint8Array): boolean {
  return bytes.length >= 3 && bytes[0] === 0x1f && bytes[1] === 0x8b && bytes[2] === 0x08;
}

async function readMemberHeader(reader: ByteReader): Promise<void> {
  const fixed = await reader.readExact(10);
  if (fixed === undefined) corrupt('truncated gzip input: the stream ends inside a gzip header');
  if (!looksLikeGzip(fixed)) corrupt('not gzip data: the stream does not start with a gzip header (1f 8b 08)');
  const flags = fixed[3] as number;
  if ((flags & FLAG_RESERVED) !== 0) corrupt('bad gzip header: reserved flag bits are set');
  if ((flags & FLAG_EXTRA) !== 0) {
    const lengthBytes = await reader.readExact(2);
    if (lengthBytes === undefined) corrupt('truncated gzip input: the stream ends inside a gzip header');
    const extraLength = lengthBytes.readUInt16LE(0);
    if ((await reader.skip(extraLength)) !== extraLength) corrupt('truncated gzip input: the stream ends inside a gzip header');
  }
  for (const flag of [FLAG_NAME, FLAG_COMMENT]) {
    if ((flags & flag) !== 0 && (await reader.readUntil(0, MAX_HEADER_FIELD)) === undefined) {
      corrupt('bad gzip header: unterminated or overlong file name / comment field');
    }
  }
  if ((flags & FLAG_HCRC) !== 0 && (await reader.skip(2)) !== 2) {
    corrupt('truncated gzip input: the stream ends inside a gzip header');
  }
}

function writeTo(inflater: zlib.InflateRaw, chunk: Buffer, failure: { error?: Error }): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (error: Error): void => reject(error);
    inflater.once('error', onError);
    inflater.write(chunk, (error) => {
      inflater.off('error', onError);
      if (error !== undefined && error !== null) reject(error);
      else if (failure.error !== undefined) reject(failure.error);
      else resolve();
    });
  });
}

async function* inflateMember(reader: ByteReader): AsyncGenerator<Buffer> {
  const inflater = zlib.createInflateRaw({ chunkSize: 64 * 1024 });
  const output: Buffer[] = [];
  const failure: { error?: Error } = {};
  let ended = false;
  const endedPromise = new Promise<void>((resolve) => {
    inflater.on('end', () => {
      ended = true;
      resolve();
    });
  });
  inflater.on('data', (chunk: Buffer) => output.push(chunk));
  inflater.on('error', (error: Error) => {
    failure.error = error;
  });
  let crc = 0;
  let length = 0;
  let written = 0;
  const flush = function* (): Generator<Buffer> {
    while (output.length > 0) {
      const chunk = output.shift() as Buffer;
      crc = crc32(chunk, crc);
      length = (length + chunk.length) % 0x1_0000_0000;
      yield chunk;
    }
  };
  try {
    // One write in flight while the consumer handles the previous output, so inflating (in
    // libuv's thread pool) overlaps with tar parsing and hashing on the main thread.
    let chunk = await reader.readSome(INPUT_CHUNK);
    if (chunk === undefined) corrupt('truncated gzip input: the stream ends inside compressed data');
    let writing = writeTo(inflater, chunk, failure);
    for (;;) {
      try {
        await writing;
      } catch (error) {
        corrupt(`bad gzip data: ${(error as Error).message}`, error);
      }
      written += chunk.length;
      // The inflater stops consuming at the end of the deflate stream: the rest is the trailer.
      const leftover = written - inflater.bytesWritten;
      if (leftover > 0) {
        reader.unread(chunk.subarray(chunk.length - leftover));
        break;
      }
      const next = await reader.readSome(INPUT_CHUNK);
      if (next === undefined) corrupt('truncated gzip input: the stream ends inside compressed data');
      chunk = next;
      writing = writeTo(inflater, chunk, failure);
      // Keep a rejection from being reported as unhandled while the output is consumed.
      writing.catch(() => undefined);
      yield* flush();
    }
    if (!ended) await endedPromise;
    yield* flush();
  } finally {
    inflater.destroy();
  }
  const trailer = await reader.readExact(8);
  if (trailer === undefined) corrupt('truncated gzip input: the stream ends inside a gzip trailer');
  if (trailer.readUInt32LE(0) !== crc >>> 0 || trailer.readUInt32LE(4) !== length) {
    corrupt('bad gzip data: the CRC-32 or length in the gzip trailer does not match the data');
  }
}

/**
 * Decompresses a gzip stream (one or more members) from `reader`. Bytes after a complete member
 * that do not start a new gzip member are ignored, as libarchive does.
 */
export async function* gunzip(reader: ByteReader): AsyncGenerator<Buffer, void, undefined> {
  await readMemberHeader(reader);
  yield* inflateMember(reader);
  for (;;) {
    if (!(await reader.ensure(3)) || !looksLikeGzip(reader.peek(3))) return;
    await readMemberHeader(reader);
    yield* inflateMember(reader);
  }
}

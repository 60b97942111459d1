import type { ByteReader } from './byte-reader.js';
import { displayBytes, nixError } from './errors.js';

/*
 * A streaming tar reader covering what GitHub/GitLab archives and GNU/BSD tar produce: ustar,
 * pax extended headers (`path`, `linkpath`, `size`; global headers are ignored, as libarchive
 * does), GNU long names (`L`) and long link names (`K`), base-256 numbers. Member types follow
 * libarchive's reading, which Nix 2.8 uses: unknown type flags are regular files, a `0` member
 * whose name ends in `/` is a directory, one zero block ends the archive, the end of the stream
 * at a header boundary ends it too. Sparse, multi-volume and Solaris ACL members are refused.
 */

/** What a tar member is, after libarchive's interpretation of the type flag. */
export type TarMemberKind = 'regular' | 'directory' | 'symlink' | 'hardlink' | 'character device' | 'block device' | 'fifo';

/** One tar member's header. */
export interface TarMember {
  readonly kind: TarMemberKind;
  /** Raw path bytes (pax `path`, GNU long name, or ustar prefix + name), cut at the first NUL. */
  readonly path: Buffer;
  /** Raw link target (symlinks and hard links). */
  readonly linkTarget: Buffer;
  /** Permission bits from the header. */
  readonly mode: number;
  /** Content length (regular files only; 0 otherwise). */
  readonly size: number;
}

/** Limits of {@link readTar}. */
export interface TarReadLimits {
  /** Called with each regular member's size before its data is read; throws to stop. */
  readonly admitSize?: (member: TarMember) => void;
  /** Checked between members. */
  readonly signal?: AbortSignal | undefined;
}

const BLOCK = 512;
/** Largest pax extended header or GNU long name accepted. */
const MAX_META_SIZE = 1024 * 1024;

function corrupt(message: string): never {
  throw nixError(
    'PIDEPLOY_ARCHIVE_CORRUPT',
    message,
    'the archive is truncated or damaged: download it again (and check the compression option)',
  );
}

function unsupported(message: string): never {
  throw nixError('PIDEPLOY_ARCHIVE_UNSUPPORTED', message, 'repack the archive as a plain ustar/pax/GNU tar (e.g. with GNU tar --format=pax)');
}

/** Bytes up to the first NUL. */
function cString(bytes: Buffer): Buffer {
  const end = bytes.indexOf(0);
  return end < 0 ? bytes : bytes.subarray(0, end);
}

/** libarchive's tar_atol: base-256 when the high bit is set, else octal after leading blanks. */
function parseNumber(field: Buffer): number | undefined {
  const first = field[0] ?? 0;
  if ((first & 0x80) !== 0) {
    if (first === 0xff) return undefined; // negative
    let value = first & 0x7f;
    for (let i = 1; i < field.length; i++) {
      value = value * 256 + (field[i] as number);
      if (value > Number.MAX_SAFE_INTEGER) return undefined;
    }
    return value;
  }
  let i = 0;
  while (i < field.length && (field[i] === 0x20 || field[i] === 0x09)) i++;
  let value = 0;
  for (; i < field.length; i++) {
    const c = field[i] as number;
    if (c < 0x30 || c > 0x37) break;
    value = value * 8 + (c - 0x30);
  }
  return value;
}

function checksumMatches(block: Buffer): boolean {
  const field = block.subarray(148, 156);
  for (const c of field) {
    if (c !== 0x20 && c !== 0 && (c < 0x30 || c > 0x37)) return false;
  }
  const expected = parseNumber(field);
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < BLOCK; i++) {
    const byte = i >= 148 && i < 156 ? 0x20 : (block[i] as number);
    unsigned += byte;
    signed += byte > 127 ? byte - 256 : byte;
  }
  return expected === unsigned || expected === signed;
}

function isZeroBlock(block: Buffer): boolean {
  for (let i = 0; i < BLOCK; i++) if (block[i] !== 0) return false;
  return true;
}

interface PendingMeta {
  path?: Buffer;
  linkTarget?: Buffer;
  size?: number;
}

/** Parses pax records `"<len> <key>=<value>\n"` into `meta`. */
function applyPaxRecords(data: Buffer, meta: PendingMeta, where: number): void {
  let offset = 0;
  while (offset < data.length) {
    // Trailing NUL padding ends the records.
    if (data[offset] === 0) break;
    const space = data.indexOf(0x20, offset);
    if (space < 0) corrupt(`bad pax extended header at byte ${where}: record without a length`);
    const length = Number(data.subarray(offset, space).toString('latin1'));
    if (!Number.isInteger(length) || length <= 0 || offset + length > data.length || data[offset + length - 1] !== 0x0a) {
      corrupt(`bad pax extended header at byte ${where}: malformed record`);
    }
    const record = data.subarray(space + 1, offset + length - 1);
    const equals = record.indexOf(0x3d);
    if (equals < 0) corrupt(`bad pax extended header at byte ${where}: record without '='`);
    const key = record.subarray(0, equals).toString('latin1');
    const value = record.subarray(equals + 1);
    if (key === 'path') meta.path = cString(value);
    else if (key === 'linkpath') meta.linkTarget = cString(value);
    else if (key === 'size') {
      const text = value.toString('latin1');
      if (!/^[0-9]+$/u.test(text) || Number(text) > Number.MAX_SAFE_INTEGER) corrupt(`bad pax size '${text}' at byte ${where}`);
      meta.size = Number(text);
    } else if (key.startsWith('GNU.sparse.')) {
      unsupported('the archive holds a sparse file (pax GNU.sparse.*), which pideploy does not unpack');
    }
    offset += length;
  }
}

/** A member's body: exactly `size` bytes, read at most once. */
export interface TarBody {
  readonly size: number;
  /** The body's bytes as they arrive (subarrays of the stream's buffers: copy what you keep). */
  chunks(): AsyncGenerator<Buffer, void, undefined>;
}

async function readMeta(reader: ByteReader, size: number, what: string): Promise<Buffer> {
  if (size > MAX_META_SIZE) unsupported(`the archive has a ${size}-byte ${what}, larger than the ${MAX_META_SIZE} bytes pideploy reads`);
  const data = await reader.readExact(size);
  if (data === undefined) corrupt(`truncated tar archive: the stream ends inside a ${what}`);
  const padding = (BLOCK - (size % BLOCK)) % BLOCK;
  if ((await reader.skip(padding)) !== padding) corrupt(`truncated tar archive: the stream ends inside a ${what}`);
  return Buffer.from(data);
}

/**
 * Reads tar members from `reader` and calls `onMember` for each, in archive order. For regular
 * members the body must be consumed inside the callback (what is left is skipped).
 * Stops at the first zero block or at the end of the stream at a member boundary.
 * @throws PideployError `PIDEPLOY_ARCHIVE_CORRUPT` (bad checksum, truncation), `PIDEPLOY_ARCHIVE_UNSUPPORTED`.
 */
export async function readTar(
  reader: ByteReader,
  onMember: (member: TarMember, body: TarBody) => Promise<void>,
  limits: TarReadLimits = {},
): Promise<void> {
  let meta: PendingMeta = {};
  let sawMeta = false;
  for (;;) {
    limits.signal?.throwIfAborted();
    const headerOffset = reader.position;
    const block = await reader.readExact(BLOCK);
    if (block === undefined) {
      if (reader.available > 0) {
        corrupt(
          headerOffset === 0
            ? `not a tar archive: the input has only ${reader.available} bytes, less than one tar header`
            : `truncated tar archive: the stream ends inside the header at byte ${headerOffset}`,
        );
      }
      if (sawMeta) corrupt('truncated tar archive: the stream ends after an extended header');
      return;
    }
    if (isZeroBlock(block)) {
      if (sawMeta) corrupt('truncated tar archive: an extended header is followed by the end-of-archive marker');
      return;
    }
    if (!checksumMatches(block)) {
      corrupt(
        headerOffset === 0
          ? 'not a tar archive: the first header has a bad checksum (Nix: "Damaged tar archive")'
          : `damaged tar archive: bad header checksum at byte ${headerOffset}`,
      );
    }
    const typeFlag = String.fromCharCode(block[156] as number);
    const declaredSize = parseNumber(block.subarray(124, 136));
    if (declaredSize === undefined) corrupt(`damaged tar archive: bad size field at byte ${headerOffset}`);

    // Members that only describe the next member.
    if (typeFlag === 'x' || typeFlag === 'X') {
      applyPaxRecords(await readMeta(reader, declaredSize, 'pax extended header'), meta, headerOffset);
      sawMeta = true;
      continue;
    }
    if (typeFlag === 'L' || typeFlag === 'K') {
      const value = cString(await readMeta(reader, declaredSize, 'GNU long name'));
      if (typeFlag === 'L') meta.path = value;
      else meta.linkTarget = value;
      sawMeta = true;
      continue;
    }
    if (typeFlag === 'g' || typeFlag === 'V') {
      // pax global header (e.g. GitHub's commit comment) and GNU volume label: libarchive skips them.
      await readMeta(reader, declaredSize, typeFlag === 'g' ? 'pax global header' : 'GNU volume label');
      continue;
    }
    if ('AEIMNS'.includes(typeFlag)) {
      const names: Record<string, string> = {
        A: 'Solaris ACL',
        E: 'Solaris extended attribute',
        I: 'inode metadata',
        M: 'GNU multi-volume continuation',
        N: 'old GNU long name',
        S: 'GNU sparse file',
      };
      unsupported(`the archive has a ${names[typeFlag] ?? typeFlag} member (type '${typeFlag}') at byte ${headerOffset}, which pideploy does not unpack`);
    }

    const magic = block.subarray(257, 263).toString('latin1');
    let path = cString(block.subarray(0, 100));
    if (magic === 'ustar\0') {
      const prefix = cString(block.subarray(345, 500));
      if (prefix.length > 0) path = Buffer.concat([prefix, Buffer.from('/'), path]);
    }
    if (meta.path !== undefined) path = meta.path;
    const linkTarget = meta.linkTarget ?? cString(block.subarray(157, 257));
    const size = meta.size ?? declaredSize;
    const mode = parseNumber(block.subarray(100, 108)) ?? 0;
    meta = {};
    sawMeta = false;

    let kind: TarMemberKind;
    switch (typeFlag) {
      case '1':
        kind = 'hardlink';
        break;
      case '2':
        kind = 'symlink';
        break;
      case '3':
        kind = 'character device';
        break;
      case '4':
        kind = 'block device';
        break;
      case '5':
      case 'D':
        kind = 'directory';
        break;
      case '6':
        kind = 'fifo';
        break;
      case '0':
      case '\0':
        kind = path.length > 0 && path[path.length - 1] === 0x2f ? 'directory' : 'regular';
        break;
      default:
        // POSIX: unknown type flags are regular files (libarchive does this too).
        kind = 'regular';
    }

    if (kind !== 'regular' && size > 0) {
      if (typeFlag === 'D') {
        // GNU dumpdir: the data lists the directory's names; not part of the tree.
        await reader.skip(size + ((BLOCK - (size % BLOCK)) % BLOCK));
      } else if (kind === 'hardlink') {
        unsupported(`the hard link '${displayBytes(path)}' carries ${size} bytes of data, which pideploy does not unpack`);
      } else {
        corrupt(
          `damaged tar archive: the ${kind} '${displayBytes(path)}' declares ${size} bytes of data (libarchive then fails with "Damaged tar archive")`,
        );
      }
    }
    const member: TarMember = { kind, path, linkTarget, mode, size: kind === 'regular' ? size : 0 };
    if (kind !== 'regular') {
      await onMember(member, emptyBody);
      continue;
    }

    limits.admitSize?.(member);
    let remaining = size;
    let started = false;
    const body: TarBody = {
      size,
      async *chunks() {
        if (started) throw new Error('a tar member body can be read once');
        started = true;
        while (remaining > 0) {
          const piece = await reader.readSome(Math.min(remaining, 1 << 20));
          if (piece === undefined) {
            corrupt(`truncated tar archive: the stream ends inside '${displayBytes(path)}' (${remaining} of ${size} bytes missing)`);
          }
          remaining -= piece.length;
          yield piece;
        }
      },
    };
    await onMember(member, body);
    const padding = (BLOCK - (size % BLOCK)) % BLOCK;
    const rest = remaining + padding;
    if ((await reader.skip(rest)) !== rest) {
      if (remaining > 0) {
        corrupt(`truncated tar archive: the stream ends inside '${displayBytes(path)}' (${remaining} of ${size} bytes missing)`);
      }
      corrupt(`truncated tar archive: the stream ends inside the padding of '${displayBytes(path)}'`);
    }
  }
}

const emptyBody: TarBody = {
  size: 0,
  async *chunks() {
    // no data
  },
};

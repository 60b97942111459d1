import { createHash } from 'node:crypto';
import { displayBytes, nixError } from './errors.js';

/**
 * A file-system object to serialise as a NAR, independent of where it comes from (a directory
 * on disk, a tarball being unpacked, a test fixture). Children and contents are pulled lazily, so
 * a serialiser holds one directory listing per level and one content chunk at a time.
 */
export type NarNode = NarRegularNode | NarSymlinkNode | NarDirectoryNode;

/** A regular file. */
export interface NarRegularNode {
  readonly type: 'regular';
  /** Recorded as `executable` (Nix: the owner-execute bit S_IXUSR). */
  readonly executable: boolean;
  /** Exact content length; the contents must yield exactly this many bytes. */
  readonly size: number;
  /** The contents, in order. Called once, when the serialiser reaches this file. */
  readonly contents: () => AsyncIterable<Uint8Array> | Iterable<Uint8Array>;
}

/** A symbolic link; the target is recorded verbatim (relative, absolute or dangling). */
export interface NarSymlinkNode {
  readonly type: 'symlink';
  /** The raw target bytes (or a string, written as UTF-8). */
  readonly target: Uint8Array | string;
}

/** A directory. The serialiser sorts the entries by the bytes of their names. */
export interface NarDirectoryNode {
  readonly type: 'directory';
  /** The entries (any order). Called once, when the serialiser reaches this directory. */
  readonly entries: () => Promise<readonly NarDirectoryEntry[]> | readonly NarDirectoryEntry[];
}

/** One entry of a {@link NarDirectoryNode}. */
export interface NarDirectoryEntry {
  /** Raw name bytes (or a string, written as UTF-8): not empty, not `.`/`..`, no `/` or NUL. */
  readonly name: Uint8Array | string;
  /** The entry's node, loaded when the serialiser reaches it. */
  readonly node: () => Promise<NarNode> | NarNode;
}

/** The magic string every NAR starts with. */
export const NAR_VERSION_MAGIC = 'nix-archive-1';

/** Serialised `str(s)`: u64 little-endian length, the bytes, zero padding to a multiple of 8. */
function narString(text: string): Buffer {
  const bytes = Buffer.from(text, 'utf8');
  const out = Buffer.alloc(8 + paddedLength(bytes.length));
  out.writeBigUInt64LE(BigInt(bytes.length), 0);
  bytes.copy(out, 8);
  return out;
}

function paddedLength(length: number): number {
  return (length + 7) & ~7;
}

function u64(value: number): Buffer {
  const out = Buffer.alloc(8);
  out.writeBigUInt64LE(BigInt(value), 0);
  return out;
}

const ZERO_PADDING = Buffer.alloc(8);
const TOKEN = {
  magic: narString(NAR_VERSION_MAGIC),
  open: narString('('),
  close: narString(')'),
  type: narString('type'),
  regular: narString('regular'),
  executable: narString('executable'),
  empty: narString(''),
  contents: narString('contents'),
  symlink: narString('symlink'),
  target: narString('target'),
  directory: narString('directory'),
  entry: narString('entry'),
  name: narString('name'),
  node: narString('node'),
} as const;

/** Output coalescing: small pieces are gathered and emitted as chunks of about this size. */
const FLUSH_THRESHOLD = 64 * 1024;
/** Content chunks at least this big are passed through without copying. */
const PASS_THROUGH_THRESHOLD = 16 * 1024;

class ChunkAssembler {
  private parts: Buffer[] = [];
  private length = 0;

  push(part: Buffer): void {
    this.parts.push(part);
    this.length += part.length;
  }

  get shouldFlush(): boolean {
    return this.length >= FLUSH_THRESHOLD;
  }

  take(): Buffer | undefined {
    if (this.length === 0) return undefined;
    const chunk = Buffer.concat(this.parts, this.length);
    this.parts = [];
    this.length = 0;
    return chunk;
  }
}

function toBuffer(value: Uint8Array | string): Buffer {
  if (typeof value === 'string') return Buffer.from(value, 'utf8');
  return Buffer.isBuffer(value) ? value : Buffer.from(value.buffer, value.byteOffset, value.byteLength);
}

function pushString(out: ChunkAssembler, bytes: Buffer): void {
  out.push(u64(bytes.length));
  if (bytes.length > 0) out.push(bytes);
  const padding = paddedLength(bytes.length) - bytes.length;
  if (padding > 0) out.push(ZERO_PADDING.subarray(0, padding));
}

const SLASH = 0x2f;

function checkEntryName(name: Buffer, where: string): void {
  const invalid =
    name.length === 0 ||
    name.includes(SLASH) ||
    name.includes(0) ||
    (name.length === 1 && name[0] === 0x2e) ||
    (name.length === 2 && name[0] === 0x2e && name[1] === 0x2e);
  if (invalid) {
    throw nixError(
      'PIDEPLOY_NAR_INVALID_NAME',
      `directory '${where}' has an entry named '${displayBytes(name)}', which a NAR cannot hold`,
      'NAR entry names must be non-empty, not `.` or `..`, and contain no `/` or NUL byte',
    );
  }
}

function joinForMessage(parent: string, name: Buffer): string {
  const shownName = displayBytes(name);
  return parent === '' ? shownName : parent.endsWith('/') ? `${parent}${shownName}` : `${parent}/${shownName}`;
}

async function* serialiseNode(node: NarNode, out: ChunkAssembler, where: string): AsyncGenerator<Buffer> {
  out.push(TOKEN.open);
  out.push(TOKEN.type);
  switch (node.type) {
    case 'regular': {
      out.push(TOKEN.regular);
      if (node.executable) {
        out.push(TOKEN.executable);
        out.push(TOKEN.empty);
      }
      out.push(TOKEN.contents);
      out.push(u64(node.size));
      let written = 0;
      for await (const piece of node.contents()) {
        const chunk = toBuffer(piece);
        if (chunk.length === 0) continue;
        written += chunk.length;
        if (written > node.size) break;
        if (chunk.length >= PASS_THROUGH_THRESHOLD) {
          const pending = out.take();
          if (pending !== undefined) yield pending;
          yield chunk;
        } else {
          out.push(chunk);
          if (out.shouldFlush) yield out.take() as Buffer;
        }
      }
      if (written !== node.size) {
        throw nixError(
          'PIDEPLOY_NAR_FILE_CHANGED',
          `file '${where}' has ${written > node.size ? 'more' : 'fewer'} bytes than its recorded size ${node.size}`,
          'the file changed while it was being hashed; hash it again once nothing writes to it',
        );
      }
      const padding = paddedLength(node.size) - node.size;
      if (padding > 0) out.push(ZERO_PADDING.subarray(0, padding));
      break;
    }
    case 'symlink':
      out.push(TOKEN.symlink);
      out.push(TOKEN.target);
      pushString(out, toBuffer(node.target));
      break;
    case 'directory': {
      out.push(TOKEN.directory);
      const named = (await node.entries()).map((entry) => ({ name: toBuffer(entry.name), entry }));
      // Nix orders entries by unsigned byte comparison of the names (std::map<std::string>).
      named.sort((left, right) => Buffer.compare(left.name, right.name));
      let previous: Buffer | undefined;
      for (const { name, entry } of named) {
        checkEntryName(name, where);
        if (previous !== undefined && Buffer.compare(previous, name) === 0) {
          throw nixError(
            'PIDEPLOY_NAR_INVALID_NAME',
            `directory '${where}' has two entries named '${displayBytes(name)}'`,
            'a NAR directory lists every name once',
          );
        }
        previous = name;
        out.push(TOKEN.entry);
        out.push(TOKEN.open);
        out.push(TOKEN.name);
        pushString(out, name);
        out.push(TOKEN.node);
        yield* serialiseNode(await entry.node(), out, joinForMessage(where, name));
        out.push(TOKEN.close);
        if (out.shouldFlush) yield out.take() as Buffer;
      }
      break;
    }
    default: {
      const unknown: never = node;
      throw new TypeError(`unknown NAR node type ${String((unknown as { type: unknown }).type)}`);
    }
  }
  out.push(TOKEN.close);
  if (out.shouldFlush) yield out.take() as Buffer;
}

/** Options of {@link serialiseNar}. */
export interface SerialiseNarOptions {
  /** How the root is named in error messages (a path, an archive name). */
  readonly rootLabel?: string | undefined;
}

/**
 * Serialises a tree as a NAR (`nix-store --dump` format, Nix 2.8), streaming: yields the NAR bytes
 * in chunks of about 64 KiB (large file contents pass through as read). Treat the chunks as
 * read-only; they may be kept. Directory entries are sorted by
 * the unsigned bytes of their names.
 * @throws PideployError `PIDEPLOY_NAR_INVALID_NAME`, `PIDEPLOY_NAR_FILE_CHANGED`, or whatever the node callbacks throw.
 */
export async function* serialiseNar(root: NarNode, options: SerialiseNarOptions = {}): AsyncGenerator<Buffer, void, undefined> {
  const out = new ChunkAssembler();
  out.push(TOKEN.magic);
  yield* serialiseNode(root, out, options.rootLabel ?? '');
  const rest = out.take();
  if (rest !== undefined) yield rest;
}

/** The NAR hash of a tree: what `nix-hash --type sha256` and `nix path-info` report. */
export interface NarHashResult {
  /** sha256 of the NAR bytes (32 bytes); format it with `formatHash`. */
  readonly narHash: Buffer;
  /** Length of the NAR in bytes (`nix path-info`'s narSize). */
  readonly narSize: number;
}

/** Hashes a stream of NAR bytes (sha256 and length), without keeping them. */
export async function hashNarStream(nar: AsyncIterable<Uint8Array> | Iterable<Uint8Array>): Promise<NarHashResult> {
  const hash = createHash('sha256');
  let narSize = 0;
  for await (const chunk of nar) {
    hash.update(chunk);
    narSize += chunk.length;
  }
  return { narHash: hash.digest(), narSize };
}

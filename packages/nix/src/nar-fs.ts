import type { Stats } from 'node:fs';
import { closeSync, lstatSync, openSync, readSync, readdirSync, readlinkSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { displayBytes, nixError } from './errors.js';
import { yieldToEventLoopSometimes } from './event-loop.js';
import { hashNarStream, serialiseNar, type NarHashResult, type NarNode } from './nar.js';

/** Largest read issued for one chunk of file contents. */
const READ_CHUNK_SIZE = 1024 * 1024;
/** Files up to this size are read with one synchronous open/read/close. */
const SYNC_READ_LIMIT = 256 * 1024;

/*
 * Speed: the thread-pool hop of each async fs call dominates for trees of small files (nixpkgs
 * has ~40k), so metadata and small files are read with synchronous calls (a few µs each), and
 * big files asynchronously in 1 MiB chunks; the walk yields to the event loop every 10 ms.
 */

function readSmallFile(path: Buffer, size: number): Buffer {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (error) {
    readFailed(path, error);
  }
  try {
    const data = Buffer.allocUnsafe(size);
    let filled = 0;
    while (filled < size) {
      const bytesRead = readSync(fd, data, filled, size - filled, filled);
      if (bytesRead === 0) break;
      filled += bytesRead;
    }
    // A short read (the file shrank) ends the contents early; the serialiser reports it.
    return filled === size ? data : data.subarray(0, filled);
  } catch (error) {
    readFailed(path, error);
  } finally {
    closeSync(fd);
  }
}
const SLASH = Buffer.from('/');

function pathBytes(path: string | Uint8Array): Buffer {
  return typeof path === 'string' ? Buffer.from(path, 'utf8') : Buffer.from(path);
}

function joinPath(directory: Buffer, name: Buffer): Buffer {
  return directory.length > 0 && directory[directory.length - 1] === 0x2f
    ? Buffer.concat([directory, name])
    : Buffer.concat([directory, SLASH, name]);
}

function readFailed(path: Buffer, error: unknown): never {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  throw nixError(
    'PIDEPLOY_NAR_READ_FAILED',
    `cannot read '${displayBytes(path)}'${code === undefined ? '' : ` (${code})`}`,
    code === 'ENOENT' ? 'check that the path exists' : 'check the permissions of the path and its parent directories',
    error,
  );
}

function unsupportedKind(stats: Stats): string | undefined {
  if (stats.isFIFO()) return 'fifo';
  if (stats.isSocket()) return 'socket';
  if (stats.isCharacterDevice()) return 'character device';
  if (stats.isBlockDevice()) return 'block device';
  return undefined;
}

async function* readFileContents(path: Buffer, size: number): AsyncGenerator<Buffer> {
  await yieldToEventLoopSometimes();
  if (size <= SYNC_READ_LIMIT) {
    if (size > 0) yield readSmallFile(path, size);
    return;
  }
  let handle;
  try {
    handle = await open(path, 'r');
  } catch (error) {
    readFailed(path, error);
  }
  try {
    let position = 0;
    while (position < size) {
      const chunk = Buffer.allocUnsafe(Math.min(READ_CHUNK_SIZE, size - position));
      let filled = 0;
      while (filled < chunk.length) {
        const { bytesRead } = await handle.read(chunk, filled, chunk.length - filled, position + filled);
        if (bytesRead === 0) break;
        filled += bytesRead;
      }
      position += filled;
      // A short read (the file shrank) ends the contents early; the serialiser reports it.
      yield filled === chunk.length ? chunk : chunk.subarray(0, filled);
      if (filled < chunk.length) return;
    }
  } finally {
    await handle.close();
  }
}

/** A regular file or directory node (symlinks are handled by the caller, which reads the target). */
function nodeFromStats(path: Buffer, stats: Stats): NarNode {
  if (stats.isFile()) {
    return {
      type: 'regular',
      // Nix records `executable` when the owner-execute bit (S_IXUSR) is set; group/other x do not count.
      executable: (stats.mode & 0o100) !== 0,
      size: stats.size,
      contents: () => readFileContents(path, stats.size),
    };
  }
  if (stats.isDirectory()) {
    return {
      type: 'directory',
      entries: async () => {
        await yieldToEventLoopSometimes();
        let names: Buffer[];
        try {
          names = readdirSync(path, { encoding: 'buffer' });
        } catch (error) {
          readFailed(path, error);
        }
        return names.map((name) => {
          const childPath = joinPath(path, name);
          return { name, node: () => loadPathNode(childPath) };
        });
      },
    };
  }
  const kind = unsupportedKind(stats) ?? 'unknown file type';
  throw nixError(
    'PIDEPLOY_NAR_UNSUPPORTED_FILE_TYPE',
    `file '${displayBytes(path)}' has an unsupported type (${kind})`,
    'a NAR holds only regular files, directories and symlinks (Nix fails the same way); remove it or hash another path',
  );
}

function loadPathNode(path: Buffer): NarNode {
  let stats: Stats;
  try {
    stats = lstatSync(path);
  } catch (error) {
    readFailed(path, error);
  }
  if (stats.isSymbolicLink()) {
    let target: Buffer;
    try {
      target = readlinkSync(path, { encoding: 'buffer' });
    } catch (error) {
      readFailed(path, error);
    }
    return { type: 'symlink', target };
  }
  return nodeFromStats(path, stats);
}

/**
 * The file-system object at `path` as a lazily read {@link NarNode}, the way Nix sees it: `lstat`
 * (a symlink is recorded, not followed, also at the top), contents, the owner-execute bit,
 * symlink targets and names as raw bytes. Nothing else (times, owners, other mode bits) counts.
 * @throws PideployError `PIDEPLOY_NAR_READ_FAILED` when the path cannot be read.
 */
export async function pathToNarNode(path: string | Uint8Array): Promise<NarNode> {
  return loadPathNode(pathBytes(path));
}

/**
 * The NAR of `path` as a stream of byte chunks, byte-identical to `nix-store --dump <path>`
 * (Nix 2.8). Memory use is bounded by the directory depth and a 1 MiB read buffer. Wrap it with
 * `Readable.from(...)` for a Node stream.
 * @throws PideployError `PIDEPLOY_NAR_UNSUPPORTED_FILE_TYPE` on a fifo, socket or device inside the tree,
 *   `PIDEPLOY_NAR_READ_FAILED`, `PIDEPLOY_NAR_FILE_CHANGED` (a file shrank while being read).
 */
export async function* dumpPathToNar(path: string | Uint8Array): AsyncGenerator<Buffer, void, undefined> {
  const bytes = pathBytes(path);
  yield* serialiseNar(loadPathNode(bytes), { rootLabel: displayBytes(bytes) });
}

/**
 * sha256 and size of the NAR of `path`, computed while streaming (the NAR is never held in memory):
 * what `nix-hash --type sha256 <path>` and `nix hash path` print (format with `formatHash`).
 * @throws PideployError like {@link dumpPathToNar}.
 */
export async function hashPathNar(path: string | Uint8Array): Promise<NarHashResult> {
  return hashNarStream(dumpPathToNar(path));
}

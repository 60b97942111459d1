import { createHash } from 'node:crypto';
import { PideployError } from '@pideploy/core';
import { ByteReader } from './byte-reader.js';
import { ContentStore, type StoredContent } from './content-store.js';
import { displayBytes, nixError } from './errors.js';
import { gunzip, looksLikeGzip } from './gzip.js';
import { serialiseNar, type NarHashResult, type NarNode } from './nar.js';
import { readTar, type TarMember } from './tar.js';

/*
 * Tarball → NAR the way Nix 2.8 unpacks (`nix-prefetch-url --unpack`, `builtins.fetchTarball`):
 * libarchive extracts into an empty directory with SECURE_NODOTDOT | SECURE_SYMLINKS, every
 * member path prefixed with that directory, hard links recreated as hard links. This module
 * replays those extraction rules on an in-memory tree instead of a real directory, then
 * serialises the tree. Each rule below was checked against the real Nix 2.8 on Debian
 * (see tarball.lab.test.ts, which runs the same archives through `nix-prefetch-url --unpack`):
 *
 * - a member path is split on `/`; empty and `.` components vanish (so `/abs`, `./x`, `a//b`
 *   land inside the unpack directory); a `..` component fails ("Path contains '..'");
 * - missing parent directories are created; a parent that is a symlink fails ("Cannot extract
 *   through symlink"), one that is a file or device fails too;
 * - a later member with the same path replaces the earlier one (later wins), except that a
 *   non-directory cannot replace a non-empty directory ("Can't replace existing directory with
 *   non-directory"); a directory member over an existing directory merges;
 * - a regular member creates a new inode, executable iff its mode has S_IXUSR; a hard link
 *   shares the target's inode: same contents, and the target's executable bit (the hard link
 *   member's own mode is ignored); replacing a name later does not change other links to the
 *   old inode. A hard link to a missing path, to a directory or to itself fails; a hard link to
 *   a symlink copies the symlink;
 * - character/block devices and fifos are created by root and then make the NAR dump fail
 *   ("has an unsupported type"); so they are kept in the tree and fail only if still there
 *   when the tree is serialised;
 * - top level: exactly one entry in the unpack directory → that entry (file, symlink or
 *   directory) is the result; otherwise the unpack directory itself (nix-prefetch-url), or an
 *   error (builtins.fetchTarball: "contains an unexpected number of top-level files").
 */

/** How the input is compressed. `auto` detects gzip by its magic bytes and treats anything else as plain tar. */
export type TarballCompression = 'gzip' | 'none' | 'auto';

/**
 * Which Nix 2.8 command's top-level rule to apply: `nix-prefetch-url` hashes the unpack directory
 * when it holds zero or several entries; `fetchTarball` (`builtins.fetchTarball`) rejects that.
 * Both hash the single entry when there is exactly one.
 */
export type TarballTopLevelRule = 'nix-prefetch-url' | 'fetchTarball';

/** Options of {@link hashTarballNar} and {@link dumpTarballToNar}. */
export interface TarballNarOptions {
  /** Compression of the input (default `auto`: gzip when it starts with 1f 8b 08, else plain tar). */
  readonly compression?: TarballCompression | undefined;
  /** Top-level rule (default `nix-prefetch-url`). */
  readonly topLevelRule?: TarballTopLevelRule | undefined;
  /** File contents kept in memory at most (default 64 MiB); the rest is spilled to a temp file. */
  readonly memoryBudgetBytes?: number | undefined;
  /** Files larger than this always go to the temp file (default 1 MiB). */
  readonly inMemoryFileLimitBytes?: number | undefined;
  /** Parent directory of the private temp directory (default: the OS temp dir). */
  readonly tempDirectory?: string | undefined;
  /** Refuse archives whose unpacked contents exceed this (default 16 GiB). */
  readonly maxUnpackedBytes?: number | undefined;
  /** Stops the work (between tar members) with `PIDEPLOY_INTERRUPTED`. */
  readonly signal?: AbortSignal | undefined;
}

/** What {@link hashTarballNar} computed. */
export interface TarballNarResult extends NarHashResult {
  /**
   * Name of the single top-level entry whose NAR was hashed (e.g. `nixpkgs-0123abc`), or
   * undefined when the unpack directory itself was hashed (zero or several top-level entries).
   * Names that are not UTF-8 are shown with U+FFFD.
   */
  readonly topLevelName: string | undefined;
  /** How many entries the unpack directory held. `builtins.fetchTarball` (2.8) needs exactly 1. */
  readonly topLevelEntryCount: number;
  /** Type of the hashed root. */
  readonly rootType: 'regular' | 'symlink' | 'directory';
}

/** Information {@link dumpTarballToNar} returns when it is done. */
export type TarballNarInfo = Omit<TarballNarResult, 'narHash' | 'narSize'>;

const DEFAULTS = {
  memoryBudgetBytes: 64 * 1024 * 1024,
  inMemoryFileLimitBytes: 1024 * 1024,
  maxUnpackedBytes: 16 * 1024 * 1024 * 1024,
};

interface FileInode {
  readonly executable: boolean;
  readonly content: StoredContent;
  readonly size: number;
}

type TreeNode =
  | { readonly kind: 'directory'; readonly children: Map<string, TreeNode> }
  | { readonly kind: 'regular'; readonly inode: FileInode }
  | { readonly kind: 'symlink'; readonly target: Buffer }
  | { readonly kind: 'special'; readonly what: string; readonly memberPath: string };

type DirectoryNode = Extract<TreeNode, { kind: 'directory' }>;

function unsafe(message: string, hint = 'the archive is malformed or hostile; Nix 2.8 refuses to unpack it as well'): never {
  throw nixError('PIDEPLOY_ARCHIVE_UNSAFE', message, hint);
}

/**
 * Path components as libarchive sees them after prefixing the unpack directory: empty and `.`
 * components vanish, `..` is refused. Components are latin1 strings, i.e. one char per byte, so
 * that JS string order is unsigned byte order and any byte sequence round-trips.
 */
function splitMemberPath(raw: Buffer, what: string): string[] {
  if (raw.length === 0) unsafe(`the archive has a member with an empty ${what}`);
  const components: string[] = [];
  for (const component of raw.toString('latin1').split('/')) {
    if (component === '' || component === '.') continue;
    if (component === '..') {
      unsafe(`${what === 'path' ? 'archive member' : what} '${displayBytes(raw)}' contains a '..' component (it would escape the unpack directory; libarchive: "Path contains '..'")`);
    }
    components.push(component);
  }
  return components;
}

function shownPath(components: readonly string[]): string {
  return components.length === 0 ? '.' : displayBytes(Buffer.from(components.join('/'), 'latin1'));
}

class UnpackTree {
  readonly root: DirectoryNode = { kind: 'directory', children: new Map() };

  /** The parent directory of `components`, creating missing directories like libarchive. */
  private parentOf(components: readonly string[], raw: Buffer): DirectoryNode {
    let directory = this.root;
    for (let index = 0; index < components.length - 1; index++) {
      const name = components[index] as string;
      const existing = directory.children.get(name);
      if (existing === undefined) {
        const created: DirectoryNode = { kind: 'directory', children: new Map() };
        directory.children.set(name, created);
        directory = created;
      } else if (existing.kind === 'directory') {
        directory = existing;
      } else if (existing.kind === 'symlink') {
        unsafe(`archive member '${displayBytes(raw)}' goes through the symlink '${shownPath(components.slice(0, index + 1))}' (libarchive: "Cannot extract through symlink")`);
      } else {
        unsafe(`archive member '${displayBytes(raw)}' needs '${shownPath(components.slice(0, index + 1))}' to be a directory, but it is a file`);
      }
    }
    return directory;
  }

  addDirectory(raw: Buffer): void {
    const components = splitMemberPath(raw, 'path');
    if (components.length === 0) return; // `./`: the unpack directory itself
    const parent = this.parentOf(components, raw);
    const name = components[components.length - 1] as string;
    if (parent.children.get(name)?.kind === 'directory') return; // merge
    parent.children.set(name, { kind: 'directory', children: new Map() });
  }

  /** Places a non-directory node, with libarchive's replace rules. */
  addNonDirectory(raw: Buffer, makeNode: () => TreeNode): void {
    const components = splitMemberPath(raw, 'path');
    if (components.length === 0) {
      unsafe(`archive member '${displayBytes(raw)}' is not a directory but names the unpack directory itself`);
    }
    const parent = this.parentOf(components, raw);
    const name = components[components.length - 1] as string;
    const existing = parent.children.get(name);
    if (existing?.kind === 'directory' && existing.children.size > 0) {
      unsafe(`archive member '${displayBytes(raw)}' would replace a non-empty directory (libarchive: "Can't replace existing directory with non-directory")`);
    }
    parent.children.set(name, makeNode());
  }

  /** Resolves a hard link target like libarchive's link(2) (no symlink following). */
  resolveHardLink(linkRaw: Buffer, targetRaw: Buffer): TreeNode {
    const link = splitMemberPath(linkRaw, 'path');
    const target = splitMemberPath(targetRaw, 'hard link target');
    if (target.length === link.length && target.every((component, index) => component === link[index])) {
      unsafe(`hard link '${displayBytes(linkRaw)}' points to itself (libarchive: "Skipping hardlink pointing to itself")`);
    }
    let node: TreeNode = this.root;
    for (let index = 0; index < target.length; index++) {
      if (node.kind === 'symlink') {
        unsafe(`hard link '${displayBytes(linkRaw)}' goes through the symlink '${shownPath(target.slice(0, index))}' (libarchive: "Cannot extract through symlink")`);
      }
      const next: TreeNode | undefined = node.kind === 'directory' ? node.children.get(target[index] as string) : undefined;
      if (next === undefined) {
        unsafe(`hard link '${displayBytes(linkRaw)}' points to '${displayBytes(targetRaw)}', which is not in the archive before it (libarchive: "Hard-link target does not exist")`);
      }
      node = next;
    }
    if (node.kind === 'directory') {
      unsafe(`hard link '${displayBytes(linkRaw)}' points to the directory '${displayBytes(targetRaw)}' (hard links to directories are impossible)`);
    }
    if (node.kind === 'symlink') return { kind: 'symlink', target: node.target };
    return node;
  }

  /** Applies one tar member (regular contents already stored). */
  apply(member: TarMember, content?: FileInode): void {
    switch (member.kind) {
      case 'directory':
        this.addDirectory(member.path);
        return;
      case 'regular':
        this.addNonDirectory(member.path, () => ({ kind: 'regular', inode: content as FileInode }));
        return;
      case 'symlink':
        if (member.linkTarget.length === 0) {
          unsafe(`symlink '${displayBytes(member.path)}' has an empty target (symlink(2) refuses it, so Nix fails)`);
        }
        this.addNonDirectory(member.path, () => ({ kind: 'symlink', target: member.linkTarget }));
        return;
      case 'hardlink': {
        const target = this.resolveHardLink(member.path, member.linkTarget);
        this.addNonDirectory(member.path, () => target);
        return;
      }
      default:
        this.addNonDirectory(member.path, () => ({ kind: 'special', what: member.kind, memberPath: displayBytes(member.path) }));
    }
  }
}

function toNarNode(node: TreeNode, store: ContentStore, signal: AbortSignal | undefined): NarNode {
  switch (node.kind) {
    case 'directory':
      return {
        type: 'directory',
        entries: () => {
          signal?.throwIfAborted();
          return [...node.children].map(([name, child]) => ({ name: Buffer.from(name, 'latin1'), node: () => toNarNode(child, store, signal) }));
        },
      };
    case 'regular':
      return { type: 'regular', executable: node.inode.executable, size: node.inode.size, contents: () => store.read(node.inode.content) };
    case 'symlink':
      return { type: 'symlink', target: node.target };
    case 'special':
      throw nixError(
        'PIDEPLOY_NAR_UNSUPPORTED_FILE_TYPE',
        `archive member '${node.memberPath}' is a ${node.what}, which a NAR cannot hold (Nix 2.8: "file … has an unsupported type")`,
        'use an archive without device files or fifos',
      );
    default: {
      const unknown: never = node;
      return unknown;
    }
  }
}

interface UnpackedTarball {
  readonly root: NarNode;
  readonly info: TarballNarInfo;
}

function interrupted(): PideployError {
  return new PideployError({ code: 'PIDEPLOY_INTERRUPTED', message: 'tarball hashing was interrupted', hint: 'run it again' });
}

async function decompressed(reader: ByteReader, compression: TarballCompression): Promise<ByteReader> {
  let gzip = compression === 'gzip';
  if (compression === 'auto') {
    await reader.ensure(6);
    const head = reader.peek(6);
    gzip = looksLikeGzip(head);
    const known: Array<[string, number[]]> = [
      ['bzip2', [0x42, 0x5a, 0x68]],
      ['xz', [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]],
      ['zstd', [0x28, 0xb5, 0x2f, 0xfd]],
      ['zip', [0x50, 0x4b, 0x03, 0x04]],
      ['lzip', [0x4c, 0x5a, 0x49, 0x50]],
    ];
    for (const [name, magic] of known) {
      if (magic.every((byte, index) => head[index] === byte)) {
        throw nixError(
          'PIDEPLOY_ARCHIVE_UNSUPPORTED',
          `the archive is ${name === 'zip' ? 'a zip file' : `${name}-compressed`}; pideploy reads tar and tar.gz only`,
          'use the .tar.gz download (GitHub: /archive/<rev>.tar.gz), or let nix-prefetch-url hash it',
        );
      }
    }
  }
  return gzip ? new ByteReader(gunzip(reader)) : reader;
}

async function unpack(
  source: AsyncIterable<unknown> | Iterable<unknown>,
  options: TarballNarOptions,
  store: ContentStore,
  readers: ByteReader[],
): Promise<UnpackedTarball> {
  const raw = new ByteReader(source);
  readers.push(raw);
  const reader = await decompressed(raw, options.compression ?? 'auto');
  if (reader !== raw) readers.push(reader);
  const tree = new UnpackTree();
  const maxUnpacked = options.maxUnpackedBytes ?? DEFAULTS.maxUnpackedBytes;
  let unpacked = 0;
  await readTar(
    reader,
    async (member, body) => {
      if (member.kind !== 'regular') {
        tree.apply(member);
        return;
      }
      // Check the path before storing the contents, so a bad path fails early.
      splitMemberPath(member.path, 'path');
      const content = await store.store(body.size, body.chunks());
      tree.apply(member, { executable: (member.mode & 0o100) !== 0, content, size: body.size });
    },
    {
      signal: options.signal,
      admitSize: (member) => {
        unpacked += member.size;
        if (unpacked > maxUnpacked) {
          throw nixError(
            'PIDEPLOY_ARCHIVE_TOO_LARGE',
            `the archive unpacks to more than ${maxUnpacked} bytes (member '${displayBytes(member.path)}' declares ${member.size})`,
            'raise maxUnpackedBytes if the archive is really that big',
          );
        }
      },
    },
  );
  if (reader !== raw) {
    // Decompress to the end (libarchive's read-ahead does too), so a damaged or missing gzip
    // trailer is noticed; what follows the tar end marker is discarded but still bounded.
    for (let piece = await reader.readSome(1 << 20); piece !== undefined; piece = await reader.readSome(1 << 20)) {
      options.signal?.throwIfAborted();
      unpacked += piece.length;
      if (unpacked > maxUnpacked) {
        throw nixError('PIDEPLOY_ARCHIVE_TOO_LARGE', `the archive decompresses to more than ${maxUnpacked} bytes`, 'raise maxUnpackedBytes if the archive is really that big');
      }
    }
  }


  const entries = [...tree.root.children];
  const topLevelEntryCount = entries.length;
  if (topLevelEntryCount === 1) {
    const [name, node] = entries[0] as [string, TreeNode];
    const root = toNarNode(node, store, options.signal);
    return {
      root,
      info: { topLevelName: Buffer.from(name, 'latin1').toString('utf8'), topLevelEntryCount, rootType: root.type },
    };
  }
  if ((options.topLevelRule ?? 'nix-prefetch-url') === 'fetchTarball') {
    throw nixError(
      'PIDEPLOY_ARCHIVE_TOP_LEVEL',
      `the tarball contains ${topLevelEntryCount} top-level entries; builtins.fetchTarball (Nix 2.8) needs exactly one ("contains an unexpected number of top-level files")`,
      'pin an archive with a single top-level directory (every GitHub/GitLab archive has one), or use the nix-prefetch-url rule',
    );
  }
  return { root: toNarNode(tree.root, store, options.signal), info: { topLevelName: undefined, topLevelEntryCount, rootType: 'directory' } };
}

function storeFor(options: TarballNarOptions): ContentStore {
  return new ContentStore({
    memoryBudgetBytes: options.memoryBudgetBytes ?? DEFAULTS.memoryBudgetBytes,
    inMemoryFileLimitBytes: options.inMemoryFileLimitBytes ?? DEFAULTS.inMemoryFileLimitBytes,
    tempDirectory: options.tempDirectory,
  });
}

function mapAbort(error: unknown, signal: AbortSignal | undefined): unknown {
  if (signal?.aborted === true && !PideployError.isInstance(error)) return interrupted();
  return error;
}

/**
 * Streams the NAR that Nix 2.8 would compute for a tarball (`nix-prefetch-url --unpack`,
 * `builtins.fetchTarball`): reads the (gzip or plain) tar as it arrives, replays libarchive's
 * extraction rules on an in-memory tree (file contents: small files in memory up to
 * `memoryBudgetBytes`, the rest in one temp file that is always deleted), then yields the NAR
 * bytes. Returns the top-level information when done. Stopping the iteration early cleans up too.
 * @throws PideployError `PIDEPLOY_ARCHIVE_CORRUPT`, `PIDEPLOY_ARCHIVE_UNSUPPORTED`, `PIDEPLOY_ARCHIVE_UNSAFE`,
 *   `PIDEPLOY_ARCHIVE_TOO_LARGE`, `PIDEPLOY_ARCHIVE_TOP_LEVEL`, `PIDEPLOY_NAR_UNSUPPORTED_FILE_TYPE`, `PIDEPLOY_INTERRUPTED`.
 */
export async function* dumpTarballToNar(
  source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  options: TarballNarOptions = {},
): AsyncGenerator<Buffer, TarballNarInfo, undefined> {
  const store = storeFor(options);
  const readers: ByteReader[] = [];
  try {
    const { root, info } = await unpack(source, options, store, readers);
    yield* serialiseNar(root, { rootLabel: info.topLevelName ?? '.' });
    return info;
  } catch (error) {
    throw mapAbort(error, options.signal);
  } finally {
    for (const reader of readers.reverse()) await reader.close().catch(() => undefined);
    await store.dispose();
  }
}

/**
 * The NAR hash of a tarball as `nix-prefetch-url --unpack` (Nix 2.8) prints it, and as
 * `builtins.fetchTarball { sha256 }` expects it when the archive has one top-level entry: sha256
 * and size of the NAR of the single top-level entry, or of the whole unpack directory otherwise
 * (with `topLevelRule: 'fetchTarball'` that case is an error instead). Format the hash with
 * `formatHash(result.narHash, 'nix32' | 'sri')`. Memory stays bounded (see {@link dumpTarballToNar}).
 * @throws PideployError like {@link dumpTarballToNar}.
 */
export async function hashTarballNar(
  source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  options: TarballNarOptions = {},
): Promise<TarballNarResult> {
  const nar = dumpTarballToNar(source, options);
  const hash = createHash('sha256');
  let narSize = 0;
  for (;;) {
    const step = await nar.next();
    if (step.done === true) return { narHash: hash.digest(), narSize, ...step.value };
    hash.update(step.value);
    narSize += step.value.length;
  }
}

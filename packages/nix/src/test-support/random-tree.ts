import { chmodSync, lstatSync, mkdirSync, readdirSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import type { Prng } from './prng.js';

/*
 * Test support: random file trees for differential tests against nix-hash. Names are raw bytes
 * (UTF-8, byte-order-tricky ASCII, and invalid UTF-8), contents random, modes varied (only the
 * owner-execute bit matters to NAR), symlinks dangling or not, empty and deep directories.
 */

/** Names whose byte order differs from locale / UTF-16 / case-insensitive order, and other oddities. */
export const TRICKY_NAMES: readonly string[] = [
  'a', 'B', 'é', 'a-', 'a.', 'a0', 'A', 'b', '_', '~', '~tilde', '.hidden', '.a', '10', '9', '09', 'aB', 'Ab',
  'a-b', 'a.b', 'a_b', 'a~', '☃', 'ß', 'ss', '日本語', 'e\u0301', '\u00e9t\u00e9', 'Z', 'z', ' lead', 'trail ',
  'tab\tname', 'new\nline', 'back\\slash', 'quote"s', "apos'", '*?[]', 'ÿ', '\u00a0nbsp', '😀', '\u{10ffff}',
  '\u007f', '-', '--', '...', '.-', 'x'.repeat(255), 'é'.repeat(127), 'ﬀ', 'İ', 'ı', 'Ω', 'Ω',
];

/** Counts of what a generated tree holds. */
export interface TreeStats {
  files: number;
  executables: number;
  directories: number;
  symlinks: number;
  bytes: number;
  maxDepth: number;
}

/** Options of {@link writeRandomTree}. */
export interface RandomTreeOptions {
  /** Add one file of 1–6 MB somewhere. */
  readonly bigFile?: boolean;
  /** Build a chain of nested directories this deep. */
  readonly deepChain?: number;
  /** Top-level kind (default: mostly directories). */
  readonly topLevel?: 'directory' | 'file' | 'symlink' | 'empty-directory';
}

const MODES = [0o644, 0o644, 0o755, 0o755, 0o700, 0o600, 0o611, 0o655, 0o744, 0o711, 0o500, 0o400, 0o444, 0o555, 0o501, 0o541];

function randomCodePoint(rng: Prng): number {
  const range = rng.int(0, 9);
  if (range <= 3) return rng.int(0x20, 0x7e);
  if (range <= 5) return rng.int(0xa0, 0x24f);
  if (range === 6) return rng.int(0x370, 0x3ff);
  if (range === 7) return rng.int(0x4e00, 0x4fff);
  if (range === 8) return rng.int(0x1f300, 0x1f64f);
  return rng.int(0x2000, 0x2bff);
}

/** A random entry name as bytes: never empty, `.`, `..`, with `/` or NUL; at most 255 bytes. */
export function randomName(rng: Prng): Buffer {
  const style = rng.float();
  let name: Buffer;
  if (style < 0.35) {
    name = Buffer.from(rng.pick(TRICKY_NAMES), 'utf8');
  } else if (style < 0.55) {
    const length = rng.int(1, 12);
    name = Buffer.from(Array.from({ length }, () => rng.pick([...'abcABC019-._~xyzXYZ'])).join(''), 'utf8');
  } else if (style < 0.9) {
    const length = rng.int(1, 24);
    let text = '';
    for (let i = 0; i < length; i++) text += String.fromCodePoint(randomCodePoint(rng));
    name = Buffer.from(text.replaceAll('/', '_'), 'utf8');
  } else {
    // Raw bytes: mostly invalid UTF-8.
    name = Buffer.from(Array.from({ length: rng.int(1, 10) }, () => rng.int(1, 255)).map((byte) => (byte === 0x2f ? 0x5f : byte)));
  }
  if (name.length > 255) name = name.subarray(0, 255);
  if (name.equals(Buffer.from('.')) || name.equals(Buffer.from('..'))) name = Buffer.from('dot');
  return name;
}

function randomSize(rng: Prng): number {
  const r = rng.float();
  if (r < 0.3) return rng.int(0, 16);
  if (r < 0.6) return rng.int(17, 520);
  if (r < 0.88) return rng.int(521, 8200);
  if (r < 0.985) return rng.int(8201, 70_000);
  return rng.int(70_001, 300_000);
}

function randomContents(rng: Prng, size: number): Buffer {
  const kind = rng.float();
  if (kind < 0.1) return Buffer.alloc(size);
  if (kind < 0.25) return Buffer.from('text line\n'.repeat(Math.ceil(size / 10)).slice(0, size));
  return rng.bytes(size);
}

function randomSymlinkTarget(rng: Prng, siblings: readonly Buffer[]): Buffer {
  const kind = rng.int(0, 8);
  switch (kind) {
    case 0:
      return siblings.length > 0 ? rng.pick(siblings) : Buffer.from('dangling');
    case 1:
      return Buffer.concat([Buffer.from('../'), randomName(rng)]);
    case 2:
      return Buffer.from(`/nix/store/${'0123456789abcdfghijklmnpqrsvwxyz'.slice(0, 32)}-${rng.int(0, 999)}`);
    case 3:
      return Buffer.from(rng.pick(['.', '..', '/', 'a/b/c', './x', '//double', 'trailing/']));
    case 4:
      return Buffer.from('seg/'.repeat(rng.int(20, 250)));
    case 5: {
      // raw bytes, no NUL
      return Buffer.from(Array.from({ length: rng.int(1, 40) }, () => rng.int(1, 255)));
    }
    default:
      return randomName(rng);
  }
}

function join(parent: Buffer, name: Buffer): Buffer {
  return Buffer.concat([parent, Buffer.from('/'), name]);
}

function writeFile(rng: Prng, path: Buffer, size: number, stats: TreeStats): void {
  writeFileSync(path, randomContents(rng, size));
  const mode = rng.pick(MODES);
  chmodSync(path, mode);
  if (rng.chance(0.2)) utimesSync(path, rng.int(0, 2_000_000_000), rng.int(0, 2_000_000_000));
  stats.files += 1;
  stats.bytes += size;
  if ((mode & 0o100) !== 0) stats.executables += 1;
}

function fillDirectory(rng: Prng, directory: Buffer, depthLeft: number, depth: number, stats: TreeStats, chmodLater: Buffer[]): void {
  stats.directories += 1;
  stats.maxDepth = Math.max(stats.maxDepth, depth);
  const count = rng.chance(0.08) ? 0 : rng.int(1, depthLeft > 0 ? 9 : 14);
  const used = new Set<string>();
  const names: Buffer[] = [];
  for (let i = 0; i < count; i++) {
    const name = randomName(rng);
    const key = name.toString('latin1');
    if (used.has(key)) continue;
    used.add(key);
    names.push(name);
  }
  for (const name of names) {
    const path = join(directory, name);
    const kind = rng.float();
    if (kind < 0.22 && depthLeft > 0) {
      mkdirSync(path);
      fillDirectory(rng, path, depthLeft - 1, depth + 1, stats, chmodLater);
    } else if (kind < 0.36) {
      symlinkSync(randomSymlinkTarget(rng, names), path);
      stats.symlinks += 1;
    } else if (kind < 0.4) {
      mkdirSync(path);
      stats.directories += 1;
    } else {
      writeFile(rng, path, randomSize(rng), stats);
    }
  }
  if (rng.chance(0.1)) chmodLater.push(directory);
}

/**
 * Writes a random tree at `root` (which must not exist) and returns what it holds.
 * The same seed state gives the same tree.
 */
export function writeRandomTree(rng: Prng, root: Buffer, options: RandomTreeOptions = {}): TreeStats {
  const stats: TreeStats = { files: 0, executables: 0, directories: 0, symlinks: 0, bytes: 0, maxDepth: 0 };
  const topLevel = options.topLevel ?? 'directory';
  if (topLevel === 'file') {
    writeFile(rng, root, options.bigFile === true ? rng.int(1_000_000, 6_000_000) : randomSize(rng), stats);
    return stats;
  }
  if (topLevel === 'symlink') {
    symlinkSync(randomSymlinkTarget(rng, []), root);
    stats.symlinks += 1;
    return stats;
  }
  mkdirSync(root);
  if (topLevel === 'empty-directory') {
    stats.directories += 1;
    return stats;
  }
  const chmodLater: Buffer[] = [];
  fillDirectory(rng, root, rng.int(0, 4), 0, stats, chmodLater);
  if (options.bigFile === true) {
    writeFile(rng, join(root, Buffer.from(`big-${rng.int(0, 1e6)}`)), rng.int(1_000_000, 6_000_000), stats);
  }
  if (options.deepChain !== undefined) {
    // The chain starts with a name randomName never produces, so it cannot collide.
    let directory = join(root, Buffer.from('deep chain!'));
    mkdirSync(directory);
    for (let depth = 1; depth < options.deepChain; depth++) {
      directory = join(directory, Buffer.from(rng.pick(['d', 'é', 'a-', 'Z', '9'])));
      mkdirSync(directory);
      stats.directories += 1;
    }
    stats.maxDepth = Math.max(stats.maxDepth, options.deepChain);
    writeFile(rng, join(directory, Buffer.from('leaf')), rng.int(0, 100), stats);
  }
  // Directory modes do not matter to NAR; change some (keeping owner r-x so anyone can read).
  for (const directory of chmodLater) chmodSync(directory, rng.pick([0o555, 0o500, 0o700, 0o711, 0o750]));
  return stats;
}

/** Gives every directory under `root` owner rwx again, so it can be deleted by a non-root user. */
export function makeDeletable(root: Buffer | string): void {
  const path = typeof root === 'string' ? Buffer.from(root) : root;
  let stats;
  try {
    stats = lstatSync(path);
  } catch {
    return;
  }
  if (!stats.isDirectory()) return;
  chmodSync(path, 0o755);
  for (const name of readdirSync(path, { encoding: 'buffer' })) makeDeletable(join(path, name));
}

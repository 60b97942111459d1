import { existsSync } from 'node:fs';
import { chmod, copyFile, lstat, mkdir, readdir, readFile, readlink, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { PideployError } from '@pideploy/core';
import { isAarch64ElfFile } from './aarch64.js';

/** Where the aarch64 bootstrap tools (busybox + sh link) go inside an assembled tree. */
export const MINI_NIXPKGS_BOOTSTRAP_PATH = path.join('bootstrap', 'aarch64-linux');

/**
 * Finds the committed mini-nixpkgs fixture (`packages/lab/fixture/mini-nixpkgs`) from a module
 * directory: `src/` under vitest, `dist/` (or a directory below it) once built.
 */
export function resolveMiniNixpkgsFixtureDir(moduleDir: string): string {
  let directory = moduleDir;
  for (let level = 0; level < 4; level += 1) {
    const candidate = path.join(directory, 'fixture', 'mini-nixpkgs');
    if (existsSync(path.join(candidate, 'default.nix'))) return candidate;
    directory = path.dirname(directory);
  }
  // Where it belongs, even if missing: assembleMiniNixpkgs reports it.
  return path.resolve(moduleDir, '..', 'fixture', 'mini-nixpkgs');
}

/** The committed mini-nixpkgs source (without bootstrap tools): `packages/lab/fixture/mini-nixpkgs`. */
export const MINI_NIXPKGS_FIXTURE_DIR = resolveMiniNixpkgsFixtureDir(path.dirname(fileURLToPath(import.meta.url)));

/** The version the committed fixture carries in `.version`. */
export const MINI_NIXPKGS_DEFAULT_VERSION = '24.05-lab';

/**
 * Checks a mini-nixpkgs version (the `.version` file, which becomes `lib.version`): one line
 * starting with `<major>.<minor>`, e.g. `24.05-lab`. Pure; throws a PideployError otherwise.
 */
export function validateMiniNixpkgsVersion(version: string): string {
  if (!/^\d+\.\d+[A-Za-z0-9._+-]*$/u.test(version)) {
    throw new PideployError({
      code: 'PIDEPLOY_USAGE',
      message: `"${version}" is not a mini-nixpkgs version`,
      hint: 'use <major>.<minor> with an optional suffix, e.g. 24.05-lab or 24.11-lab',
    });
  }
  return version;
}

/** Options of {@link assembleMiniNixpkgs}. */
export interface AssembleMiniNixpkgsOptions {
  /** Directory to write the tree to; created, and must be empty if it exists. */
  readonly destination: string;
  /** Directory holding the static aarch64 `busybox` (see `ensureAarch64Busybox`). */
  readonly aarch64BusyboxDir: string;
  /** Content of `.version`, i.e. `lib.version` (default: the fixture's, {@link MINI_NIXPKGS_DEFAULT_VERSION}). */
  readonly version?: string | undefined;
  /** The fixture to copy (default: {@link MINI_NIXPKGS_FIXTURE_DIR}). */
  readonly fixtureDir?: string | undefined;
}

/** Copies a directory of plain files and directories, with the modes git can record (0644/0755). */
async function copyTree(source: string, destination: string): Promise<void> {
  await mkdir(destination, { recursive: true, mode: 0o755 });
  await chmod(destination, 0o755);
  for (const entry of await readdir(source, { withFileTypes: true })) {
    const from = path.join(source, entry.name);
    const to = path.join(destination, entry.name);
    if (entry.isDirectory()) {
      await copyTree(from, to);
    } else if (entry.isSymbolicLink()) {
      await symlink(await readlink(from), to);
    } else if (entry.isFile()) {
      await copyFile(from, to);
      await chmod(to, ((await lstat(from)).mode & 0o111) === 0 ? 0o644 : 0o755);
    }
  }
}

/**
 * Writes a complete mini-nixpkgs source tree to `destination`: the committed fixture, `.version`
 * set to `version` (so the lab can publish distinct revisions, e.g. 24.05-lab and 24.11-lab),
 * and `bootstrap/aarch64-linux/{busybox,sh}`, the aarch64 bootstrap tools its aarch64-linux
 * builds run with. Returns `destination`.
 */
export async function assembleMiniNixpkgs(options: AssembleMiniNixpkgsOptions): Promise<string> {
  const fixtureDir = options.fixtureDir ?? MINI_NIXPKGS_FIXTURE_DIR;
  const destination = path.resolve(options.destination);
  if (!existsSync(path.join(fixtureDir, 'default.nix'))) {
    throw new PideployError({
      code: 'PIDEPLOY_LAB_SETUP_FAILED',
      message: `the mini-nixpkgs fixture is missing (no ${path.join(fixtureDir, 'default.nix')})`,
      hint: 'reinstall @pideploy/lab: its package ships fixture/mini-nixpkgs',
    });
  }
  const busybox = path.join(options.aarch64BusyboxDir, 'busybox');
  if (!existsSync(busybox)) {
    throw new PideployError({
      code: 'PIDEPLOY_LAB_SETUP_FAILED',
      message: `mini-nixpkgs needs a static aarch64 busybox at ${busybox}, which is missing`,
      hint: 'fetch it first (ensureAarch64Busybox, or `pideploy lab up`)',
    });
  }
  if (!(await isAarch64ElfFile(busybox))) {
    throw new PideployError({
      code: 'PIDEPLOY_LAB_SETUP_FAILED',
      message: `${busybox} is not an aarch64 ELF binary`,
      hint: 'remove it and fetch busybox-static:arm64 again (ensureAarch64Busybox)',
    });
  }
  if (existsSync(destination) && (await readdir(destination)).length > 0) {
    throw new PideployError({
      code: 'PIDEPLOY_USAGE',
      message: `cannot assemble mini-nixpkgs into ${destination}: the directory is not empty`,
      hint: 'pass a new or empty directory',
    });
  }
  const version = validateMiniNixpkgsVersion(
    options.version ?? (await readFile(path.join(fixtureDir, '.version'), 'utf8')).trim(),
  );

  await copyTree(fixtureDir, destination);
  await writeFile(path.join(destination, '.version'), `${version}\n`, { mode: 0o644 });
  const bootstrapDir = path.join(destination, MINI_NIXPKGS_BOOTSTRAP_PATH);
  await mkdir(bootstrapDir, { recursive: true, mode: 0o755 });
  await copyFile(busybox, path.join(bootstrapDir, 'busybox'));
  await chmod(path.join(bootstrapDir, 'busybox'), 0o755);
  await symlink('busybox', path.join(bootstrapDir, 'sh'));
  return destination;
}

import { existsSync } from 'node:fs';
import { lstat, mkdir, mkdtemp, readFile, readlink, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isAarch64Elf } from './aarch64.js';
import {
  MINI_NIXPKGS_BOOTSTRAP_PATH,
  MINI_NIXPKGS_DEFAULT_VERSION,
  MINI_NIXPKGS_FIXTURE_DIR,
  assembleMiniNixpkgs,
  resolveMiniNixpkgsFixtureDir,
  validateMiniNixpkgsVersion,
} from './mini-nixpkgs.js';

/** The first 20 bytes of a 64-bit little-endian ELF for the given e_machine. */
function elfHeader(machine: number): Buffer {
  const header = Buffer.alloc(64);
  Buffer.from([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1]).copy(header);
  header.writeUInt16LE(2, 16);
  header.writeUInt16LE(machine, 18);
  return header;
}

describe('the mini-nixpkgs fixture', () => {
  it('is found from src/ and from dist/ (and below), both one level under the package root', () => {
    const packageRoot = path.resolve(MINI_NIXPKGS_FIXTURE_DIR, '..', '..');
    expect(MINI_NIXPKGS_FIXTURE_DIR).toBe(path.join(packageRoot, 'fixture', 'mini-nixpkgs'));
    expect(resolveMiniNixpkgsFixtureDir(path.join(packageRoot, 'src'))).toBe(MINI_NIXPKGS_FIXTURE_DIR);
    expect(resolveMiniNixpkgsFixtureDir(path.join(packageRoot, 'dist'))).toBe(MINI_NIXPKGS_FIXTURE_DIR);
    expect(resolveMiniNixpkgsFixtureDir(path.join(packageRoot, 'dist', 'testing'))).toBe(MINI_NIXPKGS_FIXTURE_DIR);
  });

  it("holds nixpkgs' entry points and no bootstrap binary (that is added when assembling)", async () => {
    for (const file of ['default.nix', 'lib/default.nix', 'nixos/default.nix', 'nixos/lib/eval-config.nix', 'pkgs/top-level/default.nix']) {
      expect(existsSync(path.join(MINI_NIXPKGS_FIXTURE_DIR, file)), file).toBe(true);
    }
    expect(existsSync(path.join(MINI_NIXPKGS_FIXTURE_DIR, MINI_NIXPKGS_BOOTSTRAP_PATH))).toBe(false);
    expect((await readFile(path.join(MINI_NIXPKGS_FIXTURE_DIR, '.version'), 'utf8')).trim()).toBe(MINI_NIXPKGS_DEFAULT_VERSION);
  });

  it('keeps the generated Nix interface of NixOS: nixos/default.nix takes { configuration, system }', async () => {
    const nixosEntry = await readFile(path.join(MINI_NIXPKGS_FIXTURE_DIR, 'nixos', 'default.nix'), 'utf8');
    expect(nixosEntry).toMatch(/\{ configuration \? [^\n]+\n, system \? builtins\.currentSystem\n\}:/u);
    expect(nixosEntry).toContain('system = eval.config.system.build.toplevel;');
  });
});

describe('validateMiniNixpkgsVersion', () => {
  it('accepts <major>.<minor> with a suffix', () => {
    expect(validateMiniNixpkgsVersion('24.05-lab')).toBe('24.05-lab');
    expect(validateMiniNixpkgsVersion('24.11')).toBe('24.11');
    expect(validateMiniNixpkgsVersion('25.05pre-git.1')).toBe('25.05pre-git.1');
  });

  it('refuses what lib.trivial.release could not read, with a hint', () => {
    for (const bad of ['', 'lab', '24', '24.05 lab', '24.05\n', '../24.05']) {
      expect(() => validateMiniNixpkgsVersion(bad)).toThrow(expect.objectContaining({ code: 'PIDEPLOY_USAGE', hint: expect.stringContaining('24.05-lab') }));
    }
  });
});

describe('isAarch64Elf', () => {
  it('tells an aarch64 ELF from other ELF machines and from non-ELF bytes', () => {
    expect(isAarch64Elf(elfHeader(0xb7))).toBe(true);
    expect(isAarch64Elf(elfHeader(0x3e))).toBe(false);
    expect(isAarch64Elf(Buffer.from('#!/bin/sh\necho not an ELF binary\n'))).toBe(false);
    expect(isAarch64Elf(elfHeader(0xb7).subarray(0, 19))).toBe(false);
  });
});

describe('assembleMiniNixpkgs', () => {
  let workDir: string;
  let busyboxDir: string;

  beforeAll(async () => {
    workDir = await mkdtemp(path.join(os.tmpdir(), 'pideploy-mini-nixpkgs-unit-'));
    busyboxDir = path.join(workDir, 'busybox');
    await mkdir(busyboxDir);
    // Only the ELF header is checked: a stand-in is enough without running anything.
    await writeFile(path.join(busyboxDir, 'busybox'), elfHeader(0xb7), { mode: 0o755 });
  });

  afterAll(async () => {
    await rm(workDir, { recursive: true, force: true });
  });

  it('copies the fixture, sets .version and adds bootstrap/aarch64-linux/{busybox,sh}', async () => {
    const destination = path.join(workDir, 'tree-24.11');
    expect(await assembleMiniNixpkgs({ destination, aarch64BusyboxDir: busyboxDir, version: '24.11-lab' })).toBe(destination);
    expect(await readFile(path.join(destination, '.version'), 'utf8')).toBe('24.11-lab\n');
    expect(await readFile(path.join(destination, 'nixos', 'default.nix'), 'utf8')).toBe(
      await readFile(path.join(MINI_NIXPKGS_FIXTURE_DIR, 'nixos', 'default.nix'), 'utf8'),
    );
    const busybox = await lstat(path.join(destination, MINI_NIXPKGS_BOOTSTRAP_PATH, 'busybox'));
    expect(busybox.isFile() && (busybox.mode & 0o777) === 0o755).toBe(true);
    expect(await readlink(path.join(destination, MINI_NIXPKGS_BOOTSTRAP_PATH, 'sh'))).toBe('busybox');
    expect(((await lstat(path.join(destination, 'lib', 'modules.nix'))).mode & 0o777)).toBe(0o644);
  });

  it("defaults .version to the fixture's", async () => {
    const destination = path.join(workDir, 'tree-default');
    await assembleMiniNixpkgs({ destination, aarch64BusyboxDir: busyboxDir });
    expect(await readFile(path.join(destination, '.version'), 'utf8')).toBe(`${MINI_NIXPKGS_DEFAULT_VERSION}\n`);
  });

  it('refuses a non-empty destination, a missing busybox and a busybox of the wrong architecture', async () => {
    const occupied = path.join(workDir, 'occupied');
    await mkdir(occupied);
    await writeFile(path.join(occupied, 'keep-me'), 'x');
    await expect(assembleMiniNixpkgs({ destination: occupied, aarch64BusyboxDir: busyboxDir })).rejects.toThrow('is not empty');
    expect(await readFile(path.join(occupied, 'keep-me'), 'utf8')).toBe('x');

    await expect(assembleMiniNixpkgs({ destination: path.join(workDir, 'no-busybox'), aarch64BusyboxDir: path.join(workDir, 'nowhere') })).rejects.toThrow(
      expect.objectContaining({ code: 'PIDEPLOY_LAB_SETUP_FAILED', hint: expect.stringContaining('ensureAarch64Busybox') }),
    );
    const x86Dir = path.join(workDir, 'x86');
    await mkdir(x86Dir);
    await writeFile(path.join(x86Dir, 'busybox'), elfHeader(0x3e), { mode: 0o755 });
    await expect(assembleMiniNixpkgs({ destination: path.join(workDir, 'wrong-arch'), aarch64BusyboxDir: x86Dir })).rejects.toThrow('is not an aarch64 ELF binary');
    await expect(assembleMiniNixpkgs({ destination: path.join(workDir, 'bad-version'), aarch64BusyboxDir: busyboxDir, version: 'lab' })).rejects.toThrow(
      'is not a mini-nixpkgs version',
    );
  });
});

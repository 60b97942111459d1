import { existsSync } from 'node:fs';
import { lstat, mkdtemp, readlink, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import {
  BINFMT_MISC_DIR,
  ensureAarch64Busybox,
  ensureQemuAarch64Binfmt,
  removeQemuAarch64Binfmt,
  type Aarch64Busybox,
  type QemuAarch64BinfmtRecord,
} from './aarch64.js';
import { labLayout, type LabLayout } from './layout.js';
import { runCommand } from './run.js';
import { describeLab } from './testing/index.js';

describeLab('aarch64 under qemu: static busybox from Debian, qemu-aarch64 binfmt', () => {
  let layout: LabLayout;
  let busybox: Aarch64Busybox;
  let binfmt: QemuAarch64BinfmtRecord;
  let cacheDir: string;

  beforeAll(async () => {
    layout = labLayout(await mkdtemp(path.join(os.tmpdir(), 'pideploy-aarch64-test-')));
    // An empty cache of its own, so this test really downloads from the Debian mirror.
    cacheDir = path.join(layout.root, 'cache');
    binfmt = await ensureQemuAarch64Binfmt();
    busybox = await ensureAarch64Busybox(layout, { cacheDir });
  });

  afterAll(async () => {
    if (binfmt !== undefined) await removeQemuAarch64Binfmt(binfmt);
    if (layout !== undefined) await rm(layout.root, { recursive: true, force: true });
  });

  it('fetches busybox-static:arm64 into a directory with an sh link, and drops the private apt lists', async () => {
    expect(busybox.fetched).toBe(true);
    expect(busybox.busybox).toBe(path.join(layout.aarch64BusyboxDir, 'busybox'));
    expect((await lstat(busybox.busybox)).mode & 0o111).not.toBe(0);
    expect(await readlink(path.join(layout.aarch64BusyboxDir, 'sh'))).toBe('busybox');
    const file = await runCommand(['file', '-bL', busybox.busybox]);
    expect(file.stdout).toMatch(/ELF 64-bit LSB .*ARM aarch64.*statically linked/u);
    expect(existsSync(layout.aptDir)).toBe(false);
    // The machine's dpkg gained no architecture.
    expect((await runCommand(['dpkg', '--print-foreign-architectures'])).stdout).not.toContain('arm64');
  });

  it('runs aarch64 busybox under qemu: uname -m prints aarch64, also through the sh link', async () => {
    expect(existsSync(path.join(BINFMT_MISC_DIR, 'qemu-aarch64'))).toBe(true);
    expect((await runCommand([busybox.busybox, 'uname', '-m'])).stdout).toBe('aarch64\n');
    const shell = await runCommand([path.join(layout.aarch64BusyboxDir, 'sh'), '-c', 'uname -m; echo "$((6 * 7))"'], { env: { PATH: layout.aarch64BusyboxDir } });
    expect(shell.stdout).toBe('aarch64\n42\n');
  });

  it('is idempotent: a second call fetches nothing, and a second registration changes nothing', async () => {
    const again = await ensureAarch64Busybox(layout, { cacheDir });
    expect(again.fetched).toBe(false);
    // A new lab (after `lab down`) gets it from the machine-wide cache, without the mirror.
    const freshLayout = labLayout(path.join(layout.root, 'second-lab'));
    const fromCache = await ensureAarch64Busybox(freshLayout, { cacheDir });
    expect(fromCache.fetched).toBe(false);
    expect((await runCommand([fromCache.busybox, 'uname', '-m'])).stdout).toBe('aarch64\n');
    expect(existsSync(freshLayout.aptDir)).toBe(false);
    expect(existsSync(layout.aptDir)).toBe(false);
    const secondRecord = await ensureQemuAarch64Binfmt();
    expect(secondRecord).toEqual({ registeredByLab: false, mountedByLab: false });
    // Undoing a record of nothing removes nothing.
    await removeQemuAarch64Binfmt(secondRecord);
    expect(existsSync(path.join(BINFMT_MISC_DIR, 'qemu-aarch64'))).toBe(true);
  });
});

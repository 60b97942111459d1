import { existsSync } from 'node:fs';
import { chmod, copyFile, lstat, mkdir, open, readdir, readFile, readlink, rename, rm, stat, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { PideployError } from '@pideploy/core';
import type { LabLayout } from './layout.js';
import { runCommand } from './run.js';

/** Where the kernel's binfmt_misc file system is mounted. */
export const BINFMT_MISC_DIR = '/proc/sys/fs/binfmt_misc';

/** Debian's (qemu-user-static) binfmt registration line for qemu-aarch64. */
export const QEMU_AARCH64_BINFMT_CONF = '/usr/lib/binfmt.d/qemu-aarch64.conf';

/** The Debian package whose `/bin/busybox` becomes the lab's aarch64 builder and shell. */
export const AARCH64_BUSYBOX_PACKAGE = 'busybox-static:arm64';

/** ELF `e_machine` of AArch64 (EM_AARCH64). */
const ELF_MACHINE_AARCH64 = 0xb7;

/** Options of {@link ensureAarch64Busybox}. */
export interface EnsureAarch64BusyboxOptions {
  /** Cancels the apt download. */
  readonly signal?: AbortSignal | undefined;
  /** Machine-wide cache kept across `lab down` (default `$PIDEPLOY_LAB_CACHE_DIR` or {@link DEFAULT_LAB_CACHE_DIR}). */
  readonly cacheDir?: string | undefined;
}

/** Where the lab keeps what it downloaded (the arm64 busybox) across `lab down`/`lab up`. */
export const DEFAULT_LAB_CACHE_DIR = '/var/cache/pideploy-lab';

/** The static aarch64 busybox the lab builds with (a directory, because busybox dispatches on argv[0]). */
export interface Aarch64Busybox {
  /** The directory holding `busybox` and the `sh` link to it. */
  readonly directory: string;
  /** `<directory>/busybox`. */
  readonly busybox: string;
  /** True when this call fetched it from the Debian mirror, false when it was already there. */
  readonly fetched: boolean;
}

/** What {@link ensureQemuAarch64Binfmt} changed, so that teardown undoes exactly that and nothing else. */
export interface QemuAarch64BinfmtRecord {
  /** The lab wrote the qemu-aarch64 entry (it was not registered before). */
  readonly registeredByLab: boolean;
  /** The lab mounted binfmt_misc (it was not mounted before). */
  readonly mountedByLab: boolean;
}

/** A parsed binfmt_misc registration line `:name:type:offset:magic:mask:interpreter:flags`. */
export interface BinfmtRegistration {
  /** The entry's name, the file below binfmt_misc (`qemu-aarch64`). */
  readonly name: string;
  /** The interpreter the kernel runs foreign binaries with. */
  readonly interpreter: string;
  /** Flags such as `OPF` (F: the kernel opens the interpreter at registration, so it works in any mount namespace). */
  readonly flags: string;
  /** The line exactly as it must be written to `register`. */
  readonly line: string;
}

/**
 * Parses a binfmt.d file (comments and blank lines allowed) into its one registration line.
 * Pure; throws a PideployError when the file holds no usable line.
 */
export function parseBinfmtRegistration(text: string, source = QEMU_AARCH64_BINFMT_CONF): BinfmtRegistration {
  const line = text
    .split('\n')
    .map((candidate) => candidate.trim())
    .find((candidate) => candidate !== '' && !candidate.startsWith('#') && !candidate.startsWith(';'));
  if (line === undefined || line.length < 2) {
    throw new PideployError({
      code: 'PIDEPLOY_LAB_SETUP_FAILED',
      message: `${source} holds no binfmt_misc registration line`,
      hint: 'reinstall it: apt-get install --reinstall qemu-user-static',
    });
  }
  const delimiter = line[0] as string;
  const fields = line.slice(1).split(delimiter);
  const [name, , , , , interpreter, flags] = fields;
  if (fields.length < 6 || name === undefined || name === '' || interpreter === undefined || interpreter === '') {
    throw new PideployError({
      code: 'PIDEPLOY_LAB_SETUP_FAILED',
      message: `${source} is not a binfmt_misc registration line: ${line}`,
      hint: 'reinstall it: apt-get install --reinstall qemu-user-static',
    });
  }
  return { name, interpreter, flags: flags ?? '', line };
}

/** True when `header` (the first bytes of a file) starts a 64-bit little-endian AArch64 ELF. Pure. */
export function isAarch64Elf(header: Uint8Array): boolean {
  return (
    header.length >= 20 &&
    header[0] === 0x7f &&
    header[1] === 0x45 &&
    header[2] === 0x4c &&
    header[3] === 0x46 &&
    header[4] === 2 &&
    header[5] === 1 &&
    header[18] === ELF_MACHINE_AARCH64 &&
    header[19] === 0
  );
}

async function readHeader(file: string): Promise<Uint8Array> {
  const handle = await open(file, 'r');
  try {
    const buffer = Buffer.alloc(64);
    const { bytesRead } = await handle.read(buffer, 0, buffer.length, 0);
    return buffer.subarray(0, bytesRead);
  } finally {
    await handle.close();
  }
}

/** True when `file` is a regular file (links followed) holding an aarch64 ELF binary. */
export async function isAarch64ElfFile(file: string): Promise<boolean> {
  try {
    return (await stat(file)).isFile() && isAarch64Elf(await readHeader(file));
  } catch {
    return false;
  }
}

async function isUsableBusybox(file: string): Promise<boolean> {
  try {
    const stats = await lstat(file);
    return stats.isFile() && (stats.mode & 0o111) !== 0 && isAarch64Elf(await readHeader(file));
  } catch {
    return false;
  }
}

/** Makes `<directory>/sh` a relative link to `busybox` (what busybox needs to run as a shell). */
async function ensureShellLink(directory: string): Promise<void> {
  const link = path.join(directory, 'sh');
  try {
    if ((await readlink(link)) === 'busybox') return;
  } catch {
    // missing, or not a link: replaced below
  }
  await rm(link, { force: true });
  await symlink('busybox', link);
}

/**
 * apt options that fetch arm64 packages with private apt state below `aptDir`: no
 * `dpkg --add-architecture`, the global lists, cache and dpkg status untouched. Pure.
 */
export function privateAptOptions(aptDir: string): string[] {
  return [
    '-o', 'APT::Architectures::=arm64',
    '-o', `Dir::State::Lists=${path.join(aptDir, 'lists')}`,
    '-o', `Dir::Cache=${path.join(aptDir, 'cache')}`,
    '-o', 'Dir::State::status=/dev/null',
    '-o', 'APT::Sandbox::User=root',
    '-o', 'Acquire::Languages=none',
    '-q',
  ];
}

/**
 * The apt configuration parts directory the private apt runs with: the machine's own
 * `/etc/apt/apt.conf.d` (mirror, proxy and validity settings) followed by one file that clears
 * the update/dpkg hooks, so refreshing the private lists runs no hook of the machine's.
 */
async function writePrivateAptConfig(aptDir: string): Promise<Record<string, string>> {
  const partsDir = path.join(aptDir, 'apt.conf.d');
  await rm(partsDir, { recursive: true, force: true });
  await mkdir(partsDir, { recursive: true });
  const systemParts = '/etc/apt/apt.conf.d';
  if (existsSync(systemParts)) {
    for (const entry of await readdir(systemParts)) {
      await symlink(path.join(systemParts, entry), path.join(partsDir, entry));
    }
  }
  await writeFile(
    path.join(partsDir, 'zzzz-pideploy-lab-no-hooks'),
    [
      '// written by pideploy lab: the private arm64 lists must not run the machine\'s apt hooks',
      '#clear APT::Update::Pre-Invoke;',
      '#clear APT::Update::Post-Invoke;',
      '#clear APT::Update::Post-Invoke-Success;',
      '#clear DPkg::Pre-Invoke;',
      '#clear DPkg::Post-Invoke;',
      '',
    ].join('\n'),
  );
  const mainConfig = path.join(aptDir, 'apt.conf');
  await writeFile(mainConfig, `Dir::Etc::parts "${partsDir}";\n`);
  return { APT_CONFIG: mainConfig };
}

/**
 * Makes `layout.aarch64BusyboxDir` hold a static arm64 `busybox` (Debian's `busybox-static:arm64`)
 * and an `sh` link to it: the lab's aarch64 builder and the shell of aarch64 lab systems.
 * Fetches the `.deb` with private apt state below `layout.aptDir` (no dpkg architecture is
 * added, the machine's apt lists are untouched) and deletes the ~38 MB of lists afterwards.
 * Idempotent: no apt call when the binary is already there.
 */
export async function ensureAarch64Busybox(layout: LabLayout, options: EnsureAarch64BusyboxOptions = {}): Promise<Aarch64Busybox> {
  const directory = layout.aarch64BusyboxDir;
  const busybox = path.join(directory, 'busybox');
  if (await isUsableBusybox(busybox)) {
    await ensureShellLink(directory);
    return { directory, busybox, fetched: false };
  }
  // A machine-wide cache outside the lab directory: `lab down` + `lab up` (every test run does
  // that) then needs no mirror round trip, which is both faster and not at the mercy of the mirror.
  const cacheDir = options.cacheDir ?? process.env['PIDEPLOY_LAB_CACHE_DIR'] ?? DEFAULT_LAB_CACHE_DIR;
  const cached = path.join(cacheDir, 'aarch64-busybox', 'busybox');
  if (await isUsableBusybox(cached)) {
    await installBusybox(cached, directory);
    return { directory, busybox, fetched: false };
  }
  let lastError: unknown;
  for (let attempt = 1; attempt <= 3; attempt += 1) {
    try {
      const fetched = await downloadAarch64Busybox(layout, options);
      await installBusybox(fetched.busybox, path.dirname(cached)).catch(() => undefined);
      return fetched;
    } catch (error) {
      lastError = error;
      if (options.signal?.aborted === true || attempt === 3) break;
      // Mirrors fail transiently ("Some index files failed to download"): wait and try again.
      await new Promise((resolve) => setTimeout(resolve, attempt * 2000));
    }
  }
  throw lastError;
}

/** Copies a usable busybox into `directory` (atomically) with its `sh` link. */
async function installBusybox(source: string, directory: string): Promise<void> {
  await mkdir(directory, { recursive: true });
  const target = path.join(directory, 'busybox');
  const partial = `${target}.partial`;
  await copyFile(source, partial);
  await chmod(partial, 0o755);
  await rename(partial, target);
  await ensureShellLink(directory);
}

/** Fetches busybox-static:arm64 with a private apt state (one attempt). */
async function downloadAarch64Busybox(layout: LabLayout, options: EnsureAarch64BusyboxOptions): Promise<Aarch64Busybox> {
  const directory = layout.aarch64BusyboxDir;
  const busybox = path.join(directory, 'busybox');
  const aptDir = layout.aptDir;
  const listsDir = path.join(aptDir, 'lists');
  const cacheDir = path.join(aptDir, 'cache');
  const downloadDir = path.join(aptDir, 'download');
  const extractDir = path.join(aptDir, 'extract');
  const hint = `the lab fetches ${AARCH64_BUSYBOX_PACKAGE} from the Debian mirror in /etc/apt/sources.list(.d): check that it is reachable and carries arm64, or put a static arm64 busybox at ${busybox}`;
  try {
    await rm(aptDir, { recursive: true, force: true });
    for (const directoryToCreate of [path.join(listsDir, 'partial'), path.join(cacheDir, 'archives', 'partial'), downloadDir, extractDir]) {
      await mkdir(directoryToCreate, { recursive: true });
    }
    const aptEnv = await writePrivateAptConfig(aptDir);
    const aptOptions = privateAptOptions(aptDir);
    await runCommand(['apt-get', ...aptOptions, 'update'], {
      env: aptEnv,
      signal: options.signal,
      failureMessage: 'could not fetch the arm64 package lists',
      failureHint: hint,
    });
    await runCommand(['apt-get', ...aptOptions, 'download', AARCH64_BUSYBOX_PACKAGE], {
      cwd: downloadDir,
      env: aptEnv,
      signal: options.signal,
      failureMessage: `could not download ${AARCH64_BUSYBOX_PACKAGE}`,
      failureHint: hint,
    });
    const debs = (await readdir(downloadDir)).filter((name) => name.endsWith('.deb'));
    const [deb] = debs;
    if (deb === undefined) {
      throw new PideployError({
        code: 'PIDEPLOY_LAB_SETUP_FAILED',
        message: `apt-get download ${AARCH64_BUSYBOX_PACKAGE} left no .deb in ${downloadDir}`,
        hint,
      });
    }
    await runCommand(['dpkg-deb', '-x', path.join(downloadDir, deb), extractDir], {
      failureMessage: `could not unpack ${deb}`,
      failureHint: hint,
    });
    const extracted = path.join(extractDir, 'bin', 'busybox');
    if (!(await isUsableBusybox(extracted))) {
      throw new PideployError({
        code: 'PIDEPLOY_LAB_SETUP_FAILED',
        message: `${deb} holds no aarch64 ELF at /bin/busybox`,
        hint,
      });
    }
    await mkdir(directory, { recursive: true });
    const partial = `${busybox}.partial`;
    await copyFile(extracted, partial);
    await chmod(partial, 0o755);
    await rename(partial, busybox);
    await ensureShellLink(directory);
    return { directory, busybox, fetched: true };
  } finally {
    // The lists are ~38 MB and useless once the .deb is unpacked: keep nothing.
    await rm(aptDir, { recursive: true, force: true });
  }
}

/** True when binfmt_misc is mounted (its `register` file exists). */
function isBinfmtMiscMounted(binfmtDir: string): boolean {
  return existsSync(path.join(binfmtDir, 'register'));
}

/**
 * Makes the kernel run aarch64 ELF binaries through qemu-user-static: mounts binfmt_misc if it
 * is not mounted and registers Debian's qemu-aarch64 line (flags incl. F, so it works inside
 * the lab hosts' mount namespaces) unless an entry of that name exists. binfmt_misc is global
 * to the machine: the returned record says what this call did, for
 * {@link removeQemuAarch64Binfmt}. Needs root.
 */
export async function ensureQemuAarch64Binfmt(): Promise<QemuAarch64BinfmtRecord> {
  if (!existsSync(QEMU_AARCH64_BINFMT_CONF)) {
    throw new PideployError({
      code: 'PIDEPLOY_MISSING_TOOL',
      message: `qemu-user-static is not installed (${QEMU_AARCH64_BINFMT_CONF} is missing): the lab cannot run aarch64 builds`,
      hint: 'apt-get install qemu-user-static',
    });
  }
  const registration = parseBinfmtRegistration(await readFile(QEMU_AARCH64_BINFMT_CONF, 'utf8'));
  if (!existsSync(registration.interpreter)) {
    throw new PideployError({
      code: 'PIDEPLOY_MISSING_TOOL',
      message: `the qemu-aarch64 interpreter ${registration.interpreter} is missing`,
      hint: 'apt-get install qemu-user-static',
    });
  }
  let mountedByLab = false;
  if (!isBinfmtMiscMounted(BINFMT_MISC_DIR)) {
    await runCommand(['mount', '-t', 'binfmt_misc', 'binfmt_misc', BINFMT_MISC_DIR], {
      failureMessage: `could not mount binfmt_misc on ${BINFMT_MISC_DIR}`,
      failureHint: 'the lab needs root with CAP_SYS_ADMIN (a container may forbid mounting binfmt_misc)',
    });
    mountedByLab = true;
  }
  const entry = path.join(BINFMT_MISC_DIR, registration.name);
  if (existsSync(entry)) {
    // Someone else registered it (systemd-binfmt, another lab): use it, and re-enable it if disabled.
    if ((await readFile(entry, 'utf8')).startsWith('disabled')) await writeFile(entry, '1');
    return { registeredByLab: false, mountedByLab };
  }
  try {
    await writeFile(path.join(BINFMT_MISC_DIR, 'register'), `${registration.line}\n`);
  } catch (error) {
    // Another process may have registered it between the check and the write.
    if (existsSync(entry)) return { registeredByLab: false, mountedByLab };
    throw new PideployError({
      code: 'PIDEPLOY_LAB_SETUP_FAILED',
      message: `could not register qemu-aarch64 in binfmt_misc: ${(error as Error).message}`,
      hint: 'the lab needs root with write access to /proc/sys/fs/binfmt_misc/register',
      cause: error,
    });
  }
  return { registeredByLab: true, mountedByLab };
}

/**
 * Undoes exactly what {@link ensureQemuAarch64Binfmt} recorded: removes the qemu-aarch64 entry
 * only if the lab registered it, unmounts binfmt_misc only if the lab mounted it. Idempotent.
 */
export async function removeQemuAarch64Binfmt(record: QemuAarch64BinfmtRecord): Promise<void> {
  if (record.registeredByLab && isBinfmtMiscMounted(BINFMT_MISC_DIR)) {
    const name = existsSync(QEMU_AARCH64_BINFMT_CONF)
      ? parseBinfmtRegistration(await readFile(QEMU_AARCH64_BINFMT_CONF, 'utf8')).name
      : 'qemu-aarch64';
    const entry = path.join(BINFMT_MISC_DIR, name);
    if (existsSync(entry)) await writeFile(entry, '-1');
  }
  if (record.mountedByLab && isBinfmtMiscMounted(BINFMT_MISC_DIR)) {
    // Entries outlive the mount; a busy mount is left alone.
    await runCommand(['umount', BINFMT_MISC_DIR]).catch(() => undefined);
  }
}

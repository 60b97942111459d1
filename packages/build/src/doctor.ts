import { readdir, readFile, statfs } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createBaseContext, type PideployContext } from '@pideploy/core';
import { runProcess } from '@pideploy/nix';
import { localNixSystem, type BuildMode } from './expression.js';
import type { RemoteBuilder } from './builders.js';

/** Result of one doctor check. `fail` on a required check makes `pideploy doctor` exit 1. */
export type DoctorStatus = 'ok' | 'warn' | 'fail' | 'skip';

/** The exact fix for a problem, per kind of machine. */
export interface DoctorFix {
  /** What to put in the NixOS configuration of this machine. */
  readonly nixos?: string | undefined;
  /** What to run / add on Debian or Ubuntu. */
  readonly debian?: string | undefined;
  /** Anything else worth saying. */
  readonly other?: string | undefined;
}

/** One check of {@link doctor}. */
export interface DoctorCheck {
  /** Stable id: `nix`, `binfmt`, `extra-platforms`, `builders`, `disk-nix`, `disk-tmp`. */
  readonly id: string;
  /** What was checked, for a table. */
  readonly title: string;
  readonly status: DoctorStatus;
  /** What was found. */
  readonly detail: string;
  /** Whether a failure blocks building in the requested mode. */
  readonly required: boolean;
  /** How to fix a `warn`/`fail`. */
  readonly fix?: DoctorFix | undefined;
}

/** What `pideploy doctor` reports (`--json` prints it). */
export interface DoctorReport {
  readonly version: 1;
  /** The system builds are for. */
  readonly system: string;
  readonly mode: BuildMode;
  /** False when a required check failed. */
  readonly ok: boolean;
  readonly checks: readonly DoctorCheck[];
}

/** Options of {@link doctor}. */
export interface DoctorOptions {
  /** The target system (default `aarch64-linux`). */
  readonly system?: string | undefined;
  /** Which mode the checks are required for (default `emulated`). */
  readonly mode?: BuildMode | undefined;
  /** Remote builders to ping (mode `builders`; default: none besides Nix's own `builders` setting). */
  readonly builders?: readonly RemoteBuilder[] | undefined;
  /** Environment variables for nix (merged over this process's). */
  readonly env?: Readonly<Record<string, string | undefined>> | undefined;
  /** Where binfmt_misc lives (tests). Default `/proc/sys/fs/binfmt_misc`. */
  readonly binfmtDir?: string | undefined;
  /** Below this many free bytes a disk check fails (default 1 GiB); below 4× it warns. */
  readonly minFreeBytes?: number | undefined;
}

/** A parsed `/proc/sys/fs/binfmt_misc/<name>` entry. */
export interface BinfmtEntry {
  readonly name: string;
  readonly enabled: boolean;
  readonly interpreter: string;
  readonly flags: string;
  readonly magic: string;
  readonly mask: string;
}

/** ELF magic + e_machine of each system's binaries, as binfmt_misc registrations match them. */
const ELF_MAGIC: Readonly<Record<string, string>> = {
  'aarch64-linux': '7f454c460201010000000000000000000200b700',
  'armv7l-linux': '7f454c4601010100000000000000000002002800',
  'armv6l-linux': '7f454c4601010100000000000000000002002800',
  'riscv64-linux': '7f454c460201010000000000000000000200f300',
};

/** Parses one binfmt_misc entry file (`enabled`, `interpreter …`, `flags: POF`, `magic …`, `mask …`). */
export function parseBinfmtEntry(name: string, text: string): BinfmtEntry {
  const field = (key: string): string => new RegExp(`^${key}:? (.*)$`, 'mu').exec(text)?.[1]?.trim() ?? '';
  return {
    name,
    enabled: /^enabled$/mu.test(text),
    interpreter: field('interpreter'),
    flags: field('flags'),
    magic: field('magic'),
    mask: field('mask'),
  };
}

/** Whether a binfmt entry runs ELF binaries of `system` (magic compared under the mask). */
export function binfmtMatchesSystem(entry: BinfmtEntry, system: string): boolean {
  const want = ELF_MAGIC[system];
  if (want === undefined || entry.magic === '') return false;
  const magic = Buffer.from(entry.magic, 'hex');
  const mask = entry.mask === '' ? Buffer.alloc(magic.length, 0xff) : Buffer.from(entry.mask, 'hex');
  const wanted = Buffer.from(want, 'hex');
  for (let index = 0; index < Math.min(magic.length, wanted.length); index += 1) {
    if (((magic[index] ?? 0) & (mask[index] ?? 0xff)) !== ((wanted[index] ?? 0) & (mask[index] ?? 0xff))) return false;
  }
  return true;
}

/** `2.8.0` from `nix-build (Nix) 2.8.0`. */
export function parseNixVersion(text: string): string | undefined {
  return /\(Nix\)\s+(\d+\.\d+(?:\.\d+)?\S*)/u.exec(text)?.[1];
}

/** The settings the doctor reads from `nix show-config --json`. */
export interface NixPlatformSettings {
  readonly system: string;
  readonly extraPlatforms: readonly string[];
  readonly builders: string;
  readonly maxJobs: string;
}

/** Reads system, extra-platforms, builders and max-jobs from `nix show-config --json` output. */
export function parseNixShowConfig(json: string): NixPlatformSettings {
  const config = JSON.parse(json) as Record<string, { value?: unknown } | undefined>;
  const value = (key: string): unknown => config[key]?.value;
  const extra = value('extra-platforms');
  return {
    system: String(value('system') ?? ''),
    extraPlatforms: Array.isArray(extra) ? extra.map(String) : typeof extra === 'string' ? extra.split(/\s+/u).filter(Boolean) : [],
    builders: String(value('builders') ?? ''),
    maxJobs: String(value('max-jobs') ?? ''),
  };
}

/** The fixes for "this machine cannot run `system` binaries". */
export function emulationFix(system: string): DoctorFix {
  return {
    nixos: `boot.binfmt.emulatedSystems = [ "${system}" ];  (in this machine's configuration.nix, then nixos-rebuild switch)`,
    debian: 'apt install qemu-user-static  (registers qemu binfmt handlers with the F flag via systemd-binfmt)',
  };
}

/** The fixes for "Nix does not list `system` among its platforms". */
export function extraPlatformsFix(system: string): DoctorFix {
  return {
    nixos: `boot.binfmt.emulatedSystems = [ "${system}" ];  (also sets nix.settings.extra-platforms)`,
    debian: `add \`extra-platforms = ${system}\` to /etc/nix/nix.conf (and restart nix-daemon if you use one)`,
  };
}

/** The binfmt check: an enabled handler for `system`, with the F flag (works in sandboxes and namespaces). */
export function checkBinfmt(entries: readonly BinfmtEntry[], system: string, required: boolean): DoctorCheck {
  const title = `binfmt handler for ${system}`;
  const matching = entries.filter((entry) => binfmtMatchesSystem(entry, system));
  const enabled = matching.filter((entry) => entry.enabled);
  if (enabled.length === 0) {
    return {
      id: 'binfmt',
      title,
      status: required ? 'fail' : 'warn',
      detail: matching.length > 0 ? `${matching.map((entry) => entry.name).join(', ')} registered but disabled` : `no binfmt_misc handler runs ${system} binaries`,
      required,
      fix: emulationFix(system),
    };
  }
  const withF = enabled.find((entry) => entry.flags.includes('F'));
  if (withF === undefined) {
    return {
      id: 'binfmt',
      title,
      status: 'warn',
      detail: `${enabled[0]?.name} (${enabled[0]?.interpreter}) lacks the F flag: builds in a sandbox cannot find the interpreter`,
      required,
      fix: {
        ...emulationFix(system),
        other: `or add the interpreter to extra-sandbox-paths: ${enabled[0]?.interpreter}`,
      },
    };
  }
  return { id: 'binfmt', title, status: 'ok', detail: `${withF.name}: ${withF.interpreter} (flags ${withF.flags})`, required };
}

/** The extra-platforms check. */
export function checkExtraPlatforms(settings: NixPlatformSettings, system: string, required: boolean): DoctorCheck {
  const title = `nix can build ${system}`;
  if (settings.system === system) return { id: 'extra-platforms', title, status: 'ok', detail: `native system ${system}`, required };
  if (settings.extraPlatforms.includes(system)) {
    return { id: 'extra-platforms', title, status: 'ok', detail: `extra-platforms = ${settings.extraPlatforms.join(' ')}`, required };
  }
  return {
    id: 'extra-platforms',
    title,
    status: required ? 'fail' : 'warn',
    detail: `extra-platforms = ${settings.extraPlatforms.join(' ') || '(empty)'}; system = ${settings.system}`,
    required,
    fix: extraPlatformsFix(system),
  };
}

/** The disk space check of one directory. */
export function checkDiskSpace(id: string, directory: string, freeBytes: number, minFreeBytes: number): DoctorCheck {
  const gib = (bytes: number): string => `${(bytes / 1024 ** 3).toFixed(1)} GiB`;
  const status: DoctorStatus = freeBytes < minFreeBytes ? 'fail' : freeBytes < minFreeBytes * 4 ? 'warn' : 'ok';
  return {
    id,
    title: `free space in ${directory}`,
    status,
    detail: `${gib(freeBytes)} free`,
    required: true,
    ...(status === 'ok'
      ? {}
      : { fix: { other: `free space: nix-collect-garbage (old generations: nix-collect-garbage -d), or clean ${directory}` } }),
  };
}

/** Reads every binfmt_misc entry (none when binfmt_misc is not mounted). */
export async function readBinfmtEntries(binfmtDir = '/proc/sys/fs/binfmt_misc'): Promise<BinfmtEntry[]> {
  let names: string[];
  try {
    names = await readdir(binfmtDir);
  } catch {
    return [];
  }
  const entries: BinfmtEntry[] = [];
  for (const name of names) {
    if (name === 'register' || name === 'status') continue;
    try {
      entries.push(parseBinfmtEntry(name, await readFile(path.join(binfmtDir, name), 'utf8')));
    } catch {
      // unreadable entry: skip it
    }
  }
  return entries;
}

/** Runs `nix show-config --json` and reads the platform settings (undefined when nix cannot). */
export async function readNixPlatformSettings(
  env: Readonly<Record<string, string | undefined>> | undefined,
  signal?: AbortSignal,
): Promise<NixPlatformSettings | undefined> {
  try {
    const output = await runProcess(['nix', '--extra-experimental-features', 'nix-command', 'show-config', '--json'], {
      env,
      signal,
      allowNonZeroExit: true,
      timeoutMs: 30_000,
    });
    return output.exitCode === 0 ? parseNixShowConfig(output.stdout) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Checks that this machine can build NixOS for the Pi: Nix and its version; a binfmt handler for
 * the target system (with the F flag); `extra-platforms`; remote builders answer; free space in
 * /nix and the temp directory. Every problem carries the exact fix for NixOS and Debian/Ubuntu.
 * Never throws for a failed check: the report says what failed.
 */
export async function doctor(options: DoctorOptions = {}, context: PideployContext = createBaseContext()): Promise<DoctorReport> {
  const system = options.system ?? 'aarch64-linux';
  const mode = options.mode ?? 'emulated';
  const native = localNixSystem() === system;
  const needsEmulation = mode === 'emulated' && !native;
  const checks: DoctorCheck[] = [];

  let nixVersion: string | undefined;
  try {
    const output = await runProcess(['nix-build', '--version'], { env: options.env, signal: context.signal, allowNonZeroExit: true, timeoutMs: 30_000 });
    nixVersion = parseNixVersion(output.stdout);
  } catch {
    nixVersion = undefined;
  }
  checks.push(
    nixVersion === undefined
      ? {
          id: 'nix',
          title: 'nix installed',
          status: 'fail',
          detail: 'nix-build was not found on PATH',
          required: true,
          fix: { nixos: 'Nix is part of NixOS: check PATH', debian: 'apt install nix-bin', other: 'or install from https://nixos.org/download' },
        }
      : { id: 'nix', title: 'nix installed', status: 'ok', detail: `Nix ${nixVersion}`, required: true },
  );

  if (native) {
    checks.push({ id: 'binfmt', title: `binfmt handler for ${system}`, status: 'skip', detail: `this machine is ${system}`, required: false });
  } else {
    checks.push(checkBinfmt(await readBinfmtEntries(options.binfmtDir), system, needsEmulation));
  }

  const settings = nixVersion === undefined ? undefined : await readNixPlatformSettings(options.env, context.signal);
  if (settings === undefined) {
    checks.push({ id: 'extra-platforms', title: `nix can build ${system}`, status: 'skip', detail: 'could not read `nix show-config`', required: false });
  } else {
    checks.push(checkExtraPlatforms(settings, system, needsEmulation));
  }

  const builderUris = (options.builders ?? []).map((builder) => builder.uri);
  if (builderUris.length === 0 && settings !== undefined && settings.builders !== '' && !settings.builders.startsWith('@')) {
    builderUris.push(...settings.builders.split(/[;\n]/u).map((line) => line.trim().split(/\s+/u)[0] ?? '').filter(Boolean));
  }
  if (builderUris.length === 0) {
    checks.push({
      id: 'builders',
      title: 'remote builders reachable',
      status: mode === 'builders' ? 'fail' : 'skip',
      detail: 'no remote builders configured',
      required: mode === 'builders',
      ...(mode === 'builders'
        ? { fix: { nixos: 'nix.buildMachines = [ { hostName = "pi1"; system = "aarch64-linux"; sshUser = "root"; } ];', debian: 'add `builders = ssh://root@pi1 aarch64-linux` to /etc/nix/nix.conf, or pass --builders' } }
        : {}),
    });
  } else {
    for (const uri of builderUris) {
      const output = await runProcess(['nix', '--extra-experimental-features', 'nix-command', 'store', 'ping', '--store', uri], {
        env: options.env,
        signal: context.signal,
        allowNonZeroExit: true,
        timeoutMs: 30_000,
      }).catch((error: unknown) => ({ exitCode: 1, stdout: '', stderr: String(error) }));
      checks.push(
        output.exitCode === 0
          ? { id: 'builders', title: `builder ${uri} reachable`, status: 'ok', detail: 'nix store ping answered', required: mode === 'builders' }
          : {
              id: 'builders',
              title: `builder ${uri} reachable`,
              status: mode === 'builders' ? 'fail' : 'warn',
              detail: (output.stderr.trim().split('\n').pop() ?? '').replace(/^error:\s*/u, ''),
              required: mode === 'builders',
              fix: { other: `check that \`ssh ${uri.replace(/^ssh(-ng)?:\/\//u, '')} nix-store --version\` works non-interactively (keys, known_hosts, NIX_SSHOPTS)` },
            },
      );
    }
  }

  const minFree = options.minFreeBytes ?? 1024 ** 3;
  for (const [id, directory] of [
    ['disk-nix', '/nix'],
    ['disk-tmp', os.tmpdir()],
  ] as const) {
    try {
      const stats = await statfs(directory);
      checks.push(checkDiskSpace(id, directory, Number(stats.bavail) * Number(stats.bsize), minFree));
    } catch {
      checks.push({ id, title: `free space in ${directory}`, status: 'skip', detail: `${directory} does not exist`, required: false });
    }
  }

  const ok = checks.every((check) => !(check.required && check.status === 'fail'));
  return { version: 1, system, mode, ok, checks };
}

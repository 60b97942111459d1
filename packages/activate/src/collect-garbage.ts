import { PideployError, stdinScriptBootstrap, stdinScriptLine, tailLines, type PideployContext } from '@pideploy/core';
import { SSH_ERROR_CODES, SUDO_WRONG_PASSWORD, type SudoRunner } from '@pideploy/ssh';
import { SYSTEM_PROFILE } from './activation-script.js';

/** Why a generation is kept: the N newest, what boots next, what runs, what the host booted. */
export type KeptBecause = 'newest' | 'current' | 'running' | 'booted';

/** What {@link collectSystemGarbage} did on one host (`version: 1`). */
export interface SystemGarbageResult {
  readonly version: 1;
  /** Generations deleted (or, in a dry run, that would be), oldest first. */
  readonly deletedGenerations: readonly number[];
  /** Generations kept, newest first, each with why. */
  readonly keptGenerations: readonly { readonly number: number; readonly because: readonly KeptBecause[] }[];
  /** The boot loader was rewritten without the deleted generations (`switch-to-configuration boot`). */
  readonly bootLoaderUpdated: boolean;
  /** Store paths the garbage collector deleted (undefined in a dry run, or when Nix did not say). */
  readonly pathsDeleted?: number | undefined;
  /** Bytes it freed (as Nix reports them; undefined in a dry run, or when Nix did not say). */
  readonly bytesFreed?: number | undefined;
  readonly dryRun: boolean;
}

/** Options of {@link collectSystemGarbage}. */
export interface CollectSystemGarbageOptions {
  /** The host's name, for messages. */
  readonly host: string;
  /** Root on the host: the whole collection is one command through it (one password check). */
  readonly sudo: SudoRunner;
  /** How many of the newest system generations to keep (at least 1). */
  readonly keep: number;
  /** Say what would be deleted; delete nothing. */
  readonly dryRun?: boolean | undefined;
}

/**
 * The host side, a POSIX sh script run as root (sent on stdin, see `stdinScriptBootstrap`): `$1` the system profile, `$2` how many newest
 * generations to keep, `$3` `dry` or `run`. Prints `keep N why,…` / `delete N` per generation
 * (newest first), then, unless dry, deletes the others with `nix-env --delete-generations`,
 * rewrites the boot loader from the profile (`switch-to-configuration boot`, so its menu lists
 * no deleted generation and /boot drops their kernels) and runs `nix-store --gc`, printing
 * `boot-loader ok|failed` and `gc SUMMARY` (Nix's own, e.g. `7 store paths deleted, 1.50 MiB freed`).
 */
export const SYSTEM_GARBAGE_SCRIPT = `set -u
PATH=/run/current-system/sw/bin:/nix/var/nix/profiles/default/bin:/usr/bin:/bin:$PATH
profile=$1 keep=$2 mode=$3
case $keep in ''|*[!0-9]*|0) echo "gc: keep must be a whole number of at least 1" >&2; exit 2 ;; esac
dir=\${profile%/*} base=\${profile##*/}
cd "$dir" || { echo "gc: no profile directory $dir" >&2; exit 1; }
current=$(readlink "$base" 2>/dev/null || true)
running=$(readlink -e /run/current-system 2>/dev/null || true)
booted=$(readlink -e /run/booted-system 2>/dev/null || true)
numbers=$(for link in "$base"-*-link; do
  [ -L "$link" ] || continue
  n=\${link#"$base"-}; n=\${n%-link}
  case $n in ''|*[!0-9]*) continue ;; esac
  echo "$n"
done | sort -rn)
kept=0
delete=''
for n in $numbers; do
  link="$base-$n-link"
  target=$(readlink -e "$link" 2>/dev/null || true)
  why=''
  if [ "$kept" -lt "$keep" ]; then why="\${why}newest,"; kept=$((kept + 1)); fi
  [ "$link" = "$current" ] && why="\${why}current,"
  [ -n "$target" ] && [ "$target" = "$running" ] && why="\${why}running,"
  [ -n "$target" ] && [ "$target" = "$booted" ] && why="\${why}booted,"
  if [ -n "$why" ]; then echo "keep $n \${why%,}"; else echo "delete $n"; delete="$n $delete"; fi
done
[ "$mode" = run ] || exit 0
if [ -n "$delete" ]; then
  # shellcheck disable=SC2086
  nix-env -p "$profile" --delete-generations $delete >/dev/null || { echo "gc: nix-env could not delete generations $delete" >&2; exit 1; }
  if "$profile/bin/switch-to-configuration" boot >/dev/null 2>&1; then echo "boot-loader ok"; else echo "boot-loader failed"; fi
fi
# Nix says what it freed on stdout (2.8) or stderr (later ones), after the paths it deleted.
summary=$(nix-store --gc 2>&1 | grep -E 'store paths? deleted' | tail -n 1)
echo "gc $summary"
`;

const SIZE_UNITS: Readonly<Record<string, number>> = { B: 1, KiB: 1024, MiB: 1024 ** 2, GiB: 1024 ** 3, TiB: 1024 ** 4 };

/**
 * Reads the script's report. Pure.
 * @returns undefined when a line is not one it prints.
 */
export function parseSystemGarbageOutput(stdout: string, dryRun: boolean): SystemGarbageResult | undefined {
  const deleted: number[] = [];
  const kept: { number: number; because: KeptBecause[] }[] = [];
  let bootLoaderUpdated = false;
  let pathsDeleted: number | undefined;
  let bytesFreed: number | undefined;
  for (const line of stdout.split('\n').filter((item) => item !== '')) {
    const keep = /^keep (\d+) ([a-z,]+)$/u.exec(line);
    const drop = /^delete (\d+)$/u.exec(line);
    if (keep !== null) kept.push({ number: Number(keep[1]), because: (keep[2] ?? '').split(',') as KeptBecause[] });
    else if (drop !== null) deleted.push(Number(drop[1]));
    else if (line === 'boot-loader ok') bootLoaderUpdated = true;
    else if (line === 'boot-loader failed') bootLoaderUpdated = false;
    else if (line.startsWith('gc ')) {
      const summary = /(\d+) store paths? deleted, ([\d.]+) (B|KiB|MiB|GiB|TiB) freed/u.exec(line);
      if (summary !== null) {
        pathsDeleted = Number(summary[1]);
        bytesFreed = Math.round(Number(summary[2]) * (SIZE_UNITS[summary[3] ?? 'B'] ?? 1));
      }
    } else return undefined;
  }
  return { version: 1, deletedGenerations: deleted.sort((a, b) => a - b), keptGenerations: kept, bootLoaderUpdated, pathsDeleted, bytesFreed, dryRun };
}

/**
 * Frees a host's store (SD cards fill up): deletes the system generations older than the `keep`
 * newest, never the one that boots next, the one running or the one the host booted; rewrites the
 * boot loader without them; then collects the garbage. ONE root command (one password check).
 * @throws PideployError `PIDEPLOY_GC_FAILED` with the host's words, `PIDEPLOY_SUDO_PASSWORD_WRONG`.
 */
export async function collectSystemGarbage(options: CollectSystemGarbageOptions, context: PideployContext): Promise<SystemGarbageResult> {
  if (!Number.isSafeInteger(options.keep) || options.keep < 1) {
    throw new PideployError({ code: 'PIDEPLOY_USAGE', message: `keep must be a whole number of at least 1, not ${String(options.keep)}`, hint: 'keep 1 leaves the current generation only' });
  }
  const dryRun = options.dryRun === true;
  // One short line for sudo's log (the script comes on stdin).
  const argv = ['sh', '-c', stdinScriptBootstrap('gc'), 'pideploy-gc', SYSTEM_PROFILE, String(options.keep), dryRun ? 'dry' : 'run'];
  const result = await options.sudo.exec(argv, { stdin: stdinScriptLine(SYSTEM_GARBAGE_SCRIPT), signal: context.signal });
  const shown = ['sh', '-c', '<pideploy gc>', ...argv.slice(3)];
  if (result.exitCode !== 0) {
    if (SUDO_WRONG_PASSWORD.test(result.stderr)) {
      throw new PideployError({ code: SSH_ERROR_CODES.sudoPasswordWrong, message: `sudo on ${options.host} refused the password`, hint: 'check the sudo password' });
    }
    const own = result.stderr.split('\n').filter((line) => line.startsWith('gc: ')).at(-1);
    throw new PideployError({
      code: 'PIDEPLOY_GC_FAILED',
      message: `collecting garbage on ${options.host} failed: ${own?.slice('gc: '.length) ?? (tailLines(result.stderr, 1) || `exit ${String(result.exitCode ?? result.signal)}`)}`,
      hint: 'see what the host says above; no generation in use was touched',
      commandFailure: { command: shown, ...(result.exitCode === null ? {} : { exitCode: result.exitCode }), stderrTail: tailLines(result.stderr) },
    });
  }
  const parsed = parseSystemGarbageOutput(result.stdout, dryRun);
  if (parsed === undefined) {
    throw new PideployError({
      code: 'PIDEPLOY_GC_FAILED',
      message: `collecting garbage on ${options.host}: the host's answer is not what pideploy's script prints (${tailLines(result.stdout, 1)})`,
      hint: "check the host's /bin/sh",
      commandFailure: { command: shown, exitCode: 0, stderrTail: tailLines(result.stderr) },
    });
  }
  return parsed;
}

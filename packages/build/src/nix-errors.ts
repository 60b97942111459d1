import { PideployError, tailLines } from '@pideploy/core';
import { nixErrorHeadline, stripAnsi } from '@pideploy/nix';

/** The hint every "this machine cannot build for the Pi" error ends with. */
export const DOCTOR_HINT = 'run `pideploy doctor` for the exact fix';

/** Where Nix located an error: `at /path/file.nix:3:7:` or, for module errors, "In `/path/file.nix'". */
export function nixErrorLocation(text: string): string | undefined {
  const at = /\bat (\/[^\s:]+):(\d+):(\d+):?/u.exec(text);
  if (at !== null) return `${at[1]}:${at[2]}:${at[3]}`;
  const inFile = /In `(\/[^']+)'/u.exec(text);
  return inFile === null ? undefined : inFile[1];
}


/** Options of {@link translateNixFailure}. */
export interface NixFailureContext {
  /** The argv that failed. */
  readonly command: readonly string[];
  readonly exitCode: number | null;
  /** Nix's stderr (plain, or the `error:` messages of an internal-json log joined by newlines). */
  readonly stderr: string;
  /** The target system (for platform errors). */
  readonly system: string;
  /** What was being done, e.g. `evaluating pi1's configuration`. */
  readonly doing: string;
}

/**
 * Turns Nix's failure output into one PideployError with a useful message and hint: unpinned
 * `<nixpkgs>` use, a missing imported file, no aarch64 emulation (→ doctor), or an evaluation
 * error with Nix's message and file:line. The full text stays in `commandFailure.stderrTail`.
 */
export function translateNixFailure(failure: NixFailureContext): PideployError {
  const text = stripAnsi(failure.stderr);
  const commandFailure = {
    command: [...failure.command],
    exitCode: failure.exitCode ?? undefined,
    stderrTail: tailLines(text),
  };
  const location = nixErrorLocation(text);
  const where = location === undefined ? '' : ` at ${location}`;
  const searchPath = /file '([^']+)' was not found in the Nix search path/u.exec(text);
  if (searchPath !== null) {
    return new PideployError({
      code: 'PIDEPLOY_BUILD_UNPINNED',
      message: `the configuration uses <${searchPath[1]}>${where}, but pideploy evaluates only the pinned nixpkgs (no NIX_PATH, no channels)`,
      hint: `use the module argument \`pkgs\`, or \`(import ./pins.nix).${searchPath[1]}\` for the pinned source, instead of <${searchPath[1]}>`,
      commandFailure,
    });
  }
  const missing = /getting status of '([^']+)': No such file or directory/u.exec(text);
  if (missing !== null) {
    return new PideployError({
      code: 'PIDEPLOY_BUILD_MISSING_FILE',
      message: `${failure.doing}: ${missing[1]} does not exist${where}`,
      hint: 'create the file, or fix the import that names it',
      commandFailure,
    });
  }
  const platform = /a '([^']+)' with features \{[^}]*\} is required to build '([^']+)', but I am a '([^']+)'/u.exec(text);
  if (platform !== null) {
    return new PideployError({
      code: 'PIDEPLOY_BUILD_NO_EMULATION',
      message: `this ${platform[3]} machine cannot build ${platform[1]} derivations (${platform[2]}): no extra-platforms or builders for ${platform[1]}`,
      hint: DOCTOR_HINT,
      commandFailure,
    });
  }
  if (/Exec format error/u.test(text)) {
    return new PideployError({
      code: 'PIDEPLOY_BUILD_NO_EMULATION',
      message: `${failure.doing}: a ${failure.system} builder could not run (Exec format error): qemu binfmt emulation is not registered`,
      hint: DOCTOR_HINT,
      commandFailure,
    });
  }
  return new PideployError({
    code: 'PIDEPLOY_BUILD_EVAL_FAILED',
    message: `${failure.doing} failed: ${nixErrorHeadline(text)}${location !== undefined && !nixErrorHeadline(text).includes(location) ? ` (${location})` : ''}`,
    hint:
      location !== undefined
        ? `fix ${location.replace(/:\d+:\d+$/u, '')}; Nix's full message is above`
        : /use '--show-trace'/u.test(text)
          ? "Nix's message is above; rerun with --show-trace to see where the error comes from"
          : "Nix's message is above; rerun with --verbose for its full output",
    commandFailure,
  });
}

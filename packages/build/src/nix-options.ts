import { PideployError } from '@pideploy/core';

/**
 * Nix settings for one build, as `nixos-rebuild` passes them through: what a person debugging an
 * evaluation error or tuning a long build on a laptop reaches for. The build mode's own
 * arguments (builders mode: `--max-jobs 0`, its builders) come after these and win.
 */
export interface NixBuildOptions {
  /** `--show-trace`: the whole evaluation trace of an error (pideploy then shows it all, not its tail). */
  readonly showTrace?: boolean | undefined;
  /** `--keep-going`: build what can be built when a derivation fails; every failed one is named. */
  readonly keepGoing?: boolean | undefined;
  /** `--max-jobs`: derivations built at once on this machine (`auto`: one per CPU). */
  readonly maxJobs?: number | 'auto' | undefined;
  /** `--cores`: CPU cores each build may use (`NIX_BUILD_CORES`; 0 = all). */
  readonly cores?: number | undefined;
  /** Show every build's log lines as they come (`nix-build -L`), prefixed with the derivation's name. */
  readonly printBuildLogs?: boolean | undefined;
  /** Other Nix settings, each passed as `--option NAME VALUE` (the names of nix.conf). */
  readonly settings?: Readonly<Record<string, string>> | undefined;
}

/** A Nix setting name as nix.conf spells it (`sandbox`, `extra-substituters`, `http2`). */
const SETTING_NAME = /^[a-z][a-z0-9]*(?:-[a-z0-9]+)*$/u;

/**
 * Parses one `NAME=VALUE` of `--option` (pure).
 * @throws PideployError `PIDEPLOY_USAGE` without `=`, with a name Nix has no spelling for, or with a line break in the value.
 */
export function parseNixSetting(text: string): { readonly name: string; readonly value: string } {
  const equals = text.indexOf('=');
  const name = equals < 0 ? text : text.slice(0, equals).trim();
  if (equals < 0) {
    throw new PideployError({
      code: 'PIDEPLOY_USAGE',
      message: `--option takes NAME=VALUE, not "${text}"`,
      hint: `for example --option ${SETTING_NAME.test(name) ? name : 'sandbox'}=true (a nix.conf setting and its value)`,
    });
  }
  const value = text.slice(equals + 1);
  checkNixSetting(name, value);
  return { name, value };
}

/**
 * Checks a Nix setting before it reaches Nix's argv (pure): the name must be spelt like nix.conf's
 * (so it can never read as another flag), the value must be one line.
 * @throws PideployError `PIDEPLOY_USAGE`.
 */
export function checkNixSetting(name: string, value: string): void {
  if (!SETTING_NAME.test(name)) {
    throw new PideployError({
      code: 'PIDEPLOY_USAGE',
      message: `"${name}" is not a Nix setting name`,
      hint: 'use a name of nix.conf, in lower case with dashes: --option max-silent-time=3600',
    });
  }
  if (/[\r\n\0]/u.test(value)) {
    throw new PideployError({ code: 'PIDEPLOY_USAGE', message: `the value of the Nix setting ${name} has a line break`, hint: 'give it on one line (lists are separated by spaces)' });
  }
}

/** A `--max-jobs` value: a whole number or `auto` (pure). @throws PideployError `PIDEPLOY_USAGE`. */
export function parseMaxJobs(text: string): number | 'auto' {
  if (text === 'auto') return 'auto';
  if (/^[0-9]+$/u.test(text) && Number.isSafeInteger(Number(text))) return Number(text);
  throw new PideployError({ code: 'PIDEPLOY_USAGE', message: `--max-jobs takes a whole number or auto, not "${text}"`, hint: 'for example --max-jobs 4 (0: build nothing here, only on remote builders)' });
}

/** Arguments of the two Nix commands of a build, from {@link NixBuildOptions} (pure). */
export interface NixOptionArguments {
  /** For `nix-instantiate` (evaluation): `--show-trace` and the settings. */
  readonly evaluation: readonly string[];
  /** For `nix-build` (realisation): everything but the log streaming, which pideploy does itself. */
  readonly build: readonly string[];
}

/**
 * The Nix arguments of {@link NixBuildOptions} (pure): settings in their name order, so the same
 * options give the same arguments (builds with the same arguments can go together).
 * @throws PideployError `PIDEPLOY_USAGE` for a setting Nix could misread (see {@link checkNixSetting}) or a negative number.
 */
export function nixOptionArguments(options: NixBuildOptions | undefined): NixOptionArguments {
  if (options === undefined) return { evaluation: [], build: [] };
  const settings = Object.entries(options.settings ?? {}).sort(([left], [right]) => (left < right ? -1 : left > right ? 1 : 0));
  const settingArguments = settings.flatMap(([name, value]) => {
    checkNixSetting(name, value);
    return ['--option', name, value];
  });
  const whole = (name: string, value: number | undefined): string[] => {
    if (value === undefined) return [];
    if (!Number.isSafeInteger(value) || value < 0) {
      throw new PideployError({ code: 'PIDEPLOY_USAGE', message: `--${name} takes a whole number of at least 0, not ${value}`, hint: `for example --${name} 4` });
    }
    return [`--${name}`, String(value)];
  };
  const trace = options.showTrace === true ? ['--show-trace'] : [];
  return {
    evaluation: [...trace, ...settingArguments],
    build: [
      ...trace,
      ...(options.keepGoing === true ? ['--keep-going'] : []),
      ...(options.maxJobs === 'auto' ? ['--max-jobs', 'auto'] : whole('max-jobs', options.maxJobs)),
      ...whole('cores', options.cores),
      ...settingArguments,
    ],
  };
}

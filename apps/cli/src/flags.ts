import { parseMaxJobs, parseNixSetting, type NixBuildOptions } from '@pideploy/build';
import { PideployError } from '@pideploy/core';
import { isSshTarget, type HealthCheckSettings } from '@pideploy/sdk';
import type { CommandInvocation } from './command.js';

/** A string flag's value (undefined when absent or given as a boolean). */
export function stringFlag(invocation: CommandInvocation, name: string): string | undefined {
  const value = invocation.flags[name];
  return typeof value === 'string' ? value : undefined;
}

/**
 * `--specialisation NAME` (that name) or `--no-specialisation` (false: the system itself); undefined
 * without either, when the host's pideploy.json `specialisation` decides.
 * @throws PideployError `PIDEPLOY_USAGE` for both at once
 */
export function specialisationFlag(invocation: CommandInvocation): string | false | undefined {
  const name = stringFlag(invocation, 'specialisation');
  if (invocation.flags['no-specialisation'] !== true) return name;
  if (name !== undefined) throw new PideployError({ code: 'PIDEPLOY_USAGE', message: '--specialisation and --no-specialisation contradict each other', hint: 'give one of them' });
  return false;
}

/** A repeatable string flag's values (`--on @a --on @b`), in order; empty when absent. */
export function stringFlags(invocation: CommandInvocation, name: string): string[] {
  const value = invocation.flags[name];
  if (value === undefined) return [];
  return (Array.isArray(value) ? value : [value]).filter((item): item is string => typeof item === 'string');
}

/** The host selectors of a fleet command: its positionals (names, globs, `@tag`s), then every `--on`. */
export function hostSelectors(invocation: CommandInvocation, positionals: readonly string[] = invocation.positionals): string[] {
  return [...positionals, ...stringFlags(invocation, 'on')];
}

/**
 * A `--target USER@HOST` flag (undefined when absent), checked with pideploy.json's rule for
 * targets: no spaces or shell characters.
 */
export function sshTargetFlag(invocation: CommandInvocation): string | undefined {
  const target = stringFlag(invocation, 'target');
  if (target !== undefined && !isSshTarget(target)) {
    throw new PideployError({ code: 'PIDEPLOY_USAGE', message: `--target "${target}" is not an SSH target`, hint: 'use user@host, user@host:port or an ssh_config Host alias (no spaces or shell characters)' });
  }
  return target;
}

/**
 * A whole-number flag (`--parallel 5`, `--confirm-timeout 30`): undefined when absent, a usage
 * error with an example when it is not a whole number of at least `min`.
 */
export function integerFlag(invocation: CommandInvocation, name: string, options: { readonly min: number; readonly unit?: string }): number | undefined {
  const text = stringFlag(invocation, name);
  if (text === undefined) return undefined;
  const value = /^[0-9]+$/u.test(text) ? Number(text) : Number.NaN;
  if (!Number.isSafeInteger(value) || value < options.min) {
    throw new PideployError({
      code: 'PIDEPLOY_USAGE',
      message: `--${name} takes a whole number${options.unit === undefined ? '' : ` of ${options.unit}`} of at least ${options.min}, not "${text}"`,
      hint: `for example --${name} ${Math.max(options.min, 5)}`,
    });
  }
  return value;
}

/**
 * The health-check flags of `deploy` and `activate`: the fields given replace those of the
 * host's pideploy.json `healthCheck`; `--no-health-check` runs none (false). Undefined: none given.
 */
export function healthCheckFlags(invocation: CommandInvocation): HealthCheckSettings | false | undefined {
  const url = stringFlag(invocation, 'health-check-url');
  const command = stringFlag(invocation, 'health-check-command');
  const timeout = integerFlag(invocation, 'health-check-timeout', { min: 1, unit: 'seconds' });
  if (invocation.flags['no-health-check'] === true) {
    if (url !== undefined || command !== undefined || timeout !== undefined) {
      throw new PideployError({ code: 'PIDEPLOY_USAGE', message: '--no-health-check contradicts the other --health-check-* flags', hint: 'give one or the other' });
    }
    return false;
  }
  if (url !== undefined && !/^https?:\/\//iu.test(url)) {
    throw new PideployError({ code: 'PIDEPLOY_USAGE', message: `--health-check-url takes an http(s) URL, not "${url}"`, hint: '--health-check-url http://{hostname}:8080/health' });
  }
  if (command !== undefined && command.trim() === '') {
    throw new PideployError({ code: 'PIDEPLOY_USAGE', message: '--health-check-command is empty', hint: "--health-check-command 'systemctl is-active --quiet nginx'" });
  }
  if (url === undefined && command === undefined && timeout === undefined) return undefined;
  return { url, command, timeoutSeconds: timeout };
}

/**
 * The reboot flags of `deploy` and `activate`: whether to reboot, and how long a host may take
 * to come back (`--reboot-timeout` alone is a usage error: it would wait for nothing).
 */
export function rebootFlags(invocation: CommandInvocation): { readonly reboot: boolean; readonly ifNeeded: boolean; readonly timeoutSeconds: number | undefined } {
  const reboot = invocation.flags['reboot'] === true;
  const ifNeeded = invocation.flags['reboot-if-needed'] === true;
  if (reboot && ifNeeded) throw new PideployError({ code: 'PIDEPLOY_USAGE', message: '--reboot and --reboot-if-needed contradict each other', hint: 'give one of them' });
  const timeoutSeconds = integerFlag(invocation, 'reboot-timeout', { min: 1, unit: 'seconds' });
  if (!reboot && !ifNeeded && timeoutSeconds !== undefined) {
    throw new PideployError({ code: 'PIDEPLOY_USAGE', message: '--reboot-timeout without --reboot', hint: 'add --reboot (pideploy deploy pi1 --action boot --reboot --reboot-timeout 600)' });
  }
  return { reboot, ifNeeded, timeoutSeconds };
}

/**
 * The Nix settings flags of `build` and `deploy` (`--show-trace`, `-k`, `-j N`, `--cores N`, `-L`,
 * `--option NAME=VALUE`…): undefined when none is given; a usage error before any work for a value
 * Nix would refuse or misread.
 */
export function nixBuildFlags(invocation: CommandInvocation): NixBuildOptions | undefined {
  const settingTexts = stringFlags(invocation, 'option');
  const settings: Record<string, string> = {};
  for (const text of settingTexts) {
    const { name, value } = parseNixSetting(text);
    if (name in settings && settings[name] !== value) {
      throw new PideployError({ code: 'PIDEPLOY_USAGE', message: `--option ${name} is given twice, with "${settings[name]}" and "${value}"`, hint: `give ${name} once` });
    }
    settings[name] = value;
  }
  const maxJobsText = stringFlag(invocation, 'max-jobs');
  const options: NixBuildOptions = {
    showTrace: invocation.flags['show-trace'] === true ? true : undefined,
    keepGoing: invocation.flags['keep-going'] === true ? true : undefined,
    maxJobs: maxJobsText === undefined ? undefined : parseMaxJobs(maxJobsText),
    cores: integerFlag(invocation, 'cores', { min: 0, unit: 'cores' }),
    printBuildLogs: invocation.flags['print-build-logs'] === true ? true : undefined,
    settings: settingTexts.length === 0 ? undefined : settings,
  };
  return Object.values(options).every((value) => value === undefined) ? undefined : options;
}

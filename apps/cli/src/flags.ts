import { PideployError } from '@pideploy/core';
import type { HealthCheckSettings } from '@pideploy/sdk';
import type { CommandInvocation } from './command.js';

/** A string flag's value (undefined when absent or given as a boolean). */
export function stringFlag(invocation: CommandInvocation, name: string): string | undefined {
  const value = invocation.flags[name];
  return typeof value === 'string' ? value : undefined;
}

/** The host selectors of a fleet command: its positionals (names, globs, `@tag`s), then every `--on`. */
export function hostSelectors(invocation: CommandInvocation, positionals: readonly string[] = invocation.positionals): string[] {
  const on = invocation.flags['on'];
  return [...positionals, ...(Array.isArray(on) ? on.map(String) : typeof on === 'string' ? [on] : [])];
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

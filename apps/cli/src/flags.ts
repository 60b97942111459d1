import { PideployError } from '@pideploy/core';
import type { CommandInvocation } from './command.js';

/** A string flag's value (undefined when absent or given as a boolean). */
export function stringFlag(invocation: CommandInvocation, name: string): string | undefined {
  const value = invocation.flags[name];
  return typeof value === 'string' ? value : undefined;
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

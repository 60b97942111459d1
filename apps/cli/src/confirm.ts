import { createInterface } from 'node:readline';
import { PideployError } from '@pideploy/core';
import type { CommandInvocation } from './command.js';

/**
 * Asks a yes/no question on the terminal (on stderr), answered with a line: only `y` or `yes` (any
 * case) is yes, Enter alone is no. Undefined when stdin is not a terminal: nobody to ask. Ctrl-C
 * interrupts the whole run (SIGINT, exit 130), as at the password prompt.
 */
export async function askYesNo(question: string): Promise<boolean | undefined> {
  const input = process.stdin;
  if (input.isTTY !== true) return undefined;
  const lines = createInterface({ input, output: process.stderr, terminal: true });
  const answer = await new Promise<string>((resolve) => {
    lines.on('SIGINT', () => {
      lines.close();
      process.kill(process.pid, 'SIGINT');
    });
    lines.once('close', () => resolve(''));
    lines.question(`${question} [y/N] `, resolve);
  });
  lines.close();
  input.pause();
  return /^y(es)?$/iu.test(answer.trim());
}

/**
 * Asks before a command changes several hosts at once (a person at a terminal, no `--yes`):
 * `deploy (switch) to 3 hosts: pi1, pi2, pi3?`. A declined question stops the command before it
 * touches any host; without a terminal, or with `--yes`, nothing is asked.
 * @throws PideployError `PIDEPLOY_DECLINED`
 */
export async function confirmHosts(invocation: CommandInvocation, what: string, hosts: readonly string[], preposition = 'to'): Promise<void> {
  if (invocation.global.yes || hosts.length < 2) return;
  const shown = hosts.length <= 8 ? hosts.join(', ') : `${hosts.slice(0, 8).join(', ')} and ${hosts.length - 8} more`;
  const yes = await askYesNo(`${what} ${preposition} ${hosts.length} hosts: ${shown}?`);
  if (yes === false) {
    throw new PideployError({ code: 'PIDEPLOY_DECLINED', message: `${what}: not done, nothing was touched`, hint: 'answer y to go on, or pass --yes (-y) to skip the question' });
  }
}

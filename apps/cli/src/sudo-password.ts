import path from 'node:path';
import { readSudoPasswordFromFile, readSudoPasswordFromStdin, type CreateSudoOptions, type SudoPasswordRequest } from '@pideploy/ssh';
import type { CommandInvocation } from './command.js';

function stringFlag(invocation: CommandInvocation, name: string): string | undefined {
  const value = invocation.flags[name];
  return typeof value === 'string' ? value : undefined;
}

/**
 * Asks for the sudo password on the terminal without echo. Only when stdin is a TTY; the
 * activation stage remembers the answer, so a run prompts at most once.
 */
export async function askOnTerminal(request: SudoPasswordRequest): Promise<string | undefined> {
  const input = process.stdin;
  if (input.isTTY !== true) return undefined;
  process.stderr.write(`[sudo] password for ${request.user}@${request.host}: `);
  return new Promise((resolve) => {
    let answer = '';
    input.setRawMode(true);
    input.resume();
    const onData = (chunk: Buffer) => {
      for (const character of chunk.toString('utf8')) {
        if (character === '\r' || character === '\n' || character === '\u0004') {
          finish(answer);
          return;
        }
        if (character === '\u0003') {
          finish(undefined);
          return;
        }
        if (character === '\u007f') answer = answer.slice(0, -1);
        else answer += character;
      }
    };
    const finish = (value: string | undefined) => {
      input.off('data', onData);
      input.setRawMode(false);
      input.pause();
      process.stderr.write('\n');
      resolve(value);
    };
    input.on('data', onData);
  });
}

/** Sudo options from `--sudo-password-file F` / `--sudo-password-stdin`, else a TTY prompt. */
export async function sudoOptions(invocation: CommandInvocation): Promise<CreateSudoOptions> {
  const file = stringFlag(invocation, 'sudo-password-file');
  if (file !== undefined) return { password: await readSudoPasswordFromFile(path.resolve(invocation.io.cwd, file)) };
  if (invocation.flags['sudo-password-stdin'] === true) return { password: await readSudoPasswordFromStdin(process.stdin) };
  return { passwordProvider: askOnTerminal };
}


/** The same choice as a password provider (for stages that ask per sudo realm, like deploy). */
export async function sudoPasswordProvider(invocation: CommandInvocation): Promise<(request: SudoPasswordRequest) => Promise<string | undefined>> {
  const options = await sudoOptions(invocation);
  if (options.password !== undefined) {
    const password = options.password;
    // A given password is tried once: asking again would only repeat the same wrong answer.
    return async (request) => (request.attempt === 1 ? password : undefined);
  }
  return options.passwordProvider ?? (async () => undefined);
}

import path from 'node:path';
import { StringDecoder } from 'node:string_decoder';
import { PideployError } from '@pideploy/core';
import { readSudoPasswordFromFile, readSudoPasswordFromStdin, type CreateSudoOptions, type SudoPasswordRequest } from '@pideploy/ssh';
import type { CommandInvocation } from './command.js';
import { stringFlag } from './flags.js';
import { beginPrompt } from './terminal.js';


/**
 * Asks for the sudo password on the terminal without echo, as sudo does: `Sorry, try again.`
 * before a repeated question, Backspace / Ctrl-H erase a character, Ctrl-U the line, Enter or
 * Ctrl-D ends it, and Ctrl-C interrupts the whole run (SIGINT, exit 130) instead of answering.
 * Only when stdin is a TTY; the activation stage remembers the answer, so a run prompts once.
 */
export async function askOnTerminal(request: SudoPasswordRequest): Promise<string | undefined> {
  // Parallel hosts with different login users may ask at once: one prompt at a time, so each
  // typed answer goes to the question it was typed for.
  const turn = promptQueue.then(() => promptOnce(request));
  promptQueue = turn.catch(() => undefined);
  return turn;
}

let promptQueue: Promise<unknown> = Promise.resolve();

function promptOnce(request: SudoPasswordRequest): Promise<string | undefined> {
  const input = process.stdin;
  if (input.isTTY !== true) return Promise.resolve(undefined);
  return new Promise((resolve) => {
    let answer = '';
    // Keys arrive as bytes; a character split across reads must not become two broken ones.
    const decoder = new StringDecoder('utf8');
    // Echo off BEFORE the prompt shows (as getpass does): keys typed the moment it appears must
    // not reach a terminal that still echoes.
    input.setRawMode(true);
    // The build runs meanwhile: its progress line goes, and its output waits for the answer.
    const endPrompt = beginPrompt();
    if (request.attempt > 1) process.stderr.write('Sorry, try again.\n');
    process.stderr.write(`[sudo] password for ${request.user}@${request.host}: `);
    input.resume();
    const onData = (chunk: Buffer) => {
      for (const character of decoder.write(chunk)) {
        if (character === '\r' || character === '\n' || character === '\u0004') {
          restoreTerminal();
          resolve(answer);
          return;
        }
        if (character === '\u0003') {
          restoreTerminal();
          // Raw mode turned Ctrl-C into a byte: deliver it as the terminal would have, and give up
          // only once it has been handled (the CLI's handler cancels the run: exit 130).
          process.once('SIGINT', () => resolve(undefined));
          process.kill(process.pid, 'SIGINT');
          return;
        }
        if (character === '\u007f' || character === '\b') answer = Array.from(answer).slice(0, -1).join('');
        else if (character === '\u0015') answer = '';
        else answer += character;
      }
    };
    const restoreTerminal = () => {
      input.off('data', onData);
      input.setRawMode(false);
      input.pause();
      process.stderr.write('\n');
      endPrompt();
    };
    input.on('data', onData);
  });
}

/**
 * The password given for automation with `--sudo-password-file F` or `--sudo-password-stdin`
 * (read once, kept in memory, never logged), or undefined.
 * @throws PideployError `PIDEPLOY_USAGE` when both are given.
 */
export async function givenSudoPassword(invocation: CommandInvocation): Promise<string | undefined> {
  const file = stringFlag(invocation, 'sudo-password-file');
  const fromStdin = invocation.flags['sudo-password-stdin'] === true;
  if (file !== undefined && fromStdin) {
    throw new PideployError({ code: 'PIDEPLOY_USAGE', message: '--sudo-password-file and --sudo-password-stdin exclude each other', hint: 'give the password one way' });
  }
  if (file !== undefined) return readSudoPasswordFromFile(path.resolve(invocation.io.cwd, file));
  if (fromStdin) return readSudoPasswordFromStdin(process.stdin);
  return undefined;
}

/** Sudo options from `--sudo-password-file F` / `--sudo-password-stdin`, else a TTY prompt. */
export async function sudoOptions(invocation: CommandInvocation): Promise<CreateSudoOptions> {
  const password = await givenSudoPassword(invocation);
  return password === undefined ? { passwordProvider: askOnTerminal } : { password };
}

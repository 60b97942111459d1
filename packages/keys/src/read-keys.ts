import { readFile } from 'node:fs/promises';
import { PideployError, tailLines } from '@pideploy/core';
import { runStreamingCommand } from '@pideploy/nix';
import { KEY_ERROR_CODES, type KeySource, type KeySpec } from './key-spec.js';

/** A key with its content, in memory only (never logged, never in an event or error). */
export interface LoadedKey {
  readonly spec: KeySpec;
  readonly content: Uint8Array;
}

/** Options of {@link readKeyContents}. */
export interface ReadKeyContentsOptions {
  /** Working directory of key commands (default: this process's). */
  readonly cwd?: string | undefined;
  /** Environment of key commands (default: this process's). */
  readonly env?: Readonly<Record<string, string | undefined>> | undefined;
  readonly signal?: AbortSignal | undefined;
  /** Limit of each key command, in milliseconds (default 60 s: a password manager may ask to be unlocked). */
  readonly commandTimeoutMs?: number | undefined;
}

/** One source's identity: keys of many hosts that name the same file or command read it once. */
function sourceKey(source: KeySource): string {
  return 'file' in source ? `file:${source.file}` : `command:${JSON.stringify(source.command)}`;
}

/** Reads one source. Failures name the source and say why, never what it printed on stdout. */
async function readSource(source: KeySource, options: ReadKeyContentsOptions): Promise<Uint8Array> {
  if ('file' in source) {
    try {
      return await readFile(source.file);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code ?? 'error';
      throw new PideployError({
        code: KEY_ERROR_CODES.sourceFailed,
        message: `cannot read the key file ${source.file}: ${code}`,
        hint: code === 'ENOENT' ? 'create it (keep it out of git), or fix the key\'s "file" in pideploy.json' : 'check its permissions',
        cause: error,
      });
    }
  }
  const result = await runStreamingCommand(source.command, {
    cwd: options.cwd,
    env: options.env,
    signal: options.signal,
    timeoutMs: options.commandTimeoutMs ?? 60_000,
    timeoutSignal: 'SIGKILL',
  });
  const failure = { command: [...source.command], exitCode: result.exitCode ?? undefined, signal: result.signal ?? undefined, stderrTail: tailLines(result.stderr) };
  if (result.timedOut || result.exitCode !== 0) {
    const why = result.timedOut ? 'did not finish in time' : result.exitCode === null ? `was killed by ${result.signal ?? 'a signal'}` : `exited ${result.exitCode}`;
    const said = tailLines(result.stderr, 1);
    throw new PideployError({
      code: KEY_ERROR_CODES.sourceFailed,
      // stderr only: stdout is (part of) the secret.
      message: `the key command ${source.command.join(' ')} ${why}${said === '' ? '' : `: ${said}`}`,
      hint: 'run it yourself to see why; its stdout is the key',
      commandFailure: failure,
    });
  }
  return result.stdoutBytes;
}

/**
 * Reads every key's content on this machine, before any host is touched: files as bytes, commands
 * (argv, no shell) by their stdout. A source named by many keys (of many hosts) is read once.
 * @throws PideployError `PIDEPLOY_KEY_SOURCE_FAILED` naming the first source that failed.
 */
export async function readKeyContents(keys: readonly KeySpec[], options: ReadKeyContentsOptions = {}): Promise<LoadedKey[]> {
  const read = new Map<string, Promise<Uint8Array>>();
  for (const key of keys) {
    const id = sourceKey(key.source);
    if (!read.has(id)) {
      const reading = readSource(key.source, options);
      reading.catch(() => undefined);
      read.set(id, reading);
    }
  }
  const loaded: LoadedKey[] = [];
  for (const key of keys) {
    try {
      loaded.push({ spec: key, content: await (read.get(sourceKey(key.source)) as Promise<Uint8Array>) });
    } catch (error) {
      if (PideployError.isInstance(error) && error.code === KEY_ERROR_CODES.sourceFailed) {
        throw new PideployError({ code: error.code, message: `key ${key.name}: ${error.message}`, hint: error.hint, cause: error.cause, commandFailure: error.commandFailure });
      }
      throw error;
    }
  }
  return loaded;
}

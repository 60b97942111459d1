import { setMaxListeners } from 'node:events';
import { silentReporter, type Reporter } from './events.js';

/**
 * What every stage function receives besides its input: where events go and when to stop.
 * Tests and custom pipelines build one the same way the CLI does.
 */
export interface PideployContext {
  /** Receives the stage's events. */
  readonly reporter: Reporter;
  /** Aborts the stage's work (Ctrl-C in the CLI). */
  readonly signal: AbortSignal;
}

/** Options of {@link createBaseContext}. */
export interface BaseContextOptions {
  /** Where events go; default drops them. */
  readonly reporter?: Reporter | undefined;
  /** Cancels work; default never aborts. */
  readonly signal?: AbortSignal | undefined;
}

/**
 * Builds a context with defaults for what is not given. The signal may get one abort listener
 * per running step of every host of a fleet, so Node's warning at 10 listeners is lifted for it.
 */
export function createBaseContext(options: BaseContextOptions = {}): PideployContext {
  const signal = options.signal ?? new AbortController().signal;
  setMaxListeners(0, signal);
  return { reporter: options.reporter ?? silentReporter, signal };
}

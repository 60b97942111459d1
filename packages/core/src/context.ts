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

/** Builds a context with defaults for what is not given. */
export function createBaseContext(options: BaseContextOptions = {}): PideployContext {
  return {
    reporter: options.reporter ?? silentReporter,
    signal: options.signal ?? new AbortController().signal,
  };
}

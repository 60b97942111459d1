/*
 * Synchronous fs calls are much faster than async ones for many small files (no thread-pool
 * hop), but a long run of them starves the event loop (timers, progress output, signals).
 * Code that mixes them calls this between items: it yields to the event loop at most every
 * YIELD_INTERVAL_MS.
 */
const YIELD_INTERVAL_MS = 10;
let lastYield = Date.now();

/** Lets the event loop run if the last chance was more than 10 ms ago. */
export async function yieldToEventLoopSometimes(): Promise<void> {
  const now = Date.now();
  if (now - lastYield < YIELD_INTERVAL_MS) return;
  await new Promise<void>((resolve) => setImmediate(resolve));
  lastYield = Date.now();
}

/** Where the CLI reads and writes. `bin.ts` passes the process's streams; tests pass buffers. */
export interface CliIo {
  /** Results (and NDJSON events with `--json`). */
  readonly stdout: { write(text: string): unknown; readonly isTTY?: boolean | undefined };
  /** Human logs, progress and errors. */
  readonly stderr: { write(text: string): unknown; readonly isTTY?: boolean | undefined };
  /** Environment variables. */
  readonly env: NodeJS.ProcessEnv;
  /** Directory relative paths are resolved against. */
  readonly cwd: string;
  /** Cancels the running command (Ctrl-C). */
  readonly signal?: AbortSignal | undefined;
}

/** Process exit codes of the CLI contract (DESIGN.md §4). */
export const ExitCode = {
  ok: 0,
  failure: 1,
  usage: 2,
  interrupted: 130,
} as const;

/** Buffers that collect what the CLI writes, for tests. */
export function createBufferIo(overrides: Partial<CliIo> = {}): CliIo & { readonly out: () => string; readonly err: () => string } {
  let out = '';
  let err = '';
  return {
    stdout: { write: (text: string) => (out += text), isTTY: false },
    stderr: { write: (text: string) => (err += text), isTTY: false },
    env: {},
    cwd: process.cwd(),
    ...overrides,
    out: () => out,
    err: () => err,
  };
}

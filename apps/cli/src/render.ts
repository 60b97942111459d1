import type { DeployEvent, PideployError, Reporter } from '@pideploy/core';
import type { CliIo } from './io.js';

/** How events and results are shown: human lines on stderr, or NDJSON on stdout (`--json`). */
export interface Renderer extends Reporter {
  /** Shows a command's final result. */
  result(value: unknown, humanText: string): void;
  /** Shows a failure: one line, then the hint. */
  failure(error: PideployError, verbose: boolean): void;
}

/** Options of {@link createRenderer}. */
export interface RendererOptions {
  readonly json: boolean;
  readonly verbose: boolean;
}

/** The one place where events become text. */
export function createRenderer(io: CliIo, options: RendererOptions): Renderer {
  const writeJsonLine = (value: unknown): void => void io.stdout.write(`${JSON.stringify(value)}\n`);
  return {
    emit(event: DeployEvent): void {
      if (options.json) {
        writeJsonLine({ event });
        return;
      }
      const line = describeEvent(event, options.verbose);
      if (line !== undefined) io.stderr.write(`${line}\n`);
    },
    result(value: unknown, humanText: string): void {
      if (options.json) writeJsonLine({ result: value });
      else if (humanText !== '') io.stdout.write(humanText.endsWith('\n') ? humanText : `${humanText}\n`);
    },
    failure(error: PideployError, verbose: boolean): void {
      if (options.json) writeJsonLine({ error: error.toJSON() });
      io.stderr.write(`pideploy: ${error.message}\n`);
      if (error.hint !== undefined) io.stderr.write(`hint: ${error.hint}\n`);
      if (verbose && error.commandFailure !== undefined) {
        const { command, exitCode, stderrTail } = error.commandFailure;
        io.stderr.write(`command: ${command.join(' ')} (exit ${exitCode ?? 'signal'})\n${stderrTail}\n`);
      }
    },
  };
}

/** A one-line human description of an event, or undefined for events not shown at this verbosity. */
export function describeEvent(event: DeployEvent, verbose: boolean): string | undefined {
  const prefix = 'host' in event && event.host !== undefined ? `[${event.host}] ` : '';
  switch (event.type) {
    case 'log':
      if (event.level === 'debug' && !verbose) return undefined;
      return `${prefix}${event.level === 'warn' ? 'warning: ' : ''}${event.message}`;
    case 'phase-start':
      return verbose ? `${prefix}${event.phase}…` : undefined;
    case 'phase-end':
      return `${prefix}${event.phase} ${event.ok ? 'done' : 'failed'} in ${formatDuration(event.durationMs)}`;
    case 'lab-host-up':
      return `${prefix}up at ${event.address}${event.reused ? ' (already running)' : ''}`;
    case 'lab-host-down':
      return `${prefix}down`;
    case 'build-start':
      return `${prefix}building ${event.derivationsToBuild} derivation(s), fetching ${event.pathsToFetch} path(s)`;
    case 'build-progress':
      return verbose ? `${prefix}built ${event.built}/${event.total}${event.current ? ` ${event.current}` : ''}` : undefined;
    case 'build-end':
      return `${prefix}built ${event.outPath} in ${formatDuration(event.durationMs)}`;
    case 'copy-plan':
      return `${prefix}${event.pathsToSend} path(s), ${formatBytes(event.bytesToSend)} to send, ${event.pathsPresent} already present`;
    case 'copy-progress':
      return verbose ? `${prefix}sent ${formatBytes(event.bytesSent)}/${formatBytes(event.bytesTotal)}` : undefined;
    case 'copy-end':
      return `${prefix}copied ${event.pathsSent} path(s), ${formatBytes(event.bytesSent)} in ${formatDuration(event.durationMs)}`;
    case 'activate-start':
      return `${prefix}${event.action} ${event.toplevel}`;
    case 'activate-end':
      return `${prefix}${event.action} ${event.ok ? 'done' : 'FAILED'} in ${formatDuration(event.durationMs)}`;
  }
}

/** `1.2 s`, `340 ms`. */
export function formatDuration(milliseconds: number): string {
  return milliseconds < 1000 ? `${Math.round(milliseconds)} ms` : `${(milliseconds / 1000).toFixed(1)} s`;
}

/** `1.5 MiB`, `512 B`. */
export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(1)} ${units[unit]}`;
}

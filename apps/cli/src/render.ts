import { describeActivated, type DeployEvent, type PideployError, type Reporter } from '@pideploy/core';
import type { CliIo } from './io.js';
import { setProgressLineEraser, writeWhenTerminalFree } from './terminal.js';

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
  /** Redraw one progress line in place (default: stderr is a TTY and CI is not set). */
  readonly live?: boolean | undefined;
}

/** Whether the CLI should draw live progress: a TTY, and not CI (vitest's `isTTY && !isCI`). */
export function shouldRenderLive(io: CliIo): boolean {
  const ci = io.env['CI'];
  return io.stderr.isTTY === true && (ci === undefined || ci === '' || ci === 'false') && io.env['TERM'] !== 'dumb';
}

/**
 * The one place where events become text. With `--json`: every event and the result as NDJSON
 * on stdout. On a TTY: a progress line redrawn in place under the log lines. Otherwise:
 * append-only lines (progress only with --verbose, and at most one line per 10 % step).
 */
export function createRenderer(io: CliIo, options: RendererOptions): Renderer {
  const writeJsonLine = (value: unknown): void => void io.stdout.write(`${JSON.stringify(value)}\n`);
  const live = options.live ?? shouldRenderLive(io);
  let statusLine = '';
  const lastStepShown = new Map<string, number>();
  const clearStatus = (): void => {
    if (statusLine !== '') io.stderr.write('\r\u001b[K');
    setProgressLineEraser(undefined);
  };
  // A password prompt takes the line: the progress goes and is drawn again with the next progress event.
  const eraseForPrompt = (): void => {
    clearStatus();
    statusLine = '';
  };
  const redrawStatus = (): void => {
    if (statusLine !== '') io.stderr.write(statusLine);
    setProgressLineEraser(statusLine === '' ? undefined : eraseForPrompt);
  };
  const writeLine = (line: string): void => {
    clearStatus();
    io.stderr.write(`${line}\n`);
    redrawStatus();
  };
  const renderer: Renderer = {
    emit(event: DeployEvent): void {
      if (options.json) {
        writeJsonLine({ event });
        return;
      }
      if (event.type === 'remote-output') {
        // A host's output keeps its stream: stdout lines on stdout, each after its host's name.
        clearStatus();
        (event.stream === 'stdout' ? io.stdout : io.stderr).write(`${event.host} | ${event.line}\n`);
        redrawStatus();
        return;
      }
      const progress = describeProgress(event);
      if (progress !== undefined) {
        if (event.type === 'download-progress' && event.done) {
          // A finished download leaves no line behind: the command's result says what it got.
          clearStatus();
          statusLine = '';
          return;
        }
        if (live) {
          clearStatus();
          statusLine = progress.text;
          redrawStatus();
        } else {
          const step = Math.floor(progress.fraction * 10);
          const key = `${event.type}:${'host' in event ? (event.host ?? '') : ''}`;
          if (options.verbose && step !== lastStepShown.get(key)) {
            lastStepShown.set(key, step);
            io.stderr.write(`${progress.text}\n`);
          }
        }
        return;
      }
      if (event.type.endsWith('-end') || event.type === 'phase-end') {
        clearStatus();
        statusLine = '';
      }
      const line = describeEvent(event, options.verbose);
      if (line !== undefined) writeLine(line);
    },
    result(value: unknown, humanText: string): void {
      clearStatus();
      statusLine = '';
      if (options.json) writeJsonLine({ result: value });
      else if (humanText !== '') io.stdout.write(humanText.endsWith('\n') ? humanText : `${humanText}\n`);
    },
    failure(error: PideployError, verbose: boolean): void {
      clearStatus();
      statusLine = '';
      if (options.json) writeJsonLine({ error: error.toJSON() });
      io.stderr.write(`pideploy: ${error.message}\n`);
      if (error.hint !== undefined) io.stderr.write(`hint: ${error.hint}\n`);
      if (verbose && error.commandFailure !== undefined) {
        const { command, exitCode, stderrTail } = error.commandFailure;
        io.stderr.write(`command: ${command.join(' ')} (exit ${exitCode ?? 'signal'})\n${stderrTail}\n`);
      }
    },
  };
  return {
    emit: (event) => writeWhenTerminalFree(() => renderer.emit(event)),
    result: (value, humanText) => writeWhenTerminalFree(() => renderer.result(value, humanText)),
    failure: (error, verbose) => writeWhenTerminalFree(() => renderer.failure(error, verbose)),
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
      return describeProgress(event)?.text;
    case 'build-end':
      return `${prefix}built ${event.outPath} in ${formatDuration(event.durationMs)}`;
    case 'copy-plan':
      return `${prefix}${event.pathsToSend} path(s), ${formatBytes(event.bytesToSend)} to send, ${event.pathsPresent} already present`;
    case 'copy-progress':
    case 'download-progress':
      return describeProgress(event)?.text;
    case 'copy-end':
      return `${prefix}copied ${event.pathsSent} path(s), ${formatBytes(event.bytesSent)} in ${formatDuration(event.durationMs)}`;
    case 'cache-push':
      return `pushed ${event.pathsPushed} path(s) to the binary cache ${event.cache} (${formatBytes(event.narBytesPushed)} NAR, ${formatBytes(event.fileBytesPushed)} compressed), ${event.pathsPresent} already there, in ${formatDuration(event.durationMs)}`;
    case 'activate-start':
      return `${prefix}${event.action} ${describeActivated(event.toplevel, event.specialisation)}`;
    case 'activate-end':
      return `${prefix}${event.action} ${event.ok ? 'done' : 'FAILED'} in ${formatDuration(event.durationMs)}`;
  }
}

/** A progress event as a bar line and its completed fraction; undefined for other events. */
export function describeProgress(event: DeployEvent): { readonly text: string; readonly fraction: number } | undefined {
  const prefix = 'host' in event && event.host !== undefined ? `[${event.host}] ` : '';
  if (event.type === 'build-progress') {
    const fraction = event.total > 0 ? event.built / event.total : 0;
    return { fraction, text: `${prefix}building ${progressBar(fraction)} ${event.built}/${event.total}${event.current ? ` ${event.current}` : ''}` };
  }
  if (event.type === 'download-progress') {
    const total = event.bytesTotal;
    const fraction = event.done ? 1 : total !== undefined && total > 0 ? event.bytesReceived / total : 0;
    const remaining = total !== undefined && event.bytesPerSecond > 0 && !event.done ? (total - event.bytesReceived) / event.bytesPerSecond : undefined;
    return {
      fraction,
      text:
        `downloading ${total === undefined ? '' : `${progressBar(fraction)} `}${formatBytes(event.bytesReceived)}` +
        `${total === undefined ? '' : `/${formatBytes(total)}`} ${formatBytes(event.bytesPerSecond)}/s` +
        `${remaining === undefined ? '' : ` ETA ${formatDuration(remaining * 1000)}`}`,
    };
  }
  if (event.type === 'copy-progress') {
    const fraction = event.bytesTotal > 0 ? event.bytesSent / event.bytesTotal : 0;
    const remaining = event.bytesPerSecond > 0 ? (event.bytesTotal - event.bytesSent) / event.bytesPerSecond : undefined;
    return {
      fraction,
      text:
        `${prefix}copying  ${progressBar(fraction)} ${formatBytes(event.bytesSent)}/${formatBytes(event.bytesTotal)} ` +
        `${formatBytes(event.bytesPerSecond)}/s${remaining === undefined ? '' : ` ETA ${formatDuration(remaining * 1000)}`}`,
    };
  }
  return undefined;
}

/** `[██████░░░░░░]` for a fraction in 0…1. */
export function progressBar(fraction: number, width = 20): string {
  const clamped = Math.min(1, Math.max(0, Number.isFinite(fraction) ? fraction : 0));
  const filled = Math.round(clamped * width);
  return `[${'█'.repeat(filled)}${'░'.repeat(width - filled)}]`;
}

/** `1.2 s`, `340 ms`. */
export function formatDuration(milliseconds: number): string {
  return milliseconds < 1000 ? `${Math.round(milliseconds)} ms` : `${(milliseconds / 1000).toFixed(1)} s`;
}

/** A host's failure in a command's summary: `pi1: LABELmessage`, then its hint on an indented line. */
export function describeHostFailure(host: string, error: { readonly message: string; readonly hint?: string | undefined } | undefined, label = ''): string {
  return `${host}: ${label}${error?.message ?? 'failed'}${error?.hint === undefined ? '' : `\n  hint: ${error.hint}`}`;
}

/**
 * Rows under a header, each column as wide as its widest cell, two spaces apart; the last column
 * is not padded, and the columns in `rightAligned` are padded on the left (pure).
 */
export function formatColumns(header: readonly string[], rows: readonly (readonly string[])[], rightAligned: readonly number[] = []): string {
  const widths = header.map((title, column) => Math.max(title.length, ...rows.map((row) => (row[column] ?? '').length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((cell, column) => (column === cells.length - 1 ? cell : rightAligned.includes(column) ? cell.padStart(widths[column] ?? 0) : cell.padEnd(widths[column] ?? 0)))
      .join('  ');
  return [line(header), ...rows.map(line)].join('\n');
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

import type { DeployEvent } from '@pideploy/core';
import { stripAnsi } from '@pideploy/nix';

/** Nix's activity types (`src/libutil/logging.hh`, stable since Nix 2.0). */
export const NixActivityType = {
  unknown: 0,
  copyPath: 100,
  fileTransfer: 101,
  realise: 102,
  copyPaths: 103,
  builds: 104,
  build: 105,
  optimiseStore: 106,
  verifyPaths: 107,
  substitute: 108,
  queryPathInfo: 109,
  postBuildHook: 110,
  buildWaiting: 111,
} as const;

/** Nix's result types (`src/libutil/logging.hh`). */
export const NixResultType = {
  fileLinked: 100,
  buildLogLine: 101,
  untrustedPath: 102,
  corruptedPath: 103,
  setPhase: 104,
  progress: 105,
  setExpected: 106,
  postBuildLogLine: 107,
} as const;

/** One line of `--log-format internal-json` output, parsed. */
export type NixLogEntry =
  | { readonly action: 'start'; readonly id: number; readonly type: number; readonly level: number; readonly text: string; readonly fields: readonly unknown[] }
  | { readonly action: 'stop'; readonly id: number }
  | { readonly action: 'result'; readonly id: number; readonly type: number; readonly fields: readonly unknown[] }
  | { readonly action: 'msg'; readonly level: number; readonly msg: string }
  /** A stderr line that is not `@nix {…}` (builders' raw output, warnings of old Nix). */
  | { readonly action: 'text'; readonly text: string };

/** Parses one stderr line of `nix-build --log-format internal-json` (undefined for empty lines). */
export function parseNixLogLine(line: string): NixLogEntry | undefined {
  if (line.trim() === '') return undefined;
  if (!line.startsWith('@nix ')) return { action: 'text', text: stripAnsi(line) };
  let raw: Record<string, unknown>;
  try {
    raw = JSON.parse(line.slice(5)) as Record<string, unknown>;
  } catch {
    return { action: 'text', text: line };
  }
  const id = typeof raw['id'] === 'number' ? raw['id'] : -1;
  const fields = Array.isArray(raw['fields']) ? (raw['fields'] as unknown[]) : [];
  switch (raw['action']) {
    case 'start':
      return { action: 'start', id, type: Number(raw['type'] ?? 0), level: Number(raw['level'] ?? 0), text: String(raw['text'] ?? ''), fields };
    case 'stop':
      return { action: 'stop', id };
    case 'result':
      return { action: 'result', id, type: Number(raw['type'] ?? 0), fields };
    case 'msg':
      return { action: 'msg', level: Number(raw['level'] ?? 0), msg: stripAnsi(String(raw['msg'] ?? '')) };
    default:
      return { action: 'text', text: line };
  }
}

/** `nixos-system-pi1-24.11` from `/nix/store/<hash>-nixos-system-pi1-24.11.drv`. */
export function derivationName(drvPath: string): string {
  return storePathName(drvPath.replace(/\.drv$/u, ''));
}

/** `nixos-system-pi1-24.11` from `/nix/store/<hash>-nixos-system-pi1-24.11` (the base name without its hash). */
export function storePathName(storePath: string): string {
  const base = storePath.slice(storePath.lastIndexOf('/') + 1);
  return /^[0-9a-z]{32}-/u.test(base) ? base.slice(33) : base;
}

/** What a build left to report once it has finished. */
export interface BuildLogSummary {
  /** Derivations Nix said it would build (`these N derivations will be built`). */
  readonly plannedDerivations: readonly string[];
  /** Paths Nix said it would fetch from substituters. */
  readonly plannedFetches: readonly string[];
  /** Derivations that started building, with the machine (`''` = this machine, else e.g. `ssh://root@pi1`). */
  readonly builds: readonly { readonly drvPath: string; readonly machine: string }[];
  /** The derivation whose builder failed first, if any. */
  readonly failedDerivation: string | undefined;
  /** Every derivation whose builder failed, in order (more than one with `--keep-going`). */
  readonly failedDerivations: readonly string[];
  /** The last lines (at most 25) of the failed derivation's log, or of the last build's log. */
  readonly logTail: readonly string[];
  /** Nix's error messages (`error: …`), without colours. */
  readonly errors: readonly string[];
}

/** Options of {@link createBuildLogTracker}. */
export interface BuildLogTrackerOptions {
  /** The host being built (put on events). */
  readonly host?: string | undefined;
  /** Receives build-start / build-progress / log events. */
  readonly emit: (event: DeployEvent) => void;
  /** Log lines kept per derivation (default 25). */
  readonly tailLength?: number | undefined;
  /** Emit every build log line as an `info` log event, `<derivation name>> <line>` (`nix-build -L`). */
  readonly printBuildLogs?: boolean | undefined;
}

/** Turns internal-json lines into build events, and remembers what a failure report needs. */
export interface BuildLogTracker {
  /** Feeds one stderr line. */
  handleLine(line: string): void;
  /** Emits `build-start` if it has not been emitted yet (e.g. nothing had to be built). */
  ensureStarted(): void;
  /** What the build did and, on failure, which derivation failed with which log. */
  summary(): BuildLogSummary;
}

const PLAN_BUILDS = /^(?:these \d+ derivations|this derivation) will be built:?$/u;
const PLAN_FETCHES = /^(?:these \d+ paths|this path) will be fetched\b/u;
const BUILDER_FAILED = /builder for '([^']+\.drv)' failed/u;

/**
 * Tracks a `nix-build --log-format internal-json` run: counts from Nix's plan ("these N
 * derivations will be built"), the `builds` activity's progress (done/expected), the derivation
 * building now, each build's log lines, and the failing derivation. Emits `build-start` once
 * (before the first build or fetch), then `build-progress` as counts or the current build change.
 */
export function createBuildLogTracker(options: BuildLogTrackerOptions): BuildLogTracker {
  const tailLength = options.tailLength ?? 25;
  const host = options.host === undefined ? {} : { host: options.host };
  const plannedDerivations: string[] = [];
  const plannedFetches: string[] = [];
  const builds: { drvPath: string; machine: string }[] = [];
  const logs = new Map<number, string[]>();
  const buildIds = new Map<number, string>();
  const errors: string[] = [];
  let listing: 'builds' | 'fetches' | undefined;
  let started = false;
  let buildsActivity: number | undefined;
  let built = 0;
  let expected = 0;
  let current: string | undefined;
  let lastProgress = '';
  let lastLogId: number | undefined;
  const failedDerivations: string[] = [];
  const printLine = (id: number | undefined, text: string): void => {
    if (options.printBuildLogs !== true || id === undefined) return;
    const drvPath = buildIds.get(id);
    options.emit({ type: 'log', level: 'info', message: `${drvPath === undefined ? 'nix' : derivationName(drvPath)}> ${text}`, ...host });
  };

  const ensureStarted = (): void => {
    if (started) return;
    started = true;
    options.emit({
      type: 'build-start',
      ...host,
      derivationsToBuild: Math.max(plannedDerivations.length, expected),
      pathsToFetch: plannedFetches.length,
    });
  };
  const emitProgress = (): void => {
    const total = Math.max(expected, plannedDerivations.length);
    const key = `${built}/${total}/${current ?? ''}`;
    if (key === lastProgress || total === 0 || (builds.length === 0 && plannedDerivations.length === 0)) return;
    lastProgress = key;
    options.emit({ type: 'build-progress', ...host, built, total, ...(current === undefined ? {} : { current }) });
  };

  return {
    handleLine(line: string): void {
      const entry = parseNixLogLine(line);
      if (entry === undefined) return;
      if (entry.action === 'msg') {
        const text = entry.msg.trim();
        if (listing !== undefined && text.startsWith('/nix/store/')) {
          (listing === 'builds' ? plannedDerivations : plannedFetches).push(text);
          return;
        }
        listing = PLAN_BUILDS.test(text) ? 'builds' : PLAN_FETCHES.test(text) ? 'fetches' : undefined;
        if (listing !== undefined) return;
        if (entry.level === 0) {
          errors.push(entry.msg.replace(/^error: /u, ''));
          const failed = BUILDER_FAILED.exec(entry.msg);
          if (failed?.[1] !== undefined && !failedDerivations.includes(failed[1])) failedDerivations.push(failed[1]);
        } else if (entry.level <= 1 && text !== '') {
          options.emit({ type: 'log', level: 'warn', message: text.replace(/^warning: /u, ''), ...host });
        }
        return;
      }
      listing = undefined;
      if (entry.action === 'text') {
        if (lastLogId !== undefined) logs.get(lastLogId)?.push(entry.text);
        printLine(lastLogId, entry.text);
        return;
      }
      if (entry.action === 'start') {
        if (entry.type === NixActivityType.builds) {
          buildsActivity = entry.id;
          ensureStarted();
        } else if (entry.type === NixActivityType.build) {
          ensureStarted();
          const drvPath = String(entry.fields[0] ?? '');
          const machine = String(entry.fields[1] ?? '');
          builds.push({ drvPath, machine });
          buildIds.set(entry.id, drvPath);
          logs.set(entry.id, []);
          lastLogId = entry.id;
          current = derivationName(drvPath);
          if (machine !== '') options.emit({ type: 'log', level: 'info', message: `building ${current} on ${machine}`, ...host });
          emitProgress();
        } else if (entry.type === NixActivityType.substitute || entry.type === NixActivityType.copyPaths) {
          ensureStarted();
        }
        return;
      }
      if (entry.action === 'stop') {
        if (buildIds.has(entry.id) && current === derivationName(buildIds.get(entry.id) ?? '')) current = undefined;
        return;
      }
      // result
      if ((entry.type === NixResultType.buildLogLine || entry.type === NixResultType.postBuildLogLine) && logs.has(entry.id)) {
        const log = logs.get(entry.id) ?? [];
        const text = stripAnsi(String(entry.fields[0] ?? ''));
        log.push(text);
        printLine(entry.id, text);
        if (log.length > tailLength * 4) log.splice(0, log.length - tailLength);
        lastLogId = entry.id;
      } else if (entry.type === NixResultType.progress && entry.id === buildsActivity) {
        built = Number(entry.fields[0] ?? 0);
        expected = Number(entry.fields[1] ?? 0);
        emitProgress();
      }
    },
    ensureStarted,
    summary(): BuildLogSummary {
      let logId: number | undefined;
      const failedDerivation = failedDerivations[0];
      if (failedDerivation !== undefined) {
        for (const [id, drvPath] of buildIds) if (drvPath === failedDerivation) logId = id;
      }
      logId ??= lastLogId;
      const log = logId === undefined ? [] : (logs.get(logId) ?? []);
      return {
        plannedDerivations: [...plannedDerivations],
        plannedFetches: [...plannedFetches],
        builds: builds.map((build) => ({ ...build })),
        failedDerivation,
        failedDerivations: [...failedDerivations],
        logTail: log.slice(-tailLength),
        errors: [...errors],
      };
    },
  };
}

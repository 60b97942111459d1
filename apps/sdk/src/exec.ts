import { PideployError, type PideployContext } from '@pideploy/core';
import { sharePasswordPerRealm, type SudoPasswordProvider } from '@pideploy/ssh';
import type { ResolvedHost } from './config.js';
import { mapConcurrently } from './concurrency.js';
import { withHostSession, type HostConnectionSettings } from './host-connection.js';

/** What {@link runOnHosts} needs. */
export interface RunOnHostsRequest extends HostConnectionSettings {
  /** The hosts to run on (see `selectHosts`). */
  readonly hosts: readonly ResolvedHost[];
  /** The command, as argv (each argument quoted for the host's shell; for pipes, run `sh -c '…'`). */
  readonly command: readonly string[];
  /** Run it as root through sudo (the password asked once per login user). */
  readonly asRoot?: boolean | undefined;
  /** Hosts at once (default 1). */
  readonly parallel?: number | undefined;
  /** Stop a host's command (SIGTERM) after this many seconds. */
  readonly timeoutSeconds?: number | undefined;
  readonly sudoPasswordProvider?: SudoPasswordProvider | undefined;
  /** A sudo password known in advance, tried once. */
  readonly sudoPassword?: string | undefined;
}

/** How the command ended on one host. */
export interface HostRunResult {
  readonly host: string;
  /** The command ran and exited 0. */
  readonly ok: boolean;
  /** Its exit code (null when a signal ended it); absent when it did not run (see `error`). */
  readonly exitCode?: number | null | undefined;
  readonly signal?: string | null | undefined;
  /** It ran longer than `timeoutSeconds` and was stopped. */
  readonly timedOut?: boolean | undefined;
  readonly durationMs: number;
  /** Why it did not run (the connection, sudo). */
  readonly error?: PideployError | undefined;
}

/** The outcome of {@link runOnHosts} (`version: 1`). */
export interface RunOnHostsResult {
  readonly version: 1;
  readonly results: readonly HostRunResult[];
  readonly ok: boolean;
}

/** Cuts a stream's chunks into lines, each emitted once whole (the last one at the end, if it has no newline). */
function lineSplitter(emit: (line: string) => void): { push(chunk: Buffer): void; end(): void } {
  let pending = '';
  return {
    push(chunk) {
      const lines = (pending + chunk.toString('utf8')).split('\n');
      pending = lines.pop() ?? '';
      for (const line of lines) emit(line);
    },
    end() {
      if (pending !== '') emit(pending);
      pending = '';
    },
  };
}

/**
 * Runs one command on many hosts (as colmena's and morph's `exec`): one SSH connection per host,
 * as the login user or, with `asRoot`, through sudo (asked once per login user). Each line the
 * command prints arrives as a `remote-output` event as it comes (stdout and stderr apart); the
 * result says how it ended per host. A host that cannot be reached does not stop the others.
 */
export async function runOnHosts(request: RunOnHostsRequest, context: PideployContext): Promise<RunOnHostsResult> {
  if (request.command.length === 0) {
    throw new PideployError({ code: 'PIDEPLOY_USAGE', message: 'no command to run', hint: 'pideploy exec pi1 -- uptime' });
  }
  const askOncePer = sharePasswordPerRealm(request.sudoPasswordProvider);
  const results = await mapConcurrently(request.hosts, request.parallel ?? 1, async (host): Promise<HostRunResult> => {
    const started = performance.now();
    const elapsed = () => performance.now() - started;
    return withHostSession<HostRunResult>(
      host,
      request,
      context,
      async (session) => {
        const runner = request.asRoot === true ? await session.sudo({ password: request.sudoPassword, passwordProvider: askOncePer(session.host.user), signal: context.signal }) : session;
        const stdout = lineSplitter((line) => context.reporter.emit({ type: 'remote-output', host: host.name, stream: 'stdout', line }));
        const stderr = lineSplitter((line) => context.reporter.emit({ type: 'remote-output', host: host.name, stream: 'stderr', line }));
        const timeout = request.timeoutSeconds === undefined ? undefined : AbortSignal.timeout(request.timeoutSeconds * 1000);
        const signal = timeout === undefined ? context.signal : AbortSignal.any([context.signal, timeout]);
        try {
          const ran = await runner.exec(request.command, { signal, onStdout: (chunk) => stdout.push(chunk), onStderr: (chunk) => stderr.push(chunk) });
          return { host: host.name, ok: ran.exitCode === 0, exitCode: ran.exitCode, signal: ran.signal, durationMs: elapsed() };
        } catch (error) {
          if (timeout?.aborted === true && !context.signal.aborted) return { host: host.name, ok: false, exitCode: null, signal: 'TERM', timedOut: true, durationMs: elapsed() };
          throw error;
        } finally {
          stdout.end();
          stderr.end();
        }
      },
      (error) => ({ host: host.name, ok: false, durationMs: elapsed(), error }),
    );
  });
  return { version: 1, results, ok: results.every((item) => item.ok) };
}

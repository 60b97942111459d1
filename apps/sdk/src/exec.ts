import { PassThrough } from 'node:stream';
import { PideployError, tailLines, type PideployContext } from '@pideploy/core';
import { SSH_ERROR_CODES, SUDO_WRONG_PASSWORD, type RemoteExit, type SudoRunner } from '@pideploy/ssh';
import type { ResolvedHost } from './config.js';
import { mapConcurrently } from './concurrency.js';
import { rootCommandsFor, withHostSession, type FleetHostResult, type FleetResult, type HostConnectionSettings, type HostSudoSettings } from './host-connection.js';

/** What {@link runOnHosts} needs. */
export interface RunOnHostsRequest extends HostConnectionSettings, HostSudoSettings {
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
}

/** How the command ended on one host. */
export interface HostRunResult extends FleetHostResult {
  /** The command ran and exited 0. */
  readonly ok: boolean;
  /** Its exit code (null when a signal ended it); absent when it did not run (see `error`). */
  readonly exitCode?: number | null | undefined;
  readonly signal?: string | null | undefined;
  /** It ran longer than `timeoutSeconds` and was stopped. */
  readonly timedOut?: boolean | undefined;
  readonly durationMs: number;
}

/** The outcome of {@link runOnHosts} (`version: 1`). */
export type RunOnHostsResult = FleetResult<HostRunResult>;

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

/** The line the root shell prints on stderr just before it becomes the command: what came before it is sudo's. */
const COMMAND_STARTS = 'pideploy-exec: the command starts';

/**
 * Runs `command` through sudo so that the command itself proves the password: a shell started by
 * sudo prints {@link COMMAND_STARTS} on stderr and then becomes the command. Stderr before that
 * line is sudo's (a refused password, a lecture) and is not shown; a refused password (the
 * command never started) throws `PIDEPLOY_SUDO_PASSWORD_WRONG`, so `createSudo` asks again.
 */
async function runProvingSudo(
  runner: SudoRunner,
  command: readonly string[],
  options: { readonly signal: AbortSignal; readonly onStdout: (chunk: Buffer) => void; readonly onStderr: (chunk: Buffer) => void },
  display: string,
  user: string,
): Promise<RemoteExit> {
  let started = false;
  let before = '';
  // Stdin stays open until the command starts: after a refused password sudo -S waits for another
  // line instead of trying (and logging) an empty one, and is stopped then; the command gets EOF.
  const stdin = new PassThrough();
  const refused = new AbortController();
  let ran: RemoteExit;
  try {
    ran = await runner.exec(['sh', '-c', `printf '%s\\n' '${COMMAND_STARTS}' >&2 && exec "$@"`, 'pideploy-exec', ...command], {
      stdin,
      signal: AbortSignal.any([options.signal, refused.signal]),
      onStdout: options.onStdout,
      onStderr: (chunk) => {
        if (started) {
          options.onStderr(chunk);
          return;
        }
        before += chunk.toString('utf8');
        const at = before.indexOf(`${COMMAND_STARTS}\n`);
        if (at === -1) {
          if (SUDO_WRONG_PASSWORD.test(before)) refused.abort();
          return;
        }
        started = true;
        stdin.end();
        const rest = before.slice(at + COMMAND_STARTS.length + 1);
        before = before.slice(0, at);
        if (rest !== '') options.onStderr(Buffer.from(rest, 'utf8'));
      },
    });
  } catch (error) {
    if (refused.signal.aborted && !options.signal.aborted) throw new PideployError({ code: SSH_ERROR_CODES.sudoPasswordWrong, message: `sudo on ${display} refused the password` });
    throw error;
  } finally {
    stdin.end();
  }
  if (started) return ran;
  throw new PideployError({
    code: SSH_ERROR_CODES.sudoNotAllowed,
    message: `${user} on ${display} could not run the command through sudo: ${tailLines(before, 1) || `sudo exited with ${String(ran.exitCode ?? ran.signal)}`}`,
    hint: `allow it in /etc/sudoers.d on the host (e.g. "${user} ALL=(ALL:ALL) ALL"), or connect as root`,
    commandFailure: { command: [...runner.prefix, 'sh', '-c', '…', ...command], ...(ran.exitCode === null ? {} : { exitCode: ran.exitCode }), stderrTail: tailLines(before) },
  });
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
  const asRoot = rootCommandsFor(request);
  const results = await mapConcurrently(request.hosts, request.parallel ?? 1, async (host): Promise<HostRunResult> => {
    const started = performance.now();
    const elapsed = () => performance.now() - started;
    return withHostSession<HostRunResult>(
      host,
      request,
      context,
      async (session) => {
        const stdout = lineSplitter((line) => context.reporter.emit({ type: 'remote-output', host: host.name, stream: 'stdout', line }));
        const stderr = lineSplitter((line) => context.reporter.emit({ type: 'remote-output', host: host.name, stream: 'stderr', line }));
        const timeout = request.timeoutSeconds === undefined ? undefined : AbortSignal.timeout(request.timeoutSeconds * 1000);
        const signal = timeout === undefined ? context.signal : AbortSignal.any([context.signal, timeout]);
        const output = { signal, onStdout: (chunk: Buffer) => stdout.push(chunk) };
        try {
          const streams = { ...output, onStderr: (chunk: Buffer) => stderr.push(chunk) };
          // As root, the command itself proves the password (no separate `sudo -v`): the host checks it once.
          const exit: RemoteExit =
            request.asRoot === true
              ? await asRoot(session, signal, (runner) => runProvingSudo(runner, request.command, streams, session.display, session.host.user))
              : await session.exec(request.command, streams);
          return { host: host.name, ok: exit.exitCode === 0, exitCode: exit.exitCode, signal: exit.signal, durationMs: elapsed() };
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

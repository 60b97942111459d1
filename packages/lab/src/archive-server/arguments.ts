import { PideployError } from '@pideploy/core';

/** What `node dist/archive-server/main.js` was asked to do. */
export interface ArchiveServerArguments {
  /** `--root DIR`: the server's directory (required). */
  readonly root: string;
  /** `--port N` (default 0: any free port; see server.json for the one chosen). */
  readonly port: number;
  /** `--host ADDRESS` (default 127.0.0.1; loopback only). */
  readonly host: string;
}

/** Usage line of the archive server's entry point. */
export const ARCHIVE_SERVER_USAGE = 'usage: node dist/archive-server/main.js --root DIR [--port N] [--host 127.0.0.1]';

/** Parses the archive server's command line (pure); a PideployError with code PIDEPLOY_USAGE when it is wrong. */
export function parseArchiveServerArguments(argv: readonly string[]): ArchiveServerArguments {
  const values: Record<string, string> = {};
  for (let index = 0; index < argv.length; index += 1) {
    const argument = argv[index] as string;
    const equals = argument.indexOf('=');
    const name = equals === -1 ? argument : argument.slice(0, equals);
    if (name !== '--root' && name !== '--port' && name !== '--host') throw usage(`unknown argument ${JSON.stringify(argument)}`);
    const value = equals === -1 ? argv[(index += 1)] : argument.slice(equals + 1);
    if (value === undefined || value === '') throw usage(`${name} needs a value`);
    values[name] = value;
  }
  const root = values['--root'];
  if (root === undefined) throw usage('--root is required');
  const portText = values['--port'] ?? '0';
  const port = Number(portText);
  if (!/^\d+$/u.test(portText) || port > 65535) throw usage(`--port must be a number from 0 to 65535, not ${JSON.stringify(portText)}`);
  return { root, port, host: values['--host'] ?? '127.0.0.1' };
}

function usage(message: string): PideployError {
  return new PideployError({ code: 'PIDEPLOY_USAGE', message, hint: ARCHIVE_SERVER_USAGE });
}

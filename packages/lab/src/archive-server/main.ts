import { readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { PideployError } from '@pideploy/core';
import { parseArchiveServerArguments } from './arguments.js';
import { startArchiveServer } from './server.js';

/**
 * Entry point: `node dist/archive-server/main.js --root DIR [--port N] [--host 127.0.0.1]`.
 * Writes `<root>/server.json` `{ pid, port, url }` once listening, logs to stderr, and exits 0
 * on SIGTERM/SIGINT (removing server.json). Exit 2 on usage errors, 1 when it cannot start.
 */

function stderr(line: string): void {
  process.stderr.write(`${new Date().toISOString()} archive-server[${process.pid}]: ${line}\n`);
}

async function main(): Promise<number> {
  let settings;
  try {
    settings = parseArchiveServerArguments(process.argv.slice(2));
  } catch (error) {
    const problem = error as PideployError;
    console.error(`archive-server: ${problem.message}\n${problem.hint ?? ''}`);
    return 2;
  }
  const root = path.resolve(settings.root);
  let server;
  try {
    server = await startArchiveServer({ root, host: settings.host, port: settings.port, log: stderr });
  } catch (error) {
    stderr(`cannot start on ${settings.host}:${settings.port}: ${(error as Error).message}`);
    return 1;
  }
  const serverFile = path.join(root, 'server.json');
  const partial = `${serverFile}.partial-${process.pid}`;
  writeFileSync(partial, `${JSON.stringify({ pid: process.pid, port: server.port, url: server.url })}\n`);
  renameSync(partial, serverFile);
  stderr(`listening on ${server.url}, serving ${root}`);

  const stopped = new Promise<number>((resolve) => {
    const stop = (signal: NodeJS.Signals): void => {
      stderr(`${signal}: shutting down`);
      void server.close().then(() => {
        try {
          const recorded = JSON.parse(readFileSync(serverFile, 'utf8')) as { pid?: unknown };
          if (recorded.pid === process.pid) rmSync(serverFile, { force: true });
        } catch {
          // already gone
        }
        resolve(0);
      });
    };
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
  });
  return stopped;
}

main().then(
  (exitCode) => process.exit(exitCode),
  (error: unknown) => {
    stderr(`fatal: ${error instanceof PideployError ? error.message : String(error)}`);
    process.exit(1);
  },
);

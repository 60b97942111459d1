import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createBaseContext } from '@pideploy/core';
import { labLocalNixEnv, runCommand } from '@pideploy/lab';
import { hashSource } from '../src/index.js';

/*
 * Times `hashSource(url)` (download + streaming NAR hash) against `nix-prefetch-url --unpack url`
 * on the same archive served over loopback, in the same run, and prints the ratio.
 * Size: PIDEPLOY_BENCH_MB (default 8) of file contents in ~2,000 files.
 */

const megabytes = Number(process.env['PIDEPLOY_BENCH_MB'] ?? '8');
const rounds = Number(process.env['PIDEPLOY_BENCH_ROUNDS'] ?? '3');
let root: string;
let server: Server;
let url: string;

beforeAll(async () => {
  root = await mkdtemp(path.join(tmpdir(), 'pideploy-pin-bench-'));
  const tree = path.join(root, 'nixpkgs-bench');
  const files = 2000;
  const perFile = Math.floor((megabytes * 1024 * 1024) / files);
  for (let index = 0; index < files; index++) {
    const dir = path.join(tree, 'pkgs', `group-${index % 50}`, `pkg-${index}`);
    await mkdir(dir, { recursive: true });
    // Half random (incompressible), half text, like a source tree with some binaries.
    const content = index % 2 === 0 ? randomBytes(perFile) : Buffer.from(`{ lib, stdenv }: stdenv.mkDerivation { pname = "pkg-${index}"; }\n`.repeat(Math.max(1, Math.floor(perFile / 60))));
    await writeFile(path.join(dir, 'default.nix'), content);
  }
  const archive = path.join(root, 'bench.tar.gz');
  await runCommand(['tar', '-czf', archive, '-C', root, 'nixpkgs-bench']);
  server = createServer((request, response) => {
    if (request.url?.startsWith('/bench-') !== true) {
      response.writeHead(404).end();
      return;
    }
    void stat(archive).then((info) => {
      response.writeHead(200, { 'content-type': 'application/x-gzip', 'content-length': String(info.size) });
      createReadStream(archive).pipe(response);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `http://127.0.0.1:${(server.address() as { port: number }).port}/bench-${createHash('sha1').update(root).digest('hex').slice(0, 8)}.tar.gz`;
  process.stderr.write(`archive: ${((await stat(archive)).size / 1024 / 1024).toFixed(1)} MiB, ${files} files\n`);
}, 600_000);

afterAll(async () => {
  await new Promise<void>((resolve) => server?.close(() => resolve()));
  if (root !== undefined) await rm(root, { recursive: true, force: true });
});

async function time(work: () => Promise<string>): Promise<{ readonly ms: number; readonly result: string }> {
  const started = process.hrtime.bigint();
  const result = await work();
  return { ms: Number(process.hrtime.bigint() - started) / 1e6, result };
}

it('pin hash <url> vs nix-prefetch-url --unpack <url>', async () => {
  const env = labLocalNixEnv(path.join(root, 'xdg'));
  const ours: number[] = [];
  const nix: number[] = [];
  for (let round = 0; round < rounds; round++) {
    const mine = await time(async () => (await hashSource({ source: url, cacheDir: path.join(root, 'cache') }, createBaseContext())).hash);
    const theirs = await time(async () => (await runCommand(['nix-prefetch-url', '--unpack', url], { env })).stdout.trim());
    expect(mine.result).toBe(theirs.result);
    ours.push(mine.ms);
    nix.push(theirs.ms);
  }
  const median = (values: number[]): number => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] as number;
  const ratio = median(ours) / median(nix);
  process.stdout.write(
    `pin hash ${median(ours).toFixed(0)} ms, nix-prefetch-url --unpack ${median(nix).toFixed(0)} ms (medians of ${rounds}): ratio ${ratio.toFixed(2)}×, ` +
      `peak RSS ${(process.resourceUsage().maxRSS / 1024).toFixed(0)} MiB (this process)\n`,
  );
});

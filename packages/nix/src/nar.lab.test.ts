import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { formatHash } from './hash.js';
import { dumpPathToNar, hashPathNar } from './nar-fs.js';
import { describeWithNix, run, runOk } from './test-support/nix-cli.js';
import { Prng } from './test-support/prng.js';
import { makeDeletable, writeRandomTree, type RandomTreeOptions, type TreeStats } from './test-support/random-tree.js';

/*
 * Differential test: NAR hashes and bytes of generated trees against the real Nix 2.8
 * (`nix-hash --type sha256 --base32`, `nix-store --dump`). Every tree i is generated from seed
 * SEED + i; set PIDEPLOY_NAR_SEED to explore other trees, PIDEPLOY_NAR_TREES for more of them.
 */

const SEED = Number(process.env['PIDEPLOY_NAR_SEED'] ?? 20_261_124);
const TREE_COUNT = Number(process.env['PIDEPLOY_NAR_TREES'] ?? 1200);
const NIX_HASH_BATCH = 150;

interface GeneratedTree {
  readonly index: number;
  readonly path: string;
  readonly options: RandomTreeOptions;
  readonly stats: TreeStats;
}

function optionsFor(index: number, rng: Prng): RandomTreeOptions {
  if (index % 97 === 11) return { topLevel: 'empty-directory' };
  if (index % 33 === 8) return { topLevel: 'symlink' };
  if (index % 20 === 5) return { topLevel: 'file', bigFile: index % 200 === 105 };
  return {
    bigFile: index % 200 === 17,
    ...(index % 50 === 3 ? { deepChain: rng.int(20, 60) } : {}),
  };
}

async function inBatches<T, R>(items: readonly T[], size: number, work: (batch: readonly T[]) => Promise<R[]>): Promise<R[]> {
  const results: R[] = [];
  for (let start = 0; start < items.length; start += size) results.push(...(await work(items.slice(start, start + size))));
  return results;
}

async function ourNix32(tree: GeneratedTree): Promise<string> {
  return formatHash((await hashPathNar(tree.path)).narHash, 'nix32');
}

async function collect(chunks: AsyncIterable<Buffer>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const chunk of chunks) parts.push(chunk);
  return Buffer.concat(parts);
}

describeWithNix('NAR differential: hashPathNar / dumpPathToNar vs nix-hash / nix-store --dump', () => {
  let base: string;
  const trees: GeneratedTree[] = [];
  let failed = false;

  beforeAll(() => {
    base = mkdtempSync(path.join(tmpdir(), 'pideploy-nar-lab-'));
    for (let index = 0; index < TREE_COUNT; index++) {
      const rng = new Prng(SEED + index);
      const options = optionsFor(index, rng);
      const treePath = path.join(base, `t${String(index).padStart(4, '0')}`);
      const stats = writeRandomTree(rng, Buffer.from(treePath), options);
      trees.push({ index, path: treePath, options, stats });
    }
  });

  afterAll(() => {
    if (failed) {
      console.log(`keeping ${base} for inspection (a comparison failed)`);
      return;
    }
    makeDeletable(base);
    rmSync(base, { recursive: true, force: true });
  });

  it(`nix-hash --type sha256 --base32 agrees on ${TREE_COUNT} random trees`, async () => {
    const started = Date.now();
    const ours: string[] = [];
    for (const tree of trees) ours.push(await ourNix32(tree));
    const oursMs = Date.now() - started;
    const nixStarted = Date.now();
    const theirs = await inBatches(trees, NIX_HASH_BATCH, async (batch) => {
      const output = await runOk('nix-hash', ['--type', 'sha256', '--base32', ...batch.map((tree) => tree.path)]);
      const lines = output.trim().split('\n');
      expect(lines).toHaveLength(batch.length);
      return lines;
    });
    const nixMs = Date.now() - nixStarted;
    const mismatches = trees
      .filter((tree, index) => ours[index] !== theirs[index])
      .map((tree) => `tree ${tree.index} (seed ${SEED + tree.index}, ${tree.path}): ours ${ours[tree.index]} nix ${theirs[tree.index]}`);
    const total = trees.reduce(
      (sum, tree) => ({
        files: sum.files + tree.stats.files,
        executables: sum.executables + tree.stats.executables,
        directories: sum.directories + tree.stats.directories,
        symlinks: sum.symlinks + tree.stats.symlinks,
        bytes: sum.bytes + tree.stats.bytes,
        maxDepth: Math.max(sum.maxDepth, tree.stats.maxDepth),
      }),
      { files: 0, executables: 0, directories: 0, symlinks: 0, bytes: 0, maxDepth: 0 },
    );
    console.log(
      `NAR differential: ${trees.length} trees (${total.files} files of which ${total.executables} executable, ${total.directories} directories, ` +
        `${total.symlinks} symlinks, ${(total.bytes / 1e6).toFixed(1)} MB, depth up to ${total.maxDepth}), ` +
        `${mismatches.length} mismatches; ours ${oursMs} ms, nix-hash ${nixMs} ms`,
    );
    failed ||= mismatches.length > 0;
    expect(mismatches).toEqual([]);
    expect(total.bytes).toBeGreaterThan(5_000_000);
  });

  it('nix-store --dump bytes equal dumpPathToNar (every 15th tree and every big one)', async () => {
    const subset = trees.filter((tree) => tree.index % 15 === 0 || tree.options.bigFile === true || tree.options.deepChain !== undefined);
    const different: string[] = [];
    for (const tree of subset) {
      const theirs = await run('nix-store', ['--dump', tree.path]);
      expect(theirs.exitCode).toBe(0);
      const ours = await collect(dumpPathToNar(tree.path));
      if (!ours.equals(theirs.stdout)) different.push(`tree ${tree.index} (seed ${SEED + tree.index}): ${ours.length} vs ${theirs.stdout.length} bytes`);
    }
    console.log(`NAR bytes: ${subset.length} trees compared with nix-store --dump, ${different.length} differ`);
    failed ||= different.length > 0;
    expect(different).toEqual([]);
  });

  it('both refuse fifos inside a tree', async () => {
    const directory = path.join(base, 'with-fifo');
    mkdirSync(directory);
    writeFileSync(path.join(directory, 'file'), 'x');
    expect(spawnSync('mkfifo', [path.join(directory, 'fifo')]).status).toBe(0);
    const theirs = await run('nix-hash', ['--type', 'sha256', directory]);
    expect(theirs.exitCode).not.toBe(0);
    expect(theirs.stderr).toContain('has an unsupported type');
    await expect(hashPathNar(directory)).rejects.toMatchObject({ code: 'PIDEPLOY_NAR_UNSUPPORTED_FILE_TYPE' });
    rmSync(directory, { recursive: true });
  });
});

import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync, mkdirSync, symlinkSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatHash } from './hash.js';
import { dumpPathToNar, hashPathNar } from './nar-fs.js';
import { hashNarStream, serialiseNar, type NarNode } from './nar.js';
import { expectedVectors, vectorsDir } from './test-support/shared-reference.js';

const vectors = expectedVectors();
let work: string;
let trees: string;

async function collect(chunks: AsyncIterable<Buffer>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const chunk of chunks) parts.push(chunk);
  return Buffer.concat(parts);
}

beforeAll(() => {
  work = mkdtempSync(path.join(tmpdir(), 'pideploy-nar-test-'));
  trees = path.join(work, 'trees');
  const made = spawnSync('sh', [path.join(vectorsDir(), 'make-trees.sh'), trees], { encoding: 'utf8' });
  if (made.status !== 0) throw new Error(`make-trees.sh failed: ${made.stderr}`);
});

afterAll(() => {
  rmSync(work, { recursive: true, force: true });
});

describe('NAR of the reference trees (make-trees.sh, expected.json from nix-hash)', () => {
  it('covers every tree the script makes', () => {
    expect(readdirSync(trees).sort()).toEqual(Object.keys(vectors.nar).sort());
  });

  for (const [name, expected] of Object.entries(vectors.nar)) {
    it(name, async () => {
      const { narHash, narSize } = await hashPathNar(path.join(trees, name));
      expect(formatHash(narHash, 'nix32')).toBe(expected.nix32);
      expect(formatHash(narHash, 'hex')).toBe(expected.hex);
      expect(formatHash(narHash, 'sri')).toBe(expected.sri);
      expect(narSize).toBe(expected.narSize);
    });
  }

  for (const file of readdirSync(path.join(vectorsDir(), 'nar'))) {
    const name = file.replace(/\.nar$/u, '');
    it(`bytes of ${file} (nix-store --dump)`, async () => {
      const ours = await collect(dumpPathToNar(path.join(trees, name)));
      expect(ours.equals(readFileSync(path.join(vectorsDir(), 'nar', file)))).toBe(true);
    });
  }
});

describe('NAR serialiser', () => {
  function file(text: string, executable = false): NarNode {
    const data = Buffer.from(text);
    return { type: 'regular', executable, size: data.length, contents: () => [data] };
  }

  it('sorts entries by unsigned bytes, like the `sorting` vector', async () => {
    // The same names and contents as make-trees.sh's `sorting`, listed in a scrambled order.
    const contents: Record<string, string> = { é: 'e-acute\n', '☃': 'snowman\n' };
    const names = ['☃', 'B', 'a', '_', 'Z', 'z', 'é', 'A', 'a.b', 'a-b', 'aB', 'Ab', '10', '9', '.hidden', '~tilde'];
    const root: NarNode = { type: 'directory', entries: () => names.map((name) => ({ name, node: () => file(contents[name] ?? `${name}\n`) })) };
    const { narHash, narSize } = await hashNarStream(serialiseNar(root));
    expect(formatHash(narHash, 'nix32')).toBe(vectors.nar['sorting']?.nix32);
    expect(narSize).toBe(vectors.nar['sorting']?.narSize);
  });

  it('refuses names a NAR cannot hold, and duplicates', async () => {
    for (const name of ['', '.', '..', 'a/b', 'nul\0']) {
      const root: NarNode = { type: 'directory', entries: () => [{ name, node: () => file('x') }] };
      await expect(collect(serialiseNar(root))).rejects.toMatchObject({ code: 'PIDEPLOY_NAR_INVALID_NAME' });
    }
    const twice: NarNode = { type: 'directory', entries: () => [{ name: 'a', node: () => file('1') }, { name: 'a', node: () => file('2') }] };
    await expect(collect(serialiseNar(twice))).rejects.toMatchObject({ code: 'PIDEPLOY_NAR_INVALID_NAME' });
  });

  it('refuses contents whose length differs from the declared size', async () => {
    const short: NarNode = { type: 'regular', executable: false, size: 10, contents: () => [Buffer.from('abc')] };
    await expect(collect(serialiseNar(short))).rejects.toMatchObject({ code: 'PIDEPLOY_NAR_FILE_CHANGED' });
    const long: NarNode = { type: 'regular', executable: false, size: 1, contents: () => [Buffer.from('abc')] };
    await expect(collect(serialiseNar(long))).rejects.toMatchObject({ code: 'PIDEPLOY_NAR_FILE_CHANGED' });
  });

  it('streams big files without changing the bytes (chunking does not matter)', async () => {
    const data = Buffer.alloc(3 * 1024 * 1024 + 5, 7);
    const whole = await collect(serialiseNar({ type: 'regular', executable: true, size: data.length, contents: () => [data] }));
    const pieces = await collect(
      serialiseNar({
        type: 'regular',
        executable: true,
        size: data.length,
        contents: async function* () {
          for (let offset = 0; offset < data.length; offset += 1000) yield data.subarray(offset, offset + 1000);
        },
      }),
    );
    expect(pieces.equals(whole)).toBe(true);
  });
});

describe('dumpPathToNar on the file system', () => {
  it('refuses fifos and sockets with a clear error', async () => {
    const directory = path.join(work, 'special');
    mkdirSync(directory);
    writeFileSync(path.join(directory, 'ok'), 'ok');
    const fifo = spawnSync('mkfifo', [path.join(directory, 'pipe')]);
    expect(fifo.status).toBe(0);
    const error = await hashPathNar(directory).catch((caught: unknown) => caught);
    expect(error).toMatchObject({ code: 'PIDEPLOY_NAR_UNSUPPORTED_FILE_TYPE' });
    expect((error as Error).message).toMatch(/pipe' has an unsupported type \(fifo\)/u);

    const socketDirectory = path.join(work, 'socket');
    mkdirSync(socketDirectory);
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(path.join(socketDirectory, 'sock'), resolve));
    try {
      await expect(hashPathNar(socketDirectory)).rejects.toThrow(/unsupported type \(socket\)/u);
    } finally {
      server.close();
    }
  });

  it('records a top-level symlink, not its target, and reads non-UTF-8 names', async () => {
    const directory = Buffer.from(path.join(work, 'raw'));
    mkdirSync(directory);
    const oddName = Buffer.concat([directory, Buffer.from('/'), Buffer.from([0xff, 0xfe, 0x41])]);
    writeFileSync(oddName, 'x');
    symlinkSync('raw', path.join(work, 'link-to-raw'));
    const viaLink = await collect(dumpPathToNar(path.join(work, 'link-to-raw')));
    expect(viaLink.equals(await collect(serialiseNar({ type: 'symlink', target: 'raw' })))).toBe(true);
    const nar = await collect(dumpPathToNar(directory));
    expect(nar.includes(Buffer.from([0xff, 0xfe, 0x41]))).toBe(true);
  });

  it('reports a missing path', async () => {
    await expect(hashPathNar(path.join(work, 'does-not-exist'))).rejects.toMatchObject({ code: 'PIDEPLOY_NAR_READ_FAILED' });
  });
});

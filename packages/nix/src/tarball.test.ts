import { spawnSync } from 'node:child_process';
import { createReadStream, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatHash } from './hash.js';
import { hashPathNar } from './nar-fs.js';
import { dumpTarballToNar, hashTarballNar, type TarballNarOptions } from './tarball.js';
import { expectedVectors, vectorsDir } from './test-support/shared-reference.js';
import { craftTar, type CraftedFormat, type CraftedMember } from './test-support/tar-writer.js';

const vectors = expectedVectors();
let work: string;

beforeAll(() => {
  work = mkdtempSync(path.join(tmpdir(), 'pideploy-tarball-test-'));
});
afterAll(() => {
  rmSync(work, { recursive: true, force: true });
});

function chunked(data: Buffer, size: number): Buffer[] {
  const chunks: Buffer[] = [];
  for (let offset = 0; offset < data.length; offset += size) chunks.push(data.subarray(offset, offset + size));
  return chunks;
}

async function nix32Of(data: Buffer | Buffer[], options: TarballNarOptions = {}): Promise<string> {
  const result = await hashTarballNar(Array.isArray(data) ? data : [data], options);
  return formatHash(result.narHash, 'nix32');
}

async function failureOf(data: Buffer | Buffer[], options: TarballNarOptions = {}): Promise<{ code: string; message: string; hint?: string }> {
  try {
    await hashTarballNar(Array.isArray(data) ? data : [data], options);
  } catch (error) {
    return error as { code: string; message: string; hint?: string };
  }
  throw new Error('expected the archive to be refused');
}

function tarballVector(name: string): Buffer {
  return readFileSync(path.join(vectorsDir(), 'tarballs', name));
}

describe('reference tarballs (expected.json, from nix-prefetch-url --unpack)', () => {
  for (const [name, expected] of Object.entries(vectors.tarball)) {
    it(name, async () => {
      const result = await hashTarballNar(createReadStream(path.join(vectorsDir(), 'tarballs', name)));
      expect(formatHash(result.narHash, 'nix32')).toBe(expected.nixPrefetchUrlUnpack);
      if (expected.sri !== undefined) expect(formatHash(result.narHash, 'sri')).toBe(expected.sri);
      if (expected.narSize !== undefined) expect(result.narSize).toBe(expected.narSize);
      const fetchTarball = hashTarballNar([tarballVector(name)], { topLevelRule: 'fetchTarball' });
      if (expected.fetchTarball2_8?.error !== undefined) {
        await expect(fetchTarball).rejects.toMatchObject({ code: 'PIDEPLOY_ARCHIVE_TOP_LEVEL' });
        expect(result.topLevelName).toBeUndefined();
        expect(result.topLevelEntryCount).toBeGreaterThan(1);
      } else {
        expect((await fetchTarball).narHash.equals(result.narHash)).toBe(true);
        expect(result.topLevelEntryCount).toBe(1);
      }
    });
  }

  it('reports the single top-level entry and its type', async () => {
    const x = await hashTarballNar([tarballVector('x.tar.gz')]);
    expect(x).toMatchObject({ topLevelName: 'proj-0123abc', rootType: 'directory', topLevelEntryCount: 1 });
    const single = await hashTarballNar([tarballVector('single-file.tar.gz')]);
    expect(single).toMatchObject({ topLevelName: 'only.txt', rootType: 'regular' });
  });

  it('tarballs recreated by make-tarballs.sh hash the same, and x equals its unpacked tree', async () => {
    const out = path.join(work, 'remade');
    const made = spawnSync('sh', [path.join(vectorsDir(), 'make-tarballs.sh'), out], { encoding: 'utf8' });
    expect(made.stderr).toBe('');
    for (const [name, expected] of Object.entries(vectors.tarball)) {
      expect(await nix32Of(readFileSync(path.join(out, name)))).toBe(expected.nixPrefetchUrlUnpack);
    }
    expect(formatHash((await hashPathNar(path.join(out, 'x-unpacked-top'))).narHash, 'nix32')).toBe(vectors.tarball['x.tar.gz']?.nixPrefetchUrlUnpack);
  });

  it('does not depend on how the input is chunked or whether it is compressed', async () => {
    const gz = tarballVector('x.tar.gz');
    const plain = gunzipSync(gz);
    const expected = vectors.tarball['x.tar.gz']?.nixPrefetchUrlUnpack;
    for (const size of [1, 7, 511, 512, 513, 4096]) expect(await nix32Of(chunked(gz, size))).toBe(expected);
    for (const size of [1, 100, 512]) expect(await nix32Of(chunked(plain, size), { compression: 'none' })).toBe(expected);
    expect(await nix32Of(plain, { compression: 'auto' })).toBe(expected);
    expect(await nix32Of(gz, { compression: 'gzip' })).toBe(expected);
    // several gzip members, and junk after the last complete member (libarchive ignores it)
    const members = Buffer.concat([gzipSync(plain.subarray(0, 700)), gzipSync(plain.subarray(700))]);
    expect(await nix32Of(members)).toBe(expected);
    expect(await nix32Of(Buffer.concat([gz, Buffer.from('trailing junk\n')]))).toBe(expected);
  });
});

describe('bounded memory: spilling to a private temp directory', () => {
  function bigArchive(): Buffer {
    const members: CraftedMember[] = [{ name: 'top/', type: 'dir' }];
    for (let i = 0; i < 40; i++) members.push({ name: `top/f${String(i).padStart(2, '0')}`, data: Buffer.alloc(50_000 + i, i) });
    members.push({ name: 'top/big', data: Buffer.alloc(3_000_000, 0xab), mode: 0o755 });
    return gzipSync(craftTar(members));
  }

  it('gives the same hash whatever the memory budget, and removes the temp files', async () => {
    const archive = bigArchive();
    const inMemory = await nix32Of(archive, { memoryBudgetBytes: 1 << 30, inMemoryFileLimitBytes: 1 << 30 });
    const temp = path.join(work, 'spill-temp');
    mkdirSync(temp);
    for (const budget of [0, 100_000, 1_000_000]) {
      expect(await nix32Of(archive, { memoryBudgetBytes: budget, inMemoryFileLimitBytes: 60_000, tempDirectory: temp })).toBe(inMemory);
      expect(readdirSync(temp)).toEqual([]);
    }
  });

  it('keeps spilled contents in one temp directory while streaming, removed when done or abandoned', async () => {
    const temp = path.join(work, 'spill-temp-2');
    mkdirSync(temp);
    const nar = dumpTarballToNar([bigArchive()], { memoryBudgetBytes: 0, tempDirectory: temp });
    await nar.next();
    const during = readdirSync(temp);
    expect(during).toHaveLength(1);
    expect(during[0]).toMatch(/^pideploy-nar-/u);
    await nar.return(undefined as never);
    expect(readdirSync(temp)).toEqual([]);
  });

  it('removes the temp files when the archive turns out to be damaged', async () => {
    const temp = path.join(work, 'spill-temp-3');
    mkdirSync(temp);
    const archive = gzipSync(craftTar([{ name: 'a', data: Buffer.alloc(2_000_000, 1) }, { name: 'b', data: Buffer.alloc(100, 2) }]));
    const damaged = archive.subarray(0, archive.length - 30);
    expect((await failureOf(damaged, { memoryBudgetBytes: 0, tempDirectory: temp })).code).toBe('PIDEPLOY_ARCHIVE_CORRUPT');
    expect(readdirSync(temp)).toEqual([]);
  });

  it('does not trust declared sizes: huge ones fail without allocating', async () => {
    const lying = craftTar([{ name: 'top/huge', data: 'only a few bytes', declaredSize: 5_000_000_000 }], { end: 'none' });
    const truncated = await failureOf(lying, { tempDirectory: work });
    expect(truncated.code).toBe('PIDEPLOY_ARCHIVE_CORRUPT');
    expect(truncated.message).toMatch(/truncated tar archive/u);
    expect(truncated.hint).toBeTruthy();
    const tooLarge = await failureOf(craftTar([{ name: 'x', data: 'x', declaredSize: 2 ** 40 }]));
    expect(tooLarge.code).toBe('PIDEPLOY_ARCHIVE_TOO_LARGE');
    expect((await failureOf(craftTar([{ name: 'x', data: Buffer.alloc(2000) }]), { maxUnpackedBytes: 1000 })).code).toBe('PIDEPLOY_ARCHIVE_TOO_LARGE');
  });
});

describe('tar dialects give the same tree', () => {
  const longDirectory = `top/${'d'.repeat(90)}/${'é'.repeat(40)}`;
  const members: CraftedMember[] = [
    { name: 'top/', type: 'dir' },
    { name: `${longDirectory}/`, type: 'dir' },
    { name: `${longDirectory}/${'n'.repeat(99)}`, data: 'long name\n', mode: 0o755 },
    { name: 'top/link', type: 'symlink', linkname: `${'t'.repeat(150)}/target` },
    { name: 'top/short', data: 'short\n' },
    { name: 'top/hard', type: 'hardlink', linkname: 'top/short' },
  ];

  it('GNU long names (L/K), pax path/linkpath and ustar prefixes agree with the tree on disk', async () => {
    const hashes = new Set<string>();
    for (const format of ['gnu', 'pax'] as CraftedFormat[]) hashes.add(await nix32Of(craftTar(members, { format })));
    expect(hashes.size).toBe(1);

    const root = path.join(work, 'dialects', 'top');
    mkdirSync(path.join(root, 'd'.repeat(90), 'é'.repeat(40)), { recursive: true });
    writeFileSync(path.join(root, 'd'.repeat(90), 'é'.repeat(40), 'n'.repeat(99)), 'long name\n');
    chmodSync(path.join(root, 'd'.repeat(90), 'é'.repeat(40), 'n'.repeat(99)), 0o755);
    symlinkSync(`${'t'.repeat(150)}/target`, path.join(root, 'link'));
    writeFileSync(path.join(root, 'short'), 'short\n');
    writeFileSync(path.join(root, 'hard'), 'short\n');
    expect(formatHash((await hashPathNar(root)).narHash, 'nix32')).toBe([...hashes][0]);

    // ustar splits long names into prefix (≤ 155 bytes) + name (≤ 100 bytes).
    const ustarMembers: CraftedMember[] = [
      { name: `top/${'p'.repeat(120)}/${'q'.repeat(90)}`, data: 'split\n' },
      { name: `top/${'p'.repeat(120)}/r`, data: 'r\n', mode: 0o700 },
    ];
    expect(await nix32Of(craftTar(ustarMembers, { format: 'ustar' }))).toBe(await nix32Of(craftTar(ustarMembers, { format: 'gnu' })));
  });

  it('ends at one zero block, at no zero block, and ignores what follows the end', async () => {
    const expected = await nix32Of(craftTar(members));
    expect(await nix32Of(craftTar(members, { end: 'one-zero-block' }))).toBe(expected);
    expect(await nix32Of(craftTar(members, { end: 'none' }))).toBe(expected);
    expect(await nix32Of(Buffer.concat([craftTar(members, { end: 'one-zero-block' }), Buffer.from('garbage after the end')]))).toBe(expected);
  });
});

describe('hostile and odd archives (behaviour of Nix 2.8, cross-checked in tarball.lab.test.ts)', () => {
  it('refuses `..` in member paths and hard link targets', async () => {
    for (const archive of [
      craftTar([{ name: 'top/a', data: 'x' }, { name: 'top/../evil', data: 'y' }]),
      craftTar([{ name: '../evil', data: 'y' }]),
      craftTar([{ name: 'top/a', data: 'x' }, { name: 'top/h', type: 'hardlink', linkname: 'top/../top/a' }]),
    ]) {
      const failure = await failureOf(archive);
      expect(failure.code).toBe('PIDEPLOY_ARCHIVE_UNSAFE');
      expect(failure.message).toMatch(/'\.\.'/u);
    }
  });

  it('keeps absolute and ./ paths inside the unpack directory', async () => {
    const relative = await nix32Of(craftTar([{ name: 'top/a', data: 'x' }, { name: 'top/b', data: 'y' }]));
    expect(await nix32Of(craftTar([{ name: '/top/a', data: 'x' }, { name: '//top/./b', data: 'y' }]))).toBe(relative);
    expect(await nix32Of(craftTar([{ name: './top/a', data: 'x' }, { name: 'top//b', data: 'y' }, { name: './', type: 'dir' }]))).toBe(relative);
  });

  it('lets a later member replace an earlier one, but never a non-empty directory', async () => {
    const later = await nix32Of(craftTar([{ name: 'top/a', data: 'second' }]));
    expect(await nix32Of(craftTar([{ name: 'top/a', data: 'first', mode: 0o755 }, { name: 'top/a', data: 'second' }]))).toBe(later);
    expect(await nix32Of(craftTar([{ name: 'top/a', type: 'dir' }, { name: 'top/a', data: 'second' }]))).toBe(later);
    expect(await nix32Of(craftTar([{ name: 'top/a', type: 'symlink', linkname: 'x' }, { name: 'top/a', data: 'second' }]))).toBe(later);
    expect(await nix32Of(craftTar([{ name: 'top/a', type: 'fifo' }, { name: 'top/a', data: 'second' }]))).toBe(later);
    expect((await failureOf(craftTar([{ name: 'top/d/x', data: 'x' }, { name: 'top/d', data: 'y' }]))).code).toBe('PIDEPLOY_ARCHIVE_UNSAFE');
    const merged = await nix32Of(craftTar([{ name: 'top/d/a', data: 'x' }, { name: 'top/d/b', data: 'y' }]));
    expect(await nix32Of(craftTar([{ name: 'top/d/a', data: 'x' }, { name: 'top/d', type: 'dir', mode: 0o700 }, { name: 'top/d/b', data: 'y' }]))).toBe(merged);
  });

  it('treats hard links as shared inodes: contents and executable bit of the target at link time', async () => {
    const linked = await nix32Of(
      craftTar([
        { name: 'top/a', data: 'first', mode: 0o755 },
        { name: 'top/h', type: 'hardlink', linkname: 'top/a', mode: 0o644 },
        { name: 'top/a', data: 'second', mode: 0o644 },
      ]),
    );
    const equivalent = await nix32Of(craftTar([{ name: 'top/a', data: 'second', mode: 0o644 }, { name: 'top/h', data: 'first', mode: 0o755 }]));
    expect(linked).toBe(equivalent);
    expect(await nix32Of(craftTar([{ name: 'top/s', type: 'symlink', linkname: 'target' }, { name: 'top/h', type: 'hardlink', linkname: 'top/s' }]))).toBe(
      await nix32Of(craftTar([{ name: 'top/s', type: 'symlink', linkname: 'target' }, { name: 'top/h', type: 'symlink', linkname: 'target' }])),
    );
    for (const archive of [
      craftTar([{ name: 'top/h', type: 'hardlink', linkname: 'top/a' }, { name: 'top/a', data: 'x' }]),
      craftTar([{ name: 'top/a', data: 'x' }, { name: 'top/a', type: 'hardlink', linkname: 'top/a' }]),
      craftTar([{ name: 'top/d', type: 'dir' }, { name: 'top/h', type: 'hardlink', linkname: 'top/d' }]),
      craftTar([{ name: 'top/d/a', data: 'A' }, { name: 'top/s', type: 'symlink', linkname: 'd' }, { name: 'top/h', type: 'hardlink', linkname: 'top/s/a' }]),
    ]) {
      expect((await failureOf(archive)).code).toBe('PIDEPLOY_ARCHIVE_UNSAFE');
    }
  });

  it('keeps error messages on one line whatever the member names hold', async () => {
    const failure = await failureOf(craftTar([{ name: 'top/new\nline\u001b', type: 'symlink', linkname: 'x' }, { name: 'top/new\nline\u001b/x', data: 'x' }]));
    expect(failure.message).toContain("'top/new\\nline\\x1b'");
    expect(failure.message).not.toContain('\n');
  });

  it('refuses to extract through symlinks', async () => {
    const failure = await failureOf(craftTar([{ name: 'top/s', type: 'symlink', linkname: '/etc' }, { name: 'top/s/passwd', data: 'x' }]));
    expect(failure).toMatchObject({ code: 'PIDEPLOY_ARCHIVE_UNSAFE' });
    expect(failure.message).toMatch(/through the symlink 'top\/s'/u);
  });

  it('fails on devices and fifos that end up in the tree, like the NAR dump of Nix', async () => {
    for (const type of ['chr', 'blk', 'fifo'] as const) {
      const failure = await failureOf(craftTar([{ name: 'top/a', data: 'x' }, { name: 'top/dev', type }]));
      expect(failure.code).toBe('PIDEPLOY_NAR_UNSUPPORTED_FILE_TYPE');
      expect(failure.message).toContain("'top/dev'");
    }
  });

  it('reads unknown type flags as regular files and refuses sparse / multi-volume members', async () => {
    expect(await nix32Of(craftTar([{ name: 'top/z', type: 'Z', data: 'zz' }]))).toBe(await nix32Of(craftTar([{ name: 'top/z', data: 'zz' }])));
    expect((await failureOf(craftTar([{ name: 'top/s', type: 'S', data: 'x' }]))).code).toBe('PIDEPLOY_ARCHIVE_UNSUPPORTED');
  });

  it('an empty input or empty archive is an empty directory (nix-prefetch-url hashes the unpack dir)', async () => {
    const emptyDirectory = vectors.nar['empty-dir']?.nix32;
    expect(await nix32Of(Buffer.alloc(0))).toBe(emptyDirectory);
    expect(await nix32Of(Buffer.alloc(1024))).toBe(emptyDirectory);
    expect(await nix32Of(gzipSync(Buffer.alloc(0)))).toBe(emptyDirectory);
    expect((await failureOf(Buffer.alloc(0), { topLevelRule: 'fetchTarball' })).code).toBe('PIDEPLOY_ARCHIVE_TOP_LEVEL');
  });

  it('reports damaged and foreign inputs', async () => {
    const tar = craftTar([{ name: 'top/a', data: 'x'.repeat(2000) }]);
    const badChecksum = Buffer.from(tar);
    badChecksum[0] = 0x41;
    expect(await failureOf(badChecksum)).toMatchObject({ code: 'PIDEPLOY_ARCHIVE_CORRUPT' });
    expect((await failureOf(Buffer.from('<html>not found</html>\n'))).message).toMatch(/not a tar archive/u);
    expect((await failureOf(tar.subarray(0, 700))).code).toBe('PIDEPLOY_ARCHIVE_CORRUPT');
    const gz = gzipSync(tar);
    expect((await failureOf(gz.subarray(0, gz.length - 4))).message).toMatch(/truncated gzip input/u);
    const flipped = Buffer.from(gz);
    flipped[gz.length - 8] = (flipped[gz.length - 8] as number) ^ 1;
    expect((await failureOf(flipped)).message).toMatch(/CRC-32/u);
    expect((await failureOf(tar, { compression: 'gzip' })).message).toMatch(/not gzip data/u);
    for (const magic of [Buffer.from('BZh91AY'), Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00, 0x00]), Buffer.from('PK\u0003\u0004....')]) {
      expect((await failureOf(magic)).code).toBe('PIDEPLOY_ARCHIVE_UNSUPPORTED');
    }
  });

  it('stops when aborted', async () => {
    const controller = new AbortController();
    controller.abort();
    expect((await failureOf(craftTar([{ name: 'a', data: 'x' }]), { signal: controller.signal })).code).toBe('PIDEPLOY_INTERRUPTED');
  });
});

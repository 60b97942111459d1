import { chmodSync, cpSync, createReadStream, linkSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { formatHash } from './hash.js';
import { hashPathNar } from './nar-fs.js';
import { makeFixedOutputPath } from './store-path.js';
import { hashTarballNar } from './tarball.js';
import { describeWithNix, run, runSync } from './test-support/nix-cli.js';
import { Prng } from './test-support/prng.js';
import { makeDeletable, writeRandomTree } from './test-support/random-tree.js';
import { craftTar, type CraftedMember } from './test-support/tar-writer.js';

/*
 * Differential test: hashTarballNar against the real `nix-prefetch-url --unpack file://…`
 * (Nix 2.8, libarchive 3.6) on archives made by GNU tar and git, on hand-made hostile archives
 * and on randomly generated member sequences (duplicates, hard links, symlinks, devices, odd
 * paths). Either both give the same hash, or both refuse the archive.
 */

const SEED = Number(process.env['PIDEPLOY_TAR_SEED'] ?? 31_337);
const FUZZ_COUNT = Number(process.env['PIDEPLOY_TAR_FUZZ'] ?? 200);

type Outcome = { ok: true; nix32: string } | { ok: false; error: string };

let base: string;
let counter = 0;

async function nixPrefetch(file: string, extra: readonly string[] = []): Promise<{ outcome: Outcome; stdout: string }> {
  const result = await run('nix-prefetch-url', ['--unpack', ...extra, `file://${file}`]);
  const stdout = result.stdout.toString('utf8');
  if (result.exitCode === 0) return { outcome: { ok: true, nix32: stdout.trim().split('\n')[0] as string }, stdout };
  return { outcome: { ok: false, error: result.stderr.trim().split('\n').pop() ?? '' }, stdout };
}

async function ours(file: string): Promise<Outcome> {
  try {
    return { ok: true, nix32: formatHash((await hashTarballNar(createReadStream(file))).narHash, 'nix32') };
  } catch (error) {
    return { ok: false, error: `${(error as { code?: string }).code}: ${(error as Error).message}` };
  }
}

function agree(left: Outcome, right: Outcome): boolean {
  return left.ok === right.ok && (!left.ok || (right.ok && left.nix32 === right.nix32));
}

function describeOutcome(outcome: Outcome): string {
  return outcome.ok ? outcome.nix32 : `error (${outcome.error})`;
}

function writeArchive(data: Buffer, extension: string): string {
  counter += 1;
  const file = path.join(base, 'archives', `case-${String(counter).padStart(4, '0')}.${extension}`);
  writeFileSync(file, data);
  return file;
}

/** A tree with what GitHub archives hold, plus long and UTF-8 names and hard links. */
function buildSampleTree(root: string, options: { longNames: boolean }): void {
  mkdirSync(path.join(root, 'bin'), { recursive: true });
  mkdirSync(path.join(root, 'src'));
  mkdirSync(path.join(root, 'empty'));
  mkdirSync(path.join(root, 'deep/a/b/c/d/e/f/g'), { recursive: true });
  mkdirSync(path.join(root, 'é'));
  writeFileSync(path.join(root, 'README.md'), '# sample\n');
  linkSync(path.join(root, 'README.md'), path.join(root, 'README.hardlink'));
  writeFileSync(path.join(root, 'bin/run'), '#!/bin/sh\necho run\n');
  chmodSync(path.join(root, 'bin/run'), 0o755);
  linkSync(path.join(root, 'bin/run'), path.join(root, 'run-hardlink'));
  writeFileSync(path.join(root, 'src/index.js'), 'console.log(1)\n');
  writeFileSync(path.join(root, 'src/readonly.txt'), 'ro\n');
  chmodSync(path.join(root, 'src/readonly.txt'), 0o444);
  writeFileSync(path.join(root, 'group-exec-only'), 'g\n');
  chmodSync(path.join(root, 'group-exec-only'), 0o611);
  symlinkSync('src/index.js', path.join(root, 'main.js'));
  symlinkSync('../nowhere', path.join(root, 'dangling'));
  writeFileSync(path.join(root, '.hidden'), 'h');
  writeFileSync(path.join(root, 'é/☃'), 'snow\n');
  writeFileSync(path.join(root, 'deep/a/b/c/d/e/f/g/file'), Buffer.alloc(70_000, 3));
  writeFileSync(path.join(root, 'big.bin'), new Prng(7).bytes(2_500_000));
  if (options.longNames) {
    const longDirectory = path.join(root, 'l'.repeat(120), 'ü'.repeat(60));
    mkdirSync(longDirectory, { recursive: true });
    writeFileSync(path.join(longDirectory, 'n'.repeat(150)), 'long\n');
    symlinkSync(`${'t'.repeat(90)}/${'u'.repeat(120)}`, path.join(root, 'long-link'));
    linkSync(path.join(longDirectory, 'n'.repeat(150)), path.join(root, 'hardlink-to-long'));
  }
}

describeWithNix('tarball differential: hashTarballNar vs nix-prefetch-url --unpack (Nix 2.8)', () => {
  const mismatches: string[] = [];
  let compared = 0;

  async function compare(file: string, label: string, extraExpected?: string): Promise<Outcome> {
    const [{ outcome: theirs }, mine] = await Promise.all([nixPrefetch(file), ours(file)]);
    compared += 1;
    if (!agree(theirs, mine)) mismatches.push(`${label} (${file}): nix ${describeOutcome(theirs)} vs ours ${describeOutcome(mine)}`);
    if (extraExpected !== undefined && mine.ok && mine.nix32 !== extraExpected) {
      mismatches.push(`${label}: tarball hash ${mine.nix32} differs from the NAR hash of the source tree ${extraExpected}`);
    }
    return theirs;
  }

  beforeAll(() => {
    base = mkdtempSync(path.join(tmpdir(), 'pideploy-tar-lab-'));
    mkdirSync(path.join(base, 'archives'));
  });

  afterAll(() => {
    if (mismatches.length > 0) {
      console.log(`keeping ${base} for inspection`);
      return;
    }
    makeDeletable(base);
    rmSync(base, { recursive: true, force: true });
  });

  it('archives made by GNU tar (gnu, oldgnu, pax, ustar; gzip and plain) and by git archive', async () => {
    const trees = path.join(base, 'trees');
    buildSampleTree(path.join(trees, 'proj-0123abc'), { longNames: true });
    buildSampleTree(path.join(trees, 'short-names'), { longNames: false });
    const sample = formatHash((await hashPathNar(path.join(trees, 'proj-0123abc'))).narHash, 'nix32');
    const short = formatHash((await hashPathNar(path.join(trees, 'short-names'))).narHash, 'nix32');
    const tar = (args: readonly string[], extension: string): string => {
      counter += 1;
      const file = path.join(base, 'archives', `gnutar-${counter}.${extension}`);
      runSync('tar', ['-C', trees, '-cf', file, ...args]);
      return file;
    };
    for (const format of ['gnu', 'oldgnu', 'posix']) {
      await compare(tar([`--format=${format}`, 'proj-0123abc'], 'tar'), `tar --format=${format}`, sample);
      await compare(tar([`--format=${format}`, '-z', 'proj-0123abc'], 'tar.gz'), `tar --format=${format} -z`, sample);
    }
    await compare(tar(['--format=ustar', 'short-names'], 'tar'), 'tar --format=ustar', short);
    await compare(tar(['--format=v7', '-z', 'short-names'], 'tar.gz'), 'tar --format=v7', short);
    await compare(tar(['--format=posix', '-z', 'proj-0123abc', 'short-names'], 'tar.gz'), 'two top-level directories');
    await compare(tar(['--format=gnu', '-z', '-C', path.join(trees, 'short-names'), '.'], 'tar.gz'), 'tar -C dir . (./ entries)');
    await compare(tar(['--format=posix', '-z', 'proj-0123abc/README.md'], 'tar.gz'), 'single member in a subdirectory');
    await compare(tar(['--format=posix', '-z', '-C', path.join(trees, 'proj-0123abc'), 'main.js'], 'tar.gz'), 'single top-level symlink');
    await compare(tar(['--format=posix', '-z', '-C', path.join(trees, 'proj-0123abc', 'bin'), 'run'], 'tar.gz'), 'single top-level executable');
    await compare(tar(['--format=gnu', '-z', '-C', path.join(trees, 'proj-0123abc'), 'empty'], 'tar.gz'), 'single empty directory');

    // Several gzip members (e.g. from pigz or a resumed download written by concatenation).
    const plain = readFileSync(tar(['--format=posix', 'proj-0123abc'], 'tar'));
    const split = Math.floor(plain.length / 3);
    await compare(writeArchive(Buffer.concat([gzipSync(plain.subarray(0, split)), gzipSync(plain.subarray(split))]), 'tar.gz'), 'two gzip members', sample);
    await compare(writeArchive(Buffer.concat([gzipSync(plain), Buffer.from('junk after the gzip stream\n')]), 'tar.gz'), 'junk after gzip', sample);

    // git archive, like GitHub's /archive/<rev>.tar.gz (pax global header with the commit id).
    const repository = path.join(base, 'repo');
    cpSync(path.join(trees, 'short-names'), repository, { recursive: true });
    rmSync(path.join(repository, 'empty'), { recursive: true }); // git does not keep empty directories
    const git = (...args: string[]): void => runSync('git', ['-c', 'user.name=t', '-c', 'user.email=t@example.invalid', '-C', repository, ...args]);
    git('init', '-q');
    git('add', '-A');
    git('commit', '-q', '-m', 'sample');
    const archive = path.join(base, 'archives', 'git-archive.tar.gz');
    git('archive', '--format=tar.gz', '--prefix=repo-0123abc/', '-o', archive, 'HEAD');
    rmSync(path.join(repository, '.git'), { recursive: true, force: true });
    await compare(archive, 'git archive', formatHash((await hashPathNar(repository)).narHash, 'nix32'));
    expect(mismatches).toEqual([]);
  });

  it('random trees packed by GNU tar', async () => {
    const trees = path.join(base, 'random-trees');
    mkdirSync(trees);
    for (let index = 0; index < 30; index++) {
      const rng = new Prng(SEED + 1000 + index);
      const name = `tree-${index}`;
      writeRandomTree(rng, Buffer.from(path.join(trees, name)), { bigFile: index % 10 === 3 });
      const format = ['gnu', 'posix', 'oldgnu'][index % 3] as string;
      counter += 1;
      const file = path.join(base, 'archives', `random-${counter}.tar${index % 2 === 0 ? '.gz' : ''}`);
      runSync('tar', [`--format=${format}`, ...(index % 2 === 0 ? ['-z'] : []), '-C', trees, '-cf', file, name]);
      await compare(file, `random tree ${index} (seed ${SEED + 1000 + index}, ${format})`, formatHash((await hashPathNar(path.join(trees, name))).narHash, 'nix32'));
    }
    expect(mismatches).toEqual([]);
  });

  it('hand-made hostile and odd archives: same hash or both refuse', async () => {
    const cases: Record<string, CraftedMember[]> = {
      dotdot: [{ name: 'top/a', data: 'x' }, { name: 'top/../evil', data: 'y' }],
      'leading dotdot': [{ name: '../evil', data: 'y' }],
      absolute: [{ name: '/top/a', data: 'x' }, { name: '/top/b', data: 'y' }],
      'dot components': [{ name: './top/./a', data: 'x' }, { name: 'top//b', data: 'y' }],
      duplicate: [{ name: 'top/a', data: 'first', mode: 0o755 }, { name: 'top/a', data: 'second' }],
      'hard link then overwrite': [{ name: 'top/a', data: 'first', mode: 0o755 }, { name: 'top/h', type: 'hardlink', linkname: 'top/a' }, { name: 'top/a', data: 'second' }],
      'hard link mode ignored': [{ name: 'top/a', data: 'first' }, { name: 'top/h', type: 'hardlink', linkname: 'top/a', mode: 0o755 }],
      'hard link missing': [{ name: 'top/a', data: 'x' }, { name: 'top/h', type: 'hardlink', linkname: 'top/zzz' }],
      'hard link forward': [{ name: 'top/h', type: 'hardlink', linkname: 'top/a' }, { name: 'top/a', data: 'x' }],
      'hard link dotdot': [{ name: 'top/a', data: 'x' }, { name: 'top/h', type: 'hardlink', linkname: 'top/../top/a' }],
      'hard link absolute': [{ name: 'top/a', data: 'x' }, { name: 'top/h', type: 'hardlink', linkname: '/top/a' }],
      'hard link to dir': [{ name: 'top/d', type: 'dir' }, { name: 'top/h', type: 'hardlink', linkname: 'top/d' }],
      'hard link to symlink': [{ name: 'top/s', type: 'symlink', linkname: 'target' }, { name: 'top/h', type: 'hardlink', linkname: 'top/s' }],
      'hard link to itself': [{ name: 'top/a', data: 'x' }, { name: 'top/a', type: 'hardlink', linkname: 'top/a' }],
      'hard link through symlink': [{ name: 'top/d/a', data: 'A' }, { name: 'top/s', type: 'symlink', linkname: 'd' }, { name: 'top/h', type: 'hardlink', linkname: 'top/s/a' }],
      'hard link over file': [{ name: 'top/a', data: 'A' }, { name: 'top/b', data: 'B' }, { name: 'top/b', type: 'hardlink', linkname: 'top/a' }],
      'hard link chain': [{ name: 'top/a', data: 'A', mode: 0o755 }, { name: 'top/h', type: 'hardlink', linkname: 'top/a' }, { name: 'top/h2', type: 'hardlink', linkname: 'top/h' }],
      'through symlink': [{ name: 'top/s', type: 'symlink', linkname: 'd' }, { name: 'top/d', type: 'dir' }, { name: 'top/s/x', data: 'x' }],
      'through absolute symlink': [{ name: 'top/s', type: 'symlink', linkname: '/etc' }, { name: 'top/s/pideploy-escape', data: 'x' }],
      'symlink replaced by file': [{ name: 'top/s', type: 'symlink', linkname: 'd' }, { name: 'top/s', data: 'x' }],
      'symlink replaced by dir': [{ name: 'top/s', type: 'symlink', linkname: 'd' }, { name: 'top/s', type: 'dir' }],
      'file over non-empty dir': [{ name: 'top/d/x', data: 'x' }, { name: 'top/d', data: 'y' }],
      'file over empty dir': [{ name: 'top/d', type: 'dir' }, { name: 'top/d', data: 'y' }],
      'symlink over non-empty dir': [{ name: 'top/d/x', data: 'x' }, { name: 'top/d', type: 'symlink', linkname: 'q' }],
      'member below a file': [{ name: 'top/d', data: 'y' }, { name: 'top/d/x', data: 'x' }],
      'dir over file': [{ name: 'top/d', data: 'y' }, { name: 'top/d', type: 'dir' }],
      'dir merge': [{ name: 'top/d/a', data: 'x' }, { name: 'top/d', type: 'dir', mode: 0o700 }, { name: 'top/d/b', data: 'y' }],
      fifo: [{ name: 'top/a', data: 'x' }, { name: 'top/p', type: 'fifo' }],
      'char device': [{ name: 'top/a', data: 'x' }, { name: 'top/c', type: 'chr' }],
      'fifo then file': [{ name: 'top/p', type: 'fifo' }, { name: 'top/p', data: 'now a file' }],
      'exec bits': [{ name: 'top/a', data: 'x', mode: 0o611 }, { name: 'top/b', data: 'x', mode: 0o100 }, { name: 'top/c', data: 'x', mode: 0 }],
      'dir without permissions': [{ name: 'top/d', type: 'dir', mode: 0 }, { name: 'top/d/x', data: 'x', mode: 0 }],
      'unknown type flag': [{ name: 'top/a', data: 'x' }, { name: 'top/z', type: 'Z', data: 'zz' }],
      contiguous: [{ name: 'top/z', type: '7', data: 'zz', mode: 0o755 }],
      'regular with trailing slash': [{ name: 'top/a', data: 'x' }, { name: 'top/d/', data: '' }],
      'regular with trailing slash and data': [{ name: 'top/a', data: 'x' }, { name: 'top/d/', data: 'data' }],
      'directory with data': [{ name: 'top/d', type: 'dir', data: 'junkjunk' }, { name: 'top/a', data: 'x' }],
      'dot as a file': [{ name: 'top/a', data: 'x' }, { name: '.', data: 'zz' }],
      'only ./': [{ name: './', type: 'dir' }],
      'single file in ./': [{ name: './x', data: 'x' }],
      'names with dots': [{ name: 'top/a..b', data: 'x' }, { name: 'top/..c', data: 'x' }, { name: 'top/...', data: 'x' }],
      'trailing dotdot': [{ name: 'top/a', data: 'x' }, { name: 'top/d/..', type: 'dir' }],
      'symlink targets kept verbatim': [{ name: 'top/s', type: 'symlink', linkname: '../../etc/passwd' }, { name: 'top/t', type: 'symlink', linkname: '/etc/passwd' }],
      'non-UTF-8 names': [{ name: Buffer.from([0x74, 0x6f, 0x70, 0x2f, 0xff, 0xfe]), data: 'raw' }, { name: 'top/ok', data: 'ok' }],
      empty: [],
    };
    const summary: string[] = [];
    for (const [label, members] of Object.entries(cases)) {
      const gz = label.length % 2 === 0;
      const raw = craftTar(members, { format: label.includes('long') ? 'pax' : 'gnu' });
      const theirs = await compare(writeArchive(gz ? gzipSync(raw) : raw, gz ? 'tar.gz' : 'tar'), `crafted: ${label}`);
      summary.push(`${label}: ${theirs.ok ? 'hash' : 'refused'}`);
    }
    console.log(`hostile archives vs nix-prefetch-url: ${summary.join('; ')}`);
    expect(mismatches).toEqual([]);
  });

  it(`${FUZZ_COUNT} random member sequences (duplicates, links, devices, odd paths)`, async () => {
    const rng = new Prng(SEED);
    const components = ['a', 'b', 'd', 's', 'é', 'h'];
    // Tidy archives keep directory names and leaf names apart (so more of them unpack and their
    // hashes get compared); chaotic ones draw both from one small set (so names collide).
    const directoryNames = ['d', 'ü', 'sub'];
    const leafNames = ['a', 'b', 'é', 'h', 'x'];
    let chaotic = true;
    const randomPath = (leaf = true): string => {
      const depth = rng.int(1, 3);
      const parts = Array.from({ length: depth }, (_, index) =>
        chaotic ? rng.pick(components) : rng.pick(index === depth - 1 && leaf ? leafNames : directoryNames),
      );
      let text = (rng.chance(0.9) ? ['top', ...parts] : parts).join(rng.chance(0.1) ? '//' : '/');
      if (rng.chance(0.1)) text = `./${text}`;
      if (rng.chance(0.05)) text = `/${text}`;
      if (rng.chance(0.02)) text = text.replace('/', '/../');
      return text;
    };
    let succeeded = 0;
    for (let archiveIndex = 0; archiveIndex < FUZZ_COUNT; archiveIndex++) {
      const members: CraftedMember[] = [];
      const count = rng.int(1, 10);
      chaotic = rng.chance(0.5);
      for (let index = 0; index < count; index++) {
        const kind = rng.float();
        const name = randomPath(kind < 0.45 || kind >= 0.65);
        const mode = rng.pick([0o644, 0o755, 0o600, 0o100, 0o611, 0o700]);
        if (kind < 0.45) members.push({ name, data: rng.bytes(rng.int(0, 2000)), mode });
        else if (kind < 0.65) members.push({ name: rng.chance(0.3) ? `${name}/` : name, type: 'dir', mode });
        else if (kind < 0.75) members.push({ name, type: 'symlink', linkname: rng.pick(['a', '../b', '/etc', 'd/a', 'é']) });
        else if (kind < 0.92) {
          const earlierFiles = members.filter((member) => member.type === undefined);
          const target = earlierFiles.length > 0 && rng.chance(0.85) ? (rng.pick(earlierFiles).name as string) : randomPath();
          members.push({ name, type: 'hardlink', linkname: target, mode });
        } else if (kind < 0.95) members.push({ name, type: rng.pick(['fifo', 'chr']) });
        else members.push({ name, type: rng.pick(['7', 'Z']), data: 'odd type' });
      }
      const raw = craftTar(members, { format: rng.pick(['gnu', 'pax']) });
      const gz = rng.chance(0.5);
      const theirs = await compare(writeArchive(gz ? gzipSync(raw) : raw, gz ? 'tar.gz' : 'tar'), `fuzz archive ${archiveIndex} (seed ${SEED})`);
      if (theirs.ok) succeeded += 1;
    }
    console.log(`fuzz: ${FUZZ_COUNT} random archives, nix unpacked ${succeeded} and refused ${FUZZ_COUNT - succeeded}; ${mismatches.length} mismatches`);
    expect(mismatches).toEqual([]);
  });

  it('store path of `--name source` equals makeFixedOutputPath, and xz/zstd are refused (divergence: Nix accepts them)', async () => {
    const tree = path.join(base, 'fixed');
    buildSampleTree(path.join(tree, 'pkg-1.0'), { longNames: false });
    const file = path.join(base, 'archives', 'fixed.tar.gz');
    runSync('tar', ['-C', tree, '-czf', file, 'pkg-1.0']);
    const { outcome, stdout } = await nixPrefetch(file, ['--print-path', '--name', 'source', '--type', 'sha256']);
    expect(outcome.ok).toBe(true);
    const result = await hashTarballNar(createReadStream(file), { topLevelRule: 'fetchTarball' });
    expect(formatHash(result.narHash, 'nix32')).toBe(outcome.ok ? outcome.nix32 : '');
    expect(stdout.trim().split('\n')[1]).toBe(makeFixedOutputPath({ name: 'source', recursive: true, narHash: result.narHash }));

    for (const [tool, extension] of [['xz', 'xz'], ['zstd', 'zst']] as const) {
      const compressed = path.join(base, 'archives', `fixed.tar.${extension}`);
      runSync('sh', ['-c', `gzip -dc '${file}' | ${tool} -c > '${compressed}'`]);
      const theirs = await nixPrefetch(compressed);
      expect(theirs.outcome).toEqual(outcome);
      await expect(hashTarballNar(createReadStream(compressed))).rejects.toMatchObject({ code: 'PIDEPLOY_ARCHIVE_UNSUPPORTED' });
    }
    console.log(`tarball differential: ${compared} archives compared with nix-prefetch-url --unpack, ${mismatches.length} mismatches`);
  });
});

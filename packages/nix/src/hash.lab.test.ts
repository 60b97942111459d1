import { expect, it } from 'vitest';
import { formatHash, parseHash } from './hash.js';
import { makeFixedOutputPath } from './store-path.js';
import { describeWithNix, run, runOk } from './test-support/nix-cli.js';
import { Prng } from './test-support/prng.js';

/*
 * Differential test: hash encodings and fixed-output store paths against the real Nix 2.8
 * (`nix hash to-base32/to-base16/to-base64/to-sri --type sha256`, `nix-store --print-fixed-path`).
 */

const SEED = Number(process.env['PIDEPLOY_HASH_SEED'] ?? 4242);

async function nixHash(command: string, inputs: readonly string[]): Promise<string[]> {
  const lines: string[] = [];
  for (let start = 0; start < inputs.length; start += 200) {
    const output = await runOk('nix', ['hash', command, '--type', 'sha256', ...inputs.slice(start, start + 200)]);
    lines.push(...output.trim().split('\n'));
  }
  return lines;
}

describeWithNix('hash encodings and store paths vs nix hash / nix-store --print-fixed-path', () => {
  const rng = new Prng(SEED);
  const digests = Array.from({ length: 600 }, (_, index) => {
    if (index === 0) return Buffer.alloc(32);
    if (index === 1) return Buffer.alloc(32, 0xff);
    if (index < 34) {
      const single = Buffer.alloc(32);
      single[index - 2] = 1 << (index % 8);
      return single;
    }
    return rng.bytes(32);
  });

  it('formatHash matches nix hash to-base32 / to-sri / to-base16 / to-base64 on 600 digests', async () => {
    const hex = digests.map((digest) => digest.toString('hex'));
    const nix32 = await nixHash('to-base32', hex);
    const sri = await nixHash('to-sri', nix32);
    const base16 = await nixHash('to-base16', sri);
    const base64 = await nixHash('to-base64', hex.map((text) => text.toUpperCase()));
    const wrong: string[] = [];
    digests.forEach((digest, index) => {
      const expected = { nix32: nix32[index], sri: sri[index], hex: base16[index], base64: base64[index] };
      const actual = { nix32: formatHash(digest, 'nix32'), sri: formatHash(digest, 'sri'), hex: formatHash(digest, 'hex'), base64: formatHash(digest, 'base64') };
      if (JSON.stringify(actual) !== JSON.stringify(expected)) wrong.push(`${digest.toString('hex')}: ${JSON.stringify(actual)} vs nix ${JSON.stringify(expected)}`);
      for (const text of Object.values(expected)) {
        if (!parseHash(text as string, { expectedAlgorithm: 'sha256' }).digest.equals(digest)) wrong.push(`parseHash('${text}')`);
      }
    });
    console.log(`hash encodings: ${digests.length} digests x 4 encodings compared with nix hash, ${wrong.length} mismatches`);
    expect(wrong).toEqual([]);
  });

  it('parseHash refuses what nix refuses, and accepts what it accepts', async () => {
    const valid = formatHash(digests[5] as Buffer, 'nix32');
    const candidates = [
      `2${valid.slice(1)}`,
      `z${valid.slice(1)}`,
      `${valid.slice(0, 10)}e${valid.slice(11)}`,
      `${valid.slice(0, 10)}t${valid.slice(11)}`,
      valid.toUpperCase(),
      valid.slice(1),
      `${valid}0`,
      `sha256:${valid}`,
      `sha256:${formatHash(digests[5] as Buffer, 'hex').toUpperCase()}`,
      `sha256:${'g'.repeat(64)}`,
      `sha512:${valid}`,
      formatHash(digests[5] as Buffer, 'sri'),
      formatHash(digests[5] as Buffer, 'sri').replace(/=$/u, ''),
      `sha256-${Buffer.alloc(31).toString('base64')}`,
      `md5-${Buffer.alloc(16).toString('base64')}`,
      formatHash(digests[5] as Buffer, 'base64'),
    ];
    const disagreements: string[] = [];
    for (const candidate of candidates) {
      const theirs = await run('nix', ['hash', 'to-base16', '--type', 'sha256', candidate]);
      let oursOk = true;
      try {
        parseHash(candidate, { expectedAlgorithm: 'sha256' });
      } catch {
        oursOk = false;
      }
      if ((theirs.exitCode === 0) !== oursOk) disagreements.push(`${candidate}: nix ${theirs.exitCode === 0 ? 'accepts' : 'refuses'}, ours ${oursOk ? 'accepts' : 'refuses'}`);
    }
    expect(disagreements).toEqual([]);
  });

  it('makeFixedOutputPath matches nix-store --print-fixed-path (recursive and flat)', async () => {
    const names = ['source', 'x.tar.gz', 'nixpkgs-src', 'a', 'A+b-c.d_e?f=g', 'x'.repeat(211), '.hidden', '_-'];
    const wrong: string[] = [];
    for (let index = 0; index < 40; index++) {
      const digest = digests[100 + index] as Buffer;
      const name = names[index % names.length] as string;
      const recursive = index % 3 !== 2;
      const hashText = index % 2 === 0 ? formatHash(digest, 'nix32') : formatHash(digest, 'hex');
      const theirs = (await runOk('nix-store', ['--print-fixed-path', ...(recursive ? ['--recursive'] : []), 'sha256', hashText, name])).trim();
      const mine = recursive
        ? makeFixedOutputPath({ name, recursive: true, narHash: digest })
        : makeFixedOutputPath({ name, recursive: false, fileHash: hashText });
      if (mine !== theirs) wrong.push(`${recursive ? 'recursive' : 'flat'} ${hashText} ${name}: ${mine} vs ${theirs}`);
    }
    expect(wrong).toEqual([]);
  });
});

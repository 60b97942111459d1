import { describe, expect, it } from 'vitest';
import { parseCommitObject, parseRefListing, resolveRefName, tarballCacheName } from './repository.js';

const A = 'a'.repeat(40);
const B = 'b'.repeat(40);
const T = 'c'.repeat(40);

describe('parseRefListing', () => {
  it('reads branches and tags, peeling annotated tags', () => {
    const refs = parseRefListing(`refs/heads/main ${A} \nrefs/heads/feature/x ${B} \nrefs/tags/v1 ${T} ${A}\nrefs/tags/light ${B} \n\n`);
    expect(Object.fromEntries(refs.branches)).toEqual({ main: A, 'feature/x': B });
    expect(Object.fromEntries(refs.tags)).toEqual({ v1: A, light: B });
  });
});

describe('resolveRefName', () => {
  const refs = parseRefListing(`refs/heads/main ${A} \nrefs/heads/both ${A} \nrefs/tags/both ${T} ${B}\nrefs/tags/24.05 ${T} ${B}\nrefs/heads/abcd ${B} \n`);
  it('resolves qualified and short names, branches before tags', () => {
    expect(resolveRefName('refs/heads/main', refs)).toEqual({ kind: 'branch', name: 'main', sha: A });
    expect(resolveRefName('refs/tags/both', refs)).toEqual({ kind: 'tag', name: 'both', sha: B });
    expect(resolveRefName('both', refs)).toEqual({ kind: 'branch', name: 'both', sha: A });
    expect(resolveRefName('24.05', refs)).toEqual({ kind: 'tag', name: '24.05', sha: B });
    expect(resolveRefName('refs/heads/24.05', refs)).toEqual({ kind: 'unknown' });
  });
  it('treats hex as a SHA prefix when no ref has that name; a full SHA always', () => {
    expect(resolveRefName('ABCDEF1', refs)).toEqual({ kind: 'sha-prefix', prefix: 'abcdef1' });
    expect(resolveRefName('abcd', refs)).toEqual({ kind: 'branch', name: 'abcd', sha: B });
    expect(resolveRefName(A, parseRefListing(`refs/heads/${A} ${B} \n`))).toEqual({ kind: 'sha-prefix', prefix: A });
    expect(resolveRefName('abc', refs)).toEqual({ kind: 'unknown' });
    expect(resolveRefName('nope', refs)).toEqual({ kind: 'unknown' });
  });
});

describe('parseCommitObject', () => {
  it('reads tree, parents, people with UTC dates and the message', () => {
    const raw = [
      `tree ${T}`,
      `parent ${A}`,
      'author pideploy lab <lab@pideploy.invalid> 1704067200 +0000',
      'committer Some One <one@example.org> 1704070800 +0200',
      '',
      'mini-nixpkgs 24.05-lab',
      '',
      'second paragraph',
      '',
    ].join('\n');
    expect(parseCommitObject(B, raw)).toEqual({
      sha: B,
      tree: T,
      parents: [A],
      author: { name: 'pideploy lab', email: 'lab@pideploy.invalid', date: '2024-01-01T00:00:00Z' },
      committer: { name: 'Some One', email: 'one@example.org', date: '2024-01-01T01:00:00Z' },
      message: 'mini-nixpkgs 24.05-lab\n\nsecond paragraph',
    });
  });
  it('refuses garbage', () => {
    expect(() => parseCommitObject(A, 'hello')).toThrow(`commit ${A} could not be parsed`);
  });
});

describe('tarballCacheName', () => {
  it('keys by sha and top-level directory, with a safe file name', () => {
    expect(tarballCacheName(A, 'r-main')).toMatch(new RegExp(`^${A}-[0-9a-f]{16}\\.tar\\.gz$`, 'u'));
    expect(tarballCacheName(A, 'r-main')).toBe(tarballCacheName(A, 'r-main'));
    expect(tarballCacheName(A, 'r-main')).not.toBe(tarballCacheName(A, `r-${A}`));
  });
});

import { mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import {
  GITHUB_RATE_LIMIT_MESSAGE,
  faultFiles,
  faultMatches,
  githubRateLimitFault,
  parseFaultRules,
  selectFault,
  takeFault,
  writeFaultRules,
  type FaultRule,
} from './faults.js';

describe('parseFaultRules', () => {
  it('accepts every documented property', () => {
    const text = JSON.stringify([
      { match: '/repos/', status: 403, headers: { 'x-ratelimit-remaining': '0' }, body: '{}', times: 2 },
      { match: '^/codeload/.*/tar\\.gz/', truncateAfterBytes: 100, delayMs: 10, method: 'GET' },
    ]);
    expect(parseFaultRules(text)).toHaveLength(2);
  });
  it.each([
    ['{', 'faults.json is not JSON'],
    ['{}', 'faults.json must hold a JSON array of rules'],
    ['[1]', 'faults.json rule 0: is not an object'],
    ['[{"match":""}]', 'faults.json rule 0: "match" must be a non-empty string'],
    ['[{"match":"^("}]', 'faults.json rule 0: "match" is not a valid regular expression'],
    ['[{"match":"/","status":99}]', '"status" must be an HTTP status code'],
    ['[{"match":"/","times":-1}]', '"times" must be a non-negative integer'],
    ['[{"match":"/","delayMs":1.5}]', '"delayMs" must be a non-negative integer'],
    ['[{"match":"/","headers":{"a":1}}]', '"headers" must map names to strings'],
    ['[{"match":"/","status":500},{"match":"/","tims":1}]', 'faults.json rule 1: unknown property "tims"'],
  ])('refuses %s', (text, message) => {
    expect(() => parseFaultRules(text)).toThrow(message);
  });
});

describe('faultMatches and selectFault', () => {
  it('matches path prefixes, ^regexps and methods', () => {
    expect(faultMatches({ match: '/repos/' }, 'GET', '/repos/o/r/commits/main')).toBe(true);
    expect(faultMatches({ match: '/repos/' }, 'GET', '/o/r/archive/main.tar.gz')).toBe(false);
    expect(faultMatches({ match: '^/codeload/[^/]+/nixpkgs/' }, 'GET', '/codeload/NixOS/nixpkgs/tar.gz/main')).toBe(true);
    expect(faultMatches({ match: '^/codeload/[^/]+/nixpkgs/' }, 'GET', '/x/codeload/NixOS/nixpkgs/')).toBe(false);
    expect(faultMatches({ match: '^.*\\?service=' }, 'GET', '/o/r.git/info/refs?service=git-upload-pack')).toBe(true);
    expect(faultMatches({ match: '/', method: 'head' }, 'GET', '/x')).toBe(false);
    expect(faultMatches({ match: '/', method: 'head' }, 'HEAD', '/x')).toBe(true);
  });

  it('takes the first matching rule that has times left', () => {
    const rules: FaultRule[] = [{ match: '/a', status: 500, times: 2 }, { match: '/a', status: 503 }, { match: '/b', status: 404, times: 0 }];
    expect(selectFault(rules, [], 'GET', '/a')).toBe(0);
    expect(selectFault(rules, [1], 'GET', '/a')).toBe(0);
    expect(selectFault(rules, [2], 'GET', '/a')).toBe(1);
    expect(selectFault(rules, [], 'GET', '/b')).toBeUndefined();
    expect(selectFault(rules, [], 'GET', '/c')).toBeUndefined();
  });
});

describe('takeFault (faults.json and its state file)', () => {
  let root = '';
  afterEach(() => rmSync(root, { recursive: true, force: true }));

  it('counts applications across requests and stops after times; a rewrite starts afresh', () => {
    root = mkdtempSync(path.join(tmpdir(), 'pideploy-faults-'));
    expect(takeFault(root, 'GET', '/repos/o/r')).toEqual({ kind: 'none' });
    writeFaultRules(root, [{ match: '/repos/', status: 500, times: 2 }]);
    expect(takeFault(root, 'GET', '/repos/o/r')).toMatchObject({ kind: 'fault', index: 0 });
    expect(takeFault(root, 'GET', '/o/r.git/HEAD')).toEqual({ kind: 'none' });
    expect(takeFault(root, 'GET', '/repos/o/r')).toMatchObject({ kind: 'fault', index: 0 });
    expect(takeFault(root, 'GET', '/repos/o/r')).toEqual({ kind: 'none' });
    expect(JSON.parse(readFileSync(faultFiles(root).state, 'utf8'))).toMatchObject({ applied: [2] });
    // Same content written again (new mtime): counts start again.
    writeFileSync(faultFiles(root).rules, readFileSync(faultFiles(root).rules));
    utimesSync(faultFiles(root).rules, new Date(), new Date(Date.now() + 5000));
    expect(takeFault(root, 'GET', '/repos/o/r')).toMatchObject({ kind: 'fault', index: 0 });
    writeFaultRules(root, []);
    expect(takeFault(root, 'GET', '/repos/o/r')).toEqual({ kind: 'none' });
  });

  it('reports an invalid faults.json instead of ignoring it', () => {
    root = mkdtempSync(path.join(tmpdir(), 'pideploy-faults-'));
    writeFileSync(faultFiles(root).rules, '[{"match": 1}]');
    expect(takeFault(root, 'GET', '/')).toEqual({ kind: 'invalid', message: 'faults.json rule 0: "match" must be a non-empty string' });
  });
});

describe('githubRateLimitFault', () => {
  it('answers 403 with remaining 0 and GitHub\'s message', () => {
    const rule = githubRateLimitFault({ times: 1, resetEpochSeconds: 1_800_000_000 });
    expect(rule).toMatchObject({ match: '/repos/', status: 403, times: 1, headers: { 'x-ratelimit-remaining': '0', 'x-ratelimit-reset': '1800000000' } });
    expect(JSON.parse(rule.body ?? '')).toMatchObject({ message: GITHUB_RATE_LIMIT_MESSAGE });
    expect(parseFaultRules(JSON.stringify([rule]))).toEqual([rule]);
  });
});

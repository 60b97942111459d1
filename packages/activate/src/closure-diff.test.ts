import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { diffClosures, formatClosureDiff, formatKibDelta, splitStorePathName } from './closure-diff.js';
import { parseGenerationList, previousGeneration } from './generations.js';

const store = (name: string) => `/nix/store/${'a'.repeat(32)}-${name}`;

describe('splitStorePathName', () => {
  it.each([
    ['hello-2.12.1', 'hello', '2.12.1'],
    ['nixos-system-pi-24.05-lab', 'nixos-system-pi', '24.05'],
    ['openssl-3.0.13-bin', 'openssl', '3.0.13'],
    ['glibc-2.39-52-lib64', 'glibc', '2.39-52'],
    ['etc', 'etc', ''],
    ['source', 'source', ''],
    ['man-db-2.12.0-man', 'man-db', '2.12.0'],
    ['python3.11-requests-2.31.0', 'python3.11-requests', '2.31.0'],
    ['foo-unstable-2024-01-01', 'foo-unstable', '2024-01-01'],
  ])('%s → %s %s', (storePathName, name, version) => {
    expect(splitStorePathName(storePathName)).toEqual({ name, version });
  });
});

describe('diffClosures', () => {
  it('reports version changes, additions, removals and size deltas above 8 KiB', () => {
    const before = [
      { path: store('hello-2.12'), narSize: 50_000 },
      { path: store('cowsay-3.7'), narSize: 20_000 },
      { path: store('etc'), narSize: 4_000 },
    ];
    const after = [
      { path: store('hello-2.13'), narSize: 70_000 },
      { path: store('figlet-2.2.5'), narSize: 30_000 },
      { path: `/nix/store/${'b'.repeat(32)}-etc`, narSize: 5_000 },
    ];
    const diff = diffClosures(before, after);
    // The text format itself is checked against real `nix store diff-closures` in the lab test.
    expect(diff.entries).toEqual([
      { name: 'cowsay', removedVersions: ['3.7'], addedVersions: [], sizeDelta: -20_000 },
      { name: 'figlet', removedVersions: [], addedVersions: ['2.2.5'], sizeDelta: 30_000 },
      { name: 'hello', removedVersions: ['2.12'], addedVersions: ['2.13'], sizeDelta: 20_000 },
    ]);
    expect(formatClosureDiff(diff).split('\n')[1]).toBe('figlet: ∅ → 2.2.5, +29.3 KiB');
    expect(diff.sizeDelta).toBe(31_000);
    expect(diff.pathsAdded).toHaveLength(3);
  });

  it('rounds exactly as C printf("%+.1f") does, ties included (checked against the real printf)', () => {
    const samples = [8192, 8243, 8244, 8294, 8755, 8806, 8806 + 1024 * 7, 10_000, 123_456, 1 << 20, -8243, -8806, -99_999];
    for (const bytes of samples) {
      // bytes/1024 is dyadic: its exact decimal expansion has at most 10 fractional digits.
      const exact = `${bytes < 0 ? '-' : ''}${Math.floor(Math.abs(bytes) / 1024)}.${String(((Math.abs(bytes) % 1024) * 9765625)).padStart(10, '0')}`;
      const printf = execFileSync('printf', ['%+.1f KiB', exact], { encoding: 'utf8', env: { LC_ALL: 'C' } });
      expect(formatKibDelta(bytes)).toBe(printf);
    }
  });
});

describe('parseGenerationList', () => {
  it('reads numbers, dates and the current marker, and finds the rollback target', () => {
    const generations = parseGenerationList('   1   2026-11-24 13:24:25   \n   3   2026-11-24 13:25:01   (current)\n');
    expect(generations).toEqual([
      { number: 1, date: '2026-11-24 13:24:25', current: false },
      { number: 3, date: '2026-11-24 13:25:01', current: true },
    ]);
    expect(previousGeneration(generations)?.number).toBe(1);
    expect(previousGeneration(generations.slice(0, 1))).toBeUndefined();
  });

  it('refuses lines it does not understand', () => {
    expect(() => parseGenerationList('error: something\n')).toThrow(/not a nix-env generation line/u);
  });
});

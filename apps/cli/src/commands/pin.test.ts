import { describe, expect, it } from 'vitest';
import { runCli } from '../cli.js';
import { createBufferIo } from '../io.js';
import { describeProgress } from '../render.js';
import { describePinUpdate, pinsDirectory } from './pin.js';

describe('pin command helpers', () => {
  it('finds pins.json next to --config, in --dir, or in the current directory', () => {
    expect(pinsDirectory({}, '/work')).toBe('/work');
    expect(pinsDirectory({ config: 'site/pideploy.json' }, '/work')).toBe('/work/site');
    expect(pinsDirectory({ dir: '../other', config: 'site/pideploy.json' }, '/work/a')).toBe('/work/other');
  });

  it('draws a download progress line (download-progress events, rendered in render.ts)', () => {
    const line = (progress: { bytesReceived: number; bytesTotal: number | undefined; bytesPerSecond: number }) =>
      describeProgress({ type: 'download-progress', url: 'u', done: false, ...progress })?.text;
    expect(line({ bytesReceived: 512 * 1024, bytesTotal: 1024 * 1024, bytesPerSecond: 512 * 1024 })).toBe(
      `downloading [${'█'.repeat(10)}${'░'.repeat(10)}] 512.0 KiB/1.0 MiB 512.0 KiB/s ETA 1.0 s`,
    );
    expect(line({ bytesReceived: 100, bytesTotal: undefined, bytesPerSecond: 0 })).toBe('downloading 100 B 0 B/s');
  });

  it('shows old → new rev, or unchanged', () => {
    const a = 'a'.repeat(40);
    const b = 'b'.repeat(40);
    const base = { name: 'nixpkgs', oldSha256: 'x', newSha256: 'y', pin: undefined as never };
    expect(describePinUpdate({ ...base, changed: true, oldRev: a, newRev: b })).toBe(`nixpkgs: ${a} → ${b}`);
    expect(describePinUpdate({ ...base, changed: false, oldRev: a, newRev: a })).toBe(`nixpkgs: unchanged at ${a}`);
    expect(describePinUpdate({ ...base, changed: true, oldRev: undefined, newRev: undefined })).toBe('nixpkgs: sha256:x → sha256:y');
  });

  it('refuses bad pin add arguments with exit 2 before touching the network', async () => {
    for (const argv of [
      ['pin', 'add'],
      ['pin', 'add', 'nixpkgs'],
      ['pin', 'add', 'nixpkgs', '--github', 'NixOS/nixpkgs'],
      ['pin', 'add', 'nixpkgs', '--github', 'NixOS/nixpkgs', '--branch', 'a', '--tag', 'b'],
      ['pin', 'add', 'bad.name', '--url', 'https://example.invalid/x.tar.gz'],
      ['pin', 'hash'],
    ]) {
      const io = createBufferIo({ cwd: '/nonexistent-pideploy-dir' });
      expect(await runCli(argv, io), argv.join(' ')).toBe(2);
      expect(io.err()).toMatch(/^pideploy: .*\nhint: .*\n$/u);
    }
  });
});

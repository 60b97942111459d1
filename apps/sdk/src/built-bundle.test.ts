import { mkdirSync, mkdtempSync, symlinkSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { builtBundleOf, readBundleToplevel } from './built-bundle.js';

describe('builtBundleOf', () => {
  it("reads the bundle a build rooted for a host, and the system in it (its toplevel link's target)", () => {
    const project = mkdtempSync(path.join(os.tmpdir(), 'pideploy-built-'));
    expect(builtBundleOf({ directory: project }, 'pi1')).toBeUndefined();
    // As a build leaves it: .pideploy/gcroots/pi1-bundle → the bundle, whose toplevel → the system.
    const bundle = mkdtempSync(path.join(os.tmpdir(), 'pideploy-bundle-pi1-'));
    symlinkSync('/nix/store/00000000000000000000000000000000-nixos-system-pi1', path.join(bundle, 'toplevel'));
    mkdirSync(path.join(project, '.pideploy', 'gcroots'), { recursive: true });
    symlinkSync(bundle, path.join(project, '.pideploy', 'gcroots', 'pi1-bundle'));
    expect(builtBundleOf({ directory: project }, 'pi1')).toEqual({
      bundle,
      toplevel: '/nix/store/00000000000000000000000000000000-nixos-system-pi1',
      gcRoot: path.join(project, '.pideploy', 'gcroots', 'pi1-bundle'),
    });
    expect(builtBundleOf({ directory: project }, 'pi2')).toBeUndefined();
  });

  it('resolves a relative toplevel link against the bundle, and fails on a directory without one', () => {
    const bundle = mkdtempSync(path.join(os.tmpdir(), 'pideploy-bundle-'));
    symlinkSync('system', path.join(bundle, 'toplevel'));
    expect(readBundleToplevel(bundle)).toBe(path.join(bundle, 'system'));
    expect(() => readBundleToplevel(mkdtempSync(path.join(os.tmpdir(), 'pideploy-not-bundle-')))).toThrow(/ENOENT/u);
  });
});

import { describe, expect, it } from 'vitest';
import { parseRemoteBuilder } from '@pideploy/build';
import { toplevelBuildKey } from './build-hosts.js';

describe('toplevelBuildKey', () => {
  const pi1 = { name: 'pi1', configuration: '/p/configuration.nix', system: 'aarch64-linux', buildMode: 'emulated' as const };

  it('is the same for hosts that differ only by name (their system is built once)', () => {
    expect(toplevelBuildKey({ ...pi1, name: 'pi2' })).toBe(toplevelBuildKey(pi1));
  });

  it('treats a builders string and its parsed form alike (a trailing ; included)', () => {
    const spec = 'ssh://root@builder aarch64-linux';
    const fromString = toplevelBuildKey({ ...pi1, buildMode: 'builders', builders: spec });
    expect(toplevelBuildKey({ ...pi1, buildMode: 'builders', builders: [parseRemoteBuilder(spec)] })).toBe(fromString);
    expect(toplevelBuildKey({ ...pi1, buildMode: 'builders', builders: `${spec};` })).toBe(fromString);
  });

  it('differs when the configuration, nixpkgs pin, system, mode or builders differ', () => {
    const keys = new Set([
      toplevelBuildKey(pi1),
      toplevelBuildKey({ ...pi1, nixpkgs: 'nixpkgs-next' }),
      toplevelBuildKey({ ...pi1, configuration: '/p/kiosk.nix' }),
      toplevelBuildKey({ ...pi1, system: 'x86_64-linux' }),
      toplevelBuildKey({ ...pi1, buildMode: 'cross' }),
      toplevelBuildKey({ ...pi1, buildMode: 'builders', builders: 'ssh://root@a aarch64-linux' }),
      toplevelBuildKey({ ...pi1, buildMode: 'builders', builders: 'ssh://root@b aarch64-linux' }),
    ]);
    expect(keys.size).toBe(7);
    // No pin named is the default one, nixpkgs.
    expect(toplevelBuildKey({ ...pi1, nixpkgs: 'nixpkgs' })).toBe(toplevelBuildKey(pi1));
  });
});

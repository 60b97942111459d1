import { describe, expect, it } from 'vitest';
import { defaultCacheKeyName } from './fleet-cache.js';

describe('defaultCacheKeyName', () => {
  it('names the key after this machine with only the characters Nix key names allow', () => {
    expect(defaultCacheKeyName('build-box')).toBe('pideploy-build-box-1');
    expect(defaultCacheKeyName('my box/ü')).toBe('pideploy-my-box---1');
    expect(defaultCacheKeyName('---')).toBe('pideploy-deployer-1');
    expect(defaultCacheKeyName('')).toBe('pideploy-deployer-1');
  });
});

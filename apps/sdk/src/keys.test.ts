import { describe, expect, it } from 'vitest';
import { staleKeysOnHost } from './keys.js';

describe('staleKeysOnHost', () => {
  it("lists the host's recorded key files pideploy.json no longer wants; lines that are no key's path are never removed", () => {
    const recorded = ['/run/keys/wifi.psk', '/etc/secrets/token', '/etc/secrets/../shadow', 'relative/token', '/etc/secrets/', '/etc/secrets/.hidden', '/srv/old-key'];
    expect(staleKeysOnHost(recorded, new Set(['/run/keys/wifi.psk']))).toEqual(['/etc/secrets/token', '/srv/old-key']);
    expect(staleKeysOnHost(undefined, new Set())).toEqual([]);
  });
});

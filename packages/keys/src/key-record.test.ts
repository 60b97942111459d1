import { describe, expect, it } from 'vitest';
import { KEY_RECORD_BOOT_PREFIX } from './key-installer.js';
import { keyFilesGoneSinceBoot, parseKeyRecord } from './key-record.js';

describe('parseKeyRecord / keyFilesGoneSinceBoot', () => {
  const lines = [`${KEY_RECORD_BOOT_PREFIX}8a1c4e0e-0f7c-4b7b-9a53-0d6f3f1e2a11`, '/run/keys/wifi.psk', '/var/lib/secrets/token', 'not a key file', '/run/keys/'];

  it('reads the boot the record was written in and its key files (other lines left out)', () => {
    expect(parseKeyRecord(lines)).toEqual({ bootId: '8a1c4e0e-0f7c-4b7b-9a53-0d6f3f1e2a11', files: ['/run/keys/wifi.psk', '/var/lib/secrets/token'] });
    // An older pideploy's record has no boot line; no record at all is an empty one.
    expect(parseKeyRecord(lines.slice(1))).toEqual({ bootId: undefined, files: ['/run/keys/wifi.psk', '/var/lib/secrets/token'] });
    expect(parseKeyRecord(undefined)).toEqual({ bootId: undefined, files: [] });
  });

  it('calls the files under /run gone once the host booted again, and only then', () => {
    const record = parseKeyRecord(lines);
    expect(keyFilesGoneSinceBoot(record, 'another-boot')).toEqual(['/run/keys/wifi.psk']);
    expect(keyFilesGoneSinceBoot(record, '8a1c4e0e-0f7c-4b7b-9a53-0d6f3f1e2a11')).toEqual([]);
    expect(keyFilesGoneSinceBoot(record, undefined)).toEqual([]);
    expect(keyFilesGoneSinceBoot(parseKeyRecord(lines.slice(1)), 'another-boot')).toEqual([]);
  });
});

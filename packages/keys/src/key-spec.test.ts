import { createBaseContext } from '@pideploy/core';
import type { SudoRunner } from '@pideploy/ssh';
import { describe, expect, it } from 'vitest';
import { isKeyFilePath } from './key-spec.js';
import { uploadKeys } from './upload-keys.js';

describe('isKeyFilePath', () => {
  it('is an absolute, normal path ending in a key name: what a key file to remove must be', () => {
    expect(['/run/keys/wifi.psk', '/etc/secrets/token', '/srv/a@b+c'].filter(isKeyFilePath)).toHaveLength(3);
    for (const file of ['relative/token', '/etc/secrets/', '/etc/secrets/../shadow', '/etc//secrets/token', '/etc/secrets/.hidden', '/']) {
      expect([file, isKeyFilePath(file)]).toEqual([file, false]);
    }
  });

  it('uploadKeys refuses such a path to remove before the host is touched', async () => {
    let ran = 0;
    const sudo = { exec: async () => (ran += 1, { exitCode: 0, stdout: '', stderr: '', signal: null }) } as unknown as SudoRunner;
    await expect(uploadKeys({ host: 'pi1', sudo, keys: [], remove: ['/etc/secrets/'] }, createBaseContext())).rejects.toMatchObject({
      code: 'PIDEPLOY_KEY_INVALID',
      message: 'pi1: "/etc/secrets/" is not the path of a key to remove',
    });
    expect(ran).toBe(0);
  });
});

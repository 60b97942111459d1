import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PideployError } from '@pideploy/core';
import { loadConfig, recordDeployResult } from '@pideploy/sdk';
import { describe, expect, it } from 'vitest';
import { runCli } from '../cli.js';
import { createBufferIo } from '../io.js';

describe('pideploy hosts', () => {
  const project = mkdtempSync(path.join(os.tmpdir(), 'pideploy-cli-hosts-'));
  writeFileSync(path.join(project, 'psk'), 'x\n');
  writeFileSync(
    path.join(project, 'pideploy.json'),
    JSON.stringify({
      defaults: { system: 'aarch64-linux' },
      hosts: {
        pi1: { target: 'deploy@pi1.local', configuration: './configuration.nix', tags: ['fleet', 'canary'], keys: { wifi: { file: 'psk' } } },
        pi2: { target: 'deploy@pi2.local', configuration: './kiosk/configuration.nix', tags: ['fleet'], buildMode: 'cross', specialisation: 'kiosk' },
        spare: { target: 'root@192.0.2.1', configuration: './configuration.nix', sudo: 'root', nixpkgs: 'nixpkgs-next' },
      },
    }),
  );
  const hosts = async (...args: string[]) => {
    const io = createBufferIo({ cwd: project });
    return { code: await runCli(['hosts', ...args], io), out: io.out(), err: io.err() };
  };

  it('lists the selected hosts with their last deployment from this project, connecting to nothing', async () => {
    const config = await loadConfig({ cwd: project });
    await recordDeployResult(
      config,
      {
        version: 1,
        ok: false,
        results: [
          { host: 'pi1', ok: true, phases: [] },
          { host: 'pi2', ok: false, error: new PideployError({ code: 'PIDEPLOY_SSH_UNREACHABLE', message: 'down' }), phases: [] },
        ],
      },
      'switch',
      new Date('2026-12-07T10:00:00Z'),
    );
    const all = await hosts();
    expect(all.code).toBe(0);
    expect(all.out).toBe(
      [
        'host   target            system                      tags          configuration                                   last deployment (UTC)',
        'pi1    deploy@pi1.local  aarch64-linux               fleet,canary  configuration.nix                               switch ok 2026-12-07 10:00',
        'pi2    deploy@pi2.local  aarch64-linux (cross)       fleet         kiosk/configuration.nix (specialisation kiosk)  switch FAILED PIDEPLOY_SSH_UNREACHABLE 2026-12-07 10:00',
        'spare  root@192.0.2.1    aarch64-linux nixpkgs-next  -             configuration.nix                               -',
        '',
      ].join('\n'),
    );
    const canary = await hosts('--on', '@canary', '--json');
    const listed = (JSON.parse(canary.out.trim()) as { result: { hosts: { name: string; keys: string[]; sudo: string; lastDeployment?: { ok: boolean } }[] } }).result.hosts;
    expect(listed).toEqual([expect.objectContaining({ name: 'pi1', keys: ['wifi'], sudo: 'password', lastDeployment: expect.objectContaining({ ok: true }) })]);
  });

  it('says what is wrong with a selection that names no host (and lists the tags)', async () => {
    expect(await hosts('@kiosk')).toMatchObject({ code: 1, err: expect.stringMatching(/^pideploy: no host has the tag "kiosk" in .*\nhint: tags: @fleet, @canary\n$/u) });
  });
});

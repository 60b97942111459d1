import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PideployError } from '@pideploy/core';
import { describe, expect, it } from 'vitest';
import type { ResolvedHost } from './config.js';
import { deployRecordFile, hostsThatFailed, readDeployRecord, readDeployRecordOrEmpty, recordDeployResult, recordInstalledKeys, staleKeyPaths } from './deploy-record.js';
import type { DeployResult } from './deploy.js';

const project = () => ({ directory: mkdtempSync(path.join(os.tmpdir(), 'pideploy-record-')) });
const hosts = ['pi1', 'pi2', 'pi3'].map((name) => ({ name }) as unknown as ResolvedHost);

describe('the record of deployments', () => {
  it('is empty before the first deployment', async () => {
    expect(await readDeployRecord(project())).toEqual({ version: 1, hosts: {} });
  });

  it("keeps each host's last outcome; a later deployment of some hosts leaves the others' alone", async () => {
    const config = project();
    const first: DeployResult = {
      version: 1,
      ok: false,
      results: [
        { host: 'pi1', ok: true, bundle: '/nix/store/aaaa-bundle', phases: [] },
        { host: 'pi2', ok: false, error: new PideployError({ code: 'PIDEPLOY_SSH_UNREACHABLE', message: 'down' }), phases: [] },
        { host: 'pi3', ok: false, error: new PideployError({ code: 'PIDEPLOY_HOST_NOT_STARTED', message: 'held back' }), phases: [] },
      ],
    };
    await recordDeployResult(config, first, 'switch', new Date('2026-12-07T10:00:00Z'));
    expect(await readDeployRecord(config)).toEqual({
      version: 1,
      hosts: {
        pi1: { ok: true, at: '2026-12-07T10:00:00.000Z', action: 'switch', bundle: '/nix/store/aaaa-bundle' },
        pi2: { ok: false, at: '2026-12-07T10:00:00.000Z', action: 'switch', code: 'PIDEPLOY_SSH_UNREACHABLE' },
        pi3: { ok: false, at: '2026-12-07T10:00:00.000Z', action: 'switch', code: 'PIDEPLOY_HOST_NOT_STARTED' },
      },
    });
    expect(hostsThatFailed(await readDeployRecord(config), hosts).map((host) => host.name)).toEqual(['pi2', 'pi3']);

    await recordDeployResult(config, { version: 1, ok: true, results: [{ host: 'pi2', ok: true, phases: [] }] }, 'boot', new Date('2026-12-07T11:00:00Z'));
    const record = await readDeployRecord(config);
    expect(record.hosts['pi2']).toEqual({ ok: true, at: '2026-12-07T11:00:00.000Z', action: 'boot' });
    expect(record.hosts['pi3']?.code).toBe('PIDEPLOY_HOST_NOT_STARTED');
    expect(hostsThatFailed(record, hosts).map((host) => host.name)).toEqual(['pi3']);
    // Renamed into place: no temp file left beside it.
    expect(readdirSync(path.dirname(deployRecordFile(config))).sort()).toEqual(['.gitignore', 'deployments.json']);
  });

  it('keeps the key files each host has: installed ones added, removed ones dropped; what pideploy.json no longer names is stale', async () => {
    const config = project();
    const installed = (name: string, file: string) => ({ name, path: file, changed: true });
    await recordDeployResult(config, { version: 1, ok: true, results: [{ host: 'pi1', ok: true, phases: [], keys: [installed('wifi', '/run/keys/wifi'), installed('token', '/srv/token')] }] }, 'switch');
    expect((await readDeployRecord(config)).hosts['pi1']?.keys).toEqual(['/run/keys/wifi', '/srv/token']);
    // upload-keys adds to it without touching the outcome; a host it never saw gets one of its own.
    await recordInstalledKeys(config, new Map([['pi1', ['/run/keys/extra']], ['pi2', ['/run/keys/wifi']]]), new Date('2026-12-07T12:00:00Z'));
    let record = await readDeployRecord(config);
    expect(record.hosts['pi1']).toMatchObject({ ok: true, action: 'switch', keys: ['/run/keys/extra', '/run/keys/wifi', '/srv/token'] });
    expect(record.hosts['pi2']).toEqual({ ok: true, at: '2026-12-07T12:00:00.000Z', action: 'upload-keys', keys: ['/run/keys/wifi'] });

    const withKeys = (name: string, ...keys: { name: string; destDir: string }[]) => ({ name, tags: [], keys }) as unknown as ResolvedHost;
    const stale = staleKeyPaths(record, [withKeys('pi1', { name: 'wifi', destDir: '/run/keys' }), withKeys('pi2', { name: 'wifi', destDir: '/run/keys' }), withKeys('pi3')]);
    expect([...stale]).toEqual([['pi1', ['/run/keys/extra', '/srv/token']]]);

    // A deploy that removed them: gone from the record; a failed host keeps what it had.
    await recordDeployResult(
      config,
      {
        version: 1,
        ok: false,
        results: [
          { host: 'pi1', ok: true, phases: [], keys: [{ name: 'wifi', path: '/run/keys/wifi', changed: false }], keysRemoved: [{ path: '/run/keys/extra', outcome: 'removed' }, { path: '/srv/token', outcome: 'absent' }] },
          { host: 'pi2', ok: false, phases: [], error: new PideployError({ code: 'PIDEPLOY_SSH_UNREACHABLE', message: 'down' }) },
        ],
      },
      'switch',
    );
    record = await readDeployRecord(config);
    expect(record.hosts['pi1']?.keys).toEqual(['/run/keys/wifi']);
    expect(record.hosts['pi2']?.keys).toEqual(['/run/keys/wifi']);
  });

  it('takes the record lock, so writers finishing at the same moment each add their hosts', async () => {
    const config = project();
    const names = Array.from({ length: 8 }, (_, index) => `pi${index + 1}`);
    // Each reads the record, merges its host and writes it back: without the lock they all read the empty record.
    await Promise.all([
      ...names.slice(0, 6).map((host) => recordDeployResult(config, { version: 1, ok: true, results: [{ host, ok: true, phases: [] }] }, 'switch')),
      recordInstalledKeys(config, new Map([['pi7', ['/run/keys/wifi']], ['pi8', ['/run/keys/token']]])),
    ]);
    const record = await readDeployRecord(config);
    expect(Object.keys(record.hosts).sort()).toEqual(names);
    expect(record.hosts['pi8']?.keys).toEqual(['/run/keys/token']);
    expect(readdirSync(path.dirname(deployRecordFile(config))).filter((name) => name.startsWith('deployments'))).toEqual(['deployments.json']);
  });

  it("takes over a lock whose writer is gone, and waits for a live writer's", async () => {
    const config = project();
    const lock = `${deployRecordFile(config)}.lock`;
    mkdirSync(path.dirname(lock), { recursive: true });
    const gone = spawnSync('true').pid;
    writeFileSync(lock, `${gone}\n`);
    await recordDeployResult(config, { version: 1, ok: true, results: [{ host: 'pi1', ok: true, phases: [] }] }, 'switch');
    expect(existsSync(lock)).toBe(false);

    writeFileSync(lock, `${process.pid}\n`);
    let written = false;
    const waiting = recordDeployResult(config, { version: 1, ok: true, results: [{ host: 'pi2', ok: true, phases: [] }] }, 'switch').then(() => (written = true));
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(written).toBe(false);
    expect(Object.keys((await readDeployRecord(config)).hosts)).toEqual(['pi1']);
    rmSync(lock);
    await waiting;
    expect(Object.keys((await readDeployRecord(config)).hosts).sort()).toEqual(['pi1', 'pi2']);
  });

  it('says how to fix a damaged record', async () => {
    const config = project();
    mkdirSync(path.join(config.directory, '.pideploy'));
    writeFileSync(deployRecordFile(config), '{ "version": 7 }');
    await expect(readDeployRecord(config)).rejects.toMatchObject({ code: 'PIDEPLOY_DEPLOY_RECORD_INVALID', hint: expect.stringContaining('rm ') });
    // Where the record only helps, an empty one stands in, and the caller hears why.
    const heard: unknown[] = [];
    expect(await readDeployRecordOrEmpty(config, (error) => heard.push(error))).toEqual({ version: 1, hosts: {} });
    expect(heard).toEqual([expect.objectContaining({ code: 'PIDEPLOY_DEPLOY_RECORD_INVALID' })]);
    // A deployment still records its outcome over it.
    await recordDeployResult(config, { version: 1, ok: true, results: [{ host: 'pi1', ok: true, phases: [] }] }, 'switch');
    expect((await readDeployRecord(config)).hosts['pi1']?.ok).toBe(true);
  });
});

import { mkdirSync, mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PideployError } from '@pideploy/core';
import { describe, expect, it } from 'vitest';
import type { ResolvedHost } from './config.js';
import { deployRecordFile, hostsThatFailed, readDeployRecord, recordDeployResult } from './deploy-record.js';
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

  it('says how to fix a damaged record', async () => {
    const config = project();
    mkdirSync(path.join(config.directory, '.pideploy'));
    writeFileSync(deployRecordFile(config), '{ "version": 7 }');
    await expect(readDeployRecord(config)).rejects.toMatchObject({ code: 'PIDEPLOY_DEPLOY_RECORD_INVALID', hint: expect.stringContaining('rm ') });
    // A deployment still records its outcome over it.
    await recordDeployResult(config, { version: 1, ok: true, results: [{ host: 'pi1', ok: true, phases: [] }] }, 'switch');
    expect((await readDeployRecord(config)).hosts['pi1']?.ok).toBe(true);
  });
});

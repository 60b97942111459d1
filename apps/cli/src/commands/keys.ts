import { PideployError } from '@pideploy/core';
import { deployRecordFile, loadConfig, readDeployRecordOrEmpty, recordInstalledKeys, selectHosts, staleKeyPaths, uploadKeysToHosts, type UploadKeysResult } from '@pideploy/sdk';
import type { CommandInvocation, CommandResult } from '../command.js';
import { describeHostFailure } from '../render.js';
import { hostSelectors, integerFlag, stringFlag } from '../flags.js';
import { sudoOptions } from '../sudo-password.js';

const UPLOAD_AT = ['pre-activation', 'post-activation'] as const;

/** The per-host summary of an upload (pure). */
export function describeUploadKeysResult(result: UploadKeysResult, dryRun: boolean): string {
  return result.results
    .map((host) => {
      if (!host.ok) return describeHostFailure(host.host, host.error, 'FAILED: ');
      if (dryRun) return `${host.host}: dry run, nothing uploaded`;
      if (host.keys.length === 0) return `${host.host}: no keys`;
      const changed = host.keys.filter((key) => key.changed).map((key) => key.path);
      const unchanged = host.keys.length - changed.length;
      return `${host.host}: ${changed.length === 0 ? 'nothing changed' : `installed ${changed.join(', ')}`}${unchanged > 0 && changed.length > 0 ? `; ${unchanged} unchanged` : ''}`;
    })
    .join('\n');
}

/**
 * `pideploy upload-keys [host…|--on @tag] [--at pre-activation|post-activation] [--parallel N]
 * [--dry-run] [--sudo-password-file F | --sudo-password-stdin]`: puts the hosts' pideploy.json
 * keys in place without deploying (one root command per host, the password asked once per login user).
 */
export async function uploadKeysCommand(invocation: CommandInvocation): Promise<CommandResult> {
  const uploadAt = stringFlag(invocation, 'at');
  if (uploadAt !== undefined && !(UPLOAD_AT as readonly string[]).includes(uploadAt)) {
    throw new PideployError({ code: 'PIDEPLOY_USAGE', message: `--at must be one of ${UPLOAD_AT.join(', ')}, not "${uploadAt}"`, hint: 'pideploy upload-keys pi1 --at post-activation' });
  }
  const config = await loadConfig({ cwd: invocation.io.cwd, configFile: invocation.global.config });
  const hosts = selectHosts(config, hostSelectors(invocation));
  const dryRun = invocation.flags['dry-run'] === true;
  const sudo = dryRun ? {} : await sudoOptions(invocation);
  const result = await uploadKeysToHosts(
    {
      config,
      hosts,
      uploadAt: uploadAt as (typeof UPLOAD_AT)[number] | undefined,
      parallel: integerFlag(invocation, 'parallel', { min: 1 }),
      dryRun,
      acceptNewHostKey: invocation.flags['accept-new-host-key'] === true,
      compress: invocation.flags['compress'] === true,
      sudoPassword: sudo.password,
      sudoPasswordProvider: sudo.passwordProvider,
      env: invocation.io.env,
    },
    invocation.context,
  );
  // What is on each host now, so that a later deploy removes the keys pideploy.json drops.
  const installed = new Map(result.results.map((host) => [host.host, host.keys.map((key) => key.path)] as const));
  const record = dryRun
    ? await readDeployRecordOrEmpty(config)
    : await recordInstalledKeys(config, installed).catch((error: unknown) => {
        invocation.context.reporter.emit({ type: 'log', level: 'warn', message: `could not record the keys in ${deployRecordFile(config)}: ${(error as Error).message}` });
        return readDeployRecordOrEmpty(config);
      });
  // Keys no longer in pideploy.json are removed by a deploy (once the host runs its new system), not here.
  for (const [host, files] of staleKeyPaths(record, hosts)) {
    invocation.context.reporter.emit({ type: 'log', level: 'warn', host, message: `${host} still has keys pideploy.json no longer names: ${files.join(', ')} (the next deploy removes them)` });
  }
  return { value: result, text: describeUploadKeysResult(result, dryRun), exitCode: result.ok ? 0 : 1 };
}

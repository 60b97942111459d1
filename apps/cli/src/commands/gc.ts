import { collectGarbageOnHosts, loadConfig, selectHosts, type CollectGarbageResult } from '@pideploy/sdk';
import type { CommandInvocation, CommandResult } from '../command.js';
import { describeHostFailure, formatBytes } from '../render.js';
import { confirmHosts } from '../confirm.js';
import { hostSelectors, integerFlag } from '../flags.js';
import { sudoOptions } from '../sudo-password.js';

/** The per-host summary of a collection (pure). */
export function describeGarbageResult(result: CollectGarbageResult): string {
  return result.results
    .map((host) => {
      if (!host.ok || host.garbage === undefined) return describeHostFailure(host.host, host.error, 'FAILED: ');
      const { garbage } = host;
      const kept = garbage.keptGenerations.map((generation) => `${generation.number} (${generation.because.join(', ')})`).join(', ');
      const deleted = garbage.deletedGenerations.length === 0 ? 'no generation to delete' : `${garbage.dryRun ? 'would delete' : 'deleted'} generation${garbage.deletedGenerations.length === 1 ? '' : 's'} ${garbage.deletedGenerations.join(', ')}`;
      const freed = garbage.dryRun ? '' : garbage.bytesFreed === undefined ? '; garbage collected' : `; ${garbage.pathsDeleted ?? 0} store paths, ${formatBytes(garbage.bytesFreed)} freed`;
      return `${host.host}: ${deleted}; kept ${kept || 'none'}${freed}`;
    })
    .join('\n');
}

/**
 * `pideploy gc [host…|--on @tag] [--keep N] [--parallel N] [--dry-run]`: on each host, deletes the
 * system generations older than the N newest (never the running, booted or next one), rewrites the
 * boot loader and collects the garbage, in one root command (the password asked once per login user).
 */
export async function gcCommand(invocation: CommandInvocation): Promise<CommandResult> {
  const keep = integerFlag(invocation, 'keep', { min: 1 });
  const config = await loadConfig({ cwd: invocation.io.cwd, configFile: invocation.global.config });
  const hosts = selectHosts(config, hostSelectors(invocation));
  const dryRun = invocation.flags['dry-run'] === true;
  // Deleting generations cannot be undone: a person at a terminal confirms it for several hosts.
  if (!dryRun) await confirmHosts(invocation, 'delete old system generations and collect garbage', hosts.map((host) => host.name), 'on');
  const sudo = await sudoOptions(invocation);
  const result = await collectGarbageOnHosts(
    {
      hosts,
      keep,
      dryRun,
      parallel: integerFlag(invocation, 'parallel', { min: 1 }),
      acceptNewHostKey: invocation.flags['accept-new-host-key'] === true,
      compress: invocation.flags['compress'] === true,
      sudoPassword: sudo.password,
      sudoPasswordProvider: sudo.passwordProvider,
    },
    invocation.context,
  );
  return { value: result, text: describeGarbageResult(result), exitCode: result.ok ? 0 : 1 };
}

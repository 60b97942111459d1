import { PideployError } from '@pideploy/core';
import { loadConfig, runOnHosts, selectHosts, type RunOnHostsResult } from '@pideploy/sdk';
import type { CommandInvocation, CommandResult } from '../command.js';
import { describeHostFailure, formatDuration } from '../render.js';
import { hostSelectors, integerFlag } from '../flags.js';
import { sudoOptions } from '../sudo-password.js';

/** What went wrong where, one line per host that did not exit 0 (pure; empty when all did). */
export function describeRunOnHostsResult(result: RunOnHostsResult): string {
  return result.results
    .filter((host) => !host.ok)
    .map((host) => {
      if (host.error !== undefined) return describeHostFailure(host.host, host.error, 'did not run: ');
      if (host.timedOut === true) return `${host.host}: stopped after ${formatDuration(host.durationMs)} (--timeout)`;
      return `${host.host}: ${host.exitCode === null ? `killed by ${host.signal ?? 'a signal'}` : `exit ${host.exitCode}`}`;
    })
    .join('\n');
}

/**
 * `pideploy exec [host…|--on @tag] [--sudo] [--parallel N] [--timeout S] -- <command…>`: runs a
 * command on hosts of pideploy.json, each line of its output shown after its host's name; exit 0
 * when it exited 0 everywhere.
 */
export async function execCommand(invocation: CommandInvocation): Promise<CommandResult> {
  const command = invocation.afterDoubleDash ?? [];
  if (command.length === 0) {
    throw new PideployError({ code: 'PIDEPLOY_USAGE', message: 'exec needs a command after --', hint: 'pideploy exec --on @pi -- systemctl is-active nginx' });
  }
  const config = await loadConfig({ cwd: invocation.io.cwd, configFile: invocation.global.config });
  // The positionals before `--` select the hosts.
  const hosts = selectHosts(config, hostSelectors(invocation, invocation.positionals.slice(0, invocation.positionals.length - command.length)));
  const asRoot = invocation.flags['sudo'] === true;
  const passwordFlag = ['sudo-password-file', 'sudo-password-stdin'].find((name) => invocation.flags[name] !== undefined);
  if (!asRoot && passwordFlag !== undefined) {
    throw new PideployError({ code: 'PIDEPLOY_USAGE', message: `--${passwordFlag} without --sudo: the command runs as the login user`, hint: 'add --sudo to run it as root' });
  }
  const sudo = asRoot ? await sudoOptions(invocation) : {};
  const result = await runOnHosts(
    {
      hosts,
      command,
      asRoot,
      parallel: integerFlag(invocation, 'parallel', { min: 1 }),
      timeoutSeconds: integerFlag(invocation, 'timeout', { min: 1, unit: 'seconds' }),
      acceptNewHostKey: invocation.flags['accept-new-host-key'] === true,
      compress: invocation.flags['compress'] === true,
      sudoPassword: sudo.password,
      sudoPasswordProvider: sudo.passwordProvider,
    },
    invocation.context,
  );
  // The hosts' output is the command's; what failed where goes to stderr, after it.
  const failures = describeRunOnHostsResult(result);
  if (failures !== '' && !invocation.global.json) invocation.io.stderr.write(`${failures}\n`);
  return { value: result, text: '', exitCode: result.ok ? 0 : 1 };
}

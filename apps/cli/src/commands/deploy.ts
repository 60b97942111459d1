import { PideployError, type ActivationAction, type DeployPhase } from '@pideploy/core';
import { checkDeployRequest, deploy, deployRecordFile, hostsThatFailed, loadConfig, readDeployRecord, readDeployRecordOrEmpty, recordDeployResult, selectHosts, staleKeyPaths, type DeployResult, type ResolvedConfig, type ResolvedHost } from '@pideploy/sdk';
import type { CommandInvocation, CommandResult } from '../command.js';
import { describeHostFailure, formatDuration } from '../render.js';
import { confirmHosts } from '../confirm.js';
import { sudoOptions } from '../sudo-password.js';
import { healthCheckFlags, hostSelectors, integerFlag, nixBuildFlags, rebootFlags, specialisationFlag, sshTargetFlag, stringFlag, stringFlags } from '../flags.js';

const ACTIONS: readonly ActivationAction[] = ['switch', 'boot', 'test', 'dry-activate'];
/** The code of a host a failed canary or --max-failures held back. */
const NOT_STARTED = 'PIDEPLOY_HOST_NOT_STARTED';

/**
 * The hosts in deployment order and how many of the first are canaries (`--canary`): a number
 * takes the first N selected hosts; names, globs and @tags take those hosts (which must be
 * among the selected ones, unless they come from pideploy.json `deploy.canary`) and deploy them first.
 */
export function orderCanaries(
  config: ResolvedConfig,
  hosts: readonly ResolvedHost[],
  values: readonly string[],
  options: { readonly fromConfig?: boolean } = {},
): { hosts: readonly ResolvedHost[]; canary: number } {
  if (values.length === 0) return { hosts, canary: 0 };
  const counts = values.filter((value) => /^[0-9]+$/u.test(value));
  if (counts.length > 0) {
    const count = Number(counts[0]);
    if (values.length > 1 || !Number.isSafeInteger(count) || count < 1) {
      throw new PideployError({
        code: 'PIDEPLOY_USAGE',
        message: `--canary takes one number of hosts (at least 1) or host names and @tags, not ${values.map((value) => `"${value}"`).join(', ')}`,
        hint: 'pideploy deploy @fleet --canary 2, or --canary @canary',
      });
    }
    return { hosts, canary: count };
  }
  const chosen = new Set(selectHosts(config, values).map((host) => host.name));
  // pideploy.json's canaries go first when they are among the hosts of this run (a run of other hosts has none).
  const outside = options.fromConfig === true ? [] : [...chosen].filter((name) => !hosts.some((host) => host.name === name));
  if (outside.length > 0) {
    throw new PideployError({
      code: 'PIDEPLOY_USAGE',
      message: `the canary ${outside.join(', ')} is not among the hosts to deploy`,
      hint: `pick canaries among the selected hosts (${hostsHint(hosts).join(', ')}), or select ${outside.join(', ')} too`,
    });
  }
  const canaries = hosts.filter((host) => chosen.has(host.name));
  return { hosts: [...canaries, ...hosts.filter((host) => !chosen.has(host.name))], canary: canaries.length };
}

/** The selected hosts' names for a hint (at most three, then …). */
function hostsHint(hosts: readonly ResolvedHost[]): string[] {
  return hosts.length > 3 ? [...hosts.slice(0, 3).map((host) => host.name), '…'] : hosts.map((host) => host.name);
}

/** The per-host summary table printed at the end of a deploy (pure). */
export function describeDeployResult(result: DeployResult, options: { readonly recorded?: boolean } = {}): string {
  // The reboot column only when a host rebooted (or was to).
  const rebooting = result.results.some((host) => host.phases.some((item) => item.phase === 'reboot'));
  // The keys column only when a host had keys to upload.
  const keyed = result.results.some((host) => host.phases.some((item) => item.phase === 'keys'));
  const phaseNames: readonly DeployPhase[] = ['connect', 'build', 'bundle', 'diff', 'copy', ...(keyed ? (['keys'] as const) : []), 'activate', ...(rebooting ? (['reboot'] as const) : [])];
  const header = `${'host'.padEnd(10)} ${'result'.padEnd(10)} ${phaseNames.map((phase) => phase.padStart(8)).join(' ')}`;
  const rows = result.results.map((host) => {
    const timings = phaseNames.map((phase) => {
      // A phase may run twice (keys before and after the activation): its time is the sum.
      const timings = host.phases.filter((item) => item.phase === phase);
      return (timings.length === 0 ? '-' : formatDuration(timings.reduce((sum, item) => sum + item.durationMs, 0))).padStart(8);
    });
    const outcome = !host.ok
      ? host.error?.code === NOT_STARTED
        ? 'not run'
        : 'FAILED'
      : host.reboot?.outcome === 'rebooted'
        ? 'rebooted'
        : (host.activation?.outcome ?? (host.copy === undefined && host.cache === undefined ? 'dry-run' : 'copied'));
    return `${host.host.padEnd(10)} ${outcome.padEnd(10)} ${timings.join(' ')}`;
  });
  const failures = result.results
    .filter((host) => !host.ok && host.error !== undefined && host.error.code !== NOT_STARTED)
    .map((host) => describeHostFailure(host.host, host.error));
  // Hosts held back (a failed canary, --max-failures) in one line, not one failure each.
  const notStarted = result.results.filter((host) => host.error?.code === NOT_STARTED);
  const first = notStarted[0];
  const heldBack =
    first === undefined
      ? []
      : [
          `not started: ${notStarted.map((host) => host.host).join(', ')} (${first.error?.message.replace(`${first.host} was not started: `, '') ?? ''})\n  hint: once the failed hosts are fixed: pideploy deploy ${notStarted.map((host) => host.host).join(' ')}`,
        ];
  // Said again at the end (the warning scrolled by with the progress of a fleet).
  const needReboot = result.results.filter((host) => host.ok && (host.rebootNeededFor?.length ?? 0) > 0).map((host) => host.host);
  const reboots =
    needReboot.length === 0
      ? []
      : [`reboot needed: ${needReboot.join(', ')} (a new kernel, initrd or kernel modules load only at a boot): pideploy deploy ${needReboot.join(' ')} --reboot`];
  // The outcome was recorded: the hosts that did not succeed can be deployed again by themselves.
  const retry = options.recorded === true && !result.ok ? ['again for the hosts that did not succeed: pideploy deploy --failed'] : [];
  return [header, ...rows, ...failures, ...heldBack, ...reboots, ...retry].join('\n');
}

/**
 * `--target USER@HOST`: the one selected host is reached there this time (its pideploy.json
 * target unchanged: a Pi that got another address, a cable straight to it), as deploy-rs's
 * `--hostname`. Refused for a selection of several hosts (the target itself is checked by sshTargetFlag).
 */
export function withTarget(hosts: readonly ResolvedHost[], target: string | undefined): readonly ResolvedHost[] {
  if (target === undefined) return hosts;
  const [only, ...others] = hosts;
  if (only === undefined || others.length > 0) {
    throw new PideployError({
      code: 'PIDEPLOY_USAGE',
      message: `--target replaces one host's SSH target, but ${hosts.length} hosts are selected${hosts.length === 0 ? '' : ` (${hosts.map((host) => host.name).join(', ')})`}`,
      hint: 'name the one host: pideploy deploy pi1 --target deploy@192.168.1.50',
    });
  }
  return [{ ...only, target }];
}

/**
 * `pideploy deploy [host…|--on @tag] [--action A] [--parallel N] [--confirm-timeout S]
 * [--no-rollback] [--health-check-* …] [--reboot [--reboot-timeout S]] [--dry-run] [--force]` (and
 * the Nix settings flags of the builds, see nixBuildFlags): build, bundle, diff,
 * copy and activate every selected host (and reboot it into the new system), asking the sudo
 * password once per login user before the slow work.
 */
export async function deployCommand(invocation: CommandInvocation): Promise<CommandResult> {
  const action = (stringFlag(invocation, 'action') ?? 'switch') as ActivationAction;
  if (!ACTIONS.includes(action)) {
    throw new PideployError({ code: 'PIDEPLOY_USAGE', message: `--action must be one of ${ACTIONS.join(', ')}, not "${action}"`, hint: 'pideploy deploy pi1 --action test' });
  }
  const reboot = rebootFlags(invocation);
  const nixOptions = nixBuildFlags(invocation);
  const target = sshTargetFlag(invocation);
  const config = await loadConfig({ cwd: invocation.io.cwd, configFile: invocation.global.config });
  let selected = selectHosts(config, hostSelectors(invocation));
  // What this project deployed before: each host's outcome (--failed: read strictly) and the keys
  // it put there (unreadable: no key is removed this time, and a warning says why).
  const record =
    invocation.flags['failed'] === true
      ? await readDeployRecord(config)
      : await readDeployRecordOrEmpty(config, (error) =>
          invocation.context.reporter.emit({ type: 'log', level: 'warn', message: `${(error as Error).message}: keys dropped from pideploy.json are not removed this time` }),
        );
  // --failed: of those, the hosts whose last deployment from this project did not succeed.
  if (invocation.flags['failed'] === true) {
    selected = hostsThatFailed(record, selected);
    if (selected.length === 0) {
      invocation.context.reporter.emit({ type: 'log', level: 'info', message: `no selected host failed its last deployment (${deployRecordFile(config)}): nothing to deploy` });
      const empty: DeployResult = { version: 1, results: [], ok: true };
      return { value: empty, text: '', exitCode: 0 };
    }
  }
  // --canary, else pideploy.json's deploy.canary (unless --no-canary).
  const canaryValues = stringFlags(invocation, 'canary');
  if (canaryValues.length > 0 && invocation.flags['no-canary'] === true) {
    throw new PideployError({ code: 'PIDEPLOY_USAGE', message: '--canary and --no-canary contradict each other', hint: 'give one of them' });
  }
  const configCanary = invocation.flags['no-canary'] === true ? undefined : config.deploy.canary;
  const { hosts: ordered, canary } =
    canaryValues.length > 0 || configCanary === undefined
      ? orderCanaries(config, selected, canaryValues)
      : orderCanaries(config, selected, typeof configCanary === 'number' ? [String(configCanary)] : configCanary, { fromConfig: true });
  const hosts = withTarget(ordered, target);
  if (invocation.flags['cache'] === true && invocation.flags['no-cache'] === true) {
    throw new PideployError({ code: 'PIDEPLOY_USAGE', message: '--cache and --no-cache contradict each other', hint: 'give one of them' });
  }
  // pideploy.json's cache section turns the fleet cache on; --cache without one uses the defaults.
  const useCache = invocation.flags['no-cache'] !== true && (invocation.flags['cache'] === true || config.cacheEnabled);
  // A deployment that cannot be done as asked (a reboot or specialisation that does not go with the
  // action) is refused before the question and the password.
  const specialisation = specialisationFlag(invocation);
  const rebootRequest = reboot.ifNeeded ? 'if-needed' : reboot.reboot;
  checkDeployRequest({ hosts, action, reboot: rebootRequest, specialisation });
  const dryRun = invocation.flags['dry-run'] === true;
  // A person at a terminal confirms a deployment to several hosts at once (--yes skips it), before the password.
  if (!dryRun) await confirmHosts(invocation, `deploy (${action})`, hosts.map((host) => host.name));
  // A password from a file or stdin is used as given (and tried once); otherwise deploy asks on the terminal per login.
  const sudo = await sudoOptions(invocation);
  const result = await deploy(
    {
      config,
      hosts,
      action,
      specialisation,
      rollback: invocation.flags['no-rollback'] === true ? false : undefined,
      confirmTimeoutSeconds: integerFlag(invocation, 'confirm-timeout', { min: 1, unit: 'seconds' }),
      activationTimeoutSeconds: integerFlag(invocation, 'activation-timeout', { min: 0, unit: 'seconds' }) ?? config.deploy.activationTimeout,
      parallel: integerFlag(invocation, 'parallel', { min: 1 }) ?? config.deploy.parallel,
      canary,
      maxFailures: integerFlag(invocation, 'max-failures', { min: 1 }) ?? config.deploy.maxFailures,
      force: invocation.flags['force'] === true,
      healthCheck: healthCheckFlags(invocation),
      installBootloader: invocation.flags['install-bootloader'] === true,
      reboot: rebootRequest,
      rebootTimeoutSeconds: reboot.timeoutSeconds,
      dryRun,
      keys: invocation.flags['no-keys'] === true ? false : undefined,
      // Keys put there before that pideploy.json no longer names go once the host runs its new system.
      staleKeys: invocation.flags['no-keys'] === true ? undefined : staleKeyPaths(record, hosts),
      acceptNewHostKey: invocation.flags['accept-new-host-key'] === true,
      compress: invocation.flags['compress'] === true,
      sudoPassword: sudo.password,
      sudoPasswordProvider: sudo.passwordProvider,
      env: invocation.io.env,
      nixOptions,
      // The flag for every host, else each host's pideploy.json setting.
      substituteOnDestination: invocation.flags['substitute-on-destination'] === true ? true : undefined,
      cache: useCache ? config.cache : undefined,
    },
    invocation.context,
  );
  // Each host's outcome, for `--failed` next time (a dry run or a dry activation deployed nothing).
  let recorded = false;
  if (!dryRun && action !== 'dry-activate') {
    recorded = await recordDeployResult(config, result, action).then(
      () => true,
      (error: unknown) => {
        invocation.context.reporter.emit({ type: 'log', level: 'warn', message: `could not record the outcome in ${deployRecordFile(config)}: ${(error as Error).message}` });
        return false;
      },
    );
  }
  return { value: result, text: describeDeployResult(result, { recorded }), exitCode: result.ok ? 0 : 1 };
}

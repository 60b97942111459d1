import { existsSync, realpathSync } from 'node:fs';
import path from 'node:path';
import { REBOOT_ERROR_CODES, activateSystem, asksConfirmation, checkHealthCheckUse, checkRebootUse, checkSpecialisationUse, diffSystem, formatClosureDiff, rebootSystem, rollbackSystem, specialisationSystem, systemStatus, type ActivationTarget, type RebootResult, type RollbackResult, type SystemStatus } from '@pideploy/activate';
import { storePathName } from '@pideploy/build';
import { PideployError, describeActivated, toPideployError, type ActivationAction } from '@pideploy/core';
import { healthCheckSettingsFor, healthChecksFor, keys, loadConfig, loadConfigIfPresent, mapConcurrently, checkRollBackRequest, readBundleToplevel, rollBackHosts, selectHosts, specialisationFor, type ResolvedConfig } from '@pideploy/sdk';
import type { CreateSudoOptions } from '@pideploy/ssh';
import type { CommandInvocation, CommandResult } from '../command.js';
import { requireBuiltBundle } from '../built-bundle.js';
import { sudoOptions } from '../sudo-password.js';
import { healthCheckFlags, hostSelectors, integerFlag, rebootFlags, specialisationFlag, stringFlag } from '../flags.js';
import { confirmHosts } from '../confirm.js';
import { describeHostFailure, formatColumns } from '../render.js';

const ACTIONS: readonly ActivationAction[] = ['switch', 'boot', 'test', 'dry-activate'];

/**
 * Resolves a host argument: a host of pideploy.json (its target and ssh_config; the project is
 * found walking up, or given with --config), else an SSH target as is.
 */
function resolveTarget(invocation: CommandInvocation, config: ResolvedConfig | undefined, host: string, sudo: CreateSudoOptions): ActivationTarget {
  const configured = config?.hosts.find((entry) => entry.name === host);
  const sshConfigFile = stringFlag(invocation, 'ssh-config') ?? configured?.sshConfig;
  return {
    target: configured?.target ?? host,
    connect: {
      ...(sshConfigFile === undefined ? {} : { sshConfigFile: path.resolve(invocation.io.cwd, sshConfigFile) }),
      acceptNewHostKey: invocation.flags['accept-new-host-key'] === true,
    },
    sudo,
    name: configured?.name,
  };
}

function projectConfig(invocation: CommandInvocation): Promise<ResolvedConfig | undefined> {
  return loadConfigIfPresent({ cwd: invocation.io.cwd, configFile: invocation.global.config });
}

function oneHost(invocation: CommandInvocation, usage: string): string {
  const [host, ...rest] = invocation.positionals;
  if (host === undefined || rest.length > 0) throw new PideployError({ code: 'PIDEPLOY_USAGE', message: `expected exactly one host`, hint: usage });
  return host;
}

/**
 * The system (and bundle) a command acts on: `--toplevel P` (with `--bundle B` if given), else the
 * `toplevel` of `--bundle B`, else the bundle `pideploy build` made for the host.
 */
function systemToActivate(invocation: CommandInvocation, config: ResolvedConfig | undefined, host: string, command: string): { readonly toplevel: string; readonly bundle: string | undefined } {
  const toplevelFlag = stringFlag(invocation, 'toplevel');
  const bundleFlag = stringFlag(invocation, 'bundle');
  const toplevel = toplevelFlag === undefined ? undefined : storePathGiven(invocation, toplevelFlag);
  const bundle = bundleFlag === undefined ? undefined : storePathGiven(invocation, bundleFlag);
  if (bundle === undefined) {
    if (toplevel !== undefined) return { toplevel, bundle };
    const built = requireBuiltBundle(config, host, { command, flag: '--toplevel' });
    return { toplevel: built.toplevel, bundle: built.bundle };
  }
  let bundled: string | undefined;
  try {
    bundled = readBundleToplevel(bundle);
  } catch {
    // Only on the host (or not a bundle): with --toplevel, the host's activation finds out.
    if (toplevel !== undefined) return { toplevel, bundle };
    throw new PideployError({ code: 'PIDEPLOY_USAGE', message: `${bundleFlag} is not a bundle here (no toplevel link in it)`, hint: `give the system with --toplevel P, or build the bundle here first (pideploy build ${host})` });
  }
  if (toplevel !== undefined && toplevel !== bundled) {
    throw new PideployError({ code: 'PIDEPLOY_USAGE', message: `the bundle ${bundle} holds ${bundled}, not --toplevel ${toplevel}`, hint: 'drop --toplevel: the bundle\'s system is the one activated' });
  }
  return { toplevel: bundled, bundle };
}

/** A store path given on the command line: a link here (`./result`) is resolved, anything else (a path only on the host) is kept as given. */
function storePathGiven(invocation: CommandInvocation, given: string): string {
  const local = path.resolve(invocation.io.cwd, given);
  try {
    return realpathSync(local);
  } catch {
    return given;
  }
}

/**
 * `pideploy activate <host> [--toplevel P] [--bundle B] [--action A] [--confirm-timeout S] [--no-rollback] [--force]
 * [--health-check-url URL] [--health-check-command CMD] [--health-check-timeout S] [--no-health-check]
 * [--reboot [--reboot-timeout S]]`: then, with --reboot, the host reboots into the system.
 */
export async function activateCommand(invocation: CommandInvocation): Promise<CommandResult> {
  const usage = 'pideploy activate <host> [--toplevel P] [--bundle B] [--action switch|boot|test|dry-activate]';
  const host = oneHost(invocation, usage);
  const action = (stringFlag(invocation, 'action') ?? 'switch') as ActivationAction;
  if (!ACTIONS.includes(action)) throw new PideployError({ code: 'PIDEPLOY_USAGE', message: `unknown action "${action}"`, hint: `use one of: ${ACTIONS.join(', ')}` });
  const reboot = rebootFlags(invocation);
  checkRebootUse(action, reboot.reboot);
  const config = await projectConfig(invocation);
  const configured = config?.hosts.find((entry) => entry.name === host);
  const specialisation = specialisationFor(configured, specialisationFlag(invocation));
  checkSpecialisationUse({ action, specialisation, reboot: reboot.reboot });
  const { toplevel, bundle } = systemToActivate(invocation, config, host, 'activate');
  // A system built here is checked here; one only on the host is checked there, by the activation.
  if (specialisation !== undefined && existsSync(toplevel)) specialisationSystem(toplevel, specialisation, host);
  const rollback = { enabled: invocation.flags['no-rollback'] !== true, confirmTimeoutSeconds: integerFlag(invocation, 'confirm-timeout', { min: 1, unit: 'seconds' }) };
  const activationTimeoutSeconds = integerFlag(invocation, 'activation-timeout', { min: 0, unit: 'seconds' }) ?? config?.deploy.activationTimeout;
  // A host of pideploy.json keeps its health check (the flags replace the fields they name); it
  // gates the confirmation, and with --reboot the host's return.
  const healthChecks = healthChecksFor(healthCheckSettingsFor(configured?.healthCheck, healthCheckFlags(invocation)));
  checkHealthCheckUse({ host, action, rollback, healthChecks, reboot: reboot.reboot });
  const target = resolveTarget(invocation, config, host, await sudoOptions(invocation));
  const result = await activateSystem(
    {
      ...target,
      toplevel,
      bundle,
      action,
      specialisation,
      force: invocation.flags['force'] === true,
      installBootloader: invocation.flags['install-bootloader'] === true,
      activationTimeoutSeconds,
      healthChecks: asksConfirmation(action, rollback) ? healthChecks : undefined,
      rollback,
    },
    invocation.context,
  );
  const activated = describeActivated(toplevel, specialisation);
  const text =
    result.outcome === 'skipped'
      ? `${host} already runs ${activated}; nothing to do (--force to activate again)`
      : `${host}: ${action} of ${activated} ${result.outcome}${result.deployId === undefined ? '' : ` (deployment ${result.deployId})`}`;
  if (!reboot.reboot) return { value: result, text };
  // Back unhealthy, the host goes back to the generation it had (this activation's is deleted).
  const previous = result.state?.previousGeneration;
  const rollbackTo =
    !rollback.enabled || previous === undefined || previous === result.state?.newGeneration ? undefined : { generation: previous, rejectedGeneration: result.state?.newGeneration };
  const rebooted = await rebootSystem({ ...target, toplevel, timeoutSeconds: reboot.timeoutSeconds, force: invocation.flags['force'] === true, healthChecks, rollbackTo }, invocation.context);
  return { value: { ...result, reboot: rebooted }, text: `${text}\n${rebootLine(host, toplevel, rebooted)}` };
}

function rebootLine(host: string, toplevel: string, rebooted: RebootResult): string {
  if (rebooted.outcome !== 'rebooted') return `${host}: booted ${toplevel} already; not rebooted`;
  return `${host}: rebooted into ${toplevel} in ${(rebooted.durationMs / 1000).toFixed(1)} s (boot ${rebooted.bootId})${rebooted.healthChecked ? ', healthy' : ''}`;
}

/** What a host's rollback left, in one line (pure). */
function rollbackLine(host: string, action: 'switch' | 'boot', result: RollbackResult): string {
  return action === 'boot'
    ? `${host}: generation ${result.generation ?? '?'} (${result.profileSystem ?? 'no system'}) boots next; running ${result.runningSystem ?? 'no system'} until then`
    : `${host}: now on generation ${result.generation ?? '?'} (${result.runningSystem ?? 'no running system'})`;
}

/** Whether the rollback's selectors name exactly one host by name (or SSH target): the one-host form. */
function namesOneHost(invocation: CommandInvocation, selectors: readonly string[]): boolean {
  const [only] = selectors;
  return selectors.length === 1 && invocation.flags['on'] === undefined && only !== undefined && !only.startsWith('@') && !/[*?[]/u.test(only);
}

/**
 * `pideploy rollback <host> [--to N] [--action switch|boot] [--reboot [--reboot-timeout S]]`, or for
 * a fleet `pideploy rollback [host…|--on @tag] [--parallel N] …`: each host back to its previous
 * generation (one password per login user), a failed host not stopping the others.
 */
export async function rollbackCommand(invocation: CommandInvocation): Promise<CommandResult> {
  const usage = 'pideploy rollback <host…|--on @tag> [--to N] [--action switch|boot] [--reboot] [--parallel N]';
  const selectors = hostSelectors(invocation);
  if (selectors.length === 0) throw new PideployError({ code: 'PIDEPLOY_USAGE', message: 'expected the host(s) to roll back', hint: usage });
  const to = integerFlag(invocation, 'to', { min: 1 });
  const action = stringFlag(invocation, 'action') ?? 'switch';
  if (action !== 'switch' && action !== 'boot') {
    throw new PideployError({ code: 'PIDEPLOY_USAGE', message: `rollback --action ${action}: a rollback switches to the generation or makes it the boot default`, hint: 'use --action switch (default) or boot' });
  }
  const reboot = rebootFlags(invocation);
  const parallel = integerFlag(invocation, 'parallel', { min: 1 });
  if (!namesOneHost(invocation, selectors)) return await rollBackFleet(invocation, selectors, { to, action, reboot: reboot.reboot, rebootTimeoutSeconds: reboot.timeoutSeconds, parallel });
  const host = selectors[0] as string;
  const target = resolveTarget(invocation, await projectConfig(invocation), host, await sudoOptions(invocation));
  const result = await rollbackSystem(target, { to, action }, invocation.context);
  const text = rollbackLine(host, action, result);
  if (!reboot.reboot) return { value: result, text };
  if (result.profileSystem === undefined) {
    throw new PideployError({ code: REBOOT_ERROR_CODES.refused, message: `${host} was rolled back, but did not say which system it boots now: not rebooted`, hint: `see \`pideploy status ${host}\`, then reboot it yourself` });
  }
  const rebooted = await rebootSystem({ ...target, toplevel: result.profileSystem, timeoutSeconds: reboot.timeoutSeconds }, invocation.context);
  return { value: { ...result, reboot: rebooted }, text: `${text}\n${rebootLine(host, result.profileSystem, rebooted)}` };
}

/** `pideploy rollback` of several hosts (or a tag or glob) of pideploy.json: see {@link rollBackHosts}. */
async function rollBackFleet(
  invocation: CommandInvocation,
  selectors: readonly string[],
  options: { readonly to: number | undefined; readonly action: 'switch' | 'boot'; readonly reboot: boolean; readonly rebootTimeoutSeconds: number | undefined; readonly parallel: number | undefined },
): Promise<CommandResult> {
  if (stringFlag(invocation, 'ssh-config') !== undefined) {
    throw new PideployError({ code: 'PIDEPLOY_USAGE', message: '--ssh-config is for one host given by its SSH target', hint: "several hosts of pideploy.json use each host's sshConfig there" });
  }
  const config = await loadConfig({ cwd: invocation.io.cwd, configFile: invocation.global.config });
  const hosts = selectHosts(config, selectors);
  // Before the question and the password: a rollback that cannot be done.
  checkRollBackRequest({ hosts, to: options.to });
  await confirmHosts(invocation, `roll back (${options.action})`, hosts.map((host) => host.name), 'on');
  const sudo = await sudoOptions(invocation);
  const result = await rollBackHosts(
    {
      hosts,
      ...options,
      acceptNewHostKey: invocation.flags['accept-new-host-key'] === true,
      sudoPassword: sudo.password,
      sudoPasswordProvider: sudo.passwordProvider,
    },
    invocation.context,
  );
  const text = result.results
    .flatMap((host) => [
      ...(host.rollback === undefined ? [] : [rollbackLine(host.host, options.action, host.rollback)]),
      ...(host.reboot === undefined || host.rollback?.profileSystem === undefined ? [] : [rebootLine(host.host, host.rollback.profileSystem, host.reboot)]),
      ...(host.ok ? [] : [describeHostFailure(host.host, host.error, 'FAILED: ')]),
    ])
    .join('\n');
  return { value: result, text, exitCode: result.ok ? 0 : 1 };
}

/**
 * Whether a host neither runs nor boots next the system of the bundle pideploy last deployed to it
 * (pure): it was rolled back, or switched by hand, since; `/etc/nixos/current-configuration`
 * then names a system the host has left.
 */
export function leftDeployedSystem(status: SystemStatus): boolean {
  return status.deployedSystem !== undefined && status.runningSystem !== status.deployedSystem && status.profileSystem !== status.deployedSystem;
}

const LEFT_DEPLOYED_NOTE = 'not on its deployed bundle\'s system (rolled back or switched by hand since)';

/**
 * What a host's record of key files (read by `status`) says, against the host's pideploy.json
 * keys (`wanted`: their files; undefined: not a host of pideploy.json): the files there, the old
 * ones pideploy.json no longer names (the next deploy removes them), and the missing ones it names
 * that are not there (never uploaded, or under /run and lost to a reboot since) (pure).
 */
export function statusKeyFiles(status: SystemStatus, wanted: ReadonlySet<string> | undefined): { readonly current: string[]; readonly old: string[]; readonly missing: string[] } {
  const record = keys.parseKeyRecord(status.alsoRead);
  const gone = new Set(keys.keyFilesGoneSinceBoot(record, status.bootId));
  const present = record.files.filter((file) => !gone.has(file));
  const old = wanted === undefined ? [] : present.filter((file) => !wanted.has(file));
  const missing = wanted === undefined ? [] : [...wanted].filter((file) => !present.includes(file)).sort();
  return { current: present.filter((file) => !old.includes(file)), old, missing };
}

function formatStatus(status: SystemStatus, wanted: ReadonlySet<string> | undefined): string {
  const lines = [
    `${status.host}:`,
    `  running:   ${status.runningSystem ?? '-'}${status.runningSpecialisation === undefined ? '' : ` (the profile's specialisation ${status.runningSpecialisation})`}`,
    `  booted:    ${status.bootedSystem ?? '-'}`,
    `  profile:   ${status.profileSystem ?? '-'}`,
    `  deployed:  ${status.currentConfiguration ?? '-'}`,
  ];
  if (status.rebootNeededFor.length > 0) lines.push(`  reboot:    needed: the profile's ${status.rebootNeededFor.join(', ')} are not the ones it booted with`);
  if (leftDeployedSystem(status)) lines.push(`  note:      ${LEFT_DEPLOYED_NOTE}: the bundle's system is ${status.deployedSystem ?? '-'}`);
  const keyFiles = statusKeyFiles(status, wanted);
  if (keyFiles.current.length > 0) lines.push(`  keys:      ${keyFiles.current.join(', ')}`);
  if (keyFiles.old.length > 0) lines.push(`  old keys:  ${keyFiles.old.join(', ')} (no longer in pideploy.json: the next deploy removes them)`);
  if (keyFiles.missing.length > 0) lines.push(`  missing:   ${keyFiles.missing.join(', ')} (in pideploy.json, not on the host: never uploaded, or under /run and gone since a reboot; pideploy upload-keys ${status.host})`);
  if (status.lastDeployment !== undefined) {
    const last = status.lastDeployment;
    lines.push(`  last deployment ${last.id}: ${last.action} ${last.toplevel}${last.specialisation === '' ? '' : ` (specialisation ${last.specialisation})`} → ${last.state} (${last.message})`);
  }
  lines.push('  generations:');
  for (const generation of status.generations) lines.push(`    ${String(generation.number).padStart(4)}   ${generation.date}${generation.current ? '   (current)' : ''}`);
  return lines.join('\n');
}

/** A store path's name without its hash (`nixos-system-pi1-24.05`), or `-`. */
const storeName = (storePath: string | undefined) => (storePath === undefined ? '-' : storePathName(storePath));

/**
 * `pideploy status --short`: one line per host, for a fleet: the profile's generation, the system
 * it runs, its last deployment (until it reboots) and what needs a look (pure).
 */
export function formatStatusLines(results: readonly (SystemStatus | HostStatusFailure)[], wantedKeys: (host: string) => ReadonlySet<string> | undefined = () => undefined): string {
  const rows = results.map((result) => {
    if ('error' in result) return [result.host, '-', '-', '-', `error: ${result.error.message}`];
    const current = result.generations.find((generation) => generation.current);
    const last = result.lastDeployment === undefined ? '-' : `${result.lastDeployment.action} → ${result.lastDeployment.state}`;
    const notes = [
      ...(result.runningSpecialisation !== undefined ? [`specialisation ${result.runningSpecialisation}`] : result.runningSystem !== result.profileSystem ? [`boots ${storeName(result.profileSystem)} next`] : []),
      ...(result.rebootNeededFor.length > 0 ? [`reboot needed (${result.rebootNeededFor.join(', ')})`] : []),
      ...(leftDeployedSystem(result) ? [LEFT_DEPLOYED_NOTE] : []),
      ...missingKeysNote(statusKeyFiles(result, wantedKeys(result.host)).missing.length),
    ];
    return [result.host, current === undefined ? '-' : String(current.number), storeName(result.runningSystem), last, notes.join('; ') || 'ok'];
  });
  return formatColumns(['host', 'gen', 'running', 'last deployment', 'notes'], rows, [1]);
}

/** The files of a pideploy.json host's keys on the host (undefined: not a host of pideploy.json). */
function wantedKeyFiles(config: ResolvedConfig | undefined, host: string): Set<string> | undefined {
  const configured = config?.hosts.find((entry) => entry.name === host);
  return configured === undefined ? undefined : new Set(configured.keys.map((spec) => keys.keyPath(spec)));
}

/** `2 keys missing` for the notes of `status --short` (none for 0). */
function missingKeysNote(count: number): string[] {
  return count === 0 ? [] : [`${count} ${count === 1 ? 'key' : 'keys'} missing`];
}

/** How many hosts `pideploy status` asks at once. */
export const STATUS_CONCURRENCY = 8;

/** A host `pideploy status` could not read: its name and why (the error as `--json` shows it). */
export interface HostStatusFailure {
  readonly host: string;
  readonly error: { readonly code: string; readonly message: string; readonly hint: string | undefined };
}

/**
 * `pideploy status [host…] [--short]` (default: every host of pideploy.json): up to
 * {@link STATUS_CONCURRENCY} hosts at once, printed in the order given. A host that cannot be
 * read (unreachable, …) gets its error line in its place (and a warning on stderr); the others
 * still print; exit 1.
 */
export async function statusCommand(invocation: CommandInvocation): Promise<CommandResult> {
  // Loaded once for every host (it is required when no host is named).
  const config = invocation.positionals.length === 0 ? await loadConfig({ cwd: invocation.io.cwd, configFile: invocation.global.config }) : await projectConfig(invocation);
  const hosts = invocation.positionals.length === 0 ? (config?.hosts.map((host) => host.name) ?? []) : [...invocation.positionals];
  const results = await mapConcurrently(hosts, STATUS_CONCURRENCY, async (host): Promise<SystemStatus | HostStatusFailure> => {
    try {
      // With the host's record of the key files pideploy put there (read in the same round trip).
      return await systemStatus(resolveTarget(invocation, config, host, {}), invocation.context, { alsoRead: keys.KEY_RECORD_FILE });
    } catch (caught) {
      if (invocation.context.signal.aborted) throw caught;
      const error = toPideployError(caught);
      // On stderr at once (as deploy reports a failed host), and in its place in the result.
      invocation.context.reporter.emit({ type: 'log', level: 'warn', host, message: `${error.message}${error.hint === undefined ? '' : ` (hint: ${error.hint})`}` });
      return { host, error: { code: error.code, message: error.message, hint: error.hint } };
    }
  });
  const text =
    invocation.flags['short'] === true
      ? formatStatusLines(results, (host) => wantedKeyFiles(config, host))
      : results
          .map((result) => ('error' in result ? describeHostFailure(result.host, result.error, 'error: ') : formatStatus(result, wantedKeyFiles(config, result.host))))
          .join('\n');
  return { value: results, text, exitCode: results.some((result) => 'error' in result) ? 1 : 0 };
}

/**
 * `pideploy diff <host> [--toplevel P | --bundle B] [--specialisation NAME]`: what switching to P
 * (default: the system of the bundle `pideploy build` made for the host), or to its specialisation
 * NAME, changes, against what the host runs.
 */
export async function diffCommand(invocation: CommandInvocation): Promise<CommandResult> {
  const usage = 'pideploy diff <host> [--toplevel P | --bundle B] [--specialisation NAME]';
  const host = oneHost(invocation, usage);
  const config = await projectConfig(invocation);
  const { toplevel } = systemToActivate(invocation, config, host, 'diff');
  // What the host would run: the system, or that specialisation of it (built here).
  const specialisation = specialisationFor(config?.hosts.find((entry) => entry.name === host), specialisationFlag(invocation));
  checkSpecialisationUse({ action: 'switch', specialisation });
  const activated = specialisation === undefined ? toplevel : specialisationSystem(toplevel, specialisation, host);
  const diff = await diffSystem(resolveTarget(invocation, config, host, {}), activated, invocation.context, { env: invocation.io.env });
  const text = formatClosureDiff(diff);
  return { value: diff, text: text === '' ? `${host}: no changes` : text.trimEnd() };
}

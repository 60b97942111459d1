/**
 * Rebooting a host into the system it was given (`pideploy deploy --action boot --reboot`): the
 * host's own `systemctl reboot` through sudo, then a wait for a NEW boot (the kernel's boot id,
 * `/proc/sys/kernel/random/boot_id`, changes: a host still going down answers with the old one),
 * then a check that it runs the deployed system, and its health checks: a host that comes back
 * unhealthy is sent back to the generation it had, and rebooted into it.
 */
import { PideployError, tailLines, type ActivationAction, type PideployContext } from '@pideploy/core';
import { SSH_ERROR_CODES, connectSsh, type SshSession } from '@pideploy/ssh';
import { SYSTEM_PROFILE } from './activation-script.js';
import {
  DEFAULT_HEALTH_CHECK_TIMEOUT_MS,
  checkCommand,
  checkUrl,
  healthCheckUrlFor,
  hostName,
  rollbackSystem,
  sleep,
  sudoOptionsOf,
  type ActivationTarget,
  type HealthChecks,
} from './activate.js';

/** The host's systemctl: the running NixOS system's own (never a `reboot` found on PATH). */
export const SYSTEMCTL = '/run/current-system/sw/bin/systemctl';

/** How long {@link rebootSystem} waits for the host to come back, by default (a Pi boots in under a minute). */
export const DEFAULT_REBOOT_TIMEOUT_SECONDS = 300;

/** Error codes of {@link rebootSystem}. */
export const REBOOT_ERROR_CODES = {
  /** The host would not boot the deployed system, or has no systemctl: nothing was done. */
  refused: 'PIDEPLOY_REBOOT_REFUSED',
  /** `systemctl reboot` failed: the host did not go down. */
  failed: 'PIDEPLOY_REBOOT_FAILED',
  /** The host did not come back (a new boot that answers over SSH) in time. */
  timeout: 'PIDEPLOY_REBOOT_TIMEOUT',
  /** The host came back running another system than the deployed one. */
  wrongSystem: 'PIDEPLOY_REBOOT_WRONG_SYSTEM',
  /** The host came back running the deployed system, but it failed its health check (rolled back and rebooted into the generation it had, where it could be). */
  unhealthy: 'PIDEPLOY_REBOOT_UNHEALTHY',
} as const;

/**
 * Refuses a reboot after an action that does not make the system the boot default (`test`,
 * `dry-activate`): the host would boot what it booted before. Pure.
 * @throws PideployError `PIDEPLOY_USAGE`.
 */
export function checkRebootUse(action: ActivationAction, reboot: boolean | 'if-needed' | undefined): void {
  if (reboot === 'if-needed') {
    if (action === 'switch') return;
    throw new PideployError({
      code: 'PIDEPLOY_USAGE',
      message: `--reboot-if-needed with --action ${action}: it reboots a switched host whose new kernel (initrd, kernel modules) only a boot loads`,
      hint: action === 'boot' ? 'use --reboot: a boot always needs its reboot' : 'use it with --action switch (the default)',
    });
  }
  if (reboot !== true || action === 'switch' || action === 'boot') return;
  throw new PideployError({
    code: 'PIDEPLOY_USAGE',
    message: `--reboot with --action ${action}: ${action === 'test' ? 'test does not make the system the boot default, so the host would boot what it ran before' : 'dry-activate changes nothing to reboot into'}`,
    hint: 'use --action boot (or switch) with --reboot',
  });
}

/** What one look at a host says about its boot. */
export interface BootProbe {
  /** The kernel's boot id (a new one every boot). */
  readonly bootId: string;
  /** `/run/booted-system`, resolved (undefined: none). */
  readonly booted: string | undefined;
  /** `/run/current-system`, resolved. */
  readonly running: string | undefined;
  /** The system profile's system (what boots next), resolved. */
  readonly profile: string | undefined;
  /** Whether {@link SYSTEMCTL} is there to reboot with. */
  readonly hasSystemctl: boolean;
}

/** One command as the login user (no sudo) that prints a {@link BootProbe}, one field a line. */
export const BOOT_PROBE_COMMAND: readonly string[] = [
  'sh',
  '-c',
  'cat /proc/sys/kernel/random/boot_id && printf \'%s\\n\' "$(readlink -e /run/booted-system)" "$(readlink -e /run/current-system)" "$(readlink -e "$1")" && if [ -x "$2" ]; then echo systemctl; fi',
  'boot-probe',
  SYSTEM_PROFILE,
  SYSTEMCTL,
];

/** Parses {@link BOOT_PROBE_COMMAND}'s output; undefined when it has no boot id. Pure. */
export function parseBootProbe(stdout: string): BootProbe | undefined {
  const [bootId = '', booted = '', running = '', profile = '', systemctl = ''] = stdout.split('\n');
  if (!/^[0-9a-f-]{8,}$/iu.test(bootId.trim())) return undefined;
  const orUndefined = (value: string) => (value === '' ? undefined : value);
  return { bootId: bootId.trim(), booted: orUndefined(booted), running: orUndefined(running), profile: orUndefined(profile), hasSystemctl: systemctl === 'systemctl' };
}

/** What a reboot into `toplevel` would do on a host as `probe` found it. Pure. */
export type RebootPlan =
  | { readonly kind: 'reboot' }
  /** The host booted `toplevel` and runs it: a reboot would change nothing. */
  | { readonly kind: 'not-needed' }
  | { readonly kind: 'refused'; readonly message: string; readonly hint: string };

/**
 * Whether to reboot `host` into `toplevel`: refused when its boot default is another system (it
 * would not boot `toplevel`) or it has no systemctl; not needed when it booted and runs `toplevel`
 * already (unless `force`). Pure.
 */
export function planReboot(host: string, probe: BootProbe, toplevel: string, force = false): RebootPlan {
  if (probe.profile !== toplevel) {
    return {
      kind: 'refused',
      message: `${host} would not boot ${toplevel}: its system profile is ${probe.profile ?? 'unset'}`,
      hint: 'activate it with --action boot or switch (which make it the boot default) before rebooting',
    };
  }
  if (!probe.hasSystemctl) {
    return {
      kind: 'refused',
      message: `${host} has no ${SYSTEMCTL} to reboot with`,
      hint: `pideploy reboots NixOS hosts with their own systemctl; reboot ${host} yourself, then check it with \`pideploy status ${host}\``,
    };
  }
  if (!force && probe.booted === toplevel && probe.running === toplevel) return { kind: 'not-needed' };
  return { kind: 'reboot' };
}

/** SSH errors worth waiting through while a host reboots (a changed or unknown host key is not). */
const RETRIED_SSH_CODES: ReadonlySet<string> = new Set([SSH_ERROR_CODES.connectionFailed, SSH_ERROR_CODES.timeout, SSH_ERROR_CODES.unreachable, SSH_ERROR_CODES.authFailed]);

/** Whether an error of one look at a rebooting host is worth another look. */
export function isRetriedWhileRebooting(error: unknown): boolean {
  return PideployError.isInstance(error) ? RETRIED_SSH_CODES.has(error.code) : true;
}

/** Input of {@link waitForNewBoot}. */
export interface WaitForNewBootInput {
  readonly host: string;
  /** The boot id before the reboot. */
  readonly bootId: string;
  /** One look at the host (a new connection each time): its probe, or a thrown error. */
  readonly look: (timeoutMs: number) => Promise<BootProbe | undefined>;
  readonly timeoutMs: number;
  /** Pause between two looks (default 1000 ms). */
  readonly pauseMs?: number | undefined;
  readonly signal: AbortSignal;
}

/**
 * Looks at a rebooting host until it answers with another boot id than `bootId`, and returns
 * that look; errors that a reboot explains (refused or timed-out connections, a login that does
 * not work yet) are waited through, others (a changed host key) end the wait at once.
 * @throws PideployError `PIDEPLOY_REBOOT_TIMEOUT` when `timeoutMs` pass first.
 */
export async function waitForNewBoot(input: WaitForNewBootInput): Promise<BootProbe> {
  const started = performance.now();
  const pauseMs = input.pauseMs ?? 1000;
  let lastProblem = 'it still ran the boot it was asked to leave';
  for (;;) {
    if (input.signal.aborted) throw new PideployError({ code: 'PIDEPLOY_INTERRUPTED', message: `interrupted while waiting for ${input.host} to reboot` });
    const leftMs = input.timeoutMs - (performance.now() - started);
    if (leftMs <= 0) {
      throw new PideployError({
        code: REBOOT_ERROR_CODES.timeout,
        message: `${input.host} did not come back within ${input.timeoutMs / 1000} s of its reboot (last: ${lastProblem})`,
        hint: `look at ${input.host}'s console or power; once it answers, \`pideploy status ${input.host}\` shows what it runs (--reboot-timeout waits longer)`,
      });
    }
    try {
      const probe = await input.look(Math.max(1000, Math.min(10_000, leftMs)));
      if (probe !== undefined && probe.bootId !== input.bootId) return probe;
      lastProblem = probe === undefined ? 'it did not say its boot id' : 'it still ran the boot it was asked to leave';
    } catch (error) {
      if (!isRetriedWhileRebooting(error)) throw error;
      lastProblem = error instanceof Error ? error.message : String(error);
    }
    await sleep(Math.min(pauseMs, Math.max(0, input.timeoutMs - (performance.now() - started))), input.signal);
  }
}

/**
 * Where a host that comes back from its reboot unhealthy goes: the profile generation it had before
 * the deployment (an activation's `previousGeneration`), with the generation the deployment made
 * deleted and the GC root `/etc/nixos/current-configuration` pointed back.
 */
export interface RebootRollback {
  readonly generation: number;
  /** The generation the deployment made (an activation's `newGeneration`): deleted once the profile is off it. */
  readonly rejectedGeneration?: number | undefined;
  /** What the GC root pointed at before the deployment (the bundle deployed before), if anything. */
  readonly gcRoot?: string | undefined;
}

/** Input of {@link rebootSystem}. */
export interface RebootSystemInput extends ActivationTarget {
  /** The system the host must boot (its system profile's) and then run. */
  readonly toplevel: string;
  /** Seconds to wait for the host to come back (default {@link DEFAULT_REBOOT_TIMEOUT_SECONDS}). */
  readonly timeoutSeconds?: number | undefined;
  /** Reboot even when the host booted and runs `toplevel` already. */
  readonly force?: boolean | undefined;
  /**
   * Checks the host must pass once it is back (over a new connection, as the magic rollback's): a
   * service may still be starting, so a failing check is tried again every second until it passes
   * or its timeout (counted from the host's return) runs out. Not run when no reboot was needed.
   */
  readonly healthChecks?: HealthChecks | undefined;
  /**
   * Where an unhealthy host goes ({@link RebootRollback}): it is rolled back there (`boot`) and
   * rebooted into it. Without it, it is left as it is. Either way the result is a
   * `PIDEPLOY_REBOOT_UNHEALTHY` error saying which.
   */
  readonly rollbackTo?: RebootRollback | undefined;
  /**
   * Runs once the host is back running `toplevel`, over the new login that found it back, before
   * the health checks: to put back what the boot emptied (keys under /run) before a service is
   * checked. Its error ends the reboot with that error (no rollback: the system is not at fault).
   */
  readonly onBack?: ((session: SshSession) => Promise<void>) | undefined;
}

/** What {@link rebootSystem} did. */
export interface RebootResult {
  readonly host: string;
  /** `not-needed`: the host had booted `toplevel` and ran it; nothing was done. */
  readonly outcome: 'rebooted' | 'not-needed';
  /** The boot id before, and after the reboot (the same when not needed). */
  readonly bootIdBefore: string;
  readonly bootId: string;
  /** What the host runs now (`toplevel`). */
  readonly runningSystem: string | undefined;
  /** Whether health checks ran after the reboot (and passed). */
  readonly healthChecked: boolean;
  readonly durationMs: number;
}

/** Pause between two tries of a failing health check after a reboot. */
const HEALTH_RETRY_PAUSE_MS = 1000;

/**
 * Runs `checks` on a host that just came back, trying a failing one again every second until it
 * passes or its timeout (from now) runs out: undefined when all pass, else the last problem.
 */
async function checkHealthAfterReboot(session: SshSession, host: string, checks: HealthChecks, signal: AbortSignal): Promise<string | undefined> {
  const timeoutMs = checks.timeoutMs ?? DEFAULT_HEALTH_CHECK_TIMEOUT_MS;
  const what = `its timeout, counted from ${host}'s return (--health-check-timeout)`;
  const runUntilPassed = async (check: (limitMs: number) => Promise<string | undefined>): Promise<string | undefined> => {
    const deadline = performance.now() + timeoutMs;
    for (let tries = 1; ; tries += 1) {
      const problem = await check(Math.max(0, Math.floor(deadline - performance.now())));
      if (problem === undefined) return undefined;
      if (signal.aborted) throw new PideployError({ code: 'PIDEPLOY_INTERRUPTED', message: `interrupted while checking ${host}'s health` });
      if (performance.now() + HEALTH_RETRY_PAUSE_MS >= deadline) return tries === 1 ? problem : `${problem} (tried ${tries} times in ${timeoutMs / 1000} s)`;
      await sleep(HEALTH_RETRY_PAUSE_MS, signal);
    }
  };
  const command = checks.command;
  if (command !== undefined) {
    const problem = await runUntilPassed((ms) => checkCommand(session, command, { ms, what }, signal));
    if (problem !== undefined) return problem;
  }
  const url = checks.url;
  if (url === undefined) return undefined;
  const filled = healthCheckUrlFor(url, { host, hostname: session.host.hostname });
  return runUntilPassed((ms) => checkUrl(filled, { ms, what }));
}

function probeOf(host: string, result: { readonly exitCode: number | null; readonly stdout: string; readonly stderr: string }): BootProbe | undefined {
  if (result.exitCode !== 0) return undefined;
  const probe = parseBootProbe(result.stdout);
  if (probe === undefined) {
    throw new PideployError({
      code: REBOOT_ERROR_CODES.refused,
      message: `${host} has no readable boot id (/proc/sys/kernel/random/boot_id): cannot tell when it has rebooted`,
      hint: `pideploy reboots Linux (NixOS) hosts; reboot ${host} yourself`,
    });
  }
  return probe;
}

/**
 * Reboots a host into `toplevel`, which must be its boot default (activated with `boot` or
 * `switch`): checks that (and skips a reboot that would change nothing), runs the host's own
 * `systemctl reboot` as root, waits until the host answers from a new boot over a NEW connection
 * (host key checked as always), and checks that it runs `toplevel`.
 * @throws PideployError {@link REBOOT_ERROR_CODES}: refused (nothing done), failed, timeout, wrong system.
 */
export async function rebootSystem(input: RebootSystemInput, context: PideployContext): Promise<RebootResult> {
  const host = hostName(input);
  const signal = context.signal;
  const connect = { ...input.connect, signal };
  const timeoutMs = (input.timeoutSeconds ?? DEFAULT_REBOOT_TIMEOUT_SECONDS) * 1000;
  const started = performance.now();
  const session = input.session !== undefined && !input.session.closed ? input.session : await connectSsh(input.target, connect, context);
  const owned = session !== input.session;
  let before: BootProbe;
  try {
    const probed = await session.exec(BOOT_PROBE_COMMAND, { signal });
    const probe = probeOf(host, probed);
    if (probe === undefined) {
      throw new PideployError({
        code: REBOOT_ERROR_CODES.refused,
        message: `could not read ${host}'s boot id before rebooting it (exit ${probed.exitCode ?? 'signal'}): ${tailLines(probed.stderr, 1)}`,
        hint: 'rerun with --verbose to see the command',
      });
    }
    before = probe;
    const plan = planReboot(host, before, input.toplevel, input.force === true);
    if (plan.kind === 'refused') throw new PideployError({ code: REBOOT_ERROR_CODES.refused, message: plan.message, hint: plan.hint });
    if (plan.kind === 'not-needed') {
      context.reporter.emit({ type: 'log', level: 'info', host, message: `${host} booted ${input.toplevel} and runs it: no reboot needed` });
      return { host, outcome: 'not-needed', bootIdBefore: before.bootId, bootId: before.bootId, runningSystem: before.running, healthChecked: false, durationMs: performance.now() - started };
    }
    context.reporter.emit({ type: 'log', level: 'info', host, message: `rebooting ${host} into ${input.toplevel}` });
    const sudo = await session.sudo(sudoOptionsOf(input));
    const argv = [SYSTEMCTL, 'reboot'];
    const result = await sudo.exec(argv, { signal });
    // exit 0, or the connection ended under it (the host went down before it answered).
    if (result.exitCode !== 0 && !(result.exitCode === null && session.closed)) {
      throw new PideployError({
        code: REBOOT_ERROR_CODES.failed,
        message: `systemctl reboot on ${host} failed (exit ${result.exitCode ?? 'signal'}): ${tailLines(result.stderr || result.stdout, 2)}`,
        hint: `${host} still runs what it ran; look at its journal, or reboot it yourself`,
        commandFailure: { command: argv, ...(result.exitCode === null ? {} : { exitCode: result.exitCode }), stderrTail: tailLines(result.stderr) },
      });
    }
  } finally {
    if (owned) await session.close();
  }

  context.reporter.emit({ type: 'log', level: 'info', host, message: `${host} is rebooting; waiting up to ${timeoutMs / 1000} s for it to come back` });
  // The last look's connection stays open for the health checks (a new login that works, as the magic rollback's).
  let back: SshSession | undefined;
  try {
    const after = await waitForNewBoot({
      host,
      bootId: before.bootId,
      timeoutMs,
      signal,
      look: async (connectTimeoutMs) => {
        const fresh = await connectSsh(input.target, { ...connect, connectTimeoutMs }, context);
        let kept = false;
        try {
          const probe = probeOf(host, await fresh.exec(BOOT_PROBE_COMMAND, { signal }));
          kept = probe !== undefined && probe.bootId !== before.bootId;
          if (kept) back = fresh;
          return probe;
        } finally {
          if (!kept) await fresh.close();
        }
      },
    });
    if (after.running !== input.toplevel) {
      throw new PideployError({
        code: REBOOT_ERROR_CODES.wrongSystem,
        message: `${host} came back from its reboot running ${after.running ?? 'no system'}, not ${input.toplevel}`,
        hint: `its boot loader did not boot the system profile's default: check boot.loader in its configuration (and the boot menu on its console), then \`pideploy status ${host}\``,
      });
    }
    if (input.onBack !== undefined) {
      // The login that found the host back, else a new one (it was found by an earlier look).
      if (back === undefined) back = await connectSsh(input.target, connect, context);
      await input.onBack(back);
    }
    const checks = input.healthChecks;
    const checked = checks !== undefined && (checks.command !== undefined || checks.url !== undefined) && back !== undefined;
    if (checked) {
      context.reporter.emit({ type: 'log', level: 'info', host, message: `${host} is back running ${input.toplevel}; checking its health` });
      const problem = await checkHealthAfterReboot(back as SshSession, host, checks, signal);
      if (problem !== undefined) {
        await back?.close();
        back = undefined;
        throw await rollBackUnhealthy(input, problem, context);
      }
    }
    return { host, outcome: 'rebooted', bootIdBefore: before.bootId, bootId: after.bootId, runningSystem: after.running, healthChecked: checked, durationMs: performance.now() - started };
  } finally {
    await back?.close();
  }
}

/**
 * The error for a host that came back from its reboot running `input.toplevel` but unhealthy
 * (`problem`), after sending it back where {@link RebootSystemInput.rollbackTo} says and rebooting
 * it into that system; without one (or when that fails) it says what the host was left on.
 */
async function rollBackUnhealthy(input: RebootSystemInput, problem: string, context: PideployContext): Promise<PideployError> {
  const host = hostName(input);
  const failed = `${host} came back from its reboot running ${input.toplevel}, but ${problem}`;
  const fix = 'the new system failed its health check: fix the service (or the check) and deploy again';
  const rollbackTo = input.rollbackTo;
  if (rollbackTo === undefined) {
    return new PideployError({
      code: REBOOT_ERROR_CODES.unhealthy,
      message: `${failed}; it was left so (this deployment made no generation to go back from)`,
      hint: `${fix}; \`pideploy rollback ${host} --action boot --reboot\` boots its previous generation`,
    });
  }
  context.reporter.emit({ type: 'log', level: 'warn', host, message: `${failed}: rolling it back to generation ${rollbackTo.generation} and rebooting` });
  try {
    const rolled = await rollbackSystem(
      { ...input, session: undefined },
      { to: rollbackTo.generation, action: 'boot', deleteGeneration: rollbackTo.rejectedGeneration, gcRoot: rollbackTo.gcRoot },
      context,
    );
    const previous = rolled.profileSystem;
    if (previous === undefined) throw new Error(`the rollback did not say which system generation ${rollbackTo.generation} holds`);
    await rebootSystem({ ...input, session: undefined, toplevel: previous, force: true, healthChecks: undefined, rollbackTo: undefined }, context);
    return new PideployError({
      code: REBOOT_ERROR_CODES.unhealthy,
      message: `${failed}; it was rolled back to generation ${rollbackTo.generation} (${previous}) and rebooted into it`,
      hint: fix,
    });
  } catch (error) {
    if (context.signal.aborted) throw error;
    return new PideployError({
      code: REBOOT_ERROR_CODES.unhealthy,
      message: `${failed}; rolling it back to generation ${rollbackTo.generation} failed too: ${error instanceof Error ? error.message : String(error)}`,
      hint: `see what it runs and boots with \`pideploy status ${host}\`; its boot menu still lists generation ${rollbackTo.generation}`,
      cause: error,
    });
  }
}

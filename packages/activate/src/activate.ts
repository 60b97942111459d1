/**
 * The deployer side of activation: thin I/O shells around the target-side script
 * ({@link renderActivationScript}) over `@pideploy/ssh`.
 */
import { PideployError, describeActivated, shellJoin, tailLines, type ActivationAction, type PideployContext } from '@pideploy/core';
import { parsePathInfoJson, queryClosurePathInfos, type ClosureQuery, type StorePathInfo } from '@pideploy/nix';
import { connectSsh, type ConnectSshOptions, type CreateSudoOptions, type SshSession, type SudoPasswordProvider, type SudoRunner } from '@pideploy/ssh';
import {
  AWAIT_STATE_FUNCTION,
  ACTIVATION_BUSY_EXIT_CODE,
  BUSY_OUTPUT_MARKER,
  ACTIVATION_PROTOCOL_MARKER,
  ACTIVATION_UNREADABLE,
  ACTIVATION_STATE_DIR,
  LEFT_BEHIND_SECONDS,
  READ_LOCK_FUNCTION,
  CURRENT_CONFIGURATION_ROOT,
  DEFAULT_ACTIVATION_TIMEOUT_SECONDS,
  DEFAULT_CONFIRM_TIMEOUT_SECONDS,
  SYSTEM_PROFILE,
  activateArguments,
  activationStatePath,
  canRollBack,
  isFinalActivationState,
  STATE_OUTPUT_MARKER,
  newDeployId,
  parseActivationState,
  renderActivationScript,
  stateCanRollBack,
  scriptCommand,
  uploadedScriptPath,
  type ActivationState,
} from './activation-script.js';
import { bootPartsChanged, parseBootParts, printBootPartsScript, type BootPart, type BootParts } from './boot-parts.js';
import { diffClosures, type ClosureDiff } from './closure-diff.js';
import { parseGenerationList, type ProfileGeneration } from './generations.js';
import { checkSpecialisationUse, parseRunningSpecialisation, printRunningSpecialisationScript } from './specialisation.js';

/** How to reach one target and become root there. */
export interface ActivationTarget {
  /** `user@host[:port]` or an ssh_config alias; used for every NEW connection (confirmation, reconnects). */
  readonly target: string;
  /** An open connection to reuse for the first steps (e.g. the one the copy used); closed by its owner. */
  readonly session?: SshSession | undefined;
  /** How to connect (ssh_config file, known_hosts …). */
  readonly connect?: ConnectSshOptions | undefined;
  /**
   * How sudo gets its password. The answer is remembered in memory for this target's later
   * connections (see {@link rememberSudoPassword}), so one prompt serves activate + confirm.
   */
  readonly sudo?: CreateSudoOptions | undefined;
  /** What events, results and errors call this host (default: the SSH alias or the target), e.g. its pideploy.json name. */
  readonly name?: string | undefined;
}

/**
 * Magic rollback settings. What "rolling back" means (on failure, abort or timeout, done by the
 * target itself): the host goes back to the system that was RUNNING when the deployment started
 * (`/run/current-system`), and its boot default (the system profile) goes back to the generation
 * it had; the generation the deployment made is deleted, as deploy-rs does. A host whose profile
 * had no generation (a first deployment to a freshly installed host) gets one for the running
 * system instead, so it never boots the rejected system. A host that ran no system and had no
 * generation cannot be rolled back: that is a `PIDEPLOY_ROLLBACK_IMPOSSIBLE` error (and a warning
 * before the activation). The GC root `/etc/nixos/current-configuration` moves only on success.
 */
export interface RollbackOptions {
  /** Ask for confirmation over a new connection and roll back without it (default: true for switch/test). */
  readonly enabled?: boolean | undefined;
  /** Seconds the target waits for the confirmation (default 30). */
  readonly confirmTimeoutSeconds?: number | undefined;
}

/** Checks that must pass before the deployment is confirmed. */
export interface HealthChecks {
  /**
   * A command run on the target as the login user over the new confirmation connection, as an
   * argv (quoted for the remote shell); exit 0 = healthy. A shell command line is
   * `['sh', '-c', line]`.
   */
  readonly command?: readonly string[] | undefined;
  /**
   * An http(s) URL fetched from the deployer (after the command); a 2xx answer (redirects
   * followed) = healthy. `{host}` is replaced by the target's name, `{hostname}` by the address
   * its SSH connection went to (see {@link healthCheckUrlFor}).
   */
  readonly url?: string | undefined;
  /** Limit for each check in ms (default 10 000). */
  readonly timeoutMs?: number | undefined;
}

/** Default limit of each health check, in ms. */
export const DEFAULT_HEALTH_CHECK_TIMEOUT_MS = 10_000;

/** Time kept for the confirmation itself after the health checks, before the host's deadline. */
const CONFIRM_MARGIN_MS = 3000;

/** Whether an activation asks for a confirmation (magic rollback): switch or test with rollback on. */
export function asksConfirmation(action: ActivationAction, rollback?: RollbackOptions | undefined): boolean {
  return (rollback?.enabled ?? true) && (action === 'switch' || action === 'test');
}

/**
 * A health-check URL with `{host}` (the target's name) and `{hostname}` (the address its SSH
 * connection went to; an IPv6 one in brackets) filled in. Pure.
 * @throws PideployError `PIDEPLOY_USAGE` for an unknown placeholder, or what is not an http(s) URL once filled in.
 */
export function healthCheckUrlFor(template: string, where: { readonly host: string; readonly hostname: string }): string {
  const hostname = where.hostname.includes(':') && !where.hostname.startsWith('[') ? `[${where.hostname}]` : where.hostname;
  const url = template.replace(/\{[^{}]*\}/gu, (placeholder) => {
    if (placeholder === '{host}') return where.host;
    if (placeholder === '{hostname}') return hostname;
    throw new PideployError({
      code: 'PIDEPLOY_USAGE',
      message: `the health check URL ${template} has an unknown placeholder ${placeholder}`,
      hint: "use {host} (the host's name) or {hostname} (the address its SSH connection goes to)",
    });
  });
  if (!/^https?:\/\//iu.test(url) || !URL.canParse(url)) {
    throw new PideployError({
      code: 'PIDEPLOY_USAGE',
      message: `the health check URL for ${where.host} is not a valid http(s) URL: ${url}`,
      hint: 'e.g. http://{hostname}:8080/health',
    });
  }
  return url;
}

/**
 * Whether health checks gate something: the confirmation of the magic rollback
 * ({@link asksConfirmation}), or, with a reboot after `switch` or `boot` (rollback on), the host's
 * return from it (a failed check there sends it back to the generation it had, see `rebootSystem`).
 */
export function healthChecksGate(action: ActivationAction, rollback?: RollbackOptions | undefined, reboot = false): boolean {
  return asksConfirmation(action, rollback) || (reboot && (rollback?.enabled ?? true) && (action === 'switch' || action === 'boot'));
}

/**
 * Refuses health checks that could gate nothing ({@link healthChecksGate}), before the host is
 * touched: they run between the activation and its confirmation, or after a reboot, and only a
 * rollback makes a failed one count; and a URL's placeholders must be known ones. (Each check gets
 * at most the time left before the host's confirmation deadline, when it runs there.)
 * @throws PideployError `PIDEPLOY_USAGE` naming the conflict.
 */
export function checkHealthCheckUse(input: {
  readonly host: string;
  readonly action: ActivationAction;
  readonly rollback?: RollbackOptions | undefined;
  readonly healthChecks?: HealthChecks | undefined;
  /** The host reboots into the system after the activation (`--reboot`). */
  readonly reboot?: boolean | undefined;
}): void {
  const checks = input.healthChecks;
  if (checks === undefined || (checks.command === undefined && checks.url === undefined)) return;
  if (checks.url !== undefined) healthCheckUrlFor(checks.url, { host: input.host, hostname: 'localhost' });
  if (!healthChecksGate(input.action, input.rollback, input.reboot === true)) {
    const why = input.rollback?.enabled === false ? 'the magic rollback is off' : `--action ${input.action} has no confirmation`;
    throw new PideployError({
      code: 'PIDEPLOY_USAGE',
      message: `${input.host} has a health check, but ${why}: the check runs before the confirmation (or after a reboot), and nothing would roll back a failed one`,
      hint:
        input.rollback?.enabled === false
          ? 'drop --no-rollback, or the health check (--no-health-check)'
          : 'use --action switch or test, or boot with --reboot (the check then runs once the host is back), or drop the health check (--no-health-check)',
    });
  }
}

/** Input of {@link activateSystem}. */
export interface ActivateSystemInput extends ActivationTarget {
  /** The system (`config.system.build.toplevel`), already in the target's store. */
  readonly toplevel: string;
  /** The bundle to GC-root at `/etc/nixos/current-configuration` (default: the toplevel is rooted). */
  readonly bundle?: string | undefined;
  /** What `switch-to-configuration` does (default switch). */
  readonly action?: ActivationAction | undefined;
  /**
   * Activate this specialisation of the system (`toplevel/specialisation/NAME`, NixOS's
   * `specialisation.NAME`), as `nixos-rebuild --specialisation` does: the profile still gets
   * `toplevel` (the boot default), and a rollback goes back to what ran before. switch, test and
   * dry-activate only.
   */
  readonly specialisation?: string | undefined;
  readonly rollback?: RollbackOptions | undefined;
  readonly healthChecks?: HealthChecks | undefined;
  /** Activate even if the target already runs this toplevel. */
  readonly force?: boolean | undefined;
  /** `NIXOS_INSTALL_BOOTLOADER=1` (install, not just update, the boot loader). */
  readonly installBootloader?: boolean | undefined;
  /**
   * Seconds `switch-to-configuration` may run on the host before it is stopped and the host rolls
   * back, as for a failed activation (default {@link DEFAULT_ACTIVATION_TIMEOUT_SECONDS}; 0: no limit).
   */
  readonly activationTimeoutSeconds?: number | undefined;
  /**
   * What the host runs, read by the caller earlier in the same deployment with
   * {@link readHostSystems} (a deployment does it while the system builds): the activation then
   * starts without reading it again: the rollback warning uses it as read (the worker itself
   * reads what runs when it starts, so a rollback is always to the real previous system). When it
   * says the host is already done ({@link activationIsDone}) but was read more than
   * {@link HOST_SYSTEMS_TRUSTED_MS} ago (or says not when), the host is read once more before
   * anything is skipped: a long build leaves time for another deployment to change the host.
   * Default: read it first (one round trip).
   */
  readonly hostSystems?: HostSystems | undefined;
  /**
   * The bundle's `bin/activate` is this stage's script (the caller checked, e.g. with
   * {@link speaksActivationProtocol} on the local copy): it is run without looking at it on the
   * host first. Only used with {@link ActivateSystemInput.hostSystems}.
   */
  readonly bundleSpeaksProtocol?: boolean | undefined;
}

/**
 * How long a caller's {@link HostSystems} read is trusted to skip an activation as already done
 * (5 s): an older one is read again first. A no-op redeploy reads the host while its system
 * evaluates, well within it; after a longer build one more round trip costs nothing that counts.
 */
export const HOST_SYSTEMS_TRUSTED_MS = 5000;

/** The systems a host runs and boots (undefined: none). */
export interface HostSystems {
  /** `/run/current-system`, resolved. */
  readonly running: string | undefined;
  /** The system profile's system (what boots next), resolved. */
  readonly profile: string | undefined;
  /** The specialisation of the profile's system that runs (`running` is `profile/specialisation/NAME`), if one does. */
  readonly runningSpecialisation?: string | undefined;
  /**
   * Where the GC root `/etc/nixos/current-configuration` points (the deployed bundle, or a
   * system activated without one), resolved; undefined if unset or not read.
   */
  readonly currentConfiguration?: string | undefined;
  /**
   * The kernel, initrd and kernel modules the host booted with (`/run/booted-system`'s links;
   * undefined: it has no booted system): a system with other ones runs on these until a reboot.
   */
  readonly bootedParts?: BootParts | undefined;
  /** When the host was asked (`Date.now()`), as {@link readHostSystems} records it. */
  readonly readAtMs?: number | undefined;
  /**
   * The deployment that has the host now (its state is not final: starting, activating, or
   * awaiting its confirmation; `id` is "" while the lock names none yet), if any: then the host does
   * not count as running anything for good, and a new activation is refused until that one ends.
   */
  readonly busyWith?: HostHolder | undefined;
  /** The lines of the file {@link ReadHostSystemsOptions.alsoRead} names, when one was (empty: no such file, or an empty one). */
  readonly alsoRead?: readonly string[] | undefined;
}

/** The deployment that has a host (see {@link HostSystems.busyWith}). */
export interface HostHolder {
  readonly id: string;
  readonly state: string;
  /**
   * It was left behind: awaiting its confirmation a minute past its deadline (its watchdog is
   * gone), or starting for over a minute (its start was cut off). The next activation takes the
   * host over from it; until then it still counts as having the host.
   */
  readonly leftBehind?: boolean | undefined;
}

/**
 * The error for a host another deployment has (as {@link readHostSystems} found it), raised
 * before anything is done: `unchanged` says what was not (`nothing was collected`), `retry` what
 * to run once that deployment ended.
 */
export function hostBusyError(host: string, holder: HostHolder, unchanged: string, retry: string): PideployError {
  const who = holder.id === '' ? 'another deployment' : `deployment ${holder.id}`;
  return new PideployError({
    code: ERROR_CODES.busy,
    message: `${host} is busy, ${unchanged}: ${who} is ${holder.state} there`,
    hint: `wait until it ends (pideploy status ${host} shows it), then ${retry}`,
  });
}

/** Options of {@link readHostSystems}. */
export interface ReadHostSystemsOptions {
  /**
   * A file the login user may read whose lines come back too, in the same round trip (read by the
   * shell: no process), e.g. the host's record of key files (`KEY_RECORD_FILE` of @pideploy/keys).
   */
  readonly alsoRead?: string | undefined;
}

/** What {@link activateSystem} did. */
export interface ActivationResult {
  readonly host: string;
  readonly action: ActivationAction;
  readonly toplevel: string;
  /** The specialisation of `toplevel` that was activated, if one was. */
  readonly specialisation?: string | undefined;
  /** `skipped`: the target already ran it; `succeeded`: activated (no confirmation asked); `confirmed`: activated and confirmed. */
  readonly outcome: 'skipped' | 'succeeded' | 'confirmed';
  /** The deployment id on the target (not for skipped). */
  readonly deployId: string | undefined;
  /** The final state file (not for skipped). */
  readonly state: ActivationState | undefined;
}

/** One wait on the target for an activation's state: how often it looks, and how many times at most. */
export interface StateWaitRound {
  /** Seconds between two looks at the state file (a `sleep` argument: fractions work with coreutils and busybox). */
  readonly everySeconds: string;
  /** Looks before the round ends and pideploy asks again (a round lasts up to 10 s; the first ends at the 3 s mark). */
  readonly looks: number;
}

/**
 * How the target waits for an activation that has run `elapsedMs` so far: it looks at the state
 * file every 0.1 s for the first 3 s (a lab or small system is done by then: seen within 0.1 s),
 * then every 0.5 s (a Pi's real activation takes tens of seconds: 2 `sleep`s a second there, and
 * one SSH round trip per 10 s instead of one per poll). Pure.
 */
export function stateWaitRound(elapsedMs: number): StateWaitRound {
  return elapsedMs < 3000 ? { everySeconds: '0.1', looks: Math.max(1, Math.ceil((3000 - elapsedMs) / 100)) } : { everySeconds: '0.5', looks: 20 };
}

/**
 * Waits ON THE TARGET until the state file says the activation is over or awaits confirmation (or
 * the round ends), then prints it: one SSH command instead of a poll every few hundred ms. Woken
 * by the deployment's FIFO at once where the login user may open it ({@link AWAIT_STATE_FUNCTION}),
 * else it looks every so often (a `sleep` without fractions, POSIX, makes each look wait 1 s).
 */
const WAIT_FOR_STATE_SCRIPT = `${AWAIT_STATE_FUNCTION}
await_state "$1" "$2" "$3" "$4" "$5"
exec cat "$1"`;

const ERROR_CODES = {
  failed: 'PIDEPLOY_ACTIVATION_FAILED',
  unconfirmed: 'PIDEPLOY_ACTIVATION_UNCONFIRMED',
  lost: 'PIDEPLOY_ACTIVATION_LOST',
  remote: 'PIDEPLOY_ACTIVATION_REMOTE_FAILED',
  rollbackImpossible: 'PIDEPLOY_ROLLBACK_IMPOSSIBLE',
  unreadable: ACTIVATION_UNREADABLE,
  busy: 'PIDEPLOY_ACTIVATION_BUSY',
} as const;

/**
 * How long the activation's start waits for the outcome (or the confirmation to be asked for)
 * before it returns and the deployer waits in rounds (one round's length, see {@link stateWaitRound}).
 */
const START_WAIT_SECONDS = 10;

/** Error codes this package raises. */
export const ACTIVATE_ERROR_CODES = ERROR_CODES;

/**
 * Wraps sudo options so the first password the provider gives is remembered (in memory only) and
 * reused for later connections: exactly one prompt per run. A known `password` is passed as is.
 */
export function rememberSudoPassword(options: CreateSudoOptions = {}): CreateSudoOptions {
  if (options.password !== undefined || options.passwordProvider === undefined) return options;
  const ask = options.passwordProvider;
  let remembered: string | undefined;
  const passwordProvider: SudoPasswordProvider = async (request) => {
    if (remembered !== undefined && request.attempt === 1) return remembered;
    remembered = await ask(request);
    return remembered;
  };
  return { ...options, passwordProvider };
}

const rememberedSudo = new WeakMap<object, CreateSudoOptions>();

/** The target's sudo options, remembering the password for its later connections (internal: reboot.ts). */
export function sudoOptionsOf(target: ActivationTarget): CreateSudoOptions {
  const given = target.sudo ?? {};
  let options = rememberedSudo.get(given);
  if (options === undefined) {
    options = rememberSudoPassword(given);
    rememberedSudo.set(given, options);
  }
  return options;
}

/** Waits `ms`, or less when `signal` aborts; its abort listener goes either way (internal: reboot.ts). */
export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
  });
}

/** What events and errors call the target (internal: reboot.ts). */
export function hostName(target: ActivationTarget): string {
  return target.name ?? target.session?.host.alias ?? target.target;
}

function remoteFailure(what: string, argv: readonly string[], result: { exitCode: number | null; stderr: string; stdout: string }, host: string): PideployError {
  const output = tailLines(result.stderr || result.stdout, 3);
  return new PideployError({
    code: ERROR_CODES.remote,
    message: `${what} on ${host} failed (exit ${result.exitCode ?? 'signal'})${output === '' ? '' : `: ${output}`}`,
    hint: 'rerun with --verbose to see the command and its whole output; the host must run NixOS (or Nix) with a POSIX shell for the login user',
    commandFailure: { command: [...argv], ...(result.exitCode === null ? {} : { exitCode: result.exitCode }), stderrTail: tailLines(result.stderr) },
  });
}

/**
 * Makes the activation script runnable as root on the target; returns its path: the bundle's own
 * `bin/activate` when it speaks this protocol (see {@link probeHost}), else an uploaded copy.
 */
async function installScript(sudo: SudoRunner, session: SshSession, deployId: string, bundledScript: string | undefined): Promise<string> {
  if (bundledScript !== undefined) return bundledScript;
  const scriptPath = uploadedScriptPath(deployId);
  const argv = ['sh', '-c', 'umask 022 && mkdir -p "$1" && chmod 755 "$1" && cat >"$2.tmp" && chmod 755 "$2.tmp" && mv -f "$2.tmp" "$2"', 'install-activate', ACTIVATION_STATE_DIR, scriptPath];
  const result = await sudo.exec(argv, { stdin: renderActivationScript() });
  if (result.exitCode !== 0) throw remoteFailure('uploading the activation script', argv, result, session.display);
  return scriptPath;
}

/**
 * The command that waits on the target for the state file `stateFile` for one round (see
 * {@link stateWaitRound}), woken through the FIFO `wakeFile` (default: the state file's, see
 * {@link activationWakePath}) where it may open it; exits non-zero without a state file.
 */
export function stateWaitCommand(stateFile: string, round: StateWaitRound, wakeFile = `${stateFile.replace(/\.state$/u, '')}.wake`): string[] {
  const seconds = Math.max(1, Math.ceil(Number(round.everySeconds) * round.looks));
  return ['sh', '-c', WAIT_FOR_STATE_SCRIPT, 'wait-for-state', stateFile, wakeFile, String(seconds), round.everySeconds, String(round.looks)];
}

async function waitForState(session: SshSession, deployId: string, round: StateWaitRound, signal: AbortSignal): Promise<ActivationState | undefined> {
  const result = await session.exec(stateWaitCommand(activationStatePath(deployId), round), { signal });
  if (result.exitCode !== 0) return undefined;
  return parseActivationState(result.stdout);
}

async function readState(session: SshSession, deployId: string, signal: AbortSignal): Promise<ActivationState | undefined> {
  const result = await session.exec(['cat', activationStatePath(deployId)], { signal });
  if (result.exitCode !== 0) return undefined;
  return parseActivationState(result.stdout);
}

/** {@link stateFromDecisionOutput}, undefined for output it cannot read (the state file is then read, which says what is wrong). */
function printedState(stdout: string): ActivationState | undefined {
  try {
    return stateFromDecisionOutput(stdout);
  } catch {
    return undefined;
  }
}

/** `activate confirm|abort` output cut at its last {@link STATE_OUTPUT_MARKER} line: what it said, and the state file after it (undefined: none, e.g. an older script). */
function splitDecisionOutput(stdout: string): { readonly said: string; readonly stateText: string | undefined } {
  const lines = stdout.split('\n');
  const marker = lines.lastIndexOf(STATE_OUTPUT_MARKER);
  return marker < 0 ? { said: stdout, stateText: undefined } : { said: lines.slice(0, marker).join('\n'), stateText: lines.slice(marker + 1).join('\n') };
}

/** What `activate confirm|abort` said before the state file they print (all of it from an older script). */
export function withoutPrintedState(stdout: string): string {
  return splitDecisionOutput(stdout).said;
}

/** The state file `activate confirm|abort` print after their marker line (undefined: none, e.g. an older script). */
export function stateFromDecisionOutput(stdout: string): ActivationState | undefined {
  const { stateText } = splitDecisionOutput(stdout);
  return stateText === undefined ? undefined : parseActivationState(stateText);
}

/**
 * Whether a host already is where an activation would take it, so that it can be skipped: no
 * other deployment has it (one awaiting its confirmation would still roll back by itself), it runs
 * (`switch`, `test`) and boots (`switch`, `boot`) `toplevel`, and, when a bundle is given, its GC
 * root `/etc/nixos/current-configuration` is that bundle. A new bundle of the same system (a
 * comment changed in configuration.nix) is not done: activating it moves the GC root to it, so
 * that the host keeps it and `status` shows it. Never true for `dry-activate`. With a
 * specialisation, "runs" means it runs that specialisation of `toplevel`, which it boots (the one
 * case the host tells: see {@link HostSystems.runningSpecialisation}).
 */
export function activationIsDone(
  systems: HostSystems,
  wanted: { readonly action: ActivationAction; readonly toplevel: string; readonly specialisation?: string | undefined; readonly bundle?: string | undefined },
): boolean {
  const { action, toplevel, specialisation, bundle } = wanted;
  if (action === 'dry-activate' || systems.busyWith !== undefined) return false;
  const runs =
    specialisation === undefined
      ? action === 'boot' || systems.running === toplevel
      : systems.profile === toplevel && systems.runningSpecialisation === specialisation;
  const boots = action === 'test' || systems.profile === toplevel;
  return runs && boots && (bundle === undefined || systems.currentConfiguration === bundle);
}

/**
 * What an activation needs to know before it starts, in ONE round trip (each is one over a slow
 * link): the running system, the system profile's system, and the bundle's `bin/activate` if it
 * speaks this protocol (its marker line).
 */
async function probeHost(session: SshSession, bundle: string | undefined, signal: AbortSignal, alsoRead = ''): Promise<HostSystems & { bundledScript: string | undefined }> {
  const bundled = bundle === undefined ? '' : `${bundle}/bin/activate`;
  // Also who has the host (the activation script's own read_lock, see take_host): its deployment id and state, read by the shell.
  const script = [
    READ_LOCK_FUNCTION,
    // A holder whose first state is not written yet is starting (as the script's refuse_if_busy says).
    'state_dir=$4; read_lock; s=',
    // (Stricter than the script: a holder it would take over, overdue or cut off while starting, still
    // counts here; then nothing is skipped as "already running", and the start itself decides. Such
    // a holder is said with a \`holder-left-behind\` line: the script's refuse_if_busy test, one date.)
    'd=; u=; if [ -n "$lock" ]; then s=starting; if [ -n "$holder" ] && [ -f "$4/$holder.state" ]; then while IFS= read -r l; do case $l in state=*) s=${l#state=} ;; deadline=*) d=${l#deadline=} ;; updated=*) u=${l#updated=} ;; esac; done <"$4/$holder.state"; fi; fi',
    'r=$(readlink -e /run/current-system); p=$(readlink -e "$1")',
    'printf \'%s\\n\' "$r" "$p" "$(readlink -e "$5")" "$holder" "$s"',
    'case $d in *[!0-9]*) d= ;; esac; case $u in *[!0-9]*) u= ;; esac',
    `if { [ "$s" = awaiting-confirmation ] && [ -n "$d" ]; } || { [ "$s" = starting ] && [ -n "$u" ]; }; then now=$(date +%s); if { [ "$s" = awaiting-confirmation ] && [ "$now" -gt $((d + ${LEFT_BEHIND_SECONDS})) ]; } || { [ "$s" = starting ] && [ "$now" -gt $((u + ${LEFT_BEHIND_SECONDS})) ]; }; then echo holder-left-behind; fi; fi`,
    // Which specialisation of the profile's system runs, if one does (no process; none when it runs the system itself).
    printRunningSpecialisationScript('r', 'p'),
    'if [ -n "$2" ] && grep -qxF "$3" "$2" 2>/dev/null; then echo speaks-protocol; fi',
    // What it booted with that a switch cannot change (kernel, initrd, modules): one find.
    printBootPartsScript('/run/booted-system'),
    'if [ -n "$6" ] && [ -r "$6" ]; then while IFS= read -r l || [ -n "$l" ]; do printf \'also-read %s\\n\' "$l"; done <"$6"; fi',
  ].join('\n');
  const readAtMs = Date.now();
  const result = await session.exec(['sh', '-c', script, 'probe-host', SYSTEM_PROFILE, bundled, ACTIVATION_PROTOCOL_MARKER, ACTIVATION_STATE_DIR, CURRENT_CONFIGURATION_ROOT, alsoRead], { signal });
  if (result.exitCode !== 0) throw remoteFailure('reading the running system and profile', ['sh', '-c', script], result, session.display);
  const [running = '', profile = '', currentConfiguration = '', holder = '', holderState = '', ...tagged] = result.stdout.split('\n');
  const leftBehind = tagged.includes('holder-left-behind') ? { leftBehind: true } : {};
  const busy = holderState !== '' && !isFinalActivationState(holderState) ? { busyWith: { id: holder, state: holderState, ...leftBehind } } : {};
  return {
    running: running === '' ? undefined : running,
    profile: profile === '' ? undefined : profile,
    runningSpecialisation: parseRunningSpecialisation(tagged),
    currentConfiguration: currentConfiguration === '' ? undefined : currentConfiguration,
    bootedParts: parseBootParts(tagged),
    readAtMs,
    ...(alsoRead === '' ? {} : { alsoRead: tagged.filter((line) => line.startsWith('also-read ')).map((line) => line.slice('also-read '.length)) }),
    ...busy,
    bundledScript: tagged.includes('speaks-protocol') ? bundled : undefined,
  };
}

/**
 * Reads what a host runs (`/run/current-system`), boots next (the system profile) and has
 * deployed (`/etc/nixos/current-configuration`), and who has it, in one command and without
 * sudo, for {@link ActivateSystemInput.hostSystems}.
 */
export async function readHostSystems(session: SshSession, signal?: AbortSignal, options: ReadHostSystemsOptions = {}): Promise<HostSystems> {
  const { bundledScript: _, ...systems } = await probeHost(session, undefined, signal ?? new AbortController().signal, options.alsoRead);
  return systems;
}

/** Whether an activation script text speaks this stage's protocol (a bundle's `bin/activate`, read where it was built). */
export function speaksActivationProtocol(scriptText: string): boolean {
  return scriptText.split('\n').includes(ACTIVATION_PROTOCOL_MARKER);
}

/** How long a health check may take, and what set that limit (for the message when it is reached; internal: reboot.ts). */
export interface CheckLimit {
  readonly ms: number;
  readonly what: string;
}

function outOfTime(name: string, limit: CheckLimit): string {
  return `${name} did not finish within ${limit.ms / 1000} s (${limit.what})`;
}

/** Runs a health-check command on the target: undefined when it exits 0, else why not (one line naming the command; internal: reboot.ts). */
export async function checkCommand(session: SshSession, command: readonly string[], limit: CheckLimit, signal: AbortSignal): Promise<string | undefined> {
  const name = `the health check \`${shellJoin(command)}\``;
  if (limit.ms <= 0) return outOfTime(name, limit);
  const timeout = AbortSignal.timeout(limit.ms);
  try {
    const check = await session.exec(command, { signal: AbortSignal.any([signal, timeout]) });
    if (check.exitCode === 0) return undefined;
    const output = tailLines((check.stderr || check.stdout).trim(), 1);
    return `${name} exited ${check.exitCode ?? 'by a signal'}${output === '' ? '' : `: ${output}`}`;
  } catch (error) {
    if (signal.aborted || !timeout.aborted) throw error;
    return outOfTime(name, limit);
  }
}

/** Fetches a health-check URL from the deployer: undefined when it answers 2xx, else why not (one line naming the URL; internal: reboot.ts). */
export async function checkUrl(url: string, limit: CheckLimit): Promise<string | undefined> {
  if (limit.ms <= 0) return outOfTime(`the health check ${url}`, limit);
  const timeout = AbortSignal.timeout(limit.ms);
  try {
    const response = await fetch(url, { signal: timeout, redirect: 'follow' });
    await response.body?.cancel();
    return response.ok ? undefined : `the health check ${url} answered HTTP ${response.status}${response.statusText === '' ? '' : ` ${response.statusText}`}`;
  } catch (error) {
    if (timeout.aborted) return outOfTime(`the health check ${url}`, limit);
    // fetch says only "fetch failed"; the cause says what (e.g. "connect ECONNREFUSED 127.0.0.1:8080").
    const cause = error instanceof Error && error.cause instanceof Error ? error.cause : error;
    return `the health check ${url} could not be fetched: ${cause instanceof Error ? cause.message : String(cause)}`;
  }
}

/**
 * The script's refusal to run while another deployment has the host (take_host, refuse_if_busy:
 * exit {@link ACTIVATION_BUSY_EXIT_CODE} and a {@link BUSY_OUTPUT_MARKER} line of fields) as an
 * error saying what to do in that deployment's state; undefined for any other result.
 */
export function busyErrorOf(host: string, result: { readonly exitCode: number | null; readonly stderr: string }, command: readonly string[]): PideployError | undefined {
  if (result.exitCode !== ACTIVATION_BUSY_EXIT_CODE) return undefined;
  const fields = new RegExp(`^${BUSY_OUTPUT_MARKER} id=(\\S*) state=(\\S*) deadline=(\\S*) bundle=(\\S*)(?: log=(\\S*))? lock=(\\S*)$`, 'mu').exec(result.stderr);
  if (fields === null) return undefined;
  const [, id = '', state = '', deadline = '', bundle = '', log, lock = ''] = fields;
  // An older script names no log: a deployment's is then where the script keeps them.
  const logFile = log ?? (id === '' ? '' : `${ACTIVATION_STATE_DIR}/${id}.log`);
  const who = id === '' ? 'another deployment' : `deployment ${id}`;
  // The deadline is in Unix seconds by the host's clock: said as a time.
  const until = /^\d+$/u.test(deadline) ? ` (confirmation deadline ${new Date(Number(deadline) * 1000).toISOString().replace(/\.\d+Z$/u, 'Z')} by the host's clock)` : '';
  const script = bundle === '' ? uploadedScriptPath(id) : `${bundle}/bin/activate`;
  const hint =
    state === 'awaiting-confirmation' && id !== ''
      ? `wait until it ends (unconfirmed, it rolls back by itself at its deadline), or end it now on the host: sudo ${script} confirm ${id} (keep it) or abort ${id} (roll it back)`
      : `wait until it ends (${logFile === '' ? `pideploy status ${host} shows it` : `its log: ${logFile} on the host`}); if nothing runs it any more, remove ${lock} on the host`;
  return new PideployError({
    code: ERROR_CODES.busy,
    message: `${host} is busy, nothing was changed: ${who} is ${state} there${until}; one deployment at a time`,
    hint,
    commandFailure: { command, exitCode: ACTIVATION_BUSY_EXIT_CODE, stderrTail: tailLines(result.stderr) },
  });
}

/**
 * The exit status of a NixOS `switch-to-configuration` whose new system has an init incompatible
 * with the running one ("The new configuration won't take effect until you reboot the system").
 */
export const SWITCH_NEEDS_REBOOT_EXIT_CODE = 100;

/** The hint of a failed activation: the log, or the reboot a new system with another init needs. Pure. */
export function activationFailureHint(state: ActivationState, deployId: string): string {
  const log = `the log is ${ACTIVATION_STATE_DIR}/${deployId}.log on the host`;
  if (state.exitCode !== SWITCH_NEEDS_REBOOT_EXIT_CODE || state.action === 'boot') return log;
  return `the new system's init cannot take over from the running one without a reboot: deploy it with --action boot --reboot; ${log}`;
}

function describeRollback(state: ActivationState): string {
  if (state.state === 'failed') return `the rollback failed too: ${state.message}`;
  const running = state.previousSystem === '' ? '' : `, running ${state.previousSystem} again`;
  if (state.rolledBackTo !== undefined) return `the host rolled back to generation ${state.rolledBackTo}${running}`;
  if (state.previousSystem !== '') return `the host went back to ${state.previousSystem}`;
  return 'the host rolled back';
}

/** The error for a deployment that failed on a host with nothing to roll back to. */
function rollbackImpossible(host: string, toplevel: string, action: ActivationAction, what: string, deployId: string): PideployError {
  const basis = action === 'test' ? 'no system ran there before (no /run/current-system)' : 'no system ran there before (no /run/current-system) and its system profile had no generation';
  return new PideployError({
    code: ERROR_CODES.rollbackImpossible,
    message: `${what}, and ${host} cannot be rolled back: ${basis}, so it is left as the activation left it (${toplevel})`,
    hint: `repair the configuration and activate again (the log is ${ACTIVATION_STATE_DIR}/${deployId}.log on the host); if SSH no longer works, use the host's console`,
  });
}

/**
 * Activates `toplevel` on a target exactly as nixos-rebuild does after building (profile for
 * switch/boot, then `switch-to-configuration ACTION`), detached on the target so a dropped link
 * cannot stop it. Failure → the target rolls back at once. With magic rollback (switch/test by
 * default) the deployment is confirmed over a NEW connection, after the health checks pass;
 * without a confirmation in time the target rolls back by itself. Never evaluates or builds on
 * the target. Throws a PideployError (with the generation and system the host is back on) when
 * the activation fails or cannot be confirmed: `PIDEPLOY_ACTIVATION_FAILED`,
 * `PIDEPLOY_ACTIVATION_UNCONFIRMED`, or `PIDEPLOY_ROLLBACK_IMPOSSIBLE` when the host had nothing
 * to go back to (see {@link RollbackOptions}).
 */
export async function activateSystem(input: ActivateSystemInput, context: PideployContext): Promise<ActivationResult> {
  const action = input.action ?? 'switch';
  const signal = context.signal;
  const host = hostName(input);
  const rollback = asksConfirmation(action, input.rollback);
  const confirmTimeoutSeconds = input.rollback?.confirmTimeoutSeconds ?? DEFAULT_CONFIRM_TIMEOUT_SECONDS;
  // Checks that could gate nothing are refused before the host is touched (here they gate the confirmation).
  checkHealthCheckUse({ host, action, rollback: input.rollback, healthChecks: input.healthChecks });
  const specialisation = input.specialisation;
  checkSpecialisationUse({ action, specialisation });
  // What the messages call the system activated: the toplevel, and its specialisation if one.
  const activated = describeActivated(input.toplevel, specialisation);
  const sudoOptions = sudoOptionsOf(input);
  const connect = { ...input.connect, signal };

  let session = input.session ?? (await connectSsh(input.target, connect, context));
  const ownedSessions: SshSession[] = input.session === undefined ? [session] : [];
  const started = performance.now();
  try {
    // One sudo (and its one password) before anything changes.
    let sudo = await session.sudo(sudoOptions);

    // Known from earlier in this deployment (and a bundle known to speak the protocol): no round trip.
    const known = input.hostSystems !== undefined && (input.bundle === undefined || input.bundleSpeaksProtocol === true);
    let systems = known
      ? { ...input.hostSystems, bundledScript: input.bundle === undefined ? undefined : `${input.bundle}/bin/activate` }
      : await probeHost(session, input.bundle, signal);
    const { running, profile } = systems;
    if (action !== 'dry-activate') {
      if (!canRollBack({ action, previousSystem: running, hadProfileGeneration: profile !== undefined })) {
        context.reporter.emit({
          type: 'log',
          level: 'warn',
          host,
          message: `${host} runs no system (no /run/current-system)${action === 'test' ? '' : ' and has no system profile generation'}: if this activation fails or is not confirmed, there is nothing to roll back to`,
        });
      }
      const wanted = { action, toplevel: input.toplevel, specialisation, bundle: input.bundle };
      let already = input.force !== true && activationIsDone(systems, wanted);
      // A skip is decided on a recent read: an older one may predate another deployment.
      const readRecently = systems.readAtMs !== undefined && Date.now() - systems.readAtMs <= HOST_SYSTEMS_TRUSTED_MS;
      if (already && known && !readRecently) {
        systems = await probeHost(session, input.bundle, signal);
        already = activationIsDone(systems, wanted);
      }
      if (already) {
        context.reporter.emit({ type: 'log', level: 'info', host, message: `${host} already runs ${activated}; nothing to do (--force to activate again)` });
        return { host, action, toplevel: input.toplevel, specialisation, outcome: 'skipped', deployId: undefined, state: undefined };
      }
      if (input.force !== true && activationIsDone(systems, { ...wanted, bundle: undefined })) {
        const deployed = systems.currentConfiguration ?? 'nothing';
        context.reporter.emit({ type: 'log', level: 'info', host, message: `${host} already runs ${activated}, but its ${CURRENT_CONFIGURATION_ROOT} is ${deployed}: activating again to deploy ${input.bundle ?? input.toplevel}` });
      }
    }

    const deployId = newDeployId();
    const script = await installScript(sudo, session, deployId, systems.bundledScript);
    const startArgv = scriptCommand(script, [
      ...activateArguments({
        action,
        toplevel: input.toplevel,
        specialisation,
        bundle: input.bundle,
        deployId,
        rollback,
        confirmTimeoutSeconds,
        installBootloader: input.installBootloader,
        activationTimeoutSeconds: input.activationTimeoutSeconds ?? DEFAULT_ACTIVATION_TIMEOUT_SECONDS,
        waitStateSeconds: START_WAIT_SECONDS,
      }),
    ]);
    const start = await sudo.exec(startArgv, { signal });
    // The connection dropped while the start waited for the outcome: the activation may well run
    // (the start ignores SIGHUP before it takes the host); the rounds below find out from its state.
    const startUnanswered = start.exitCode === null && session.closed && !signal.aborted;
    if (!startUnanswered) {
      const busy = busyErrorOf(host, start, startArgv);
      if (busy !== undefined) throw busy;
      if (start.exitCode !== 0) throw remoteFailure('starting the activation', startArgv, start, session.display);
      // What the script said on the way (e.g. that it took over from a deployment left behind).
      for (const line of start.stderr.split('\n')) {
        if (line.startsWith('activate: ')) context.reporter.emit({ type: 'log', level: 'warn', host, message: `${host}: ${line.slice('activate: '.length)}` });
      }
    }
    // Emitted once the activation runs detached on the target (from here on, a dropped link cannot stop it).
    let announced = false;
    const announce = () => {
      if (!announced) context.reporter.emit({ type: 'activate-start', host, action, toplevel: input.toplevel, ...(specialisation === undefined ? {} : { specialisation }) });
      announced = true;
    };
    if (!startUnanswered) announce();

    // The start waited for the outcome (a short activation's comes with it); else the target waits
    // for it in rounds and then says it; a dropped connection is replaced (the activation goes on regardless).
    let state: ActivationState | undefined = startUnanswered ? undefined : printedState(start.stdout);
    let reconnects = 0;
    let stateless = 0;
    while (state === undefined || !(isFinalActivationState(state.state) || state.state === 'awaiting-confirmation')) {
      try {
        if (session.closed) throw new Error('connection closed');
        state = await waitForState(session, deployId, stateWaitRound(performance.now() - started), signal);
      } catch (error) {
        // Only a lost connection is worth reconnecting for; a state file that cannot be read stays so.
        if (signal.aborted || (PideployError.isInstance(error) && error.code === ACTIVATION_UNREADABLE)) throw error;
        reconnects += 1;
        if (reconnects > 5) {
          throw new PideployError({
            code: ERROR_CODES.lost,
            message: `lost the connection to ${host} during activation ${deployId} and could not get it back`,
            hint: `the activation goes on on the host; see \`pideploy status ${host}\``,
            cause: error,
          });
        }
        context.reporter.emit({ type: 'log', level: 'warn', host, message: `connection to ${host} lost during activation; reconnecting` });
        await sleep(1000, signal);
        try {
          session = await connectSsh(input.target, connect, context);
          ownedSessions.push(session);
          sudo = await session.sudo(sudoOptions);
        } catch {
          // try again on the next round
        }
        continue;
      }
      if (state !== undefined) announce();
      if (state !== undefined && (isFinalActivationState(state.state) || state.state === 'awaiting-confirmation')) break;
      // No state file: a start that went unanswered did not get as far as taking the host; else
      // the state is gone (/run is emptied at boot) or, just once, not readable yet.
      if (state === undefined) {
        stateless += 1;
        if (startUnanswered || stateless >= 3) {
          throw new PideployError({
            code: ERROR_CODES.lost,
            message: startUnanswered
              ? `lost the connection to ${host} while starting activation ${deployId}, which did not start (the host has no state for it)`
              : `the state of activation ${deployId} is gone from ${host} (${activationStatePath(deployId)}; did the host reboot?)`,
            hint: `see what the host runs with \`pideploy status ${host}\`, then deploy again`,
          });
        }
        await sleep(300, signal);
      }
      if (signal.aborted) throw new PideployError({ code: 'PIDEPLOY_INTERRUPTED', message: `interrupted while activating ${host}` });
    }

    if (state.state === 'succeeded') {
      context.reporter.emit({ type: 'activate-end', host, action, ok: true, durationMs: performance.now() - started });
      return { host, action, toplevel: input.toplevel, specialisation, outcome: 'succeeded', deployId, state };
    }
    if (state.state !== 'awaiting-confirmation') {
      context.reporter.emit({ type: 'activate-end', host, action, ok: false, durationMs: performance.now() - started });
      if (state.state === 'failed' && state.exitCode !== undefined && !stateCanRollBack(state)) {
        // The state says why, then that no rollback was possible (which the error says its own way).
        const why = state.message.split('; rollback impossible')[0];
        throw rollbackImpossible(host, input.toplevel, action, `activating ${activated} (${action}) on ${host} failed${why ? `: ${why}` : ''}`, deployId);
      }
      throw new PideployError({
        code: ERROR_CODES.failed,
        message: `activating ${activated} (${action}) on ${host} failed: ${state.message}; ${describeRollback(state)}`,
        hint: activationFailureHint(state, deployId),
      });
    }

    // Magic rollback: prove a NEW login (and sudo) works, run the health checks, then confirm.
    context.reporter.emit({ type: 'phase-start', phase: 'confirm', host });
    const confirmStarted = performance.now();
    let problem: string | undefined;
    let healthCheckFailed = false;
    let confirmSession: SshSession | undefined;
    let confirmedState: ActivationState | undefined;
    try {
      confirmSession = await connectSsh(input.target, connect, context);
      ownedSessions.push(confirmSession);
      // The mode is known from the first connection: the confirm command itself (through sudo)
      // proves the new login can still become root, without a separate password check.
      const confirmSudo = await confirmSession.sudo({ ...sudoOptions, assumeMode: sudo.mode });
      // Each check gets its timeout, but no more than the time left before the host's deadline
      // (counted from before the start, so early), less a moment for the confirmation itself.
      const timeoutMs = input.healthChecks?.timeoutMs ?? DEFAULT_HEALTH_CHECK_TIMEOUT_MS;
      const limit = (): CheckLimit => {
        const leftMs = Math.floor(started + confirmTimeoutSeconds * 1000 - CONFIRM_MARGIN_MS - performance.now());
        return leftMs < timeoutMs ? { ms: Math.max(0, leftMs), what: `the time left before ${host}'s confirmation deadline (--confirm-timeout ${confirmTimeoutSeconds})` } : { ms: timeoutMs, what: 'its timeout' };
      };
      if (input.healthChecks?.command !== undefined) problem = await checkCommand(confirmSession, input.healthChecks.command, limit(), signal);
      if (problem === undefined && input.healthChecks?.url !== undefined) {
        problem = await checkUrl(healthCheckUrlFor(input.healthChecks.url, { host, hostname: confirmSession.host.hostname }), limit());
      }
      healthCheckFailed = problem !== undefined;
      if (problem === undefined) {
        const confirm = await confirmSudo.exec(scriptCommand(script, ['confirm', deployId]), { signal });
        if (confirm.exitCode !== 0) problem = `the confirmation was refused: ${tailLines(withoutPrintedState(confirm.stdout) + confirm.stderr, 1)}`;
        else confirmedState = printedState(confirm.stdout);
      }
    } catch (error) {
      problem = `a new SSH login (or sudo) to ${host} failed after activation: ${error instanceof Error ? error.message : String(error)}`;
    }

    if (problem === undefined && confirmSession !== undefined) {
      // The confirmation printed the final state (an older script did not: then it is read).
      const confirmed = confirmedState ?? (await readState(confirmSession, deployId, signal));
      context.reporter.emit({ type: 'phase-end', phase: 'confirm', host, ok: true, durationMs: performance.now() - confirmStarted });
      context.reporter.emit({ type: 'activate-end', host, action, ok: true, durationMs: performance.now() - started });
      return { host, action, toplevel: input.toplevel, specialisation, outcome: 'confirmed', deployId, state: confirmed ?? state };
    }

    // Not confirmed: ask the host to roll back now over the old connection if it still works,
    // else leave it to the watchdog; either way wait for the outcome when we can see it.
    context.reporter.emit({ type: 'phase-end', phase: 'confirm', host, ok: false, durationMs: performance.now() - confirmStarted });
    context.reporter.emit({ type: 'activate-end', host, action, ok: false, durationMs: performance.now() - started });
    let final: ActivationState | undefined;
    try {
      if (!session.closed) {
        const aborted = await sudo.exec(scriptCommand(script, ['abort', deployId]), { signal });
        final = printedState(aborted.stdout) ?? (await readState(session, deployId, signal));
      }
    } catch {
      final = undefined;
    }
    if (!stateCanRollBack(state)) throw rollbackImpossible(host, input.toplevel, action, `activated ${activated} on ${host} but could not confirm it: ${problem}`, deployId);
    const outcome =
      final !== undefined && isFinalActivationState(final.state)
        ? describeRollback(final)
        : `the host rolls back by itself within ${confirmTimeoutSeconds} s of the activation`;
    throw new PideployError({
      code: ERROR_CODES.unconfirmed,
      message: `activated ${activated} on ${host} but could not confirm it: ${problem}; ${outcome}`,
      hint: healthCheckFailed
        ? 'the new system failed its health check: fix the service (or the check) and deploy again'
        : 'fix the configuration (does it keep sshd and your key working?) and deploy again',
    });
  } finally {
    for (const owned of ownedSessions) await owned.close();
  }
}

/** Options of {@link rollbackSystem}. */
export interface RollbackSystemOptions {
  /** The generation to switch to (default: the one before the current one, as `nix-env --rollback` picks). */
  readonly to?: number | undefined;
  /**
   * `switch` (default): the host runs that generation now; `boot`: it becomes the boot default
   * only (the boot loader is updated), for a reboot into it (as `nixos-rebuild boot --rollback`).
   */
  readonly action?: 'switch' | 'boot' | undefined;
  /** A rejected generation to delete once the profile is off it (e.g. the one a failed deployment made). */
  readonly deleteGeneration?: number | undefined;
  /**
   * Where to point the GC root `/etc/nixos/current-configuration` (e.g. the bundle deployed before);
   * default: the bundle that deployed the generation's system, if the host still has it, else the system.
   */
  readonly gcRoot?: string | undefined;
}

/** What a rollback left. */
export interface RollbackResult {
  readonly host: string;
  /** The profile generation now current. */
  readonly generation: number | undefined;
  /** The system now running (with action `boot`: the one that ran before, until a reboot). */
  readonly runningSystem: string | undefined;
  /** The system profile's system now (what boots next). */
  readonly profileSystem: string | undefined;
  /**
   * The bundle `/etc/nixos/current-configuration` names now: the one that deployed that system
   * (or the `gcRoot` asked for); undefined when the host has no bundle of it (the root names the system).
   */
  readonly bundle?: string | undefined;
}

async function withSession<T>(target: ActivationTarget, context: PideployContext, body: (session: SshSession) => Promise<T>): Promise<T> {
  if (target.session !== undefined) return body(target.session);
  const session = await connectSsh(target.target, { ...target.connect, signal: context.signal }, context);
  try {
    return await body(session);
  } finally {
    await session.close();
  }
}

/** The activation script's `rollback` arguments for {@link RollbackSystemOptions}. Pure. */
export function rollbackArguments(options: RollbackSystemOptions): string[] {
  const argv = ['rollback'];
  if (options.to !== undefined) argv.push('--to', String(options.to));
  if (options.action !== undefined && options.action !== 'switch') argv.push('--action', options.action);
  if (options.deleteGeneration !== undefined) argv.push('--delete-generation', String(options.deleteGeneration));
  if (options.gcRoot !== undefined) argv.push('--gc-root', options.gcRoot);
  return argv;
}

/**
 * Switches the system profile to an earlier generation (`--to N`, default the previous one) and
 * activates it (`switch`, or `boot` for a reboot into it; see {@link RollbackSystemOptions}).
 */
export async function rollbackSystem(target: ActivationTarget, options: RollbackSystemOptions, context: PideployContext): Promise<RollbackResult> {
  return withSession(target, context, async (session) => {
    const sudo = await session.sudo(sudoOptionsOf(target));
    const script = await installScript(sudo, session, newDeployId(), undefined);
    const argv = scriptCommand(script, rollbackArguments(options));
    const result = await sudo.exec(argv, { signal: context.signal });
    const busy = busyErrorOf(hostName(target), result, argv);
    if (busy !== undefined) throw busy;
    if (result.exitCode !== 0) {
      throw new PideployError({
        code: ERROR_CODES.failed,
        message: `rolling ${hostName(target)} back failed: ${tailLines(result.stderr || result.stdout, 2)}`,
        hint: 'list the generations with `pideploy status`',
        commandFailure: { command: argv, ...(result.exitCode === null ? {} : { exitCode: result.exitCode }), stderrTail: tailLines(result.stderr) },
      });
    }
    // The script ends with its state file: the generation it switched to, and the system running before.
    const state = stateFromDecisionOutput(result.stdout);
    const runningSystem = options.action === 'boot' ? state?.previousSystem || undefined : state?.toplevel;
    return { host: hostName(target), generation: state?.newGeneration, runningSystem, profileSystem: state?.toplevel, bundle: state?.bundle || undefined };
  });
}

/** What {@link systemStatus} reports about a target. */
export interface SystemStatus {
  readonly host: string;
  /** `/run/current-system` (what is active now). */
  readonly runningSystem: string | undefined;
  /** `/run/booted-system` (what the host booted), if the host has it. */
  readonly bootedSystem: string | undefined;
  /** The system profile's current target (what boots next). */
  readonly profileSystem: string | undefined;
  /** The specialisation of the profile's system that runs (`runningSystem` is `profileSystem/specialisation/NAME`), if one does. */
  readonly runningSpecialisation?: string | undefined;
  /** The system profile's generations. */
  readonly generations: readonly ProfileGeneration[];
  /** Where `/etc/nixos/current-configuration` points (the deployed bundle), if set. */
  readonly currentConfiguration: string | undefined;
  /**
   * The system of that bundle (its `toplevel`), if the host has it: what pideploy last deployed.
   * Neither running nor next to boot: the host was rolled back or switched by hand since.
   */
  readonly deployedSystem?: string | undefined;
  /** The deployed bundle's `manifest.json`, if it has one. */
  readonly manifest: unknown;
  /** The newest deployment recorded in /run/pideploy (until the host reboots). */
  readonly lastDeployment: ActivationState | undefined;
  /** The lines of the file `alsoRead` named (see {@link ReadHostSystemsOptions}), when one was: e.g. the host's record of key files. */
  readonly alsoRead?: readonly string[] | undefined;
  /** The host's boot id now (`/proc/sys/kernel/random/boot_id`), if it could be read: another one than a file recorded means the host booted since. */
  readonly bootId?: string | undefined;
  /**
   * What the boot default (the profile's system) has otherwise than the host booted with, of its
   * kernel, initrd and kernel modules: a reboot is needed to run them (empty: none, or unknown).
   */
  readonly rebootNeededFor: readonly BootPart[];
}

/** Marks the start of a section in the status script's output. */
const STATUS_SECTION = '@@pideploy-status';

/**
 * Everything `status` shows, read in ONE round trip (no sudo): the system profile's generations
 * (`nix-env --list-generations` where the login user may lock the profile, else the same listing
 * read from the links themselves: name + link mtime), the four links and the deployed bundle's system, which
 * specialisation of the profile's system runs (if one does), the deployed bundle's manifest and the newest deployment state, each after a `@@pideploy-status NAME` line.
 */
const STATUS_SCRIPT = `profile=$1; gc_root=$2; state_dir=$3; also_read=$4
section() { printf '\\n%s %s\\n' '${STATUS_SECTION}' "$1"; }
section generations
if ! nix-env -p "$profile" --list-generations 2>/dev/null; then
  (
    cd "\${profile%/*}" 2>/dev/null || exit 0
    current=$(readlink system 2>/dev/null)
    for link in system-*-link; do
      [ -L "$link" ] || continue
      number=\${link#system-}; number=\${number%-link}
      mark=''; [ "$link" = "$current" ] && mark='   (current)'
      printf '%4d   %s%s\\n' "$number" "$(stat -c %y "$link" | cut -c 1-19)" "$mark"
    done | sort -n
  )
fi
section links
for link in "$gc_root" /run/current-system /run/booted-system "$profile" "$gc_root/toplevel"; do printf '%s\\n' "$(readlink -e "$link")"; done
section running-specialisation
running=$(readlink -e /run/current-system); profile_system=$(readlink -e "$profile")
${printRunningSpecialisationScript('running', 'profile_system')}
section manifest
cat "$gc_root/manifest.json" 2>/dev/null
section booted-parts
${printBootPartsScript('/run/booted-system')}
section profile-parts
${printBootPartsScript('"$profile"')}
section boot-id
if [ -r /proc/sys/kernel/random/boot_id ]; then read -r boot_id </proc/sys/kernel/random/boot_id && printf '%s\\n' "$boot_id"; fi
section also-read
if [ -n "$also_read" ] && [ -r "$also_read" ]; then while IFS= read -r l || [ -n "$l" ]; do printf '%s\\n' "$l"; done <"$also_read"; fi
section last-deployment
newest=$(ls -t "$state_dir" 2>/dev/null | grep '\\.state$' | head -n 1)
if [ -n "$newest" ]; then cat "$state_dir/$newest"; fi
`;

/** The boot parts the profile's system changes against the booted one's, from the status script's two sections. */
function rebootNeededFor(booted: string | undefined, profile: string | undefined): BootPart[] {
  const profileParts = parseBootParts((profile ?? '').split('\n'));
  return profileParts === undefined ? [] : bootPartsChanged(parseBootParts((booted ?? '').split('\n')), profileParts);
}

/** The status script's output cut at its section lines. */
function statusSections(stdout: string): Map<string, string> {
  const sections = new Map<string, string>();
  let name: string | undefined;
  let lines: string[] = [];
  const close = () => {
    if (name !== undefined) sections.set(name, lines.join('\n').trim());
  };
  for (const line of stdout.split('\n')) {
    if (line.startsWith(`${STATUS_SECTION} `)) {
      close();
      name = line.slice(STATUS_SECTION.length + 1);
      lines = [];
    } else lines.push(line);
  }
  close();
  return sections;
}

/**
 * Reads a target's running, booted and profile systems, generations, deployed bundle and last
 * deployment (no sudo, one round trip), and the lines of `options.alsoRead` if given.
 */
export async function systemStatus(target: ActivationTarget, context: PideployContext, options: ReadHostSystemsOptions = {}): Promise<SystemStatus> {
  return withSession(target, context, async (session) => {
    const argv = ['sh', '-c', STATUS_SCRIPT, 'pideploy-status', SYSTEM_PROFILE, CURRENT_CONFIGURATION_ROOT, ACTIVATION_STATE_DIR, options.alsoRead ?? ''];
    const result = await session.exec(argv, { signal: context.signal });
    const sections = statusSections(result.stdout);
    if (result.exitCode !== 0 || !sections.has('last-deployment')) throw remoteFailure('reading the status', argv.slice(0, 2), result, session.display);
    const [currentConfiguration, runningSystem, bootedSystem, profileSystem, deployedSystem] = (sections.get('links') ?? '').split('\n').map((line) => (line === '' ? undefined : line));
    let manifest: unknown;
    try {
      manifest = sections.get('manifest') ? (JSON.parse(sections.get('manifest') as string) as unknown) : undefined;
    } catch {
      manifest = undefined;
    }
    const state = sections.get('last-deployment') ?? '';
    return {
      host: hostName(target),
      runningSystem,
      bootedSystem,
      profileSystem,
      runningSpecialisation: parseRunningSpecialisation((sections.get('running-specialisation') ?? '').split('\n')),
      generations: parseGenerationList(sections.get('generations') ?? ''),
      currentConfiguration,
      deployedSystem,
      manifest,
      lastDeployment: state === '' ? undefined : parseActivationState(`${state}\n`),
      rebootNeededFor: rebootNeededFor(sections.get('booted-parts'), sections.get('profile-parts')),
      ...(options.alsoRead === undefined ? {} : { alsoRead: (sections.get('also-read') ?? '').split('\n').filter((line) => line !== '') }),
      bootId: sections.get('boot-id') || undefined,
    };
  });
}

/** Options of {@link diffSystem}. */
export interface DiffSystemOptions {
  /** Environment for the local `nix` (default: this process's). */
  readonly env?: NodeJS.ProcessEnv | undefined;
  /** How the new system's closure is read locally (default: one `nix path-info --recursive`); a fleet shares one (`createClosureQuery` of @pideploy/nix). */
  readonly closureQuery?: ClosureQuery | undefined;
  /**
   * The closure of the system the target runs, when the caller reads it another way (a deployment
   * asks its open `nix-store --serve` connection while the system builds); default: one
   * `nix path-info --recursive /run/current-system` on the target.
   */
  readonly runningClosure?: (() => Promise<readonly { readonly path: string; readonly narSize: number }[]>) | undefined;
}

/** The closure of `/run/current-system` on the target (empty when it runs none): one `nix path-info` there. */
async function readRunningClosure(target: ActivationTarget, context: PideployContext): Promise<StorePathInfo[]> {
  return withSession(target, context, async (session) => {
    const argv = ['nix', '--extra-experimental-features', 'nix-command', 'path-info', '--json', '--recursive', '/run/current-system'];
    const result = await session.exec(argv, { signal: context.signal });
    if (result.exitCode !== 0) {
      const missing = await session.exec(['test', '-e', '/run/current-system']);
      if (missing.exitCode !== 0) return [];
      throw remoteFailure('reading the running system’s closure', argv, result, session.display);
    }
    return parsePathInfoJson(result.stdout);
  });
}

/** The closure diff between the system the target runs and `newToplevel` (closure read locally). */
export async function diffSystem(target: ActivationTarget, newToplevel: string, context: PideployContext, options: DiffSystemOptions = {}): Promise<ClosureDiff> {
  const running = options.runningClosure !== undefined ? await options.runningClosure() : await readRunningClosure(target, context);
  const next = await (options.closureQuery ?? ((paths) => queryClosurePathInfos(paths, { env: options.env, signal: context.signal })))([newToplevel]);
  return diffClosures(
    running.map(({ path, narSize }) => ({ path, narSize })),
    next.map(({ path, narSize }) => ({ path, narSize })),
  );
}

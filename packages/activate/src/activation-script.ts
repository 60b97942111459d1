/**
 * The target side of activation as text: a POSIX sh script (the bundle's `bin/activate`, uploaded
 * by the stage until the bundle embeds it) and the pure helpers that build its command lines and
 * read the state it leaves in `/run/pideploy/<id>.state`.
 */
import { BUNDLE_NOTES_DIR, CURRENT_CONFIGURATION_ROOT, PideployError, SYSTEM_PROFILE, shellQuote, type ActivationAction } from '@pideploy/core';
import { isSpecialisationName } from './specialisation.js';

// (Re-exported as this package's own: where the script works on the host, shared with @pideploy/bundle.)
export { BUNDLE_NOTES_DIR, CURRENT_CONFIGURATION_ROOT, SYSTEM_PROFILE };

/** Where the script keeps logs, state and (when uploaded) itself. */
export const ACTIVATION_STATE_DIR = '/run/pideploy';
/** The exit code of a start refused because another deployment has the host (its state is not final yet). */
export const ACTIVATION_BUSY_EXIT_CODE = 3;
/** Starts the stderr line in which a refused start names the deployment that has the host (`id= state= deadline= bundle= log= lock=`; `log=` is empty where it keeps none, and older scripts leave it out). */
export const BUSY_OUTPUT_MARKER = '@@pideploy-busy';
/**
 * A line the script carries, so a bundle's `bin/activate` can be recognised as speaking this
 * protocol. 2: the start takes `--wait-state` and keeps the wake FIFO; 3: and
 * `--activation-timeout`; 4: and `--specialisation`. A bundle of an older protocol gets the
 * current script uploaded instead.
 */
export const ACTIVATION_PROTOCOL_MARKER = '# pideploy-activate-protocol: 4';
/** The line after which `activate confirm|abort` print the deployment's state file. */
export const STATE_OUTPUT_MARKER = '@@pideploy-state';
/**
 * Seconds after which a deployment that holds a host counts as left behind, and the next start
 * takes the host over from it: awaiting its confirmation this long past its deadline (its
 * watchdog, which looks every second, is gone), or still starting this long after it said so.
 * The script and `readHostSystems` apply the same rule.
 */
export const LEFT_BEHIND_SECONDS = 60;
/** Default seconds the target waits for `confirm` before it rolls back by itself. */
export const DEFAULT_CONFIRM_TIMEOUT_SECONDS = 30;
/**
 * Seconds a deployer lets `switch-to-configuration` run before the host stops it and rolls back
 * (deploy-rs waits 240 s; a Pi starting many services on an SD card may take minutes). The script
 * run by hand has no limit unless given `--activation-timeout`.
 */
export const DEFAULT_ACTIVATION_TIMEOUT_SECONDS = 600;
/**
 * The shell pideploy runs the activation script with (`sudo /bin/sh SCRIPT start …`): the one its
 * detached worker runs under too. Every NixOS has it (`environment.binsh`).
 */
export const ACTIVATION_SHELL = '/bin/sh';

/**
 * States a deployment goes through. In progress: `starting`, `activating`, `rolling-back`,
 * `awaiting-confirmation`. Final: `succeeded` (no confirmation asked), `confirmed`,
 * `failed-rolled-back`, `rolled-back-unconfirmed`, `failed` (and nothing could be rolled back).
 */
export type ActivationStateName =
  | 'starting'
  | 'activating'
  | 'rolling-back'
  | 'awaiting-confirmation'
  | 'succeeded'
  | 'confirmed'
  | 'failed-rolled-back'
  | 'rolled-back-unconfirmed'
  | 'failed';

/** What `/run/pideploy/<id>.state` says about one deployment. */
export interface ActivationState {
  readonly id: string;
  readonly state: ActivationStateName;
  readonly action: ActivationAction;
  readonly toplevel: string;
  /** The specialisation of `toplevel` that was activated ("" = the system itself). */
  readonly specialisation: string;
  /** The bundle that is GC-rooted on confirmation ("" = the toplevel is rooted). */
  readonly bundle: string;
  /** Profile generation before the deployment (undefined: there was none). */
  readonly previousGeneration: number | undefined;
  /** `/run/current-system` before the deployment ("" = none). */
  readonly previousSystem: string;
  /** Profile generation the deployment made or selected (switch/boot). */
  readonly newGeneration: number | undefined;
  /** Generation the host went back to, after a rollback. */
  readonly rolledBackTo: number | undefined;
  /** Exit code of `switch-to-configuration`, once it ran. */
  readonly exitCode: number | undefined;
  /** Human-readable detail of the last transition. */
  readonly message: string;
  /** Unix seconds of the last transition. */
  readonly updated: number;
  /** Unix seconds after which the watchdog rolls back (awaiting-confirmation only). */
  readonly deadline: number | undefined;
}

const FINAL_STATES: ReadonlySet<ActivationStateName> = new Set(['succeeded', 'confirmed', 'failed-rolled-back', 'rolled-back-unconfirmed', 'failed']);
/** States while the activation (or a rollback) is still running: neither final nor awaiting confirmation. */
const RUNNING_STATES: readonly ActivationStateName[] = ['starting', 'activating', 'rolling-back'];
const STATE_NAMES: ReadonlySet<string> = new Set([...FINAL_STATES, ...RUNNING_STATES, 'awaiting-confirmation']);

/**
 * How many deployments' files (state, log, wake FIFO, decision) each host keeps in
 * {@link ACTIVATION_STATE_DIR}: older finished ones are removed once there are twice as many.
 */
export const DEPLOYMENTS_KEPT = 20;

/** A shell `case` pattern matching the final states (`succeeded|confirmed|…`). */
export const FINAL_STATES_PATTERN = [...FINAL_STATES].join('|');
/** A shell `case` pattern matching the states of a still-running activation (`starting|activating|rolling-back`). */
export const RUNNING_STATES_PATTERN = RUNNING_STATES.join('|');
const ACTIONS: ReadonlySet<string> = new Set(['switch', 'boot', 'test', 'dry-activate']);

/** True for states after which nothing changes any more. */
export function isFinalActivationState(state: string): boolean {
  return (FINAL_STATES as ReadonlySet<string>).has(state);
}

/** What a rollback needs to know about the host as it was when a deployment started. */
export interface RollbackBasis {
  readonly action: ActivationAction;
  /** `/run/current-system` when the deployment started ("" or undefined: none). */
  readonly previousSystem: string | undefined;
  /** The system profile had a current generation when the deployment started. */
  readonly hadProfileGeneration: boolean;
}

/**
 * Whether a deployment can be rolled back: to the system that was running (any action), or, for
 * switch/boot on a host that ran nothing, to the profile's previous generation. False means the
 * host had neither: a failed or unconfirmed deployment stays where it is. Pure; the script makes
 * the same decision.
 */
export function canRollBack(basis: RollbackBasis): boolean {
  if (basis.action === 'dry-activate') return true;
  if (basis.previousSystem !== undefined && basis.previousSystem !== '') return true;
  return basis.action !== 'test' && basis.hadProfileGeneration;
}

/** {@link canRollBack} for a deployment's state file. */
export function stateCanRollBack(state: ActivationState): boolean {
  return canRollBack({ action: state.action, previousSystem: state.previousSystem, hadProfileGeneration: state.previousGeneration !== undefined });
}

/** Deployment ids: what the script accepts as a file-name component and a systemd unit suffix. */
export const DEPLOY_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/u;

/** A fresh deployment id: UTC time plus randomness, e.g. `20250101T120000Z-3f9a1c`. */
export function newDeployId(now: Date = new Date(), random: () => number = Math.random): string {
  const stamp = now.toISOString().replace(/[-:]/gu, '').replace(/\.\d+Z$/u, 'Z');
  const suffix = Math.floor(random() * 0x1000000)
    .toString(16)
    .padStart(6, '0');
  return `${stamp}-${suffix}`;
}

function optionalNumber(value: string | undefined): number | undefined {
  if (value === undefined || value === '') return undefined;
  const number = Number(value);
  return Number.isInteger(number) ? number : undefined;
}

/** Code of the error for host-side output pideploy cannot read (state files, generation lists). */
export const ACTIVATION_UNREADABLE = 'PIDEPLOY_ACTIVATION_UNREADABLE';

function unreadableState(detail: string): PideployError {
  return new PideployError({
    code: ACTIVATION_UNREADABLE,
    message: `cannot read the activation state on the host: ${detail}`,
    hint: `another pideploy version may have written it; see ${ACTIVATION_STATE_DIR} on the host, and deploy with one pideploy version`,
  });
}

/**
 * Parses a state file (`key=value` lines).
 * @throws PideployError `PIDEPLOY_ACTIVATION_UNREADABLE` on text that is not one.
 */
export function parseActivationState(text: string): ActivationState {
  const fields = new Map<string, string>();
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const equals = line.indexOf('=');
    if (equals <= 0) throw unreadableState(`not a pideploy activation state line: ${JSON.stringify(line)}`);
    fields.set(line.slice(0, equals), line.slice(equals + 1));
  }
  const state = fields.get('state') ?? '';
  const action = fields.get('action') ?? '';
  if (!STATE_NAMES.has(state)) throw unreadableState(`unknown activation state ${JSON.stringify(state)}`);
  if (!ACTIONS.has(action)) throw unreadableState(`unknown activation action ${JSON.stringify(action)}`);
  return {
    id: fields.get('id') ?? '',
    state: state as ActivationStateName,
    action: action as ActivationAction,
    toplevel: fields.get('toplevel') ?? '',
    specialisation: fields.get('specialisation') ?? '',
    bundle: fields.get('bundle') ?? '',
    previousGeneration: optionalNumber(fields.get('previous_generation')),
    previousSystem: fields.get('previous_system') ?? '',
    newGeneration: optionalNumber(fields.get('new_generation')),
    rolledBackTo: optionalNumber(fields.get('rolled_back_to')),
    exitCode: optionalNumber(fields.get('exit_code')),
    message: fields.get('message') ?? '',
    updated: optionalNumber(fields.get('updated')) ?? 0,
    deadline: optionalNumber(fields.get('deadline')),
  };
}

/** Arguments of `activate <action> …` (see {@link renderActivationScript}). */
export interface ActivateArguments {
  readonly action: ActivationAction;
  readonly toplevel: string;
  /**
   * Activate this specialisation of `toplevel` (`toplevel/specialisation/NAME`, NixOS's
   * `specialisation.NAME`) instead of the system itself: the profile still gets `toplevel` (what
   * boots by default). switch, test and dry-activate only.
   */
  readonly specialisation?: string | undefined;
  readonly bundle?: string | undefined;
  readonly deployId: string;
  /** Magic rollback: wait this long for `confirm` (ignored with `rollback: false`). */
  readonly confirmTimeoutSeconds?: number | undefined;
  /**
   * Stop `switch-to-configuration` (TERM) if it runs longer than this, and roll back (a failed
   * activation). 0 or absent: no limit.
   */
  readonly activationTimeoutSeconds?: number | undefined;
  /** Ask for confirmation and roll back without it (only switch/test ask). */
  readonly rollback: boolean;
  readonly installBootloader?: boolean | undefined;
  /** Return once the worker is detached, instead of following it. */
  readonly noWait?: boolean | undefined;
  /**
   * Return once the deployment awaits confirmation or is over, or after this many seconds, and
   * print its state file after {@link STATE_OUTPUT_MARKER} (what the deployer does: the outcome
   * of a short activation comes with the start). Implies {@link noWait}'s exit status: 0 once started.
   */
  readonly waitStateSeconds?: number | undefined;
}

/** A whole number of seconds as the script's argument. @throws TypeError for another number. */
function wholeSeconds(seconds: number): string {
  if (!Number.isInteger(seconds) || seconds < 0) throw new TypeError(`not a number of seconds: ${seconds}`);
  return String(seconds);
}

/**
 * A specialisation name as the script takes it: a directory name under `toplevel/specialisation/`.
 * @throws TypeError for another string.
 */
function checkedSpecialisationName(name: string): string {
  if (!isSpecialisationName(name)) throw new TypeError(`not a specialisation name: ${JSON.stringify(name)}`);
  return name;
}

/** The argument vector after the script path for starting an activation. */
export function activateArguments(input: ActivateArguments): string[] {
  if (!DEPLOY_ID_PATTERN.test(input.deployId)) throw new TypeError(`not a deployment id: ${JSON.stringify(input.deployId)}`);
  const argv = [input.action, '--toplevel', input.toplevel, '--deploy-id', input.deployId];
  if (input.bundle !== undefined) argv.push('--bundle', input.bundle);
  if (input.specialisation !== undefined) argv.push('--specialisation', checkedSpecialisationName(input.specialisation));
  if (input.rollback) argv.push('--confirm-timeout', String(input.confirmTimeoutSeconds ?? DEFAULT_CONFIRM_TIMEOUT_SECONDS));
  else argv.push('--no-rollback');
  if (input.installBootloader === true) argv.push('--install-bootloader');
  if (input.activationTimeoutSeconds !== undefined && input.activationTimeoutSeconds !== 0) argv.push('--activation-timeout', wholeSeconds(input.activationTimeoutSeconds));
  if (input.noWait === true) argv.push('--no-wait');
  if (input.waitStateSeconds !== undefined) argv.push('--wait-state', wholeSeconds(input.waitStateSeconds));
  return argv;
}

/** The command that runs the activation script `script` with {@link ACTIVATION_SHELL}: `/bin/sh SCRIPT ARGS…`. Pure. */
export function scriptCommand(script: string, args: readonly string[]): string[] {
  return [ACTIVATION_SHELL, script, ...args];
}

/** Path of the uploaded script for one deployment. */
export function uploadedScriptPath(deployId: string): string {
  return `${ACTIVATION_STATE_DIR}/activate-${deployId}.sh`;
}

/** Path of a deployment's state file. */
export function activationStatePath(deployId: string): string {
  return `${ACTIVATION_STATE_DIR}/${deployId}.state`;
}

/** Options of {@link renderActivationScript}. */
export interface ActivationScriptOptions {
  /** First line (default `#!/bin/sh`); a bundle uses its pinned nixpkgs' shell. */
  readonly shebang?: string | undefined;
  /** `--toplevel` when not given: a bundle's own system, so `sudo $bundle/bin/activate switch` works by hand. */
  readonly defaultToplevel?: string | undefined;
  /** `--bundle` when not given: the bundle itself (GC-rooted on success). */
  readonly defaultBundle?: string | undefined;
  /**
   * The directory whose presence means "systemd is the running init" (sd_booted(3); default
   * {@link SYSTEMD_RUNTIME_DIRECTORY}). Only tests of the launcher choice change it.
   */
  readonly systemdRuntimeDirectory?: string | undefined;
}

/** sd_booted(3)'s test: this directory exists only while systemd runs as init. */
export const SYSTEMD_RUNTIME_DIRECTORY = '/run/systemd/system';

/** How the script starts its detached worker (what `activate launcher` prints). */
export type WorkerLauncher = 'systemd-run' | 'setsid' | 'nohup';

/**
 * Shell function `read_lock` (POSIX sh, builtins only): sets `lock` to the newest
 * `$state_dir/active.N` ("" if none), `lock_number` to its N (0) and `holder` to the deployment it
 * names. The activation script takes the host with it; `readHostSystems` reads who has it with it.
 */
export const READ_LOCK_FUNCTION = `# Sets lock to the highest active.N ("" if none) and holder to the deployment it names.
read_lock() {
  lock=''; holder=''; lock_number=0
  for candidate in "$state_dir"/active.*; do
    number=\${candidate##*/active.}
    case "$number" in ''|*[!0-9]*) continue ;; esac
    if [ "$number" -gt "$lock_number" ]; then lock_number=$number; lock=$candidate; fi
  done
  if [ -n "$lock" ]; then read -r holder <"$lock" || holder=''; fi
}`;

/** Path of the FIFO through which a deployment's state changes wake those waiting for them (see {@link AWAIT_STATE_FUNCTION}). */
export function activationWakePath(deployId: string): string {
  return `${ACTIVATION_STATE_DIR}/${deployId}.wake`;
}

/**
 * Shell functions (POSIX sh) `await_state FILE WAKE SECONDS EVERY LOOKS`: returns once the state
 * file FILE says the deployment is over or awaits confirmation, or after SECONDS, with
 * `awaited_state` set to the state it read last ("" without a state file). The activation script
 * writes a line to the FIFO WAKE at every state change; a caller who may open it (root, or the
 * user who started the deployment through sudo) is woken by it at once, without polling. Opening
 * it before reading FILE misses no change. Otherwise it looks at FILE every EVERY seconds, LOOKS
 * times at most. Every message is one newline, so that several waiters (a reconnect leaves two)
 * each read whole ones: the deadline is kept by the clock (`/proc/uptime`), and a background timer
 * writes one at the deadline and again every second while the caller's shell lives (in case
 * another waiter took it). Without `/proc/uptime` any wake ends the round.
 */
export const AWAIT_STATE_FUNCTION = `# Sets awaited_state to the state= line of the state file $1 ("" without one), by the shell itself.
read_state_name() {
  awaited_state=''
  if [ -f "$1" ]; then
    while IFS= read -r state_line; do
      case $state_line in state=*) awaited_state=\${state_line#state=}; break ;; esac
    done <"$1"
  fi
}

# Sets now_cs to the time since boot in hundredths of a second, by the shell itself ("" without /proc/uptime).
read_uptime() {
  now_cs=''
  if [ -r /proc/uptime ]; then
    read -r uptime_text uptime_rest </proc/uptime
    case $uptime_text in
      *[0-9].[0-9][0-9])
        now_cs=\${uptime_text%.*}\${uptime_text#*.}
        while :; do case $now_cs in 0?*) now_cs=\${now_cs#0} ;; *) break ;; esac; done
        ;;
    esac
  fi
}

# await_state FILE WAKE SECONDS EVERY LOOKS (see AWAIT_STATE_FUNCTION in @pideploy/activate).
await_state() {
  if [ -p "$2" ] && [ -r "$2" ] && [ -w "$2" ]; then
    read_uptime
    deadline_cs=''
    if [ -n "$now_cs" ]; then deadline_cs=$((now_cs + $3 * 100)); fi
    exec 3<>"$2"
    # Every message is one byte (a newline): of several waiters, each read gets a whole one. Killed,
    # the timer stops its sleep too (an orphaned one would live on, holding this environment).
    { trap 'kill "$nap" 2>/dev/null; exit 0' TERM; sleep "$3" & nap=$!; wait "$nap"; while kill -0 $$ 2>/dev/null; do printf '\\n' 1<>"$2"; sleep 1 & nap=$!; wait "$nap"; done; } </dev/null >/dev/null 2>&1 3>&- &
    wake_timer=$!
    while :; do
      read_state_name "$1"
      case $awaited_state in ${RUNNING_STATES_PATTERN}) ;; *) break ;; esac
      IFS= read -r woken <&3 || break
      read_uptime
      if [ -z "$deadline_cs" ] || [ -z "$now_cs" ] || [ "$now_cs" -ge "$deadline_cs" ]; then
        read_state_name "$1"
        break
      fi
    done
    kill "$wake_timer" 2>/dev/null
    exec 3<&-
    return 0
  fi
  looks_done=0
  while :; do
    read_state_name "$1"
    case $awaited_state in ${RUNNING_STATES_PATTERN}) ;; *) break ;; esac
    looks_done=$((looks_done + 1)); [ "$looks_done" -lt "$5" ] || break
    sleep "$4" 2>/dev/null || sleep 1
  done
  return 0
}`;

/**
 * The activation script. Usage (as root):
 *
 * ```
 * activate <switch|boot|test|dry-activate> --toplevel P [--bundle B] [--deploy-id ID]
 *          [--confirm-timeout S] [--no-rollback] [--install-bootloader] [--activation-timeout S]
 *          [--no-wait | --wait-state S]
 * activate confirm ID      keep the deployment (magic rollback) and GC-root its bundle
 * activate abort ID        give up waiting: roll back now
 * activate status [ID]     print the state file (the newest deployment without ID)
 * activate rollback [--to N] [--action switch|boot] [--delete-generation N] [--gc-root P]
 *                          switch the system profile to generation N (default: the previous one) and
 *                          activate it (`switch`, or `boot`: the boot default only, for a reboot),
 *                          holding the host like a deployment (recorded as `<time>-rollback-<pid>`);
 *                          then delete a rejected generation and point the GC root at P if given,
 *                          else at the bundle that deployed that system if the host still has it
 *                          (see {@link BUNDLE_NOTES_DIR}), else at the system itself
 * activate launcher        print how the worker would be started: systemd-run | setsid | nohup
 * ```
 *
 * It runs nixos-rebuild's sequence (`nix-env -p /nix/var/nix/profiles/system --set P` for
 * switch/boot, then `P/bin/switch-to-configuration ACTION`) in a detached worker (`systemd-run`
 * where systemd runs, else `setsid`), which rolls back at once on failure and, for
 * switch/test with rollback, waits for `confirm` as a watchdog. It never evaluates or builds.
 * A start waits for the worker's state changes through a FIFO (see {@link AWAIT_STATE_FUNCTION}):
 * `--no-wait` returns once the worker runs; `--wait-state S` once it awaits confirmation or is
 * over, or after S seconds, printing the state file.
 * One deployment at a time: while another one's state is not final, a start exits
 * {@link ACTIVATION_BUSY_EXIT_CODE} saying which (`activate: busy: …`).
 */
export function renderActivationScript(options: ActivationScriptOptions = {}): string {
  const defaultToplevel = options.defaultToplevel === undefined ? "''" : shellQuote(options.defaultToplevel);
  const defaultBundle = options.defaultBundle === undefined ? "''" : shellQuote(options.defaultBundle);
  const systemdRuntimeDirectory = shellQuote(options.systemdRuntimeDirectory ?? SYSTEMD_RUNTIME_DIRECTORY);
  return `${options.shebang ?? '#!/bin/sh'}
${ACTIVATION_PROTOCOL_MARKER}
# pideploy activate: switch this host to a NixOS system already in its store, the way
# nixos-rebuild does after building, with magic rollback. Run as root; see --help.
set -u
PATH=/run/current-system/sw/bin:/nix/var/nix/profiles/default/bin:\${PATH:-/usr/bin:/bin}:/usr/sbin:/usr/bin:/sbin:/bin
export PATH
umask 022

profile=${SYSTEM_PROFILE}
profiles_dir=\${profile%/*}
state_dir=${ACTIVATION_STATE_DIR}
gc_root=${CURRENT_CONFIGURATION_ROOT}
bundles_dir=${BUNDLE_NOTES_DIR}
systemd_runtime_dir=${systemdRuntimeDirectory}
# The kernel's view of this host (Linux procfs): the clock and the effective uid without a process.
proc_dir=/proc

self=$0
case "$self" in
  /*) ;;
  *) self=$(pwd)/$self ;;
esac

usage() {
  cat >&2 <<'EOF'
usage: activate <switch|boot|test|dry-activate> --toplevel P [--bundle B] [--deploy-id ID]
                [--specialisation NAME] [--confirm-timeout S] [--no-rollback] [--install-bootloader]
                [--activation-timeout S] [--no-wait | --wait-state S]
       activate confirm ID | abort ID | status [ID] | launcher
       activate rollback [--to N] [--action switch|boot] [--delete-generation N] [--gc-root P]
EOF
  exit 2
}

die() {
  echo "activate: $*" >&2
  exit 1
}

# Sets clock to the Unix time without a process where it can: from the shell itself where it
# keeps one (bash 5 and busybox ash have $EPOCHSECONDS and ignore assignments to it), else from
# the kernel (boot time from /proc/stat, read once, plus /proc/uptime: within 2 s of date +%s,
# and steady if the clock is stepped meanwhile), else from one date process.
EPOCHSECONDS=0
if [ "$EPOCHSECONDS" != 0 ]; then shell_clock=1; else shell_clock=0; fi
boot_time=''
read_clock() {
  if [ "$shell_clock" = 1 ]; then clock=$EPOCHSECONDS; return 0; fi
  if [ -z "$boot_time" ]; then
    boot_time=none
    if [ -r "$proc_dir/stat" ]; then
      while read -r key value rest; do
        [ "$key" = btime ] || continue
        case "$value" in ''|*[!0-9]*) ;; *) boot_time=$value ;; esac
        break
      done <"$proc_dir/stat"
    fi
  fi
  up=''
  if [ "$boot_time" != none ] && [ -r "$proc_dir/uptime" ]; then read -r up rest <"$proc_dir/uptime"; fi
  up=\${up%%.*}
  case "$up" in
    ''|*[!0-9]*) clock=$(date +%s) ;;
    *) clock=$((boot_time + up)) ;;
  esac
}

# Root? The effective uid from the kernel (/proc/self/status of this shell: no process), else id.
# Not $EUID: bash takes it from the environment when it is there.
is_root() {
  if [ -r "$proc_dir/self/status" ]; then
    while read -r key real effective rest; do
      if [ "$key" = Uid: ]; then [ "$effective" = 0 ]; return; fi
    done <"$proc_dir/self/status"
  fi
  [ "$(id -u)" = 0 ]
}

valid_id() {
  case "$1" in
    ''|-*|*[!A-Za-z0-9_-]*) return 1 ;;
  esac
  return 0
}

# --- state file: key=value lines, replaced atomically -------------------------------------------
# The deployment's fields, empty to begin with (and again after take_host looked at another one's).
# A caller that has just read the clock sets st_updated, and save_state uses it instead of reading it again.
reset_state() {
  st_id=''; st_state=''; st_action=''; st_toplevel=''; st_specialisation=''; st_bundle=''; st_previous_generation=''
  st_previous_system=''; st_new_generation=''; st_rolled_back_to=''; st_exit_code=''; st_message=''
  st_deadline=''; st_updated=''; st_saved_at=''
}
reset_state

# Every process counts on a slow target (a Pi Zero forks in milliseconds, an emulated one in
# tens): save_state runs one (mv; date only where neither the shell nor /proc tells the time);
# files get mode 644 from the umask.
nl='
'
save_state() {
  tmp="$state_dir/$st_id.state.tmp.$$"
  if [ -n "$st_updated" ]; then
    updated=$st_updated
  else
    read_clock
    updated=$clock
  fi
  st_updated=''
  message=$st_message
  case "$message" in *"$nl"*) message=$(printf '%s' "$message" | tr '\\n' ' ') ;; esac
  {
    printf 'id=%s\\n' "$st_id"
    printf 'state=%s\\n' "$st_state"
    printf 'action=%s\\n' "$st_action"
    printf 'toplevel=%s\\n' "$st_toplevel"
    printf 'bundle=%s\\n' "$st_bundle"
    printf 'previous_generation=%s\\n' "$st_previous_generation"
    printf 'previous_system=%s\\n' "$st_previous_system"
    printf 'new_generation=%s\\n' "$st_new_generation"
    printf 'rolled_back_to=%s\\n' "$st_rolled_back_to"
    printf 'exit_code=%s\\n' "$st_exit_code"
    printf 'message=%s\\n' "$message"
    printf 'updated=%s\\n' "$updated"
    printf 'deadline=%s\\n' "$st_deadline"
    printf 'specialisation=%s\\n' "$st_specialisation"
  } >"$tmp" && mv -f "$tmp" "$state_dir/$st_id.state"
  # Wakes whoever waits for this deployment (await_state). Opened read-write, the FIFO never
  # blocks: without a reader the line is dropped, which costs nothing (a reader reads the state
  # file after opening it).
  wake_file="$state_dir/$st_id.wake"
  if [ -p "$wake_file" ]; then { printf '\\n' 1<>"$wake_file"; } 2>/dev/null; fi
  echo "activate: $st_id: $st_state\${st_message:+ ($st_message)}"
}

${AWAIT_STATE_FUNCTION}


load_state() {
  file="$state_dir/$1.state"
  [ -f "$file" ] || die "no deployment $1 on this host (no $file)"
  while IFS= read -r line; do
    value=\${line#*=}
    case "$line" in
      id=*) st_id=$value ;;
      state=*) st_state=$value ;;
      action=*) st_action=$value ;;
      toplevel=*) st_toplevel=$value ;;
      specialisation=*) st_specialisation=$value ;;
      bundle=*) st_bundle=$value ;;
      previous_generation=*) st_previous_generation=$value ;;
      previous_system=*) st_previous_system=$value ;;
      new_generation=*) st_new_generation=$value ;;
      rolled_back_to=*) st_rolled_back_to=$value ;;
      exit_code=*) st_exit_code=$value ;;
      message=*) st_message=$value ;;
      deadline=*) st_deadline=$value ;;
      updated=*) st_saved_at=$value ;;
    esac
  done <"$file"
}

is_final() {
  case "$1" in
    ${FINAL_STATES_PATTERN}) return 0 ;;
  esac
  return 1
}

# --- one deployment at a time ----------------------------------------------------------------------
# The deployment that has this host is named in the highest-numbered $state_dir/active.N; it has
# the host until its state is final. A second deployment meanwhile would activate over the first,
# and the first one's watchdog could later roll back what the second had confirmed. Taking the host
# creates active.N+1 exclusively (noclobber: O_EXCL, so of two starts at once only one can), and
# nothing has to give it back: all by the shell itself, no process (/run is emptied at boot).

${READ_LOCK_FUNCTION}

# Takes the host for deployment $id, or says which deployment has it and exits ${ACTIVATION_BUSY_EXIT_CODE}.
take_host() {
  refuse_if_busy
  next_lock="$state_dir/active.$((lock_number + 1))"
  set -C
  if { printf '%s\\n' "$id" >"$next_lock"; } 2>/dev/null; then
    set +C
    # Older locks are removed now and then (prune_deployments): a start that read the locks before
    # could have made one of those numbers again. The host is ours only if ours is the newest.
    read_lock
    if [ "$lock" != "$next_lock" ]; then
      rm -f "$next_lock"
      take_host
      return
    fi
    prune_deployments
    # The deployment taken over ends here: a late confirm or abort of it (what its busy hint said)
    # must not act on a host that another deployment has now.
    if [ -n "$taken_over" ]; then
      load_state "$taken_over"
      st_message="left $st_state; deployment $id took the host over"
      st_state=failed
      save_state >/dev/null
      reset_state
    fi
    return 0
  fi
  set +C
  [ -e "$next_lock" ] || die "cannot create $next_lock (no space, or no permission in $state_dir?)"
  # Another start created it first.
  lock=$next_lock
  busy '' starting '' ''
}

# What finished deployments leave in $state_dir (state, log, wake FIFO, decision, uploaded script)
# is removed but for the newest ${DEPLOYMENTS_KEPT} (/run is in memory, and a Pi may run for months), with
# every lock below the one this start took ($lock_number). Deployment ids begin with their UTC time,
# so the glob lists them oldest first. It waits until there are twice as many, so that most starts
# run no process for it: then one rm.
prune_deployments() {
  pruned_count=0
  for pruned_file in "$state_dir"/*.state; do
    [ -f "$pruned_file" ] && pruned_count=$((pruned_count + 1))
  done
  [ "$pruned_count" -gt ${DEPLOYMENTS_KEPT * 2} ] || return 0
  pruned_excess=$((pruned_count - ${DEPLOYMENTS_KEPT}))
  set --
  for pruned_file in "$state_dir"/*.state; do
    [ "$pruned_excess" -gt 0 ] || break
    pruned_excess=$((pruned_excess - 1))
    pruned_id=\${pruned_file##*/}
    pruned_id=\${pruned_id%.state}
    valid_id "$pruned_id" || continue
    read_state_name "$pruned_file"
    case "$awaited_state" in
      ${FINAL_STATES_PATTERN}) set -- "$@" "$pruned_file" "$state_dir/$pruned_id.log" "$state_dir/$pruned_id.wake" "$state_dir/$pruned_id.decision" "$state_dir/$pruned_id.timed-out" "$state_dir/activate-$pruned_id.sh" ;;
    esac
  done
  for pruned_file in "$state_dir"/active.*; do
    pruned_number=\${pruned_file##*/active.}
    case "$pruned_number" in ''|*[!0-9]*) continue ;; esac
    [ "$pruned_number" -lt "$lock_number" ] && set -- "$@" "$pruned_file"
  done
  [ $# -eq 0 ] || rm -rf -- "$@" 2>/dev/null || true
}

# Says which deployment has the host and exits ${ACTIVATION_BUSY_EXIT_CODE}: a sentence for people, then a
# ${BUSY_OUTPUT_MARKER} line of fields for the deployer. $1 id ("" unknown), $2 its state, $3 its
# confirmation deadline (Unix seconds, or ""), $4 its bundle (or "").
busy() {
  if [ -n "$1" ]; then who="deployment $1"; else who="another deployment"; fi
  # Its log, where it has one (a rollback by hand has none: its output goes to whoever runs it).
  busy_log=''
  if [ -n "$1" ] && [ -f "$state_dir/$1.log" ]; then busy_log="$state_dir/$1.log"; fi
  echo "activate: busy: $who is $2 on this host\${3:+ (confirmation deadline $3)}; one deployment at a time (if nothing runs it any more, remove $lock)" >&2
  printf '%s id=%s state=%s deadline=%s bundle=%s log=%s lock=%s\\n' '${BUSY_OUTPUT_MARKER}' "$1" "$2" "$3" "$4" "$busy_log" "$lock" >&2
  exit ${ACTIVATION_BUSY_EXIT_CODE}
}

# Exits ${ACTIVATION_BUSY_EXIT_CODE} (busy) while the deployment named by the lock (read_lock) has the host: also while
# its id or first state is not written yet. Returns when there is none, it is over, it awaits
# confirmation a minute past its deadline (its watchdog, which looks every second, is gone), or it
# is still "starting" a minute after it said so (its start was cut off before the worker ran).
refuse_if_busy() {
  taken_over=''
  read_lock
  [ -n "$lock" ] || return 0
  # Created a moment ago: its id or its first state not written yet.
  valid_id "$holder" || busy '' starting '' ''
  [ -f "$state_dir/$holder.state" ] || busy "$holder" starting '' ''
  load_state "$holder"
  if ! is_final "$st_state"; then
    read_clock
    case "$st_deadline" in ''|*[!0-9]*) overdue=0 ;; *) overdue=$(( clock > st_deadline + ${LEFT_BEHIND_SECONDS} )) ;; esac
    case "$st_saved_at" in ''|*[!0-9]*) stale=0 ;; *) stale=$(( clock > st_saved_at + ${LEFT_BEHIND_SECONDS} )) ;; esac
    if [ "$st_state" = awaiting-confirmation ] && [ "$overdue" = 1 ]; then
      echo "activate: deployment $holder was left awaiting confirmation past its deadline (its watchdog is gone); going ahead" >&2
      taken_over=$holder
    elif [ "$st_state" = starting ] && [ "$stale" = 1 ]; then
      echo "activate: deployment $holder never got past starting (its start was cut off before the activation ran); going ahead" >&2
      taken_over=$holder
    else
      busy "$holder" "$st_state" "$st_deadline" "$st_bundle"
    fi
  fi
  reset_state
}

# --- profile generations -------------------------------------------------------------------------
# Sets generation to the system profile's current generation number ("" if none): one readlink.
read_generation() {
  generation=''
  link=$(readlink "$profile" 2>/dev/null) || return 0
  link=\${link##*/}
  link=\${link#system-}
  generation=\${link%-link}
}

# Sets highest to the highest system-N-link number in the profiles directory ("" if none), without a process.
highest_generation() {
  highest=''
  for link in "$profiles_dir"/system-*-link; do
    number=\${link##*/system-}
    number=\${number%-link}
    case "$number" in ''|*[!0-9]*) continue ;; esac
    if [ -z "$highest" ] || [ "$number" -gt "$highest" ]; then highest=$number; fi
  done
}

move_gc_root() {
  root_target=\${st_bundle:-$st_toplevel}
  [ -d "\${gc_root%/*}" ] || mkdir -p "\${gc_root%/*}" || return 1
  nix-store --add-root "$gc_root" --indirect -r "$root_target" >/dev/null || return 1
  note_bundle
}

# Notes that $st_bundle deployed $st_toplevel (for a rollback to it later: bundle_of), by the
# shell itself, and drops the notes whose bundle is gone (one rm, only when there are some).
# A note that cannot be written costs the later rollback its bundle, nothing else.
note_bundle() {
  [ -n "$st_bundle" ] && [ -n "$st_toplevel" ] && [ "$st_bundle" != "$st_toplevel" ] || return 0
  [ -d "$bundles_dir" ] || mkdir -p "$bundles_dir" 2>/dev/null || return 0
  { printf '%s\n' "$st_bundle" >"$bundles_dir/\${st_toplevel##*/}"; } 2>/dev/null || return 0
  set --
  for note in "$bundles_dir"/*; do
    [ -f "$note" ] || continue
    noted=''
    read -r noted <"$note" || true
    [ -n "$noted" ] && [ -e "$noted" ] || set -- "$@" "$note"
  done
  [ $# -eq 0 ] || rm -f -- "$@" 2>/dev/null || true
}

# Sets found_bundle to the bundle noted for system $1 if the host still has it and its toplevel
# is $1 ("" otherwise), by the shell itself.
bundle_of() {
  found_bundle=''
  note="$bundles_dir/\${1##*/}"
  [ -f "$note" ] || return 0
  noted=''
  read -r noted <"$note" || true
  [ -n "$noted" ] || return 0
  if cd -P "$noted/toplevel" 2>/dev/null; then
    [ "$PWD" = "$1" ] && found_bundle=$noted
    cd / || return 1
  fi
  return 0
}

# Runs $1/bin/switch-to-configuration $2 (an earlier system, during a rollback).
activate_system() {
  if [ ! -x "$1/bin/switch-to-configuration" ]; then
    echo "activate: cannot re-activate $1: it has no bin/switch-to-configuration" >&2
    return 1
  fi
  "$1/bin/switch-to-configuration" "$2"
}

# The system profile back as it was: its previous generation, or, when it had none, a generation
# of the system that was running (so the boot default is never left on the rejected system); then
# the generation this deployment made is deleted. Sets boot_system to what the profile now holds.
restore_profile() {
  if [ -n "$st_previous_generation" ]; then
    nix-env -p "$profile" --switch-generation "$st_previous_generation" || return 1
  else
    nix-env -p "$profile" --set "$st_previous_system" || return 1
  fi
  read_generation
  st_rolled_back_to=$generation
  if [ -n "$st_new_generation" ] && [ "$st_new_generation" != "$st_rolled_back_to" ] \\
    && [ "$st_new_generation" -gt "\${highest_before:-0}" ]; then
    nix-env -p "$profile" --delete-generations "$st_new_generation" || true
  fi
  boot_system=$(readlink -f "$profile")
}

# Puts the host back where it was before this deployment: the boot default (the profile) and the
# system that was RUNNING (/run/current-system when the deployment started), which may differ
# from the profile after a \`test\` or \`boot\`. $1: final state, $2: why.
roll_back() {
  final_state=$1
  why=$2
  st_state=rolling-back
  st_message="rolling back: $why"
  save_state
  if [ -z "$st_previous_system" ] && { [ "$st_action" = test ] || [ -z "$st_previous_generation" ]; }; then
    st_state=failed
    st_message="$why; rollback impossible: no system ran before this deployment (no /run/current-system)"
    [ "$st_action" = test ] || st_message="$st_message and the system profile had no generation"
    save_state
    return
  fi
  ok=1
  case "$st_action" in
    switch|boot)
      boot_system=''
      restore_profile || ok=0
      if [ "$ok" = 0 ]; then
        :
      elif [ "$st_action" = boot ]; then
        activate_system "$boot_system" boot || ok=0
      elif [ -z "$st_previous_system" ] || [ "$st_previous_system" = "$boot_system" ]; then
        activate_system "$boot_system" switch || ok=0
      else
        # The host ran another system than its boot default: both come back.
        activate_system "$boot_system" boot || ok=0
        activate_system "$st_previous_system" test || ok=0
      fi
      ;;
    test)
      activate_system "$st_previous_system" test || ok=0
      if [ "$ok" = 1 ] && [ "$(readlink -f "$profile" 2>/dev/null)" = "$st_previous_system" ]; then
        read_generation
        st_rolled_back_to=$generation
      fi
      ;;
  esac
  if [ "$ok" = 1 ]; then
    st_state=$final_state
    st_message="$why; rolled back\${st_rolled_back_to:+ to generation $st_rolled_back_to}\${st_previous_system:+, running $st_previous_system}"
  else
    st_state=failed
    st_message="$why; rollback FAILED"
  fi
  save_state
}

# --- the detached worker ---------------------------------------------------------------------------
# Runs $switch_system/bin/switch-to-configuration $st_action ($st_toplevel, or its specialisation
# $st_specialisation); with an activation timeout (not 0), a
# timer stops it (TERM) once that many seconds passed, with what it started (its own process
# group, where setsid is there to make one), and switch_timed_out says so (1).
run_switch() {
  switch_timed_out=0
  if [ "$activation_timeout" = 0 ]; then
    NIXOS_INSTALL_BOOTLOADER=$install_bootloader "$switch_system/bin/switch-to-configuration" "$st_action"
    return
  fi
  timed_out_flag="$state_dir/$st_id.timed-out"
  # Started in the background by a shell without job control, setsid is no group leader: it makes
  # the new session in place, so $! is the group's id (without setsid: the switch alone is stopped).
  switch_setsid=''
  if command -v setsid >/dev/null 2>&1; then switch_setsid=setsid; fi
  NIXOS_INSTALL_BOOTLOADER=$install_bootloader $switch_setsid "$switch_system/bin/switch-to-configuration" "$st_action" &
  switch_pid=$!
  (
    sleeper=''
    trap '[ -z "$sleeper" ] || kill "$sleeper" 2>/dev/null; exit 0' TERM
    sleep "$activation_timeout" &
    sleeper=$!
    wait "$sleeper" || exit 0
    if kill -s TERM -- "-$switch_pid" 2>/dev/null || kill -s TERM "$switch_pid" 2>/dev/null; then : >"$timed_out_flag"; fi
  ) &
  timer_pid=$!
  wait "$switch_pid"
  switch_status=$?
  kill -TERM "$timer_pid" 2>/dev/null
  wait "$timer_pid" 2>/dev/null
  if [ -e "$timed_out_flag" ]; then switch_timed_out=1; fi
  return "$switch_status"
}

worker() {
  st_action=$1; st_toplevel=$2; st_bundle=$3; st_id=$4; timeout=$5; rollback=$6; install_bootloader=$7; activation_timeout=$8
  # (The specialisation, if any, comes with the state the start saved.)
  load_state "$st_id"
  switch_system=$st_toplevel\${st_specialisation:+/specialisation/$st_specialisation}
  cd / || return 1
  read_generation
  st_previous_generation=$generation
  # The running system, resolved like readlink -e, by the shell itself (cd -P sets PWD to the physical path).
  st_previous_system=''
  if cd -P /run/current-system 2>/dev/null; then
    st_previous_system=$PWD
    cd / || return 1
  fi
  highest_generation
  highest_before=$highest
  st_state=activating
  st_message="activating $st_toplevel\${st_specialisation:+ (specialisation $st_specialisation)} ($st_action)"
  save_state

  if [ "$st_action" = switch ] || [ "$st_action" = boot ]; then
    if ! nix-env -p "$profile" --set "$st_toplevel"; then
      st_state=failed
      st_message="nix-env --set failed; nothing was changed"
      save_state
      return 1
    fi
    read_generation
    st_new_generation=$generation
    save_state
  fi

  run_switch
  st_exit_code=$?
  if [ "$st_exit_code" != 0 ]; then
    why="switch-to-configuration $st_action exited $st_exit_code"
    if [ "$switch_timed_out" = 1 ]; then why="switch-to-configuration $st_action did not finish within $activation_timeout s (--activation-timeout): stopped"; fi
    if [ "$st_action" = dry-activate ]; then
      st_state=failed
      st_message=$why
      save_state
      return 1
    fi
    roll_back failed-rolled-back "$why"
    return 1
  fi

  if [ "$rollback" != 1 ] || { [ "$st_action" != switch ] && [ "$st_action" != test ]; }; then
    if [ "$st_action" != dry-activate ]; then
      if ! move_gc_root; then
        st_message="activated, but the GC root $gc_root could not be set"
      else
        st_message="activated"
      fi
    else
      st_message="dry activation done"
    fi
    st_state=succeeded
    save_state
    return 0
  fi

  # Magic rollback: a watchdog waits for "confirm" (or "abort"), else rolls back by itself.
  # The verdict is an empty file named after it in this directory, which only its creator (mkdir) writes.
  decision="$state_dir/$st_id.decision"
  read_clock
  st_updated=$clock
  st_deadline=$(( st_updated + timeout ))
  st_state=awaiting-confirmation
  st_message="activated; waiting up to \${timeout}s for confirmation"
  save_state
  while :; do
    if [ -f "$decision/confirmed" ]; then
      return 0
    elif [ -f "$decision/aborted" ]; then
      roll_back rolled-back-unconfirmed "the deployer aborted (confirmation impossible or health check failed)"
      return 1
    elif [ -f "$decision/timeout" ]; then
      roll_back rolled-back-unconfirmed "no confirmation within \${timeout}s"
      return 1
    elif [ ! -d "$decision" ] && read_clock && [ "$clock" -ge "$st_deadline" ]; then
      if mkdir "$decision" 2>/dev/null; then
        : >"$decision/timeout"
        continue
      fi
    fi
    sleep 1
  done
}

# --- commands ---------------------------------------------------------------------------------------
# How the worker is detached from this SSH session: a transient systemd unit where systemd is the
# running init (out of the session's cgroup, as nixos-rebuild does), else a new session (setsid),
# else just nohup.
pick_launcher() {
  if [ -d "$systemd_runtime_dir" ] && command -v systemd-run >/dev/null 2>&1; then
    launcher=systemd-run
  elif command -v setsid >/dev/null 2>&1; then
    launcher=setsid
  else
    launcher=nohup
  fi
}

# Refuses a --specialisation the system does not have, or one with boot (the boot loader starts the
# system itself; its menu lists the specialisations), naming those it has.
check_specialisation() {
  case "$specialisation" in
    .|..|*/*|*"$nl"*) die "--specialisation takes a name under $toplevel/specialisation/, not $specialisation" ;;
  esac
  [ "$action" != boot ] || die "--specialisation is for switch, test and dry-activate: a boot starts the system itself (pick the specialisation in the boot menu)"
  [ ! -x "$toplevel/specialisation/$specialisation/bin/switch-to-configuration" ] || return 0
  names=''
  for path in "$toplevel"/specialisation/*; do
    [ -e "$path" ] && names="$names\${names:+, }\${path##*/}"
  done
  die "$toplevel has no specialisation $specialisation (it has \${names:-none})"
}

cmd_start() {
  action=$1
  shift
  toplevel=${defaultToplevel}; bundle=${defaultBundle}; specialisation=''; id=''; timeout=${DEFAULT_CONFIRM_TIMEOUT_SECONDS}; timeout_given=0; rollback=''; install_bootloader=''; activation_timeout=0; wait_for_it=1; wait_state=
  while [ $# -gt 0 ]; do
    case "$1" in
      --toplevel) [ $# -ge 2 ] || usage; toplevel=$2; shift 2 ;;
      --bundle) [ $# -ge 2 ] || usage; bundle=$2; shift 2 ;;
      --specialisation) [ $# -ge 2 ] || usage; specialisation=$2; shift 2 ;;
      --deploy-id) [ $# -ge 2 ] || usage; id=$2; shift 2 ;;
      --confirm-timeout) [ $# -ge 2 ] || usage; timeout=$2; timeout_given=1; shift 2 ;;
      --no-rollback) rollback=0; shift ;;
      --install-bootloader) install_bootloader=1; shift ;;
      --activation-timeout) [ $# -ge 2 ] || usage; activation_timeout=$2; shift 2 ;;
      --no-wait) wait_for_it=0; shift ;;
      --wait-state) [ $# -ge 2 ] || usage; wait_state=$2; wait_for_it=0; shift 2 ;;
      *) usage ;;
    esac
  done
  [ -n "$toplevel" ] || usage
  case "$timeout" in ''|*[!0-9]*) die "--confirm-timeout takes whole seconds, not $timeout" ;; esac
  case "$wait_state" in *[!0-9]*) die "--wait-state takes whole seconds, not $wait_state" ;; esac
  case "$activation_timeout" in ''|*[!0-9]*) die "--activation-timeout takes whole seconds, not $activation_timeout" ;; esac
  # (Without leading zeros: 0 is no limit, and 010 is ten seconds, not an octal eight.)
  while :; do case "$activation_timeout" in 0?*) activation_timeout=\${activation_timeout#0} ;; *) break ;; esac; done
  if [ -z "$rollback" ]; then
    case "$action" in switch|test) rollback=1 ;; *) rollback=0 ;; esac
    # Run by hand (waiting, no --confirm-timeout) nobody can confirm from a new connection:
    # magic rollback only when asked for.
    if [ "$wait_for_it" = 1 ] && [ "$timeout_given" = 0 ]; then rollback=0; fi
  fi
  is_root || die "must run as root (sudo)"
  case "$toplevel" in /nix/store/*) ;; *) die "--toplevel must be a store path, not $toplevel" ;; esac
  [ -x "$toplevel/bin/switch-to-configuration" ] || die "$toplevel/bin/switch-to-configuration is missing: copy the system's closure first"
  [ -z "$specialisation" ] || check_specialisation
  if [ -n "$bundle" ] && [ ! -e "$bundle" ]; then die "the bundle $bundle is not in this host's store"; fi
  [ -n "$id" ] || id=$(date -u +%Y%m%dT%H%M%SZ)-$$
  valid_id "$id" || die "not a deployment id: $id"
  [ -d "$state_dir" ] || mkdir -p "$state_dir" || die "cannot create $state_dir"
  [ ! -e "$state_dir/$id.state" ] || die "deployment $id already exists"
  # Ignored SIGHUP is inherited: neither this start (once it has the host) nor the worker stops at
  # the end of this sudo/SSH session, even in the moment before setsid has detached the worker
  # (what nohup would do, without its extra process).
  trap '' HUP
  # A dry run changes nothing: it waits for no one's turn, and holds none (it still does not run
  # while another deployment is under way).
  if [ "$action" = dry-activate ]; then refuse_if_busy; else take_host; fi
  st_id=$id; st_action=$action; st_toplevel=$toplevel; st_specialisation=$specialisation; st_bundle=$bundle
  # The FIFO that wakes waiters at every state change (await_state): the deploying user's (sudo's
  # caller), so that its own SSH logins can wait on it too. Without it they look every so often.
  wake="$state_dir/$id.wake"
  if mkfifo -m 600 "$wake" 2>/dev/null; then
    case "\${SUDO_UID:-}" in ''|0|*[!0-9]*) ;; *) chown "$SUDO_UID" "$wake" 2>/dev/null || true ;; esac
  fi
  st_state=starting; st_message="starting"
  save_state >/dev/null
  log="$state_dir/$id.log"
  : >>"$log"
  pick_launcher
  case "$launcher" in
    systemd-run)
      systemd-run --collect --quiet --no-ask-password --unit "pideploy-activate-$id" --service-type=exec \\
        -p StandardOutput="append:$log" -p StandardError="append:$log" \\
        /bin/sh "$self" __worker "$action" "$toplevel" "$bundle" "$id" "$timeout" "$rollback" "$install_bootloader" "$activation_timeout" \\
        || { st_state=failed; st_message="systemd-run could not start the activation"; save_state >/dev/null; die "$st_message"; }
      ;;
    setsid)
      setsid /bin/sh "$self" __worker "$action" "$toplevel" "$bundle" "$id" "$timeout" "$rollback" "$install_bootloader" "$activation_timeout" \\
        </dev/null >>"$log" 2>&1 &
      ;;
    *)
      nohup /bin/sh "$self" __worker "$action" "$toplevel" "$bundle" "$id" "$timeout" "$rollback" "$install_bootloader" "$activation_timeout" \\
        </dev/null >>"$log" 2>&1 &
      ;;
  esac
  echo "activate: started deployment $id (log: $log)"
  if [ "$wait_for_it" = 0 ]; then
    # --wait-state S: the deployer gets the outcome (or that confirmation is awaited) with this
    # command, when it comes within S seconds; else the state then.
    if [ -n "$wait_state" ]; then
      await_state "$state_dir/$id.state" "$wake" "$wait_state" 0.1 "$((wait_state * 10))"
      print_state "$id"
    fi
    exit 0
  fi
  while :; do
    await_state "$state_dir/$id.state" "$wake" 10 1 10
    load_state "$id"
    if is_final "$st_state" || [ "$st_state" = awaiting-confirmation ]; then break; fi
  done
  cat "$log" >&2
  echo "activate: $id: $st_state ($st_message)"
  case "$st_state" in
    succeeded|confirmed) exit 0 ;;
    awaiting-confirmation) echo "activate: confirm within \${timeout}s with: $self confirm $id"; exit 0 ;;
    *) exit 1 ;;
  esac
}

# Prints the state file of deployment $1 after a ${STATE_OUTPUT_MARKER} line (by the shell itself:
# no cat), so the deployer gets the outcome without another command.
print_state() {
  echo '${STATE_OUTPUT_MARKER}'
  while IFS= read -r line; do printf '%s\\n' "$line"; done <"$state_dir/$1.state"
}

# Decides the fate of a deployment awaiting confirmation, then prints its state file (print_state).
# $1: confirmed|aborted, $2: id.
cmd_decide() {
  verdict=$1
  id=$2
  valid_id "$id" || die "not a deployment id: $id"
  is_root || die "must run as root (sudo)"
  load_state "$id"
  if [ "$verdict" = confirmed ] && [ "$st_state" = confirmed ]; then
    echo "activate: $id: confirmed"
    print_state "$id"
    return 0
  fi
  if [ "$st_state" = awaiting-confirmation ] && mkdir "$state_dir/$id.decision" 2>/dev/null; then
    : >"$state_dir/$id.decision/$verdict"
    if [ "$verdict" = confirmed ]; then
      if move_gc_root; then
        st_state=confirmed
        st_message="confirmed; $gc_root -> \${st_bundle:-$st_toplevel}"
      else
        st_state=confirmed
        st_message="confirmed, but the GC root $gc_root could not be set"
      fi
      save_state
      print_state "$id"
      return 0
    fi
  fi
  while load_state "$id" && ! is_final "$st_state"; do sleep 1; done
  echo "activate: $id: $st_state ($st_message)"
  print_state "$id"
  [ "$verdict" = aborted ] && [ "$st_state" != confirmed ] && return 0
  return 1
}

cmd_status() {
  if [ $# -eq 0 ]; then
    newest=$(ls -t "$state_dir" 2>/dev/null | grep '\\.state$' | head -n 1)
    [ -n "$newest" ] || die "no deployments recorded in $state_dir"
    cat "$state_dir/$newest"
  else
    valid_id "$1" || die "not a deployment id: $1"
    [ -f "$state_dir/$1.state" ] || die "no deployment $1 on this host"
    cat "$state_dir/$1.state"
  fi
}

# A rollback by hand is recorded and holds the host like a deployment (its state file, action
# switch), so that no start goes ahead while it switches, and \`status\` shows it afterwards.
# $1: why it failed (the state says so, then the script exits 1).
rollback_failed() {
  st_state=failed
  st_message=$1
  save_state >/dev/null
  die "$1"
}

cmd_rollback() {
  to=''; rollback_action=switch; rejected=''; root_to=''
  while [ $# -gt 0 ]; do
    case "$1" in
      --to) [ $# -ge 2 ] || usage; to=$2; shift 2 ;;
      --action) [ $# -ge 2 ] || usage; rollback_action=$2; shift 2 ;;
      --delete-generation) [ $# -ge 2 ] || usage; rejected=$2; shift 2 ;;
      --gc-root) [ $# -ge 2 ] || usage; root_to=$2; shift 2 ;;
      *) usage ;;
    esac
  done
  case "$to" in *[!0-9]*) die "--to takes a generation number, not $to" ;; esac
  case "$rejected" in *[!0-9]*) die "--delete-generation takes a generation number, not $rejected" ;; esac
  case "$rollback_action" in switch|boot) ;; *) die "rollback --action is switch or boot, not $rollback_action" ;; esac
  case "$root_to" in '') ;; /*) [ -e "$root_to" ] || die "--gc-root: $root_to is not on this host" ;; *) die "--gc-root takes a store path, not $root_to" ;; esac
  is_root || die "must run as root (sudo)"
  [ -d "$state_dir" ] || mkdir -p "$state_dir" || die "cannot create $state_dir"
  id=$(date -u +%Y%m%dT%H%M%SZ)-rollback-$$
  valid_id "$id" || die "cannot make a deployment id for the rollback (date failed?)"
  # Refused while a deployment has the host (it would roll back or confirm over this); else it is ours.
  trap '' HUP PIPE
  take_host
  st_id=$id; st_action=$rollback_action; st_bundle=$root_to
  # Losing its SSH session does not stop it halfway (as the detached worker goes on); an interrupted
  # one (Ctrl-C, kill) says so in its state, which frees the host.
  trap 'rollback_failed "interrupted while rolling back: check what the host runs (activate status, pideploy status)"' INT TERM
  read_generation
  st_previous_generation=$generation; st_previous_system=''
  if cd -P /run/current-system 2>/dev/null; then
    st_previous_system=$PWD
    cd / || die "cannot change to /"
  fi
  st_state=activating; st_message="rolling back by hand\${to:+ to generation $to}"
  save_state >/dev/null
  if [ -n "$to" ]; then
    nix-env -p "$profile" --switch-generation "$to" || rollback_failed "cannot switch the profile to generation $to"
  else
    nix-env -p "$profile" --rollback || rollback_failed "cannot roll the profile back"
  fi
  read_generation
  st_new_generation=$generation
  st_toplevel=$(readlink -f "$profile")
  "$profile/bin/switch-to-configuration" "$rollback_action"
  st_exit_code=$?
  [ "$st_exit_code" = 0 ] || rollback_failed "switch-to-configuration $rollback_action of generation $generation failed"
  # The rejected generation goes (never the one now current), so that nothing boots it by default
  # and a later rollback does not go back to it; a failure to delete it is said, not fatal.
  if [ -n "$rejected" ] && [ "$rejected" != "$generation" ]; then
    nix-env -p "$profile" --delete-generations "$rejected" >/dev/null || echo "activate: could not delete generation $rejected" >&2
  fi
  # The GC root follows: to P if given, else to the bundle that deployed this system while the host
  # has it, else to the system itself (what runs is never described by the bundle it left).
  if [ -z "$root_to" ]; then
    bundle_of "$st_toplevel"
    st_bundle=$found_bundle
  fi
  root_note="$gc_root -> \${st_bundle:-$st_toplevel}"
  if [ -z "$st_bundle" ]; then root_note="$root_note (no bundle of it on this host)"; fi
  if ! move_gc_root; then
    echo "activate: could not point $gc_root at \${st_bundle:-$st_toplevel}" >&2
    root_note="$gc_root could not be moved"
  fi
  st_state=succeeded
  if [ "$rollback_action" = boot ]; then st_message="rolled back by hand to generation $generation (boot default; running $st_previous_system until a reboot); $root_note"; else st_message="rolled back by hand to generation $generation; $root_note"; fi
  save_state >/dev/null
  echo "activate: now on generation $generation ($st_toplevel)"
  print_state "$id"
}

[ $# -ge 1 ] || usage
command=$1
shift
case "$command" in
  switch|boot|test|dry-activate) cmd_start "$command" "$@" ;;
  confirm) [ $# -eq 1 ] || usage; cmd_decide confirmed "$1" ;;
  abort) [ $# -eq 1 ] || usage; cmd_decide aborted "$1" ;;
  status) cmd_status "$@" ;;
  rollback) cmd_rollback "$@" ;;
  launcher) [ $# -eq 0 ] || usage; pick_launcher; echo "$launcher" ;;
  __worker) [ $# -eq 8 ] || usage; worker "$@" ;;
  -h|--help|help) usage ;;
  *) usage ;;
esac
`;
}

import { stdinScriptBootstrap, stdinScriptLine } from '@pideploy/core';
import { keyPath, type KeySpec } from './key-spec.js';

/**
 * Where each host records the key files pideploy put on it (one absolute path a line, readable by
 * the login user: places, never contents), so that a deployment from any clone of the project
 * removes those pideploy.json no longer names, not only the ones its own clone put there. Its
 * first line, `{@link KEY_RECORD_BOOT_PREFIX}<boot id>`, says during which boot it was written:
 * files under `/run` it lists are gone once the host booted again.
 */
export const KEY_RECORD_FILE = '/nix/var/pideploy/keys';

/** Starts the line of the key record that names the boot it was written in (`/proc/sys/kernel/random/boot_id`). */
export const KEY_RECORD_BOOT_PREFIX = '# boot ';

/**
 * The host side of a key upload: a POSIX sh script run as root, once per upload. It arrives as
 * the first line of stdin (base64) and runs in the shell of {@link KEY_INSTALLER_BOOTSTRAP}, with
 * the arguments `pideploy-keys RECORD N  name dir user group mode …` (five per key: what goes
 * where, nothing secret); the contents follow on stdin, one base64 line per key in that order.
 *
 * It checks every key first (the user and group exist, the directory is one, nothing to write
 * over is a directory) and writes nothing unless all pass. Each key is written to a new file
 * beside its destination (`set -C`: created exclusively, so a planted link is never followed),
 * given its owner and mode, and only then renamed over the destination: the key never exists
 * with the wrong owner or mode, nor half written. A key whose bytes, owner and mode are those
 * already in place is left alone. It prints `installed NAME` or `unchanged NAME` per key, and on
 * failure one `keys: …` line on stderr (never any content) after removing its new files.
 *
 * Absolute paths after the keys' arguments are files of keys no longer wanted: once every key is
 * in place, each is removed if it is a file or a link (the link itself), reported as `removed
 * PATH`, `absent PATH` or `not-a-file PATH` (left alone).
 *
 * Last, the record RECORD (see {@link KEY_RECORD_FILE}; "" for none) is rewritten: the boot it is
 * written in, the files it listed that are still files there, and this upload's keys. A record it cannot write is said on
 * stderr (`keys: warning: …`), and the upload still succeeds.
 */
export const KEY_INSTALLER_SCRIPT = `set -u
umask 077
PATH=/run/current-system/sw/bin:/usr/bin:/bin:$PATH
fail() { printf 'keys: %s\\n' "$*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || fail "must run as root"
[ $# -ge 2 ] || { echo "usage: pideploy-keys RECORD N (name dir user group mode)... [path-to-remove]..." >&2; exit 2; }
record=$1
count=$2
shift 2
case $record in ''|/*) ;; *) echo "pideploy-keys: the record $record is not an absolute path" >&2; exit 2 ;; esac
case $count in ''|*[!0-9]*) echo "pideploy-keys: the count $count is not a number" >&2; exit 2 ;; esac
[ $# -ge $((count * 5)) ] || { echo "pideploy-keys: expected $((count * 5)) arguments after the count, got $#" >&2; exit 2; }

check_all() {
  n=$count
  dests=''
  while [ "$n" -gt 0 ]; do
    name=$1 dir=$2 user=$3 group=$4 mode=$5
    shift 5
    n=$((n - 1))
    case $name in ''|.*|*/*) fail "key name '$name' is not a plain file name" ;; esac
    case $dir in /*) ;; *) fail "key $name: $dir is not an absolute path" ;; esac
    case $dir in *"
"*) fail "key $name: its directory has a line break" ;; esac
    case $mode in [0-7][0-7][0-7]|0[0-7][0-7][0-7]) ;; *) fail "key $name: mode $mode is not octal" ;; esac
    id -u -- "$user" >/dev/null 2>&1 || fail "key $name: there is no user $user on $(uname -n)"
    getent group "$group" >/dev/null 2>&1 || fail "key $name: there is no group $group on $(uname -n)"
    if [ -e "$dir" ] || [ -L "$dir" ]; then
      [ -d "$dir" ] || fail "key $name: $dir exists and is not a directory"
    fi
    if [ -d "$dir/$name" ] && [ ! -L "$dir/$name" ]; then fail "key $name: $dir/$name is a directory"; fi
    dests="$dests$dir/$name
"
  done
  # What follows the keys: files of keys no longer wanted, to remove.
  for old in "$@"; do
    case $old in /*) ;; *) fail "$old (to remove) is not an absolute path" ;; esac
    case $old in *"
"*|*/) fail "a path to remove has a line break or ends with /" ;; esac
    if printf '%s' "$dests" | grep -qxF -- "$old"; then fail "$old is both to install and to remove"; fi
  done
}

# The new files this upload made, one a line, removed on failure (a renamed one is gone already).
made=''
remove_new() {
  printf '%s' "$made" | while IFS= read -r file; do rm -f -- "$file"; done
}

write_all() {
  set -C
  n=$count
  while [ "$n" -gt 0 ]; do
    name=$1 dir=$2 user=$3 group=$4 mode=$5
    shift 5
    n=$((n - 1))
    IFS= read -r data || fail "key $name: its content did not arrive (the upload was cut short)"
    if [ ! -d "$dir" ]; then
      (umask 022 && mkdir -p -- "$dir") || fail "key $name: cannot create $dir"
    fi
    new="$dir/.$name.pideploy-new"
    rm -f -- "$new" || fail "key $name: cannot remove the leftover $new"
    : > "$new" || fail "key $name: cannot create $new"
    made="$made$new
"
    chown -- "$user:$group" "$new" || fail "key $name: cannot give $new to $user:$group"
    chmod -- "$mode" "$new" || fail "key $name: cannot set mode $mode on $new"
    printf '%s' "$data" | base64 -d >> "$new" || fail "key $name: its content is not valid base64, or $dir is full"
  done
  set +C
}

place_all() {
  n=$count
  while [ "$n" -gt 0 ]; do
    name=$1 dir=$2
    shift 5
    n=$((n - 1))
    new="$dir/.$name.pideploy-new"
    if [ -f "$dir/$name" ] && [ ! -L "$dir/$name" ] && cmp -s -- "$new" "$dir/$name" \\
      && [ "$(stat -c '%u %g %a' -- "$new")" = "$(stat -c '%u %g %a' -- "$dir/$name")" ]; then
      rm -f -- "$new"
      echo "unchanged $name"
    else
      mv -f -- "$new" "$dir/$name" || fail "key $name: cannot move it into place at $dir/$name"
      echo "installed $name"
    fi
  done
}

# After every key is in place: the files of keys no longer wanted (a link itself, never its target;
# anything else than a file is left alone).
remove_old() {
  shift $((count * 5))
  for old in "$@"; do
    if [ -L "$old" ] || [ -f "$old" ]; then
      rm -f -- "$old" || fail "cannot remove $old"
      echo "removed $old"
    elif [ -e "$old" ]; then
      echo "not-a-file $old"
    else
      echo "absent $old"
    fi
  done
}

# The record: what it listed that is still a file (or link) there, then this upload's keys, each once.
# One upload at a time rewrites it (another deployer may upload to this host now): under a lock file
# the shell makes exclusively (noclobber: no process) holding its pid, waited for up to 10 s; one left longer (its
# upload died) is taken over, with a warning.
nl='
'
record_keys() {
  [ -n "$record" ] || return 0
  [ -d "\${record%/*}" ] || (umask 022 && mkdir -p -- "\${record%/*}") 2>/dev/null
  record_lock="$record.lock"
  waited=0
  set -C
  # (printf, not the special builtin \`:\`, whose failed redirection would end dash.)
  until { printf '%s\\n' "$$" > "$record_lock"; } 2>/dev/null; do
    if [ ! -d "\${record%/*}" ] || [ "$waited" -ge 100 ]; then break; fi
    waited=$((waited + 1))
    sleep 0.1
  done
  set +C
  if [ "$waited" -ge 100 ]; then printf 'keys: warning: %s was held for 10 s (left by an upload that died?): taken over\n' "$record_lock" >&2; fi
  listed=$nl
  if [ -f "$record" ]; then
    while IFS= read -r old; do
      case $old in /*) ;; *) continue ;; esac
      { [ -f "$old" ] || [ -L "$old" ]; } || continue
      case $listed in *"$nl$old$nl"*) continue ;; esac
      listed="$listed$old$nl"
    done < "$record"
  fi
  n=$count
  while [ "$n" -gt 0 ]; do
    path="$2/$1"
    shift 5
    n=$((n - 1))
    case $listed in *"$nl$path$nl"*) continue ;; esac
    listed="$listed$path$nl"
  done
  # The boot it is written in (read by the shell: no process), so that a reader knows whether files under /run are still there.
  boot_line=''
  if [ -r /proc/sys/kernel/random/boot_id ]; then
    boot_id=''
    read -r boot_id < /proc/sys/kernel/random/boot_id || true
    [ -z "$boot_id" ] || boot_line="${KEY_RECORD_BOOT_PREFIX}$boot_id$nl"
  fi
  if ! (umask 022 && printf '%s%s' "$boot_line" "\${listed#"$nl"}" > "$record.new" && mv -f -- "$record.new" "$record") 2>/dev/null; then
    printf 'keys: warning: could not record the key files in %s\n' "$record" >&2
  fi
  rm -f -- "$record_lock" 2>/dev/null
}

check_all "$@"
trap remove_new EXIT
write_all "$@"
place_all "$@"
trap - EXIT
remove_old "$@"
record_keys "$@"
`;

/**
 * The command line that runs {@link KEY_INSTALLER_SCRIPT}: one short line, so what sudo logs of
 * an upload (its argv) reads as the keys' names and places rather than as a whole script. It reads
 * the script from the first line of stdin (`read` takes exactly that line: the contents after it
 * stay for the script) and runs it in this shell, positional arguments and all.
 */
export const KEY_INSTALLER_BOOTSTRAP = stdinScriptBootstrap('keys');

/** What the host did with each key of an upload. */
export interface InstalledKey {
  readonly name: string;
  /** Where it is on the host. */
  readonly path: string;
  /** False when the host had the same bytes, owner and mode there already (left alone). */
  readonly changed: boolean;
}

/** What the host did with a file of a key no longer wanted. */
export interface RemovedKey {
  readonly path: string;
  /** `removed`; `absent` (nothing there: a reboot emptied /run, or it was removed by hand); `not-a-file` (left alone). */
  readonly outcome: 'removed' | 'absent' | 'not-a-file';
}

/**
 * The argv (after sudo) that runs {@link KEY_INSTALLER_SCRIPT} for these keys, and then removes
 * the files `remove` (keys no longer wanted) and updates the host's `record` of key files
 * (default {@link KEY_RECORD_FILE}; "" for none): names and places only, never contents.
 */
export function keyInstallerArgv(keys: readonly KeySpec[], remove: readonly string[] = [], record: string = KEY_RECORD_FILE): string[] {
  return [
    '/bin/sh',
    '-c',
    KEY_INSTALLER_BOOTSTRAP,
    'pideploy-keys',
    record,
    String(keys.length),
    ...keys.flatMap((key) => [key.name, key.destDir.replace(/(?<=.)\/+$/u, ''), key.user, key.group, key.permissions]),
    ...remove,
  ];
}

/** The installer's stdin: the script, then one line per key in the order of the argv (all base64). */
export function keyInstallerInput(contents: readonly Uint8Array[]): Buffer {
  return Buffer.from(stdinScriptLine(KEY_INSTALLER_SCRIPT) + contents.map((content) => `${Buffer.from(content).toString('base64')}\n`).join(''), 'ascii');
}

/**
 * Reads the installer's report (`installed NAME` / `unchanged NAME` per key, in order).
 * Undefined when it does not account for every key.
 */
export function parseKeyInstallerOutput(stdout: string, keys: readonly KeySpec[]): InstalledKey[] | undefined {
  return parseKeyInstallerReport(stdout, keys, [])?.installed;
}

/**
 * Reads the installer's whole report: a line per key (`installed NAME` / `unchanged NAME`), then
 * one per file to remove (`removed PATH` / `absent PATH` / `not-a-file PATH`), in order.
 * Undefined when it does not account for every key and file.
 */
export function parseKeyInstallerReport(stdout: string, keys: readonly KeySpec[], remove: readonly string[]): { installed: InstalledKey[]; removed: RemovedKey[] } | undefined {
  const lines = stdout.split('\n').filter((line) => line !== '');
  if (lines.length !== keys.length + remove.length) return undefined;
  const removed: RemovedKey[] = [];
  for (const [index, file] of remove.entries()) {
    const line = lines[keys.length + index] ?? '';
    const outcome = (['removed', 'absent', 'not-a-file'] as const).find((word) => line === `${word} ${file}`);
    if (outcome === undefined) return undefined;
    removed.push({ path: file, outcome });
  }
  const installed = parseInstalledLines(lines.slice(0, keys.length), keys);
  return installed === undefined ? undefined : { installed, removed };
}

function parseInstalledLines(lines: readonly string[], keys: readonly KeySpec[]): InstalledKey[] | undefined {
  const installed: InstalledKey[] = [];
  for (const [index, key] of keys.entries()) {
    const line = lines[index];
    if (line === `installed ${key.name}`) installed.push({ name: key.name, path: keyPath(key), changed: true });
    else if (line === `unchanged ${key.name}`) installed.push({ name: key.name, path: keyPath(key), changed: false });
    else return undefined;
  }
  return installed;
}

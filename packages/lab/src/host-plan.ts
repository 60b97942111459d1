import path from 'node:path';
import { PideployError, shellQuote } from '@pideploy/core';

/**
 * Pure planning of lab hosts: names, addresses, interface names and the text of every file the
 * lab writes for them. No I/O here; `hosts.ts` applies the plan.
 */

/** The deploy user's sudo password on every lab host. Lab-only, fixed, published by `lab status`. */
export const LAB_SUDO_PASSWORD = 'pideploy-lab-sudo';

/** Name of the unprivileged login user on lab hosts (in group wheel, like a NixOS admin). */
export const LAB_DEPLOY_USER = 'deploy';

/** The most hosts one lab runs (addresses are 10.250.<index>.0/30). */
export const LAB_MAX_HOSTS = 50;

/** How the deploy user gets root. */
export type LabSudoMode = 'password' | 'nopasswd';

/** Per-host knobs. */
export interface LabHostSettings {
  /** The deploy user is in the host nix-daemon's `trusted-users` (via group wheel). */
  readonly trusted: boolean;
  /** sudo with the lab password, or NOPASSWD. */
  readonly sudo: LabSudoMode;
  /**
   * Limit the host's store to this many MiB (a size-limited tmpfs over its /nix, empty at every
   * start) to test "target out of space". Unset: the store lives on disk and survives restarts.
   */
  readonly storeSizeMiB?: number | undefined;
  /** Log each sudo password check ({@link LAB_SUDO_PASSWORD_CHECK_LOG}; default true). */
  readonly recordSudoPasswordChecks?: boolean | undefined;
}

/** Everything about one lab host that follows from its index. */
export interface LabHostPlan {
  /** `pi1`, `pi2`, … (also its SSH Host alias and hostname). */
  readonly name: string;
  /** 1-based. */
  readonly index: number;
  /** The host's network namespace. */
  readonly netns: string;
  /** veth end in the root namespace. */
  readonly hostInterface: string;
  /** veth end inside the host's namespace. */
  readonly remoteInterface: string;
  /** Deployer-side address of the link. */
  readonly hostAddress: string;
  /** The lab host's address (sshd listens here, port 22). */
  readonly address: string;
}

/** Parses `pi7` → 7; undefined for anything that is not a lab host name. */
export function labHostIndex(name: string): number | undefined {
  const match = /^pi([1-9][0-9]*)$/u.exec(name);
  if (match === null) return undefined;
  const index = Number(match[1]);
  return index <= LAB_MAX_HOSTS ? index : undefined;
}

/** How many labs can run side by side on one machine (instances 0…9). */
export const LAB_MAX_INSTANCES = 10;

/**
 * Which lab instance to use: `PIDEPLOY_LAB_INSTANCE` (0…9), default 0. Each instance has its own
 * namespaces, subnet (10.(250−k).x.x), archive port and default directory, so two labs (say, a
 * developer's and a test run's) can run at once.
 */
export function resolveLabInstance(explicit?: number | undefined, env: NodeJS.ProcessEnv = process.env): number {
  const text = env['PIDEPLOY_LAB_INSTANCE'];
  const instance = explicit ?? (text === undefined || text === '' ? 0 : Number(text));
  if (!Number.isInteger(instance) || instance < 0 || instance >= LAB_MAX_INSTANCES) {
    throw new PideployError({
      code: 'PIDEPLOY_USAGE',
      message: `PIDEPLOY_LAB_INSTANCE must be a whole number from 0 to ${LAB_MAX_INSTANCES - 1}, not "${text ?? String(explicit)}"`,
      hint: 'unset it to use the default lab (instance 0)',
    });
  }
  return instance;
}

/** The plan of lab host number `index` (1-based) in lab `instance` (default 0). */
export function planLabHost(index: number, instance = 0): LabHostPlan {
  if (!Number.isInteger(index) || index < 1 || index > LAB_MAX_HOSTS) {
    throw new PideployError({
      code: 'PIDEPLOY_USAGE',
      message: `a lab has hosts pi1…pi${LAB_MAX_HOSTS}; ${index} is out of range`,
      hint: `use --hosts N with 1 ≤ N ≤ ${LAB_MAX_HOSTS}`,
    });
  }
  const name = `pi${index}`;
  const tag = instance === 0 ? '' : String(instance);
  const subnet = `10.${250 - instance}.${index}`;
  return {
    name,
    index,
    netns: `pideploy-lab${tag}-${name}`,
    hostInterface: `pdlab${tag}-${name}-h`,
    remoteInterface: `pdlab${tag}-${name}-r`,
    hostAddress: `${subnet}.1`,
    address: `${subnet}.2`,
  };
}

/** Parses the `--hosts` value. */
export function parseHostCount(text: string | undefined): number {
  if (text === undefined) return 1;
  const count = Number(text);
  if (!/^[0-9]+$/u.test(text) || count < 1 || count > LAB_MAX_HOSTS) {
    throw new PideployError({
      code: 'PIDEPLOY_USAGE',
      message: `--hosts must be a whole number from 1 to ${LAB_MAX_HOSTS}, not "${text}"`,
      hint: 'for example: pideploy lab up --hosts 3',
    });
  }
  return count;
}

/** The sshd_config of a lab host (LogLevel VERBOSE so tests can count logins). */
export function renderSshdConfig(plan: LabHostPlan): string {
  return `# written by pideploy lab for ${plan.name}
ListenAddress ${plan.address}
Port 22
HostKey /etc/ssh/ssh_host_ed25519_key
PidFile none
LogLevel VERBOSE
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM yes
AuthorizedKeysFile .ssh/authorized_keys
PrintMotd no
AcceptEnv LANG LC_*
Subsystem sftp /usr/lib/openssh/sftp-server
`;
}

/** The host nix-daemon's nix.conf: offline, no sandbox, deploy trusted or not. */
export function renderRemoteNixConf(settings: LabHostSettings): string {
  return `# written by pideploy lab
build-users-group =
sandbox = false
substituters =
experimental-features = nix-command
trusted-users = ${settings.trusted ? 'root @wheel' : 'root'}
`;
}

/**
 * Where sudo logs the deploy user's commands inside a lab host (root's home, outside the store):
 * one line per command run through sudo (`COMMAND=…`) and per refused password, so tests count
 * what a deployment asked of sudo. A successful `sudo -v` runs no command and logs nothing here:
 * {@link LAB_SUDO_PASSWORD_CHECK_LOG} shows it.
 */
export const LAB_SUDO_LOG = '/root/sudo.log';

/**
 * One line per password check sudo asks PAM for inside a lab host (a `pam_exec` hook first in
 * `/etc/pam.d/sudo`'s auth stack, so refused passwords count too): the user, then sudo's own argv
 * (never the password: sudo reads it from stdin). Tests count how often a deployment made the host
 * check (hash) the password, `sudo -v` included.
 */
export const LAB_SUDO_PASSWORD_CHECK_LOG = '/root/sudo-password-checks.log';

/** What a password check line names when its sudo was gone before the hook read its command line. */
export const LAB_SUDO_EXITED_ARGV = '(sudo exited before its command line was read)';

/** The `pam_exec` hook that appends to {@link LAB_SUDO_PASSWORD_CHECK_LOG} (root-only, outside the store). */
export const LAB_SUDO_PASSWORD_CHECK_HOOK = '/etc/pideploy-lab/sudo-password-check';

/** The deploy user's sudoers drop-in. */
export function renderSudoers(settings: LabHostSettings): string {
  const tag = settings.sudo === 'nopasswd' ? 'NOPASSWD: ' : '';
  return `# written by pideploy lab
Defaults:${LAB_DEPLOY_USER} lecture=never
Defaults:${LAB_DEPLOY_USER} logfile=${LAB_SUDO_LOG}, loglinelen=0
${LAB_DEPLOY_USER} ALL=(ALL:ALL) ${tag}ALL
`;
}

/** The host's `/etc/hosts` (sudo wants its own name to resolve). */
export function renderEtcHosts(plan: LabHostPlan): string {
  return `127.0.0.1\tlocalhost\n127.0.1.1\t${plan.name}\n::1\tlocalhost ip6-localhost ip6-loopback\n`;
}

/** Paths the provisioning and init scripts need. */
export interface LabHostPaths {
  /** `$LAB/hosts/<name>` */
  readonly root: string;
  readonly etc: string;
  readonly nix: string;
  readonly home: string;
  readonly rootHome: string;
  readonly run: string;
  /** The lab client's public key, authorised for deploy and root. */
  readonly clientPublicKey: string;
}

/**
 * Provisioning lines for {@link LAB_SUDO_PASSWORD_CHECK_LOG}: the hook and its line first in
 * `/etc/pam.d/sudo`'s auth stack (idempotent), or, when not recording, the removal of both.
 */
function sudoPasswordCheckSetup(record: boolean): string {
  const q = shellQuote;
  if (!record) return `sed -i '/pideploy-lab/d' /etc/pam.d/sudo\nrm -f ${q(LAB_SUDO_PASSWORD_CHECK_HOOK)}\n`;
  return `install -d -m 755 ${q(path.posix.dirname(LAB_SUDO_PASSWORD_CHECK_HOOK))}
install -m 755 /dev/stdin ${q(LAB_SUDO_PASSWORD_CHECK_HOOK)} <<'HOOK'
#!/bin/sh
# written by pideploy lab: PAM runs this (auth) for every password check of sudo; $PPID is sudo
[ "$PAM_TYPE" = auth ] || exit 0
# One write per line; a sudo killed meanwhile (its SSH channel closed) has no command line left.
argv=$(/usr/bin/tr '\\000' ' ' </proc/$PPID/cmdline 2>/dev/null)
printf '%s %s\\n' "$PAM_USER" "\${argv:-${LAB_SUDO_EXITED_ARGV}}" >>${q(LAB_SUDO_PASSWORD_CHECK_LOG)}
exit 0
HOOK
# seteuid: run the hook as root (sudo's effective uid), not as the calling user
grep -q pideploy-lab /etc/pam.d/sudo || sed -i -e '1a # pideploy-lab: log each password check' -e '1a auth optional pam_exec.so quiet seteuid ${LAB_SUDO_PASSWORD_CHECK_HOOK}' /etc/pam.d/sudo
`;
}

/**
 * The script run once per `lab up` in a private mount namespace with the host's directories bound
 * over `/etc`, `/home`, `/root`, `/nix`: creates the deploy user, sets the password, sudoers,
 * authorised keys, and initialises the empty store. Idempotent. The password arrives on stdin.
 */
export function renderProvisionScript(plan: LabHostPlan, paths: LabHostPaths, settings: LabHostSettings): string {
  const q = shellQuote;
  const user = LAB_DEPLOY_USER;
  return `set -eu
mount --make-rprivate /
mount --bind ${q(paths.etc)} /etc
mount --bind ${q(paths.home)} /home
mount --bind ${q(paths.rootHome)} /root
mount --bind ${q(paths.nix)} /nix
getent group wheel >/dev/null || groupadd -r wheel
id -u ${user} >/dev/null 2>&1 || useradd -m -s /bin/bash -U -G wheel ${user}
IFS= read -r password
printf '%s:%s\\n' ${user} "$password" | chpasswd
install -d -m 755 /etc/sudoers.d
install -m 440 /dev/stdin /etc/sudoers.d/pideploy-lab <<'SUDOERS'
${renderSudoers(settings)}SUDOERS
visudo -cq -f /etc/sudoers.d/pideploy-lab
# As on NixOS, a login runs no update-motd.d scripts (Debian's pam_motd runs them: five processes per SSH login).
[ ! -f /etc/pam.d/sshd ] || sed -i '/^session.*pam_motd.so.*motd.dynamic/d' /etc/pam.d/sshd
${sudoPasswordCheckSetup(settings.recordSudoPasswordChecks !== false)}install -d -m 700 -o ${user} -g ${user} /home/${user}/.ssh
install -m 600 -o ${user} -g ${user} ${q(paths.clientPublicKey)} /home/${user}/.ssh/authorized_keys
install -d -m 700 /root/.ssh
install -m 600 ${q(paths.clientPublicKey)} /root/.ssh/authorized_keys
install -d -m 755 /etc/nixos
touch /etc/NIXOS
printf '%s\\n' ${q(plan.name)} > /etc/hostname
nix-store --init
`;
}

/** The directory of the lab host's init in the host's `/run`: its reboot FIFO and boot id. */
export const LAB_INIT_RUN_DIR = '/run/lab-init';

/**
 * The FIFO on which a lab host's init takes requests: a line `reboot` (written as root by the lab
 * system's `systemctl reboot`) reboots the host.
 */
export const LAB_INIT_CONTROL_FIFO = `${LAB_INIT_RUN_DIR}/control`;

/**
 * The script that becomes the lab host: run as `unshare -m -u --fork` inside the host's network
 * namespace; the lab's stand-in for a machine's init. Binds the host's own directories once, then
 * boots: a fresh tmpfs on `/run` and `/tmp`, a boot id of its own over
 * `/proc/sys/kernel/random/boot_id` (as a real boot gets), the boot default
 * (`/nix/var/nix/lab-boot/default`) as `/run/booted-system` and activated (its `activate`, as
 * NixOS's stage 2 runs it), nix-daemon and sshd, with their pid files. Then it waits for requests
 * on {@link LAB_INIT_CONTROL_FIFO}: `reboot` stops every process of the host (those in its network
 * namespace: sessions, detached activations, the daemons), unmounts `/run` and `/tmp`, and boots
 * again. Pid files go through a bind of the lab's run directory (a /tmp lab directory is hidden
 * by the host's /tmp).
 */
export function renderHostInitScript(plan: LabHostPlan, paths: LabHostPaths, settings?: LabHostSettings): string {
  const q = shellQuote;
  const limitedStore =
    settings?.storeSizeMiB === undefined
      ? ''
      : `# a size-limited store (pideploy lab storeSizeMiB): empty at every start of the lab host (kept across its reboots)
mount -t tmpfs -o size=${Math.floor(settings.storeSizeMiB)}m,mode=755 pideploy-lab-nix /nix
nix-store --init
`;
  const initDir = LAB_INIT_RUN_DIR;
  return `#!/bin/sh
# written by pideploy lab: the init of lab host ${plan.name}
set -eu
mount --make-rprivate /
mount --bind ${q(paths.etc)} /etc
mount --bind ${q(paths.home)} /home
mount --bind ${q(paths.rootHome)} /root
mount --bind ${q(paths.nix)} /nix
${limitedStore}hostname ${q(plan.name)}
ip link set lo up
lab_run=${initDir}/lab-run
own_net=/proc/$$/ns/net

boot() {
  mount -t tmpfs -o mode=755 pideploy-lab-run /run
  mkdir -p /run/sshd /run/lock ${initDir}/lab-run
  chmod 0755 /run/sshd
  chmod 0700 ${initDir}
  mount --bind ${q(paths.run)} "$lab_run"
  cat /proc/sys/kernel/random/uuid >${initDir}/boot_id
  mount --bind ${initDir}/boot_id /proc/sys/kernel/random/boot_id
  if [ -L /nix/var/nix/lab-boot/default ]; then
    booted=$(readlink -f /nix/var/nix/lab-boot/default)
    ln -sfn "$booted" /run/booted-system
    if [ -x "$booted/activate" ]; then
      "$booted/activate" || echo "lab init: activating $booted at boot failed" >&2
    else
      ln -sfn "$booted" /run/current-system
    fi
  fi
  rm -f /nix/var/nix/daemon-socket/socket
  setsid nix-daemon </dev/null >>${q(`${paths.root}/nix-daemon.log`)} 2>&1 &
  echo $! >"$lab_run/nix-daemon.pid"
  mount -t tmpfs -o mode=1777 pideploy-lab-tmp /tmp
  mkfifo -m 0600 ${LAB_INIT_CONTROL_FIFO}
  /usr/sbin/sshd -D -e -f /etc/ssh/sshd_config &
  echo $! >"$lab_run/sshd.pid"
}

# Sets host_pids to the processes of this host (its network namespace: nix-daemon has a mount
# namespace of its own) but this init and its parent.
list_host_processes() {
  host_pids=''
  for dir in /proc/[0-9]*; do
    pid=\${dir#/proc/}
    if [ "$pid" != $$ ] && [ "$pid" != "$PPID" ] && [ "$dir/ns/net" -ef "$own_net" ]; then host_pids="$host_pids $pid"; fi
  done
}

shut_down() {
  list_host_processes
  [ -z "$host_pids" ] || kill -TERM $host_pids 2>/dev/null || true
  looks=0
  while [ "$looks" -lt 10 ]; do
    list_host_processes
    [ -n "$host_pids" ] || break
    sleep 0.1
    looks=$((looks + 1))
  done
  [ -z "$host_pids" ] || kill -KILL $host_pids 2>/dev/null || true
  wait || true
  umount /proc/sys/kernel/random/boot_id
  umount -l /tmp
  umount -l /run
}

boot
while :; do
  request=''
  # (A FIFO that cannot be opened, removed by hand, costs a second per try, not a busy loop.)
  read -r request <${LAB_INIT_CONTROL_FIFO} || [ -n "$request" ] || sleep 1
  if [ "$request" = reboot ]; then
    echo "lab init: rebooting ${plan.name}" >&2
    # As systemd, answer the caller first: its session ends a moment later.
    sleep 0.3
    shut_down
    boot
  fi
done
`;
}

/** One `Host` block per lab host, plus the shared client settings (pinned known_hosts, lab key). */
export function renderSshConfig(
  plans: readonly LabHostPlan[],
  files: { readonly identityFile: string; readonly knownHosts: string },
): string {
  const hostBlocks = plans
    .map((plan) => `Host ${plan.name}\n  HostName ${plan.address}\n  User ${LAB_DEPLOY_USER}\n  Port 22\n`)
    .join('\n');
  const patterns = [...plans.flatMap((plan) => [plan.name, plan.address])].join(' ');
  return `# written by pideploy lab: use with ssh -F <this file>
${hostBlocks}
Host ${patterns}
  IdentityFile ${files.identityFile}
  IdentitiesOnly yes
  UserKnownHostsFile ${files.knownHosts}
  GlobalKnownHostsFile /dev/null
  StrictHostKeyChecking yes
  CheckHostIP no
  BatchMode yes
  ConnectTimeout 10
  ServerAliveInterval 15
`;
}

/** known_hosts lines pinning each host's key under its alias and its address. */
export function renderKnownHosts(entries: readonly { readonly plan: LabHostPlan; readonly publicKey: string }[]): string {
  return entries
    .map(({ plan, publicKey }) => {
      const [type, key] = publicKey.trim().split(/\s+/u);
      return `${plan.name},${plan.address} ${type} ${key}\n`;
    })
    .join('');
}

/** The env file to `source`: local nix settings, SSH options for nix, the GitHub stand-in. */
export function renderEnvFile(variables: Readonly<Record<string, string>>): string {
  return (
    '# written by pideploy lab: source it to point nix, ssh and pideploy at the lab\n' +
    Object.entries(variables)
      .map(([name, value]) => `export ${name}=${shellQuote(value)}\n`)
      .join('')
  );
}

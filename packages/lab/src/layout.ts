import path from 'node:path';

/** The lab's state directory when neither an option nor `PIDEPLOY_LAB_DIR` names one. */
export const DEFAULT_LAB_DIR = '/var/lib/pideploy-lab';

/** Where the lab keeps a host's files (bind-mounted over the host's `/etc`, `/nix`, … inside its namespaces). */
export interface LabHostLayout {
  /** `$LAB/hosts/<name>` */
  readonly root: string;
  /** Becomes the host's `/etc`. */
  readonly etc: string;
  /** Becomes the host's `/nix` (its own store). */
  readonly nix: string;
  /** Becomes the host's `/home`. */
  readonly home: string;
  /** Becomes the host's `/root`. */
  readonly rootHome: string;
  /** Pid files of the host's daemons (`sshd.pid`, `nix-daemon.pid`). */
  readonly run: string;
  /** The host's sshd log (LogLevel VERBOSE). */
  readonly sshdLog: string;
  /** The script that starts the host inside its namespaces. */
  readonly initScript: string;
}

/** Every path the lab writes, all below one directory. Nothing outside it is written but the netns/veth, binfmt and lab store paths. */
export interface LabLayout {
  readonly root: string;
  /** `lab.json`: the lab's recorded state (hosts, pids, what it registered). */
  readonly stateFile: string;
  /** Shell env file to `source` (NIX_CONFIG, NIX_SSHOPTS, …). */
  readonly envFile: string;
  readonly sshDir: string;
  /** The ssh_config with Host aliases `pi1`, `pi2`, …. */
  readonly sshConfig: string;
  /** Pinned host keys of the lab hosts. */
  readonly knownHosts: string;
  /** The lab's client key (private; `.pub` beside it). */
  readonly identityFile: string;
  /** Directory holding the static aarch64 `busybox` and `sh` link. */
  readonly aarch64BusyboxDir: string;
  /** Private apt state used to fetch arm64 packages without touching dpkg's architectures. */
  readonly aptDir: string;
  /** Root served by the archive server (git repos, tarball cache, request log). */
  readonly archiveDir: string;
  readonly logsDir: string;
  /** XDG cache for local nix (fetcher cache) so `/root/.cache` stays untouched. */
  readonly xdgCacheDir: string;
  /** A lab host's own files. */
  host(name: string): LabHostLayout;
}

/**
 * Resolves the lab directory: explicit option, then `PIDEPLOY_LAB_DIR`, then {@link DEFAULT_LAB_DIR}
 * (with `-<instance>` appended for lab instances other than 0).
 */
export function resolveLabDir(explicit?: string | undefined, env: NodeJS.ProcessEnv = process.env, instance = 0): string {
  const fromEnvironment = env['PIDEPLOY_LAB_DIR'];
  const fallback = instance === 0 ? DEFAULT_LAB_DIR : `${DEFAULT_LAB_DIR}-${instance}`;
  return path.resolve(explicit ?? (fromEnvironment === undefined || fromEnvironment === '' ? fallback : fromEnvironment));
}

/** The lab's file layout below `root`. Pure: creates nothing. */
export function labLayout(root: string): LabLayout {
  const sshDir = path.join(root, 'ssh');
  return {
    root,
    stateFile: path.join(root, 'lab.json'),
    envFile: path.join(root, 'env'),
    sshDir,
    sshConfig: path.join(sshDir, 'config'),
    knownHosts: path.join(sshDir, 'known_hosts'),
    identityFile: path.join(sshDir, 'id_ed25519'),
    aarch64BusyboxDir: path.join(root, 'aarch64', 'busybox'),
    aptDir: path.join(root, 'apt'),
    archiveDir: path.join(root, 'archive'),
    logsDir: path.join(root, 'logs'),
    xdgCacheDir: path.join(root, 'xdg-cache'),
    host(name: string): LabHostLayout {
      const hostRoot = path.join(root, 'hosts', name);
      return {
        root: hostRoot,
        etc: path.join(hostRoot, 'etc'),
        nix: path.join(hostRoot, 'nix'),
        home: path.join(hostRoot, 'home'),
        rootHome: path.join(hostRoot, 'root'),
        run: path.join(hostRoot, 'run'),
        sshdLog: path.join(hostRoot, 'sshd.log'),
        initScript: path.join(hostRoot, 'host-init'),
      };
    },
  };
}

import type { CommandSpec } from './command.js';

const labDirFlag = {
  'lab-dir': { type: 'string', valueName: 'DIR', description: 'lab state directory (default $PIDEPLOY_LAB_DIR or /var/lib/pideploy-lab)' },
} as const;

const pinDirFlag = {
  dir: { type: 'string', valueName: 'DIR', description: 'directory of pins.json and pins.nix (default: that of --config, else the current one)' },
} as const;

/** How fleet commands select hosts besides their positionals. */
const ON_FLAG = {
  on: { type: 'string', multiple: true, valueName: '@TAG', description: 'select hosts by tag (or name/glob); repeatable' },
} as const;

/** Flags of the commands that log in to hosts over SSH. */
const ACCEPT_NEW_HOST_KEY_FLAG = {
  'accept-new-host-key': { type: 'boolean', description: 'trust and record the host key of a host seen for the first time (a changed key is always refused)' },
} as const;
const COMPRESS_FLAG = { compress: { type: 'boolean', description: 'compress the SSH connection (zlib) for slow links' } } as const;
/** How long switch-to-configuration may run on a host (deploy, activate). */
const ACTIVATION_TIMEOUT_FLAG = {
  'activation-timeout': {
    type: 'string',
    valueName: 'S',
    description: "seconds switch-to-configuration may run on a host before it is stopped and the host rolls back (default: pideploy.json deploy.activationTimeout, else 600; 0: no limit)",
  },
} as const;
/** Which specialisation of the system to activate (deploy, activate). */
const SPECIALISATION_FLAG = {
  specialisation: {
    type: 'string',
    valueName: 'NAME',
    description: "activate the system's specialisation NAME (its specialisation.NAME) instead of the system itself, which stays the boot default (switch, test, dry-activate; as nixos-rebuild --specialisation; default: the host's pideploy.json specialisation)",
  },
  'no-specialisation': { type: 'boolean', description: "activate the system itself this time, not the host's pideploy.json specialisation" },
} as const;
/** How a command that needs root on the hosts gets the sudo password without a terminal. */
const SUDO_PASSWORD_FLAGS = {
  'sudo-password-file': { type: 'string', valueName: 'F', description: 'read the sudo password from the first line of F' },
  'sudo-password-stdin': { type: 'boolean', description: 'read the sudo password from stdin' },
} as const;

/** Gate the confirmation of `deploy` and `activate` (they replace the fields of pideploy.json's healthCheck). */
const HEALTH_CHECK_FLAGS = {
  'health-check-url': { type: 'string', valueName: 'URL', description: 'confirm only if this URL, fetched from here, answers 2xx ({hostname}: the address SSH went to, {host}: the name), else roll back (with --reboot: also once the host is back)' },
  'health-check-command': { type: 'string', valueName: 'CMD', description: 'confirm only if CMD (run by sh -c on the host, over a new login) exits 0, else roll back (with --reboot: also once the host is back)' },
  'health-check-timeout': { type: 'string', valueName: 'S', description: 'seconds each health check may take (default 10; after a reboot, a failing one is retried within it)' },
  'no-health-check': { type: 'boolean', description: "skip pideploy.json's health check this time" },
} as const;

/** `deploy` and `activate` flags of the reboot into the new system. */
const REBOOT_FLAGS = {
  reboot: { type: 'boolean', description: 'then reboot the host into the new system (its own systemctl), wait until it runs it and passes its health check, else boot it back into the generation it had (with --action boot or switch)' },
  'reboot-timeout': { type: 'string', valueName: 'S', description: 'seconds a host may take to come back from its reboot (default 300)' },
} as const;

/** Nix settings of `build` and `deploy`'s builds, as nixos-rebuild passes them through. */
const NIX_BUILD_FLAGS = {
  'show-trace': { type: 'boolean', description: 'show the whole evaluation trace of a Nix error (nix --show-trace)' },
  'keep-going': { type: 'boolean', short: 'k', description: 'build all that can be built when a derivation fails, and name every failed one' },
  'max-jobs': { type: 'string', short: 'j', valueName: 'N', description: 'derivations built at once here (a number or auto; default: nix.conf)' },
  cores: { type: 'string', valueName: 'N', description: 'CPU cores each build may use (NIX_BUILD_CORES; 0: all; default: nix.conf)' },
  'print-build-logs': { type: 'boolean', short: 'L', description: "show the builds' log lines as they come, after the derivation's name (nix-build -L)" },
  option: { type: 'string', multiple: true, valueName: 'NAME=VALUE', description: 'a Nix setting for the builds (nix --option NAME VALUE); repeatable' },
} as const;

/** `copy` and `deploy`: the target fetches what it can from its own binary caches first (nix-copy-closure --use-substitutes). */
const SUBSTITUTE_ON_DESTINATION_FLAG = {
  'substitute-on-destination': { type: 'boolean', description: 'let the target fetch what it can from its own binary caches (its substituters) first; only the rest goes over SSH' },
} as const;

/** Every command of the CLI. Handlers are imported only when their command runs. */
export const COMMANDS: readonly CommandSpec[] = [
  {
    path: ['init'],
    usage: 'init [dir] [--lab] [--host NAME --target USER@HOST] [--system S] [--branch B] [--force]',
    summary: 'scaffold pideploy.json, a Raspberry Pi configuration.nix and the nixpkgs pin',
    example: 'pideploy init my-pi --lab && cd my-pi && pideploy build pi1',
    flags: {
      lab: { type: 'boolean', description: 'use the running lab hosts and pin the lab\'s mini-nixpkgs' },
      host: { type: 'string', valueName: 'NAME', description: 'host name in pideploy.json (default pi)' },
      target: { type: 'string', valueName: 'USER@HOST', description: 'SSH target of that host (default deploy@<name>.local)' },
      system: { type: 'string', valueName: 'S', description: 'target system (default aarch64-linux)' },
      branch: { type: 'string', valueName: 'B', description: 'nixpkgs branch to pin (default nixos-24.05)' },
      force: { type: 'boolean', description: 'overwrite existing scaffold files' },
    },
    load: async () => (await import('./commands/init.js')).initCommand,
  },
  {
    path: ['lab', 'up'],
    usage: 'lab up [--hosts N] [--untrusted] [--nopasswd]',
    summary: 'start local stand-in Pis (own nix store, nix-daemon, sshd, sudo; needs root)',
    example: 'pideploy lab up --hosts 2',
    flags: {
      hosts: { type: 'string', valueName: 'N', description: 'number of lab hosts pi1…piN (default 1, at most 50)' },
      untrusted: { type: 'boolean', description: 'the deploy user is NOT in the hosts\' nix trusted-users' },
      nopasswd: { type: 'boolean', description: 'the deploy user has sudo without a password' },
      ...labDirFlag,
    },
    load: async () => (await import('./commands/lab.js')).labUpCommand,
  },
  {
    path: ['lab', 'down'],
    usage: 'lab down [--purge]',
    summary: 'stop every lab host and remove all the lab made',
    example: 'pideploy lab down',
    flags: { ...labDirFlag, purge: { type: 'boolean', description: 'also remove the download cache (/var/cache/pideploy-lab)' } },
    load: async () => (await import('./commands/lab.js')).labDownCommand,
  },
  {
    path: ['lab', 'status'],
    usage: 'lab status [--json]',
    summary: 'describe the lab hosts (SSH target, ssh_config, known_hosts, sudo password, logs)',
    example: 'pideploy lab status --json',
    flags: { ...labDirFlag },
    load: async () => (await import('./commands/lab.js')).labStatusCommand,
  },
  {
    path: ['lab', 'exec'],
    usage: 'lab exec <host> -- <command…>',
    summary: 'run a command as root on a lab host\'s console (its namespaces, not SSH)',
    example: 'pideploy lab exec pi1 -- readlink /run/current-system',
    flags: { ...labDirFlag },
    load: async () => (await import('./commands/lab.js')).labExecCommand,
  },
  {
    path: ['lab', 'link'],
    usage: 'lab link <host> (--rate-mbit N | --unshaped)',
    summary: 'limit how fast this machine sends to a lab host, as a slow link to a Pi would',
    example: 'pideploy lab link pi1 --rate-mbit 100',
    flags: {
      'rate-mbit': { type: 'string', valueName: 'N', description: 'Mbit/s to allow (a Pi 3\'s Ethernet: 100)' },
      unshaped: { type: 'boolean', description: 'lift the limit' },
      ...labDirFlag,
    },
    load: async () => (await import('./commands/lab.js')).labLinkCommand,
  },
  {
    path: ['pin', 'add'],
    usage: 'pin add <name> (--github O/R (--branch B|--tag T|--rev R) | --url URL)',
    summary: 'resolve a source to a commit, hash it like fetchTarball, write pins.json + pins.nix',
    example: 'pideploy pin add nixpkgs --github NixOS/nixpkgs --branch nixos-24.05',
    flags: {
      github: { type: 'string', valueName: 'O/R', description: 'a GitHub repository (API: $PIDEPLOY_GITHUB_API, archives: $PIDEPLOY_GITHUB_ARCHIVE, token: $GITHUB_TOKEN)' },
      branch: { type: 'string', valueName: 'B', description: 'follow this branch (pin update moves to its new head)' },
      tag: { type: 'string', valueName: 'T', description: 'pin this tag' },
      rev: { type: 'string', valueName: 'R', description: 'pin this commit (40 hex digits, or an abbreviation the API resolves)' },
      url: { type: 'string', valueName: 'URL', description: 'pin any tarball URL (one top-level directory)' },
      force: { type: 'boolean', description: 'replace an existing pin of the same name' },
      ...pinDirFlag,
    },
    load: async () => (await import('./commands/pin.js')).pinAddCommand,
  },
  {
    path: ['pin', 'update'],
    usage: 'pin update [name…]',
    summary: 'move branch/tag pins to their current commit (shows old → new rev)',
    example: 'pideploy pin update nixpkgs',
    flags: { ...pinDirFlag },
    load: async () => (await import('./commands/pin.js')).pinUpdateCommand,
  },
  {
    path: ['pin', 'verify'],
    usage: 'pin verify [name…]',
    summary: 'download pins again and check their hashes (exit 1 on a mismatch)',
    example: 'pideploy pin verify',
    flags: { ...pinDirFlag },
    load: async () => (await import('./commands/pin.js')).pinVerifyCommand,
  },
  {
    path: ['pin', 'remove'],
    usage: 'pin remove <name…>',
    summary: "remove pins from pins.json and pins.nix (refused for a pin a host of pideploy.json is built from)",
    example: 'pideploy pin remove nixpkgs-next',
    flags: { ...pinDirFlag },
    load: async () => (await import('./commands/pin.js')).pinRemoveCommand,
  },
  {
    path: ['pin', 'show'],
    usage: 'pin show',
    summary: 'list the pins of pins.json',
    example: 'pideploy pin show --json',
    flags: { ...pinDirFlag },
    load: async () => (await import('./commands/pin.js')).pinShowCommand,
  },
  {
    path: ['pin', 'hash'],
    usage: 'pin hash <dir|file.tar.gz|url> [--sri]',
    summary: 'NAR sha256 as nix-prefetch-url --unpack (or nix-hash for a directory) prints it',
    example: 'pideploy pin hash https://github.com/NixOS/nixpkgs/archive/nixos-24.05.tar.gz',
    flags: { sri: { type: 'boolean', description: 'print SRI (sha256-…=) instead of nix32' } },
    load: async () => (await import('./commands/pin.js')).pinHashCommand,
  },
  {
    path: ['build'],
    takesHosts: true,
    usage: 'build [host…] [--dry-run] [--print-expr] [--system S] [--mode emulated|cross|builders] [--configuration FILE] [--pins FILE] [--show-trace] [-L] [-k] [-j N] [--option NAME=VALUE]',
    summary: 'build each host\'s NixOS system from the pinned nixpkgs and its bundle; prints the bundle store path(s)',
    example: 'pideploy build pi1',
    flags: {
      'dry-run': { type: 'boolean', description: "evaluate every host and say what a build would build and fetch, building nothing (nixos-rebuild dry-build); exit 1 if a host's configuration fails" },
      'print-expr': { type: 'boolean', description: 'print the Nix expression instead of building (nix-build it for the same path)' },
      system: { type: 'string', valueName: 'S', description: 'target system (default: pideploy.json, else aarch64-linux)' },
      mode: { type: 'string', valueName: 'M', description: 'emulated (qemu binfmt) | cross | builders (Nix remote builders)' },
      configuration: { type: 'string', valueName: 'FILE', description: 'configuration.nix to build (instead of pideploy.json\'s hosts)' },
      pins: { type: 'string', valueName: 'FILE', description: 'pins.nix to take nixpkgs from (default: beside pideploy.json)' },
      pin: { type: 'string', valueName: 'NAME', description: "the pin of pins.nix that is nixpkgs, for every host (default: each host's pideploy.json nixpkgs, else nixpkgs)" },
      builders: { type: 'string', valueName: 'SPEC', description: "remote builders for --mode builders, e.g. 'ssh://root@pi1 aarch64-linux'" },
      ...NIX_BUILD_FLAGS,
    },
    load: async () => (await import('./commands/build.js')).buildCommand,
  },
  {
    path: ['doctor'],
    usage: 'doctor [--system S] [--mode M] [--builders SPEC]',
    summary: 'check that this machine can build for the Pi (nix, binfmt, extra-platforms, builders, disk space)',
    example: 'pideploy doctor',
    flags: {
      system: { type: 'string', valueName: 'S', description: 'target system (default aarch64-linux)' },
      mode: { type: 'string', valueName: 'M', description: 'build mode the checks are for (default emulated)' },
      builders: { type: 'string', valueName: 'SPEC', description: "remote builders to ping, e.g. 'ssh://root@pi1 aarch64-linux'" },
    },
    load: async () => (await import('./commands/doctor.js')).doctorCommand,
  },
  {
    path: ['deploy'],
    takesHosts: true,
    usage: 'deploy [host…|--on @tag] [--action A] [--parallel N] [--canary N|@TAG] [--max-failures N] [--failed] [--target USER@HOST] [--specialisation NAME|--no-specialisation] [--confirm-timeout S] [--activation-timeout S] [--no-rollback] [--health-check-url URL] [--health-check-command CMD] [--reboot|--reboot-if-needed] [--dry-run] [--force] [--cache|--no-cache] [--substitute-on-destination] [--no-keys] [--show-trace] [-L] [-k] [-j N] [--option NAME=VALUE]',
    summary: 'build, bundle, diff, copy and activate hosts of pideploy.json (one sudo password, magic rollback)',
    example: 'pideploy deploy pi1',
    flags: {
      ...ON_FLAG,
      action: { type: 'string', valueName: 'A', description: 'switch (default), boot, test or dry-activate' },
      ...SPECIALISATION_FLAG,
      parallel: { type: 'string', valueName: 'N', description: 'hosts deployed at once (default: pideploy.json deploy.parallel, else 1)' },
      canary: { type: 'string', multiple: true, valueName: 'N|@TAG', description: 'deploy these hosts first (the first N, or names/@tags; default: pideploy.json deploy.canary); the rest only if they all succeed' },
      'no-canary': { type: 'boolean', description: "no canary this time (pideploy.json's deploy.canary)" },
      'max-failures': { type: 'string', valueName: 'N', description: 'start no more hosts once N have failed (default: pideploy.json deploy.maxFailures, else try every host)' },
      failed: { type: 'boolean', description: 'only the (selected) hosts whose last deployment from this project failed or was not started' },
      target: { type: 'string', valueName: 'USER@HOST', description: "reach the one selected host at this SSH target this time (pideploy.json's target unchanged)" },
      'confirm-timeout': { type: 'string', valueName: 'S', description: 'seconds a host waits for the confirmation before rolling back (default 30)' },
      ...ACTIVATION_TIMEOUT_FLAG,
      'no-rollback': { type: 'boolean', description: 'no magic rollback' },
      'dry-run': { type: 'boolean', description: 'build, bundle and show the diff; copy and activate nothing' },
      ...COMPRESS_FLAG,
      cache: { type: 'boolean', description: "push once to the signed fleet cache (pideploy.json \"cache\", default .pideploy/cache) and let hosts substitute from it" },
      'no-cache': { type: 'boolean', description: 'copy over each host\'s SSH connection even when pideploy.json has a cache' },
      ...SUBSTITUTE_ON_DESTINATION_FLAG,
      force: { type: 'boolean', description: 'activate even where the host already runs the built system' },
      'no-keys': { type: 'boolean', description: "do not upload pideploy.json's keys this time" },
      ...HEALTH_CHECK_FLAGS,
      'install-bootloader': { type: 'boolean', description: 'NIXOS_INSTALL_BOOTLOADER=1 (install, not just update, the boot loader)' },
      ...REBOOT_FLAGS,
      'reboot-if-needed': { type: 'boolean', description: 'after a switch, reboot only the hosts whose new kernel, initrd or kernel modules differ from those they booted with' },
      ...NIX_BUILD_FLAGS,
      ...ACCEPT_NEW_HOST_KEY_FLAG,
      ...SUDO_PASSWORD_FLAGS,
    },
    load: async () => (await import('./commands/deploy.js')).deployCommand,
  },
  {
    path: ['activate'],
    takesHosts: true,
    usage: 'activate <host> [--toplevel P] [--bundle B] [--action switch|boot|test|dry-activate] [--specialisation NAME|--no-specialisation] [--confirm-timeout S] [--activation-timeout S] [--no-rollback] [--force] [--health-check-url URL] [--health-check-command CMD] [--reboot]',
    summary: 'switch a host to a system already in its store (default: the bundle of pideploy build, after pideploy copy): profile, switch-to-configuration, magic rollback, GC root',
    example: 'pideploy build pi1 && pideploy copy pi1 --sudo-password-stdin && pideploy activate pi1',
    flags: {
      toplevel: { type: 'string', valueName: 'P', description: "the system store path (config.system.build.toplevel), already copied to the host (default: the built bundle's)" },
      bundle: { type: 'string', valueName: 'B', description: 'the bundle to GC-root at /etc/nixos/current-configuration once confirmed (default without --toplevel: the one pideploy build made)' },
      action: { type: 'string', valueName: 'A', description: 'switch (default) | boot | test | dry-activate, as switch-to-configuration' },
      ...SPECIALISATION_FLAG,
      'confirm-timeout': { type: 'string', valueName: 'S', description: 'seconds the host waits for the confirmation before rolling back (default 30)' },
      ...ACTIVATION_TIMEOUT_FLAG,
      'no-rollback': { type: 'boolean', description: 'do not ask for a confirmation (no magic rollback)' },
      force: { type: 'boolean', description: 'activate even if the host already runs this system' },
      ...HEALTH_CHECK_FLAGS,
      'install-bootloader': { type: 'boolean', description: 'NIXOS_INSTALL_BOOTLOADER=1 (install, not just update, the boot loader)' },
      ...REBOOT_FLAGS,
      'ssh-config': { type: 'string', valueName: 'F', description: 'ssh_config file to use (like ssh -F)' },
      ...ACCEPT_NEW_HOST_KEY_FLAG,
      ...SUDO_PASSWORD_FLAGS,
    },
    load: async () => (await import('./commands/activate.js')).activateCommand,
  },
  {
    path: ['rollback'],
    takesHosts: true,
    usage: 'rollback <host…|--on @tag> [--to N] [--action switch|boot] [--reboot] [--parallel N]',
    summary: 'switch hosts back to an earlier system profile generation (default: each one\'s previous one)',
    example: 'pideploy rollback pi1 --to 41 --action boot --reboot',
    flags: {
      ...ON_FLAG,
      parallel: { type: 'string', valueName: 'N', description: 'hosts rolled back at once (default 1)' },
      to: { type: 'string', valueName: 'N', description: 'the generation to go back to' },
      action: { type: 'string', valueName: 'A', description: 'switch (default: run it now) | boot (make it the boot default only, as nixos-rebuild boot --rollback)' },
      reboot: { type: 'boolean', description: 'then reboot the host into that generation and wait until it runs it' },
      'reboot-timeout': REBOOT_FLAGS['reboot-timeout'],
      'ssh-config': { type: 'string', valueName: 'F', description: 'ssh_config file to use (like ssh -F)' },
      ...ACCEPT_NEW_HOST_KEY_FLAG,
      ...SUDO_PASSWORD_FLAGS,
    },
    load: async () => (await import('./commands/activate.js')).rollbackCommand,
  },
  {
    path: ['add-host'],
    usage: 'add-host <name> --target USER@HOST [--tag T]… [--configuration FILE] [--system S] [--sudo password|nopasswd|root] [--ssh-config F] [--no-probe]',
    summary: 'log in to a machine once (host key checked) to learn its system and how to get root, and add it to pideploy.json',
    example: 'pideploy add-host kitchen --target deploy@kitchen.local --tag fleet',
    flags: {
      target: { type: 'string', valueName: 'USER@HOST', description: 'its SSH destination (user@host[:port] or an ssh_config alias)' },
      tag: { type: 'string', multiple: true, valueName: 'T', description: 'a tag to select it with (--on @T); repeatable' },
      configuration: { type: 'string', valueName: 'FILE', description: "its configuration.nix (default: the project's configuration.nix)" },
      system: { type: 'string', valueName: 'S', description: 'its Nix system (default: what the machine says, e.g. aarch64 → aarch64-linux)' },
      sudo: { type: 'string', valueName: 'MODE', description: 'password | nopasswd | root (default: what the login can do: root, sudo -n, else password)' },
      'ssh-config': { type: 'string', valueName: 'F', description: 'an ssh_config file for this host (written to pideploy.json)' },
      'no-probe': { type: 'boolean', description: 'do not log in: add it as the flags say' },
      ...ACCEPT_NEW_HOST_KEY_FLAG,
    },
    load: async () => (await import('./commands/add-host.js')).addHostCommand,
  },
  {
    path: ['hosts'],
    takesHosts: true,
    usage: 'hosts [host…|--on @tag]',
    summary: 'list the hosts of pideploy.json a selection names: target, system, tags, configuration, last deployment from here (connects to nothing)',
    example: 'pideploy hosts --on @canary',
    flags: {
      ...ON_FLAG,
    },
    load: async () => (await import('./commands/hosts.js')).hostsCommand,
  },
  {
    path: ['status'],
    takesHosts: true,
    usage: 'status [host…] [--short]',
    summary: 'running, booted and profile systems, generations, deployed bundle, last deployment and needed reboot of hosts',
    example: 'pideploy status --short',
    flags: {
      short: { type: 'boolean', description: 'one line per host: generation, running system, last deployment, what needs a look' },
      'ssh-config': { type: 'string', valueName: 'F', description: 'ssh_config file to use (like ssh -F)' },
      ...ACCEPT_NEW_HOST_KEY_FLAG,
    },
    load: async () => (await import('./commands/activate.js')).statusCommand,
  },
  {
    path: ['diff'],
    takesHosts: true,
    usage: 'diff <host> [--toplevel P | --bundle B] [--specialisation NAME|--no-specialisation]',
    summary: 'closure diff between the system a host runs and P (default: the bundle pideploy build made): added, removed, versions, sizes',
    example: 'pideploy build pi1 && pideploy diff pi1',
    flags: {
      toplevel: { type: 'string', valueName: 'P', description: "the new system store path, built here (default: the built bundle's)" },
      bundle: { type: 'string', valueName: 'B', description: 'a bundle built here: diff against its system' },
      specialisation: { type: 'string', valueName: 'NAME', description: "diff against that specialisation of the system, which the host would run (default: the host's pideploy.json specialisation)" },
      'no-specialisation': { type: 'boolean', description: "diff against the system itself, not the host's pideploy.json specialisation" },
      'ssh-config': { type: 'string', valueName: 'F', description: 'ssh_config file to use (like ssh -F)' },
      ...ACCEPT_NEW_HOST_KEY_FLAG,
    },
    load: async () => (await import('./commands/activate.js')).diffCommand,
  },
  {
    path: ['copy'],
    takesHosts: true,
    usage: 'copy <host…> [--path P] [--ssh-config F] [--sudo-password-file F | --sudo-password-stdin]',
    summary: 'copy a closure to the host(s): only missing paths, one SSH connection each, through sudo if the user is not trusted',
    example: 'pideploy copy deploy@pi.local --path ./result --sudo-password-file ~/.pi-sudo',
    flags: {
      path: { type: 'string', multiple: true, valueName: 'P', description: 'store path (or ./result symlink) whose closure to copy; repeatable' },
      ...COMPRESS_FLAG,
      'ssh-config': { type: 'string', valueName: 'F', description: 'ssh_config file to use (like ssh -F)' },
      ...ACCEPT_NEW_HOST_KEY_FLAG,
      'sudo-password-file': { type: 'string', valueName: 'F', description: 'import as root through sudo, password on the first line of F' },
      'sudo-password-stdin': { type: 'boolean', description: 'import as root through sudo, password on the first line of stdin' },
      ...SUBSTITUTE_ON_DESTINATION_FLAG,
    },
    load: async () => (await import('./commands/copy.js')).copyCommand,
  },
  {
    path: ['exec'],
    takesHosts: true,
    usage: 'exec [host…|--on @tag] [--sudo] [--parallel N] [--timeout S] -- <command…>',
    summary: 'run a command on hosts of pideploy.json (one SSH connection each), its output after each host\'s name',
    example: "pideploy exec --on @pi --parallel 10 -- systemctl is-active nginx",
    flags: {
      ...ON_FLAG,
      sudo: { type: 'boolean', description: 'run it as root through sudo (the password asked once per login user)' },
      parallel: { type: 'string', valueName: 'N', description: 'hosts at once (default 1)' },
      timeout: { type: 'string', valueName: 'S', description: 'stop the command on a host after S seconds' },
      ...COMPRESS_FLAG,
      ...ACCEPT_NEW_HOST_KEY_FLAG,
      'sudo-password-file': { type: 'string', valueName: 'F', description: 'with --sudo: read the sudo password from the first line of F' },
      'sudo-password-stdin': { type: 'boolean', description: 'with --sudo: read the sudo password from stdin' },
    },
    load: async () => (await import('./commands/exec.js')).execCommand,
  },
  {
    path: ['ssh'],
    takesHosts: true,
    usage: 'ssh <host> [--ssh-config F] [-- command…]',
    summary: "log in to a host of pideploy.json by its name (OpenSSH, with the host's target, ssh_config and pideploy's host-key check); exits with ssh's code",
    example: 'pideploy ssh kitchen -- journalctl -u nginx -n 20',
    flags: {
      'ssh-config': { type: 'string', valueName: 'F', description: "ssh_config file to use (like ssh -F; default: the host's pideploy.json sshConfig)" },
      ...ACCEPT_NEW_HOST_KEY_FLAG,
    },
    load: async () => (await import('./commands/ssh.js')).sshCommand,
  },
  {
    path: ['upload-keys'],
    takesHosts: true,
    usage: 'upload-keys [host…|--on @tag] [--at pre-activation|post-activation] [--parallel N] [--dry-run]',
    summary: "put the hosts' pideploy.json keys (secrets, outside the Nix store) in place without deploying: one root command per host",
    example: 'pideploy upload-keys --on @pi --sudo-password-file ~/.pi-sudo',
    flags: {
      ...ON_FLAG,
      at: { type: 'string', valueName: 'WHEN', description: 'only the keys uploaded at pre-activation or post-activation (default: all)' },
      parallel: { type: 'string', valueName: 'N', description: 'hosts at once (default 1)' },
      'dry-run': { type: 'boolean', description: 'read the keys and list what would go where; connect to nothing' },
      ...COMPRESS_FLAG,
      ...ACCEPT_NEW_HOST_KEY_FLAG,
      ...SUDO_PASSWORD_FLAGS,
    },
    load: async () => (await import('./commands/keys.js')).uploadKeysCommand,
  },
  {
    path: ['gc'],
    takesHosts: true,
    usage: 'gc [host…|--on @tag] [--keep N] [--parallel N] [--dry-run]',
    summary: 'free space on the hosts: delete system generations but the N newest (never the running, booted or next one), rewrite the boot loader, collect the garbage',
    example: 'pideploy gc --on @pi --keep 3',
    flags: {
      ...ON_FLAG,
      keep: { type: 'string', valueName: 'N', description: 'system generations kept, the newest (default 3); the running, booted and next one are always kept' },
      parallel: { type: 'string', valueName: 'N', description: 'hosts at once (default 1)' },
      'dry-run': { type: 'boolean', description: 'say which generations would go; delete nothing' },
      ...COMPRESS_FLAG,
      ...ACCEPT_NEW_HOST_KEY_FLAG,
      ...SUDO_PASSWORD_FLAGS,
    },
    load: async () => (await import('./commands/gc.js')).gcCommand,
  },
];

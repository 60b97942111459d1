import type { CommandSpec } from './command.js';

const labDirFlag = {
  'lab-dir': { type: 'string', valueName: 'DIR', description: 'lab state directory (default $PIDEPLOY_LAB_DIR or /var/lib/pideploy-lab)' },
} as const;

const pinDirFlag = {
  dir: { type: 'string', valueName: 'DIR', description: 'directory of pins.json and pins.nix (default: that of --config, else the current one)' },
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
    usage: 'lab down',
    summary: 'stop every lab host and remove all the lab made',
    example: 'pideploy lab down',
    flags: { ...labDirFlag },
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
    usage: 'build [host…] [--print-expr] [--system S] [--mode emulated|cross|builders] [--configuration FILE] [--pins FILE]',
    summary: 'build each host\'s NixOS system from the pinned nixpkgs and its bundle; prints the bundle store path(s)',
    example: 'pideploy build pi1',
    flags: {
      'print-expr': { type: 'boolean', description: 'print the Nix expression instead of building (nix-build it for the same path)' },
      system: { type: 'string', valueName: 'S', description: 'target system (default: pideploy.json, else aarch64-linux)' },
      mode: { type: 'string', valueName: 'M', description: 'emulated (qemu binfmt) | cross | builders (Nix remote builders)' },
      configuration: { type: 'string', valueName: 'FILE', description: 'configuration.nix to build (instead of pideploy.json\'s hosts)' },
      pins: { type: 'string', valueName: 'FILE', description: 'pins.nix to take nixpkgs from (default: beside pideploy.json)' },
      pin: { type: 'string', valueName: 'NAME', description: 'attribute of pins.nix holding nixpkgs (default nixpkgs)' },
      builders: { type: 'string', valueName: 'SPEC', description: "remote builders for --mode builders, e.g. 'ssh://root@pi1 aarch64-linux'" },
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
];

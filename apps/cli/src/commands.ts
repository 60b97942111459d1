import type { CommandSpec } from './command.js';

const labDirFlag = {
  'lab-dir': { type: 'string', valueName: 'DIR', description: 'lab state directory (default $PIDEPLOY_LAB_DIR or /var/lib/pideploy-lab)' },
} as const;

/** Every command of the CLI. Handlers are imported only when their command runs. */
export const COMMANDS: readonly CommandSpec[] = [
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
];

import { PideployError } from '@pideploy/core';
import type { BuildMode } from './expression.js';

/** One Nix remote builder (a line of `--builders` / `/etc/nix/machines`). */
export interface RemoteBuilder {
  /** `ssh://root@pi1` or `ssh-ng://builder@host` (ssh honours NIX_SSHOPTS and ~/.ssh/config). */
  readonly uri: string;
  /** Systems it builds, e.g. `['aarch64-linux']`. */
  readonly systems: readonly string[];
  /** SSH private key file (default: ssh's own choice). */
  readonly sshKey?: string | undefined;
  /** Parallel builds on it (default 1). */
  readonly maxJobs?: number | undefined;
  /** Relative speed (default 1). */
  readonly speedFactor?: number | undefined;
  /** Features it supports (`big-parallel`, `kvm`, …). */
  readonly supportedFeatures?: readonly string[] | undefined;
}

/** Parses `ssh://root@pi1 aarch64-linux[,x] [key] [jobs] [speed] [features]` (the machines format). */
export function parseRemoteBuilder(spec: string): RemoteBuilder {
  const [uri, systems, sshKey, maxJobs, speedFactor, features] = spec.trim().split(/\s+/u);
  if (uri === undefined || uri === '' || !/^[a-z-]+:\/\//u.test(uri)) {
    throw new PideployError({
      code: 'PIDEPLOY_USAGE',
      message: `not a remote builder: ${JSON.stringify(spec)}`,
      hint: "write it as Nix does: 'ssh://root@pi1 aarch64-linux'",
    });
  }
  const dash = (value: string | undefined): string | undefined => (value === undefined || value === '-' ? undefined : value);
  return {
    uri,
    systems: (dash(systems) ?? 'aarch64-linux').split(','),
    sshKey: dash(sshKey),
    maxJobs: dash(maxJobs) === undefined ? undefined : Number(maxJobs),
    speedFactor: dash(speedFactor) === undefined ? undefined : Number(speedFactor),
    supportedFeatures: dash(features)?.split(','),
  };
}

/** The value of Nix's `builders` setting for these builders (`;`-separated machine lines). */
export function renderBuildersSpec(builders: readonly RemoteBuilder[]): string {
  return builders
    .map((builder) =>
      [
        builder.uri,
        builder.systems.join(','),
        builder.sshKey ?? '-',
        String(builder.maxJobs ?? 1),
        String(builder.speedFactor ?? 1),
        builder.supportedFeatures === undefined || builder.supportedFeatures.length === 0 ? '-' : builder.supportedFeatures.join(','),
      ].join(' '),
    )
    .join(' ; ');
}

/**
 * The nix-build arguments a mode needs besides the expression. `builders`: the remote builders,
 * `builders-use-substitutes`, `--max-jobs 0` and an empty `extra-platforms`, so this machine
 * cannot build the target's derivations itself (not even `preferLocalBuild` ones); with no
 * builders given, Nix's own `builders` setting is used.
 */
export function buildModeArguments(mode: BuildMode, builders: readonly RemoteBuilder[] = []): string[] {
  if (mode !== 'builders') return [];
  return [
    ...(builders.length > 0 ? ['--builders', renderBuildersSpec(builders)] : []),
    '--option',
    'builders-use-substitutes',
    'true',
    '--option',
    'extra-platforms',
    '',
    '--max-jobs',
    '0',
  ];
}

import { PideployError, tailLines, type PideployContext } from '@pideploy/core';
import { connectSsh, type ConnectSshOptions } from '@pideploy/ssh';
import type { SudoMode } from './config.js';

/** What {@link probeHost} learnt about a machine over one SSH login. */
export interface HostProbe {
  /** `user@host:port` as connected. */
  readonly display: string;
  /** `uname -m` (`aarch64`, `armv7l`, `x86_64` …). */
  readonly machine: string;
  /** The Nix system for that machine, when pideploy.json knows it (`aarch64-linux` …). */
  readonly system: string | undefined;
  /** How pideploy gets root there: logged in as root, sudo without a password, or sudo with one (not tried here). */
  readonly sudo: SudoMode;
  /** Whether the login's PATH has Nix (`nix-store`). */
  readonly hasNix: boolean;
  /** `/run/current-system/nixos-version`, when it runs NixOS. */
  readonly nixosVersion: string | undefined;
}

/**
 * The one command of a probe (no root, no password: `sudo -n` only says whether sudo would ask):
 * a line each for the machine, the user id, sudo, Nix and the NixOS version.
 */
export const HOST_PROBE_SCRIPT = [
  'uname -m',
  'id -u',
  'if sudo -n true 2>/dev/null; then echo nopasswd; else echo password; fi',
  'if command -v nix-store >/dev/null 2>&1; then echo nix; else echo no-nix; fi',
  'cat /run/current-system/nixos-version 2>/dev/null || echo -',
].join('; ');

/** `uname -m` to the Nix system pideploy.json takes (undefined for one it does not). Pure. */
export function nixSystemOfMachine(machine: string): string | undefined {
  const systems: Record<string, string> = { aarch64: 'aarch64-linux', arm64: 'aarch64-linux', x86_64: 'x86_64-linux', armv7l: 'armv7l-linux', armv6l: 'armv6l-linux', riscv64: 'riscv64-linux' };
  return systems[machine];
}

/** Reads {@link HOST_PROBE_SCRIPT}'s output (undefined when it is not that). Pure. */
export function parseHostProbe(stdout: string, display: string): HostProbe | undefined {
  const [machine, uid, sudo, nix, version] = stdout.trim().split('\n').map((line) => line.trim());
  if (machine === undefined || machine === '' || uid === undefined || !/^\d+$/u.test(uid) || (sudo !== 'nopasswd' && sudo !== 'password') || (nix !== 'nix' && nix !== 'no-nix')) return undefined;
  return {
    display,
    machine,
    system: nixSystemOfMachine(machine),
    sudo: uid === '0' ? 'root' : sudo,
    hasNix: nix === 'nix',
    nixosVersion: version === undefined || version === '-' || version === '' ? undefined : version,
  };
}

/**
 * Logs in to a machine once and reads what pideploy.json needs to know about it (its Nix system,
 * how to get root) and whether it can take a deployment (Nix, NixOS): for `pideploy add-host`.
 * The host key is checked as for every connection (a new one only with `acceptNewHostKey`).
 * @throws PideployError the connection's (`PIDEPLOY_SSH_*`), or `PIDEPLOY_PROBE_FAILED`.
 */
export async function probeHost(target: string, options: ConnectSshOptions, context: PideployContext): Promise<HostProbe> {
  await using session = await connectSsh(target, { ...options, signal: context.signal }, context);
  const result = await session.exec(['sh', '-c', HOST_PROBE_SCRIPT], { signal: context.signal });
  const probe = result.exitCode === 0 ? parseHostProbe(result.stdout, session.display) : undefined;
  if (probe === undefined) {
    throw new PideployError({
      code: 'PIDEPLOY_PROBE_FAILED',
      message: `${session.display} did not answer like a Linux machine (exit ${result.exitCode ?? 'signal'}): ${tailLines(result.stderr || result.stdout, 2)}`,
      hint: 'pideploy deploys NixOS on Linux; check the target, or add the host with --no-probe --system S --sudo MODE',
    });
  }
  return probe;
}

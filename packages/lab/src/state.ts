import { randomBytes } from 'node:crypto';
import { readFile, rename, writeFile } from 'node:fs/promises';
import { PideployError } from '@pideploy/core';
import type { LabSudoMode } from './host-plan.js';

/** What `lab up` recorded in `lab.json` (versioned, so later pideploy versions can read it). */
export interface LabStateFile {
  readonly version: 1;
  /** The lab instance (0…9): namespaces, subnet and port depend on it. */
  readonly instance: number;
  /** Hosts by name with their knobs. */
  readonly hosts: Readonly<
    Record<string, { readonly index: number; readonly trusted: boolean; readonly sudo: LabSudoMode; readonly storeSizeMiB?: number }>
  >;
  /** What the lab did to binfmt_misc (so `down` undoes only that). */
  readonly binfmt: { readonly registeredByLab: boolean; readonly mountedByLab: boolean };
  /** The lab created the empty `/nix` mount point (no local nix had run yet); `down` removes it if still empty. */
  readonly createdNixMountPoint?: boolean | undefined;
  /** The archive server's port (fixed, so pinned URLs stay valid across restarts). */
  readonly archivePort: number;
  /** mini-nixpkgs as published by the archive server. */
  readonly nixpkgs?: LabNixpkgsInfo | undefined;
}

/** The mini-nixpkgs repository the archive server publishes as `NixOS/nixpkgs`. */
export interface LabNixpkgsInfo {
  /** `NixOS/nixpkgs` */
  readonly repository: string;
  /** Branch → commit. */
  readonly branches: Readonly<Record<string, string>>;
  /** Tag → commit. */
  readonly tags: Readonly<Record<string, string>>;
  /** Every commit, oldest first, with the mini-nixpkgs version it carries. */
  readonly revisions: readonly { readonly rev: string; readonly version: string }[];
}

/** Reads `lab.json`; undefined when the lab was never brought up here. */
export async function readLabState(stateFile: string): Promise<LabStateFile | undefined> {
  let text: string;
  try {
    text = await readFile(stateFile, 'utf8');
  } catch {
    return undefined;
  }
  const parsed = JSON.parse(text) as { version?: unknown };
  if (parsed.version !== 1) {
    throw new PideployError({
      code: 'PIDEPLOY_LAB_SETUP_FAILED',
      message: `${stateFile} has version ${String(parsed.version)}, this pideploy reads version 1`,
      hint: 'run `pideploy lab down` with the pideploy that created the lab, or remove the lab directory',
    });
  }
  return parsed as LabStateFile;
}

/** Writes `lab.json` atomically (temp file + rename): a crash never leaves half a state file. */
export async function writeLabState(stateFile: string, state: LabStateFile): Promise<void> {
  const temporary = `${stateFile}.${randomBytes(6).toString('hex')}.tmp`;
  await writeFile(temporary, `${JSON.stringify(state, null, 2)}\n`, { mode: 0o644 });
  await rename(temporary, stateFile);
}

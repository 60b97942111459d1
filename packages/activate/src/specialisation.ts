/**
 * NixOS specialisations (`specialisation.<name>.configuration`): other systems a system carries
 * as `toplevel/specialisation/<name>`. Activating one, as `nixos-rebuild switch --specialisation
 * NAME` does, keeps `toplevel` as the boot default (the system profile) and runs
 * `toplevel/specialisation/NAME/bin/switch-to-configuration` instead of the system's own.
 */
import { readdirSync, realpathSync, statSync } from 'node:fs';
import path from 'node:path';
import { PideployError, type ActivationAction } from '@pideploy/core';

/** The code of the error for a specialisation the system does not have. */
export const SPECIALISATION_UNKNOWN = 'PIDEPLOY_SPECIALISATION_UNKNOWN';

/**
 * Whether `name` can name a specialisation (NixOS's `specialisation.<name>`): a non-empty file name
 * (no `/`, not `.` or `..`, no newline or NUL: the script and its state file take it as one line).
 */
export function isSpecialisationName(name: string): boolean {
  return name !== '' && name !== '.' && name !== '..' && !/[/\n\0]/u.test(name);
}

/**
 * Refuses, before any host is touched, a specialisation that cannot be activated as asked: a name
 * that is no file name, `boot` (the boot loader starts the system itself; its menu lists the
 * specialisations), or a reboot (which would start the system itself, not the specialisation).
 * @throws PideployError `PIDEPLOY_USAGE`
 */
export function checkSpecialisationUse(input: { readonly action: ActivationAction; readonly specialisation: string | undefined; readonly reboot?: boolean | 'if-needed' | undefined }): void {
  const { action, specialisation, reboot } = input;
  if (specialisation === undefined) return;
  if (!isSpecialisationName(specialisation)) {
    throw new PideployError({
      code: 'PIDEPLOY_USAGE',
      message: `--specialisation ${JSON.stringify(specialisation)} is not a specialisation name`,
      hint: 'give the name of one of the configuration\'s `specialisation.<name>` (a directory of the system\'s specialisation/)',
    });
  }
  if (action === 'boot') {
    throw new PideployError({
      code: 'PIDEPLOY_USAGE',
      message: '--specialisation with --action boot: a boot starts the system itself, not one of its specialisations',
      hint: 'use --action switch or test with --specialisation (as nixos-rebuild does), or boot and pick the specialisation in the boot menu',
    });
  }
  if (reboot !== undefined && reboot !== false) {
    throw new PideployError({
      code: 'PIDEPLOY_USAGE',
      message: `--specialisation with ${reboot === true ? '--reboot' : '--reboot-if-needed'}: the host would boot the system itself, not the specialisation ${specialisation}`,
      hint: 'deploy the specialisation without a reboot, or reboot into the system itself without --specialisation',
    });
  }
}

/** The specialisations a system built here has (the names under `toplevel/specialisation/`), sorted. */
export function specialisationsOf(toplevel: string): string[] {
  try {
    return readdirSync(path.join(toplevel, 'specialisation')).sort();
  } catch {
    return [];
  }
}

/**
 * The system of the specialisation `name` of the system `toplevel`, in this machine's store
 * (`toplevel/specialisation/NAME`, resolved): what the host will run. Checked before anything is
 * copied; the error names the specialisations the system has.
 * @throws PideployError {@link SPECIALISATION_UNKNOWN}
 */
export function specialisationSystem(toplevel: string, name: string, host?: string): string {
  const system = path.join(toplevel, 'specialisation', name);
  try {
    if (statSync(path.join(system, 'bin', 'switch-to-configuration')).isFile()) return realpathSync(system);
  } catch {
    // not there: said below
  }
  const names = specialisationsOf(toplevel);
  throw new PideployError({
    code: SPECIALISATION_UNKNOWN,
    message: `${host === undefined ? 'the system' : `${host}'s system`} ${toplevel} has no specialisation ${JSON.stringify(name)}`,
    hint:
      names.length === 0
        ? 'its configuration defines no `specialisation.<name>`: add one, or deploy without --specialisation'
        : `it has ${names.map((known) => JSON.stringify(known)).join(', ')}: pick one of them, or add \`specialisation.${JSON.stringify(name)}.configuration\` to the configuration`,
  });
}

/**
 * Shell text (POSIX sh builtins only, no process) printing `specialisation NAME` when the resolved
 * system in variable `running` is the specialisation NAME of the resolved system in variable
 * `profile`, i.e. `$profile/specialisation/NAME` resolves to it. Leaves the directory at `/`.
 */
export function printRunningSpecialisationScript(running: string, profile: string): string {
  return `if [ -n "$${running}" ] && [ -n "$${profile}" ] && [ "$${running}" != "$${profile}" ]; then for s in "$${profile}"/specialisation/*; do if cd -P "$s" 2>/dev/null; then [ "$PWD" = "$${running}" ] && printf 'specialisation %s\\n' "\${s##*/}"; fi; done; cd /; fi`;
}

/** The specialisation named in lines {@link printRunningSpecialisationScript} printed (other lines are ignored). */
export function parseRunningSpecialisation(lines: readonly string[]): string | undefined {
  const line = lines.find((candidate) => candidate.startsWith('specialisation '));
  return line === undefined ? undefined : line.slice('specialisation '.length);
}

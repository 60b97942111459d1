/**
 * What a switch cannot change on a running host: the links of a NixOS system that only a boot
 * loads (its kernel, initrd and kernel modules). A host whose boot default has other ones than it
 * booted with needs a reboot to run them, as `nixos-needsreboot` tells.
 */
import { readlinkSync } from 'node:fs';
import path from 'node:path';

/** The links of a system that a reboot loads, in the order they are shown. */
export const BOOT_PARTS = ['kernel', 'initrd', 'kernel-modules'] as const;

/** One of {@link BOOT_PARTS}. */
export type BootPart = (typeof BOOT_PARTS)[number];

/** Where each of a system's {@link BOOT_PARTS} points (undefined: the system has no such link). */
export type BootParts = Readonly<Record<BootPart, string | undefined>>;

/**
 * A shell line printing, for the system at `system` (a shell word: a path without shell
 * specials such as `/run/booted-system`, or a quoted `"$1"`), `boot-part NAME TARGET` per link
 * of {@link BOOT_PARTS} it has (one `find`, whatever the number of links), after `boot-system`
 * when the system exists.
 */
export function printBootPartsScript(system: string): string {
  const names = BOOT_PARTS.map((part) => `-name ${part}`).join(' -o ');
  return `if [ -e ${system} ]; then echo boot-system; find -H ${system} -mindepth 1 -maxdepth 1 \\( ${names} \\) -printf 'boot-part %f %l\\n' 2>/dev/null; fi`;
}

/**
 * The {@link BootParts} in lines {@link printBootPartsScript} printed (other lines are ignored);
 * undefined when the system did not exist.
 */
export function parseBootParts(lines: readonly string[]): BootParts | undefined {
  if (!lines.includes('boot-system')) return undefined;
  const found = new Map<string, string>();
  for (const line of lines) {
    const match = /^boot-part (\S+) (.+)$/u.exec(line);
    if (match !== null) found.set(match[1] as string, match[2] as string);
  }
  return bootPartsOf((part) => found.get(part));
}

/** {@link BootParts} with each link as `targetOf` gives it. */
function bootPartsOf(targetOf: (part: BootPart) => string | undefined): BootParts {
  return Object.fromEntries(BOOT_PARTS.map((part) => [part, targetOf(part)])) as unknown as BootParts;
}

/** The {@link BOOT_PARTS} of a system in this machine's store (a system just built here). */
export function readLocalBootParts(system: string): BootParts {
  // The link's text, as the host's `find -printf %l` reads its booted system's.
  return bootPartsOf((part) => {
    try {
      return readlinkSync(path.join(system, part));
    } catch {
      return undefined;
    }
  });
}

/**
 * The {@link BOOT_PARTS} that `next` (what a reboot would boot, or what a switch made the host run)
 * has otherwise than `booted` (what the host booted with): a reboot is needed to run them. Empty
 * when they are the same, or when what the host booted is not known.
 */
export function bootPartsChanged(booted: BootParts | undefined, next: BootParts): BootPart[] {
  if (booted === undefined) return [];
  return BOOT_PARTS.filter((part) => booted[part] !== next[part]);
}

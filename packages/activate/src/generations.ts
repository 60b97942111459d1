import { PideployError } from '@pideploy/core';
import { ACTIVATION_UNREADABLE } from './activation-script.js';

/** One generation of a Nix profile, as `nix-env -p P --list-generations` lists it. */
export interface ProfileGeneration {
  readonly number: number;
  /** `YYYY-MM-DD HH:MM:SS` in the target's local time, as Nix prints it. */
  readonly date: string;
  /** The profile points at this generation. */
  readonly current: boolean;
}

const GENERATION_LINE = /^\s*(\d+)\s+(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2})(\s+\(current\))?\s*$/u;

/**
 * Parses `nix-env --list-generations` output (`%4d   %04d-%02d-%02d %02d:%02d:%02d   (current)`).
 * Lines that are not generations are rejected: a parse error beats a wrong rollback target.
 */
export function parseGenerationList(text: string): readonly ProfileGeneration[] {
  const generations: ProfileGeneration[] = [];
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    const match = GENERATION_LINE.exec(line);
    if (match === null) {
      throw new PideployError({
        code: ACTIVATION_UNREADABLE,
        message: `cannot read the host's system generations: not a nix-env generation line: ${JSON.stringify(line)}`,
        hint: 'run `nix-env -p /nix/var/nix/profiles/system --list-generations` on the host to see what its Nix prints',
      });
    }
    generations.push({ number: Number(match[1]), date: match[2] ?? '', current: match[3] !== undefined });
  }
  return generations;
}

/** The generation a rollback goes to: the highest below the current one (what `nix-env --rollback` picks). */
export function previousGeneration(generations: readonly ProfileGeneration[]): ProfileGeneration | undefined {
  const current = generations.find((generation) => generation.current);
  if (current === undefined) return undefined;
  return generations
    .filter((generation) => generation.number < current.number)
    .reduce<ProfileGeneration | undefined>((best, generation) => (best === undefined || generation.number > best.number ? generation : best), undefined);
}

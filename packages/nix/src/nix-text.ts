import path from 'node:path';

/**
 * Writing Nix source text safely: the one place where pideploy turns strings and paths into Nix
 * literals (generated pins.nix, build and bundle expressions).
 */

/** A Nix string literal `"…"` holding `text` exactly (escapes `\`, `"`, `${` and control characters). */
export function nixString(text: string): string {
  return `"${text
    .replace(/[\\"]/gu, (character) => `\\${character}`)
    .replace(/\$\{/gu, '\\${')
    .replace(/\n/gu, '\\n')
    .replace(/\r/gu, '\\r')
    .replace(/\t/gu, '\\t')}"`;
}

const PLAIN_PATH = /^(?:\/[A-Za-z0-9._+-]+)+$/u;

/**
 * A Nix path value for an absolute file system path: a plain path literal (`/a/b.nix`) when
 * Nix's path syntax allows it, else `(/. + "/odd name")`.
 * @throws TypeError for a relative path (generated Nix never depends on the current directory).
 */
export function nixPath(absolutePath: string): string {
  if (!path.isAbsolute(absolutePath)) throw new TypeError(`expected an absolute path, got ${absolutePath}`);
  const normal = path.normalize(absolutePath);
  return PLAIN_PATH.test(normal) ? normal : `(/. + ${nixString(normal)})`;
}

/** Nix's keywords: never usable as a bare attribute name or identifier. */
export const NIX_KEYWORDS: ReadonlySet<string> = new Set(['if', 'then', 'else', 'assert', 'with', 'let', 'in', 'rec', 'inherit', 'or']);

/** An attribute name, quoted unless it is a plain identifier that is not a keyword. */
export function nixAttributeName(name: string): string {
  return /^[A-Za-z_][A-Za-z0-9_'-]*$/u.test(name) && !NIX_KEYWORDS.has(name) ? name : nixString(name);
}

import path from 'node:path';

/** A Nix string literal `"…"` holding `text` exactly (escapes `\`, `"` and `${`). */
export function nixString(text: string): string {
  return `"${text.replace(/\\/gu, '\\\\').replace(/"/gu, '\\"').replace(/\$\{/gu, '\\${')}"`;
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

/** An attribute name, quoted unless it is a plain identifier. */
export function nixAttributeName(name: string): string {
  return /^[A-Za-z_][A-Za-z0-9_'-]*$/u.test(name) ? name : nixString(name);
}

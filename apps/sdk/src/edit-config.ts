import { PideployError } from '@pideploy/core';
import { parseConfig, type ConfigFile, type ResolvedConfig } from './config.js';

/** A host entry as pideploy.json spells it (paths relative to the file). */
export type HostEntry = ConfigFile['hosts'][string];

/** What pideploy.json's schema allows as a host name. */
const HOST_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/u;

/**
 * Checks that `name` can be a new host of the configuration (pure): spelt as pideploy.json allows,
 * and not taken. @throws PideployError `PIDEPLOY_USAGE`, `PIDEPLOY_HOST_EXISTS`.
 */
export function checkNewHostName(config: Pick<ResolvedConfig, 'file' | 'hosts'>, name: string): void {
  if (!HOST_NAME.test(name)) {
    throw new PideployError({ code: 'PIDEPLOY_USAGE', message: `"${name}" cannot be a host name`, hint: 'use letters, digits, dots, dashes and underscores, starting with a letter or digit' });
  }
  if (config.hosts.some((host) => host.name === name)) {
    throw new PideployError({ code: 'PIDEPLOY_HOST_EXISTS', message: `${config.file} already has a host named ${name}`, hint: `pick another name, or edit ${name} in ${config.file} (pideploy hosts ${name} shows it)` });
  }
}

/**
 * The text of pideploy.json with one more host (pure). Only the `hosts` object changes: the new
 * entry goes after its last host, indented like its hosts (the file's own indent unit, tabs or
 * spaces, and line ends), and every other byte of the file stays as the person wrote it. A file
 * whose `hosts` cannot be found that way (one line of JSON, say) is written back as JSON with its
 * keys in their order. Either way the result is validated with the schema pideploy reads it with,
 * so a host the file cannot take never gets written.
 * @throws PideployError `PIDEPLOY_HOST_EXISTS` for a name already there; `PIDEPLOY_CONFIG_INVALID` for an entry the schema refuses.
 */
export function withHostAdded(text: string, file: string, name: string, entry: HostEntry): { readonly text: string; readonly config: ResolvedConfig } {
  checkNewHostName(parseConfig(text, file), name);
  const raw = JSON.parse(text) as { hosts: Record<string, unknown> } & Record<string, unknown>;
  const wanted = { ...raw, hosts: { ...raw.hosts, [name]: entry } };
  const edited = insertHostEntry(text, name, entry);
  // The edit must mean exactly what a rewrite would (same keys in the same order): else the rewrite.
  const after = edited !== undefined && sameJson(edited, JSON.stringify(wanted)) ? edited : rewritten(text, wanted);
  return { text: after, config: parseConfig(after, file) };
}

function sameJson(text: string, wanted: string): boolean {
  try {
    return JSON.stringify(JSON.parse(text)) === wanted;
  } catch {
    return false;
  }
}

/** The whole file as JSON, in the file's indent unit and line ends. */
function rewritten(text: string, value: unknown): string {
  const eol = text.includes('\r\n') ? '\r\n' : '\n';
  return `${JSON.stringify(value, null, indentUnit(text)).replaceAll('\n', eol)}${eol}`;
}

/** The file's indent unit: the leading white space of its first indented line (default two spaces). */
function indentUnit(text: string): string {
  return /\n([ \t]+)\S/u.exec(text)?.[1] ?? '  ';
}

/** The leading white space of the line `index` is on. */
function lineIndent(text: string, index: number): string {
  const start = text.lastIndexOf('\n', index - 1) + 1;
  return /^[ \t]*/u.exec(text.slice(start))?.[0] ?? '';
}

/**
 * Where the top-level `"hosts": { … }` of a JSON text is: the offsets of its braces, and of its
 * first key if it has one; undefined when the text has none. Strings (with their escapes) are
 * skipped, so a brace or quote inside a value does not count.
 */
function findHostsObject(text: string): { readonly open: number; readonly close: number; readonly firstKey: number | undefined } | undefined {
  let depth = 0;
  let open: number | undefined;
  let firstKey: number | undefined;
  let lastString: { readonly start: number; readonly value: string } | undefined;
  for (let index = 0; index < text.length; index += 1) {
    const char = text[index];
    if (char === '"') {
      const start = index;
      for (index += 1; index < text.length && text[index] !== '"'; index += 1) if (text[index] === '\\') index += 1;
      lastString = { start, value: text.slice(start, index + 1) };
      if (open !== undefined && depth === 2 && firstKey === undefined) firstKey = start;
      continue;
    }
    if (char === '{' || char === '[') {
      depth += 1;
      if (char === '{' && depth === 2 && open === undefined && lastString !== undefined && isKeyBefore(text, lastString, index) && JSON.parse(lastString.value) === 'hosts') open = index;
    } else if (char === '}' || char === ']') {
      if (open !== undefined && depth === 2) return { open, close: index, firstKey };
      depth -= 1;
    }
  }
  return undefined;
}

/** Whether the string `key` is followed by only white space and a colon up to `index`. */
function isKeyBefore(text: string, key: { readonly start: number; readonly value: string }, index: number): boolean {
  return /^\s*:\s*$/u.test(text.slice(key.start + key.value.length, index));
}

/** The text with the host's entry put at the end of its `hosts` object, or undefined if it has none to find. */
function insertHostEntry(text: string, name: string, entry: HostEntry): string | undefined {
  const hosts = findHostsObject(text);
  if (hosts === undefined) return undefined;
  const eol = text.includes('\r\n') ? '\r\n' : '\n';
  const unit = indentUnit(text);
  // Like the hosts there are, if they begin their lines; else one unit in from "hosts".
  const firstOnItsLine = hosts.firstKey !== undefined && /^[ \t]*$/u.test(text.slice(text.lastIndexOf('\n', hosts.firstKey - 1) + 1, hosts.firstKey));
  const inner = firstOnItsLine ? lineIndent(text, hosts.firstKey as number) : `${lineIndent(text, hosts.open)}${unit}`;
  const value = JSON.stringify(entry, null, unit).split('\n').join(`${eol}${inner}`);
  const member = `${JSON.stringify(name)}: ${value}`;
  let last = hosts.close - 1;
  while (last > hosts.open && /\s/u.test(text[last] as string)) last -= 1;
  // (The schema wants at least one host, so there is a member to put it after.)
  if (last === hosts.open) return undefined;
  return `${text.slice(0, last + 1)},${eol}${inner}${member}${text.slice(last + 1)}`;
}

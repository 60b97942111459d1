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
 * The text of pideploy.json with one more host (pure): the other keys keep their order, the file
 * is written back as 2-space JSON, and the result is validated with the schema pideploy reads it
 * with, so a host the file cannot take never gets written.
 * @throws PideployError `PIDEPLOY_HOST_EXISTS` for a name already there; `PIDEPLOY_CONFIG_INVALID` for an entry the schema refuses.
 */
export function withHostAdded(text: string, file: string, name: string, entry: HostEntry): { readonly text: string; readonly config: ResolvedConfig } {
  checkNewHostName(parseConfig(text, file), name);
  const raw = JSON.parse(text) as { hosts: Record<string, unknown> } & Record<string, unknown>;
  raw.hosts = { ...raw.hosts, [name]: entry };
  const after = `${JSON.stringify(raw, null, 2)}\n`;
  return { text: after, config: parseConfig(after, file) };
}

import { existsSync, readdirSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PideployError } from '@pideploy/core';
import { matchWildcard } from './patterns.js';
import { expandTilde, parseSshConfig, type IncludedSshConfigFile, type LocalIdentity, type SshConfig } from './ssh-config.js';

/** The local user's identity, for `~` and `%` tokens. */
export function currentLocalIdentity(): LocalIdentity {
  const info = os.userInfo();
  return { homeDir: process.env['HOME'] ?? info.homedir, userName: info.username, uid: info.uid, hostName: os.hostname() };
}

/** Expands one `Include` argument (tilde, relative to `baseDir`, `*`/`?` globs) to sorted files. */
export function findIncludedFiles(pattern: string, baseDir: string, homeDir: string): string[] {
  const expanded = expandTilde(pattern, homeDir);
  const absolute = path.isAbsolute(expanded) ? expanded : path.join(baseDir, expanded);
  const parts = absolute.split('/').filter((part) => part !== '');
  let candidates = ['/'];
  for (const part of parts) {
    const next: string[] = [];
    for (const directory of candidates) {
      if (!/[*?]/u.test(part)) {
        next.push(path.join(directory, part));
        continue;
      }
      let names: string[] = [];
      try {
        names = readdirSync(directory);
      } catch {
        names = [];
      }
      for (const name of names.sort()) {
        if (!name.startsWith('.') && matchWildcard(name, part)) next.push(path.join(directory, name));
      }
    }
    candidates = next;
  }
  return candidates.filter((file) => existsSync(file));
}

/** Options of {@link loadSshConfig}. */
export interface LoadSshConfigOptions {
  /** An explicit config file (`ssh -F`): only it is read, with includes relative to `~/.ssh`. */
  readonly sshConfigFile?: string | undefined;
  /** Local identity (home directory for `~` and the default files). */
  readonly local?: LocalIdentity | undefined;
}

function readConfigFile(file: string, baseDir: string, homeDir: string): SshConfig {
  const text = readFileSync(file, 'utf8');
  const readInclude = (pattern: string): IncludedSshConfigFile[] =>
    findIncludedFiles(pattern, baseDir, homeDir).map((included) => ({ file: included, text: readFileSync(included, 'utf8') }));
  return parseSshConfig(text, { file, readInclude });
}

/**
 * Reads the ssh_config files OpenSSH would read: the explicit file alone, or else `~/.ssh/config`
 * then `/etc/ssh/ssh_config` (missing files are skipped), with their `Include`s.
 */
export function loadSshConfig(options: LoadSshConfigOptions = {}): SshConfig[] {
  const local = options.local ?? currentLocalIdentity();
  const userDir = path.join(local.homeDir, '.ssh');
  if (options.sshConfigFile !== undefined) {
    if (!existsSync(options.sshConfigFile)) {
      throw new PideployError({
        code: 'PIDEPLOY_SSH_CONFIG_INVALID',
        message: `the ssh_config file ${options.sshConfigFile} does not exist`,
        hint: 'check the path given with --ssh-config',
      });
    }
    return [readConfigFile(options.sshConfigFile, userDir, local.homeDir)];
  }
  const configs: SshConfig[] = [];
  const userFile = path.join(userDir, 'config');
  if (existsSync(userFile)) configs.push(readConfigFile(userFile, userDir, local.homeDir));
  if (existsSync('/etc/ssh/ssh_config')) configs.push(readConfigFile('/etc/ssh/ssh_config', '/etc/ssh', local.homeDir));
  return configs;
}

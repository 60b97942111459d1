import { PideployError } from '@pideploy/core';
import { matchPatternList } from './patterns.js';

/**
 * `ssh_config(5)` parsing and host resolution with OpenSSH's rules, as pure functions: the file
 * text goes in, the settings OpenSSH would use come out. Only `loadSshConfig` (in
 * `ssh-config-files.ts`) touches the file system, for the files and their `Include`s.
 */

/** One meaningful line of an ssh_config file. */
export type SshConfigItem =
  | { readonly type: 'host'; readonly patterns: readonly string[]; readonly line: number; readonly file?: string | undefined }
  | { readonly type: 'match'; readonly criteria: readonly string[]; readonly line: number; readonly file?: string | undefined }
  | { readonly type: 'option'; readonly keyword: string; readonly args: readonly string[]; readonly line: number; readonly file?: string | undefined }
  | {
      readonly type: 'include';
      /** The files the `Include` patterns named, each parsed, in the order OpenSSH reads them. */
      readonly files: readonly SshConfig[];
      readonly line: number;
      readonly file?: string | undefined;
    };

/** A parsed ssh_config file: its lines in order, plus what the parser could not honour. */
export interface SshConfig {
  /** The file the text came from, when known (for messages). */
  readonly file?: string | undefined;
  /** Host/Match/option/Include lines in file order. */
  readonly items: readonly SshConfigItem[];
  /** Things the parser skipped (malformed lines, unreadable includes). */
  readonly warnings: readonly string[];
}

/** A file an `Include` line names, read by the caller's {@link ParseSshConfigOptions.readInclude}. */
export interface IncludedSshConfigFile {
  /** Absolute path of the file. */
  readonly file: string;
  /** Its text. */
  readonly text: string;
}

/** Options of {@link parseSshConfig}. */
export interface ParseSshConfigOptions {
  /** Name of the file being parsed (for messages and relative includes). */
  readonly file?: string | undefined;
  /**
   * Reads the files one `Include` argument names (tilde and relative paths, globs). Without it,
   * `Include` lines are kept as empty and reported in `warnings`.
   */
  readonly readInclude?: ((pattern: string) => readonly IncludedSshConfigFile[]) | undefined;
  /** Include nesting depth (OpenSSH stops at 16). Internal. */
  readonly depth?: number | undefined;
}

const MAX_INCLUDE_DEPTH = 16;

/**
 * Splits the arguments of an ssh_config line the way OpenSSH's `argv_split` does: whitespace
 * separates words, double quotes group, a backslash escapes a quote or backslash.
 */
export function splitSshConfigArguments(text: string): string[] {
  const words: string[] = [];
  let current = '';
  let inWord = false;
  let quoted = false;
  for (let index = 0; index < text.length; index += 1) {
    const char = text[index] as string;
    if (char === '\\' && (text[index + 1] === '"' || text[index + 1] === '\\' || text[index + 1] === "'")) {
      current += text[index + 1];
      inWord = true;
      index += 1;
    } else if (char === '"') {
      quoted = !quoted;
      inWord = true;
    } else if (!quoted && (char === ' ' || char === '\t')) {
      if (inWord) words.push(current);
      current = '';
      inWord = false;
    } else if (!quoted && char === '#' && !inWord) {
      break;
    } else {
      current += char;
      inWord = true;
    }
  }
  if (inWord) words.push(current);
  return words;
}

/**
 * Parses ssh_config text. Keywords are case-insensitive (stored lowercased); `keyword value` and
 * `keyword=value` are both accepted; `#` starts a comment. Pure unless `readInclude` is given.
 */
export function parseSshConfig(text: string, options: ParseSshConfigOptions = {}): SshConfig {
  const items: SshConfigItem[] = [];
  const warnings: string[] = [];
  const where = (line: number) => `${options.file ?? 'ssh_config'}:${line}`;
  const lines = text.split(/\r?\n/u);
  lines.forEach((rawLine, index) => {
    const line = index + 1;
    const trimmed = rawLine.trim();
    if (trimmed === '' || trimmed.startsWith('#')) return;
    const keywordMatch = /^([^\s=]+)\s*(?:=\s*|\s+|$)(.*)$/u.exec(trimmed);
    if (keywordMatch === null) {
      warnings.push(`${where(line)}: cannot parse "${trimmed}"`);
      return;
    }
    const keyword = (keywordMatch[1] as string).toLowerCase();
    const args = splitSshConfigArguments(keywordMatch[2] as string);
    const file = options.file;
    if (keyword === 'host') {
      items.push({ type: 'host', patterns: args, line, file });
    } else if (keyword === 'match') {
      items.push({ type: 'match', criteria: args, line, file });
    } else if (keyword === 'include') {
      const depth = options.depth ?? 0;
      const files: SshConfig[] = [];
      if (options.readInclude === undefined) {
        warnings.push(`${where(line)}: Include ignored (no file access while parsing text)`);
      } else if (depth >= MAX_INCLUDE_DEPTH) {
        warnings.push(`${where(line)}: Include nested too deeply`);
      } else {
        for (const pattern of args) {
          for (const included of options.readInclude(pattern)) {
            const parsed = parseSshConfig(included.text, { ...options, file: included.file, depth: depth + 1 });
            files.push(parsed);
            warnings.push(...parsed.warnings);
          }
        }
      }
      items.push({ type: 'include', files, line, file });
    } else if (args.length === 0) {
      warnings.push(`${where(line)}: ${keyword} has no value`);
    } else {
      items.push({ type: 'option', keyword, args, line, file });
    }
  });
  return { file: options.file, items, warnings };
}

/** Keywords that may be given several times, each adding a value (OpenSSH keeps them all). */
const CUMULATIVE_KEYWORDS = new Set(['identityfile', 'certificatefile', 'localforward', 'remoteforward', 'dynamicforward', 'sendenv', 'setenv']);

/** The raw option values that apply to one host: first value wins, cumulative ones collect. */
export interface SshConfigValues {
  /** Lowercased keyword → arguments of the first line that set it. */
  readonly first: ReadonlyMap<string, readonly string[]>;
  /** Lowercased keyword → every value of a cumulative keyword (IdentityFile …), in order. */
  readonly all: ReadonlyMap<string, readonly string[]>;
  /** `Match` blocks and other things that were skipped. */
  readonly warnings: readonly string[];
}

/**
 * Collects the options that apply to `host` (the name as typed: an alias or a host name), walking
 * `Host` blocks and includes exactly as OpenSSH does. `Match` blocks are skipped with a warning,
 * except `Match all`.
 */
export function collectSshConfigValues(configs: readonly SshConfig[], host: string): SshConfigValues {
  const first = new Map<string, string[]>();
  const all = new Map<string, string[]>();
  const warnings: string[] = [];
  const walk = (items: readonly SshConfigItem[], initiallyActive: boolean, neverMatch: boolean): void => {
    let active = initiallyActive;
    for (const item of items) {
      switch (item.type) {
        case 'host':
          active = !neverMatch && matchPatternList(host, item.patterns) === 1;
          break;
        case 'match':
          if (item.criteria.length === 1 && item.criteria[0]?.toLowerCase() === 'all') {
            active = !neverMatch;
          } else {
            active = false;
            warnings.push(`${item.file ?? 'ssh_config'}:${item.line}: "Match ${item.criteria.join(' ')}" is not supported; its options were ignored`);
          }
          break;
        case 'include':
          for (const included of item.files) walk(included.items, active, neverMatch || !active);
          break;
        case 'option':
          if (!active) break;
          if (CUMULATIVE_KEYWORDS.has(item.keyword)) {
            const values = all.get(item.keyword) ?? [];
            values.push(item.args.join(' '));
            all.set(item.keyword, values);
          } else if (!first.has(item.keyword)) {
            first.set(item.keyword, [...item.args]);
          }
          break;
      }
    }
  };
  for (const config of configs) walk(config.items, true, false);
  return { first, all, warnings };
}

/** One hop of a `ProxyJump` chain. */
export interface SshJumpHost {
  /** Host name or alias (resolved through ssh_config again when connecting). */
  readonly host: string;
  /** Login user, when the hop names one. */
  readonly user?: string | undefined;
  /** Port, when the hop names one. */
  readonly port?: number | undefined;
}

/** How OpenSSH treats a host key that is not yet in known_hosts. */
export type StrictHostKeyChecking = 'yes' | 'ask' | 'accept-new' | 'no';

/** Everything pideploy needs to connect to one host, after ssh_config, with defaults filled in. */
export interface ResolvedSshHost {
  /** The name as given (alias or host name); `Host` patterns matched this. */
  readonly alias: string;
  /** The real host name or address to connect to (`HostName`, `%h` expanded). */
  readonly hostname: string;
  /** Login user. */
  readonly user: string;
  /** TCP port. */
  readonly port: number;
  /** Private key files to try, in order, tokens and `~` expanded. */
  readonly identityFiles: readonly string[];
  /** True when `IdentityFile` was configured; false when these are OpenSSH's defaults. */
  readonly identityFilesConfigured: boolean;
  /** `IdentitiesOnly yes`: offer only the identity files, not every agent key. */
  readonly identitiesOnly: boolean;
  /** The agent socket (`IdentityAgent`), `none`, or undefined for `SSH_AUTH_SOCK`. */
  readonly identityAgent?: string | undefined;
  /** `ProxyJump` hops, first hop first; empty for a direct connection. */
  readonly proxyJump: readonly SshJumpHost[];
  /** `UserKnownHostsFile` entries, expanded; new keys are written to the first one. */
  readonly userKnownHostsFiles: readonly string[];
  /** `GlobalKnownHostsFile` entries. */
  readonly globalKnownHostsFiles: readonly string[];
  /** `StrictHostKeyChecking` (`off` and `false` normalised to `no`, `true` to `yes`). */
  readonly strictHostKeyChecking: StrictHostKeyChecking;
  /** `HostKeyAlias`: the name looked up in known_hosts instead of the host name. */
  readonly hostKeyAlias?: string | undefined;
  /** `HashKnownHosts yes`: write new known_hosts entries hashed. */
  readonly hashKnownHosts: boolean;
  /** `ConnectTimeout` in milliseconds; undefined means the system's TCP timeout. */
  readonly connectTimeoutMs?: number | undefined;
  /** `ServerAliveInterval` in milliseconds; 0 disables keepalives. */
  readonly serverAliveIntervalMs: number;
  /** `ServerAliveCountMax`. */
  readonly serverAliveCountMax: number;
  /** Options that were skipped (`Match` blocks, unparsable values). */
  readonly warnings: readonly string[];
}

/** The local facts that `%` tokens and `~` expand to; taken from the process when not given. */
export interface LocalIdentity {
  /** The local user's home directory (`%d`, `~`). */
  readonly homeDir: string;
  /** The local user name (`%u`, and the default login user). */
  readonly userName: string;
  /** The local uid (`%i`). */
  readonly uid?: number | undefined;
  /** The local host name (`%l`). */
  readonly hostName?: string | undefined;
}

/** Options of {@link resolveSshHost}. */
export interface ResolveSshHostOptions {
  /** Login user from the command line or target string; wins over `User`. */
  readonly user?: string | undefined;
  /** Port from the command line or target string; wins over `Port`. */
  readonly port?: number | undefined;
  /** Local identity for `~` and `%d %u %i %l`. */
  readonly local: LocalIdentity;
  /** Directory of the user's ssh files (default `<home>/.ssh`). */
  readonly sshDir?: string | undefined;
}

const DEFAULT_IDENTITY_FILES = ['id_rsa', 'id_ecdsa', 'id_ecdsa_sk', 'id_ed25519', 'id_ed25519_sk', 'id_xmss', 'id_dsa'];

/** Replaces a leading `~` or `~/` with the home directory. */
export function expandTilde(file: string, homeDir: string): string {
  if (file === '~') return homeDir;
  if (file.startsWith('~/')) return `${homeDir}${file.slice(1)}`;
  return file;
}

/** Expands OpenSSH `%` tokens; unknown tokens are an error, as in OpenSSH. */
export function expandSshTokens(text: string, tokens: Readonly<Record<string, string>>, what: string): string {
  return text.replace(/%(.)/gu, (whole, letter: string) => {
    if (letter === '%') return '%';
    const value = tokens[letter];
    if (value === undefined) {
      throw new PideployError({
        code: 'PIDEPLOY_SSH_CONFIG_INVALID',
        message: `${what} "${text}" uses the token ${whole}, which pideploy does not expand`,
        hint: 'use %d %u %h %r %n %p %l %i or %% in ssh_config paths',
      });
    }
    return value;
  });
}

function parseSshPort(text: string, what: string, code = 'PIDEPLOY_SSH_CONFIG_INVALID'): number {
  const port = Number(text);
  if (!/^[0-9]+$/u.test(text) || port < 1 || port > 65535) {
    throw new PideployError({
      code,
      message: `${what} "${text}" is not a port number`,
      hint: 'use a number from 1 to 65535',
    });
  }
  return port;
}

function parseYesNo(value: string | undefined, fallback: boolean): boolean {
  if (value === undefined) return fallback;
  return ['yes', 'true'].includes(value.toLowerCase());
}

function parseStrict(value: string | undefined): StrictHostKeyChecking {
  switch (value?.toLowerCase()) {
    case undefined:
    case 'ask':
      return 'ask';
    case 'yes':
    case 'true':
      return 'yes';
    case 'accept-new':
      return 'accept-new';
    case 'no':
    case 'off':
    case 'false':
      return 'no';
    default:
      return 'ask';
  }
}

/** Seconds (plain number, or OpenSSH time format like `1m30s`) → milliseconds. */
export function parseSshTimeMs(text: string): number | undefined {
  if (/^[0-9]+$/u.test(text)) return Number(text) * 1000;
  const units: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86_400, w: 604_800 };
  let total = 0;
  const pattern = /([0-9]+)([smhdwSMHDW])/gu;
  let consumed = 0;
  for (const match of text.matchAll(pattern)) {
    total += Number(match[1]) * (units[(match[2] as string).toLowerCase()] ?? 0);
    consumed += match[0].length;
  }
  return consumed === text.length && consumed > 0 ? total * 1000 : undefined;
}

/**
 * Parses a `ProxyJump` value: comma-separated `[user@]host[:port]` or `ssh://[user@]host[:port]`
 * hops; `none` means no jump.
 */
export function parseProxyJump(value: string): SshJumpHost[] {
  if (value.toLowerCase() === 'none') return [];
  return value.split(',').map((hop) => {
    const target = parseSshTarget(hop.trim());
    return { host: target.host, user: target.user, port: target.port };
  });
}

/** A target as the user writes it: `[user@]host[:port]`, `ssh://[user@]host[:port]`, `[v6]:port`. */
export interface SshTarget {
  /** Alias or host name (without brackets for IPv6). */
  readonly host: string;
  /** Login user, when given. */
  readonly user?: string | undefined;
  /** Port, when given. */
  readonly port?: number | undefined;
}

/** Parses `user@host[:port]`, `ssh://user@host:port`, `host`, `[::1]:22`, `user@[::1]`. */
export function parseSshTarget(text: string): SshTarget {
  const invalid = (why: string) =>
    new PideployError({
      code: 'PIDEPLOY_USAGE',
      message: `"${text}" is not an SSH target: ${why}`,
      hint: 'write a target as user@host, user@host:port or ssh://user@host:port',
    });
  let rest = text.trim();
  if (/^ssh:\/\//iu.test(rest)) {
    rest = rest.slice('ssh://'.length).replace(/\/$/u, '');
    if (rest.includes('/')) throw invalid('an ssh:// target has no path');
  }
  if (rest === '') throw invalid('it is empty');
  let user: string | undefined;
  const at = rest.lastIndexOf('@');
  if (at !== -1) {
    user = decodeURIComponent(rest.slice(0, at));
    rest = rest.slice(at + 1);
    if (user === '') throw invalid('the user before "@" is empty');
  }
  let host: string;
  let port: number | undefined;
  const bracketed = /^\[([^\]]+)\](?::([^:]*))?$/u.exec(rest);
  if (bracketed !== null) {
    host = bracketed[1] as string;
    if (bracketed[2] !== undefined) port = parseSshPort(bracketed[2], `the port in "${text}"`, 'PIDEPLOY_USAGE');
  } else if ((rest.match(/:/gu) ?? []).length > 1) {
    host = rest; // a bare IPv6 address: no port possible
  } else {
    const colon = rest.indexOf(':');
    host = colon === -1 ? rest : rest.slice(0, colon);
    if (colon !== -1) port = parseSshPort(rest.slice(colon + 1), `the port in "${text}"`, 'PIDEPLOY_USAGE');
  }
  if (host === '') throw invalid('the host is empty');
  if (/[\s/]/u.test(host) || host.startsWith('-')) throw invalid(`"${host}" is not a host name`);
  return { host, user, port };
}

/**
 * Resolves one host against parsed ssh_config files (user file first, then the system file), the
 * way `ssh -G` does: first value wins; command-line user and port win over the files; `HostName`
 * expands `%h`; identity and known_hosts files expand `~` and `%d %u %h %r %n %p %l %i`.
 */
export function resolveSshHost(configs: SshConfig | readonly SshConfig[], alias: string, options: ResolveSshHostOptions): ResolvedSshHost {
  const list: readonly SshConfig[] = Array.isArray(configs) ? configs : [configs as SshConfig];
  const values = collectSshConfigValues(list, alias);
  const warnings = [...list.flatMap((config) => config.warnings), ...values.warnings];
  const get = (keyword: string) => values.first.get(keyword)?.[0];
  const local = options.local;
  const hostnameRaw = get('hostname');
  // As ssh(1): the final host name is lowercased (Host patterns matched the name as typed).
  const hostname = (hostnameRaw === undefined ? alias : expandSshTokens(hostnameRaw, { h: alias }, 'HostName')).toLowerCase();
  const user = options.user ?? get('user') ?? local.userName;
  const portText = get('port');
  const port = options.port ?? (portText === undefined ? 22 : parseSshPort(portText, 'Port'));
  const sshDir = options.sshDir ?? `${local.homeDir}/.ssh`;
  const tokens: Record<string, string> = {
    d: local.homeDir,
    u: local.userName,
    h: hostname,
    r: user,
    n: alias,
    p: String(port),
    ...(local.hostName === undefined ? {} : { l: local.hostName, L: local.hostName.split('.')[0] as string }),
    ...(local.uid === undefined ? {} : { i: String(local.uid) }),
  };
  const expandPath = (file: string, what: string) => expandTilde(expandSshTokens(file, tokens, what), local.homeDir);
  const configuredIdentities = values.all.get('identityfile') ?? [];
  const identityFiles = (configuredIdentities.length > 0 ? configuredIdentities : DEFAULT_IDENTITY_FILES.map((name) => `${sshDir}/${name}`)).map((file) =>
    expandPath(file, 'IdentityFile'),
  );
  const knownHostsArgs = values.first.get('userknownhostsfile');
  const userKnownHostsFiles =
    knownHostsArgs === undefined
      ? [`${sshDir}/known_hosts`, `${sshDir}/known_hosts2`]
      : knownHostsArgs.filter((file) => file.toLowerCase() !== 'none').map((file) => expandPath(file, 'UserKnownHostsFile'));
  const globalArgs = values.first.get('globalknownhostsfile');
  const globalKnownHostsFiles =
    globalArgs === undefined
      ? ['/etc/ssh/ssh_known_hosts', '/etc/ssh/ssh_known_hosts2']
      : globalArgs.filter((file) => file.toLowerCase() !== 'none').map((file) => expandPath(file, 'GlobalKnownHostsFile'));
  const connectTimeoutText = get('connecttimeout');
  const connectTimeoutMs = connectTimeoutText === undefined || connectTimeoutText === 'none' ? undefined : parseSshTimeMs(connectTimeoutText);
  if (connectTimeoutText !== undefined && connectTimeoutText !== 'none' && connectTimeoutMs === undefined) warnings.push(`ConnectTimeout "${connectTimeoutText}" is not a time; ignored`);
  const aliveText = get('serveraliveinterval');
  const serverAliveIntervalMs = aliveText === undefined ? 0 : (parseSshTimeMs(aliveText) ?? 0);
  const countText = get('serveralivecountmax');
  const proxyJumpText = get('proxyjump');
  const identityAgentText = get('identityagent');
  return {
    alias,
    hostname,
    user,
    port,
    identityFiles,
    identityFilesConfigured: configuredIdentities.length > 0,
    identitiesOnly: parseYesNo(get('identitiesonly'), false),
    identityAgent:
      identityAgentText === undefined || identityAgentText === 'SSH_AUTH_SOCK' ? undefined : identityAgentText.toLowerCase() === 'none' ? 'none' : expandPath(identityAgentText, 'IdentityAgent'),
    proxyJump: proxyJumpText === undefined ? [] : parseProxyJump(proxyJumpText),
    userKnownHostsFiles,
    globalKnownHostsFiles,
    strictHostKeyChecking: parseStrict(get('stricthostkeychecking')),
    hostKeyAlias: get('hostkeyalias'),
    hashKnownHosts: parseYesNo(get('hashknownhosts'), false),
    connectTimeoutMs,
    serverAliveIntervalMs,
    serverAliveCountMax: countText === undefined || !/^[0-9]+$/u.test(countText) ? 3 : Number(countText),
    warnings,
  };
}

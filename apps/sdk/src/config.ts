import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { PideployError } from '@pideploy/core';
import { DEFAULT_PIN_NAME } from '@pideploy/build';
import { KEY_DEFAULTS, checkKeySpecs, type KeySpec, type KeyUploadAt } from '@pideploy/keys';
import { projectStateDir } from '@pideploy/nix';
import type { ErrorObject } from 'ajv';
import generatedValidator from './generated/validate-config.js';

/** The file name pideploy looks for, walking up from the working directory. */
export const CONFIG_FILE_NAME = 'pideploy.json';

/** What pideploy.json's `target` may be (its schema's pattern): no spaces or shell characters. */
const SSH_TARGET = /^[^\s'"`$;&|<>]+$/u;

/** Whether a text may be a host's SSH target (`user@host[:port]` or an ssh_config alias), as pideploy.json's schema says; pure. */
export function isSshTarget(text: string): boolean {
  return SSH_TARGET.test(text);
}

/** Names people plausibly give the config file that pideploy does not read (reported, not loaded). */
const NEAR_MISS_FILE_NAMES = ['pideploy.yaml', 'pideploy.yml', 'pideploy.config.json', 'pideploy.jsonc', '.pideploy.json', 'pideploy.toml', 'pideploy.js'];

/** How pideploy gets root on a target. */
export type SudoMode = 'password' | 'nopasswd' | 'root';
/** How a host's system is built on this machine. */
export type BuildMode = 'emulated' | 'cross' | 'builders';

/** pideploy.json `healthCheck`: what a switched host must pass before it is confirmed (see the schema). */
export interface HealthCheckSettings {
  /** A command line run by `sh -c` on the host as the login user, over the confirming login; exit 0 = healthy. */
  readonly command?: string | undefined;
  /** Fetched from this machine; 2xx = healthy. `{host}` and `{hostname}` are filled in per host. */
  readonly url?: string | undefined;
  /** Limit of each check, in seconds (default 10). */
  readonly timeoutSeconds?: number | undefined;
}

/** pideploy.json's `keys.<name>`: a secret put on the host outside the store (see the schema). */
export interface KeySettings {
  /** A file with the content, relative to pideploy.json. */
  readonly file?: string | undefined;
  /** A command (argv) whose stdout is the content. */
  readonly command?: readonly string[] | undefined;
  readonly destDir?: string | undefined;
  readonly user?: string | undefined;
  readonly group?: string | undefined;
  readonly permissions?: string | undefined;
  readonly uploadAt?: KeyUploadAt | undefined;
}

/** pideploy.json `deploy`: how `pideploy deploy` goes through a fleet unless its flags say otherwise. */
export interface DeploySettings {
  /** Hosts deployed at once. */
  readonly parallel?: number | undefined;
  /** The first N selected hosts, or host names, globs and @tags, deployed first. */
  readonly canary?: number | string | readonly string[] | undefined;
  /** Start no more hosts once this many have failed. */
  readonly maxFailures?: number | undefined;
  /** Seconds switch-to-configuration may run on a host (0: no limit). */
  readonly activationTimeout?: number | undefined;
}

/** `pideploy.json` as written (after schema validation). */
export interface ConfigFile {
  readonly pins?: string;
  readonly defaults?: {
    readonly system?: string;
    readonly nixpkgs?: string;
    readonly buildMode?: BuildMode;
    readonly builders?: string;
    readonly sudo?: SudoMode;
    readonly substituteOnDestination?: boolean;
    readonly healthCheck?: HealthCheckSettings;
    readonly keys?: Readonly<Record<string, KeySettings>>;
  };
  readonly cache?: {
    readonly enable?: boolean;
    readonly directory?: string;
    readonly keyName?: string;
    readonly secretKeyFile?: string;
    readonly url?: string;
    readonly compression?: CacheCompression;
  };
  readonly deploy?: DeploySettings;
  readonly hosts: Readonly<
    Record<
      string,
      {
        readonly target: string;
        readonly configuration: string;
        readonly system?: string;
        readonly nixpkgs?: string;
        readonly buildMode?: BuildMode;
        readonly builders?: string;
        readonly sudo?: SudoMode;
        readonly tags?: readonly string[];
        readonly sshConfig?: string;
        readonly specialisation?: string;
        readonly substituteOnDestination?: boolean;
        readonly healthCheck?: HealthCheckSettings;
        readonly keys?: Readonly<Record<string, KeySettings>>;
      }
    >
  >;
}

/** One host with defaults applied and paths made absolute. */
export interface ResolvedHost {
  readonly name: string;
  /** SSH destination (`user@host[:port]` or an ssh_config alias). */
  readonly target: string;
  /** Absolute path of the host's configuration.nix. */
  readonly configuration: string;
  readonly system: string;
  /** The pin of pins.json that is its nixpkgs (its own `nixpkgs`, else the defaults', else `nixpkgs`). */
  readonly nixpkgs: string;
  readonly buildMode: BuildMode;
  readonly builders: string | undefined;
  readonly sudo: SudoMode;
  readonly tags: readonly string[];
  /** Absolute path of an ssh_config to use, when set. */
  readonly sshConfig: string | undefined;
  /** The specialisation of its system the host runs (pideploy.json `specialisation`), when set. */
  readonly specialisation: string | undefined;
  /** Fetch what its own binary caches have before copying the rest over SSH (see pideploy.json `substituteOnDestination`). */
  readonly substituteOnDestination: boolean;
  /** The host's health check (its own, else the defaults'), when it has one. */
  readonly healthCheck: HealthCheckSettings | undefined;
  /** The keys the host gets (the defaults' and its own; its own replace those of the same name), sources made absolute. */
  readonly keys: readonly KeySpec[];
}

/** NAR compression of the fleet cache. */
export type CacheCompression = 'zstd' | 'xz' | 'bzip2' | 'br' | 'gzip' | 'none';

/** The fleet cache settings with paths made absolute (see pideploy.schema.json `cache`). */
export interface FleetCacheSettings {
  /** Absolute path of the binary cache directory. */
  readonly directory: string;
  /** Name of the signing key pideploy makes when `secretKeyFile` is not given. */
  readonly keyName?: string | undefined;
  /** Absolute path of an existing secret key. */
  readonly secretKeyFile?: string | undefined;
  /** URL the hosts reach the cache at by themselves; without it the cache is tunnelled over SSH. */
  readonly url?: string | undefined;
  readonly compression?: CacheCompression | undefined;
}

/** A loaded, validated configuration. */
export interface ResolvedConfig {
  /** Absolute path of the pideploy.json that was read. */
  readonly file: string;
  /** Its directory: relative paths in it are relative to this. */
  readonly directory: string;
  /** Absolute path of the pins lock file (pins.nix is beside it). */
  readonly pinsFile: string;
  /** Hosts in file order. */
  readonly hosts: readonly ResolvedHost[];
  /** The fleet cache settings (defaults filled in, also without a `cache` section). */
  readonly cache: FleetCacheSettings;
  /** Whether deploys use the fleet cache unless told otherwise (a `cache` section without `enable: false`). */
  readonly cacheEnabled: boolean;
  /** pideploy.json `deploy` (a single canary selector made a list; every selector matches a host). */
  readonly deploy: {
    readonly parallel?: number | undefined;
    readonly canary?: number | readonly string[] | undefined;
    readonly maxFailures?: number | undefined;
    readonly activationTimeout?: number | undefined;
  };
}

/** Options of {@link loadConfig}. */
export interface LoadConfigOptions {
  /** Where to start looking (default: the process's cwd). */
  readonly cwd?: string | undefined;
  /** Use this file instead of searching (`--config`). */
  readonly configFile?: string | undefined;
}

/**
 * The schema's check, generated ahead of time by ajv's standalone mode (scripts/config-validator.mjs):
 * loading a config runs no ajv compiler.
 */
const validateConfig = generatedValidator as ((data: unknown) => data is ConfigFile) & { errors?: ErrorObject[] | null | undefined };

const schema = createRequire(import.meta.url)('../pideploy.schema.json') as Record<string, unknown> & {
  definitions: Record<string, { properties?: Record<string, unknown> }>;
  properties: Record<string, unknown>;
};

/**
 * Finds pideploy.json in `start` or an ancestor; undefined when there is none. A near-miss file
 * name (`pideploy.yaml` …) where pideploy.json would be is reported, not ignored.
 * @throws PideployError `PIDEPLOY_CONFIG_NOT_FOUND` for a near-miss.
 */
export function findConfigFileIfAny(start: string): string | undefined {
  let directory = path.resolve(start);
  for (;;) {
    const candidate = path.join(directory, CONFIG_FILE_NAME);
    if (existsSync(candidate)) return candidate;
    const nearMiss = NEAR_MISS_FILE_NAMES.map((name) => path.join(directory, name)).find((file) => existsSync(file));
    if (nearMiss !== undefined) {
      throw new PideployError({
        code: 'PIDEPLOY_CONFIG_NOT_FOUND',
        message: `found ${nearMiss}, but pideploy reads only ${CONFIG_FILE_NAME}`,
        hint: `rename it to ${path.join(directory, CONFIG_FILE_NAME)} (JSON), or pass --config FILE`,
      });
    }
    const parent = path.dirname(directory);
    if (parent === directory) return undefined;
    directory = parent;
  }
}

/** Finds pideploy.json in `start` or an ancestor (see {@link findConfigFileIfAny}); it must exist. */
export function findConfigFile(start: string): string {
  const found = findConfigFileIfAny(start);
  if (found !== undefined) return found;
  throw new PideployError({
    code: 'PIDEPLOY_CONFIG_NOT_FOUND',
    message: `no ${CONFIG_FILE_NAME} in ${path.resolve(start)} or any directory above it`,
    hint: 'create one with `pideploy init`, or pass --config FILE',
  });
}

/**
 * For commands that also work without a project: the `--config` file, else pideploy.json found
 * walking up from `cwd`, else undefined.
 */
export async function loadConfigIfPresent(options: LoadConfigOptions = {}): Promise<ResolvedConfig | undefined> {
  if (options.configFile !== undefined) return loadConfig(options);
  const found = findConfigFileIfAny(options.cwd ?? process.cwd());
  return found === undefined ? undefined : loadConfig({ ...options, configFile: found });
}

/** Loads, validates and resolves pideploy.json. Every error names the file, the JSON path and the fix. */
export async function loadConfig(options: LoadConfigOptions = {}): Promise<ResolvedConfig> {
  const cwd = options.cwd ?? process.cwd();
  const file = options.configFile === undefined ? findConfigFile(cwd) : path.resolve(cwd, options.configFile);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    throw new PideployError({
      code: 'PIDEPLOY_CONFIG_NOT_FOUND',
      message: `cannot read ${file}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`,
      hint: options.configFile === undefined ? 'check the file permissions' : 'check the path given to --config',
      cause: error,
    });
  }
  return parseConfig(text, file);
}

/** Validates the text of a pideploy.json (already read from `file`) and resolves it. */
export function parseConfig(text: string, file: string): ResolvedConfig {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    const position = /position (\d+)/u.exec((error as Error).message);
    const where = position === null ? '' : ` at ${lineAndColumn(text, Number(position[1]))}`;
    throw new PideployError({
      code: 'PIDEPLOY_CONFIG_INVALID',
      message: `${file}${where}: not valid JSON (${(error as Error).message})`,
      hint: 'pideploy.json is plain JSON: no comments, no trailing commas',
      cause: error,
    });
  }
  if (!validateConfig(parsed)) {
    const first = pickMostUsefulError(validateConfig.errors ?? []);
    throw new PideployError({
      code: 'PIDEPLOY_CONFIG_INVALID',
      message: `${file}: ${describeSchemaError(first)}`,
      hint: hintForSchemaError(first),
    });
  }
  return resolveConfig(parsed, file);
}

function resolveConfig(config: ConfigFile, file: string): ResolvedConfig {
  const resolved = resolveHostsAndSettings(config, file);
  checkCanarySelectors(resolved, file);
  return resolved;
}

/** Matches a host name against a glob with `*` and `?` (no other special characters). */
function globMatches(glob: string, name: string): boolean {
  const pattern = glob.replace(/[.+^${}()|[\]\\]/gu, '\\$&').replaceAll('*', '.*').replaceAll('?', '.');
  return new RegExp(`^${pattern}$`, 'u').test(name);
}

/** Whether a selector (`@tag`, or a host name or glob with `*` and `?`) selects a host. */
export function selectorMatches(selector: string, host: Pick<ResolvedHost, 'name' | 'tags'>): boolean {
  return selector.startsWith('@') ? host.tags.includes(selector.slice(1)) : globMatches(selector, host.name);
}

/**
 * Why `selector` (a host name, glob or @tag) selects no host of `hosts` (with a "did you mean" or
 * the names there are), or undefined when it selects one.
 */
export function unmatchedSelector(hosts: readonly ResolvedHost[], selector: string): { readonly message: string; readonly hint: string } | undefined {
  const tag = selector.startsWith('@');
  if (hosts.some((host) => selectorMatches(selector, host))) return undefined;
  const candidates = tag ? [...new Set(hosts.flatMap((host) => host.tags.map((item) => `@${item}`)))] : hosts.map((host) => host.name);
  const suggestion = closest(selector, candidates);
  return {
    message: `${tag ? 'no host has the tag' : 'no host named'} "${tag ? selector.slice(1) : selector}"`,
    hint:
      suggestion !== undefined
        ? `did you mean "${suggestion}"?`
        : candidates.length > 0
          ? `${tag ? 'tags' : 'hosts'}: ${candidates.join(', ')}`
          : 'add it under "hosts" in pideploy.json',
  };
}

/**
 * pideploy.json `deploy.canary`'s selectors each match a host (a typo would otherwise silently
 * deploy without a canary).
 * @throws PideployError `PIDEPLOY_CONFIG_INVALID` naming the JSON path, with a "did you mean".
 */
function checkCanarySelectors(config: ResolvedConfig, file: string): void {
  const canary = config.deploy.canary;
  if (canary === undefined || typeof canary === 'number') return;
  for (const [index, selector] of canary.entries()) {
    const problem = unmatchedSelector(config.hosts, selector);
    if (problem === undefined) continue;
    throw new PideployError({ code: 'PIDEPLOY_CONFIG_INVALID', message: `${file}: /deploy/canary${canary.length > 1 ? `/${index}` : ''}: ${problem.message}`, hint: problem.hint });
  }
}

function resolveHostsAndSettings(config: ConfigFile, file: string): ResolvedConfig {
  const directory = path.dirname(file);
  const defaults = config.defaults ?? {};
  const canary = config.deploy?.canary;
  return {
    deploy: {
      parallel: config.deploy?.parallel,
      canary: typeof canary === 'string' ? [canary] : canary,
      maxFailures: config.deploy?.maxFailures,
      activationTimeout: config.deploy?.activationTimeout,
    },
    file,
    directory,
    pinsFile: path.resolve(directory, config.pins ?? 'pins.json'),
    cache: {
      directory: config.cache?.directory === undefined ? path.resolve(projectStateDir(directory), 'cache') : path.resolve(directory, config.cache.directory),
      keyName: config.cache?.keyName,
      secretKeyFile: config.cache?.secretKeyFile === undefined ? undefined : path.resolve(directory, config.cache.secretKeyFile),
      url: config.cache?.url,
      compression: config.cache?.compression,
    },
    cacheEnabled: config.cache !== undefined && config.cache.enable !== false,
    hosts: Object.entries(config.hosts).map(([name, host]) => ({
      name,
      keys: resolveKeys(file, name, defaults.keys, host.keys),
      target: host.target,
      configuration: path.resolve(directory, host.configuration),
      system: host.system ?? defaults.system ?? 'aarch64-linux',
      nixpkgs: host.nixpkgs ?? defaults.nixpkgs ?? DEFAULT_PIN_NAME,
      buildMode: host.buildMode ?? defaults.buildMode ?? 'emulated',
      builders: host.builders ?? defaults.builders,
      sudo: host.sudo ?? defaults.sudo ?? 'password',
      tags: host.tags ?? [],
      sshConfig: host.sshConfig === undefined ? undefined : path.resolve(directory, host.sshConfig),
      specialisation: host.specialisation,
      substituteOnDestination: host.substituteOnDestination ?? defaults.substituteOnDestination ?? false,
      healthCheck: host.healthCheck ?? defaults.healthCheck,
    })),
  };
}

/**
 * A host's keys: the defaults' and its own (its own replace the defaults' of the same name), with
 * the defaults filled in and files made absolute. Each key needs exactly one of file and command.
 * @throws PideployError `PIDEPLOY_CONFIG_INVALID` naming the JSON path.
 */
function resolveKeys(file: string, host: string, defaults: Readonly<Record<string, KeySettings>> | undefined, own: Readonly<Record<string, KeySettings>> | undefined): KeySpec[] {
  const directory = path.dirname(file);
  const merged = new Map<string, { settings: KeySettings; at: string }>();
  for (const [name, settings] of Object.entries(defaults ?? {})) merged.set(name, { settings, at: `/defaults/keys/${name}` });
  for (const [name, settings] of Object.entries(own ?? {})) merged.set(name, { settings, at: `/hosts/${host}/keys/${name}` });
  const keys = [...merged].map(([name, { settings, at }]): KeySpec => {
    if ((settings.file === undefined) === (settings.command === undefined)) {
      throw new PideployError({
        code: 'PIDEPLOY_CONFIG_INVALID',
        message: `${file}: ${at}: ${settings.file === undefined ? 'needs a "file" or a "command"' : 'has both "file" and "command"'}`,
        hint: 'give exactly one: "file": "secrets/wifi.psk" (relative to pideploy.json) or "command": ["pass", "show", "pi/wifi"]',
      });
    }
    return {
      name,
      source: settings.file !== undefined ? { file: path.resolve(directory, settings.file) } : { command: settings.command ?? [] },
      destDir: settings.destDir ?? KEY_DEFAULTS.destDir,
      user: settings.user ?? KEY_DEFAULTS.user,
      group: settings.group ?? KEY_DEFAULTS.group,
      permissions: settings.permissions ?? KEY_DEFAULTS.permissions,
      uploadAt: settings.uploadAt ?? KEY_DEFAULTS.uploadAt,
    };
  });
  try {
    checkKeySpecs(host, keys);
  } catch (error) {
    const problem = error as PideployError;
    throw new PideployError({ code: 'PIDEPLOY_CONFIG_INVALID', message: `${file}: /hosts/${host}/keys: ${problem.message.replace(`${host}: `, '')}`, hint: problem.hint, cause: error });
  }
  return keys;
}

function lineAndColumn(text: string, offset: number): string {
  const before = text.slice(0, offset).split('\n');
  return `line ${before.length}, column ${(before[before.length - 1]?.length ?? 0) + 1}`;
}

function pickMostUsefulError(errors: readonly ErrorObject[]): ErrorObject | undefined {
  // Prefer the deepest path (the most specific place), then unknown keys (likely typos).
  return [...errors].sort(
    (left, right) =>
      right.instancePath.split('/').length - left.instancePath.split('/').length ||
      Number(right.keyword === 'additionalProperties') - Number(left.keyword === 'additionalProperties'),
  )[0];
}

function jsonPath(error: ErrorObject): string {
  return error.instancePath === '' ? '(top level)' : error.instancePath;
}

/** Known keys at the place of an error, for "did you mean" hints. */
function knownKeysAt(instancePath: string): readonly string[] {
  const segments = instancePath.split('/').filter(Boolean);
  if (segments.length === 0) return Object.keys(schema.properties);
  if (segments[0] === 'defaults' && segments.length === 1) return Object.keys(schema.definitions['buildSettings']?.properties ?? {});
  if (segments[0] === 'cache' && segments.length === 1) return Object.keys(schema.definitions['cache']?.properties ?? {});
  if (segments[0] === 'deploy' && segments.length === 1) return Object.keys(schema.definitions['deploy']?.properties ?? {});
  if (segments[0] === 'hosts' && segments.length === 2) return Object.keys(schema.definitions['host']?.properties ?? {});
  const keysAt = segments[0] === 'defaults' ? 1 : segments[0] === 'hosts' ? 2 : -1;
  if (keysAt >= 0 && segments.length === keysAt + 2 && segments[keysAt] === 'keys') return Object.keys(schema.definitions['key']?.properties ?? {});
  const healthCheckAt = segments[0] === 'defaults' ? 1 : segments[0] === 'hosts' ? 2 : -1;
  if (segments.length === healthCheckAt + 1 && segments[healthCheckAt] === 'healthCheck') return Object.keys(schema.definitions['healthCheck']?.properties ?? {});
  return [];
}

function describeSchemaError(error: ErrorObject | undefined): string {
  if (error === undefined) return 'does not match the pideploy.json schema';
  const where = jsonPath(error);
  switch (error.keyword) {
    case 'additionalProperties':
      return `${where}: unknown key "${String(error.params['additionalProperty'])}"`;
    case 'required':
      return `${where}: missing "${String(error.params['missingProperty'])}"`;
    case 'enum':
      return `${where}: must be one of ${(error.params['allowedValues'] as unknown[]).map((value) => JSON.stringify(value)).join(', ')}`;
    case 'type':
      return `${where}: must be ${String(error.params['type'])}`;
    case 'pattern':
      if (where.endsWith('/target')) return `${where}: is not a valid SSH target`;
      if (where.endsWith('/url')) return `${where}: is not an http:// or https:// URL`;
      if (where.endsWith('/specialisation')) return `${where}: is not a specialisation name`;
      if (where.endsWith('/nixpkgs')) return `${where}: is not a pin name`;
      return `${where}: has characters that are not allowed`;
    default:
      return `${where}: ${error.message ?? 'is invalid'}`;
  }
}

function hintForSchemaError(error: ErrorObject | undefined): string {
  if (error === undefined) return 'see apps/sdk/pideploy.schema.json';
  if (error.keyword === 'additionalProperties') {
    const unknown = String(error.params['additionalProperty']);
    const suggestion = closest(unknown, knownKeysAt(error.instancePath));
    return suggestion === undefined
      ? `remove it; allowed here: ${knownKeysAt(error.instancePath).join(', ')}`
      : `did you mean "${suggestion}"?`;
  }
  if (error.keyword === 'required' && error.params['missingProperty'] === 'hosts') {
    return 'add "hosts": { "pi": { "target": "deploy@raspberrypi.local", "configuration": "./configuration.nix" } }';
  }
  if (error.keyword === 'required') return `add "${String(error.params['missingProperty'])}" to ${jsonPath(error)}`;
  if (error.keyword === 'pattern' && error.instancePath.endsWith('/target')) return 'use user@host, user@host:port or an ssh_config Host alias (no spaces or shell characters)';
  if (error.keyword === 'pattern' && error.instancePath.endsWith('/nixpkgs')) return 'name a pin of pins.json (letters, digits, "_" and "-", starting with a letter or "_"), e.g. "nixpkgs-next"';
  if (error.keyword === 'pattern' && error.instancePath.endsWith('/specialisation')) return 'give the name of one of the configuration\'s specialisation.<name> (a file name: not empty, no "/", not "." or "..")';
  if (error.keyword === 'pattern' && error.instancePath.endsWith('/healthCheck/url')) return 'e.g. "http://{hostname}:8080/health" ({hostname}: the address the host was reached at over SSH)';
  if (error.keyword === 'minProperties' && error.instancePath.endsWith('/healthCheck')) return 'give it a "command", a "url" or both, or remove it';
  return 'fix the value at the JSON path above (the schema is apps/sdk/pideploy.schema.json)';
}

/** The candidate nearest to `word` by edit distance, if it is close enough to be a typo. */
export function closest(word: string, candidates: readonly string[]): string | undefined {
  let best: { candidate: string; distance: number } | undefined;
  for (const candidate of candidates) {
    const distance = editDistance(word.toLowerCase(), candidate.toLowerCase());
    if (best === undefined || distance < best.distance) best = { candidate, distance };
  }
  return best !== undefined && best.distance <= Math.max(2, Math.floor(word.length / 3)) ? best.candidate : undefined;
}

function editDistance(left: string, right: string): number {
  const previous = Array.from({ length: right.length + 1 }, (_, index) => index);
  for (let i = 1; i <= left.length; i += 1) {
    let diagonal = previous[0] ?? 0;
    previous[0] = i;
    for (let j = 1; j <= right.length; j += 1) {
      const above = previous[j] ?? 0;
      previous[j] = Math.min(above + 1, (previous[j - 1] ?? 0) + 1, diagonal + (left[i - 1] === right[j - 1] ? 0 : 1));
      diagonal = above;
    }
  }
  return previous[right.length] ?? 0;
}

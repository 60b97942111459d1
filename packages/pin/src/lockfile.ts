import { NIX_KEYWORDS, formatHash, nixString, parseHash } from '@pideploy/nix';
import { pinError, usageError } from './errors.js';
import { invalidRefNameReason, isFullRev } from './github.js';

/*
 * pins.json (the versioned lock) and pins.nix (generated from it), both pure: rendering with a
 * stable key order, and parsing with errors that name the file and the JSON path.
 */

/** The lock file's name, next to the configuration. */
export const PINS_JSON = 'pins.json';

/** The generated Nix file's name, next to pins.json. */
export const PINS_NIX = 'pins.nix';

/** The lock format version this package reads and writes. */
export const PINS_FILE_VERSION = 1;

/** Fields every pin has: where the tarball is and what it must hash to. */
interface PinLockedSource {
  /** The tarball `builtins.fetchTarball` downloads. */
  readonly url: string;
  /** NAR sha256 of the unpacked tarball in nix32 (what `nix-prefetch-url --unpack` prints; what pins.nix passes). */
  readonly sha256: string;
  /** The same hash as SRI, `sha256-…=` (what `nix path-info` shows as narHash). */
  readonly narHash: string;
  /** Where `builtins.fetchTarball { url; sha256; }` puts the source: `/nix/store/<hash>-source`. */
  readonly storePath: string;
}

/** A GitHub archive pin; `branch` or `tag` when it follows one (what `update` re-resolves), `rev` always. */
export interface GithubPin extends PinLockedSource {
  readonly type: 'github';
  /** Repository owner, e.g. `NixOS`. */
  readonly owner: string;
  /** Repository name, e.g. `nixpkgs`. */
  readonly repo: string;
  /** The branch the pin follows, if any. */
  readonly branch?: string | undefined;
  /** The tag the pin follows, if any. */
  readonly tag?: string | undefined;
  /** The resolved commit (40 hex digits). */
  readonly rev: string;
}

/** A pin of any tarball URL. */
export interface UrlPin extends PinLockedSource {
  readonly type: 'url';
}

/** One pin of pins.json. */
export type Pin = GithubPin | UrlPin;

/** The contents of pins.json. */
export interface PinsFile {
  /** Always 1. */
  readonly version: typeof PINS_FILE_VERSION;
  /** Pin name → pin. */
  readonly pins: Readonly<Record<string, Pin>>;
}

/** An empty lock. */
export function emptyPinsFile(): PinsFile {
  return { version: PINS_FILE_VERSION, pins: {} };
}

/** Why `name` cannot be a pin name (it must be a plain Nix attribute name), or undefined. */
export function invalidPinNameReason(name: string): string | undefined {
  if (!/^[A-Za-z_][A-Za-z0-9_-]*$/u.test(name)) return 'use letters, digits, "_" and "-", starting with a letter or "_"';
  if (name.length > 100) return 'it is longer than 100 characters';
  if (NIX_KEYWORDS.has(name)) return 'it is a Nix keyword';
  return undefined;
}

/**
 * Checks a pin name (usable as `pins.<name>` in Nix).
 * @throws PideployError `PIDEPLOY_USAGE`.
 */
export function validatePinName(name: string): string {
  const reason = invalidPinNameReason(name);
  if (reason !== undefined) throw usageError(`"${name}" is not a valid pin name: ${reason}`, 'name pins like Nix attributes, e.g. nixpkgs or nixos-hardware');
  return name;
}

/** Pin names in the order pins.json and pins.nix list them (byte order). */
export function sortedPinNames(file: PinsFile): string[] {
  return Object.keys(file.pins).sort((left, right) => (left < right ? -1 : left > right ? 1 : 0));
}

/** A pin with its keys in the stable order of pins.json (unset optional fields dropped). */
export function orderPin(pin: Pin): Pin {
  const locked = { url: pin.url, sha256: pin.sha256, narHash: pin.narHash, storePath: pin.storePath };
  if (pin.type === 'url') return { type: 'url', ...locked };
  return {
    type: 'github',
    owner: pin.owner,
    repo: pin.repo,
    ...(pin.branch === undefined ? {} : { branch: pin.branch }),
    ...(pin.tag === undefined ? {} : { tag: pin.tag }),
    rev: pin.rev,
    ...locked,
  };
}

/** pins.json text: 2-space JSON, pins sorted by name, fields in a fixed order, final newline. */
export function renderPinsJson(file: PinsFile): string {
  const pins: Record<string, Pin> = {};
  for (const name of sortedPinNames(file)) pins[name] = orderPin(file.pins[name] as Pin);
  return `${JSON.stringify({ version: PINS_FILE_VERSION, pins }, null, 2)}\n`;
}

type JsonObject = Record<string, unknown>;

function isObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * Parses and checks pins.json text. Hash fields must parse (`sha256` as a sha256 in any Nix form,
 * `narHash` likewise); whether they agree with each other and with the source is `verify`'s job.
 * @throws PideployError `PIDEPLOY_PIN_LOCK_INVALID` naming the file and the JSON path.
 */
export function parsePinsJson(text: string, fileName: string = PINS_JSON): PinsFile {
  const invalid = (where: string, what: string): never => {
    throw pinError('PIDEPLOY_PIN_LOCK_INVALID', `${fileName}: ${where === '' ? '' : `${where}: `}${what}`, `fix ${fileName} by hand, or delete it and pin again with \`pideploy pin add\``);
  };
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    return invalid('', `not JSON (${(error as Error).message})`);
  }
  if (!isObject(value)) return invalid('', 'must be a JSON object');
  if (value['version'] !== PINS_FILE_VERSION) {
    return typeof value['version'] === 'number' && value['version'] > PINS_FILE_VERSION
      ? invalid('version', `${value['version']} is newer than this pideploy understands (${PINS_FILE_VERSION}); upgrade pideploy`)
      : invalid('version', `must be ${PINS_FILE_VERSION}`);
  }
  for (const key of Object.keys(value)) if (key !== 'version' && key !== 'pins') invalid(key, 'unknown property');
  const rawPins = value['pins'];
  if (!isObject(rawPins)) return invalid('pins', 'must be an object');
  const pins: Record<string, Pin> = {};
  for (const [name, raw] of Object.entries(rawPins)) {
    const where = `pins.${name}`;
    const reason = invalidPinNameReason(name);
    if (reason !== undefined) invalid(where, `not a valid pin name (${reason})`);
    if (!isObject(raw)) return invalid(where, 'must be an object');
    const string = (key: string, optional = false): string | undefined => {
      const field = raw[key];
      if (field === undefined && optional) return undefined;
      if (typeof field !== 'string' || field === '') return invalid(`${where}.${key}`, 'must be a non-empty string');
      return field;
    };
    const type = raw['type'];
    const allowed = type === 'github' ? ['type', 'owner', 'repo', 'branch', 'tag', 'rev', 'url', 'sha256', 'narHash', 'storePath'] : ['type', 'url', 'sha256', 'narHash', 'storePath'];
    if (type !== 'github' && type !== 'url') invalid(`${where}.type`, 'must be "github" or "url"');
    for (const key of Object.keys(raw)) if (!allowed.includes(key)) invalid(`${where}.${key}`, 'unknown property');
    const url = string('url') as string;
    try {
      const parsed = new URL(url);
      if (!['http:', 'https:', 'file:'].includes(parsed.protocol)) invalid(`${where}.url`, 'must be an http(s) or file URL');
    } catch {
      invalid(`${where}.url`, 'is not a URL');
    }
    const sha256 = string('sha256') as string;
    const narHash = string('narHash') as string;
    for (const [key, hash] of [['sha256', sha256], ['narHash', narHash]] as const) {
      try {
        parseHash(hash, { expectedAlgorithm: 'sha256' });
      } catch (error) {
        invalid(`${where}.${key}`, (error as Error).message);
      }
    }
    const storePath = string('storePath') as string;
    if (!/^\/\S+\/[0-9a-df-np-sv-z]{32}-\S+$/u.test(storePath)) invalid(`${where}.storePath`, 'is not a store path');
    const locked = { url, sha256, narHash, storePath };
    if (type === 'url') {
      pins[name] = { type: 'url', ...locked };
      continue;
    }
    const owner = string('owner') as string;
    const repo = string('repo') as string;
    const branch = string('branch', true);
    const tag = string('tag', true);
    if (branch !== undefined && tag !== undefined) invalid(where, 'has both "branch" and "tag"');
    for (const [key, ref] of [['branch', branch], ['tag', tag]] as const) {
      const refReason = ref === undefined ? undefined : invalidRefNameReason(ref);
      if (refReason !== undefined) invalid(`${where}.${key}`, refReason);
    }
    const rev = string('rev') as string;
    if (!isFullRev(rev)) invalid(`${where}.rev`, 'must be a full 40-hex commit SHA (lower case)');
    pins[name] = { type: 'github', owner, repo, ...(branch === undefined ? {} : { branch }), ...(tag === undefined ? {} : { tag }), rev, ...locked };
  }
  return { version: PINS_FILE_VERSION, pins };
}


/** The hash pins.nix passes to fetchTarball: the lock's `sha256` in nix32 (any parseable form is normalised). */
export function pinNixHash(pin: Pin): string {
  return formatHash(parseHash(pin.sha256, { expectedAlgorithm: 'sha256' }).digest, 'nix32');
}

/** One-line description of where a pin comes from, e.g. `github:NixOS/nixpkgs branch nixos-24.05`. */
export function describePinSource(pin: Pin): string {
  if (pin.type === 'url') return pin.url;
  const follows = pin.branch !== undefined ? ` branch ${pin.branch}` : pin.tag !== undefined ? ` tag ${pin.tag}` : '';
  return `github:${pin.owner}/${pin.repo}${follows}`;
}

function commentSafe(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/[\u0000-\u001f\u007f]/gu, '?');
}

/**
 * pins.nix text: an attribute set with one `builtins.fetchTarball { url; sha256; }` per pin (each
 * evaluates to the pin's unpacked source, a store path), preceded by a comment saying it is
 * generated. Both the build expression and configuration.nix import it:
 * `let pins = import ./pins.nix; in import pins.nixpkgs { }`.
 */
export function renderPinsNix(file: PinsFile): string {
  const lines = [
    '# Generated by pideploy from pins.json. Do not edit: `pideploy pin add|update` rewrites it.',
    '# Each attribute is the unpacked source (a store path) of one pin, fetched and checked by',
    '# builtins.fetchTarball. Use it as: let pins = import ./pins.nix; in import pins.nixpkgs { }',
    '{',
  ];
  for (const name of sortedPinNames(file)) {
    const pin = file.pins[name] as Pin;
    lines.push(
      `  # ${commentSafe(describePinSource(pin))}${pin.type === 'github' ? ` at ${pin.rev}` : ''}`,
      `  ${name} = builtins.fetchTarball {`,
      `    url = ${nixString(pin.url)};`,
      `    sha256 = ${nixString(pinNixHash(pin))};`,
      '  };',
    );
  }
  lines.push('}', '');
  return lines.join('\n');
}

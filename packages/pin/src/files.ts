import { randomBytes } from 'node:crypto';
import { open, readFile, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { PideployError } from '@pideploy/core';
import { pinError } from './errors.js';
import { PINS_JSON, PINS_NIX, parsePinsJson, renderPinsJson, renderPinsNix, type PinsFile } from './lockfile.js';

/** Where a project's pins live: `<dir>/pins.json` and `<dir>/pins.nix`. */
export interface PinsLocation {
  /** pins.json. */
  readonly jsonFile: string;
  /** pins.nix. */
  readonly nixFile: string;
}

/** The pins files of the project directory `dir`. */
export function pinsLocation(dir: string): PinsLocation {
  return { jsonFile: path.join(dir, PINS_JSON), nixFile: path.join(dir, PINS_NIX) };
}

/**
 * Reads pins.json; `undefined` when it does not exist.
 * @throws PideployError `PIDEPLOY_PIN_LOCK_INVALID`.
 */
export async function readPinsFile(location: PinsLocation): Promise<PinsFile | undefined> {
  let text: string;
  try {
    text = await readFile(location.jsonFile, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw pinError('PIDEPLOY_PIN_LOCK_INVALID', `cannot read ${location.jsonFile}: ${(error as Error).message}`, 'check the file and its permissions', { cause: error });
  }
  return parsePinsJson(text, location.jsonFile);
}

/**
 * Reads pins.json, which must exist.
 * @throws PideployError `PIDEPLOY_PIN_LOCK_MISSING`, `PIDEPLOY_PIN_LOCK_INVALID`.
 */
export async function readExistingPinsFile(location: PinsLocation): Promise<PinsFile> {
  const file = await readPinsFile(location);
  if (file === undefined) {
    throw pinError('PIDEPLOY_PIN_LOCK_MISSING', `there is no ${location.jsonFile}`, 'pin something first: pideploy pin add nixpkgs --github NixOS/nixpkgs --branch nixos-24.05');
  }
  return file;
}

/** A temp file next to `target`, fully written and fsynced, ready to be renamed over it. */
async function writeTempFile(target: string, content: string): Promise<string> {
  const temp = path.join(path.dirname(target), `.${path.basename(target)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  const handle = await open(temp, 'wx', 0o644);
  try {
    await handle.writeFile(content, 'utf8');
    await handle.sync();
  } finally {
    await handle.close();
  }
  return temp;
}

async function syncDirectory(dir: string): Promise<void> {
  try {
    const handle = await open(dir, 'r');
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  } catch {
    // Some file systems cannot fsync a directory; the renames are still atomic.
  }
}

/**
 * Writes pins.json and pins.nix atomically: both contents go to fsynced temp files in the same
 * directory first, then each is renamed over its target (pins.nix first, pins.json, the lock,
 * last), then the directory is fsynced. Any failure before the renames removes the temp files
 * and leaves both old files byte-identical.
 * @throws PideployError `PIDEPLOY_PIN_WRITE_FAILED`.
 */
export async function writePinsFiles(location: PinsLocation, file: PinsFile): Promise<void> {
  const temps: string[] = [];
  try {
    const nixTemp = await writeTempFile(location.nixFile, renderPinsNix(file));
    temps.push(nixTemp);
    const jsonTemp = await writeTempFile(location.jsonFile, renderPinsJson(file));
    temps.push(jsonTemp);
    await rename(nixTemp, location.nixFile);
    await rename(jsonTemp, location.jsonFile);
    temps.length = 0;
    await syncDirectory(path.dirname(location.jsonFile));
  } catch (error) {
    await Promise.all(temps.map((temp) => rm(temp, { force: true }).catch(() => undefined)));
    if (PideployError.isInstance(error)) throw error;
    throw pinError('PIDEPLOY_PIN_WRITE_FAILED', `cannot write ${location.jsonFile}: ${(error as Error).message}`, 'check that the directory exists and is writable; the old pins files are unchanged', { cause: error });
  }
}

/**
 * Checks that pins.json is a valid lock holding the pins `required` and that pins.nix is exactly
 * what pins.json generates (what a build will import is what the lock records). Reads only.
 * @throws PideployError `PIDEPLOY_PIN_LOCK_MISSING`, `PIDEPLOY_PIN_LOCK_INVALID`,
 *   `PIDEPLOY_PIN_UNKNOWN` (a required pin is absent), `PIDEPLOY_PIN_NIX_STALE`.
 */
export async function checkPinsFiles(location: PinsLocation, required: readonly string[] = []): Promise<PinsFile> {
  const file = await readExistingPinsFile(location);
  for (const name of required) {
    if (file.pins[name] === undefined) {
      throw pinError('PIDEPLOY_PIN_UNKNOWN', `${location.jsonFile} has no pin "${name}"`, `pin it: pideploy pin add ${name} --github NixOS/nixpkgs --branch nixos-24.05`);
    }
  }
  let nixText: string | undefined;
  try {
    nixText = await readFile(location.nixFile, 'utf8');
  } catch {
    nixText = undefined;
  }
  if (nixText !== renderPinsNix(file)) {
    throw pinError(
      'PIDEPLOY_PIN_NIX_STALE',
      nixText === undefined ? `${location.nixFile} is missing` : `${location.nixFile} does not match ${path.basename(location.jsonFile)} (edited by hand?)`,
      `restore it from version control, or rewrite both files from the lock: pideploy pin update ${Object.keys(file.pins)[0] ?? 'nixpkgs'} (moves branch pins to their newest commit)`,
    );
  }
  return file;
}

/**
 * The host's record of key files (`KEY_RECORD_FILE`) read back: which files pideploy put on
 * the host, and during which boot the record was written, so that a reader can tell the files
 * under `/run` (memory, emptied at boot) that an unplanned reboot took away. Pure.
 */
import { KEY_RECORD_BOOT_PREFIX } from './key-installer.js';
import { isKeyFilePath } from './key-spec.js';

/** What a host's key record says. */
export interface KeyRecord {
  /** The boot it was written in (`/proc/sys/kernel/random/boot_id`); undefined for a record without one (an older pideploy's). */
  readonly bootId: string | undefined;
  /** The key files it lists (lines that are no key file's path are left out). */
  readonly files: readonly string[];
}

/** Reads the record's lines (as `readHostSystems` or `systemStatus` return them with `alsoRead`); none: an empty record. */
export function parseKeyRecord(lines: readonly string[] | undefined): KeyRecord {
  const boot = (lines ?? []).find((line) => line.startsWith(KEY_RECORD_BOOT_PREFIX));
  const bootId = boot === undefined ? '' : boot.slice(KEY_RECORD_BOOT_PREFIX.length).trim();
  return { bootId: bootId === '' ? undefined : bootId, files: (lines ?? []).filter(isKeyFilePath) };
}

/**
 * The files of the record that are gone: those under `/run` when the host has booted since the
 * record was written (`currentBootId` is another boot). None when either boot is unknown.
 */
export function keyFilesGoneSinceBoot(record: KeyRecord, currentBootId: string | undefined): string[] {
  if (record.bootId === undefined || currentBootId === undefined || record.bootId === currentBootId) return [];
  return record.files.filter((file) => file.startsWith('/run/'));
}

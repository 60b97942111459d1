import { readFile } from 'node:fs/promises';

/** The pin's url/sha256/rev recorded in pins.json, for the bundle manifest (null fields when absent). */
export async function readPinRecord(pinsJson: string, pinName: string): Promise<{ url: string | null; sha256: string | null; rev: string | null }> {
  try {
    const lock = JSON.parse(await readFile(pinsJson, 'utf8')) as { pins?: Record<string, { url?: string; sha256?: string; rev?: string }> };
    const pin = lock.pins?.[pinName];
    return { url: pin?.url ?? null, sha256: pin?.sha256 ?? null, rev: pin?.rev ?? null };
  } catch {
    return { url: null, sha256: null, rev: null };
  }
}

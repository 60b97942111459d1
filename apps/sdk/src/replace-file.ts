import { rename, rm, writeFile } from 'node:fs/promises';

/**
 * Replaces a file's content at once: written to a temp file beside it, then renamed over it, so a
 * reader sees the old content or the new one, never half of it (the temp file goes on failure).
 */
export async function replaceFile(file: string, text: string): Promise<void> {
  const temp = `${file}.${process.pid}.tmp`;
  try {
    await writeFile(temp, text);
    await rename(temp, file);
  } catch (error) {
    await rm(temp, { force: true });
    throw error;
  }
}

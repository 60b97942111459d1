import { readSync } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { yieldToEventLoopSometimes } from './event-loop.js';

/** Where one file's contents were put. */
export type StoredContent =
  | { readonly where: 'memory'; readonly data: Buffer }
  | { readonly where: 'spill'; readonly offset: number; readonly length: number };

/** Options of {@link ContentStore}. */
export interface ContentStoreOptions {
  /** Total bytes of file contents kept in memory; the rest goes to the spill file. */
  readonly memoryBudgetBytes: number;
  /** Files larger than this always go to the spill file. */
  readonly inMemoryFileLimitBytes: number;
  /** Parent of the private temp directory (default: the OS temp dir). */
  readonly tempDirectory?: string | undefined;
}

const SPILL_WRITE_BUFFER = 1024 * 1024;
const READ_CHUNK = 1024 * 1024;
/** Spilled contents up to this size are read back with one synchronous read (no thread-pool hop). */
const SYNC_READ_LIMIT = 256 * 1024;

/**
 * Holds the contents of unpacked files until they are serialised in sorted order: small files in
 * memory up to a budget, everything else appended to ONE spill file in a private temp directory
 * (`mkdtemp`, mode 0700) that {@link dispose} removes. Archive paths never become file names,
 * so nothing is written anywhere else.
 */
export class ContentStore {
  private memoryUsed = 0;
  private spillDirectory: string | undefined;
  private spillHandle: FileHandle | undefined;
  private spillLength = 0;
  private pending: Buffer[] = [];
  private pendingLength = 0;
  private disposed = false;

  constructor(private readonly options: ContentStoreOptions) {}

  /** Bytes currently kept in memory. */
  get bytesInMemory(): number {
    return this.memoryUsed;
  }

  /** Bytes written to the spill file. */
  get bytesSpilled(): number {
    return this.spillLength + this.pendingLength;
  }

  /** Stores exactly `size` bytes from `chunks` (the caller guarantees the count). */
  async store(size: number, chunks: AsyncIterable<Buffer>): Promise<StoredContent> {
    if (size <= this.options.inMemoryFileLimitBytes && this.memoryUsed + size <= this.options.memoryBudgetBytes) {
      const data = Buffer.allocUnsafe(size);
      let filled = 0;
      for await (const chunk of chunks) {
        chunk.copy(data, filled);
        filled += chunk.length;
      }
      this.memoryUsed += size;
      return { where: 'memory', data: filled === size ? data : data.subarray(0, filled) };
    }
    const offset = this.spillLength + this.pendingLength;
    let length = 0;
    for await (const chunk of chunks) {
      // Copy: the chunk is a view into a larger stream buffer.
      this.pending.push(Buffer.from(chunk));
      this.pendingLength += chunk.length;
      length += chunk.length;
      if (this.pendingLength >= SPILL_WRITE_BUFFER) await this.flush();
    }
    return { where: 'spill', offset, length };
  }

  private async flush(): Promise<void> {
    if (this.pendingLength === 0) return;
    if (this.spillHandle === undefined) {
      this.spillDirectory = await mkdtemp(path.join(this.options.tempDirectory ?? tmpdir(), 'pideploy-nar-'));
      this.spillHandle = await open(path.join(this.spillDirectory, 'contents'), 'wx+', 0o600);
    }
    const data = Buffer.concat(this.pending, this.pendingLength);
    this.pending = [];
    this.pendingLength = 0;
    let written = 0;
    while (written < data.length) {
      const { bytesWritten } = await this.spillHandle.write(data, written, data.length - written, this.spillLength + written);
      written += bytesWritten;
    }
    this.spillLength += data.length;
  }

  /** Reads stored contents back, in chunks of at most 1 MiB. */
  async *read(content: StoredContent): AsyncGenerator<Buffer, void, undefined> {
    await yieldToEventLoopSometimes();
    if (content.where === 'memory') {
      if (content.data.length > 0) yield content.data;
      return;
    }
    if (content.offset + content.length > this.spillLength) await this.flush();
    const handle = this.spillHandle;
    if (handle === undefined) {
      if (content.length === 0) return;
      throw new Error('spilled contents are gone (the store was disposed)');
    }
    if (content.length <= SYNC_READ_LIMIT) {
      const data = Buffer.allocUnsafe(content.length);
      let filled = 0;
      while (filled < data.length) {
        const bytesRead = readSync(handle.fd, data, filled, data.length - filled, content.offset + filled);
        if (bytesRead === 0) throw new Error('the spill file is shorter than what was written to it');
        filled += bytesRead;
      }
      if (data.length > 0) yield data;
      return;
    }
    let position = content.offset;
    const end = content.offset + content.length;
    while (position < end) {
      const chunk = Buffer.allocUnsafe(Math.min(READ_CHUNK, end - position));
      const { bytesRead } = await handle.read(chunk, 0, chunk.length, position);
      if (bytesRead === 0) throw new Error('the spill file is shorter than what was written to it');
      position += bytesRead;
      yield bytesRead === chunk.length ? chunk : chunk.subarray(0, bytesRead);
    }
  }

  /** Closes and deletes the spill file and its directory; safe to call more than once. */
  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    this.pending = [];
    this.pendingLength = 0;
    const handle = this.spillHandle;
    this.spillHandle = undefined;
    try {
      await handle?.close();
    } finally {
      if (this.spillDirectory !== undefined) await rm(this.spillDirectory, { recursive: true, force: true });
    }
  }
}

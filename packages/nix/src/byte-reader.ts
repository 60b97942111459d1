/**
 * Pull-based reader over an async byte stream: exact reads for headers, bounded reads for
 * bodies, and "unread" for bytes a decoder consumed too eagerly. Internal to this package.
 */
export class ByteReader {
  private readonly iterator: AsyncIterator<unknown>;
  private chunks: Buffer[] = [];
  private headOffset = 0;
  private buffered = 0;
  private finished = false;
  /** Bytes handed out so far (for messages). */
  position = 0;

  constructor(source: AsyncIterable<unknown> | Iterable<unknown>) {
    this.iterator =
      Symbol.asyncIterator in source
        ? (source as AsyncIterable<unknown>)[Symbol.asyncIterator]()
        : toAsyncIterator((source as Iterable<unknown>)[Symbol.iterator]());
  }

  /** Bytes buffered and not yet read. */
  get available(): number {
    return this.buffered;
  }

  /** True once the source is exhausted and every buffered byte was read. */
  get atEnd(): boolean {
    return this.finished && this.buffered === 0;
  }

  private async pull(): Promise<boolean> {
    if (this.finished) return false;
    const result = await this.iterator.next();
    if (result.done === true) {
      this.finished = true;
      return false;
    }
    const value = result.value;
    if (!(value instanceof Uint8Array)) {
      throw new TypeError(`expected a stream of bytes, got ${typeof value} (set no encoding on the stream)`);
    }
    if (value.length > 0) {
      this.chunks.push(Buffer.isBuffer(value) ? value : Buffer.from(value.buffer, value.byteOffset, value.byteLength));
      this.buffered += value.length;
    }
    return true;
  }

  /** Buffers at least `count` bytes if the source has them; returns whether it could. */
  async ensure(count: number): Promise<boolean> {
    while (this.buffered < count) {
      if (!(await this.pull())) return false;
    }
    return true;
  }

  /** The next `count` buffered bytes without consuming them (fewer at the end of the stream). */
  peek(count: number): Buffer {
    return this.copyOut(Math.min(count, this.buffered), false);
  }

  /** Reads exactly `count` bytes, or returns undefined when the stream ends first (see {@link available}). */
  async readExact(count: number): Promise<Buffer | undefined> {
    if (!(await this.ensure(count))) return undefined;
    return this.copyOut(count, true);
  }

  /** Reads between 1 and `max` bytes, or returns undefined at the end of the stream. */
  async readSome(max: number): Promise<Buffer | undefined> {
    if (this.buffered === 0 && !(await this.ensure(1))) return undefined;
    const head = this.chunks[0] as Buffer;
    const count = Math.min(max, head.length - this.headOffset);
    return this.copyOut(count, true);
  }

  /** Reads up to and including the first `delimiter` byte (excluded from the result); undefined if the stream ends or `max` bytes pass first. */
  async readUntil(delimiter: number, max: number): Promise<Buffer | undefined> {
    const parts: Buffer[] = [];
    let total = 0;
    for (;;) {
      const piece = await this.readSome(Math.max(1, max + 1 - total));
      if (piece === undefined) return undefined;
      const index = piece.indexOf(delimiter);
      if (index >= 0) {
        parts.push(piece.subarray(0, index));
        this.unread(piece.subarray(index + 1));
        return Buffer.concat(parts);
      }
      parts.push(piece);
      total += piece.length;
      if (total > max) return undefined;
    }
  }

  /** Skips `count` bytes; returns how many could be skipped before the stream ended. */
  async skip(count: number): Promise<number> {
    let skipped = 0;
    while (skipped < count) {
      const piece = await this.readSome(Math.min(count - skipped, 1 << 20));
      if (piece === undefined) break;
      skipped += piece.length;
    }
    return skipped;
  }

  /** Puts bytes back in front of the stream (they are read again next). */
  unread(bytes: Buffer): void {
    if (bytes.length === 0) return;
    if (this.headOffset > 0) {
      this.chunks[0] = (this.chunks[0] as Buffer).subarray(this.headOffset);
      this.headOffset = 0;
    }
    this.chunks.unshift(bytes);
    this.buffered += bytes.length;
    this.position -= bytes.length;
  }

  /** Stops reading: lets the source release what it holds (files, sockets). */
  async close(): Promise<void> {
    this.chunks = [];
    this.buffered = 0;
    if (!this.finished) {
      this.finished = true;
      await this.iterator.return?.();
    }
  }

  private copyOut(count: number, consume: boolean): Buffer {
    if (count === 0) return Buffer.alloc(0);
    const head = this.chunks[0] as Buffer;
    if (head.length - this.headOffset >= count) {
      const result = head.subarray(this.headOffset, this.headOffset + count);
      if (consume) this.consume(count);
      return result;
    }
    const result = Buffer.allocUnsafe(count);
    let filled = 0;
    let chunkIndex = 0;
    let offset = this.headOffset;
    while (filled < count) {
      const chunk = this.chunks[chunkIndex] as Buffer;
      const take = Math.min(count - filled, chunk.length - offset);
      chunk.copy(result, filled, offset, offset + take);
      filled += take;
      chunkIndex += 1;
      offset = 0;
    }
    if (consume) this.consume(count);
    return result;
  }

  private consume(count: number): void {
    this.buffered -= count;
    this.position += count;
    let remaining = count;
    while (remaining > 0) {
      const head = this.chunks[0] as Buffer;
      const left = head.length - this.headOffset;
      if (left > remaining) {
        this.headOffset += remaining;
        return;
      }
      remaining -= left;
      this.chunks.shift();
      this.headOffset = 0;
    }
  }
}

function toAsyncIterator(iterator: Iterator<unknown>): AsyncIterator<unknown> {
  return {
    next: async () => iterator.next(),
    return: async () => iterator.return?.() ?? { done: true, value: undefined },
  };
}

import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { coalesceWritesPerTick } from './coalesce-writes.js';

/** A stream that records each call that reaches its underlying resource (one per system call for a socket). */
function recordingStream(highWaterMark = 16 * 1024) {
  const calls: string[][] = [];
  const stream = new Writable({
    highWaterMark,
    write(chunk: Buffer, _encoding, done) {
      calls.push([chunk.toString()]);
      done();
    },
    writev(chunks, done) {
      calls.push(chunks.map(({ chunk }) => (chunk as Buffer).toString()));
      done();
    },
  });
  return { stream, calls };
}

const nextTick = () => new Promise<void>((resolve) => process.nextTick(resolve));
const settle = () => new Promise<void>((resolve) => setImmediate(resolve));

describe('coalesceWritesPerTick', () => {
  it('sends what is written in one tick in one call, in order', async () => {
    const { stream, calls } = recordingStream();
    coalesceWritesPerTick(stream);
    // What ssh2 does for one packet: length, ciphertext, MAC.
    stream.write('len');
    stream.write('ciphertext');
    stream.write('mac');
    await settle();
    expect(calls).toEqual([['len', 'ciphertext', 'mac']]);
  });

  it('does not hold anything back: each tick goes out on its own', async () => {
    const { stream, calls } = recordingStream();
    coalesceWritesPerTick(stream);
    stream.write('a');
    await nextTick();
    await settle();
    stream.write('b');
    stream.write('c');
    await settle();
    expect(calls).toEqual([['a'], ['b', 'c']]);
  });

  it('keeps the stream\'s back-pressure answer and its callbacks', async () => {
    const { stream, calls } = recordingStream(4);
    coalesceWritesPerTick(stream);
    const written: string[] = [];
    expect(stream.write('ab', () => written.push('ab'))).toBe(true);
    expect(stream.write('cdef', () => written.push('cdef'))).toBe(false);
    await settle();
    expect(calls).toEqual([['ab', 'cdef']]);
    expect(written).toEqual(['ab', 'cdef']);
  });
});

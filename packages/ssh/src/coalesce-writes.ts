import type { Writable } from 'node:stream';

/**
 * Makes everything written to `stream` in one tick of the event loop leave in one `writev`.
 * ssh2 writes each SSH packet in three pieces (length, ciphertext, MAC) and the socket has
 * TCP_NODELAY, so without this every packet costs three system calls and three TCP segments, and
 * the server wakes up for each. Order and back-pressure are the stream's own (`cork`/`uncork`).
 * Only for a stream that writes corked chunks at once (`_writev`, as a `net.Socket`): on others it
 * would only delay each write by a tick. Returns the stream.
 */
export function coalesceWritesPerTick<T extends Writable>(stream: T): T {
  const write = stream.write.bind(stream) as (...args: unknown[]) => boolean;
  let corked = false;
  const uncork = () => {
    corked = false;
    stream.uncork();
  };
  stream.write = ((...args: unknown[]) => {
    if (!corked) {
      corked = true;
      stream.cork();
      process.nextTick(uncork);
    }
    return write(...args);
  }) as T['write'];
  return stream;
}

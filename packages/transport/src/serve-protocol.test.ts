import { describe, expect, it } from 'vitest';
import {
  ServeReader,
  ServeStreamEnded,
  decodeClientStream,
  encodeAddToStoreNarHeader,
  encodeClientHello,
  encodeQueryValidPaths,
  encodeString,
  encodeStrings,
  encodeU64,
} from './serve-protocol.js';
import { readVector } from './test-support/vectors.js';

const DEP = '/nix/store/rlssqq0vq28l3vjhipwlpg3bl3mm0j8x-demo-dep';
const SYSTEM = '/nix/store/7ik0d4rr7j1i94xshj0xbn580l0j115g-demo-system';

describe('wire primitives', () => {
  it('encodes u64 little-endian and strings with zero padding to 8 bytes', () => {
    expect(encodeU64(0x207).toString('hex')).toBe('0702000000000000');
    expect(encodeU64(true).toString('hex')).toBe('0100000000000000');
    expect(encodeString('').toString('hex')).toBe('0000000000000000');
    expect(encodeString('abc').toString('hex')).toBe('0300000000000000' + '6162630000000000');
    expect(encodeString('12345678').length).toBe(16);
    expect(encodeStrings(['a', 'b']).length).toBe(8 + 16 + 16);
    expect(() => encodeU64(-1)).toThrow(RangeError);
  });

  it('reads what it writes, across arbitrary chunk boundaries', async () => {
    const bytes = Buffer.concat([encodeU64(42), encodeString('hello, world'), encodeStrings(['x', '', 'yz'])]);
    const chunks = [...bytes].map((byte) => Buffer.of(byte));
    const reader = new ServeReader(chunks);
    expect(await reader.readU64()).toBe(42);
    expect(await reader.readString()).toBe('hello, world');
    expect(await reader.readStrings()).toEqual(['x', '', 'yz']);
    expect(await reader.atEnd()).toBe(true);
  });

  it('rejects non-zero padding, truncated values, a wrong magic and old servers', async () => {
    const padded = encodeString('abc');
    padded[12] = 1;
    await expect(new ServeReader([padded]).readString()).rejects.toThrow(/non-zero padding/);
    await expect(new ServeReader([encodeString('abcdef').subarray(0, 12)]).readString()).rejects.toBeInstanceOf(ServeStreamEnded);
    await expect(new ServeReader([Buffer.from('Welcome to the Pi!\n')]).readServerHello()).rejects.toMatchObject({
      code: 'PIDEPLOY_SERVE_PROTOCOL',
      message: expect.stringContaining('Welcome '),
      hint: expect.stringContaining('stdout'),
    });
    const old = Buffer.concat([encodeU64(0x5452eecb), encodeU64(0x204)]);
    await expect(new ServeReader([old]).readServerHello()).rejects.toThrow(/2\.4; pideploy needs 2\.5/);
  });
});

describe('against the bytes of a real nix-copy-closure --to (vectors/serve/copy-to.*)', () => {
  it('decodes the client stream: hello, one validity query, two cmdAddToStoreNar dependencies first', async () => {
    const requests = await decodeClientStream(readVector('serve/copy-to.client-to-server.bin'));
    expect(requests.map((request) => request.command)).toEqual(['hello', 'queryValidPaths', 'addToStoreNar', 'addToStoreNar']);
    expect(requests[0]).toEqual({ command: 'hello', version: 0x207 });
    expect(requests[1]).toEqual({ command: 'queryValidPaths', lock: false, substitute: false, paths: [SYSTEM, DEP] });
    const add = requests[2];
    expect(add?.command === 'addToStoreNar' && add.request).toMatchObject({
      path: DEP,
      narHashHex: 'd535439c3e78fe19ec2f526889c3e0e13e7fee1fc5e62d15d97042daf48eed3d',
      references: [],
      narSize: 128,
      registrationTime: 1795526501,
    });
  });

  it('re-encodes the client stream byte for byte (paths in any order are sent sorted)', async () => {
    const vector = readVector('serve/copy-to.client-to-server.bin');
    const requests = await decodeClientStream(vector);
    const parts: Buffer[] = [encodeClientHello(), encodeQueryValidPaths({ lock: false, substitute: false, paths: [DEP, SYSTEM] })];
    for (const request of requests) {
      if (request.command === 'addToStoreNar') parts.push(encodeAddToStoreNarHeader(request.request), request.nar);
    }
    expect(Buffer.concat(parts).equals(vector)).toBe(true);
  });

  it('reads the server stream: hello 2.7, no valid paths, then 1 per added path', async () => {
    const reader = new ServeReader([readVector('serve/copy-to.server-to-client.bin')]);
    expect(await reader.readServerHello()).toBe(0x207);
    expect(await reader.readStrings()).toEqual([]);
    expect(await reader.readU64()).toBe(1);
    expect(await reader.readU64()).toBe(1);
    expect(await reader.atEnd()).toBe(true);
  });

  it('refuses a zero narSize (Nix: "narInfo is too old")', () => {
    expect(() =>
      encodeAddToStoreNarHeader({ path: DEP, narHashHex: '00', references: [], registrationTime: 0, narSize: 0, signatures: [] }),
    ).toThrow(RangeError);
  });
});

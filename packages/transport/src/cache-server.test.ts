import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { serveBinaryCache, type BinaryCacheServer, type CacheRequest } from './cache-server.js';

const NARINFO = 'qcc8mwk1cik215klxxkm5f6zbpy9wdwp.narinfo';
const NAR = 'nar/1f09hpb072xwml360lrgz170zr4b487056lngdzjgikylawc5d51.nar.zst';

/** One raw request below the server's URL (sent exactly as given: no client-side normalisation). */
function request(server: BinaryCacheServer, method: string, requestPath: string) {
  return rawRequest(server, method, `${new URL(server.url).pathname.replace(/\/$/u, '')}${requestPath}`);
}

function rawRequest(server: BinaryCacheServer, method: string, requestPath: string): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const outgoing = http.request({ host: server.host, port: server.port, method, path: requestPath, agent: false }, (response) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.on('end', () => resolve({ status: response.statusCode ?? 0, headers: response.headers, body: Buffer.concat(chunks) }));
    });
    outgoing.on('error', reject);
    outgoing.end();
  });
}

describe('serveBinaryCache', () => {
  let work: string;
  let cache: string;
  let server: BinaryCacheServer;
  const log: CacheRequest[] = [];
  const narBytes = Buffer.alloc(300_000, 0xab);

  beforeAll(async () => {
    work = mkdtempSync(path.join(tmpdir(), 'pideploy-cache-server-'));
    cache = path.join(work, 'cache');
    mkdirSync(path.join(cache, 'nar'), { recursive: true });
    writeFileSync(path.join(cache, 'nix-cache-info'), 'StoreDir: /nix/store\n');
    writeFileSync(path.join(cache, NARINFO), 'StorePath: /nix/store/qcc8mwk1cik215klxxkm5f6zbpy9wdwp-cachexp-top\n');
    writeFileSync(path.join(cache, NAR), narBytes);
    writeFileSync(path.join(work, 'fleet-1.secret'), 'fleet-1:SECRET\n');
    // A narinfo name that is a symlink out of the cache, and a directory where a file should be.
    symlinkSync(path.join(work, 'fleet-1.secret'), path.join(cache, '0mdqa9w1p6cmli6976v4wi0sw9r4p5pr.narinfo'));
    mkdirSync(path.join(cache, '1mdqa9w1p6cmli6976v4wi0sw9r4p5pr.narinfo'));
    server = await serveBinaryCache({ directory: cache, onRequest: (entry) => log.push(entry) });
  });
  afterAll(async () => {
    await server.close();
    rmSync(work, { recursive: true, force: true });
  });

  it('listens on loopback at a free port and serves what Nix asks for, with Nix’s content types', async () => {
    expect(server.url).toMatch(new RegExp(`^http://127\\.0\\.0\\.1:${server.port}/c-[0-9a-f]{16}$`, 'u'));
    const info = await request(server, 'GET', '/nix-cache-info');
    expect(info).toMatchObject({ status: 200, headers: { 'content-type': 'text/x-nix-cache-info' } });
    expect(info.body.toString()).toBe('StoreDir: /nix/store\n');
    const narinfo = await request(server, 'GET', `/${NARINFO}?ignored=1`);
    expect(narinfo).toMatchObject({ status: 200, headers: { 'content-type': 'text/x-nix-narinfo' } });
    const nar = await request(server, 'GET', `/${NAR}`);
    expect(nar.status).toBe(200);
    expect(nar.headers['content-length']).toBe(String(narBytes.length));
    expect(nar.body.equals(narBytes)).toBe(true);
  });

  it('answers HEAD with the headers only, 404 for what is missing, 405 for other methods', async () => {
    const head = await request(server, 'HEAD', `/${NAR}`);
    expect(head.status).toBe(200);
    expect(head.headers['content-length']).toBe(String(narBytes.length));
    expect(head.body.length).toBe(0);
    expect((await request(server, 'GET', '/00000000000000000000000000000000.narinfo')).status).toBe(404);
    expect((await request(server, 'HEAD', '/00000000000000000000000000000000.narinfo')).status).toBe(404);
    const put = await request(server, 'PUT', `/${NARINFO}`);
    expect(put.status).toBe(405);
    expect(put.headers['allow']).toBe('GET, HEAD');
  });

  it('never serves anything outside the cache: traversal, escapes, symlinks, directories', async () => {
    for (const requestPath of ['/../fleet-1.secret', '/nar/../../fleet-1.secret', '/%2e%2e/fleet-1.secret', '/nar/%2e%2e%2f%2e%2e%2ffleet-1.secret', '//etc/passwd', '/0mdqa9w1p6cmli6976v4wi0sw9r4p5pr.narinfo', '/1mdqa9w1p6cmli6976v4wi0sw9r4p5pr.narinfo', '/nar/']) {
      const answer = await request(server, 'GET', requestPath);
      expect(answer.status, requestPath).toBe(404);
      expect(answer.body.toString()).not.toContain('SECRET');
    }
  });

  it('serves only under its own URL: a new server, a new URL (Nix caches narinfos per URL)', async () => {
    expect((await rawRequest(server, 'GET', '/nix-cache-info')).status).toBe(404);
    expect((await rawRequest(server, 'GET', `/c-0000000000000000/${NARINFO}`)).status).toBe(404);
    const second = await serveBinaryCache({ directory: cache });
    const atRoot = await serveBinaryCache({ directory: cache, pathPrefix: '' });
    try {
      expect(new URL(second.url).pathname).not.toBe(new URL(server.url).pathname);
      expect(atRoot.url).toBe(`http://127.0.0.1:${atRoot.port}`);
      expect((await rawRequest(atRoot, 'GET', '/nix-cache-info')).status).toBe(200);
    } finally {
      await second.close();
      await atRoot.close();
    }
    await expect(serveBinaryCache({ directory: cache, pathPrefix: 'no-slash' })).rejects.toMatchObject({ code: 'PIDEPLOY_USAGE' });
  });

  it('counts requests and body bytes served, and reports each request', async () => {
    const before = { requests: server.requests, bytes: server.bytesServed, logged: log.length };
    await request(server, 'GET', `/${NAR}`);
    await request(server, 'GET', '/nope');
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(server.requests - before.requests).toBe(2);
    expect(server.bytesServed - before.bytes).toBe(narBytes.length);
    const prefix = new URL(server.url).pathname;
    expect(log.slice(before.logged)).toEqual([
      { method: 'GET', path: `${prefix}/${NAR}`, status: 200, bytes: narBytes.length },
      { method: 'GET', path: `${prefix}/nope`, status: 404, bytes: 0 },
    ]);
  });

  it('refuses a directory that does not exist, and a port in use', async () => {
    await expect(serveBinaryCache({ directory: path.join(work, 'missing') })).rejects.toMatchObject({ code: 'PIDEPLOY_USAGE' });
    await expect(serveBinaryCache({ directory: cache, port: server.port })).rejects.toMatchObject({ code: 'PIDEPLOY_CACHE_SERVER_FAILED', hint: expect.stringContaining('another port') });
  });

  it('close() drops kept-alive connections and stops listening', async () => {
    const other = await serveBinaryCache({ directory: cache });
    const agent = new http.Agent({ keepAlive: true });
    await new Promise<void>((resolve, reject) => {
      http.get({ host: other.host, port: other.port, path: '/nix-cache-info', agent }, (response) => {
        response.resume();
        response.on('end', resolve);
      }).on('error', reject);
    });
    await other.close();
    await other.close();
    await expect(request(other, 'GET', '/nix-cache-info')).rejects.toMatchObject({ code: 'ECONNREFUSED' });
    agent.destroy();
  });
});

import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeFaultRules } from './faults.js';
import { isLoopbackHost, parseRequestLog, readRequestLog, startArchiveServer, type ArchiveServer } from './server.js';

describe('isLoopbackHost', () => {
  it('allows loopback addresses only', () => {
    for (const host of ['127.0.0.1', '127.1.2.3', '::1', 'localhost']) expect(isLoopbackHost(host)).toBe(true);
    for (const host of ['0.0.0.0', '::', '10.0.0.1', '128.0.0.1', '127.0.0.256', 'example.org', '']) expect(isLoopbackHost(host)).toBe(false);
  });
});

describe('parseRequestLog', () => {
  it('reads JSON lines and skips broken ones', () => {
    expect(parseRequestLog('{"method":"GET","status":200}\nnot json\n\n{"method":"HEAD","status":404}\n')).toEqual([
      { method: 'GET', status: 200 },
      { method: 'HEAD', status: 404 },
    ]);
  });
});

// A server without repositories: everything that does not need git (refusals, faults, log).
describe('archive server without repositories', () => {
  let root = '';
  let server: ArchiveServer;
  beforeAll(async () => {
    root = mkdtempSync(path.join(tmpdir(), 'pideploy-archive-unit-'));
    mkdirSync(path.join(root, 'git'));
    // A file next to the root that traversal attempts would reach.
    writeFileSync(path.join(path.dirname(root), `${path.basename(root)}-secret`), 'secret');
    server = await startArchiveServer({ root });
  });
  afterAll(async () => {
    await server.close();
    rmSync(root, { recursive: true, force: true });
    rmSync(path.join(path.dirname(root), `${path.basename(root)}-secret`), { force: true });
  });

  it('refuses non-loopback addresses before listening', async () => {
    await expect(startArchiveServer({ root, host: '0.0.0.0' })).rejects.toThrow('loopback addresses only');
  });

  it('listens on 127.0.0.1 with a chosen port', () => {
    expect(server.url).toBe(`http://127.0.0.1:${server.port}`);
    expect(server.port).toBeGreaterThan(0);
  });

  it('answers unknown repositories like GitHub', async () => {
    const api = await fetch(`${server.url}/repos/nobody/nothing/commits/main`);
    expect(api.status).toBe(404);
    expect(await api.json()).toMatchObject({ message: 'Not Found' });
    expect(api.headers.get('x-ratelimit-limit')).toBe('60');
    expect(Number(api.headers.get('x-ratelimit-remaining'))).toBeGreaterThan(0);
    expect((await fetch(`${server.url}/nobody/nothing/archive/main.tar.gz`, { redirect: 'manual' })).status).toBe(404);
    expect((await fetch(`${server.url}/nobody/nothing.git/info/refs`)).status).toBe(404);
  });

  it('refuses traversal, raw and encoded, without reading outside the root', async () => {
    const secret = `${path.basename(root)}-secret`;
    for (const target of [`/%2e%2e/${secret}`, `/x/%2E%2E%2F%2E%2E%2F${secret}`, `/x/y.git/..%2f..%2f..%2f${secret}`]) {
      const response = await fetch(`${server.url}${target}`);
      expect([400, 404]).toContain(response.status);
      expect(await response.text()).not.toBe('secret');
    }
  });

  it('applies faults.json, counts times, and logs every request with the authorization flag', async () => {
    writeFaultRules(root, [{ match: '/repos/', status: 503, body: 'busy', times: 1, headers: { 'Retry-After': '1' } }]);
    const faulted = await fetch(`${server.url}/repos/o/r`, { headers: { authorization: 'Bearer not-logged-anywhere' } });
    expect(faulted.status).toBe(503);
    expect(faulted.headers.get('retry-after')).toBe('1');
    expect(faulted.headers.get('x-ratelimit-limit')).toBe('5000');
    expect(await faulted.text()).toBe('busy');
    expect((await fetch(`${server.url}/repos/o/r`)).status).toBe(404);
    writeFaultRules(root, []);
    const entries = readRequestLog(root).slice(-2);
    expect(entries).toEqual([
      expect.objectContaining({ method: 'GET', path: '/repos/o/r', status: 503, bytes: 4, authorized: true, fault: 0, route: 'api-repository' }),
      expect.objectContaining({ method: 'GET', path: '/repos/o/r', status: 404, authorized: false }),
    ]);
    expect(entries[1]).not.toHaveProperty('fault');
    expect(JSON.stringify(readRequestLog(root))).not.toContain('not-logged-anywhere');
  });

  it('answers 500 with the reason while faults.json is invalid', async () => {
    writeFileSync(path.join(root, 'faults.json'), '{');
    const response = await fetch(`${server.url}/repos/o/r`);
    expect(response.status).toBe(500);
    expect(await response.text()).toContain('faults.json is not JSON');
    writeFaultRules(root, []);
    expect(existsSync(path.join(root, 'faults.json'))).toBe(false);
  });

  it('delays answers and close() cuts stalled connections', async () => {
    writeFaultRules(root, [
      { match: '/stall', delayMs: 60_000 },
      { match: '/slow', delayMs: 300 },
    ]);
    const stalled = fetch(`${server.url}/stall`).then(
      (response) => response.status,
      () => 'cut',
    );
    const other = await startArchiveServer({ root });
    const started = Date.now();
    expect((await fetch(`${other.url}/slow`)).status).toBe(404);
    expect(Date.now() - started).toBeGreaterThanOrEqual(290);
    await other.close();
    writeFaultRules(root, []);
    await server.close();
    expect(await stalled).toBe('cut');
    server = await startArchiveServer({ root });
  });
});

import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createBaseContext, createCollectingReporter, type DeployEvent } from '@pideploy/core';
import { formatHash, parseHash, queryClosurePathInfos } from '@pideploy/nix';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { copyClosure, openServeConnection } from './copy-closure.js';
import { queryValidPaths } from './query-valid-paths.js';
import type { RemoteSpawner, ServeProcess } from './remote-serve.js';
import { describeNix, LOCAL_NIX_ENV, localSpawner } from './test-support/local-serve.js';
import { vectorsDir } from './test-support/vectors.js';

/*
 * copyClosure against the real `nix-store --serve --write` of Nix 2.8, run locally (no SSH) into a
 * fresh chroot store: the protocol, the plan, re-runs and interruptions, without the lab.
 */


function nixBuild(expression: string): string {
  return execFileSync('nix-build', ['--no-out-link', '-E', expression], { env: LOCAL_NIX_ENV, encoding: 'utf8' }).trim();
}

function validIn(store: string, paths: readonly string[]): boolean[] {
  return paths.map((storePath) => {
    try {
      execFileSync('nix-store', ['--store', store, '--check-validity', storePath], { env: LOCAL_NIX_ENV, stdio: 'ignore' });
      return true;
    } catch {
      return false;
    }
  });
}

describeNix('copyClosure into a real nix-store --serve --write (local chroot store)', () => {
  let work: string;
  let demo: string;
  let big: string;

  beforeAll(() => {
    work = mkdtempSync(path.join(tmpdir(), 'pideploy-transport-'));
    // demo-closure.nix builds two tops; the one of the recorded vectors is demo-system 7ik0….
    demo = execFileSync('nix-build', ['--no-out-link', path.join(vectorsDir(), 'serve', 'demo-closure.nix')], { env: LOCAL_NIX_ENV, encoding: 'utf8' })
      .split('\n')
      .find((line) => line.includes('7ik0d4rr7j1i94xshj0xbn580l0j115g')) as string;
    big = nixBuild(
      `let dep = builtins.derivation { name = "transport-test-dep"; system = "x86_64-linux"; builder = "/bin/sh"; args = ["-c" "echo dep > $out"]; };
       in builtins.derivation { name = "transport-test-big"; system = "x86_64-linux"; builder = "/bin/sh"; PATH = "/usr/bin:/bin"; inherit dep; salt = "${path.basename(work)}";
            args = ["-c" "mkdir $out; head -c 24000000 /dev/urandom > $out/blob; echo \${dep} > $out/dep"]; }`,
    );
  }, 120_000);

  afterAll(() => rmSync(work, { recursive: true, force: true }));

  it('copies the demo closure dependencies first, then a re-run sends nothing', async () => {
    const store = path.join(work, 'store-demo');
    const reporter = createCollectingReporter();
    const session = localSpawner();
    const first = await copyClosure({ host: 'local', session, paths: [demo], remoteStore: store, localNixEnv: LOCAL_NIX_ENV }, createBaseContext({ reporter }));
    expect(first.pathsSent.map((p) => p.replace(/^.*?-/u, ''))).toEqual(['demo-dep', 'demo-system']);
    expect(first.bytesSent).toBe(128 + 1040);
    expect(session.commands).toEqual([['nix-store', '--serve', '--write', '--store', store]]);
    const plan = reporter.events.find((event) => event.type === 'copy-plan');
    expect(plan).toEqual({ type: 'copy-plan', host: 'local', pathsToSend: 2, bytesToSend: 1168, pathsPresent: 0 });
    expect(reporter.events.at(-1)).toMatchObject({ type: 'copy-end', pathsSent: 2, bytesSent: 1168 });
    // The target has the same registration as the source.
    const remote = await queryClosurePathInfos([demo], { env: LOCAL_NIX_ENV, store });
    const local = await queryClosurePathInfos([demo], { env: LOCAL_NIX_ENV });
    const key = (infos: typeof local) => infos.map((info) => [info.path, info.narHash, info.narSize, info.references, info.deriver]).sort();
    expect(key(remote)).toEqual(key(local));

    const again = await copyClosure({ host: 'local', session, paths: [demo], remoteStore: store, localNixEnv: LOCAL_NIX_ENV }, createBaseContext());
    expect(again).toMatchObject({ pathsSent: [], bytesSent: 0 });
    expect(again.pathsPresent).toHaveLength(2);
  });

  it('an interruption mid-NAR registers nothing half-sent; the re-run sends only what is missing', async () => {
    const store = path.join(work, 'store-cut');
    const closure = await queryClosurePathInfos([big], { env: LOCAL_NIX_ENV });
    const dep = closure.find((info) => info.path !== big)?.path as string;
    // Kill the serve process once ~10 MB of the big NAR went through (like a dropped SSH link).
    const inner = localSpawner();
    let killed = false;
    const cutting: RemoteSpawner = {
      async spawn(command) {
        const child: ServeProcess = await inner.spawn(command);
        let written = 0;
        const write = child.stdin.write.bind(child.stdin);
        child.stdin.write = ((chunk: Buffer, ...rest: never[]) => {
          written += chunk.length;
          if (written > 10_000_000 && !killed) {
            killed = true;
            child.kill('KILL');
          }
          return write(chunk, ...rest);
        }) as typeof child.stdin.write;
        return child;
      },
    };
    const events: DeployEvent[] = [];
    await expect(
      copyClosure({ host: 'local', session: cutting, paths: [big], remoteStore: store, localNixEnv: LOCAL_NIX_ENV }, createBaseContext({ reporter: { emit: (event) => events.push(event) } })),
    ).rejects.toMatchObject({ code: expect.stringMatching(/PIDEPLOY_COPY_(CONNECTION_LOST|FAILED)/u), hint: expect.stringContaining('sends only what is still missing') });
    expect(killed).toBe(true);
    expect(validIn(store, [dep, big])).toEqual([true, false]);
    execFileSync('nix-store', ['--store', store, '--verify'], { env: LOCAL_NIX_ENV, stdio: 'ignore' });

    const rerun = await copyClosure({ host: 'local', session: localSpawner(), paths: [big], remoteStore: store, localNixEnv: LOCAL_NIX_ENV }, createBaseContext());
    expect(rerun.pathsSent).toEqual([big]);
    expect(rerun.pathsPresent).toEqual([dep]);
    expect(validIn(store, [dep, big])).toEqual([true, true]);
    expect(events.some((event) => event.type === 'copy-progress')).toBe(true);
  }, 120_000);

  it('answers queries over the same serve connection: valid paths read-only, then a running closure before the copy', async () => {
    const store = path.join(work, 'store-query');
    const session = localSpawner();
    const closure = await queryClosurePathInfos([demo], { env: LOCAL_NIX_ENV });
    const dep = closure.find((info) => info.path !== demo)?.path as string;
    const none = '/nix/store/00000000000000000000000000000000-not-there';
    expect(await queryValidPaths(session, [demo, dep, none], { host: 'local', remoteStore: store })).toEqual([]);
    await copyClosure({ host: 'local', session, paths: [dep], remoteStore: store, localNixEnv: LOCAL_NIX_ENV }, createBaseContext());
    // Read-only: no --write (the login user may run it without sudo).
    expect((await queryValidPaths(session, [demo, dep, none], { host: 'local', remoteStore: store })).sort()).toEqual([dep]);
    expect(session.commands.filter((command) => !command.includes('--write'))).toEqual([
      ['nix-store', '--serve', '--store', store],
      ['nix-store', '--serve', '--store', store],
    ]);

    // An opened connection answers what the target has (its registration) and then copies the rest.
    const connection = await openServeConnection({ host: 'local', session, remoteStore: store }, createBaseContext());
    expect(connection.serverVersion).toBeGreaterThanOrEqual(0x200);
    const running = await connection.queryClosure([dep]);
    const localDep = closure.find((info) => info.path === dep);
    const hex = (hash: string | undefined) => formatHash(parseHash(hash ?? '', { expectedAlgorithm: 'sha256' }).digest, 'hex');
    expect(running.map((info) => [info.path, hex(info.narHash), info.narSize])).toEqual([[dep, hex(localDep?.narHash), localDep?.narSize]]);
    const copied = await copyClosure({ host: 'local', session, paths: [demo], remoteStore: store, localNixEnv: LOCAL_NIX_ENV, connection }, createBaseContext());
    expect(copied).toMatchObject({ pathsSent: [demo], pathsPresent: [dep] });
    expect(connection.isOpen).toBe(false);
  });

  it('classifies a missing remote nix-store for a read-only query', async () => {
    // Through a real shell without nix-store on its PATH, as a login shell on a host without Nix runs it.
    const inner = localSpawner({ ...LOCAL_NIX_ENV, PATH: '/nonexistent' });
    const withoutNix: RemoteSpawner = { spawn: (command) => inner.spawn(['/bin/sh', '-c', '"$@"', 'sh', ...command]) };
    await expect(queryValidPaths(withoutNix, [demo], { host: 'local' })).rejects.toMatchObject({ code: 'PIDEPLOY_REMOTE_NIX_MISSING' });
  });

  it('reports a path missing from the local store before connecting', async () => {
    const session = localSpawner();
    await expect(
      copyClosure({ host: 'local', session, paths: ['/nix/store/00000000000000000000000000000000-nope'], localNixEnv: LOCAL_NIX_ENV }, createBaseContext()),
    ).rejects.toMatchObject({ code: 'PIDEPLOY_STORE_PATH_NOT_VALID' });
    expect(session.commands).toEqual([]);
  });
});

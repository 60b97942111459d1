import { execFileSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { beforeAll, expect, it } from 'vitest';
import { createClosureQuery, queryClosurePathInfos } from './store-query.js';
import { describeWithNix, NIX_TEST_ENV } from './test-support/nix-cli.js';

/*
 * createClosureQuery against the real `nix path-info` of Nix 2.8: the same closures as one
 * recursive query each, with the shared part asked once. A `nix` shim on PATH counts the calls.
 */

describeWithNix('createClosureQuery (real nix path-info)', () => {
  let env: NodeJS.ProcessEnv;
  let calls: string;
  let system: string;
  let bundles: string[];
  let outLink: string;

  const nixCalls = () => readFileSync(calls, 'utf8').split('\n').filter(Boolean);

  beforeAll(() => {
    const work = mkdtempSync(path.join(os.tmpdir(), 'pideploy-closure-query-'));
    const realNix = execFileSync('sh', ['-c', 'command -v nix'], { encoding: 'utf8' }).trim();
    const shims = path.join(work, 'bin');
    calls = path.join(work, 'calls');
    writeFileSync(calls, '');
    execFileSync('mkdir', ['-p', shims]);
    writeFileSync(path.join(shims, 'nix'), `#!/bin/sh\nprintf '%s\\n' "$*" >>'${calls}'\nexec '${realNix}' "$@"\n`);
    chmodSync(path.join(shims, 'nix'), 0o755);
    env = { ...NIX_TEST_ENV, PATH: `${shims}:${process.env['PATH'] ?? ''}` };
    // A "system" with two dependencies and three "bundles" around it, each also holding a source of its own.
    const expression = `
      let
        salt = "${path.basename(work)}";
        mk = name: script: deps: builtins.derivation ({ inherit name salt; system = builtins.currentSystem; builder = "/bin/sh"; args = [ "-c" script ]; } // deps);
        libA = mk "lib-a" "echo a > $out" { };
        libB = mk "lib-b" "echo \${libA} > $out" { inherit libA; };
        system = mk "system" "echo \${libA} \${libB} > $out" { inherit libA libB; };
        bundle = host: mk "bundle-\${host}" "echo \${system} \${builtins.toFile "src-\${host}" host} > $out" { };
      in [ system (bundle "pi1") (bundle "pi2") (bundle "pi3") ]`;
    const built = execFileSync('nix-build', ['--no-out-link', '-E', expression], { env: NIX_TEST_ENV, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim().split('\n');
    [system, ...bundles] = built as [string, ...string[]];
    outLink = path.join(work, 'result');
    execFileSync('ln', ['-s', bundles[2] as string, outLink]);
  }, 120_000);

  it('gives the same closures as one recursive query each, asking Nix for the shared part once', async () => {
    const query = createClosureQuery({ env });
    const expected = await Promise.all(bundles.map((bundle) => queryClosurePathInfos([bundle], { env })));
    writeFileSync(calls, '');

    const first = await query([bundles[0] as string]);
    expect(first.map((info) => info.path).sort()).toEqual(expected[0]?.map((info) => info.path).sort());
    expect(first.find((info) => info.path === system)).toEqual(expected[0]?.find((info) => info.path === system));
    // Nothing known yet: one recursive query, as queryClosurePathInfos does.
    expect(nixCalls().map((line) => line.includes('--recursive'))).toEqual([true]);

    writeFileSync(calls, '');
    const [second, third] = await Promise.all([query([bundles[1] as string]), query([bundles[2] as string])]);
    expect(second.map((info) => info.path).sort()).toEqual(expected[1]?.map((info) => info.path).sort());
    expect(third.map((info) => info.path).sort()).toEqual(expected[2]?.map((info) => info.path).sort());
    // Bundles asked at the same moment are asked together: one non-recursive query for both, and
    // one recursive query for their own new sources (never the system again).
    expect(nixCalls().filter((line) => !line.includes('--recursive'))).toHaveLength(1);
    expect(nixCalls().filter((line) => line.includes('--recursive'))).toHaveLength(1);
    expect(nixCalls().some((line) => line.includes('--recursive') && line.includes(system))).toBe(false);

    writeFileSync(calls, '');
    // The system inside a bundle: known from the bundle's closure, nothing asked.
    expect((await query([system])).map((info) => info.path).sort()).toEqual((await queryClosurePathInfos([system], { env })).map((info) => info.path).sort());
    expect(nixCalls()).toHaveLength(1); // the comparison's own query
  });

  it('follows a symlink to a store path (./result) like the plain query', async () => {
    const query = createClosureQuery({ env });
    expect((await query([outLink])).map((info) => info.path).sort()).toEqual((await queryClosurePathInfos([outLink], { env })).map((info) => info.path).sort());
  });

  it('reports a path that is not in the store, and asks again on the next call', async () => {
    const query = createClosureQuery({ env });
    const missing = `${path.dirname(system)}/00000000000000000000000000000000-not-there`;
    await expect(query([missing])).rejects.toMatchObject({ code: 'PIDEPLOY_STORE_PATH_NOT_VALID' });
    writeFileSync(calls, '');
    await expect(query([missing])).rejects.toMatchObject({ code: 'PIDEPLOY_STORE_PATH_NOT_VALID' });
    expect(nixCalls()).toHaveLength(1);
  });

  it('a path not in the store, asked together with good ones, fails only its own caller', async () => {
    const query = createClosureQuery({ env });
    const missing = `${path.dirname(system)}/00000000000000000000000000000000-not-there`;
    const expected = (await queryClosurePathInfos([bundles[0] as string], { env })).map((info) => info.path).sort();
    writeFileSync(calls, '');
    const [good, bad] = await Promise.allSettled([query([bundles[0] as string]), query([missing])]);
    expect(bad).toMatchObject({ status: 'rejected', reason: { code: 'PIDEPLOY_STORE_PATH_NOT_VALID' } });
    expect(good.status === 'fulfilled' ? good.value.map((info) => info.path).sort() : good.reason).toEqual(expected);
    // The batch (refused), then each caller alone.
    expect(nixCalls()).toHaveLength(3);
  });
});

import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { labDown, labLocalNixEnv, labUp } from '@pideploy/lab';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { buildToplevel } from '../src/build.js';

/**
 * pideploy's overhead on a no-change build: `buildToplevel` (preflight, nix-instantiate,
 * nix-build --log-format internal-json, event parsing, GC roots) vs plain `nix-build` of the same
 * expression, in the same run, median of 7 each. Printed as a ratio.
 */
const workDir = mkdtempSync(path.join(os.tmpdir(), 'pideploy-build-bench-'));
const nixEnv = labLocalNixEnv(path.join(workDir, 'cache'));
const run = (argv: string[]) => execFileSync(argv[0]!, argv.slice(1), { env: { ...process.env, ...nixEnv }, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

beforeAll(async () => {
  const lab = await labUp({ hosts: 1 });
  const url = lab.nixpkgs!.revisions[1]!.url;
  const sha256 = run(['nix-prefetch-url', '--unpack', '--name', 'source', url]).split('\n').pop()!;
  writeFileSync(path.join(workDir, 'pins.nix'), `{ nixpkgs = builtins.fetchTarball { url = "${url}"; sha256 = "${sha256}"; }; }\n`);
  writeFileSync(path.join(workDir, 'configuration.nix'), '{ pkgs, ... }: { networking.hostName = "bench"; environment.systemPackages = [ pkgs.hello pkgs.cowsay ]; }\n');
});
afterAll(async () => {
  if (process.env['PIDEPLOY_KEEP_LAB'] === undefined) await labDown();
});

it('no-change build: pideploy vs plain nix-build', async () => {
  const request = {
    host: 'bench',
    pinsFile: path.join(workDir, 'pins.nix'),
    configuration: path.join(workDir, 'configuration.nix'),
    system: 'aarch64-linux',
    mode: 'emulated' as const,
    stateDir: path.join(workDir, '.pideploy'),
    env: nixEnv,
  };
  const first = await buildToplevel(request);
  const ours: number[] = [];
  const plain: number[] = [];
  for (let round = 0; round < 7; round += 1) {
    let began = performance.now();
    await buildToplevel(request);
    ours.push(performance.now() - began);
    began = performance.now();
    run(['nix-build', '--no-out-link', '-E', first.expression]);
    plain.push(performance.now() - began);
  }
  const ratio = median(ours) / median(plain);
  console.log(`no-change build: pideploy ${median(ours).toFixed(0)} ms, plain nix-build ${median(plain).toFixed(0)} ms, ratio ${ratio.toFixed(2)}x (+${(median(ours) - median(plain)).toFixed(0)} ms)`);
  expect(median(ours) - median(plain)).toBeLessThan(2000);
});

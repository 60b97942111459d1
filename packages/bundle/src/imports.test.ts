import { describe, expect, it } from 'vitest';
import { planBundleForHost, type BundlePlan } from './bundle.js';
import { configurationEntry, nixValue } from './expression.js';
import { scanNixPathLiterals } from './imports.js';
import { ACTIVATE_SCRIPT_TEMPLATE } from './activate-script.js';

describe('scanNixPathLiterals', () => {
  it('finds relative path literals in code and antiquotations, not in comments, strings or URIs', () => {
    const scan = scanNixPathLiterals(
      [
        '{ pkgs, ... }: {',
        '  imports = [ ./hw.nix ../common/base.nix modules/x.nix ]; # ./commented.nix',
        '  /* ./block.nix */',
        '  environment.etc.a.text = "./in-string.nix ${builtins.readFile ./key.pub}";',
        "  environment.etc.b.text = ''./indented ${toString ./dir}'';",
        '  x = https://example.org/a/b;',
        '  y = if builtins.pathExists ./secrets.nix then import ./secrets.nix else { };',
        '  z = import <nixpkgs> { };',
        '  w = 6 / 3;',
        '}',
      ].join('\n'),
    );
    expect(scan.paths.map((item) => [item.literal, item.line, item.optional])).toEqual([
      ['./hw.nix', 2, false],
      ['../common/base.nix', 2, false],
      ['modules/x.nix', 2, false],
      ['./key.pub', 4, false],
      ['./dir', 5, false],
      ['./secrets.nix', 7, true],
      ['./secrets.nix', 7, false],
    ]);
    expect(scan.searchPaths).toEqual([{ name: 'nixpkgs', line: 8 }]);
  });
});

describe('bundle text helpers', () => {
  it('writes JSON values as Nix', () => {
    expect(nixValue({ a: 1, 'b-c': [true, null, 'x${y}'] })).toBe('{ a = 1; b-c = [ true null "x\\${y}" ]; }');
  });
  it('has an activation script that sets the profile, switches, then moves the GC root', () => {
    const order = ['nix-env -p "$profile" --set "$toplevel"', '"$toplevel/bin/switch-to-configuration" "$action"', 'nix-store --add-root /etc/nixos/current-configuration --indirect -r "$bundle"'];
    const positions = order.map((snippet) => ACTIVATE_SCRIPT_TEMPLATE.indexOf(snippet));
    expect(positions.every((position) => position > 0)).toBe(true);
    expect([...positions].sort((a, b) => a - b)).toEqual(positions);
  });
});

describe('configurationEntry', () => {
  const files = (list: string[], configuration = 'configuration.nix') => ({ root: '/p', configuration: `/p/${configuration}`, files: list, searchPaths: [] });

  it('uses configuration.nix as is, wraps another entry file', () => {
    expect(configurationEntry(files(['configuration.nix', 'hw.nix']))).toEqual({ relative: 'configuration.nix', needsWrapper: false });
    expect(configurationEntry(files(['hosts/pi.nix'], 'hosts/pi.nix'))).toEqual({ relative: 'hosts/pi.nix', needsWrapper: true });
  });

  it('refuses configuration files that take a name the bundle keeps for itself, with the file and a hint', () => {
    for (const clash of ['manifest.json', 'nixpkgs', 'toplevel/x.nix', 'bin/activate']) {
      expect(() => configurationEntry(files(['configuration.nix', clash]))).toThrow(expect.objectContaining({ code: 'PIDEPLOY_BUNDLE_NAME_CLASH', message: expect.stringContaining(`/p/${clash} is imported`), hint: expect.stringContaining('rename') }));
    }
    // Near names are fine.
    expect(configurationEntry(files(['configuration.nix', 'bin/setup.nix', 'nixpkgs-overlay.nix'])).needsWrapper).toBe(false);
    expect(() => configurationEntry(files(['hosts/pi.nix', 'configuration.nix'], 'hosts/pi.nix'))).toThrow(expect.objectContaining({ code: 'PIDEPLOY_BUNDLE_NAME_CLASH' }));
  });
});

describe('planBundleForHost', () => {
  const plan: BundlePlan = {
    request: { host: 'pi1', system: 'aarch64-linux', buildMode: 'emulated', pinsFile: '/p/pins.nix', configuration: '/p/configuration.nix' },
    files: { root: '/p', configuration: '/p/configuration.nix', files: ['configuration.nix', 'hw.nix'], searchPaths: [] },
    manifest: {
      version: 1,
      host: 'pi1',
      system: 'aarch64-linux',
      buildMode: 'emulated',
      pin: { name: 'nixpkgs', url: null, sha256: null, rev: null },
      pideployVersion: '0.0.0',
      configuration: { file: 'configuration.nix', gitRev: 'abc', dirty: false },
      files: ['configuration.nix', 'hw.nix'],
    },
  };

  it('gives another host the same files and git state under its own name, and leaves the original alone', () => {
    const other = planBundleForHost(plan, 'pi2');
    expect(other.request.host).toBe('pi2');
    expect(other.manifest).toEqual({ ...plan.manifest, host: 'pi2' });
    expect(other.files).toBe(plan.files);
    expect(plan.manifest.host).toBe('pi1');
    expect(planBundleForHost(plan, 'pi1')).toBe(plan);
  });
});

import { describe, expect, it } from 'vitest';
import { buildModeArguments, parseRemoteBuilder, renderBuildersSpec } from './builders.js';
import { binfmtMatchesSystem, checkBinfmt, checkExtraPlatforms, parseBinfmtEntry, parseNixShowConfig, parseNixVersion } from './doctor.js';
import { localNixSystem, renderBuildExpression } from './expression.js';
import { createBuildLogTracker, derivationName } from './internal-json.js';
import { nixPath, nixString } from '@pideploy/nix';
import { translateNixFailure } from './nix-errors.js';
import { derivationOutPath } from './build.js';
import type { DeployEvent } from '@pideploy/core';

describe('renderBuildExpression', () => {
  it('imports pins.nix and evaluates nixos with the system, without <nixpkgs>', () => {
    const text = renderBuildExpression({ pinsFile: '/p/pins.nix', configuration: '/p/configuration.nix', system: 'aarch64-linux', mode: 'emulated' });
    expect(text).toContain('pins = import /p/pins.nix;');
    expect(text).toContain('(import "${nixpkgs}/nixos" {');
    expect(text).toContain('configuration = /p/configuration.nix;');
    expect(text).toContain('system = "aarch64-linux";');
    expect(text.replace(/^#.*$/gmu, '')).not.toContain('<');
  });
  it('adds the platforms module for cross builds', () => {
    const text = renderBuildExpression({ pinsFile: '/p/pins.nix', configuration: '/p/c.nix', system: 'aarch64-linux', mode: 'cross', buildPlatform: 'x86_64-linux' });
    expect(text).toContain('nixpkgs.buildPlatform = lib.mkDefault "x86_64-linux";');
    expect(text).toContain('nixpkgs.hostPlatform = lib.mkDefault "aarch64-linux";');
    expect(text).toContain('system = null;');
  });
  it('quotes odd paths and pin names, and refuses relative paths', () => {
    expect(nixPath('/a b/c.nix')).toBe('(/. + "/a b/c.nix")');
    expect(nixString('a"${b}\\')).toBe('"a\\"\\${b}\\\\"');
    const text = renderBuildExpression({ pinsFile: '/p/pins.nix', pinName: 'my-pin.2', configuration: '/p/c.nix', system: 'aarch64-linux', mode: 'emulated' });
    expect(text).toContain('pins."my-pin.2"');
    expect(() => renderBuildExpression({ pinsFile: 'pins.nix', configuration: '/c.nix', system: 'aarch64-linux', mode: 'emulated' })).toThrow(TypeError);
    expect(localNixSystem('x64', 'linux')).toBe('x86_64-linux');
  });
});

describe('internal-json progress (lines recorded from nix-build 2.8)', () => {
  const recorded = [
    '@nix {"action":"msg","level":3,"msg":"these 2 derivations will be built:"}',
    '@nix {"action":"msg","level":3,"msg":"  /nix/store/dky5apafx462jdrj2x18lwn5jnv7qvvq-broken.drv"}',
    '@nix {"action":"msg","level":3,"msg":"  /nix/store/p6yg1harrlp7xad79dm9xpli0bnbalsf-nixos-system-nixos-24.11-lab.drv"}',
    '@nix {"action":"start","id":1,"level":0,"text":"","type":104}',
    '@nix {"action":"result","fields":[0,2,0,0],"id":1,"type":105}',
    '@nix {"action":"start","fields":["/nix/store/dky5apafx462jdrj2x18lwn5jnv7qvvq-broken.drv","ssh://root@pi1",1,1],"id":7,"level":3,"text":"building","type":105}',
    '@nix {"action":"result","fields":["line1"],"id":7,"type":101}',
    '@nix {"action":"result","fields":["line2"],"id":7,"type":101}',
    '@nix {"action":"result","fields":[0,2,0,1],"id":1,"type":105}',
    '@nix {"action":"msg","column":null,"file":null,"level":0,"line":null,"msg":"\\u001b[31;1merror:\\u001b[0m builder for \'\\u001b[35;1m/nix/store/dky5apafx462jdrj2x18lwn5jnv7qvvq-broken.drv\\u001b[0m\' failed with exit code 3"}',
    '@nix {"action":"stop","id":7}',
  ];
  it('emits build-start, progress with the current derivation, and keeps the failing log', () => {
    const events: DeployEvent[] = [];
    const tracker = createBuildLogTracker({ host: 'pi1', emit: (event) => events.push(event) });
    for (const line of recorded) tracker.handleLine(line);
    expect(events[0]).toEqual({ type: 'build-start', host: 'pi1', derivationsToBuild: 2, pathsToFetch: 0 });
    expect(events).toContainEqual({ type: 'build-progress', host: 'pi1', built: 0, total: 2, current: 'broken' });
    expect(events).toContainEqual({ type: 'log', level: 'info', host: 'pi1', message: 'building broken on ssh://root@pi1' });
    const summary = tracker.summary();
    expect(summary.failedDerivation).toBe('/nix/store/dky5apafx462jdrj2x18lwn5jnv7qvvq-broken.drv');
    expect(summary.logTail).toEqual(['line1', 'line2']);
    expect(summary.builds).toEqual([{ drvPath: '/nix/store/dky5apafx462jdrj2x18lwn5jnv7qvvq-broken.drv', machine: 'ssh://root@pi1' }]);
    expect(derivationName('/nix/store/p6yg1harrlp7xad79dm9xpli0bnbalsf-nixos-system-nixos-24.11-lab.drv')).toBe('nixos-system-nixos-24.11-lab');
  });
});

describe('nix error translation (messages recorded from nix-instantiate 2.8)', () => {
  const base = { command: ['nix-instantiate'], exitCode: 1, system: 'aarch64-linux', doing: 'evaluating pi1' };
  it('explains <nixpkgs>, syntax errors with file:line, and missing platforms', () => {
    const unpinned = translateNixFailure({ ...base, stderr: "error: file 'nixpkgs' was not found in the Nix search path (add it using $NIX_PATH or -I)\n\n       at /tmp/c2.nix:1:31:\n" });
    expect(unpinned.code).toBe('PIDEPLOY_BUILD_UNPINNED');
    expect(unpinned.message).toContain('/tmp/c2.nix:1:31');
    const syntax = translateNixFailure({ ...base, stderr: "error: syntax error, unexpected ';'\n\n       at /tmp/c3.nix:3:7:\n" });
    expect(syntax.message).toBe("evaluating pi1 failed: syntax error, unexpected ';' (/tmp/c3.nix:3:7)");
    const platform = translateNixFailure({ ...base, stderr: "error: a 'aarch64-linux' with features {} is required to build '/nix/store/x-a.drv', but I am a 'x86_64-linux' with features {benchmark}" });
    expect(platform.code).toBe('PIDEPLOY_BUILD_NO_EMULATION');
    expect(platform.hint).toContain('pideploy doctor');
  });
});

describe('doctor parsers', () => {
  const debianEntry = 'enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: POF\noffset 0\nmagic 7f454c460201010000000000000000000200b700\nmask ffffffffffffff00fffffffffffffffffeffffff\n';
  it('recognises the qemu aarch64 handler and its F flag', () => {
    const entry = parseBinfmtEntry('qemu-aarch64', debianEntry);
    expect(entry).toMatchObject({ enabled: true, flags: 'POF' });
    expect(binfmtMatchesSystem(entry, 'aarch64-linux')).toBe(true);
    expect(binfmtMatchesSystem(entry, 'riscv64-linux')).toBe(false);
    expect(checkBinfmt([entry], 'aarch64-linux', true).status).toBe('ok');
    expect(checkBinfmt([{ ...entry, flags: 'PO' }], 'aarch64-linux', true).status).toBe('warn');
    const missing = checkBinfmt([], 'aarch64-linux', true);
    expect(missing.status).toBe('fail');
    expect(missing.fix?.nixos).toContain('boot.binfmt.emulatedSystems = [ "aarch64-linux" ];');
    expect(missing.fix?.debian).toContain('qemu-user-static');
  });
  it('reads nix versions and show-config', () => {
    expect(parseNixVersion('nix-build (Nix) 2.8.0\n')).toBe('2.8.0');
    const settings = parseNixShowConfig(JSON.stringify({ system: { value: 'x86_64-linux' }, 'extra-platforms': { value: ['aarch64-linux'] }, builders: { value: '' }, 'max-jobs': { value: 1 } }));
    expect(checkExtraPlatforms(settings, 'aarch64-linux', true).status).toBe('ok');
    expect(checkExtraPlatforms({ ...settings, extraPlatforms: [] }, 'aarch64-linux', true).fix?.debian).toContain('extra-platforms = aarch64-linux');
  });
  it('renders and parses remote builders; builders mode forbids local builds', () => {
    const builder = parseRemoteBuilder('ssh://root@pi1 aarch64-linux /k 2');
    expect(renderBuildersSpec([builder])).toBe('ssh://root@pi1 aarch64-linux /k 2 1 -');
    expect(buildModeArguments('builders', [builder])).toEqual(expect.arrayContaining(['--max-jobs', '0', 'builders-use-substitutes']));
    expect(buildModeArguments('emulated')).toEqual([]);
  });
});

describe('derivationOutPath', () => {
  it('reads the out path of a derivation file (written by Nix 2.8)', () => {
    const drv =
      'Derive([("out","/nix/store/kqws6czlbyvzq4jbzc36wwwvy6dj4mcb-dr-b","","")],[("/nix/store/c8kq6z54ydapmlwdf6wwlgf60k7qvvi0-dr-a-1796672793.drv",["out"])],[],"x86_64-linux","/bin/sh",["-c","cat /nix/store/375h2b9jz5ydpa2581rz6rsb6kii32mh-dr-a-1796672793 > $out"],[("builder","/bin/sh"),("name","dr-b"),("out","/nix/store/kqws6czlbyvzq4jbzc36wwwvy6dj4mcb-dr-b"),("system","x86_64-linux")])';
    expect(derivationOutPath(drv)).toBe('/nix/store/kqws6czlbyvzq4jbzc36wwwvy6dj4mcb-dr-b');
    expect(derivationOutPath('not a derivation')).toBeUndefined();
  });
});

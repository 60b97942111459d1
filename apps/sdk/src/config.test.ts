import { mkdtemp, mkdir, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { findConfigFile, loadConfig, parseConfig } from './config.js';
import { selectHosts } from './select.js';

const valid = {
  defaults: { system: 'aarch64-linux', buildMode: 'emulated' },
  hosts: {
    kitchen: { target: 'deploy@kitchen.local', configuration: './hosts/kitchen.nix', tags: ['home', 'audio'] },
    garage: { target: 'pi@10.0.0.7:2222', configuration: './hosts/garage.nix', sudo: 'nopasswd', buildMode: 'cross', tags: ['home'] },
    lab: { target: 'pi1', configuration: 'lab.nix', system: 'x86_64-linux', sudo: 'root' },
  },
};

function errorOf(run: () => unknown): { message: string; hint?: string; code: string } {
  try {
    run();
  } catch (error) {
    return error as { message: string; hint?: string; code: string };
  }
  throw new Error('expected an error');
}

describe('parseConfig', () => {
  it('applies defaults and resolves paths relative to the file', () => {
    const config = parseConfig(JSON.stringify(valid), '/srv/fleet/pideploy.json');
    expect(config.pinsFile).toBe('/srv/fleet/pins.json');
    expect(config.hosts.map((host) => [host.name, host.system, host.buildMode, host.sudo, host.configuration])).toEqual([
      ['kitchen', 'aarch64-linux', 'emulated', 'password', '/srv/fleet/hosts/kitchen.nix'],
      ['garage', 'aarch64-linux', 'cross', 'nopasswd', '/srv/fleet/hosts/garage.nix'],
      ['lab', 'x86_64-linux', 'emulated', 'root', '/srv/fleet/lab.nix'],
    ]);
  });

  it('names the file, the JSON path and a fix for a typo in a key', () => {
    const text = JSON.stringify({ hosts: { pi: { target: 'pi', configuraton: './c.nix' } } });
    const error = errorOf(() => parseConfig(text, '/x/pideploy.json'));
    expect(error.code).toBe('PIDEPLOY_CONFIG_INVALID');
    expect(error.message).toBe('/x/pideploy.json: /hosts/pi: unknown key "configuraton"');
    expect(error.hint).toBe('did you mean "configuration"?');
  });

  it('reports bad enum values with the allowed ones', () => {
    const text = JSON.stringify({ hosts: { pi: { target: 'pi', configuration: 'c.nix', sudo: 'always' } } });
    expect(errorOf(() => parseConfig(text, '/x/pideploy.json')).message).toBe(
      '/x/pideploy.json: /hosts/pi/sudo: must be one of "password", "nopasswd", "root"',
    );
  });

  it("gives each host its own healthCheck, else the defaults' one", () => {
    const text = JSON.stringify({
      defaults: { healthCheck: { command: 'systemctl is-active --quiet nginx' } },
      hosts: { a: { target: 'a', configuration: 'c.nix' }, b: { target: 'b', configuration: 'c.nix', healthCheck: { url: 'http://{hostname}:8080/health', timeoutSeconds: 5 } } },
    });
    expect(parseConfig(text, '/x/pideploy.json').hosts.map((host) => [host.name, host.healthCheck])).toEqual([
      ['a', { command: 'systemctl is-active --quiet nginx' }],
      ['b', { url: 'http://{hostname}:8080/health', timeoutSeconds: 5 }],
    ]);
    expect(parseConfig(JSON.stringify(valid), '/x/pideploy.json').hosts.every((host) => host.healthCheck === undefined)).toBe(true);
  });

  it("gives each host the defaults' keys and its own (its own replace those of the same name), defaults filled in, files made absolute", () => {
    const text = JSON.stringify({
      defaults: { keys: { 'wifi.psk': { file: 'secrets/wifi.psk' }, token: { command: ['pass', 'show', 'pi/token'], permissions: '0640', group: 'keys' } } },
      hosts: {
        a: { target: 'a', configuration: 'c.nix' },
        b: { target: 'b', configuration: 'c.nix', keys: { token: { file: '/etc/pi-b/token', destDir: '/var/lib/secrets', user: 'svc', uploadAt: 'post-activation' } } },
      },
    });
    const hosts = parseConfig(text, '/srv/fleet/pideploy.json').hosts;
    expect(hosts[0]?.keys).toEqual([
      { name: 'wifi.psk', source: { file: '/srv/fleet/secrets/wifi.psk' }, destDir: '/run/keys', user: 'root', group: 'root', permissions: '0600', uploadAt: 'pre-activation' },
      { name: 'token', source: { command: ['pass', 'show', 'pi/token'] }, destDir: '/run/keys', user: 'root', group: 'keys', permissions: '0640', uploadAt: 'pre-activation' },
    ]);
    expect(hosts[1]?.keys).toEqual([
      { name: 'wifi.psk', source: { file: '/srv/fleet/secrets/wifi.psk' }, destDir: '/run/keys', user: 'root', group: 'root', permissions: '0600', uploadAt: 'pre-activation' },
      { name: 'token', source: { file: '/etc/pi-b/token' }, destDir: '/var/lib/secrets', user: 'svc', group: 'root', permissions: '0600', uploadAt: 'post-activation' },
    ]);
    expect(parseConfig(JSON.stringify(valid), '/x/pideploy.json').hosts.every((host) => host.keys.length === 0)).toBe(true);
  });

  it('refuses a key without a source, with two, with a bad mode, a bad name or a typo, naming the JSON path', () => {
    const withKeys = (keys: unknown) => JSON.stringify({ hosts: { pi: { target: 'pi', configuration: 'c.nix', keys } } });
    const neither = errorOf(() => parseConfig(withKeys({ k: { destDir: '/srv' } }), '/x/pideploy.json'));
    expect([neither.code, neither.message]).toEqual(['PIDEPLOY_CONFIG_INVALID', '/x/pideploy.json: /hosts/pi/keys/k: needs a "file" or a "command"']);
    expect(neither.hint).toContain('give exactly one');
    const both = errorOf(() => parseConfig(withKeys({ k: { file: 'a', command: ['b'] } }), '/x/pideploy.json'));
    expect(both.message).toBe('/x/pideploy.json: /hosts/pi/keys/k: has both "file" and "command"');
    const mode = errorOf(() => parseConfig(withKeys({ k: { file: 'a', permissions: '0999' } }), '/x/pideploy.json'));
    expect(mode.message).toBe('/x/pideploy.json: /hosts/pi/keys/k/permissions: has characters that are not allowed');
    const name = errorOf(() => parseConfig(withKeys({ '../passwd': { file: 'a' } }), '/x/pideploy.json'));
    expect(name.code).toBe('PIDEPLOY_CONFIG_INVALID');
    expect(name.message).toContain('/hosts/pi/keys');
    const typo = errorOf(() => parseConfig(withKeys({ k: { file: 'a', destdir: '/srv' } }), '/x/pideploy.json'));
    expect([typo.message, typo.hint]).toEqual(['/x/pideploy.json: /hosts/pi/keys/k: unknown key "destdir"', 'did you mean "destDir"?']);
    const relative = errorOf(() => parseConfig(withKeys({ k: { file: 'a', destDir: '/run/../etc' } }), '/x/pideploy.json'));
    expect(relative.message).toBe('/x/pideploy.json: /hosts/pi/keys: key k: destDir "/run/../etc" has a . or .. segment');
  });

  it('names the bad healthCheck field and suggests the known ones', () => {
    const typo = JSON.stringify({ hosts: { pi: { target: 'pi', configuration: 'c.nix', healthCheck: { comand: 'true' } } } });
    const error = errorOf(() => parseConfig(typo, '/x/pideploy.json'));
    expect(error.message).toBe('/x/pideploy.json: /hosts/pi/healthCheck: unknown key "comand"');
    expect(error.hint).toBe('did you mean "command"?');
    const notHttp = JSON.stringify({ defaults: { healthCheck: { url: 'pi1:8080/health' } }, hosts: { pi: { target: 'pi', configuration: 'c.nix' } } });
    expect(errorOf(() => parseConfig(notHttp, '/x/pideploy.json'))).toMatchObject({
      message: '/x/pideploy.json: /defaults/healthCheck/url: is not an http:// or https:// URL',
      hint: 'e.g. "http://{hostname}:8080/health" ({hostname}: the address the host was reached at over SSH)',
    });
    const empty = JSON.stringify({ hosts: { pi: { target: 'pi', configuration: 'c.nix', healthCheck: {} } } });
    expect(errorOf(() => parseConfig(empty, '/x/pideploy.json')).hint).toBe('give it a "command", a "url" or both, or remove it');
  });

  it("takes a host's specialisation as it is, and refuses one that is no file name", () => {
    const text = (specialisation: string) => JSON.stringify({ hosts: { pi: { target: 'pi', configuration: 'c.nix', specialisation }, other: { target: 'pi2', configuration: 'c.nix' } } });
    expect(parseConfig(text('kiosk mode'), '/x/pideploy.json').hosts.map((host) => host.specialisation)).toEqual(['kiosk mode', undefined]);
    for (const bad of ['', '..', 'a/b']) {
      const error = errorOf(() => parseConfig(text(bad), '/x/pideploy.json'));
      expect(error.code).toBe('PIDEPLOY_CONFIG_INVALID');
      expect(error.message).toBe('/x/pideploy.json: /hosts/pi/specialisation: is not a specialisation name');
      expect(error.hint).toContain("one of the configuration's specialisation.<name>");
    }
  });

  it("gives each host its nixpkgs pin (its own, else the defaults', else nixpkgs), and refuses one that is no pin name", () => {
    const text = (nixpkgs: unknown, defaults: unknown = {}) =>
      JSON.stringify({ defaults, hosts: { canary: { target: 'pi', configuration: 'c.nix', nixpkgs }, other: { target: 'pi2', configuration: 'c.nix' } } });
    expect(parseConfig(text('nixpkgs-next'), '/x/pideploy.json').hosts.map((host) => host.nixpkgs)).toEqual(['nixpkgs-next', 'nixpkgs']);
    expect(parseConfig(text('nixpkgs-next', { nixpkgs: 'nixpkgs-old' }), '/x/pideploy.json').hosts.map((host) => host.nixpkgs)).toEqual(['nixpkgs-next', 'nixpkgs-old']);
    const error = errorOf(() => parseConfig(text('nixpkgs 24.11'), '/x/pideploy.json'));
    expect([error.code, error.message]).toEqual(['PIDEPLOY_CONFIG_INVALID', '/x/pideploy.json: /hosts/canary/nixpkgs: is not a pin name']);
    expect(error.hint).toContain('name a pin of pins.json');
  });

  it('refuses SSH targets with shell characters', () => {
    const text = JSON.stringify({ hosts: { pi: { target: 'pi; rm -rf /', configuration: 'c.nix' } } });
    const error = errorOf(() => parseConfig(text, '/x/pideploy.json'));
    expect(error.message).toBe('/x/pideploy.json: /hosts/pi/target: is not a valid SSH target');
  });

  it('resolves the fleet cache section (off without one, on with one unless enable is false)', () => {
    const without = parseConfig(JSON.stringify(valid), '/srv/fleet/pideploy.json');
    expect(without.cacheEnabled).toBe(false);
    expect(without.cache.directory).toBe('/srv/fleet/.pideploy/cache');
    const withCache = parseConfig(JSON.stringify({ ...valid, cache: { directory: 'cache', secretKeyFile: 'keys/k.secret', url: 'http://cache.lan:8080', compression: 'xz' } }), '/srv/fleet/pideploy.json');
    expect(withCache.cacheEnabled).toBe(true);
    expect(withCache.cache).toEqual({ directory: '/srv/fleet/cache', keyName: undefined, secretKeyFile: '/srv/fleet/keys/k.secret', url: 'http://cache.lan:8080', compression: 'xz' });
    expect(parseConfig(JSON.stringify({ ...valid, cache: { enable: false } }), '/srv/fleet/pideploy.json').cacheEnabled).toBe(false);
    const typo = errorOf(() => parseConfig(JSON.stringify({ ...valid, cache: { compresion: 'xz' } }), '/srv/fleet/pideploy.json'));
    expect(typo.message).toBe('/srv/fleet/pideploy.json: /cache: unknown key "compresion"');
    expect(typo.hint).toBe('did you mean "compression"?');
    expect(errorOf(() => parseConfig(JSON.stringify({ ...valid, cache: { url: 'ftp://x' } }), '/p/pideploy.json')).code).toBe('PIDEPLOY_CONFIG_INVALID');
  });

  it("resolves the deploy section (a single canary made a list) and refuses a canary that selects no host", () => {
    expect(parseConfig(JSON.stringify(valid), '/f/pideploy.json').deploy).toEqual({ parallel: undefined, canary: undefined, maxFailures: undefined, activationTimeout: undefined });
    const withDeploy = (deploy: unknown) => JSON.stringify({ ...valid, deploy });
    expect(parseConfig(withDeploy({ parallel: 10, canary: '@audio', maxFailures: 3, activationTimeout: 0 }), '/f/pideploy.json').deploy).toEqual({ parallel: 10, canary: ['@audio'], maxFailures: 3, activationTimeout: 0 });
    expect(errorOf(() => parseConfig(withDeploy({ activationTimeout: -1 }), '/f/pideploy.json')).message).toMatch(/\/deploy\/activationTimeout/u);
    expect(errorOf(() => parseConfig(withDeploy({ activationTimeout: '5m' }), '/f/pideploy.json')).message).toMatch(/\/deploy\/activationTimeout/u);
    expect(parseConfig(withDeploy({ canary: 2 }), '/f/pideploy.json').deploy.canary).toBe(2);
    expect(parseConfig(withDeploy({ canary: ['kitchen', 'gar*'] }), '/f/pideploy.json').deploy.canary).toEqual(['kitchen', 'gar*']);
    expect(errorOf(() => parseConfig(withDeploy({ canary: '@audi' }), '/f/pideploy.json'))).toMatchObject({
      code: 'PIDEPLOY_CONFIG_INVALID',
      message: '/f/pideploy.json: /deploy/canary: no host has the tag "audi"',
      hint: 'did you mean "@audio"?',
    });
    expect(errorOf(() => parseConfig(withDeploy({ canary: ['kitchen', 'garge'] }), '/f/pideploy.json')).message).toBe('/f/pideploy.json: /deploy/canary/1: no host named "garge"');
    expect(errorOf(() => parseConfig(withDeploy({ parallel: 0 }), '/f/pideploy.json')).message).toMatch(/\/deploy\/parallel/u);
    expect(errorOf(() => parseConfig(withDeploy({ canary: 0 }), '/f/pideploy.json')).message).toMatch(/\/deploy\/canary/u);
    expect(errorOf(() => parseConfig(withDeploy({ maxFailure: 2 }), '/f/pideploy.json')).hint).toMatch(/maxFailures/u);
  });

  it('says where invalid JSON breaks', () => {
    const error = errorOf(() => parseConfig('{\n  "hosts": {,\n}', '/x/pideploy.json'));
    expect(error.message).toMatch(/^\/x\/pideploy\.json at line 2, column \d+: not valid JSON/u);
    expect(error.hint).toContain('no comments, no trailing commas');
  });

  it('requires hosts, with an example in the hint', () => {
    const error = errorOf(() => parseConfig('{}', '/x/pideploy.json'));
    expect(error.message).toBe('/x/pideploy.json: (top level): missing "hosts"');
    expect(error.hint).toContain('"target"');
  });
});

describe('finding pideploy.json', () => {
  it('walks up from a subdirectory', async () => {
    const root = await mkdtemp(path.join(os.tmpdir(), 'pideploy-sdk-'));
    await mkdir(path.join(root, 'hosts', 'deep'), { recursive: true });
    await writeFile(path.join(root, 'pideploy.json'), JSON.stringify(valid));
    const config = await loadConfig({ cwd: path.join(root, 'hosts', 'deep') });
    expect(config.file).toBe(path.join(root, 'pideploy.json'));
    expect(config.hosts).toHaveLength(3);
  });

  it('reports a near-miss file name instead of "not found"', async () => {
    const root = await mkdtemp(path.join(os.tmpdir(), 'pideploy-sdk-'));
    await writeFile(path.join(root, 'pideploy.yaml'), 'hosts: {}\n');
    const error = errorOf(() => findConfigFile(root));
    expect(error.message).toBe(`found ${path.join(root, 'pideploy.yaml')}, but pideploy reads only pideploy.json`);
  });

  it('names --config files that do not exist', async () => {
    await expect(loadConfig({ cwd: '/', configFile: '/nonexistent/pideploy.json' })).rejects.toThrow(
      'cannot read /nonexistent/pideploy.json: ENOENT',
    );
  });
});

describe('selectHosts', () => {
  const config = parseConfig(JSON.stringify(valid), '/srv/fleet/pideploy.json');
  const names = (selectors: string[]) => selectHosts(config, selectors).map((host) => host.name);

  it('selects by name, glob and tag, in file order, without duplicates', () => {
    expect(names([])).toEqual(['kitchen', 'garage', 'lab']);
    expect(names(['lab', 'kitchen'])).toEqual(['kitchen', 'lab']);
    expect(names(['@home'])).toEqual(['kitchen', 'garage']);
    expect(names(['*a*', '@audio'])).toEqual(['kitchen', 'garage', 'lab']);
    expect(names(['g?rage'])).toEqual(['garage']);
  });

  it('fails on a selector that matches nothing, suggesting the near one', () => {
    expect(errorOf(() => names(['kitchn'])).hint).toBe('did you mean "kitchen"?');
    expect(errorOf(() => names(['@hom'])).message).toBe('no host has the tag "hom" in /srv/fleet/pideploy.json');
  });
});

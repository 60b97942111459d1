import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import {
  LAB_MAX_HOSTS,
  labHostIndex,
  parseHostCount,
  planLabHost,
  renderEnvFile,
  resolveLabInstance,
  renderKnownHosts,
  renderProvisionScript,
  renderRemoteNixConf,
  renderSshConfig,
  renderSudoers,
} from './host-plan.js';

describe('planLabHost', () => {
  it('gives every host its own namespace, veth names that fit IFNAMSIZ, and a /30 of 10.250.0.0/16', () => {
    const plans = Array.from({ length: LAB_MAX_HOSTS }, (_, index) => planLabHost(index + 1));
    for (const plan of plans) {
      expect(plan.hostInterface.length).toBeLessThanOrEqual(15);
      expect(plan.remoteInterface.length).toBeLessThanOrEqual(15);
      expect(plan.address).toMatch(/^10\.250\.\d+\.2$/u);
    }
    expect(new Set(plans.map((plan) => plan.address)).size).toBe(LAB_MAX_HOSTS);
    expect(new Set(plans.map((plan) => plan.netns)).size).toBe(LAB_MAX_HOSTS);
    expect(planLabHost(7)).toMatchObject({ name: 'pi7', hostAddress: '10.250.7.1', address: '10.250.7.2' });
  });

  it('refuses indexes outside 1…50', () => {
    expect(() => planLabHost(0)).toThrow(/out of range/u);
    expect(() => planLabHost(LAB_MAX_HOSTS + 1)).toThrow(/out of range/u);
  });

  it('maps names back to indexes and rejects look-alikes', () => {
    expect(labHostIndex('pi12')).toBe(12);
    for (const name of ['pi0', 'pi01', 'pi', 'Pi1', 'pi1 ', 'pi51', '../pi1']) expect(labHostIndex(name)).toBeUndefined();
  });

  it('parses --hosts strictly', () => {
    expect(parseHostCount(undefined)).toBe(1);
    expect(parseHostCount('20')).toBe(20);
    for (const bad of ['0', '51', '-1', '1.5', 'two', '', '3x']) expect(() => parseHostCount(bad)).toThrow(/--hosts/u);
  });
});

describe('rendered lab files', () => {
  const plans = [planLabHost(1), planLabHost(2)];

  it('trusts the deploy user through wheel only when asked', () => {
    expect(renderRemoteNixConf({ trusted: true, sudo: 'password' })).toContain('trusted-users = root @wheel\n');
    expect(renderRemoteNixConf({ trusted: false, sudo: 'password' })).toContain('trusted-users = root\n');
    expect(renderRemoteNixConf({ trusted: true, sudo: 'password' })).toContain('substituters =\n');
  });

  it('writes sudoers that visudo accepts, with and without NOPASSWD', () => {
    for (const sudo of ['password', 'nopasswd'] as const) {
      const text = renderSudoers({ trusted: true, sudo });
      expect(text.includes('NOPASSWD')).toBe(sudo === 'nopasswd');
      // Real visudo checks the syntax (reads the file from stdin).
      execFileSync('visudo', ['-c', '-q', '-f', '-'], { input: text });
    }
  });

  it('hooks sudo\'s password checks into PAM unless told not to (benchmarks), in a script sh accepts', () => {
    const paths = { root: '/lab/pi1', etc: '/lab/pi1/etc', nix: '/lab/pi1/nix', home: '/lab/pi1/home', rootHome: '/lab/pi1/root', run: '/lab/pi1/run', clientPublicKey: '/lab/ssh/id.pub' };
    const recording = renderProvisionScript(plans[0]!, paths, { trusted: true, sudo: 'password' });
    const silent = renderProvisionScript(plans[0]!, paths, { trusted: true, sudo: 'password', recordSudoPasswordChecks: false });
    expect(recording).toContain("1a auth optional pam_exec.so quiet seteuid /etc/pideploy-lab/sudo-password-check'");
    expect(silent).not.toContain('pam_exec');
    expect(silent).toContain("sed -i '/pideploy-lab/d' /etc/pam.d/sudo\nrm -f /etc/pideploy-lab/sudo-password-check\n");
    for (const script of [recording, silent]) execFileSync('sh', ['-n', '-c', script]);
  });

  it('pins host keys under alias and address, and points every host at the lab key', () => {
    const knownHosts = renderKnownHosts([{ plan: plans[0]!, publicKey: 'ssh-ed25519 AAAAC3Nza root@pi1\n' }]);
    expect(knownHosts).toBe('pi1,10.250.1.2 ssh-ed25519 AAAAC3Nza\n');
    const config = renderSshConfig(plans, { identityFile: '/lab/ssh/id_ed25519', knownHosts: '/lab/ssh/known_hosts' });
    expect(config).toContain('Host pi2\n  HostName 10.250.2.2\n');
    expect(config).toContain('StrictHostKeyChecking yes');
    expect(config).toContain('GlobalKnownHostsFile /dev/null');
  });

  it('writes an env file that a real shell reads back unchanged', () => {
    const variables = { NIX_CONFIG: 'substituters =\nsandbox = false\n', NIX_SSHOPTS: "-F /lab dir/it's" };
    const script = `${renderEnvFile(variables)}printf '%s\\0%s' "$NIX_CONFIG" "$NIX_SSHOPTS"`;
    const output = execFileSync('/bin/sh', ['-c', script], { encoding: 'utf8' });
    expect(output.split('\0')).toEqual([variables.NIX_CONFIG, variables.NIX_SSHOPTS]);
  });
});

describe('lab instances', () => {
  it('give each instance its own namespaces and subnet, so labs can run side by side', () => {
    const first = planLabHost(3, 0);
    const second = planLabHost(3, 1);
    expect(first).toMatchObject({ netns: 'pideploy-lab-pi3', address: '10.250.3.2' });
    expect(second).toMatchObject({ netns: 'pideploy-lab1-pi3', address: '10.249.3.2', hostInterface: 'pdlab1-pi3-h' });
    expect(planLabHost(LAB_MAX_HOSTS, 9).remoteInterface.length).toBeLessThanOrEqual(15);
  });

  it('reads PIDEPLOY_LAB_INSTANCE strictly', () => {
    expect(resolveLabInstance(undefined, {})).toBe(0);
    expect(resolveLabInstance(undefined, { PIDEPLOY_LAB_INSTANCE: '2' })).toBe(2);
    expect(resolveLabInstance(4, { PIDEPLOY_LAB_INSTANCE: '2' })).toBe(4);
    for (const bad of ['10', '-1', 'x', '1.5']) {
      expect(() => resolveLabInstance(undefined, { PIDEPLOY_LAB_INSTANCE: bad })).toThrow(/PIDEPLOY_LAB_INSTANCE/u);
    }
  });
});

import { describe, expect, it } from 'vitest';
import type { ResolvedHost } from './config.js';
import { healthCheckSettingsFor, healthChecksFor } from './health-check.js';

const host = (healthCheck: ResolvedHost['healthCheck']): ResolvedHost => ({
  name: 'pi1',
  target: 'deploy@pi1',
  configuration: '/srv/fleet/configuration.nix',
  system: 'aarch64-linux',
  buildMode: 'emulated',
  builders: undefined,
  sudo: 'password',
  tags: [],
  sshConfig: undefined,
  healthCheck,
});

describe('healthCheckSettingsFor', () => {
  const configured = host({ command: 'systemctl is-active --quiet nginx', timeoutSeconds: 5 });

  it("keeps pideploy.json's check, and replaces only the fields an override names", () => {
    expect(healthCheckSettingsFor(configured, undefined)).toEqual({ command: 'systemctl is-active --quiet nginx', timeoutSeconds: 5 });
    expect(healthCheckSettingsFor(configured, { url: 'http://{hostname}/health', command: undefined })).toEqual({
      command: 'systemctl is-active --quiet nginx',
      url: 'http://{hostname}/health',
      timeoutSeconds: 5,
    });
    expect(healthCheckSettingsFor(configured, { command: 'true' })).toEqual({ command: 'true', timeoutSeconds: 5 });
    expect(healthCheckSettingsFor(host(undefined), { url: 'http://a/' })).toEqual({ url: 'http://a/' });
  });

  it('has none when turned off, or when only a timeout is left', () => {
    expect(healthCheckSettingsFor(configured, false)).toBeUndefined();
    expect(healthCheckSettingsFor(host(undefined), undefined)).toBeUndefined();
    expect(healthCheckSettingsFor(host(undefined), { timeoutSeconds: 3 })).toBeUndefined();
  });
});

describe('healthChecksFor', () => {
  it('runs the command with sh -c and fills in {host} and {hostname}', () => {
    expect(healthChecksFor({ command: 'curl -fs localhost:80', url: 'http://{hostname}:8080/health?from={host}', timeoutSeconds: 2.5 }, { host: 'pi1', hostname: '10.0.0.7' })).toEqual({
      command: ['sh', '-c', 'curl -fs localhost:80'],
      url: 'http://10.0.0.7:8080/health?from=pi1',
      timeoutMs: 2500,
    });
  });

  it('puts an IPv6 address in brackets', () => {
    expect(healthChecksFor({ url: 'https://{hostname}/' }, { host: 'pi1', hostname: 'fd00::7' })?.url).toBe('https://[fd00::7]/');
  });

  it('refuses an unknown placeholder, naming it and the known ones', () => {
    expect(() => healthChecksFor({ url: 'http://{address}/' }, { host: 'pi1', hostname: 'pi1.local' })).toThrow(
      expect.objectContaining({
        code: 'PIDEPLOY_USAGE',
        message: 'the health check URL http://{address}/ has an unknown placeholder {address}',
        hint: "use {host} (the host's name in pideploy.json) or {hostname} (the address its SSH connection goes to)",
      }),
    );
  });

  it('refuses what is not an http(s) URL once filled in', () => {
    expect(() => healthChecksFor({ url: 'http://pi 1/' }, { host: 'pi1', hostname: 'x' })).toThrow(/^the health check URL for pi1 is not a valid http\(s\) URL: http:\/\/pi 1\/$/u);
  });
});

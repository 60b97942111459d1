import { describe, expect, it } from 'vitest';
import { healthCheckSettingsFor, healthChecksFor } from './health-check.js';

describe('healthCheckSettingsFor', () => {
  const configured = { command: 'systemctl is-active --quiet nginx', timeoutSeconds: 5 };

  it("keeps pideploy.json's check, and replaces only the fields an override names", () => {
    expect(healthCheckSettingsFor(configured, undefined)).toEqual({ command: 'systemctl is-active --quiet nginx', timeoutSeconds: 5 });
    expect(healthCheckSettingsFor(configured, { url: 'http://{hostname}/health', command: undefined })).toEqual({
      command: 'systemctl is-active --quiet nginx',
      url: 'http://{hostname}/health',
      timeoutSeconds: 5,
    });
    expect(healthCheckSettingsFor(configured, { command: 'true' })).toEqual({ command: 'true', timeoutSeconds: 5 });
    expect(healthCheckSettingsFor(undefined, { url: 'http://a/' })).toEqual({ url: 'http://a/' });
  });

  it('has none when turned off, or when only a timeout is left', () => {
    expect(healthCheckSettingsFor(configured, false)).toBeUndefined();
    expect(healthCheckSettingsFor(undefined, undefined)).toBeUndefined();
    expect(healthCheckSettingsFor(undefined, { timeoutSeconds: 3 })).toBeUndefined();
  });
});

describe('healthChecksFor', () => {
  it('runs the command with sh -c and leaves the URL to the activation, placeholders and all', () => {
    expect(healthChecksFor({ command: 'curl -fs localhost:80', url: 'http://{hostname}:8080/health?from={host}', timeoutSeconds: 2.5 })).toEqual({
      command: ['sh', '-c', 'curl -fs localhost:80'],
      url: 'http://{hostname}:8080/health?from={host}',
      timeoutMs: 2500,
    });
    expect(healthChecksFor(undefined)).toBeUndefined();
  });
});

import { describe, expect, it } from 'vitest';
import { withHostAdded, type HostEntry } from './edit-config.js';

const FILE = '/srv/fleet/pideploy.json';
const pi7: HostEntry = { target: 'deploy@pi7.local', configuration: './configuration.nix', tags: ['fleet'] };

/** What the file means after the edit: the same keys, in the same order, with pi7 last among the hosts. */
function meaningWithPi7(text: string): string {
  const raw = JSON.parse(text) as { hosts: Record<string, unknown> } & Record<string, unknown>;
  return JSON.stringify({ ...raw, hosts: { ...raw.hosts, pi7 } });
}

describe('withHostAdded', () => {
  it('changes only the hosts object: the other lines stay as written, the entry indented like the hosts', () => {
    const text = [
      '{',
      '    "$schema": "./node_modules/@pideploy/sdk/pideploy.schema.json",',
      '    "defaults": { "system": "aarch64-linux", "buildMode": "emulated" },',
      '    "hosts": {',
      '        "pi1": { "target": "deploy@pi1.local", "configuration": "./configuration.nix" },',
      '        "pi2": {',
      '            "target": "deploy@pi2.local",',
      '            "configuration": "./configuration.nix"',
      '        }',
      '    },',
      '    "deploy": { "parallel": 4 }',
      '}',
      '',
    ].join('\n');
    const { text: after, config } = withHostAdded(text, FILE, 'pi7', pi7);
    expect(after).toBe(
      [
        ...text.split('\n').slice(0, 8),
        '        },',
        '        "pi7": {',
        '            "target": "deploy@pi7.local",',
        '            "configuration": "./configuration.nix",',
        '            "tags": [',
        '                "fleet"',
        '            ]',
        '        }',
        ...text.split('\n').slice(9),
      ].join('\n'),
    );
    expect(JSON.stringify(JSON.parse(after))).toBe(meaningWithPi7(text));
    expect(config.hosts.map((host) => host.name)).toEqual(['pi1', 'pi2', 'pi7']);
  });

  it('keeps tabs and CRLF line ends, and skips braces and quotes inside strings', () => {
    const text = '{\r\n\t"$schema": "a}b\\"{c",\r\n\t"hosts": {\r\n\t\t"pi1": { "target": "deploy@pi1", "configuration": "./c}.nix" }\r\n\t}\r\n}\r\n';
    const { text: after } = withHostAdded(text, FILE, 'pi7', { target: 'deploy@pi7.local', configuration: './c.nix' });
    expect(after).toBe(
      '{\r\n\t"$schema": "a}b\\"{c",\r\n\t"hosts": {\r\n\t\t"pi1": { "target": "deploy@pi1", "configuration": "./c}.nix" },\r\n\t\t"pi7": {\r\n\t\t\t"target": "deploy@pi7.local",\r\n\t\t\t"configuration": "./c.nix"\r\n\t\t}\r\n\t}\r\n}\r\n',
    );
  });

  it('hosts written on one line get the new entry on a line of its own after them', () => {
    const text = '{\n  "hosts": { "pi1": { "target": "deploy@pi1", "configuration": "./c.nix" } }\n}\n';
    const { text: after } = withHostAdded(text, FILE, 'pi7', { target: 'deploy@pi7.local', configuration: './c.nix' });
    expect(after).toBe('{\n  "hosts": { "pi1": { "target": "deploy@pi1", "configuration": "./c.nix" },\n    "pi7": {\n      "target": "deploy@pi7.local",\n      "configuration": "./c.nix"\n    } }\n}\n');
    expect(Object.keys((JSON.parse(after) as { hosts: object }).hosts)).toEqual(['pi1', 'pi7']);
  });

  it('a file whose hosts key comes twice (JSON takes the last one) is written back whole, meaning what it meant plus the host', () => {
    const text = '{\n  "hosts": { "old": { "target": "deploy@old", "configuration": "./c.nix" } },\n  "hosts": { "pi1": { "target": "deploy@pi1", "configuration": "./c.nix" } }\n}\n';
    const { text: after } = withHostAdded(text, FILE, 'pi7', pi7);
    expect(after).toBe(`${JSON.stringify({ hosts: { pi1: { target: 'deploy@pi1', configuration: './c.nix' }, pi7 } }, null, 2)}\n`);
  });

  it('a taken name or an entry the schema refuses is an error, and nothing is returned to write', () => {
    const text = '{\n  "hosts": { "pi1": { "target": "deploy@pi1", "configuration": "./c.nix" } }\n}\n';
    expect(() => withHostAdded(text, FILE, 'pi1', pi7)).toThrow(expect.objectContaining({ code: 'PIDEPLOY_HOST_EXISTS' }));
    expect(() => withHostAdded(text, FILE, 'pi7', { target: 'deploy@pi7', configuration: './c.nix', sudo: 'sometimes' } as unknown as HostEntry)).toThrow(expect.objectContaining({ code: 'PIDEPLOY_CONFIG_INVALID' }));
  });
});

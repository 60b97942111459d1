import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { HOST_PROBE_SCRIPT, nixSystemOfMachine, parseHostProbe } from './probe-host.js';

describe('the host probe', () => {
  it('reads what the probe script prints on this machine', () => {
    // The script itself, run by sh here (as the test's user): its real output, parsed.
    const stdout = execFileSync('sh', ['-c', HOST_PROBE_SCRIPT], { encoding: 'utf8' });
    const machine = execFileSync('uname', ['-m'], { encoding: 'utf8' }).trim();
    const probe = parseHostProbe(stdout, 'me@here');
    expect(probe).toMatchObject({ display: 'me@here', machine, system: nixSystemOfMachine(machine) });
    expect(probe?.sudo).toBe(process.getuid?.() === 0 ? 'root' : expect.stringMatching(/^(password|nopasswd)$/u));
  });

  it('maps machines to the Nix systems pideploy.json takes, and refuses output that is not the probe', () => {
    expect(['aarch64', 'arm64', 'armv7l', 'armv6l', 'x86_64', 'riscv64', 'mips'].map(nixSystemOfMachine)).toEqual(['aarch64-linux', 'aarch64-linux', 'armv7l-linux', 'armv6l-linux', 'x86_64-linux', 'riscv64-linux', undefined]);
    expect(parseHostProbe('aarch64\n1000\npassword\nnix\n24.05.1234.abcdef (Uakari)\n', 'deploy@pi')).toEqual({ display: 'deploy@pi', machine: 'aarch64', system: 'aarch64-linux', sudo: 'password', hasNix: true, nixosVersion: '24.05.1234.abcdef (Uakari)' });
    expect(parseHostProbe('Welcome to the router\n', 'admin@router')).toBeUndefined();
    expect(parseHostProbe('', 'x')).toBeUndefined();
  });
});

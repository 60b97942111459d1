import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, chmodSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { runCli } from './cli.js';
import { createBufferIo } from './io.js';

const bin = fileURLToPath(new URL('../dist/bin.js', import.meta.url));

describe('shell completion', () => {
  it('offers commands, subcommands and a command\'s flags', async () => {
    const top = createBufferIo();
    await runCli(['__complete'], top);
    expect(top.out().split('\n')).toEqual(expect.arrayContaining(['deploy', 'lab', 'pin', 'init']));
    const lab = createBufferIo();
    await runCli(['__complete', 'lab'], lab);
    expect(lab.out()).toBe('down\nexec\nlink\nstatus\nup\n');
    const up = createBufferIo();
    await runCli(['__complete', 'lab', 'up'], up);
    expect(up.out().split('\n')).toEqual(expect.arrayContaining(['--hosts', '--untrusted', '--json']));
  });

  it('refuses an unknown shell with a hint (exit 2)', async () => {
    const io = createBufferIo();
    expect(await runCli(['completion', 'tcsh'], io)).toBe(2);
    expect(io.err()).toContain('hint: pick one of bash, zsh, fish');
  });

  it('completes in a real bash through the generated script', () => {
    // A `pideploy` on PATH that runs this checkout's CLI, as an installed one would.
    const binDir = mkdtempSync(path.join(os.tmpdir(), 'pideploy-completion-'));
    writeFileSync(path.join(binDir, 'pideploy'), `#!/bin/sh\nexec ${JSON.stringify(process.execPath)} ${JSON.stringify(bin)} "$@"\n`);
    chmodSync(path.join(binDir, 'pideploy'), 0o755);
    const script = `source <(pideploy completion bash)
COMP_WORDS=(pideploy lab st); COMP_CWORD=2; _pideploy; printf '%s\\n' "\${COMPREPLY[@]}"`;
    const output = execFileSync('bash', ['-c', script], { encoding: 'utf8', env: { ...process.env, PATH: `${binDir}:${process.env['PATH'] ?? ''}` } });
    expect(output).toBe('status\n');
  });
});

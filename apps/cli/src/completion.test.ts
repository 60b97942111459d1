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

  it("offers the host names and @tags of the pideploy.json in reach to commands that take hosts; after --on only those", async () => {
    const project = mkdtempSync(path.join(os.tmpdir(), 'pideploy-completion-hosts-'));
    writeFileSync(
      path.join(project, 'pideploy.json'),
      JSON.stringify({ hosts: { kitchen: { target: 'deploy@kitchen', configuration: 'c.nix', tags: ['home', 'audio'] }, garage: { target: 'deploy@garage', configuration: 'c.nix', tags: ['home'] } } }),
    );
    const complete = async (...words: string[]) => {
      const io = createBufferIo({ cwd: project });
      await runCli(['__complete', ...words], io);
      return io.out().split('\n').filter(Boolean);
    };
    expect(await complete('deploy')).toEqual(expect.arrayContaining(['kitchen', 'garage', '@audio', '@home', '--on', '--parallel']));
    expect(await complete('deploy', '--on')).toEqual(['kitchen', 'garage', '@audio', '@home']);
    expect(await complete('deploy', '--canary')).toEqual(['kitchen', 'garage', '@audio', '@home']);
    expect(await complete('exec', '--canary')).toEqual(expect.arrayContaining(['--sudo']));
    expect(await complete('exec', 'kitchen')).toEqual(expect.arrayContaining(['kitchen', 'garage', '--sudo']));
    // Commands that do not take hosts, and places without a pideploy.json (or with a broken one), get none.
    expect(await complete('lab', 'up')).not.toContain('kitchen');
    const elsewhere = createBufferIo({ cwd: os.tmpdir() });
    await runCli(['__complete', 'deploy'], elsewhere);
    expect(elsewhere.out()).not.toContain('kitchen');
    expect(elsewhere.out()).toContain('--on');
    writeFileSync(path.join(project, 'pideploy.json'), '{ broken');
    expect(await complete('deploy')).toEqual(expect.arrayContaining(['--on']));
    expect(await complete('deploy')).not.toContain('kitchen');
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

import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { stdinScriptBootstrap, stdinScriptLine } from './stdin-script.js';

describe.each(['/bin/dash', '/bin/bash'])('stdinScriptBootstrap run by a real %s', (shell) => {
  it('runs the script of the first stdin line with the arguments, and leaves the rest of stdin to it', () => {
    const script = `printf '%s|' "$0" "$@"; IFS= read -r rest; printf '%s\\n' "$rest"; echo "it's a script" >&2; exit 3`;
    const run = spawnSync(shell, ['-c', stdinScriptBootstrap('demo'), 'demo-name', 'a b', "c'd"], { input: `${stdinScriptLine(script)}left for it\n`, encoding: 'utf8' });
    expect([run.status, run.stdout, run.stderr]).toEqual([3, "demo-name|a b|c'd|left for it\n", "it's a script\n"]);
  });

  it('is one line, and says what is missing without base64', () => {
    expect(stdinScriptBootstrap('gc')).not.toContain('\n');
    const run = spawnSync(shell, ['-c', stdinScriptBootstrap('gc')], { input: stdinScriptLine('echo hi'), encoding: 'utf8', env: { PATH: '/nonexistent', HOME: '/nonexistent' } });
    expect([run.status, run.stderr.trim()]).toEqual([1, 'gc: base64 is not installed on the host']);
    expect(() => stdinScriptBootstrap("x'; rm -rf /")).toThrow(TypeError);
  });
});

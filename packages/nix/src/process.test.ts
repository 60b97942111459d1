import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { runStreamingCommand } from './nix-cli.js';
import { runProcess } from './process.js';

/* The one local process runner, against real programs (sh, cat, sleep). */

describe('runStreamingCommand', () => {
  it('collects stdout and stderr, streams stderr lines (the last one without a newline too), resolves on a non-zero exit', async () => {
    const lines: string[] = [];
    const result = await runStreamingCommand(['sh', '-c', 'echo out; printf "one\\ntwo\\nthr" >&2; printf "ee" >&2; exit 3'], { onStderrLine: (line) => lines.push(line) });
    expect(result).toMatchObject({ command: ['sh', '-c', expect.any(String)], stdout: 'out\n', stderr: 'one\ntwo\nthree', exitCode: 3, signal: null, timedOut: false });
    expect(lines).toEqual(['one', 'two', 'three']);
  });

  it('feeds input on stdin, and survives a program that exits without reading a large input', async () => {
    expect((await runStreamingCommand(['cat'], { input: 'hello\n' })).stdout).toBe('hello\n');
    expect((await runStreamingCommand(['cat'], { input: new Uint8Array([104, 105]) })).stdout).toBe('hi');
    const ignored = await runStreamingCommand(['true'], { input: 'x'.repeat(4 << 20) });
    expect(ignored.exitCode).toBe(0);
  });

  it('merges env over this process\'s (undefined removes a variable) and runs in cwd', async () => {
    const cwd = mkdtempSync(path.join(os.tmpdir(), 'pideploy-process-'));
    process.env['PIDEPLOY_TEST_REMOVED'] = 'present';
    try {
      const result = await runStreamingCommand(['sh', '-c', 'printf "%s|%s|%s" "$PIDEPLOY_TEST_ADDED" "${PIDEPLOY_TEST_REMOVED-unset}" "$(pwd)"'], {
        cwd,
        env: { PIDEPLOY_TEST_ADDED: 'added', PIDEPLOY_TEST_REMOVED: undefined },
      });
      expect(result.stdout).toBe(`added|unset|${cwd}`);
    } finally {
      delete process.env['PIDEPLOY_TEST_REMOVED'];
    }
  });

  it('says which program is missing, kills on timeout (timedOut) and on abort (PIDEPLOY_INTERRUPTED)', async () => {
    await expect(runStreamingCommand(['pideploy-no-such-program'])).rejects.toMatchObject({ code: 'PIDEPLOY_MISSING_TOOL', message: 'pideploy-no-such-program is not installed (or not on PATH)' });
    await expect(runStreamingCommand(['nix-no-such-tool'])).rejects.toMatchObject({ hint: expect.stringContaining('install Nix') });
    const notExecutable = path.join(mkdtempSync(path.join(os.tmpdir(), 'pideploy-process-')), 'tool');
    writeFileSync(notExecutable, '#!/bin/sh\n', { mode: 0o644 });
    await expect(runStreamingCommand([notExecutable])).rejects.toMatchObject({ code: 'PIDEPLOY_COMMAND_FAILED', message: expect.stringContaining(`could not run ${notExecutable}`), hint: expect.stringContaining('executable') });
    const slow = await runStreamingCommand(['sleep', '5'], { timeoutMs: 100 });
    expect(slow).toMatchObject({ timedOut: true, exitCode: null, signal: 'SIGTERM' });
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 100);
    await expect(runStreamingCommand(['sleep', '5'], { signal: controller.signal })).rejects.toMatchObject({ code: 'PIDEPLOY_INTERRUPTED' });
    await expect(runStreamingCommand(['true'], { signal: AbortSignal.abort() })).rejects.toMatchObject({ code: 'PIDEPLOY_INTERRUPTED', message: 'interrupted before true started' });
  });
});

describe('runProcess', () => {
  it('returns the output of a successful command', async () => {
    expect(await runProcess(['sh', '-c', 'cat; echo err >&2'], { input: 'in\n' })).toEqual({ stdout: 'in\n', stderr: 'err\n', exitCode: 0 });
  });

  it('turns a non-zero exit into PIDEPLOY_COMMAND_FAILED with the telling line, the command and the stderr tail (unless allowed)', async () => {
    const argv = ['sh', '-c', 'echo "error: it broke" >&2; echo "  at some detail" >&2; exit 4'];
    const error = await runProcess(argv, { failureMessage: 'breaking', failureHint: 'fix it' }).catch((caught: unknown) => caught);
    expect(error).toMatchObject({
      code: 'PIDEPLOY_COMMAND_FAILED',
      message: 'breaking (exit 4): error: it broke',
      hint: 'fix it',
      commandFailure: { command: argv, exitCode: 4, stderrTail: 'error: it broke\n  at some detail' },
    });
    expect(await runProcess(argv, { allowNonZeroExit: true })).toMatchObject({ exitCode: 4 });
  });

  it('kills a command past its time limit (retryable), reports a kill by a signal, and an interruption', async () => {
    await expect(runProcess(['sleep', '5'], { timeoutMs: 100 })).rejects.toMatchObject({ code: 'PIDEPLOY_COMMAND_FAILED', isRetryable: true, message: 'sleep did not finish within 100 ms' });
    await expect(runProcess(['sh', '-c', 'kill -9 $$'])).rejects.toMatchObject({ code: 'PIDEPLOY_COMMAND_FAILED', message: 'sh failed (killed by SIGKILL)' });
    // An interruption stops the command with SIGTERM (its TERM trap runs: Nix gets to clean up); only a timeout kills.
    const cleanedUp = path.join(mkdtempSync(path.join(os.tmpdir(), 'pideploy-process-')), 'cleaned-up');
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 300);
    await expect(runProcess(['sh', '-c', `trap 'touch "$0"; exit 1' TERM; while :; do sleep 0.05; done`, cleanedUp], { signal: controller.signal })).rejects.toMatchObject({ code: 'PIDEPLOY_INTERRUPTED' });
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(existsSync(cleanedUp)).toBe(true);
    await expect(runProcess(['pideploy-no-such-program'])).rejects.toMatchObject({ code: 'PIDEPLOY_MISSING_TOOL' });
  });
});

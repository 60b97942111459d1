import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

describe('createBaseContext', () => {
  it('lets a fleet add many abort listeners to the signal without a MaxListenersExceededWarning', () => {
    // In a child process: vitest's own process would swallow or reorder the warning.
    const contextModule = fileURLToPath(new URL('../dist/index.js', import.meta.url));
    const script = `
      const { createBaseContext } = await import(${JSON.stringify(contextModule)});
      const controller = new AbortController();
      const context = createBaseContext({ signal: controller.signal });
      for (let i = 0; i < 50; i += 1) context.signal.addEventListener('abort', () => {});
      const own = createBaseContext();
      for (let i = 0; i < 50; i += 1) own.signal.addEventListener('abort', () => {});
      await new Promise((resolve) => setTimeout(resolve, 50));
    `;
    const withContext = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
    expect(withContext.status, withContext.stderr).toBe(0);
    expect(withContext.stderr).not.toContain('MaxListenersExceededWarning');
    // The check can fail: a bare signal with 50 listeners does warn.
    const bare = spawnSync(process.execPath, ['--input-type=module', '-e', 'const c = new AbortController(); for (let i = 0; i < 50; i += 1) c.signal.addEventListener("abort", () => {}); await new Promise((r) => setTimeout(r, 50));'], { encoding: 'utf8' });
    expect(bare.stderr).toContain('MaxListenersExceededWarning');
  });
});

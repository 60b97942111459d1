import { describe, expect, it } from 'vitest';
import { runCli } from '../cli.js';
import { createBufferIo } from '../io.js';

describe('pideploy copy (argument errors, no network)', () => {
  it('needs a host and a path (exit 2, one line + hint)', async () => {
    const noHost = createBufferIo();
    expect(await runCli(['copy', '--path', '/nix/store/x'], noHost)).toBe(2);
    expect(noHost.err()).toMatch(/copy needs at least one host\nhint: pideploy copy/u);
    const noPath = createBufferIo();
    expect(await runCli(['copy', 'deploy@pi'], noPath)).toBe(2);
    expect(noPath.err()).toContain('give the store path with --path');
  });

  it('refuses both password sources at once and an empty password file', async () => {
    const both = createBufferIo();
    expect(await runCli(['copy', 'pi', '--path', '/nix/store/x', '--sudo-password-file', '/dev/null', '--sudo-password-stdin'], both)).toBe(2);
    expect(both.err()).toContain('exclude each other');
    const empty = createBufferIo();
    expect(await runCli(['copy', 'pi', '--path', '/nix/store/x', '--sudo-password-file', '/dev/null'], empty)).toBe(2);
    expect(empty.err()).toContain('the sudo password is empty');
  });

  it('is the same refusal for every command that takes a sudo password', async () => {
    for (const command of [['activate', 'pi', '--toplevel', '/nix/store/x'], ['rollback', 'pi']]) {
      const io = createBufferIo();
      expect(await runCli([...command, '--sudo-password-file', '/dev/null', '--sudo-password-stdin'], io)).toBe(2);
      expect(io.err()).toMatch(/^pideploy: --sudo-password-file and --sudo-password-stdin exclude each other\nhint: give the password one way\n$/u);
    }
  });
});

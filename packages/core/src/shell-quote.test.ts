import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { shellJoin, shellQuote } from './shell-quote.js';

/** Runs the quoted words through a real POSIX shell and returns the argv it saw. */
function argvSeenByShell(words: readonly string[]): string[] {
  const script = `for a in ${shellJoin(words)}; do printf '%s\\0' "$a"; done`;
  const output = execFileSync('/bin/sh', ['-c', script], { encoding: 'utf8' });
  return output.split('\0').slice(0, -1);
}

describe('shellQuote', () => {
  it('leaves safe words bare and quotes everything else', () => {
    expect(shellQuote('/nix/store/abc-system')).toBe('/nix/store/abc-system');
    expect(shellQuote('')).toBe("''");
    expect(shellQuote('a b')).toBe("'a b'");
    expect(shellQuote("it's")).toBe(`'it'\\''s'`);
  });

  it('round-trips hostile strings through a real /bin/sh', () => {
    const hostile = [
      '',
      ' ',
      "'",
      '"',
      '$(touch /tmp/pwned)',
      '`id`',
      'a;b|c&d',
      'new\nline',
      '*',
      '~root',
      '-n',
      '\\',
      "'\\''",
      'ünïcødé ✓',
      '$HOME ${PATH}',
      '!event',
    ];
    expect(argvSeenByShell(hostile)).toEqual(hostile);
  });

  it('refuses NUL bytes, which no argv can carry', () => {
    expect(() => shellQuote('a\0b')).toThrow(/NUL/u);
  });
});

import { expect, it } from 'vitest';
import { NIX_KEYWORDS, nixAttributeName, nixString } from './nix-text.js';
import { describeWithNix, runOk } from './test-support/nix-cli.js';

describeWithNix('generated Nix text, read back by the real nix-instantiate', () => {
  it('gives attribute names (keywords, odd characters, plain names) that evaluate to themselves', async () => {
    const names = [...NIX_KEYWORDS, 'plain', 'with-dash', "it's", '1starts-with-digit', 'has space', 'dollar${x}', 'quote"back\\slash', 'ünïcode', ''];
    const expression = `{ ${names.map((name, index) => `${nixAttributeName(name)} = ${index};`).join(' ')} }`;
    const evaluated = JSON.parse(await runOk('nix-instantiate', ['--eval', '--strict', '--json', '-E', expression])) as Record<string, number>;
    expect(evaluated).toEqual(Object.fromEntries(names.map((name, index) => [name, index])));
  });

  it('gives strings that evaluate to exactly the same text', async () => {
    const texts = ['plain', 'dollar ${builtins.currentTime} and $${x}', 'back\\slash "quote"\nnew line\ttab', "''double single''", 'ünïcode ✓', ''];
    const evaluated = JSON.parse(await runOk('nix-instantiate', ['--eval', '--strict', '--json', '-E', `[ ${texts.map(nixString).join(' ')} ]`])) as string[];
    expect(evaluated).toEqual(texts);
  });
});

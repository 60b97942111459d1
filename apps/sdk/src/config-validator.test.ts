import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
// @ts-expect-error -- a plain .mjs build script, without type declarations
import { generatedFile, renderConfigValidator } from '../scripts/config-validator.mjs';

describe('the generated pideploy.json validator', () => {
  it('is what pideploy.schema.json renders now (after a schema change: pnpm --filter @pideploy/sdk generate)', () => {
    expect(readFileSync(generatedFile as string, 'utf8')).toBe((renderConfigValidator as () => string)());
  });
});

import { ESLint } from 'eslint';
import { describe, expect, it } from 'vitest';

/**
 * The package arrows of DESIGN.md §2 are enforced by eslint.config.js; these cases prove the
 * rules fire (and stay quiet where an import is allowed) by linting snippets as if they lived in
 * each package.
 */
const eslint = new ESLint({ cwd: new URL('..', import.meta.url).pathname });

async function restrictedImportErrors(filePath: string, code: string): Promise<string[]> {
  const [result] = await eslint.lintText(code, { filePath });
  return (result?.messages ?? []).filter((message) => message.ruleId === 'no-restricted-imports').map((message) => message.message);
}

describe('package boundaries (eslint no-restricted-imports)', () => {
  const forbidden: [string, string][] = [
    ['packages/core/src/x.ts', "import { execa } from 'execa';"],
    ['packages/core/src/x.ts', "import { labUp } from '@pideploy/lab';"],
    ['packages/pin/src/x.ts', "import { execa } from 'execa';"],
    ['packages/pin/src/x.ts', "import { buildToplevel } from '@pideploy/build';"],
    ['packages/transport/src/x.ts', "import { Client } from 'ssh2';"],
    ['packages/activate/src/x.ts', "import { copyClosure } from '@pideploy/transport';"],
    ['packages/ssh/src/x.ts', "import { execa } from 'execa';"],
    ['packages/nix/src/x.ts', "import { Client } from 'ssh2';"],
    ['packages/lab/src/x.ts', "import { Client } from 'ssh2';"],
    ['apps/cli/src/x.ts', "import { execa } from 'execa';"],
    ['apps/cli/src/x.ts', "import { labUp } from '@pideploy/lab/src/lab.js';"],
    ['apps/cli/src/x.ts', "import { labUp } from '../../packages/lab/src/lab.js';"],
    ['apps/sdk/src/x.ts', "import { runCli } from '@pideploy/cli';"],
  ];
  it.each(forbidden)('%s may not: %s', async (filePath, code) => {
    expect(await restrictedImportErrors(filePath, code)).toHaveLength(1);
  });

  const allowed: [string, string][] = [
    ['packages/nix/src/x.ts', "import { execa } from 'execa';"],
    ['packages/lab/src/x.ts', "import { execa } from 'execa';"],
    ['packages/ssh/src/x.ts', "import { Client } from 'ssh2';"],
    ['packages/pin/src/x.ts', "import { PideployError } from '@pideploy/core';"],
    ['packages/pin/src/x.ts', "import { parseHash } from '@pideploy/nix';"],
    ['packages/transport/src/x.ts', "import { connect } from '@pideploy/ssh';"],
    ['apps/sdk/src/x.ts', "import { pinNixpkgs } from '@pideploy/pin';"],
    ['apps/cli/src/x.ts', "import { labUp } from '@pideploy/lab';"],
  ];
  it.each(allowed)('%s may: %s', async (filePath, code) => {
    expect(await restrictedImportErrors(filePath, code)).toEqual([]);
  });
});

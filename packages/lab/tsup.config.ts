import { definePackageBuild } from '../../tsup.shared';

export default definePackageBuild(['src/index.ts', 'src/archive-server/main.ts', 'src/testing/index.ts'], {
  dts: { entry: ['src/index.ts', 'src/testing/index.ts'], compilerOptions: { composite: false, emitDeclarationOnly: false } },
  external: ['vitest'],
});

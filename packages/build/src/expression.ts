import { PideployError } from '@pideploy/core';
import { nixAttributeName, nixPath, nixString } from '@pideploy/nix';

/**
 * How the target's system is built on this machine:
 * - `emulated`: a native `aarch64-linux` evaluation, built here under qemu binfmt (same paths as on the Pi);
 * - `cross`: NixOS's `nixpkgs.buildPlatform` (this machine) / `nixpkgs.hostPlatform` (the Pi): fast, different paths;
 * - `builders`: the native evaluation, built on Nix remote builders (`--builders`), never on this machine.
 */
export type BuildMode = 'emulated' | 'cross' | 'builders';

/** Every build mode, in the order the CLI lists them. */
export const BUILD_MODES: readonly BuildMode[] = ['emulated', 'cross', 'builders'];

/** The pin that a generated expression uses unless told otherwise. */
export const DEFAULT_PIN_NAME = 'nixpkgs';

/** Input of {@link renderBuildExpression}. */
export interface BuildExpressionInput {
  /** Absolute path of the generated `pins.nix` (evaluates to `{ nixpkgs = fetchTarball …; … }`). */
  readonly pinsFile: string;
  /** Attribute of `pins.nix` holding nixpkgs (default {@link DEFAULT_PIN_NAME}). */
  readonly pinName?: string | undefined;
  /** Absolute path of the host's `configuration.nix`. */
  readonly configuration: string;
  /** The target's Nix system, e.g. `aarch64-linux`. */
  readonly system: string;
  /** How to build (see {@link BuildMode}). */
  readonly mode: BuildMode;
  /** `cross` only: the system of this machine (default: {@link localNixSystem}). */
  readonly buildPlatform?: string | undefined;
}

/** The Nix system of this machine as Node sees it (`x86_64-linux`, `aarch64-linux`, …). */
export function localNixSystem(arch: string = process.arch, platform: string = process.platform): string {
  const cpu = ({ x64: 'x86_64', arm64: 'aarch64', ia32: 'i686', arm: 'armv7l', riscv64: 'riscv64' } as Record<string, string>)[arch] ?? arch;
  return `${cpu}-${platform === 'darwin' ? 'darwin' : 'linux'}`;
}

/** Validates a Nix system string (`cpu-os`). */
export function assertNixSystem(system: string): void {
  if (!/^[a-z0-9_]+-[a-z0-9_]+$/u.test(system)) {
    throw new PideployError({
      code: 'PIDEPLOY_USAGE',
      message: `not a Nix system: ${JSON.stringify(system)}`,
      hint: 'use a system such as aarch64-linux (64-bit Raspberry Pi 3/4/5) or armv7l-linux',
    });
  }
}

/**
 * The Nix expression of the host's NixOS system: `pins.nix` → nixpkgs →
 * `(import "${nixpkgs}/nixos" { configuration; system; }).config.system.build.toplevel`.
 * Pure text, no `<nixpkgs>` and no `NIX_PATH`: `nix-build` of it (a file or `-E`) gives the same
 * path as pideploy. `cross` adds a module setting `nixpkgs.buildPlatform`/`nixpkgs.hostPlatform`
 * (at mkDefault priority, so a configuration's own platform settings win).
 */
export function renderBuildExpression(input: BuildExpressionInput): string {
  assertNixSystem(input.system);
  const pinName = input.pinName ?? DEFAULT_PIN_NAME;
  const header = [
    `# pideploy build expression (${input.mode}): the NixOS system of ${input.configuration}`,
    `# for ${input.system} from the pinned nixpkgs. No <nixpkgs>, no NIX_PATH: \`nix-build\` this`,
    '# expression to get the same store path pideploy builds.',
  ];
  const systemLines =
    input.mode === 'cross'
      ? [
          '  configuration = { lib, ... }: {',
          `    imports = [ ${nixPath(input.configuration)} ];`,
          `    nixpkgs.buildPlatform = lib.mkDefault ${nixString(input.buildPlatform ?? localNixSystem())};`,
          `    nixpkgs.hostPlatform = lib.mkDefault ${nixString(input.system)};`,
          '  };',
          '  system = null;',
        ]
      : [`  configuration = ${nixPath(input.configuration)};`, `  system = ${nixString(input.system)};`];
  return [
    ...header,
    'let',
    `  pins = import ${nixPath(input.pinsFile)};`,
    `  nixpkgs = pins.${nixAttributeName(pinName)};`,
    'in',
    '(import "${nixpkgs}/nixos" {',
    ...systemLines,
    '}).config.system.build.toplevel',
    '',
  ].join('\n');
}

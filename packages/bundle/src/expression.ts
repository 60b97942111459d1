import path from 'node:path';
import { PideployError } from '@pideploy/core';
import { ACTIVATE_SCRIPT_TEMPLATE } from './activate-script.js';
import type { ConfigurationFiles } from './imports.js';
import { nixAttributeName, nixPath, nixString } from '@pideploy/nix';

/** The build modes of `@pideploy/build` (the bundle only needs to know cross vs native). */
export type BundleBuildMode = 'emulated' | 'cross' | 'builders';

/** The pin a bundle was built from, as pins.json records it. */
export interface BundlePin {
  /** Name in pins.nix (`nixpkgs`). */
  readonly name: string;
  readonly url: string | null;
  readonly sha256: string | null;
  readonly rev: string | null;
}

/** The parts of `manifest.json` known before Nix evaluates (Nix adds `toplevel`). */
export interface BundleManifestBase {
  readonly version: 1;
  readonly host: string;
  readonly system: string;
  readonly buildMode: BundleBuildMode;
  readonly pin: BundlePin;
  readonly pideployVersion: string;
  /** The configuration inside the bundle and, in a git repository, its commit and dirty flag. */
  readonly configuration: {
    readonly file: string;
    readonly gitRev: string | null;
    readonly dirty: boolean | null;
  };
  /** Every configuration file in the bundle, relative to its root. */
  readonly files: readonly string[];
}

/** `manifest.json` of a bundle (`version: 1`). */
export interface BundleManifest extends BundleManifestBase {
  /** The NixOS system (`config.system.build.toplevel`) store path. */
  readonly toplevel: string;
}

/** Input of {@link renderBundleExpression}. */
export interface BundleExpressionInput {
  /** Absolute path of pins.nix. */
  readonly pinsFile: string;
  /** Attribute of pins.nix holding nixpkgs (default `nixpkgs`). */
  readonly pinName?: string | undefined;
  /** This machine's system. `cross`: the cross package set's build platform; `emulated`: where the bundle's builder runs (see {@link bundleBuilderSystem}). */
  readonly buildPlatform?: string | undefined;
  /**
   * Nix text evaluating to the toplevel derivation: the build stage's expression (self-contained,
   * what `--print-expr` shows) or `import /nix/store/…-nixos-system-….drv` (no re-evaluation).
   * Both give the same bundle path.
   */
  readonly toplevelExpression: string;
  /** The configuration files to copy in. */
  readonly files: ConfigurationFiles;
  /** manifest.json without `toplevel`. */
  readonly manifest: BundleManifestBase;
  /** `bin/activate` text with `@shell@`/`@toplevel@`/`@bundle@` placeholders (default: {@link ACTIVATE_SCRIPT_TEMPLATE}). */
  readonly activateScript?: string | undefined;
}

/** A JSON value as a Nix expression. */
export function nixValue(value: unknown): string {
  if (value === null || value === undefined) return 'null';
  if (typeof value === 'string') return nixString(value);
  if (typeof value === 'boolean') return value ? 'true' : 'false';
  if (typeof value === 'number') {
    if (!Number.isInteger(value)) throw new TypeError('nixValue: only integers are supported');
    return String(value);
  }
  if (Array.isArray(value)) return `[ ${value.map((item) => nixValue(item)).join(' ')} ]`;
  if (typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>).filter(([, item]) => item !== undefined);
    return `{ ${entries.map(([key, item]) => `${nixAttributeName(key)} = ${nixValue(item)};`).join(' ')} }`;
  }
  throw new TypeError(`nixValue: cannot express ${typeof value}`);
}

/** Names the bundle itself puts at its root; a configuration file may not take them. */
export const BUNDLE_RESERVED_NAMES: readonly string[] = ['nixpkgs', 'toplevel', 'manifest.json', 'bin/activate'];

/** Where the bundle's `configuration.nix` comes from: the file itself, or a one-line wrapper. */
export function configurationEntry(files: ConfigurationFiles): { readonly relative: string; readonly needsWrapper: boolean } {
  const clash = files.files.find((file) => BUNDLE_RESERVED_NAMES.some((reserved) => file === reserved || file.startsWith(`${reserved}/`)));
  if (clash !== undefined) {
    throw new PideployError({
      code: 'PIDEPLOY_BUNDLE_NAME_CLASH',
      message: `${path.join(files.root, clash)} is imported by the configuration, but the bundle keeps its own ${BUNDLE_RESERVED_NAMES.find((reserved) => clash === reserved || clash.startsWith(`${reserved}/`))} there`,
      hint: `rename or move it (the bundle's root holds ${BUNDLE_RESERVED_NAMES.join(', ')})`,
    });
  }
  const relative = path.relative(files.root, files.configuration);
  if (relative === 'configuration.nix') return { relative, needsWrapper: false };
  if (files.files.includes('configuration.nix')) {
    throw new PideployError({
      code: 'PIDEPLOY_BUNDLE_NAME_CLASH',
      message: `${path.join(files.root, 'configuration.nix')} is bundled too, so ${relative} cannot become the bundle's configuration.nix`,
      hint: 'rename one of the two files',
    });
  }
  return { relative, needsWrapper: true };
}

/** The Nix arguments of the pinned package set a bundle is built with (`import nixpkgs <this>`). */
function packageSetArguments(input: BundleExpressionInput): string {
  return input.manifest.buildMode === 'cross'
    ? `{ localSystem = ${nixString(input.buildPlatform ?? 'x86_64-linux')}; crossSystem = ${nixString(input.manifest.system)}; }`
    : `{ system = ${nixString(input.manifest.system)}; }`;
}

/**
 * The system the bundle's builder runs on, when it is not the target's: in emulated mode, this
 * machine's (the bundle only writes text and links, so nothing of it needs the target's CPU, and
 * under qemu every process of a builder is slow: with real nixpkgs, bash sourcing stdenv's setup).
 * Cross mode's package set already builds on this machine; builders mode builds nothing here.
 */
export function bundleBuilderSystem(input: Pick<BundleExpressionInput, 'buildPlatform' | 'manifest'>): string | undefined {
  const { buildPlatform, manifest } = input;
  return manifest.buildMode === 'emulated' && buildPlatform !== undefined && buildPlatform !== manifest.system ? buildPlatform : undefined;
}

/** let-bindings of the pinned package set: `pins`, `nixpkgs`, `pkgs`, and `buildPkgs` when the builder runs elsewhere (indented for a let). */
function packageSetBindings(input: BundleExpressionInput): string[] {
  const builderSystem = bundleBuilderSystem(input);
  return [
    `  pins = import ${nixPath(input.pinsFile)};`,
    `  nixpkgs = pins.${nixAttributeName(input.pinName ?? input.manifest.pin.name)};`,
    `  pkgs = import nixpkgs ${packageSetArguments(input)};`,
    ...(builderSystem === undefined ? [] : [`  buildPkgs = import nixpkgs { system = ${nixString(builderSystem)}; };`]),
  ];
}

/**
 * Bundles built with the same pinned package set (same pins file and pin, system, build mode and
 * build platform) can be evaluated together, sharing one `pkgs`: this key says which (pure).
 */
export function bundlePackageSetKey(input: BundleExpressionInput): string {
  return JSON.stringify([input.pinsFile, input.pinName ?? input.manifest.pin.name, packageSetArguments(input), bundleBuilderSystem(input) ?? null]);
}

/**
 * The bundle's own part, given `nixpkgs` and `pkgs` in scope: its let-bindings and its derivation.
 * `activateTemplate`: a Nix expression in scope holding the script text (default: the text itself).
 */
function bundleParts(input: BundleExpressionInput, activateTemplate?: string): { bindings: string[]; derivation: string[] } {
  const { manifest, files } = input;
  const entry = configurationEntry(files);
  // The filter keeps exactly the bundled files and the directories leading to them.
  const kept = new Set<string>();
  for (const file of files.files) {
    let current = path.join(files.root, file);
    while (current !== files.root && !kept.has(current)) {
      kept.add(current);
      current = path.dirname(current);
    }
  }
  const keptList = [...kept].sort().map((item) => `      ${nixString(item)}`);
  const wrapper = entry.needsWrapper ? `import ./${entry.relative}\n` : '';
  const toplevelLines = input.toplevelExpression.trimEnd().split('\n').map((line) => (line === '' ? '' : `    ${line}`));
  return {
    bindings: [
      '  toplevel = (',
      ...toplevelLines,
      '  );',
      '  configurationSource = builtins.path {',
      `    name = ${nixString(`pideploy-configuration-${manifest.host}`)};`,
      `    path = ${nixPath(files.root)};`,
      '    filter = path: type: builtins.elem path [',
      ...keptList,
      '    ];',
      '  };',
      `  manifest = builtins.toJSON (${nixValue(manifest)} // { toplevel = "\${toplevel}"; });`,
      '  activate = builtins.replaceStrings [ "@shell@" "@toplevel@" "@bundle@" ] [ pkgs.runtimeShell "${toplevel}" (builtins.placeholder "out") ]',
      `    ${activateTemplate ?? nixString(input.activateScript ?? ACTIVATE_SCRIPT_TEMPLATE)};`,
      `  configurationWrapper = ${nixString(wrapper)};`,
    ],
    derivation: [
      // The builder runs on this machine in emulated and cross mode (bundleBuilderSystem), on the
      // target only for remote builders. Few processes wherever it runs: the texts are written by
      // the shell's own printf, and the configuration is copied last (no name clashes:
      // configurationEntry refuses them), so five processes build it.
      `${bundleBuilderSystem(input) === undefined ? 'pkgs' : 'buildPkgs'}.runCommand ${nixString(`pideploy-bundle-${manifest.host}`)} {`,
      '  inherit manifest activate configurationWrapper;',
      '  preferLocalBuild = true;',
      '  allowSubstitutes = false;',
      "} ''",
      '  mkdir -p $out/bin',
      '  printf \'%s\' "$manifest" > $out/manifest.json',
      '  printf \'%s\' "$activate" > $out/bin/activate',
      '  if [ -n "$configurationWrapper" ]; then printf \'%s\' "$configurationWrapper" > $out/configuration.nix; fi',
      '  chmod 0555 $out/bin/activate',
      '  ln -s ${nixpkgs} $out/nixpkgs',
      '  ln -s ${toplevel} $out/toplevel',
      '  cp -R ${configurationSource}/. $out/',
      "''",
    ],
  };
}

/**
 * The Nix expression of the bundle: one derivation (built with the pinned nixpkgs for the target
 * system) holding `configuration.nix` and its local files, `nixpkgs` → the pinned source,
 * `toplevel` → the system, `bin/activate` and `manifest.json`. Plain `nix-build` of it gives the
 * bundle path pideploy prints.
 */
export function renderBundleExpression(input: BundleExpressionInput): string {
  const { manifest } = input;
  const parts = bundleParts(input);
  return [
    `# pideploy bundle of ${manifest.host} (${manifest.system}, ${manifest.buildMode}): configuration.nix and its local files,`,
    '# nixpkgs -> the pinned source, toplevel -> the system, bin/activate, manifest.json.',
    '# `nix-build` this expression to get the same store path pideploy prints.',
    'let',
    ...packageSetBindings(input),
    ...parts.bindings,
    'in',
    ...parts.derivation,
    '',
  ].join('\n');
}

/**
 * Several bundles as one list expression, evaluated with ONE instance of their shared package set
 * (a fleet's bundles: importing nixpkgs is most of a bundle's evaluation). Each element is the
 * same derivation {@link renderBundleExpression} gives for that input.
 * @throws TypeError when the inputs do not share one {@link bundlePackageSetKey}.
 */
export function renderBundleListExpression(inputs: readonly BundleExpressionInput[]): string {
  const first = inputs[0];
  if (first === undefined) throw new TypeError('renderBundleListExpression: no bundles');
  const key = bundlePackageSetKey(first);
  if (inputs.some((input) => bundlePackageSetKey(input) !== key)) throw new TypeError('renderBundleListExpression: the bundles do not share one package set');
  const indent = (line: string) => (line === '' ? '' : `    ${line}`);
  // The activation script (kilobytes) is written once when the bundles share it.
  const scripts = new Set(inputs.map((input) => input.activateScript ?? ACTIVATE_SCRIPT_TEMPLATE));
  const shared = scripts.size === 1 ? (scripts.values().next().value as string) : undefined;
  return [
    `# pideploy bundles of ${inputs.map((input) => input.manifest.host).join(', ')}, sharing one pinned package set.`,
    'let',
    ...packageSetBindings(first),
    ...(shared === undefined ? [] : [`  activateTemplate = ${nixString(shared)};`]),
    'in',
    '[',
    ...inputs.flatMap((input) => {
      const parts = bundleParts(input, shared === undefined ? undefined : 'activateTemplate');
      return ['  (let', ...parts.bindings.map(indent), '  in', ...parts.derivation.map(indent), '  )'];
    }),
    ']',
    '',
  ].join('\n');
}

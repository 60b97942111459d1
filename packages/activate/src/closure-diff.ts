/**
 * Closure diffs between the system a target runs and the one about to be activated, grouped the
 * way `nix store diff-closures` groups them (package name → versions, size delta), so pideploy can
 * show "what changes" BEFORE switching, which no peer tool does.
 */

/** One store path of a closure with its NAR size. */
export interface ClosurePath {
  /** `/nix/store/<hash>-<name>` */
  readonly path: string;
  /** NAR size in bytes (`nix path-info -S`'s per-path size, i.e. narSize). */
  readonly narSize: number;
}

/** How one package changed between two closures. */
export interface ClosureDiffEntry {
  /** Package name (the store path name without version and output suffix). */
  readonly name: string;
  /** Versions only in the old closure ("" = no version). */
  readonly removedVersions: readonly string[];
  /** Versions only in the new closure. */
  readonly addedVersions: readonly string[];
  /** Bytes added (positive) or freed (negative) for this package. */
  readonly sizeDelta: number;
}

/** A whole closure diff. */
export interface ClosureDiff {
  /** Changed packages, sorted by name (byte order), as Nix sorts them. */
  readonly entries: readonly ClosureDiffEntry[];
  /** Store paths only in the new closure. */
  readonly pathsAdded: readonly string[];
  /** Store paths only in the old closure. */
  readonly pathsRemoved: readonly string[];
  /** Total NAR bytes of the new closure minus the old one. */
  readonly sizeDelta: number;
}

/** Size changes below this are not shown (Nix's threshold). */
export const CLOSURE_DIFF_SIZE_THRESHOLD = 8 * 1024;

const OUTPUT_SUFFIX = /^(.*)-([a-z]+|lib32|lib64)$/su;

/**
 * Splits a store path name into package name and version exactly as `nix store diff-closures`
 * does: strip a trailing `-<lowercase word>` (an output name such as `-man`; ambiguous with
 * version suffixes, as Nix says), then cut at the first `-` not followed by a letter.
 */
export function splitStorePathName(storePathName: string): { readonly name: string; readonly version: string } {
  const match = OUTPUT_SUFFIX.exec(storePathName);
  const withoutOutput = match === null ? storePathName : (match[1] ?? storePathName);
  for (let index = 0; index < withoutOutput.length; index += 1) {
    const next = withoutOutput[index + 1];
    if (withoutOutput[index] === '-' && next !== undefined && !/[A-Za-z]/u.test(next)) {
      return { name: withoutOutput.slice(0, index), version: withoutOutput.slice(index + 1) };
    }
  }
  return { name: withoutOutput, version: '' };
}

function storePathName(storePath: string): string {
  const base = storePath.slice(storePath.lastIndexOf('/') + 1);
  return base.slice(base.indexOf('-') + 1);
}

function groupByPackage(closure: readonly ClosurePath[]): Map<string, Map<string, number>> {
  const groups = new Map<string, Map<string, number>>();
  for (const { path, narSize } of closure) {
    const { name, version } = splitStorePathName(storePathName(path));
    const versions = groups.get(name) ?? new Map<string, number>();
    versions.set(version, (versions.get(version) ?? 0) + narSize);
    groups.set(name, versions);
  }
  return groups;
}

function byteOrder(left: string, right: string): number {
  return Buffer.compare(Buffer.from(left), Buffer.from(right));
}

/** Diffs two closures (each given as all its paths with sizes). Pure. */
export function diffClosures(before: readonly ClosurePath[], after: readonly ClosurePath[]): ClosureDiff {
  const beforeGroups = groupByPackage(before);
  const afterGroups = groupByPackage(after);
  const names = [...new Set([...beforeGroups.keys(), ...afterGroups.keys()])].sort(byteOrder);
  const entries: ClosureDiffEntry[] = [];
  const total = (versions: Map<string, number> | undefined): number =>
    [...(versions?.values() ?? [])].reduce((sum, size) => sum + size, 0);
  for (const name of names) {
    const beforeVersions = beforeGroups.get(name) ?? new Map<string, number>();
    const afterVersions = afterGroups.get(name) ?? new Map<string, number>();
    const removedVersions = [...beforeVersions.keys()].filter((version) => !afterVersions.has(version)).sort(byteOrder);
    const addedVersions = [...afterVersions.keys()].filter((version) => !beforeVersions.has(version)).sort(byteOrder);
    const sizeDelta = total(afterVersions) - total(beforeVersions);
    if (removedVersions.length > 0 || addedVersions.length > 0 || Math.abs(sizeDelta) >= CLOSURE_DIFF_SIZE_THRESHOLD) {
      entries.push({ name, removedVersions, addedVersions, sizeDelta });
    }
  }
  const beforePaths = new Set(before.map((item) => item.path));
  const afterPaths = new Set(after.map((item) => item.path));
  return {
    entries,
    pathsAdded: [...afterPaths].filter((path) => !beforePaths.has(path)).sort(),
    pathsRemoved: [...beforePaths].filter((path) => !afterPaths.has(path)).sort(),
    sizeDelta: after.reduce((sum, item) => sum + item.narSize, 0) - before.reduce((sum, item) => sum + item.narSize, 0),
  };
}

function showVersions(versions: readonly string[]): string {
  if (versions.length === 0) return '∅';
  return [...new Set(versions.map((version) => (version === '' ? 'ε' : version)))].sort(byteOrder).join(', ');
}

/** Formats a diff line by line as `nix store diff-closures` prints it (without colours). */
export function formatClosureDiff(diff: ClosureDiff, indent = ''): string {
  return diff.entries
    .map((entry) => {
      const items: string[] = [];
      if (entry.removedVersions.length > 0 || entry.addedVersions.length > 0) {
        items.push(`${showVersions(entry.removedVersions)} → ${showVersions(entry.addedVersions)}`);
      }
      if (Math.abs(entry.sizeDelta) >= CLOSURE_DIFF_SIZE_THRESHOLD) items.push(formatKibDelta(entry.sizeDelta));
      return `${indent}${entry.name}: ${items.join(', ')}\n`;
    })
    .join('');
}

/** `+12.3 KiB` / `-4.0 KiB`, rounded as C's printf("%+.1f") rounds (half to even), with integer math. */
export function formatKibDelta(bytes: number): string {
  const sign = bytes < 0 ? '-' : '+';
  const tenthsNumerator = Math.abs(bytes) * 10;
  let tenths = Math.floor(tenthsNumerator / 1024);
  const remainder = tenthsNumerator % 1024;
  if (remainder > 512 || (remainder === 512 && tenths % 2 === 1)) tenths += 1;
  return `${sign}${Math.floor(tenths / 10)}.${tenths % 10} KiB`;
}

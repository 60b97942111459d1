import { PideployError } from '@pideploy/core';

/** What a copy needs to know about one store path of the closure (from the local store). */
export interface ClosurePathInfo {
  /** The store path. */
  readonly path: string;
  /** Size of its NAR in bytes (what goes on the wire). */
  readonly narSize: number;
  /** Store paths it refers to (may include itself). */
  readonly references: readonly string[];
}

/** What to send and what the target already has. */
export interface CopyPlan<Info extends ClosurePathInfo = ClosurePathInfo> {
  /** Paths the target lacks, dependencies before the paths that refer to them. */
  readonly toSend: readonly Info[];
  /** Closure paths already valid on the target (sorted). */
  readonly present: readonly string[];
  /** Σ narSize of {@link toSend}. */
  readonly bytesToSend: number;
  /** Σ narSize of the whole closure. */
  readonly closureBytes: number;
}

/**
 * Orders a closure so that every path comes after the paths it refers to (what
 * `nix-store --query --requisites` prints). Deterministic: ties are broken by path.
 * @throws PideployError `PIDEPLOY_CLOSURE_INCOMPLETE` when a reference is not in the set,
 *   `PIDEPLOY_CLOSURE_CYCLE` on a reference cycle (impossible in a real store).
 */
export function sortClosure<Info extends ClosurePathInfo>(closure: readonly Info[]): Info[] {
  const byPath = new Map<string, Info>();
  for (const info of closure) byPath.set(info.path, info);
  const state = new Map<string, 'visiting' | 'done'>();
  const ordered: Info[] = [];
  const visit = (info: Info, trail: string[]): void => {
    const seen = state.get(info.path);
    if (seen === 'done') return;
    if (seen === 'visiting') {
      throw new PideployError({
        code: 'PIDEPLOY_CLOSURE_CYCLE',
        message: `store paths refer to each other in a cycle: ${[...trail, info.path].join(' → ')}`,
        hint: 'this cannot come from a real Nix store; report how the path infos were made',
      });
    }
    state.set(info.path, 'visiting');
    for (const reference of [...info.references].sort()) {
      if (reference === info.path) continue;
      const dependency = byPath.get(reference);
      if (dependency === undefined) {
        throw new PideployError({
          code: 'PIDEPLOY_CLOSURE_INCOMPLETE',
          message: `${info.path} refers to ${reference}, which is not in the closure to copy`,
          hint: 'pass the whole closure (nix-store --query --requisites), not single paths',
        });
      }
      visit(dependency, [...trail, info.path]);
    }
    state.set(info.path, 'done');
    ordered.push(info);
  };
  for (const path of [...byPath.keys()].sort()) visit(byPath.get(path) as Info, []);
  return ordered;
}

/** Splits a closure into what to send (dependencies first) and what the target already has. */
export function planCopy<Info extends ClosurePathInfo>(closure: readonly Info[], validOnTarget: Iterable<string>): CopyPlan<Info> {
  const valid = new Set(validOnTarget);
  const ordered = sortClosure(closure);
  const toSend = ordered.filter((info) => !valid.has(info.path));
  const present = ordered.filter((info) => valid.has(info.path)).map((info) => info.path).sort();
  return {
    toSend,
    present,
    bytesToSend: toSend.reduce((sum, info) => sum + info.narSize, 0),
    closureBytes: ordered.reduce((sum, info) => sum + info.narSize, 0),
  };
}

/** Bytes as a short human figure: `512 B`, `1.5 KiB`, `200.0 MiB`, `1.20 GiB`. */
export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KiB`;
  if (bytes < 1024 * 1024 * 1024) return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
  return `${(bytes / 1024 / 1024 / 1024).toFixed(2)} GiB`;
}

/** `3 paths, 1.2 MiB to send, 201 already present` (the line printed before sending). */
export function describeCopyPlan(plan: { readonly toSend: readonly unknown[]; readonly present: readonly unknown[]; readonly bytesToSend: number }): string {
  const count = plan.toSend.length;
  return `${count} path${count === 1 ? '' : 's'}, ${formatBytes(plan.bytesToSend)} to send, ${plan.present.length} already present`;
}

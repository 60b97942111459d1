import { readlinkSync, realpathSync } from 'node:fs';
import path from 'node:path';
import { gcRootPath, projectStateDir } from '@pideploy/nix';
import type { ResolvedConfig } from './config.js';

/** The bundle a build of the project made for a host, as its GC root keeps it. */
export interface BuiltBundle {
  /** The bundle's store path. */
  readonly bundle: string;
  /** The system it holds (the bundle's `toplevel` link). */
  readonly toplevel: string;
  /** `.pideploy/…` link that roots it (what `pideploy build` and `deploy` write). */
  readonly gcRoot: string;
}

/**
 * The bundle `pideploy build` (or `deploy`) last made for `host` in this project, read from its
 * GC root under {@link projectStateDir}; `undefined` when there is none yet.
 */
export function builtBundleOf(config: Pick<ResolvedConfig, 'directory'>, host: string): BuiltBundle | undefined {
  const gcRoot = gcRootPath(projectStateDir(config.directory), host, 'bundle');
  let bundle: string;
  try {
    bundle = realpathSync(gcRoot);
  } catch (caught) {
    if ((caught as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw caught;
  }
  return { bundle, toplevel: readBundleToplevel(bundle), gcRoot };
}

/** The system a bundle holds: the target of its `toplevel` link (a store path). */
export function readBundleToplevel(bundle: string): string {
  const link = path.join(bundle, 'toplevel');
  const target = readlinkSync(link);
  return path.isAbsolute(target) ? target : path.resolve(bundle, target);
}

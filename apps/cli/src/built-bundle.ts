import { PideployError } from '@pideploy/core';
import { builtBundleOf, type BuiltBundle, type ResolvedConfig } from '@pideploy/sdk';

/**
 * The bundle `pideploy build` made for a host of pideploy.json, for commands that take it when no
 * store path is given (`copy`, `activate`, `diff`); a clear error naming what to do when there is
 * none. `given` is the hint's form of the flag that would name the path instead.
 */
export function requireBuiltBundle(config: ResolvedConfig | undefined, host: string, given: { readonly command: string; readonly flag: string }): BuiltBundle {
  const configured = config?.hosts.some((entry) => entry.name === host) === true;
  const built = configured && config !== undefined ? builtBundleOf(config, host) : undefined;
  if (built !== undefined) return built;
  if (!configured) {
    throw new PideployError({
      code: 'PIDEPLOY_USAGE',
      message: `${host} is not a host of ${config === undefined ? 'a pideploy.json (none found)' : 'pideploy.json'}: give the store path with ${given.flag}`,
      hint: `pideploy ${given.command} ${host} ${given.flag} /nix/store/…`,
    });
  }
  throw new PideployError({
    code: 'PIDEPLOY_USAGE',
    message: `${host} has no built bundle yet`,
    hint: `pideploy build ${host} first (or give the store path with ${given.flag})`,
  });
}

import { PideployError } from '@pideploy/core';
import { closest, type ResolvedConfig, type ResolvedHost } from './config.js';

/** Matches a host name against a glob with `*` and `?` (no other special characters). */
function globMatches(glob: string, name: string): boolean {
  const pattern = glob.replace(/[.+^${}()|[\]\\]/gu, '\\$&').replaceAll('*', '.*').replaceAll('?', '.');
  return new RegExp(`^${pattern}$`, 'u').test(name);
}

/**
 * Picks hosts by name, glob (`pi*`) or tag (`@kitchen`); no selector means every host. Keeps
 * file order and drops duplicates. A selector that matches nothing is an error (with a
 * "did you mean"), so a typo never silently deploys to fewer machines than intended.
 */
export function selectHosts(config: ResolvedConfig, selectors: readonly string[]): readonly ResolvedHost[] {
  if (selectors.length === 0) return config.hosts;
  const chosen = new Set<string>();
  for (const selector of selectors) {
    const matches = config.hosts.filter((host) =>
      selector.startsWith('@') ? host.tags.includes(selector.slice(1)) : globMatches(selector, host.name),
    );
    if (matches.length === 0) {
      const isTag = selector.startsWith('@');
      const candidates = isTag ? [...new Set(config.hosts.flatMap((host) => host.tags.map((tag) => `@${tag}`)))] : config.hosts.map((host) => host.name);
      const suggestion = closest(selector, candidates);
      throw new PideployError({
        code: 'PIDEPLOY_UNKNOWN_HOST',
        message: `${isTag ? 'no host has the tag' : 'no host named'} "${isTag ? selector.slice(1) : selector}" in ${config.file}`,
        hint:
          suggestion !== undefined
            ? `did you mean "${suggestion}"?`
            : candidates.length > 0
              ? `${isTag ? 'tags' : 'hosts'}: ${candidates.join(', ')}`
              : 'add it under "hosts" in pideploy.json',
      });
    }
    for (const host of matches) chosen.add(host.name);
  }
  return config.hosts.filter((host) => chosen.has(host.name));
}

import { PideployError } from '@pideploy/core';
import { selectorMatches, unmatchedSelector, type ResolvedConfig, type ResolvedHost } from './config.js';

/**
 * Picks hosts by name, glob (`pi*`) or tag (`@kitchen`); no selector means every host. Keeps
 * file order and drops duplicates. A selector that matches nothing is an error (with a
 * "did you mean"), so a typo never silently deploys to fewer machines than intended.
 */
export function selectHosts(config: ResolvedConfig, selectors: readonly string[]): readonly ResolvedHost[] {
  if (selectors.length === 0) return config.hosts;
  const chosen = new Set<string>();
  for (const selector of selectors) {
    const problem = unmatchedSelector(config.hosts, selector);
    if (problem !== undefined) throw new PideployError({ code: 'PIDEPLOY_UNKNOWN_HOST', message: `${problem.message} in ${config.file}`, hint: problem.hint });
    for (const host of config.hosts) if (selectorMatches(selector, host)) chosen.add(host.name);
  }
  return config.hosts.filter((host) => chosen.has(host.name));
}

/**
 * OpenSSH's host pattern language (`match.c`), shared by `ssh_config` `Host` lines and
 * `known_hosts` host fields: `*` matches any run of characters, `?` exactly one, a leading `!`
 * negates, and a comma- or space-separated list matches when some positive pattern matches and no
 * negated one does. `Host` lines match case-sensitively (`match_pattern`), known_hosts host
 * fields ignore case (`match_hostname`).
 */

/** True when `text` matches one wildcard `pattern` (`*`, `?`); case-sensitive unless `ignoreCase`. */
export function matchWildcard(text: string, pattern: string, ignoreCase = false): boolean {
  const subject = ignoreCase ? text.toLowerCase() : text;
  const glob = ignoreCase ? pattern.toLowerCase() : pattern;
  // Iterative glob matching with single-star backtracking: linear in practice, no regex building.
  let textIndex = 0;
  let globIndex = 0;
  let starGlob = -1;
  let starText = 0;
  while (textIndex < subject.length) {
    const globChar = glob[globIndex];
    if (globChar === '*') {
      starGlob = globIndex;
      starText = textIndex;
      globIndex += 1;
    } else if (globChar !== undefined && (globChar === '?' || globChar === subject[textIndex])) {
      globIndex += 1;
      textIndex += 1;
    } else if (starGlob !== -1) {
      globIndex = starGlob + 1;
      starText += 1;
      textIndex = starText;
    } else {
      return false;
    }
  }
  while (glob[globIndex] === '*') globIndex += 1;
  return globIndex === glob.length;
}

/**
 * Matches `host` against a list of patterns, OpenSSH style: 1 when a positive pattern matches and
 * no negated one does, -1 when a negated pattern matches (an explicit refusal), 0 otherwise.
 */
export function matchPatternList(host: string, patterns: readonly string[], ignoreCase = false): -1 | 0 | 1 {
  let matched = false;
  for (const raw of patterns) {
    if (raw === '') continue;
    const negated = raw.startsWith('!');
    const pattern = negated ? raw.slice(1) : raw;
    if (matchWildcard(host, pattern, ignoreCase)) {
      if (negated) return -1;
      matched = true;
    }
  }
  return matched ? 1 : 0;
}

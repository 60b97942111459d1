import { createHash } from 'node:crypto';
import { readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';

/**
 * Fault injection for tests of code that talks to GitHub: `<root>/faults.json` holds a list of
 * {@link FaultRule}s, read again on every request. The first rule that matches a request (and
 * has not used up its `times`) shapes the answer. How often each rule applied is counted in
 * `<root>/faults-state.json`; rewriting faults.json (new content or mtime) starts the counts afresh.
 */

/** One fault as written in faults.json. */
export interface FaultRule {
  /**
   * Which requests it applies to. Starting with `^`: a regular expression tested against the
   * request target (path and query). Otherwise a prefix of the request target.
   */
  readonly match: string;
  /** Only requests with this method (default: any). */
  readonly method?: string | undefined;
  /**
   * Answer with this status instead of the real response. With `status` or `body` the rule
   * replaces the response; without either it modifies the real one (headers, delay, truncation).
   */
  readonly status?: number | undefined;
  /** Headers added to (or overriding) the response's headers. */
  readonly headers?: Readonly<Record<string, string>> | undefined;
  /** The body of a replacing response (default: `{"message":"<reason phrase>"}`). A string is sent as UTF-8. */
  readonly body?: string | undefined;
  /** Send the full Content-Length but only this many body bytes, then cut the connection. */
  readonly truncateAfterBytes?: number | undefined;
  /** Wait this long before answering (a stalled server: use more than the client's timeout). */
  readonly delayMs?: number | undefined;
  /** How many matching requests it applies to (default: all of them). */
  readonly times?: number | undefined;
}

/** GitHub's message for an exhausted rate limit (403, `x-ratelimit-remaining: 0`). */
export const GITHUB_RATE_LIMIT_MESSAGE =
  "API rate limit exceeded for 127.0.0.1. (But here's the good news: Authenticated requests get a higher rate limit. Check out the documentation for more details.)";

/** A fault that answers like GitHub's exhausted rate limit: 403, remaining 0, reset in an hour. */
export function githubRateLimitFault(options: {
  /** Requests it applies to (default `/repos/`, the API). */
  readonly match?: string | undefined;
  /** How many requests get the 403 (default: all). */
  readonly times?: number | undefined;
  /** Unix seconds of `x-ratelimit-reset` (default: one hour from now). */
  readonly resetEpochSeconds?: number | undefined;
} = {}): FaultRule {
  const reset = options.resetEpochSeconds ?? Math.floor(Date.now() / 1000) + 3600;
  return {
    match: options.match ?? '/repos/',
    status: 403,
    headers: {
      'content-type': 'application/json; charset=utf-8',
      'x-ratelimit-limit': '60',
      'x-ratelimit-remaining': '0',
      'x-ratelimit-used': '60',
      'x-ratelimit-reset': String(reset),
      'x-ratelimit-resource': 'core',
    },
    body: JSON.stringify({
      message: GITHUB_RATE_LIMIT_MESSAGE,
      documentation_url: 'https://docs.github.com/rest/overview/resources-in-the-rest-api#rate-limiting',
    }),
    ...(options.times === undefined ? {} : { times: options.times }),
  };
}

/** Parses and checks faults.json (pure). Throws an Error that says which rule is wrong and why. */
export function parseFaultRules(text: string): FaultRule[] {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new Error(`faults.json is not JSON: ${(error as Error).message}`);
  }
  if (!Array.isArray(value)) throw new Error('faults.json must hold a JSON array of rules');
  return value.map((entry: unknown, index) => {
    const problem = (what: string): Error => new Error(`faults.json rule ${index}: ${what}`);
    if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) throw problem('is not an object');
    const rule = entry as Record<string, unknown>;
    const known = new Set(['match', 'method', 'status', 'headers', 'body', 'truncateAfterBytes', 'delayMs', 'times']);
    for (const key of Object.keys(rule)) if (!known.has(key)) throw problem(`unknown property "${key}"`);
    if (typeof rule['match'] !== 'string' || rule['match'] === '') throw problem('"match" must be a non-empty string');
    if (rule['match'].startsWith('^')) {
      try {
        new RegExp(rule['match'], 'u');
      } catch (error) {
        throw problem(`"match" is not a valid regular expression: ${(error as Error).message}`);
      }
    }
    if (rule['method'] !== undefined && typeof rule['method'] !== 'string') throw problem('"method" must be a string');
    if (rule['status'] !== undefined && !(Number.isInteger(rule['status']) && (rule['status'] as number) >= 100 && (rule['status'] as number) <= 599)) {
      throw problem('"status" must be an HTTP status code');
    }
    if (rule['headers'] !== undefined) {
      const headers = rule['headers'];
      if (typeof headers !== 'object' || headers === null || Array.isArray(headers) || Object.values(headers).some((header) => typeof header !== 'string')) {
        throw problem('"headers" must map names to strings');
      }
    }
    if (rule['body'] !== undefined && typeof rule['body'] !== 'string') throw problem('"body" must be a string');
    for (const key of ['truncateAfterBytes', 'delayMs', 'times'] as const) {
      const number = rule[key];
      if (number !== undefined && !(Number.isInteger(number) && (number as number) >= 0)) throw problem(`"${key}" must be a non-negative integer`);
    }
    return rule as unknown as FaultRule;
  });
}

/** True when `rule` is about this request, ignoring its `times` (pure). */
export function faultMatches(rule: FaultRule, method: string, target: string): boolean {
  if (rule.method !== undefined && rule.method.toUpperCase() !== method.toUpperCase()) return false;
  if (rule.match.startsWith('^')) return new RegExp(rule.match, 'u').test(target);
  return target.startsWith(rule.match);
}

/**
 * The index of the rule that applies to a request: the first that matches and has been applied
 * fewer than `times` times (`appliedCounts[i]`, missing = 0). Undefined when none (pure).
 */
export function selectFault(rules: readonly FaultRule[], appliedCounts: readonly number[], method: string, target: string): number | undefined {
  const index = rules.findIndex(
    (rule, ruleIndex) => faultMatches(rule, method, target) && (rule.times === undefined || (appliedCounts[ruleIndex] ?? 0) < rule.times),
  );
  return index === -1 ? undefined : index;
}

/** The file names of fault injection inside the server root. */
export function faultFiles(root: string): { readonly rules: string; readonly state: string } {
  return { rules: path.join(root, 'faults.json'), state: path.join(root, 'faults-state.json') };
}

/** A fault chosen for a request, or a broken faults.json. */
export type FaultLookup =
  | { readonly kind: 'none' }
  | { readonly kind: 'fault'; readonly index: number; readonly rule: FaultRule }
  | { readonly kind: 'invalid'; readonly message: string };

/**
 * Reads faults.json (if any), picks the rule for this request and counts it. Synchronous on
 * purpose: a request's read-count-write cannot interleave with another's in this process.
 */
export function takeFault(root: string, method: string, target: string): FaultLookup {
  const files = faultFiles(root);
  let text: string;
  let stamp: string;
  try {
    const stats = statSync(files.rules);
    text = readFileSync(files.rules, 'utf8');
    stamp = `${stats.mtimeMs}:${stats.size}:${stats.ino}`;
  } catch {
    return { kind: 'none' };
  }
  let rules: FaultRule[];
  try {
    rules = parseFaultRules(text);
  } catch (error) {
    return { kind: 'invalid', message: (error as Error).message };
  }
  const digest = createHash('sha256').update(stamp).update('\0').update(text).digest('hex');
  let applied: number[] = [];
  try {
    const state = JSON.parse(readFileSync(files.state, 'utf8')) as { digest?: unknown; applied?: unknown };
    if (state.digest === digest && Array.isArray(state.applied)) applied = state.applied.map((count) => (typeof count === 'number' ? count : 0));
  } catch {
    // no state yet: nothing applied
  }
  const index = selectFault(rules, applied, method, target);
  if (index === undefined) return { kind: 'none' };
  applied = rules.map((_, ruleIndex) => (applied[ruleIndex] ?? 0) + (ruleIndex === index ? 1 : 0));
  const partial = `${files.state}.partial-${process.pid}`;
  writeFileSync(partial, `${JSON.stringify({ digest, applied })}\n`);
  renameSync(partial, files.state);
  return { kind: 'fault', index, rule: rules[index] as FaultRule };
}

/** Writes faults.json (atomically) and forgets earlier counts; an empty list removes the file. */
export function writeFaultRules(root: string, rules: readonly FaultRule[]): void {
  const files = faultFiles(root);
  rmSync(files.state, { force: true });
  if (rules.length === 0) {
    rmSync(files.rules, { force: true });
    return;
  }
  const partial = `${files.rules}.partial-${process.pid}`;
  writeFileSync(partial, `${JSON.stringify(rules, null, 2)}\n`);
  renameSync(partial, files.rules);
}

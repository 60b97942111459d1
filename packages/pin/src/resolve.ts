import { PideployError, type PideployContext } from '@pideploy/core';
import { runProcess } from '@pideploy/nix';
import { networkError } from './download.js';
import { pinError } from './errors.js';
import {
  classifyGithubApiResponse,
  describeRef,
  githubApiHeaders,
  githubCommitApiUrl,
  githubGitUrl,
  githubRepositoryApiUrl,
  isFullRev,
  lsRemoteArgv,
  parseLsRemoteOutput,
  type GithubEndpoints,
  type GithubRef,
  type GithubRepository,
} from './github.js';
import { withRetries, type RetryPolicy } from './retry.js';

/** Input of {@link resolveGithubRev}. */
export interface ResolveGithubRevInput {
  /** The repository. */
  readonly repository: GithubRepository;
  /** The branch, tag or (possibly abbreviated) commit. */
  readonly ref: GithubRef;
  /** API and archive/git bases. */
  readonly endpoints: GithubEndpoints;
  /** GitHub token, sent as `Authorization: Bearer` to the API only (never logged). */
  readonly token?: string | undefined;
  /** Retries of transient API failures before falling back to git. */
  readonly retryPolicy: RetryPolicy;
  /** Kill `git ls-remote` after this long (default 60 s). */
  readonly gitTimeoutMs?: number | undefined;
}

/** A resolved commit and how it was found. */
export interface ResolvedRev {
  /** The full 40-hex commit SHA. */
  readonly rev: string;
  /** `given` (a full SHA needs no lookup), `api` or `git` (the `git ls-remote` fallback). */
  readonly via: 'given' | 'api' | 'git';
}

type ApiAttempt = { readonly kind: 'ok'; readonly rev: string } | { readonly kind: 'unavailable'; readonly error: PideployError };

async function askApi(input: ResolveGithubRevInput, context: PideployContext): Promise<ApiAttempt> {
  const url = githubCommitApiUrl(input.endpoints.apiBase, input.repository, input.ref);
  const { owner, repo } = input.repository;
  const what = `${describeRef(input.ref)} of ${owner}/${repo}`;
  try {
    return await withRetries(
      async () => {
        let response: Response;
        try {
          response = await fetch(url, { headers: githubApiHeaders(input.token), signal: AbortSignal.any([context.signal, AbortSignal.timeout(30_000)]) });
        } catch (error) {
          if (context.signal.aborted) throw new PideployError({ code: 'PIDEPLOY_INTERRUPTED', message: 'interrupted', cause: error });
          throw networkError(url, error);
        }
        const body = await response.text();
        const outcome = classifyGithubApiResponse(response.status, response.headers, body);
        switch (outcome.kind) {
          case 'ok':
            return { kind: 'ok', rev: outcome.rev } as const;
          case 'not-found':
            throw await notFoundError(input, context, what);
          case 'rate-limited': {
            const reset = outcome.resetEpochSeconds === undefined ? '' : ` until ${new Date(outcome.resetEpochSeconds * 1000).toISOString()}`;
            throw pinError('PIDEPLOY_PIN_RATE_LIMITED', `GitHub API rate limit exceeded${reset} while resolving ${what}`, 'set GITHUB_TOKEN (a GitHub token raises the limit from 60 to 5,000 requests an hour), or wait');
          }
          case 'transient':
            throw pinError('PIDEPLOY_PIN_HTTP_ERROR', `GitHub API failed while resolving ${what}: ${outcome.reason}`, 'GitHub has a problem; try again later', { isRetryable: true });
          case 'failed':
            throw pinError('PIDEPLOY_PIN_HTTP_ERROR', `GitHub API failed while resolving ${what}: ${outcome.reason}`, response.status === 401 ? 'check GITHUB_TOKEN: GitHub refused it' : 'check the repository name and PIDEPLOY_GITHUB_API');
        }
      },
      {
        policy: input.retryPolicy,
        signal: context.signal,
        onRetry: (error, retry, delayMs) =>
          context.reporter.emit({ type: 'log', level: 'warn', message: `${error.message}; retrying in ${(delayMs / 1000).toFixed(1)} s (${retry} of ${input.retryPolicy.attempts - 1} retries)` }),
      },
    );
  } catch (error) {
    if (!PideployError.isInstance(error) || error.code === 'PIDEPLOY_PIN_NOT_FOUND' || error.code === 'PIDEPLOY_INTERRUPTED' || error.code === 'PIDEPLOY_USAGE') throw error;
    return { kind: 'unavailable', error };
  }
}

/** After a 404/422 from the commits endpoint: says whether the repository or the ref is missing. */
async function notFoundError(input: ResolveGithubRevInput, context: PideployContext, what: string): Promise<PideployError> {
  const { owner, repo } = input.repository;
  let repositoryMissing = false;
  try {
    const response = await fetch(githubRepositoryApiUrl(input.endpoints.apiBase, input.repository), {
      headers: { ...githubApiHeaders(input.token), accept: 'application/vnd.github+json' },
      signal: AbortSignal.any([context.signal, AbortSignal.timeout(30_000)]),
    });
    await response.arrayBuffer();
    repositoryMissing = response.status === 404;
  } catch {
    // keep the general message
  }
  if (repositoryMissing) {
    return pinError('PIDEPLOY_PIN_NOT_FOUND', `GitHub has no repository ${owner}/${repo}`, `check the name (OWNER/REPO); for a private repository set GITHUB_TOKEN`);
  }
  return pinError('PIDEPLOY_PIN_NOT_FOUND', `GitHub has no ${what}`, input.ref.kind === 'rev' ? 'check the commit SHA' : `check the ${input.ref.kind} name (git ls-remote ${githubGitUrl(input.endpoints.archiveBase, input.repository)} lists them)`);
}

async function askGit(input: ResolveGithubRevInput, context: PideployContext, apiError: PideployError): Promise<string> {
  const { owner, repo } = input.repository;
  const what = `${describeRef(input.ref)} of ${owner}/${repo}`;
  if (input.ref.kind === 'rev') {
    throw retag(apiError, `cannot resolve the abbreviated ${what}: ${apiError.message}; git ls-remote cannot expand abbreviations`, 'give the full 40-hex commit SHA with --rev');
  }
  const gitUrl = githubGitUrl(input.endpoints.archiveBase, input.repository);
  const argv = lsRemoteArgv(gitUrl, input.ref);
  context.reporter.emit({ type: 'log', level: 'warn', message: `${apiError.message}; asking git instead: ${argv.join(' ')}` });
  let output: string;
  try {
    output = (
      await runProcess(argv, {
        env: { GIT_TERMINAL_PROMPT: '0', GIT_ASKPASS: '', SSH_ASKPASS: '', LC_ALL: 'C' },
        signal: context.signal,
        timeoutMs: input.gitTimeoutMs ?? 60_000,
        failureMessage: 'git ls-remote failed',
      })
    ).stdout;
  } catch (error) {
    if (!PideployError.isInstance(error) || error.code === 'PIDEPLOY_INTERRUPTED') throw error;
    const stderr = error.commandFailure?.stderrTail ?? '';
    if (/not found|repository .* does not exist|HTTP 404/iu.test(stderr) && apiError.code !== 'PIDEPLOY_PIN_RATE_LIMITED') {
      throw pinError('PIDEPLOY_PIN_NOT_FOUND', `there is no repository ${owner}/${repo} at ${gitUrl}`, 'check the name (OWNER/REPO)');
    }
    const gitReason = error.message;
    if (apiError.code === 'PIDEPLOY_PIN_RATE_LIMITED') {
      throw retag(apiError, `${apiError.message}, and the git fallback failed too (${gitReason})`, apiError.hint ?? 'set GITHUB_TOKEN');
    }
    throw new PideployError({
      code: apiError.code === 'PIDEPLOY_PIN_NETWORK' && error.code === 'PIDEPLOY_COMMAND_FAILED' ? 'PIDEPLOY_PIN_NETWORK' : 'PIDEPLOY_PIN_RESOLVE_FAILED',
      message: `cannot resolve ${what}: ${apiError.message}; ${gitReason}`,
      hint: apiError.hint ?? 'check your network connection and try again',
      cause: error,
      commandFailure: error.commandFailure,
    });
  }
  const rev = parseLsRemoteOutput(output, input.ref);
  if (rev === undefined) {
    throw pinError('PIDEPLOY_PIN_NOT_FOUND', `${owner}/${repo} has no ${describeRef(input.ref)} (git ls-remote ${gitUrl})`, `check the ${input.ref.kind} name`);
  }
  return rev;
}

function retag(error: PideployError, message: string, hint: string): PideployError {
  return new PideployError({ code: error.code, message, hint, cause: error, isRetryable: error.isRetryable });
}

/**
 * Resolves a GitHub branch, tag or abbreviated commit to a full commit SHA: first the REST API
 * (`GET /repos/O/R/commits/refs/heads/B` with `Accept: application/vnd.github.sha`, token when
 * given, transient failures retried), then, when the API fails for any reason but "not found"
 * (rate limit, 5xx, unreachable), `git ls-remote` against `<archive base>/O/R.git` with an exact
 * ref match (annotated tags peeled). A full 40-hex SHA is returned as it is.
 * @throws PideployError `PIDEPLOY_PIN_NOT_FOUND`, `PIDEPLOY_PIN_RATE_LIMITED` (API limited and git failed),
 *   `PIDEPLOY_PIN_NETWORK`, `PIDEPLOY_PIN_RESOLVE_FAILED`, `PIDEPLOY_INTERRUPTED`.
 */
export async function resolveGithubRev(input: ResolveGithubRevInput, context: PideployContext): Promise<ResolvedRev> {
  if (input.ref.kind === 'rev' && isFullRev(input.ref.rev)) return { rev: input.ref.rev, via: 'given' };
  const api = await askApi(input, context);
  if (api.kind === 'ok') return { rev: api.rev, via: 'api' };
  const rev = await askGit(input, context, api.error);
  context.reporter.emit({ type: 'log', level: 'info', message: `resolved ${describeRef(input.ref)} of ${input.repository.owner}/${input.repository.repo} to ${rev} with git ls-remote` });
  return { rev, via: 'git' };
}

import { PideployError } from '@pideploy/core';
import type { CommandSpec } from './command.js';

/** Shells `pideploy completion` writes scripts for. */
export const COMPLETION_SHELLS = ['bash', 'zsh', 'fish'] as const;

/** Flags whose value is a host or @tag (`--on`, `deploy --canary`): completed with those only. */
const HOST_VALUED_FLAGS: readonly string[] = ['--on', '--canary'];

/** The hosts of the pideploy.json in reach, for completing a command's host positionals. */
export interface CompletionHosts {
  readonly names: readonly string[];
  readonly tags: readonly string[];
}

/**
 * Words that may follow `prefix` (subcommands, then the command's flags; for a command whose
 * positionals are hosts, also the host names and `@tag`s of `hosts`; after `--on` or `--canary`, only those).
 * `previous` is the word just before the one being completed, flags included. Pure.
 */
export function completionWords(commands: readonly CommandSpec[], prefix: readonly string[], globalFlags: readonly string[], hosts?: CompletionHosts, previous?: string): string[] {
  const exact = findCompletedCommand(commands, prefix);
  if (exact !== undefined) {
    const hostWords = exact.takesHosts === true && hosts !== undefined ? [...hosts.names, ...hosts.tags.map((tag) => `@${tag}`)] : [];
    if (previous !== undefined && HOST_VALUED_FLAGS.includes(previous) && exact.flags[previous.slice(2)] !== undefined) return hostWords;
    return [...hostWords, ...Object.keys(exact.flags).map((flag) => `--${flag}`), ...globalFlags.map((flag) => `--${flag}`)];
  }
  const next = new Set<string>();
  for (const command of commands) {
    if (prefix.every((word, index) => command.path[index] === word) && command.path.length > prefix.length) {
      next.add(command.path[prefix.length] as string);
    }
  }
  return [...next].sort();
}

/** The command the words typed so far name, if they name one. */
export function findCompletedCommand(commands: readonly CommandSpec[], prefix: readonly string[]): CommandSpec | undefined {
  return commands.find((command) => command.path.length <= prefix.length && command.path.every((word, index) => prefix[index] === word));
}

/**
 * The completion script for a shell. The scripts ask `pideploy __complete <words…>` for candidates,
 * so they stay right as commands change.
 */
export function renderCompletionScript(shell: string): string {
  switch (shell) {
    case 'bash':
      return `# pideploy completion for bash: source <(pideploy completion bash)
_pideploy() {
  local current=\${COMP_WORDS[COMP_CWORD]}
  COMPREPLY=( $(compgen -W "$(pideploy __complete "\${COMP_WORDS[@]:1:COMP_CWORD-1}" 2>/dev/null)" -- "$current") )
}
complete -o default -F _pideploy pideploy
`;
    case 'zsh':
      return `#compdef pideploy
# pideploy completion for zsh: source <(pideploy completion zsh)
_pideploy() {
  local -a candidates
  candidates=(\${(f)"$(pideploy __complete \${words[2,CURRENT-1]} 2>/dev/null)"})
  _describe 'pideploy' candidates
}
compdef _pideploy pideploy
`;
    case 'fish':
      return `# pideploy completion for fish: pideploy completion fish > ~/.config/fish/completions/pideploy.fish
complete -c pideploy -f -a '(pideploy __complete (commandline -opc)[2..-1])'
`;
    default:
      throw new PideployError({
        code: 'PIDEPLOY_USAGE',
        message: `no completion for shell "${shell}"`,
        hint: `pick one of ${COMPLETION_SHELLS.join(', ')}: pideploy completion bash`,
      });
  }
}

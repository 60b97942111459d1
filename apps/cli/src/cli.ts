import { parseArgs, type ParseArgsConfig } from 'node:util';
import { PIDEPLOY_VERSION, PideployError, createBaseContext, toPideployError } from '@pideploy/core';
import type { CommandSpec, FlagSpec, GlobalFlags } from './command.js';
import { COMMANDS } from './commands.js';
import { completionWords, findCompletedCommand, renderCompletionScript, type CompletionHosts } from './completion.js';
import { ExitCode, type CliIo } from './io.js';
import { createRenderer } from './render.js';

const GLOBAL_FLAGS: Readonly<Record<string, FlagSpec>> = {
  config: { type: 'string', valueName: 'FILE', description: 'use this pideploy.json instead of searching up from the current directory' },
  json: { type: 'boolean', description: 'NDJSON events and the result on stdout; logs stay on stderr' },
  verbose: { type: 'boolean', short: 'v', description: 'more detail, including failed commands\' stderr' },
  yes: { type: 'boolean', short: 'y', description: 'do not ask for confirmation' },
  help: { type: 'boolean', short: 'h', description: 'show help' },
};

/**
 * Runs the pideploy CLI and returns its exit code (0 ok, 1 failure, 2 usage error,
 * 130 interrupted). Never calls `process.exit`; only `bin.ts` does.
 */
export async function runCli(argv: readonly string[], io: CliIo): Promise<number> {
  if (argv[0] === '--version' || argv[0] === '-V') {
    io.stdout.write(`${PIDEPLOY_VERSION}\n`);
    return ExitCode.ok;
  }
  if (argv[0] === '__complete') {
    // Asked by the shell completion scripts: one candidate per line for the words typed so far.
    const typed = argv.slice(1).filter((word) => !word.startsWith('-'));
    // A command that takes hosts also gets those of the pideploy.json in reach (none when there is none, or it is broken).
    const hosts = findCompletedCommand(COMMANDS, typed)?.takesHosts === true ? await completionHosts(io.cwd) : undefined;
    io.stdout.write(completionWords(COMMANDS, typed, Object.keys(GLOBAL_FLAGS), hosts, argv.at(-1)).map((word) => `${word}\n`).join(''));
    return ExitCode.ok;
  }
  if (argv[0] === 'completion') {
    const shell = argv[1] ?? '';
    try {
      io.stdout.write(renderCompletionScript(shell));
      return ExitCode.ok;
    } catch (error) {
      createRenderer(io, { json: false, verbose: false }).failure(toPideployError(error), false);
      return ExitCode.usage;
    }
  }
  const json = argv.includes('--json');
  const verbose = argv.includes('--verbose') || argv.includes('-v');
  const renderer = createRenderer(io, { json, verbose });
  const command = findCommand(argv);
  if (command === undefined) {
    const words = argv.filter((word) => !word.startsWith('-'));
    if (words.length === 0 || argv.includes('--help') || argv.includes('-h') || words[0] === 'help') {
      io.stdout.write(mainHelp(words[0] === 'help' ? words.slice(1) : words));
      return words.length === 0 && !argv.includes('--help') && !argv.includes('-h') && words[0] !== 'help'
        ? ExitCode.usage
        : ExitCode.ok;
    }
    renderer.failure(
      new PideployError({
        code: 'PIDEPLOY_USAGE',
        message: `unknown command: ${words.join(' ')}`,
        hint: 'run `pideploy --help` to see the commands',
      }),
      verbose,
    );
    return ExitCode.usage;
  }
  const rest = argv.slice(command.path.length);
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({
      args: [...rest],
      options: toParseArgsOptions({ ...GLOBAL_FLAGS, ...command.flags }),
      allowPositionals: true,
      strict: true,
      tokens: true,
    });
  } catch (error) {
    renderer.failure(
      new PideployError({
        code: 'PIDEPLOY_USAGE',
        message: (error as Error).message.split('\n')[0] ?? 'invalid arguments',
        hint: `usage: pideploy ${command.usage}`,
      }),
      verbose,
    );
    return ExitCode.usage;
  }
  if (parsed.values['help'] === true) {
    io.stdout.write(commandHelp(command));
    return ExitCode.ok;
  }
  const global: GlobalFlags = {
    json,
    verbose,
    yes: parsed.values['yes'] === true,
    config: typeof parsed.values['config'] === 'string' ? parsed.values['config'] : undefined,
  };
  const context = createBaseContext({ reporter: renderer, signal: io.signal });
  try {
    const handler = await command.load();
    // What follows `--` is kept apart too (the positionals hold it as well, for commands that do not care).
    const terminator = parsed.tokens?.find((token) => token.kind === 'option-terminator');
    const afterDoubleDash = terminator === undefined ? undefined : rest.slice(terminator.index + 1);
    const result = await handler({ positionals: parsed.positionals, afterDoubleDash, flags: parsed.values, global, io, renderer, context });
    renderer.result(result.value, result.text);
    // A handler that reports per-item outcomes (deploy) returns even when cancelled: still 130.
    if (io.signal?.aborted === true) {
      renderer.failure(new PideployError({ code: 'PIDEPLOY_INTERRUPTED', message: 'interrupted', hint: 'run the command again to finish; hosts already switched stay switched' }), verbose);
      return ExitCode.interrupted;
    }
    return result.exitCode ?? ExitCode.ok;
  } catch (error) {
    const pideployError = toPideployError(error);
    if (io.signal?.aborted === true) {
      renderer.failure(new PideployError({ code: 'PIDEPLOY_INTERRUPTED', message: 'interrupted', cause: error }), verbose);
      return ExitCode.interrupted;
    }
    renderer.failure(pideployError, verbose);
    return pideployError.code === 'PIDEPLOY_USAGE' ? ExitCode.usage : ExitCode.failure;
  }
}

function findCommand(argv: readonly string[]): CommandSpec | undefined {
  return COMMANDS.find((command) => command.path.every((word, index) => argv[index] === word));
}

function toParseArgsOptions(flags: Readonly<Record<string, FlagSpec>>): NonNullable<ParseArgsConfig['options']> {
  return Object.fromEntries(
    Object.entries(flags).map(([name, flag]) => [
      name,
      { type: flag.type, ...(flag.multiple ? { multiple: true } : {}), ...(flag.short ? { short: flag.short } : {}) },
    ]),
  );
}

function formatFlags(flags: Readonly<Record<string, FlagSpec>>): string {
  return Object.entries(flags)
    .map(([name, flag]) => {
      const left = `${flag.short ? `-${flag.short}, ` : '    '}--${name}${flag.type === 'string' ? ` ${flag.valueName ?? 'VALUE'}` : ''}`;
      return `  ${left.padEnd(26)} ${flag.description}`;
    })
    .join('\n');
}

function commandHelp(command: CommandSpec): string {
  const flags = Object.keys(command.flags).length > 0 ? `\nOptions:\n${formatFlags(command.flags)}\n` : '';
  return `Usage: pideploy ${command.usage}\n\n${command.summary}\n${flags}\nGlobal options:\n${formatFlags(GLOBAL_FLAGS)}\n\nExample:\n  $ ${command.example}\n`;
}

function mainHelp(topic: readonly string[]): string {
  const matching = COMMANDS.filter((command) => topic.every((word, index) => command.path[index] === word));
  const exact = matching.find((command) => command.path.length === topic.length);
  if (exact !== undefined) return commandHelp(exact);
  const shown = matching.length > 0 ? matching : COMMANDS;
  const lines = shown.map((command) => `  ${command.usage.padEnd(46)} ${command.summary}`).join('\n');
  return `pideploy ${PIDEPLOY_VERSION} — build NixOS for your Pi here, copy it over one SSH connection, switch with one sudo password

Usage: pideploy <command> [options]

Commands:
${lines}

Global options:
${formatFlags(GLOBAL_FLAGS)}
      --version              print the version

Shell completion: source <(pideploy completion bash|zsh), or pideploy completion fish

Example:
  $ ${shown[0]?.example ?? 'pideploy lab up'}

Run \`pideploy <command> --help\` for a command's options.
`;
}

/** The host names and tags of the pideploy.json found from `cwd` (loaded only for completing hosts), or undefined. */
async function completionHosts(cwd: string): Promise<CompletionHosts | undefined> {
  try {
    const { loadConfigIfPresent } = await import('@pideploy/sdk');
    const config = await loadConfigIfPresent({ cwd });
    return config === undefined ? undefined : { names: config.hosts.map((host) => host.name), tags: [...new Set(config.hosts.flatMap((host) => host.tags))].sort() };
  } catch {
    return undefined;
  }
}

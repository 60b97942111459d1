import type { PideployContext } from '@pideploy/core';
import type { CliIo } from './io.js';
import type { Renderer } from './render.js';

/** Flags every command accepts (DESIGN.md §4). */
export interface GlobalFlags {
  readonly json: boolean;
  readonly verbose: boolean;
  readonly yes: boolean;
  readonly config: string | undefined;
}

/** What a command handler receives. */
export interface CommandInvocation {
  /** Positionals after the command name (and subcommand, for grouped commands), those after `--` included. */
  readonly positionals: readonly string[];
  /** The arguments after `--` (a command to run elsewhere: `pideploy exec pi1 -- uptime`), or undefined without `--`. */
  readonly afterDoubleDash?: readonly string[] | undefined;
  /** Parsed command-specific flags. */
  readonly flags: Readonly<Record<string, string | boolean | (string | boolean)[] | undefined>>;
  readonly global: GlobalFlags;
  readonly io: CliIo;
  readonly renderer: Renderer;
  readonly context: PideployContext;
}

/** A command's result: data for `--json` and the text a person sees. */
export interface CommandResult {
  readonly value: unknown;
  readonly text: string;
  /** Exit code when not 0 (e.g. `lab exec` passes the remote command's code through). */
  readonly exitCode?: number | undefined;
}

/** One flag of a command, in `node:util` parseArgs terms. */
export interface FlagSpec {
  readonly type: 'string' | 'boolean';
  readonly multiple?: boolean;
  readonly short?: string;
  /** Shown in help. */
  readonly description: string;
  /** Placeholder for string flags in help, e.g. `N`. */
  readonly valueName?: string;
}

/** A command (or subcommand) of the CLI: its help and its lazily loaded handler. */
export interface CommandSpec {
  /** Words that select it, e.g. `['lab', 'up']`. */
  readonly path: readonly string[];
  /** e.g. `lab up [--hosts N] [--untrusted] [--nopasswd]`. */
  readonly usage: string;
  readonly summary: string;
  /** A runnable example shown in help. */
  readonly example: string;
  readonly flags: Readonly<Record<string, FlagSpec>>;
  /** Its positionals name hosts of pideploy.json (shell completion offers their names and `@tag`s). */
  readonly takesHosts?: boolean | undefined;
  /** Loads the handler only when the command runs (keeps `--help` fast). */
  readonly load: () => Promise<(invocation: CommandInvocation) => Promise<CommandResult>>;
}

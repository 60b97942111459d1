export { runCli } from './cli.js';
export { COMMANDS } from './commands.js';
export type { CommandInvocation, CommandResult, CommandSpec, FlagSpec, GlobalFlags } from './command.js';
export { ExitCode, createBufferIo, type CliIo } from './io.js';
export { createRenderer, describeEvent, formatBytes, formatDuration, type Renderer, type RendererOptions } from './render.js';

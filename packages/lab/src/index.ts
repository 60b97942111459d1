export { DEFAULT_LAB_DIR, labLayout, resolveLabDir, type LabHostLayout, type LabLayout } from './layout.js';
export { runCommand, runCommandAllowingFailure, type CommandOutput, type RunCommandOptions } from './run.js';

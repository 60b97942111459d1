import type { CommandInvocation, CommandResult } from '../command.js';

// placeholder until the lab API lands (replaced in the same series of commits)
export async function labUpCommand(_invocation: CommandInvocation): Promise<CommandResult> { throw new Error('not yet'); }
export const labDownCommand = labUpCommand;
export const labStatusCommand = labUpCommand;
export const labExecCommand = labUpCommand;

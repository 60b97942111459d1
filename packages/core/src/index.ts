export {
  PideployError,
  STDERR_TAIL_LINES,
  tailLines,
  toPideployError,
  type CommandFailure,
  type PideployErrorCode,
  type PideployErrorOptions,
} from './errors.js';
export {
  createCollectingReporter,
  describeActivated,
  silentReporter,
  type ActivationAction,
  type DeployEvent,
  type DeployPhase,
  type Reporter,
} from './events.js';
export { createBaseContext, type BaseContextOptions, type PideployContext } from './context.js';
export { BUNDLE_NOTES_DIR, CURRENT_CONFIGURATION_ROOT, SYSTEM_PROFILE } from './host-paths.js';
export { shellJoin, shellQuote } from './shell-quote.js';
export { stdinScriptBootstrap, stdinScriptLine } from './stdin-script.js';
export { PIDEPLOY_VERSION } from './version.js';

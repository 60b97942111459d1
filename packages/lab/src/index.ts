export {
  DEFAULT_ARCHIVE_PORT,
  assertRoot,
  labDown,
  labExec,
  labExecPrefix,
  labStatus,
  labUp,
  type LabExecOptions,
  type LabHostStatus,
  type LabOptions,
  type LabStatus,
  type LabUpOptions,
} from './lab.js';
export {
  LAB_DEPLOY_USER,
  LAB_MAX_HOSTS,
  LAB_SUDO_PASSWORD,
  parseHostCount,
  planLabHost,
  type LabHostPlan,
  type LabHostSettings,
  type LabSudoMode,
} from './host-plan.js';
export { DEFAULT_LAB_DIR, labLayout, resolveLabDir, type LabHostLayout, type LabLayout } from './layout.js';
export { LAB_LOCAL_NIX_CONFIG, labLocalNixEnv } from './nix-env.js';
export { runCommand, runCommandAllowingFailure, type CommandOutput, type RunCommandOptions } from './run.js';

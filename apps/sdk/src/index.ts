export {
  CONFIG_FILE_NAME,
  closest,
  findConfigFile,
  loadConfig,
  parseConfig,
  type BuildMode,
  type ConfigFile,
  type LoadConfigOptions,
  type ResolvedConfig,
  type ResolvedHost,
  type SudoMode,
} from './config.js';
export { selectHosts } from './select.js';
export {
  BUNDLE_ACTIVATE_SCRIPT,
  deploy,
  type DeployRequest,
  type DeployResult,
  type HostDeployResult,
  type PhaseTiming,
} from './deploy.js';

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

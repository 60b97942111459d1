export {
  CONFIG_FILE_NAME,
  closest,
  findConfigFile,
  findConfigFileIfAny,
  isSshTarget,
  loadConfigIfPresent,
  loadConfig,
  parseConfig,
  selectorMatches,
  unmatchedSelector,
  type BuildMode,
  type CacheCompression,
  type ConfigFile,
  type DeploySettings,
  type FleetCacheSettings,
  type HealthCheckSettings,
  type KeySettings,
  type LoadConfigOptions,
  type ResolvedConfig,
  type ResolvedHost,
  type SudoMode,
} from './config.js';
export { selectHosts } from './select.js';
export { deployRecordFile, hostsThatFailed, readDeployRecord, readDeployRecordOrEmpty, recordDeployResult, recordInstalledKeys, staleKeyPaths, type DeployRecord, type HostDeployRecord } from './deploy-record.js';
export { healthCheckSettingsFor, healthChecksFor } from './health-check.js';
export { BUNDLE_ACTIVATE_SCRIPT } from './activate-script.js';
export { readPinRecord } from './pins.js';
export {
  createHostBuilder,
  toplevelBuildKey,
  type HostBuild,
  type HostBuildSpec,
  type HostBuilder,
  type HostBuilderOptions,
} from './build-hosts.js';
export { mapConcurrently } from './concurrency.js';
export { runOnHosts, type HostRunResult, type RunOnHostsRequest, type RunOnHostsResult } from './exec.js';
export { describeKey, loadHostKeys, staleKeysOnHost, uploadKeysToHosts, type HostKeysResult, type UploadKeysRequest, type UploadKeysResult } from './keys.js';
export { builtBundleOf, readBundleToplevel, type BuiltBundle } from './built-bundle.js';
/** `<projectDir>/.pideploy`, where builds root their results (`@pideploy/nix`'s `gcRootPath`) and the fleet cache lives by default. */
export { projectStateDir } from '@pideploy/nix';
export { defaultCacheKeyName, openFleetCache, type FleetCache } from './fleet-cache.js';
export {
  checkDeployRequest,
  deploy,
  hostBuilderFor,
  specialisationFor,
  type DeployRequest,
  type DeployResult,
  type HostDeployResult,
  type PhaseTiming,
} from './deploy.js';
export { createBaseContext as createContext, type BaseContextOptions as CreateContextOptions, type PideployContext } from '@pideploy/core';
// Every stage as a namespace, for custom pipelines (or import the stage packages directly).
export * as activate from '@pideploy/activate';
export * as build from '@pideploy/build';
export * as bundle from '@pideploy/bundle';
export * as keys from '@pideploy/keys';
export * as pin from '@pideploy/pin';
export * as ssh from '@pideploy/ssh';
export * as transport from '@pideploy/transport';
export { DEFAULT_GENERATIONS_KEPT, collectGarbageOnHosts, type CollectGarbageRequest, type CollectGarbageResult, type HostGarbageResult } from './garbage.js';
export { checkNewHostName, withHostAdded, type HostEntry } from './edit-config.js';
export { replaceFile } from './replace-file.js';
export { HOST_PROBE_SCRIPT, nixSystemOfMachine, parseHostProbe, probeHost, type HostProbe } from './probe-host.js';
export { checkRollBackRequest, rollBackHosts, type HostRollbackResult, type RollBackHostsRequest, type RollBackHostsResult } from './rollback.js';
export type { FleetHostResult, FleetResult } from './host-connection.js';

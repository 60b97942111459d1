export { ACTIVATE_SCRIPT_TEMPLATE, CURRENT_CONFIGURATION_ROOT, SYSTEM_PROFILE } from './activate-script.js';
export {
  configurationEntry,
  nixValue,
  renderBundleExpression,
  type BundleBuildMode,
  type BundleExpressionInput,
  type BundleManifest,
  type BundleManifestBase,
  type BundlePin,
} from './expression.js';
export {
  collectConfigurationFiles,
  scanNixPathLiterals,
  type CollectConfigurationFilesOptions,
  type ConfigurationFiles,
  type NixPathLiteral,
  type NixPathScan,
} from './imports.js';
export {
  buildBundle,
  configurationGitState,
  planBundle,
  renderPlannedBundleExpression,
  type BuildBundleRequest,
  type BuildBundleResult,
  type BundlePlan,
  type BundleRequest,
} from './bundle.js';

export { ACTIVATE_SCRIPT_TEMPLATE, CURRENT_CONFIGURATION_ROOT, SYSTEM_PROFILE } from './activate-script.js';
export {
  BUNDLE_RESERVED_NAMES,
  bundleBuilderSystem,
  bundlePackageSetKey,
  configurationEntry,
  nixValue,
  renderBundleExpression,
  renderBundleListExpression,
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
  BATCH_ROOT_MIN_AGE_MS,
  buildBundle,
  buildBundles,
  bundleBatchKey,
  configurationGitState,
  instantiateBundles,
  planBundle,
  planBundleForHost,
  renderPlannedBundleExpression,
  type BuildBundleRequest,
  type BuildBundleResult,
  type BundlePlan,
  type BundleToInstantiate,
  type BundleRequest,
} from './bundle.js';

export {
  BUILD_MODES,
  DEFAULT_PIN_NAME,
  assertNixSystem,
  localNixSystem,
  renderBuildExpression,
  type BuildExpressionInput,
  type BuildMode,
} from './expression.js';
export {
  NixActivityType,
  NixResultType,
  createBuildLogTracker,
  derivationName,
  parseNixLogLine,
  storePathName,
  type BuildLogSummary,
  type BuildLogTracker,
  type BuildLogTrackerOptions,
  type NixLogEntry,
} from './internal-json.js';
export { nixErrorHeadline, stripAnsi } from '@pideploy/nix';
export { DOCTOR_HINT, nixErrorLocation, translateNixFailure, type NixFailureContext } from './nix-errors.js';
export { buildModeArguments, parseRemoteBuilder, renderBuildersSpec, type RemoteBuilder } from './builders.js';
export {
  binfmtMatchesSystem,
  checkBinfmt,
  checkDiskSpace,
  checkExtraPlatforms,
  doctor,
  emulationFix,
  extraPlatformsFix,
  parseBinfmtEntry,
  parseNixShowConfig,
  parseNixVersion,
  readBinfmtEntries,
  readNixPlatformSettings,
  type BinfmtEntry,
  type DoctorCheck,
  type DoctorFix,
  type DoctorOptions,
  type DoctorReport,
  type DoctorStatus,
  type NixPlatformSettings,
} from './doctor.js';
export {
  buildToplevel,
  derivationOutPath,
  dryBuildToplevel,
  gcRootPath,
  preflightEmulation,
  type BuildToplevelRequest,
  type BuildToplevelResult,
  type DryBuildResult,
} from './build.js';
// Kept here for callers of the build stage; they live in @pideploy/nix (the bundle stage uses them too).
export { NO_SEARCH_PATH_ARGUMENTS, pinnedNixEnv } from '@pideploy/nix';
export {
  checkNixSetting,
  nixOptionArguments,
  parseMaxJobs,
  parseNixSetting,
  type NixBuildOptions,
  type NixOptionArguments,
} from './nix-options.js';

export {
  DEFAULT_ARCHIVE_PORT,
  assertRoot,
  labDown,
  labExec,
  labCutSshSessions,
  labShapeLink,
  labExecPrefix,
  labRebootHost,
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
  LAB_MAX_INSTANCES,
  LAB_SUDO_LOG,
  LAB_SUDO_PASSWORD_CHECK_HOOK,
  LAB_SUDO_PASSWORD_CHECK_LOG,
  LAB_SUDO_EXITED_ARGV,
  LAB_SUDO_PASSWORD,
  parseHostCount,
  planLabHost,
  resolveLabInstance,
  type LabHostPlan,
  type LabHostSettings,
  type LabSudoMode,
} from './host-plan.js';
export { LAB_MAX_LINK_RATE_MBIT } from './hosts.js';
export { DEFAULT_LAB_DIR, labLayout, resolveLabDir, type LabHostLayout, type LabLayout } from './layout.js';
export { LAB_LOCAL_NIX_CONFIG, labLocalNixEnv } from './nix-env.js';
export { runCommand, runCommandAllowingFailure, type CommandOutput, type RunCommandOptions } from './run.js';
export * from './archive-server/index.js';
export {
  DEFAULT_FIXTURE_BRANCH,
  FIXTURE_GIT_IDENTITY,
  createFixtureRepository,
  type CreateFixtureRepositoryOptions,
  type FixtureCommit,
  type FixtureCommitInput,
  type FixtureRepository,
} from './git-repo.js';
export {
  AARCH64_BUSYBOX_PACKAGE,
  BINFMT_MISC_DIR,
  DEFAULT_LAB_CACHE_DIR,
  QEMU_AARCH64_BINFMT_CONF,
  ensureAarch64Busybox,
  ensureQemuAarch64Binfmt,
  isAarch64Elf,
  isAarch64ElfFile,
  parseBinfmtRegistration,
  privateAptOptions,
  removeQemuAarch64Binfmt,
  type Aarch64Busybox,
  type BinfmtRegistration,
  type EnsureAarch64BusyboxOptions,
  type QemuAarch64BinfmtRecord,
} from './aarch64.js';
export {
  MINI_NIXPKGS_BOOTSTRAP_PATH,
  MINI_NIXPKGS_DEFAULT_VERSION,
  MINI_NIXPKGS_FIXTURE_DIR,
  assembleMiniNixpkgs,
  resolveMiniNixpkgsFixtureDir,
  validateMiniNixpkgsVersion,
  type AssembleMiniNixpkgsOptions,
} from './mini-nixpkgs.js';

export {
  collectSshConfigValues,
  expandSshTokens,
  expandTilde,
  parseProxyJump,
  parseSshConfig,
  parseSshTarget,
  parseSshTimeMs,
  resolveSshHost,
  splitSshConfigArguments,
  type IncludedSshConfigFile,
  type LocalIdentity,
  type ParseSshConfigOptions,
  type ResolveSshHostOptions,
  type ResolvedSshHost,
  type SshConfig,
  type SshConfigItem,
  type SshConfigValues,
  type SshJumpHost,
  type SshTarget,
  type StrictHostKeyChecking,
} from './ssh-config.js';
export { currentLocalIdentity, findIncludedFiles, loadSshConfig, type LoadSshConfigOptions } from './ssh-config-files.js';
export { matchPatternList, matchWildcard } from './patterns.js';
export {
  checkHostKey,
  formatKnownHostsLine,
  hashKnownHostsName,
  knownHostsEntryMatches,
  knownHostsName,
  knownKeyTypesForHost,
  parseKnownHosts,
  sshFingerprint,
  sshKeyType,
  type HostKeyVerdict,
  type KnownHostsEntry,
} from './known-hosts.js';
export { SSH_ERROR_CODES, classifySshError, type ConnectionDescription } from './errors.js';
export { remoteCommandLine, type ExecOptions, type ExecResult, type RemoteCommand, type RemoteExit, type RemoteProcess } from './remote-process.js';
export { forwardRefusedError, type RemoteForwardOptions, type RemotePortForward } from './remote-forward.js';
export { PREFERRED_CIPHERS, connectSsh, orderHostKeyAlgorithms, type ConnectSshOptions, type PassphraseProvider, type PassphraseRequest, type SshSession } from './session.js';
export {
  SUDO_NOPASSWD_PREFIX,
  SUDO_WRONG_PASSWORD,
  SUDO_PASSWORD_PREFIX,
  createSudo,
  readSudoPasswordFromFile,
  readSudoPasswordFromStdin,
  sharePasswordPerRealm,
  type CreateSudoOptions,
  type SudoMode,
  type SudoPasswordProvider,
  type SudoPasswordRequest,
  type SudoRunner,
} from './sudo.js';

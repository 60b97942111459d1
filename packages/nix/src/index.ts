export { displayBytes, type NixErrorCode } from './errors.js';
export {
  HASH_ALGORITHM_SIZES,
  NIX32_ALPHABET,
  decodeNix32,
  encodeNix32,
  formatHash,
  nix32Length,
  parseHash,
  sha256,
  type FormatHashOptions,
  type HashAlgorithm,
  type HashEncoding,
  type ParseHashOptions,
  type ParsedHash,
} from './hash.js';
export {
  NAR_VERSION_MAGIC,
  hashNarStream,
  serialiseNar,
  type NarDirectoryEntry,
  type NarDirectoryNode,
  type NarHashResult,
  type NarNode,
  type NarRegularNode,
  type NarSymlinkNode,
  type SerialiseNarOptions,
} from './nar.js';
export { dumpPathToNar, hashPathNar, pathToNarNode } from './nar-fs.js';
export {
  dumpTarballToNar,
  hashTarballNar,
  type TarballCompression,
  type TarballNarInfo,
  type TarballNarOptions,
  type TarballNarResult,
  type TarballTopLevelRule,
} from './tarball.js';
export {
  DEFAULT_STORE_DIR,
  STORE_PATH_HASH_LENGTH,
  STORE_PATH_NAME_MAX_LENGTH,
  compressHash,
  describeInvalidStorePathName,
  isValidStorePathName,
  makeFixedOutputPath,
  makeStorePath,
  parseStorePath,
  validateStorePathName,
  type FixedOutputPathInput,
  type ParsedStorePath,
} from './store-path.js';
export { createClosureQuery, parsePathInfoJson, queryClosurePathInfos, type ClosureQuery, type StoreQueryOptions, type StorePathInfo } from './store-query.js';
export { runProcess, type ProcessOutput, type RunProcessOptions } from './process.js';
export { NO_SEARCH_PATH_ARGUMENTS, ensureStateDir, gcRootPath, gcRootsDir, nixBuild, nixInstantiate, pinnedNixEnv, projectStateDir, runStreamingCommand, type StreamingCommandOptions, type StreamingCommandResult } from './nix-cli.js';
export { NIX_KEYWORDS, nixAttributeName, nixPath, nixString } from './nix-text.js';
export { nixErrorHeadline, stripAnsi } from './nix-messages.js';

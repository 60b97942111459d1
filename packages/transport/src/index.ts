export {
  SERVE_MAGIC_CLIENT,
  SERVE_MAGIC_SERVER,
  SERVE_PROTOCOL_MIN_SERVER_VERSION,
  SERVE_PROTOCOL_VERSION,
  ServeCommand,
  ServeReader,
  ServeStreamEnded,
  decodeClientStream,
  encodeAddToStoreNarHeader,
  encodeClientHello,
  encodeQueryClosure,
  encodeQueryPathInfos,
  encodeQueryValidPaths,
  encodeString,
  encodeStrings,
  encodeU64,
  readPathInfos,
  serveProtocolError,
  type AddToStoreNarRequest,
  type DecodedClientRequest,
  type QueryValidPathsRequest,
  type ServePathInfo,
} from './serve-protocol.js';
export { describeCopyPlan, formatBytes, planCopy, sortClosure, type ClosurePathInfo, type CopyPlan } from './closure-plan.js';
export { TransferMeter, type TransferMeterOptions, type TransferSnapshot } from './progress.js';
export {
  classifyServeFailure,
  classifySudoFailure,
  serveCommand,
  storeAccessFor,
  storeSpawner,
  type RemoteNixOptions,
  type RemoteSpawner,
  type ServeFailure,
  type ServeFailurePhase,
  type ServeProcess,
  type StoreAccess,
} from './remote-serve.js';
export { copyClosure, openServeConnection, type CopyClosureInput, type CopyClosureResult, type OpenServeConnectionInput, type ServeConnection } from './copy-closure.js';
export {
  CACHE_COMPRESSIONS,
  DEFAULT_CACHE_COMPRESSION,
  DEFAULT_SUBSTITUTE_JOBS,
  binaryCacheStoreUrl,
  cacheContentType,
  cacheFileForRequest,
  classifySubstituteFailure,
  parseSubstituteProgress,
  planCachePush,
  planSubstitution,
  substituteCommand,
  tunnelEndpoint,
  tunnelledCacheUrl,
  type BinaryCacheStoreUrlOptions,
  type CacheCompression,
  type CachePushPlan,
  type SubstituteCommandOptions,
  type SubstituteFailure,
  type SubstitutionPlan,
} from './binary-cache-plan.js';
export {
  hasValidSignature,
  narInfoFileName,
  narInfoFingerprint,
  parseCachePublicKey,
  parseNarInfo,
  publicKeyOfSecretKey,
  type CachePublicKey,
  type NarInfo,
} from './narinfo.js';
export { generateCacheKey, pushToBinaryCache, type CacheKey, type GenerateCacheKeyInput, type PushToBinaryCacheInput, type PushToBinaryCacheResult } from './cache-push.js';
export { serveBinaryCache, type BinaryCacheServer, type CacheRequest, type ServeBinaryCacheOptions } from './cache-server.js';
export { substituteFromCache, type SubstituteFromCacheInput, type SubstituteFromCacheResult, type SubstituteSession } from './cache-substitute.js';
export { queryValidPaths, type QueryValidPathsOptions } from './query-valid-paths.js';

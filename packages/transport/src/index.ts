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
  encodeQueryValidPaths,
  encodeString,
  encodeStrings,
  encodeU64,
  serveProtocolError,
  type AddToStoreNarRequest,
  type DecodedClientRequest,
  type QueryValidPathsRequest,
} from './serve-protocol.js';
export { describeCopyPlan, formatBytes, planCopy, sortClosure, type ClosurePathInfo, type CopyPlan } from './closure-plan.js';
export { TransferMeter, type TransferMeterOptions, type TransferSnapshot } from './progress.js';
export {
  SUDO_WRONG_PASSWORD,
  classifyServeFailure,
  serveCommand,
  type RemoteSpawner,
  type ServeCommand as ServeCommandLine,
  type ServeCommandOptions,
  type ServeFailure,
  type ServeFailurePhase,
  type ServeProcess,
  type StoreAccess,
} from './remote-serve.js';
export { copyClosure, type CopyClosureInput, type CopyClosureResult } from './copy-closure.js';

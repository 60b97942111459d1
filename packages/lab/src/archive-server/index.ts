export { ARCHIVE_SERVER_USAGE, parseArchiveServerArguments, type ArchiveServerArguments } from './arguments.js';
export {
  GITHUB_RATE_LIMIT_MESSAGE,
  faultFiles,
  faultMatches,
  githubRateLimitFault,
  parseFaultRules,
  selectFault,
  writeFaultRules,
  type FaultRule,
} from './faults.js';
export { isApiRoute, routeRequest, tarballTopDirectory, type ArchiveServerRoute, type TarballNaming } from './routes.js';
export {
  isLoopbackHost,
  parseRequestLog,
  readRequestLog,
  requestLogPath,
  startArchiveServer,
  type ArchiveRequestLogEntry,
  type ArchiveServer,
  type ArchiveServerOptions,
} from './server.js';

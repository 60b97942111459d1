export {
  CLOSURE_DIFF_SIZE_THRESHOLD,
  diffClosures,
  formatClosureDiff,
  formatKibDelta,
  splitStorePathName,
  type ClosureDiff,
  type ClosureDiffEntry,
  type ClosurePath,
} from './closure-diff.js';
export { parseGenerationList, previousGeneration, type ProfileGeneration } from './generations.js';

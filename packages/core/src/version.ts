import { createRequire } from 'node:module';

// Both src/ (tests) and dist/ (built) sit one level below package.json.
const packageJson = createRequire(import.meta.url)('../package.json') as { version: string };

/** The version of pideploy, read from this package's package.json (bumped by changesets). */
export const PIDEPLOY_VERSION: string = packageJson.version;

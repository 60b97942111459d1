import type { ErrorObject } from 'ajv';

/** Validates a parsed pideploy.json against pideploy.schema.json (ajv, `allErrors`); `errors` says why not. */
declare const validateConfig: ((data: unknown) => boolean) & { errors?: ErrorObject[] | null | undefined };
export default validateConfig;

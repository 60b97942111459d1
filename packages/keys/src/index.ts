export {
  KEY_DEFAULTS,
  KEY_ERROR_CODES,
  KEY_NAME_PATTERN,
  KEY_OWNER_PATTERN,
  KEY_PERMISSIONS_PATTERN,
  checkKeySpecs,
  isKeyFilePath,
  keyPath,
  keySpecProblem,
  type KeySource,
  type KeySpec,
  type KeyUploadAt,
} from './key-spec.js';
export { KEY_INSTALLER_BOOTSTRAP, KEY_INSTALLER_SCRIPT, KEY_RECORD_BOOT_PREFIX, KEY_RECORD_FILE, keyInstallerArgv, keyInstallerInput, parseKeyInstallerOutput, parseKeyInstallerReport, type InstalledKey, type RemovedKey } from './key-installer.js';
export { readKeyContents, type LoadedKey, type ReadKeyContentsOptions } from './read-keys.js';
export { uploadKeys, type KeyUploadResult, type UploadKeysInput } from './upload-keys.js';
export { keyFilesGoneSinceBoot, parseKeyRecord, type KeyRecord } from './key-record.js';

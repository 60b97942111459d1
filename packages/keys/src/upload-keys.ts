import { PideployError, tailLines, type PideployContext } from '@pideploy/core';
import { SSH_ERROR_CODES, SUDO_WRONG_PASSWORD, type SudoRunner } from '@pideploy/ssh';
import { keyInstallerArgv, keyInstallerInput, parseKeyInstallerReport, type InstalledKey, type RemovedKey } from './key-installer.js';
import { KEY_ERROR_CODES, checkKeySpecs, isKeyFilePath } from './key-spec.js';
import type { LoadedKey } from './read-keys.js';

/** What {@link uploadKeys} needs. */
export interface UploadKeysInput {
  /** The host's name, for messages and events. */
  readonly host: string;
  /** Root on the host (see `createSudo` / `session.sudo()` of `@pideploy/ssh`): the upload is one command through it. */
  readonly sudo: SudoRunner;
  /** The keys with their contents (see `readKeyContents`). */
  readonly keys: readonly LoadedKey[];
  /**
   * Files of keys no longer wanted (absolute paths, each named like a key): removed in the same
   * command, once every key is in place. A file or link is removed (a link itself, not its target);
   * anything else is left alone.
   */
  readonly remove?: readonly string[] | undefined;
}

/** What one upload did on the host. */
export interface KeyUploadResult {
  /** Each key, in order (`changed: false`: it was in place already). */
  readonly installed: InstalledKey[];
  /** Each file of {@link UploadKeysInput.remove}, in order. */
  readonly removed: RemovedKey[];
}

/** Refuses paths to remove that are not a key's: absolute, with a key's file name. */
function checkRemovals(host: string, remove: readonly string[]): void {
  for (const file of remove) {
    if (!isKeyFilePath(file)) {
      throw new PideployError({
        code: KEY_ERROR_CODES.invalid,
        message: `${host}: ${JSON.stringify(file)} is not the path of a key to remove`,
        hint: 'a key to remove is an absolute path ending in a key name (see .pideploy/deployments.json)',
      });
    }
  }
}

/** The installer's `keys: …` line, or the last line it printed. */
function installerComplaint(stderr: string): string {
  const lines = stderr.split('\n').filter((line) => line.trim() !== '');
  const own = lines.filter((line) => line.startsWith('keys: ')).at(-1);
  return own === undefined ? tailLines(stderr, 1) || 'the upload failed' : own.slice('keys: '.length);
}

function hintFor(complaint: string): string {
  if (/there is no (user|group)/u.test(complaint)) {
    return 'create it on the host first, or, when the new system creates it, upload the key after the activation ("uploadAt": "post-activation")';
  }
  if (/is not a directory|is a directory/u.test(complaint)) return 'move what is in the way on the host, or give the key another destDir';
  return 'see what the host says above; nothing of this upload was left half written, nothing was removed';
}

/**
 * Puts keys on a host, outside the Nix store, in ONE root command (one sudo, one password check):
 * the names and places go in its argv, the contents on its stdin (base64, after sudo's password
 * line), so no secret is ever in an argv, an environment, a log or an event. All keys are checked
 * on the host first (owner and group exist …) and none is written unless all pass; each appears
 * at once with its owner and mode (see `KEY_INSTALLER_SCRIPT`). A key already in place with the
 * same bytes, owner and mode is left alone (`changed: false`).
 * @throws PideployError `PIDEPLOY_KEY_INVALID` before the host is touched, `PIDEPLOY_KEY_UPLOAD_FAILED`
 *   when the host refused (nothing was written then) or failed.
 */
export async function uploadKeys(input: UploadKeysInput, context: PideployContext): Promise<KeyUploadResult> {
  const specs = input.keys.map((key) => key.spec);
  const remove = input.remove ?? [];
  checkKeySpecs(input.host, specs);
  checkRemovals(input.host, remove);
  if (specs.length === 0 && remove.length === 0) return { installed: [], removed: [] };
  const argv = keyInstallerArgv(specs, remove);
  const result = await input.sudo.exec(argv, { stdin: keyInstallerInput(input.keys.map((key) => key.content)), signal: context.signal });
  // The command as logs may show it: the installer script is long and says nothing about this upload.
  const shown = ['/bin/sh', '-c', '<pideploy key installer>', ...argv.slice(3)];
  if (result.exitCode !== 0) {
    if (SUDO_WRONG_PASSWORD.test(result.stderr)) {
      throw new PideployError({ code: SSH_ERROR_CODES.sudoPasswordWrong, message: `sudo on ${input.host} refused the password while uploading keys`, hint: 'check the sudo password' });
    }
    const complaint = installerComplaint(result.stderr);
    throw new PideployError({
      code: KEY_ERROR_CODES.uploadFailed,
      message: `uploading keys to ${input.host} failed: ${complaint}`,
      hint: hintFor(complaint),
      commandFailure: { command: shown, exitCode: result.exitCode ?? undefined, signal: result.signal ?? undefined, stderrTail: tailLines(result.stderr) },
    });
  }
  const report = parseKeyInstallerReport(result.stdout, specs, remove);
  if (report === undefined) {
    throw new PideployError({
      code: KEY_ERROR_CODES.uploadFailed,
      message: `uploading keys to ${input.host}: the host's answer does not account for every key (${tailLines(result.stdout, 1) || 'nothing'})`,
      hint: 'run `pideploy upload-keys` again; check the host\'s /bin/sh',
      commandFailure: { command: shown, exitCode: 0, stderrTail: tailLines(result.stderr) },
    });
  }
  const { installed, removed } = report;
  // Said, not failed: the keys are in place (e.g. the host's record of key files could not be written).
  for (const line of result.stderr.split('\n').filter((each) => each.startsWith('keys: warning: '))) {
    context.reporter.emit({ type: 'log', level: 'warn', host: input.host, message: line.slice('keys: warning: '.length) });
  }
  for (const [index, key] of installed.entries()) {
    const spec = specs[index];
    const owner = spec === undefined ? '' : ` (${spec.permissions} ${spec.user}:${spec.group})`;
    context.reporter.emit({
      type: 'log',
      level: key.changed ? 'info' : 'debug',
      host: input.host,
      message: key.changed ? `key ${key.name} installed at ${key.path}${owner}` : `key ${key.name} unchanged at ${key.path}`,
    });
  }
  for (const file of removed) {
    context.reporter.emit({
      type: 'log',
      level: file.outcome === 'removed' ? 'info' : file.outcome === 'absent' ? 'debug' : 'warn',
      host: input.host,
      message:
        file.outcome === 'removed'
          ? `key removed: ${file.path} (no longer in pideploy.json)`
          : file.outcome === 'absent'
            ? `key ${file.path} was gone already`
            : `${file.path} is no longer a key pideploy put there, and not a file: left alone`,
    });
  }
  return report;
}

/**
 * Typed events that stages emit on a context's reporter. Only the CLI turns them into text
 * (live progress on a TTY, append-only lines otherwise, NDJSON with `--json`).
 * Events never carry secrets.
 */
export type DeployEvent =
  | { readonly type: 'log'; readonly level: 'debug' | 'info' | 'warn'; readonly message: string; readonly host?: string }
  | { readonly type: 'phase-start'; readonly phase: DeployPhase; readonly host?: string }
  | { readonly type: 'phase-end'; readonly phase: DeployPhase; readonly host?: string; readonly durationMs: number; readonly ok: boolean }
  | { readonly type: 'build-start'; readonly host?: string; readonly derivationsToBuild: number; readonly pathsToFetch: number }
  | { readonly type: 'build-progress'; readonly host?: string; readonly built: number; readonly total: number; readonly current?: string }
  | { readonly type: 'build-end'; readonly host?: string; readonly outPath: string; readonly durationMs: number }
  | { readonly type: 'download-progress'; readonly url: string; readonly bytesReceived: number; readonly bytesTotal?: number | undefined; readonly bytesPerSecond: number; readonly done: boolean }
  | { readonly type: 'copy-plan'; readonly host: string; readonly pathsToSend: number; readonly bytesToSend: number; readonly pathsPresent: number }
  | { readonly type: 'copy-progress'; readonly host: string; readonly bytesSent: number; readonly bytesTotal: number; readonly bytesPerSecond: number }
  | { readonly type: 'copy-end'; readonly host: string; readonly pathsSent: number; readonly bytesSent: number; readonly durationMs: number }
  | {
      readonly type: 'cache-push';
      /** The binary cache directory. */
      readonly cache: string;
      readonly pathsPushed: number;
      readonly pathsPresent: number;
      /** Σ NAR size of the pushed paths (uncompressed). */
      readonly narBytesPushed: number;
      /** Bytes of the compressed NAR files written. */
      readonly fileBytesPushed: number;
      readonly durationMs: number;
    }
  /** `specialisation`: the specialisation of `toplevel` activated (NixOS's `specialisation.<name>`), if one is. */
  | { readonly type: 'activate-start'; readonly host: string; readonly action: ActivationAction; readonly toplevel: string; readonly specialisation?: string | undefined }
  | { readonly type: 'activate-end'; readonly host: string; readonly action: ActivationAction; readonly ok: boolean; readonly durationMs: number }
  /** A line a command printed on a host (`pideploy exec`), without its newline. */
  | { readonly type: 'remote-output'; readonly host: string; readonly stream: 'stdout' | 'stderr'; readonly line: string }
  | { readonly type: 'lab-host-up'; readonly host: string; readonly address: string; readonly reused: boolean }
  | { readonly type: 'lab-host-down'; readonly host: string };

/** The phases of a deploy, in order. */
export type DeployPhase = 'pin' | 'connect' | 'build' | 'bundle' | 'diff' | 'copy' | 'activate' | 'confirm' | 'keys' | 'reboot' | 'lab';

/** What `switch-to-configuration` is asked to do (as NixOS documents it). */
export type ActivationAction = 'switch' | 'boot' | 'test' | 'dry-activate';

/** Receives events. Stages call `emit`; renderers implement it. */
export interface Reporter {
  /** Handles one event. Must not throw. */
  emit(event: DeployEvent): void;
}

/** A reporter that drops everything. */
export const silentReporter: Reporter = { emit: () => {} };

/** A reporter that keeps every event, for tests and custom pipelines that inspect events. */
export function createCollectingReporter(): Reporter & { readonly events: DeployEvent[] } {
  const events: DeployEvent[] = [];
  return { events, emit: (event) => void events.push(event) };
}

/**
 * How messages name what is activated: the system, and its specialisation if one
 * (`/nix/store/…-nixos-system-pi1 (specialisation kiosk)`), as `activate-start` carries them.
 */
export function describeActivated(toplevel: string, specialisation: string | undefined): string {
  return specialisation === undefined ? toplevel : `${toplevel} (specialisation ${specialisation})`;
}

/** A progress reading of a transfer. */
export interface TransferSnapshot {
  /** Bytes sent so far. */
  readonly bytesSent: number;
  /** Bytes to send in all. */
  readonly bytesTotal: number;
  /** Recent rate (bytes per second over the last {@link TransferMeterOptions.windowMs}); 0 until measurable. */
  readonly bytesPerSecond: number;
  /** Seconds left at the recent rate; undefined while the rate is unknown. */
  readonly etaSeconds: number | undefined;
  /** Milliseconds since the transfer started. */
  readonly elapsedMs: number;
}

/** Options of {@link TransferMeter}. */
export interface TransferMeterOptions {
  /** Milliseconds of history the rate is computed over (default 3000). */
  readonly windowMs?: number;
  /** Least milliseconds between two reports from {@link TransferMeter.shouldReport} (default 250). */
  readonly reportIntervalMs?: number;
  /** Clock in milliseconds (default `performance.now`); tests pass a fake one. */
  readonly now?: () => number;
}

/**
 * Measures a transfer: bytes, rate over a sliding window, ETA, and when to report. Pure apart
 * from the injected clock.
 */
export class TransferMeter {
  private readonly now: () => number;
  private readonly windowMs: number;
  private readonly reportIntervalMs: number;
  private readonly startedAt: number;
  private samples: { readonly at: number; readonly bytes: number }[];
  private lastReportAt = Number.NEGATIVE_INFINITY;
  private sent = 0;

  constructor(
    readonly bytesTotal: number,
    options: TransferMeterOptions = {},
  ) {
    this.now = options.now ?? (() => performance.now());
    this.windowMs = options.windowMs ?? 3000;
    this.reportIntervalMs = options.reportIntervalMs ?? 250;
    this.startedAt = this.now();
    this.samples = [{ at: this.startedAt, bytes: 0 }];
  }

  /** Bytes sent so far. */
  get bytesSent(): number {
    return this.sent;
  }

  /** Adds `bytes` more sent bytes. */
  record(bytes: number): void {
    this.sent += bytes;
    const at = this.now();
    this.samples.push({ at, bytes: this.sent });
    // Keep one sample older than the window so the rate spans the whole window.
    while (this.samples.length > 2 && (this.samples[1]?.at ?? at) <= at - this.windowMs) this.samples.shift();
  }

  /** The current reading. */
  snapshot(): TransferSnapshot {
    const at = this.now();
    const oldest = this.samples[0] ?? { at: this.startedAt, bytes: 0 };
    const span = at - oldest.at;
    const bytesPerSecond = span > 0 ? Math.round(((this.sent - oldest.bytes) * 1000) / span) : 0;
    const remaining = Math.max(0, this.bytesTotal - this.sent);
    return {
      bytesSent: this.sent,
      bytesTotal: this.bytesTotal,
      bytesPerSecond,
      etaSeconds: remaining === 0 ? 0 : bytesPerSecond > 0 ? remaining / bytesPerSecond : undefined,
      elapsedMs: at - this.startedAt,
    };
  }

  /** True at most once per report interval (and always when everything is sent). */
  shouldReport(): boolean {
    const at = this.now();
    if (this.sent < this.bytesTotal && at - this.lastReportAt < this.reportIntervalMs) return false;
    this.lastReportAt = at;
    return true;
  }
}

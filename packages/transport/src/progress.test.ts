import { describe, expect, it } from 'vitest';
import { TransferMeter } from './progress.js';

describe('TransferMeter', () => {
  it('measures the rate over the window and the ETA at that rate', () => {
    let now = 0;
    const meter = new TransferMeter(100_000_000, { now: () => now, windowMs: 2000 });
    expect(meter.snapshot()).toMatchObject({ bytesSent: 0, bytesPerSecond: 0, etaSeconds: undefined });
    for (let second = 1; second <= 4; second += 1) {
      now = second * 1000;
      meter.record(second <= 2 ? 1_000_000 : 10_000_000); // slow start, then 10 MB/s
    }
    const snapshot = meter.snapshot();
    expect(snapshot.bytesSent).toBe(22_000_000);
    expect(snapshot.bytesPerSecond).toBe(10_000_000); // only the last 2 s count
    expect(snapshot.etaSeconds).toBeCloseTo(7.8, 5);
    expect(snapshot.elapsedMs).toBe(4000);
  });

  it('reports at most once per interval, and always at the end', () => {
    let now = 0;
    const meter = new TransferMeter(300, { now: () => now, reportIntervalMs: 250 });
    meter.record(100);
    expect(meter.shouldReport()).toBe(true);
    now = 100;
    meter.record(100);
    expect(meter.shouldReport()).toBe(false);
    now = 200;
    meter.record(100);
    expect(meter.shouldReport()).toBe(true);
    expect(meter.snapshot().etaSeconds).toBe(0);
  });
});

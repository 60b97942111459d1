import { readFileSync } from 'node:fs';
import { createBaseContext } from '@pideploy/core';
import { labDown, labUp, type LabStatus } from '@pideploy/lab';
import { describeLab } from '@pideploy/lab/testing';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { connectSsh } from './session.js';

describeLab('compression for slow links (measured on the lab link)', () => {
  let lab: LabStatus;
  beforeAll(async () => {
    lab = await labUp({ hosts: 1 });
  });
  afterAll(async () => {
    await labDown();
  });

  /** Bytes the lab host sent over its veth link while `work` ran. */
  async function bytesFromHost(work: () => Promise<void>): Promise<number> {
    const counter = `/sys/class/net/${lab.hosts[0]?.hostInterface}/statistics/rx_bytes`;
    const before = Number(readFileSync(counter, 'utf8'));
    await work();
    return Number(readFileSync(counter, 'utf8')) - before;
  }

  it('sends compressible output in a fraction of the bytes with compress, and the same bytes arrive', async () => {
    const context = createBaseContext();
    const transfer = (compress: boolean) =>
      bytesFromHost(async () => {
        await using session = await connectSsh('deploy@pi1', { sshConfigFile: lab.sshConfig, compress }, context);
        const result = await session.exec(['sh', '-c', 'yes pideploy | head -c 4000000'], { encoding: 'buffer' });
        expect(result.stdout.length).toBe(4_000_000);
        expect(result.stdout.subarray(0, 18).toString()).toBe('pideploy\npideploy\n');
      });
    const plain = await transfer(false);
    const compressed = await transfer(true);
    expect(plain).toBeGreaterThan(4_000_000);
    expect(compressed).toBeLessThan(plain / 10);
  });
});

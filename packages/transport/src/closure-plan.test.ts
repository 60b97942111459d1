import { describe, expect, it } from 'vitest';
import { describeCopyPlan, formatBytes, planCopy, sortClosure, type ClosurePathInfo } from './closure-plan.js';

const p = (name: string) => `/nix/store/${name.padEnd(32, '0')}-${name}`;
const info = (name: string, narSize: number, references: string[] = []): ClosurePathInfo => ({ path: p(name), narSize, references: references.map(p) });

describe('sortClosure', () => {
  it('puts every path after what it refers to, ignoring self references, deterministically', () => {
    const closure = [
      info('system', 100, ['system', 'etc', 'kernel']),
      info('etc', 10, ['bash', 'glibc']),
      info('kernel', 50),
      info('bash', 5, ['glibc']),
      info('glibc', 20, ['glibc']),
    ];
    const order = sortClosure(closure).map((item) => item.path);
    for (const item of closure) {
      for (const reference of item.references) {
        if (reference !== item.path) expect(order.indexOf(reference)).toBeLessThan(order.indexOf(item.path));
      }
    }
    expect(sortClosure([...closure].reverse()).map((item) => item.path)).toEqual(order);
    expect(order.at(-1)).toBe(p('system'));
  });

  it('rejects a reference outside the set and a cycle', () => {
    expect(() => sortClosure([info('a', 1, ['b'])])).toThrow(expect.objectContaining({ code: 'PIDEPLOY_CLOSURE_INCOMPLETE' }));
    expect(() => sortClosure([info('a', 1, ['b']), info('b', 1, ['a'])])).toThrow(expect.objectContaining({ code: 'PIDEPLOY_CLOSURE_CYCLE' }));
  });
});

describe('planCopy', () => {
  const closure = [info('top', 1000, ['lib', 'data']), info('lib', 300), info('data', 5 * 1024 * 1024, ['lib'])];

  it('sends only what the target lacks, dependencies first, and sums their NAR sizes', () => {
    const plan = planCopy(closure, [p('lib'), p('unrelated')]);
    expect(plan.toSend.map((item) => item.path)).toEqual([p('data'), p('top')]);
    expect(plan.present).toEqual([p('lib')]);
    expect(plan.bytesToSend).toBe(5 * 1024 * 1024 + 1000);
    expect(plan.closureBytes).toBe(5 * 1024 * 1024 + 1300);
    expect(describeCopyPlan(plan)).toBe('2 paths, 5.0 MiB to send, 1 already present');
  });

  it('is empty when everything is present', () => {
    const plan = planCopy(closure, closure.map((item) => item.path));
    expect(plan).toMatchObject({ toSend: [], bytesToSend: 0 });
    expect(describeCopyPlan(plan)).toBe('0 paths, 0 B to send, 3 already present');
    expect(describeCopyPlan(planCopy([info('x', 2048)], []))).toBe('1 path, 2.0 KiB to send, 0 already present');
  });

  it('formats sizes', () => {
    expect([0, 1023, 1536, 200 * 1024 * 1024, 3 * 1024 ** 3].map(formatBytes)).toEqual(['0 B', '1023 B', '1.5 KiB', '200.0 MiB', '3.00 GiB']);
  });
});

import { describe, expect, it } from 'vitest';
import { sharePasswordPerRealm, type SudoPasswordRequest } from './sudo.js';

describe('sharePasswordPerRealm', () => {
  it('asks once per realm (sharing an answer still being typed), and again after a refused password', async () => {
    const asked: SudoPasswordRequest[] = [];
    const askFor = sharePasswordPerRealm(async (question) => {
      asked.push(question);
      await new Promise((resolve) => setTimeout(resolve, 5));
      return `secret-${asked.length}`;
    });
    const deploy = { host: 'pi1', user: 'deploy', attempt: 1 };
    // Two hosts of the same login ask at once: one question.
    expect(await Promise.all([askFor('deploy')(deploy), askFor('deploy')({ ...deploy, host: 'pi2' })])).toEqual(['secret-1', 'secret-1']);
    // Another login user is asked its own.
    expect(await askFor('admin')({ host: 'pi3', user: 'admin', attempt: 1 })).toBe('secret-2');
    // After a refusal the realm is asked again, and the new answer is the one shared from then on.
    expect(await askFor('deploy')({ ...deploy, attempt: 2 })).toBe('secret-3');
    expect(await askFor('deploy')({ ...deploy, host: 'pi4' })).toBe('secret-3');
    expect(asked.map((question) => [question.host, question.attempt])).toEqual([
      ['pi1', 1],
      ['pi3', 1],
      ['pi1', 2],
    ]);
  });

  it('answers nothing without a provider', async () => {
    expect(await sharePasswordPerRealm(undefined)('deploy')({ host: 'pi1', user: 'deploy', attempt: 1 })).toBeUndefined();
  });
});

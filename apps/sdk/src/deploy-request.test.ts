import { describe, expect, it } from 'vitest';
import { checkDeployRequest, specialisationFor } from './deploy.js';

describe('specialisationFor / checkDeployRequest', () => {
  const kiosk = { name: 'kiosk', specialisation: 'kiosk' } as const;
  const plain = { name: 'plain', specialisation: undefined } as const;

  it("takes the run's specialisation, else the host's; false is the system itself", () => {
    expect(specialisationFor(kiosk, undefined)).toBe('kiosk');
    expect(specialisationFor(kiosk, 'maintenance')).toBe('maintenance');
    expect(specialisationFor(kiosk, false)).toBeUndefined();
    expect(specialisationFor(plain, undefined)).toBeUndefined();
    expect(specialisationFor(undefined, 'maintenance')).toBe('maintenance');
  });

  it('refuses a reboot or a specialisation that does not go with the action, naming it, before any work', () => {
    const refusal = (request: Parameters<typeof checkDeployRequest>[0]) => {
      try {
        checkDeployRequest(request);
        return 'accepted';
      } catch (error) {
        return `${(error as { code: string }).code}: ${(error as Error).message}`;
      }
    };
    expect(refusal({ hosts: [kiosk, plain] })).toBe('accepted');
    expect(refusal({ hosts: [plain], action: 'boot', reboot: true })).toBe('accepted');
    // pideploy.json's specialisation with boot; the same host with --no-specialisation is fine.
    expect(refusal({ hosts: [kiosk, plain], action: 'boot' })).toBe('PIDEPLOY_USAGE: --specialisation with --action boot: a boot starts the system itself, not one of its specialisations');
    expect(refusal({ hosts: [kiosk], action: 'boot', specialisation: false })).toBe('accepted');
    expect(refusal({ hosts: [plain], reboot: true, specialisation: 'kiosk' })).toMatch(/^PIDEPLOY_USAGE: --specialisation with --reboot: /u);
    expect(refusal({ hosts: [plain], action: 'test', reboot: true })).toMatch(/^PIDEPLOY_USAGE: --reboot with --action test: /u);
  });
});

import { describe, expect, it } from 'vitest';
import { openSshArguments } from './ssh.js';

describe('openSshArguments', () => {
  it('logs in where pideploy does: the target (user, port), its ssh_config, a strict host-key check', () => {
    expect(openSshArguments({ target: 'deploy@kitchen.local:2222', sshConfigFile: '/srv/pis/ssh_config', acceptNewHostKey: false, command: [], terminal: true })).toEqual([
      '-o', 'StrictHostKeyChecking=yes', '-F', '/srv/pis/ssh_config', '-p', '2222', '-l', 'deploy', '--', 'kitchen.local',
    ]);
    expect(openSshArguments({ target: 'ssh://pi@[fd00::7]:22', acceptNewHostKey: true, command: [], terminal: false })).toEqual(['-o', 'StrictHostKeyChecking=accept-new', '-p', '22', '-l', 'pi', '--', 'fd00::7']);
    // An alias of the ssh_config (no user, no port): ssh takes them from there.
    expect(openSshArguments({ target: 'pi1', acceptNewHostKey: false, command: [], terminal: true })).toEqual(['-o', 'StrictHostKeyChecking=yes', '--', 'pi1']);
  });

  it('a command goes as one string, each argument quoted once for the remote shell; a terminal only when this side has one', () => {
    expect(openSshArguments({ target: 'deploy@pi1', acceptNewHostKey: false, command: ['printf', '%s\n', 'a b', '$HOME', "it's"], terminal: false })).toEqual([
      '-o', 'StrictHostKeyChecking=yes', '-l', 'deploy', '--', 'pi1', "printf '%s\n' 'a b' '$HOME' 'it'\\''s'",
    ]);
    expect(openSshArguments({ target: 'deploy@pi1', acceptNewHostKey: false, command: ['htop'], terminal: true })).toContain('-t');
    expect(openSshArguments({ target: 'deploy@pi1', acceptNewHostKey: false, command: ['htop'], terminal: false })).not.toContain('-t');
  });

  it('refuses a target that is not one', () => {
    expect(() => openSshArguments({ target: 'deploy@', acceptNewHostKey: false, command: [], terminal: false })).toThrow(expect.objectContaining({ code: 'PIDEPLOY_USAGE' }));
  });
});

import { describe, expect, it } from 'vitest';
import { parseArchiveServerArguments } from './arguments.js';

describe('parseArchiveServerArguments', () => {
  it('reads --root, --port and --host (separate or with =)', () => {
    expect(parseArchiveServerArguments(['--root', '/srv/a'])).toEqual({ root: '/srv/a', port: 0, host: '127.0.0.1' });
    expect(parseArchiveServerArguments(['--root=/srv/a', '--port=18471', '--host', '127.0.0.2'])).toEqual({ root: '/srv/a', port: 18471, host: '127.0.0.2' });
  });
  it.each([
    [[], '--root is required'],
    [['--root'], '--root needs a value'],
    [['--root', '/a', '--port', 'x'], '--port must be a number from 0 to 65535'],
    [['--root', '/a', '--port', '70000'], '--port must be a number from 0 to 65535'],
    [['--root', '/a', '--verbose'], 'unknown argument "--verbose"'],
  ])('refuses %j', (argv, message) => {
    expect(() => parseArchiveServerArguments(argv)).toThrow(message);
  });
});

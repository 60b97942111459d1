/**
 * Quotes one argument for a POSIX shell (the remote `sh -c` line). The only way pideploy builds
 * shell text: every user-supplied value goes through here.
 *
 * Safe words (letters, digits and `@%+=:,./-_`) are left bare for readable logs; everything else
 * is put in single quotes, with embedded single quotes written as `'\''`.
 */
export function shellQuote(argument: string): string {
  if (argument.includes('\0')) {
    throw new TypeError('a shell argument cannot contain a NUL byte');
  }
  if (argument !== '' && /^[A-Za-z0-9@%+=:,./_-]+$/u.test(argument)) return argument;
  return `'${argument.replaceAll("'", `'\\''`)}'`;
}

/** Quotes every argument of an argv array and joins them into one shell command line. */
export function shellJoin(argv: readonly string[]): string {
  return argv.map(shellQuote).join(' ');
}

/**
 * A one-line `sh -c` command that runs a script sent as the first line of its stdin (base64):
 * what sudo logs of a root command built this way is this short line and the arguments after it
 * (`sh -c BOOTSTRAP NAME ARG…`), not a whole script. `read` takes exactly that line; whatever
 * follows on stdin is left for the script. Without `base64` on the host it fails with one
 * `LABEL: …` line on stderr.
 */
export function stdinScriptBootstrap(label: string): string {
  if (!/^[a-z][a-z0-9-]*$/u.test(label)) throw new TypeError(`not a label for a script's messages: ${label}`);
  return (
    `command -v base64 >/dev/null 2>&1 || { echo '${label}: base64 is not installed on the host' >&2; exit 1; }; ` +
    'IFS= read -r script || exit 2; eval "$(printf \'%s\' "$script" | base64 -d)"'
  );
}

/** The first stdin line for {@link stdinScriptBootstrap}: the script in base64, and a newline. */
export function stdinScriptLine(script: string): string {
  return `${Buffer.from(script, 'utf8').toString('base64')}\n`;
}

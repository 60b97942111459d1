// eslint-disable-next-line no-control-regex -- Nix colours its messages with ANSI escapes
const ANSI = /\u001b\[[0-9;]*[A-Za-z]/gu;

/** Removes the ANSI colour escapes Nix puts in messages. */
export function stripAnsi(text: string): string {
  return text.replace(ANSI, '');
}

/** The first `error: …` line of Nix's output, without the prefix (or the last line). */
export function nixErrorHeadline(text: string): string {
  const lines = stripAnsi(text).split('\n');
  const errorLine = lines.find((line) => line.startsWith('error:'));
  const headline = (errorLine ?? lines.filter((line) => line.trim() !== '').pop() ?? '').replace(/^error:\s*/u, '').trim();
  return headline.replace(/\s*Definition values:$/u, '');
}

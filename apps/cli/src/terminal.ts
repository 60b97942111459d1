/**
 * The terminal is shared by the renderer and the sudo password prompt. Builds run while the
 * prompt waits for its answer, so whatever the renderer would write meanwhile waits until the
 * prompt is answered: nothing is drawn over the question, and nothing lands inside the answer line.
 */
let prompting = false;
let promptsShown = 0;
let progressLineOnScreen = false;
const heldBack: (() => void)[] = [];

/** Runs `write` now, or right after the password prompt on screen has been answered. */
export function writeWhenTerminalFree(write: () => void): void {
  if (prompting) heldBack.push(write);
  else write();
}

/** How many prompts have taken the terminal so far (a progress line drawn before one is gone). */
export function promptCount(): number {
  return promptsShown;
}

/** The renderer says whether its progress line (no newline yet) is what the cursor sits after. */
export function setProgressLineOnScreen(onScreen: boolean): void {
  progressLineOnScreen = onScreen;
}

/**
 * Marks a prompt as on screen until the returned function is called; output held meanwhile then
 * follows in order. A progress line the cursor sits after is erased from `stream` first.
 */
export function beginPrompt(stream: { write(text: string): unknown }): () => void {
  if (progressLineOnScreen) stream.write('\r\u001b[K');
  progressLineOnScreen = false;
  promptsShown += 1;
  prompting = true;
  return () => {
    prompting = false;
    for (const write of heldBack.splice(0)) write();
  };
}

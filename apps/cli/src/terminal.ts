/**
 * The terminal is shared by the renderer and the sudo password prompt. Builds run while the
 * prompt waits for its answer, so whatever the renderer would write meanwhile waits until the
 * prompt is answered: nothing is drawn over the question, and nothing lands inside the answer line.
 */
let prompting = false;
const heldBack: (() => void)[] = [];
let eraseProgressLine: (() => void) | undefined;

/** Runs `write` now, or right after the password prompt on screen has been answered. */
export function writeWhenTerminalFree(write: () => void): void {
  if (prompting) heldBack.push(write);
  else write();
}

/** The renderer hands over how to erase the progress line the cursor now sits after (undefined: none is). */
export function setProgressLineEraser(erase: (() => void) | undefined): void {
  eraseProgressLine = erase;
}

/**
 * Marks a prompt as on screen until the returned function is called: a progress line is erased
 * first, and output held meanwhile follows in order once it is answered.
 */
export function beginPrompt(): () => void {
  eraseProgressLine?.();
  eraseProgressLine = undefined;
  prompting = true;
  return () => {
    prompting = false;
    for (const write of heldBack.splice(0)) write();
  };
}

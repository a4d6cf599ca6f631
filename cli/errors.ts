/** How the CLI reports an error: the message, then the hint; the stack only with --debug. */
import { JetflowError } from "../runtime/errors.js";
import { color } from "./output.js";

export class UsageError extends JetflowError {
  constructor(message: string, hint = "Run `wf --help` for the commands and their flags.") {
    super("WF_USAGE", message, { hint });
  }
}

export function reportError(err: unknown, debug: boolean): number {
  if (err instanceof JetflowError) {
    process.stderr.write(color.red(`error: ${err.message}`) + "\n");
    if (err.hint) process.stderr.write(`hint: ${err.hint}\n`);
    if (debug && err.stack) process.stderr.write(color.dim(err.stack) + "\n");
    return err.code === "WF_USAGE" ? 64 : 1;
  }
  const e = err as Error;
  process.stderr.write(color.red(`error: ${e?.message ?? String(err)}`) + "\n");
  if (debug && e?.stack) process.stderr.write(color.dim(e.stack) + "\n");
  else process.stderr.write("hint: this looks like a bug in jetflow; rerun with --debug and report the stack.\n");
  return 1;
}

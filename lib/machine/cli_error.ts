/**
 * How the study's commands (train, report, bench, results, setup) report a failure: in one or two
 * lines — what went wrong, where, and what to do — and a non-zero exit, with no stack trace. The
 * stack is for the study's own bugs: `--debug` on any command, or `MNIST_DEBUG=1` (also in a
 * notebook's kernel), shows it.
 *
 * A failure the user can act on is a `UserError` (or one of the library's named error classes
 * listed in `EXPECTED`); its message is the whole explanation. Errors of the file system that a
 * user fixes (no space, no permission, a missing file) are named as such with what to do.
 * Anything else is a bug: its message, then a line saying how to see the stack. The units those
 * lines use (durations, byte counts) come from lib/report/format.ts, as everywhere else.
 */
import { envVar } from "./env.ts";

/** Whether stacks are wanted: `--debug` on the command line or `MNIST_DEBUG=1`. */
function debugMode(): boolean {
  if (debugFlag) return true;
  const v = envVar("MNIST_DEBUG");
  return v !== undefined && v !== "0" && v.toLowerCase() !== "false";
}
let debugFlag = false;

/**
 * The command's arguments without `--debug` (which every command accepts); seeing it turns
 * debug mode on for this process.
 */
export function cliArgs(args: string[] = Deno.args): string[] {
  if (args.includes("--debug")) debugFlag = true;
  return args.filter((a) => a !== "--debug");
}

/**
 * A failure the user can act on: the message says what is wrong, where, and what to do. Its stack
 * is dropped unless debug mode is on, so a notebook cell that raises one shows just the message.
 */
export class UserError extends Error {
  override name = "UserError";
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    if (!debugMode()) this.stack = message;
  }
}

/** Error classes of the library (by name, so this module imports none of them) that are the user's to fix. */
const EXPECTED = new Set([
  "SetupError",
  "ReportError",
  "UsageError",
  "MnistFormatError",
  "H5FormatError",
  "WeightsUnavailableError",
  "WeightsChecksumError",
  "WeightsMismatchError",
]);

/** "No space left on device" as Deno reports it (os error 28, ENOSPC). */
export function isNoSpace(e: unknown): boolean {
  return e instanceof Error && /No space left on device|os error 28|ENOSPC/i.test(e.message);
}

/** What to do about a file-system error the user can fix, or null for other errors. */
function fileSystemAdvice(e: Error): string | null {
  if (isNoSpace(e)) return "the disk is full: free some space (or point RUNS_DIR elsewhere)";
  if (e instanceof Deno.errors.PermissionDenied || /os error 13\b/.test(e.message)) {
    return "no permission: check the file's owner and mode, or run as a user who may write there";
  }
  if (e instanceof Deno.errors.NotFound) return "a file or folder is missing: check the path";
  if (/os error 30\b/.test(e.message)) {
    return "the file system is read-only: point RUNS_DIR at a writable folder";
  }
  return null;
}

/** Whether `e` is a failure the user can act on (its message is the explanation). */
export function isExpected(e: unknown): boolean {
  return e instanceof UserError || (e instanceof Error && EXPECTED.has(e.name)) ||
    (e instanceof Error && fileSystemAdvice(e) !== null);
}

/**
 * The lines a command prints for `e`: `<command>: <message>` (with what to do for a file-system
 * error); for an unexpected error a second line says how to see the stack; in debug mode the
 * stack follows.
 */
export function formatCliError(command: string, e: unknown, debug = debugMode()): string {
  const err = e instanceof Error ? e : new Error(String(e));
  const message = err.message.trim() || err.name;
  const advice = err instanceof UserError || EXPECTED.has(err.name) ? null : fileSystemAdvice(err);
  const lines = [`${command}: ${message}${advice ? ` — ${advice}` : ""}`];
  if (debug) {
    lines.push(err.stack ?? "(no stack)");
    for (let c = err.cause; c instanceof Error; c = c.cause) lines.push(`caused by ${c.stack}`);
  } else if (!isExpected(err)) {
    lines.push(
      `(an unexpected ${err.name}: run again with --debug, or MNIST_DEBUG=1, for the stack trace)`,
    );
  }
  return lines.join("\n");
}

/**
 * Runs a command's `main` (given its arguments without `--debug`): its return value is the exit
 * code; an error is reported by `formatCliError` on stderr and exits 1.
 */
export async function runCommand(
  command: string,
  main: (args: string[]) => Promise<number | void>,
): Promise<never> {
  const args = cliArgs();
  let code: number;
  try {
    code = (await main(args)) ?? 0;
  } catch (e) {
    console.error(formatCliError(command, e));
    code = 1;
  }
  Deno.exit(code);
}

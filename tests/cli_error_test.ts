/**
 * How commands report failures: one line for what the user can act on, a second line (how to see
 * the stack) only for a bug, the stack with --debug.
 * End to end through a real command: tests/train_cli_test.ts.
 */
import assert from "node:assert/strict";
import {
  cliArgs,
  formatCliError,
  isExpected,
  isNoSpace,
  UserError,
} from "../lib/machine/cli_error.ts";
import { BackupError } from "../lib/runs/backup.ts";
import { RunWriteError } from "../lib/runs/runs.ts";

class SetupError extends Error {
  override name = "SetupError";
}

Deno.test("expected failures are one line: the command, then the message (with what to do)", () => {
  assert.equal(
    formatCliError("train", new UserError("--epochs must be ≥ 1"), false),
    "train: --epochs must be ≥ 1",
  );
  assert.equal(
    formatCliError("train", new BackupError("backup x is unreadable (truncated)"), false),
    "train: backup x is unreadable (truncated)",
  );
  assert.equal(
    formatCliError("train", new RunWriteError("cannot write the run record in /r"), false),
    "train: cannot write the run record in /r",
  );
  assert.equal(
    formatCliError("setup", new SetupError("apt-get failed"), false),
    "setup: apt-get failed",
  );
  const full = new Error("No space left on device (os error 28): writefile '/r/x'");
  assert.ok(isNoSpace(full));
  assert.equal(
    formatCliError("report", full, false),
    "report: No space left on device (os error 28): writefile '/r/x' — the disk is full: free " +
      "some space (or point RUNS_DIR elsewhere)",
  );
  const denied = new Deno.errors.PermissionDenied("Permission denied (os error 13): open '/r'");
  assert.ok(isExpected(denied));
  assert.match(
    formatCliError("results", denied, false),
    /^results: Permission denied .* — no permission: /,
  );
});

Deno.test("a bug gets a second line saying how to see the stack; --debug shows it, with causes", () => {
  const bug = new TypeError("cannot read properties of undefined (reading 'x')");
  assert.ok(!isExpected(bug));
  const lines = formatCliError("bench", bug, false).split("\n");
  assert.deepEqual(lines, [
    "bench: cannot read properties of undefined (reading 'x')",
    "(an unexpected TypeError: run again with --debug, or MNIST_DEBUG=1, for the stack trace)",
  ]);
  const wrapped = new UserError("--profile: no such profile", { cause: bug });
  const debug = formatCliError("train", wrapped, true);
  assert.match(debug, /^train: --profile: no such profile\n/);
  assert.match(
    debug,
    /\ncaused by TypeError: cannot read properties .*\n\s+at .*cli_error_test\.ts/s,
  );
});

Deno.test("a UserError carries no stack unless debugging (a notebook cell shows just the message)", () => {
  const e = new UserError("run record r is unreadable: metrics.json: bad JSON");
  assert.equal(e.stack, "run record r is unreadable: metrics.json: bad JSON");
  assert.deepEqual(cliArgs(["baseline", "--epochs", "2"]), ["baseline", "--epochs", "2"]);
  assert.match(new UserError("m").stack!, /^m$/, "still none without --debug");
  assert.deepEqual(cliArgs(["baseline", "--debug", "--epochs", "2"]), [
    "baseline",
    "--epochs",
    "2",
  ]);
  assert.match(new UserError("m").stack!, /^UserError: m\n\s+at /, "--debug keeps the stack");
});

/**
 * The train CLI end to end, as a user runs it: a run killed with SIGKILL in its second epoch
 * resumes from its backup when the same command runs again, and finishes as the same run as
 * one that was never interrupted; the finished run is then a record that trains nothing.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { loadRun, loadRuns } from "../lib/runs/runs.ts";
import { parseTrainArgs } from "../scripts/train.ts";

const SCRIPT = new URL("../scripts/train.ts", import.meta.url).pathname;
const ARGS = [
  "baseline",
  "--profile",
  "quick",
  "--epochs",
  "3",
  "--train-samples",
  "1500",
  "--seed",
  "3",
  "--backend",
  "cpu-fast",
];

function trainCommand(runsDir: string): Deno.Command {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", SCRIPT, ...ARGS],
    env: { RUNS_DIR: runsDir, NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  });
}

/** Runs the command to the end; returns its standard output. */
async function runToEnd(runsDir: string): Promise<string> {
  const out = await trainCommand(runsDir).output();
  const text = new TextDecoder().decode(out.stdout);
  assert.equal(out.code, 0, `train failed:\n${text}\n${new TextDecoder().decode(out.stderr)}`);
  return text;
}

/** Starts the command and SIGKILLs it at its first progress line of epoch 2. */
async function killInSecondEpoch(runsDir: string): Promise<string> {
  const child = trainCommand(runsDir).spawn();
  const decoder = new TextDecoder();
  let text = "";
  const reader = child.stdout.getReader();
  while (true) {
    const { value, done } = await reader.read();
    if (done) break;
    text += decoder.decode(value);
    if (/^epoch 2\/3 .*\d+\/1500 /m.test(text)) {
      child.kill("SIGKILL");
      break;
    }
  }
  reader.releaseLock();
  await child.stdout.cancel().catch(() => {});
  await child.stderr.cancel();
  const status = await child.status;
  assert.equal(status.signal, "SIGKILL", `the run ended before epoch 2:\n${text}`);
  return text;
}

Deno.test({
  name: "a run killed in its second epoch resumes and ends as the uninterrupted run",
  sanitizeResources: false,
  fn: async () => {
    const killed = await Deno.makeTempDir({ prefix: "runs-killed-" });
    const clean = await Deno.makeTempDir({ prefix: "runs-clean-" });
    try {
      await killInSecondEpoch(killed);
      assert.equal((await loadRuns(killed)).length, 0, "no record for an unfinished run");
      const backups = [...Deno.readDirSync(join(killed, ".backups"))].map((e) => e.name);
      assert.equal(backups.filter((n) => n.endsWith(".backup")).length, 1, `${backups}`);

      const resumed = await runToEnd(killed);
      assert.match(
        resumed,
        /^resuming baseline_cnn \(quick, seed 3\) after epoch 1\/3 — backup of /m,
      );
      assert.doesNotMatch(resumed, /^epoch 1\/3 /m, "epoch 1 is not trained again");
      await runToEnd(clean);

      const [a] = await loadRuns(killed), [b] = await loadRuns(clean);
      assert.equal(a.config.key, b.config.key);
      assert.equal(a.config.resumedFrom, 1);
      assert.equal(b.config.resumedFrom, 0);
      // cpu-fast runs the same kernels in the same order: within 1e-6 (the bar).
      for (const col of ["loss", "accuracy"]) {
        const x = a.history.getColumn(col).toArray() as number[];
        const y = b.history.getColumn(col).toArray() as number[];
        assert.equal(x.length, 3);
        x.forEach((v, i) => assert.ok(Math.abs(v - y[i]) <= 1e-6, `${col}[${i}] ${v} vs ${y[i]}`));
      }
      const wa = new Float32Array((await Deno.readFile(join(a.dir, "weights.bin"))).buffer);
      const wb = new Float32Array((await Deno.readFile(join(b.dir, "weights.bin"))).buffer);
      assert.equal(wa.length, wb.length);
      let worst = 0;
      for (let i = 0; i < wa.length; i++) worst = Math.max(worst, Math.abs(wa[i] - wb[i]));
      assert.ok(worst <= 1e-6, `final weights differ by ${worst}`);
      assert.ok(Math.abs(a.metrics.testAccuracy - b.metrics.testAccuracy) < 1e-9);
      assert.deepEqual([...Deno.readDirSync(join(killed, ".backups"))], [], "backup removed");

      // The same command again: the record is used and nothing trains.
      const again = await runToEnd(clean);
      assert.match(again, /^from run record .*: trained .* on cpu-fast \(float32, /m);
      assert.doesNotMatch(again, /^epoch /m);
      assert.equal((await loadRuns(clean)).length, 1);
    } finally {
      await Deno.remove(killed, { recursive: true });
      await Deno.remove(clean, { recursive: true });
    }
  },
});

Deno.test("train CLI options: --help, unknown options and bad values are one clear line", () => {
  assert.deepEqual(parseTrainArgs(["--help"]), { help: true });
  assert.throws(() => parseTrainArgs(["baseline", "--bogus"]), /bogus/);
  assert.throws(() => parseTrainArgs(["resnet"]), /unknown model "resnet"; choose one of baseline/);
  assert.throws(
    () => parseTrainArgs(["baseline", "--loss", "mse"]),
    /--loss must be logits or clipped/,
  );
  assert.throws(() => parseTrainArgs(["baseline", "--batch-norm"]), /VGG models only/);
  assert.throws(
    () => parseTrainArgs(["baseline", "--precision", "fp16"]),
    /--precision must be float32 or mixed_bfloat16/,
  );
  assert.throws(
    () => parseTrainArgs(["vgg16_scratch", "--lr-schedule", "step"]),
    /--lr-schedule must be constant or cosine, got "step"/,
  );
  const o = parseTrainArgs([
    "vgg16_scratch",
    "--learning-rate",
    "1e-4",
    "--lr-schedule",
    "cosine",
    "--retrain",
    "--loss",
    "clipped",
  ]);
  assert.ok(!o.help);
  if (!o.help) {
    assert.equal(o.variant.learningRate, 1e-4);
    assert.equal(o.variant.lrSchedule, "cosine");
    assert.equal(o.loss, "clipped");
    assert.equal(o.retrain, true);
  }
});

// ------------------------------------------------ concurrent use and faults (one run per key)

/** A train command running in the background, its stdout and stderr collected as they come. */
class TrainProcess {
  text = "";
  readonly child: Deno.ChildProcess;
  readonly #pumps: Promise<void>[];
  constructor(runsDir: string, args: string[], env: Record<string, string> = {}) {
    this.child = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", SCRIPT, ...args],
      env: { RUNS_DIR: runsDir, NO_COLOR: "1", ...env },
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.#pumps = [this.child.stdout, this.child.stderr].map(async (s) => {
      const decoder = new TextDecoder();
      for await (const chunk of s) this.text += decoder.decode(chunk, { stream: true });
    });
  }

  /** Waits until the output matches `re` (or the process ends, which fails). */
  async waitFor(re: RegExp, what: string): Promise<void> {
    let ended = false;
    this.child.status.then(() => ended = true);
    while (!re.test(this.text)) {
      if (ended) {
        await Promise.all(this.#pumps);
        if (re.test(this.text)) return;
        throw new Error(`ended before ${what}:\n${this.text}`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** The exit status once the process and its output have ended. */
  async end(): Promise<Deno.CommandStatus> {
    const status = await this.child.status;
    await Promise.all(this.#pumps);
    return status;
  }
}

/** A small, quick run: a few hundred digits, two epochs. */
const SMALL = (seed: number) => [
  "baseline",
  "--profile",
  "quick",
  "--epochs",
  "2",
  "--train-samples",
  "240",
  "--seed",
  String(seed),
  "--backend",
  "cpu-fast",
];

function lockFiles(runsDir: string): string[] {
  try {
    return [...Deno.readDirSync(join(runsDir, ".locks"))].map((e) => e.name)
      .filter((n) => n.endsWith(".lock"));
  } catch {
    return [];
  }
}

async function withRunsDir(prefix: string, fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test({
  name: "two train commands for one run: one trains, the other waits and shows its record",
  sanitizeResources: false,
  fn: () =>
    withRunsDir("runs-two-", async (dir) => {
      const a = new TrainProcess(dir, SMALL(11));
      await a.waitFor(/^training baseline_cnn/m, "training started");
      const b = new TrainProcess(dir, SMALL(11));
      const [sa, sb] = [await a.end(), await b.end()];
      assert.equal(sa.code, 0, a.text);
      assert.equal(sb.code, 0, b.text);
      assert.match(
        b.text,
        /^waiting for baseline_cnn \(quick, seed 11\): being trained by PID \d+ on .* since /m,
      );
      assert.equal(b.text.match(/^waiting for /gm)?.length, 1, "said once");
      assert.doesNotMatch(b.text, /^training baseline_cnn|^epoch /m, "the second trains nothing");
      const runs = await loadRuns(dir);
      assert.equal(runs.length, 1, "one record");
      assert.match(b.text, new RegExp(`^from run record ${runs[0].id}: trained `, "m"));
      assert.deepEqual(lockFiles(dir), [], "the lock is released");
    }),
});

Deno.test({
  name: "the lock's holder killed with SIGKILL: the waiter takes over and resumes from its backup",
  sanitizeResources: false,
  fn: () =>
    withRunsDir("runs-takeover-", async (dir) => {
      const a = new TrainProcess(dir, SMALL(12));
      await a.waitFor(/^epoch 2\/2 .*\d+\/240 /m, "epoch 2");
      const b = new TrainProcess(dir, SMALL(12));
      await b.waitFor(/^waiting for baseline_cnn/m, "the waiting line");
      a.child.kill("SIGKILL");
      assert.equal((await a.end()).signal, "SIGKILL");
      const sb = await b.end();
      assert.equal(sb.code, 0, b.text);
      assert.match(b.text, /^taking over baseline_cnn \(quick, seed 12\): PID \d+ on .* is gone/m);
      // A may have finished epoch 2's backup too before the kill landed (a fast machine): the
      // waiter then resumes after epoch 2 and writes the record without training.
      const resumed = b.text.match(
        /^resuming baseline_cnn \(quick, seed 12\) after epoch ([12])\/2 /m,
      );
      assert.ok(resumed, b.text);
      assert.doesNotMatch(b.text, /^epoch 1\/2 /m, "epoch 1 is not trained again");
      const runs = await loadRuns(dir);
      assert.equal(runs.length, 1);
      assert.equal(runs[0].config.resumedFrom, Number(resumed[1]));
      assert.deepEqual(lockFiles(dir), []);
    }),
});

Deno.test({
  name:
    "SIGTERM stops a run with a line saying where; its backup resumes it; a damaged backup is moved aside",
  sanitizeResources: false,
  fn: () =>
    withRunsDir("runs-term-", async (dir) => {
      const a = new TrainProcess(dir, SMALL(13));
      await a.waitFor(/^epoch 2\/2 .*\d+\/240 /m, "epoch 2");
      a.child.kill("SIGTERM");
      const sa = await a.end();
      assert.equal(sa.code, 143, a.text);
      assert.match(
        a.text,
        /^stopped by SIGTERM: baseline_cnn \(quick, seed 13\) after epoch 1\/2; its backup .*\.backup resumes it/m,
      );
      assert.deepEqual(lockFiles(dir), [], "the lock is released");
      const backups = join(dir, ".backups");
      const [name] = [...Deno.readDirSync(backups)].map((e) => e.name)
        .filter((n) => n.endsWith(".backup"));
      const bytes = await Deno.readFile(join(backups, name));

      // A truncated copy of that backup in another runs folder: moved aside, the run starts over.
      await withRunsDir("runs-damaged-backup-", async (other) => {
        await Deno.mkdir(join(other, ".backups"));
        await Deno.writeFile(join(other, ".backups", name), bytes.subarray(0, bytes.length - 100));
        const c = new TrainProcess(other, SMALL(13));
        assert.equal((await c.end()).code, 0, c.text);
        assert.match(
          c.text,
          /^⚠ backup .*\.backup is unreadable \(truncated\): moved to .*\.backup\.damaged-[0-9T-]+; baseline_cnn \(quick, seed 13\) starts again from epoch 1$/m,
        );
        assert.match(c.text, /^epoch 1\/2 /m);
        const aside = [...Deno.readDirSync(join(other, ".backups"))].map((e) => e.name);
        assert.equal(aside.length, 1, `${aside}`);
        assert.equal(
          (await Deno.stat(join(other, ".backups", aside[0]))).size,
          bytes.length - 100,
          "kept as it was",
        );
      });

      const b = new TrainProcess(dir, SMALL(13));
      assert.equal((await b.end()).code, 0, b.text);
      assert.match(b.text, /^resuming baseline_cnn \(quick, seed 13\) after epoch 1\/2 /m);
      assert.equal((await loadRuns(dir))[0].config.resumedFrom, 1);
    }),
});

Deno.test({
  name:
    "a damaged record is named in one line, left untouched, and the run trains into a new folder",
  sanitizeResources: false,
  fn: () =>
    withRunsDir("runs-damaged-", async (dir) => {
      const args = SMALL(14).map((a) => a === "2" ? "1" : a);
      const first = new TrainProcess(dir, args);
      assert.equal((await first.end()).code, 0, first.text);
      const [record] = await loadRuns(dir);
      const metrics = join(record.dir, "metrics.json");
      const damaged = (await Deno.readTextFile(metrics)).replace("{", '{"x": "a\tb",');
      await Deno.writeTextFile(metrics, damaged);

      const again = new TrainProcess(dir, args);
      assert.equal((await again.end()).code, 0, again.text);
      const warnings = again.text.split("\n").filter((l) => l.includes(record.dir));
      assert.equal(warnings.length, 1, again.text);
      assert.match(
        warnings[0],
        /^⚠ run record .* is unreadable: metrics\.json: .*treated as absent and left as it is/,
      );
      assert.match(again.text, /^training baseline_cnn/m);
      assert.equal(await Deno.readTextFile(metrics), damaged, "never overwritten");
      const folders = [...Deno.readDirSync(dir)].filter((e) => !e.name.startsWith("."));
      assert.equal(folders.length, 2, "a new folder beside the damaged one");
    }),
});

Deno.test("an expected failure is one line without a stack; --debug shows the stack", async () => {
  const run = async (extra: string[]) => {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", SCRIPT, "baseline", "--profile", "bogus", ...extra],
      env: { NO_COLOR: "1" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    return { code: out.code, err: new TextDecoder().decode(out.stderr).trim() };
  };
  const plain = await run([]);
  assert.equal(plain.code, 1);
  assert.equal(plain.err.split("\n").length, 1, plain.err);
  assert.match(plain.err, /^train: --profile: MNIST_PROFILE=bogus is not one of: /);
  const debug = await run(["--debug"]);
  assert.equal(debug.code, 1);
  assert.match(debug.err, /^train: --profile: MNIST_PROFILE=bogus/);
  assert.match(debug.err, /\n\s+at .*profile\.ts/, "the stack, with --debug");
});

/** Mounts a tmpfs of `size` at `dir` (root only); the reason when this process may not. */
async function mountTmpfs(dir: string, size: string, remount = false): Promise<string | null> {
  const args = remount
    ? ["-o", `remount,size=${size}`, dir]
    : ["-t", "tmpfs", "-o", `size=${size}`, "tmpfs", dir];
  try {
    const out = await new Deno.Command("mount", { args, stdout: "null", stderr: "piped" }).output();
    return out.success ? null : new TextDecoder().decode(out.stderr).trim();
  } catch (e) {
    return (e as Error).message;
  }
}

Deno.test({
  name:
    "a full disk: backups warn and training goes on; the record's error says where the run is kept",
  sanitizeResources: false,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "runs-full-" });
    const tmp = await Deno.makeTempDir({ prefix: "runs-full-tmp-" });
    const why = await mountTmpfs(dir, "3m");
    if (why) {
      console.log(`skipped: cannot mount a small tmpfs to fill (${why}); it needs root`);
      await Deno.remove(dir, { recursive: true });
      await Deno.remove(tmp, { recursive: true });
      return;
    }
    try {
      // 3 MiB: neither a backup (17 MB) nor the record (6 MB) fits.
      const a = new TrainProcess(dir, SMALL(15), { TMPDIR: tmp });
      assert.equal((await a.end()).code, 1, a.text);
      const warnings = a.text.split("\n").filter((l) => l.startsWith("⚠ after epoch"));
      assert.equal(warnings.length, 2, a.text);
      assert.match(
        warnings[0],
        new RegExp(
          `^⚠ after epoch 1/2: could not write the backup in ${dir}/\\.backups \\(it needs about 17 MB free\\): No space left on device.*; training goes on and the next epoch tries again$`,
        ),
      );
      assert.match(a.text, /^epoch 2\/2 /m, "training went on");
      const error = a.text.split("\n").filter((l) => l.startsWith("train: "));
      assert.equal(error.length, 1, a.text);
      assert.match(
        error[0],
        new RegExp(
          `^train: cannot write the run record in ${dir} \\(it needs about 6 MB free\\): No space left on device.*The trained run was written instead to (\\S+): make space, then move that folder into ${dir}$`,
        ),
      );
      const elsewhere = error[0].match(/written instead to (\S+):/)![1];
      const kept = await loadRun(elsewhere);
      assert.equal(kept.metrics.epochsRun, 2);
      assert.ok(kept.hasWeights);
      assert.doesNotMatch(a.text, /\n\s+at /, "no stack trace");
      const left = [...Deno.readDirSync(dir)].map((e) => e.name).sort();
      assert.deepEqual(left, [".backups", ".locks"], "nothing half-written");
      assert.deepEqual([...Deno.readDirSync(join(dir, ".backups"))], []);

      // 20 MiB: the backup (17 MB) fits, the record then does not: the backup keeps the run,
      // and with space the same command writes the record without training.
      assert.equal(await mountTmpfs(dir, "20m", true), null);
      const one = SMALL(16).map((x) => x === "2" ? "1" : x);
      const b = new TrainProcess(dir, one, { TMPDIR: tmp });
      assert.equal((await b.end()).code, 1, b.text);
      assert.match(
        b.text,
        /^train: cannot write the run record in .* The trained run is kept in its backup .*\.backup \(after epoch 1\/1\): make space and ask for the run again — the record is written without training$/m,
      );
      assert.equal(await mountTmpfs(dir, "40m", true), null);
      const c = new TrainProcess(dir, one, { TMPDIR: tmp });
      assert.equal((await c.end()).code, 0, c.text);
      assert.match(c.text, /^resuming baseline_cnn \(quick, seed 16\) after epoch 1\/1 /m);
      assert.doesNotMatch(c.text, /^epoch 1\/1 /m, "nothing trained again");
      assert.equal((await loadRuns(dir)).length, 1);
    } finally {
      await new Deno.Command("umount", { args: [dir] }).output();
      await Deno.remove(dir, { recursive: true });
      await Deno.remove(tmp, { recursive: true });
    }
  },
});

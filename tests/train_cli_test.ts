/**
 * The train CLI end to end, as a user runs it: a run killed with SIGKILL in its second epoch
 * resumes from its backup when the same command runs again, and finishes as the same run as
 * one that was never interrupted; the finished run is then a record that trains nothing.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { loadRuns } from "../lib/runs.ts";
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

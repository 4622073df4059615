/**
 * `studyRun` as the notebooks use it: a notebook executed twice trains once, and its second
 * execution shows from the record exactly what the first showed.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { pickTrainingSeed, runName, studyKeyParts } from "../lib/study/study_run.ts";
import { PROFILES } from "../lib/study/profile.ts";
import { initBackend } from "../lib/machine/backend.ts";
import { planStudy } from "../lib/runs/plan.ts";
import { LATE_OUTPUTS_CONFIG } from "../scripts/report.ts";

const NOTEBOOKS = new URL("../notebooks/", import.meta.url).pathname;

/** Executes a notebook with nbconvert (Deno kernel) to HTML; returns the HTML. */
async function executeToHtml(notebook: string, runsDir: string, out: string): Promise<string> {
  const result = await new Deno.Command("jupyter", {
    args: [
      "nbconvert",
      "--to",
      "html",
      "--execute",
      // keeps the outputs Deno's kernel sends after a cell's "idle", as the report does
      `--config=${LATE_OUTPUTS_CONFIG}`,
      "--output",
      out,
      notebook,
    ],
    cwd: NOTEBOOKS,
    env: { MNIST_PROFILE: "quick", RUNS_DIR: runsDir, NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(result.code, 0, new TextDecoder().decode(result.stderr));
  return await Deno.readTextFile(out);
}

const hasJupyter = await new Deno.Command("jupyter", { args: ["nbconvert", "--version"] })
  .output().then((o) => o.success).catch(() => false);

Deno.test({
  name: "notebook 02 executed twice: the second run trains nothing and shows the same results",
  ignore: !hasJupyter,
  fn: async () => {
    const runs = await Deno.makeTempDir({ prefix: "nb_runs_" });
    const out = await Deno.makeTempDir({ prefix: "nb_html_" });
    try {
      const first = await executeToHtml("02_baseline_cnn.ipynb", runs, join(out, "a.html"));
      const second = await executeToHtml("02_baseline_cnn.ipynb", runs, join(out, "b.html"));
      assert.match(first, /training baseline_cnn \(quick, seed 42\)/);
      assert.doesNotMatch(first, /from run record/);
      assert.match(second, /from run record \S+_baseline_cnn_quick_\w+: trained /);
      assert.doesNotMatch(second, /training baseline_cnn/, "the second execution trains nothing");
      const accuracy = (html: string) => html.match(/test accuracy (\d+\.\d\d)%/)?.[1];
      assert.ok(accuracy(first));
      assert.equal(accuracy(second), accuracy(first));
      // Every chart (history, confusion matrix, worst mistakes) is drawn from the same numbers.
      // Compared by title: should a chart still arrive after the late-output grace period (a very
      // loaded machine), nbconvert drops it; a chart in both must be equal.
      const charts = (html: string) =>
        new Map((html.match(/<svg[\s\S]*?<\/svg>/g) ?? []).map((svg) => {
          const title = ["loss and accuracy", "confusion matrix", "worst mistakes"]
            .find((t) => svg.includes(t)) ?? svg;
          return [title, svg] as const;
        }));
      const a = charts(first), b = charts(second);
      const common = [...a.keys()].filter((t) => b.has(t));
      assert.ok(common.length >= 2, `charts in both executions: ${common.join(", ")}`);
      for (const t of common) assert.equal(b.get(t), a.get(t), `${t} differs`);
      // The report's plan computes the notebook's key: it finds the record the notebook wrote.
      const plan = await planStudy(PROFILES.quick, await initBackend({ quiet: true }), {
        notebook: "02_baseline_cnn",
        roots: [runs],
        root: runs,
      });
      assert.equal(plan.length, 1);
      assert.ok(plan[0].record, "the plan sees notebook 02's run as cached");
      assert.equal(plan[0].seconds, 0);
      const mistakes = (html: string) => html.match(/true \d → \d \(\d\.\d\d\)/g) ?? [];
      assert.ok(mistakes(first).length > 0, "the worst mistakes are shown");
      assert.deepEqual(mistakes(second), mistakes(first));
    } finally {
      await Deno.remove(runs, { recursive: true });
      await Deno.remove(out, { recursive: true });
    }
  },
});

Deno.test("run names and key parts follow the study's table", () => {
  assert.equal(runName("vgg16_scratch"), "vgg16_scratch");
  assert.equal(
    runName("vgg16_scratch", { convActivation: "relu", learningRate: 1e-4 }, "clipped"),
    "vgg16_scratch (relu convs, lr 0.0001, clipped loss)",
  );
  const split = { images: new Uint8Array(0), labels: new Uint8Array(0), rows: 28, cols: 28 };
  const full = {
    profile: PROFILES.full,
    backend: { name: "cpu-fast", device: "d", why: "w", precision: "float32" },
    train: { ...split, count: 60_000 },
    test: { ...split, count: 10_000 },
    seed: 42,
  };
  const parts = studyKeyParts({ ...full, model: "vgg_small" });
  // The study's settings for section 03 (Keras's defaults written out).
  assert.deepEqual(parts.training, {
    epochs: 10,
    batchSize: 100,
    optimizer: { name: "adam", learningRate: 0.001, beta1: 0.9, beta2: 0.999, epsilon: 1e-7 },
    loss: "logits",
    earlyStopping: { monitor: "loss", patience: 3, minDelta: 0 },
    validation: "test",
    onDivergence: "stop",
  });
  assert.deepEqual(parts.data, {
    profile: "full",
    trainSamples: 60_000,
    testSamples: 10_000,
    input: "GRAY32",
  });
  assert.deepEqual(parts.model, {
    builder: "vgg_small",
    options: { convActivation: "linear", convInit: "glorot", batchNorm: false },
  });
  // A cosine schedule decays over every step of the run: 10 epochs × 600 batches of 100.
  const cosine = studyKeyParts({
    ...full,
    model: "vgg16_scratch",
    variant: { convActivation: "relu", batchNorm: true, lrSchedule: "cosine" },
  });
  assert.deepEqual(cosine.training.optimizer.schedule, {
    name: "cosine_decay",
    decaySteps: 6000,
    alpha: 0,
  });
  assert.equal(
    runName("vgg16_scratch", { convActivation: "relu", batchNorm: true, lrSchedule: "cosine" }),
    "vgg16_scratch (relu convs, BatchNorm, cosine lr)",
  );
});

Deno.test("pickTrainingSeed: the first seed past the bar; none while a run is missing", () => {
  assert.equal(
    pickTrainingSeed([{ seed: 1, testAccuracy: 0.2 }, { seed: 2, testAccuracy: 0.9 }, {
      seed: 3,
      testAccuracy: 0.95,
    }], 0.5),
    2,
  );
  assert.equal(pickTrainingSeed([{ seed: 1, testAccuracy: 0.2 }], 0.5), null);
  assert.equal(
    pickTrainingSeed([{ seed: 1, testAccuracy: null }, { seed: 2, testAccuracy: 0.9 }], 0.5),
    null,
  );
});

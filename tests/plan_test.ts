import assert from "node:assert/strict";
import {
  fullProfileWarning,
  notebookRuns,
  planLines,
  type PlannedRun,
  planStudy,
} from "../lib/plan.ts";
import { PROFILES } from "../lib/profile.ts";
import { runKey } from "../lib/run_key.ts";

const CPU_FAST = {
  name: "cpu-fast" as const,
  device: "test",
  why: "test",
  precision: "float32" as const,
};

Deno.test("the plan lists every run of every training notebook, each with its own key", async () => {
  const runs = await notebookRuns(PROFILES.full, CPU_FAST);
  const count = (nb: string) => runs.filter((r) => r.notebook === nb).length;
  assert.equal(count("02_baseline_cnn"), 1);
  assert.equal(count("03_vgg_small"), 1);
  assert.equal(
    count("04_vgg16_scratch"),
    15,
    "the study's run, its clipped-loss twin, seven fixes, five sweep seeds, one picked",
  );
  assert.equal(count("05_transfer_vgg16"), 2, "two preprocessings");
  assert.equal(count("06_transfer_resnet152v2"), 2);
  const keys = new Set(await Promise.all(runs.map((r) => runKey(r.parts))));
  assert.equal(keys.size, runs.length);
  const vgg = runs.find((r) => r.notebook === "03_vgg_small")!.parts;
  assert.equal(vgg.data.trainSamples, 60_000);
  assert.equal(vgg.training.epochs, 10);
  const quick = await notebookRuns(PROFILES.quick, CPU_FAST);
  const head = quick.find((r) => r.notebook === "05_transfer_vgg16")!.parts;
  assert.deepEqual([head.data.trainSamples, head.data.testSamples, head.training.epochs], [
    1000,
    250,
    1,
  ]);
});

Deno.test("an empty runs folder: everything to train, with a time from the rough CPU figures", async () => {
  const root = await Deno.makeTempDir();
  try {
    const plan = await planStudy(PROFILES.full, CPU_FAST, { roots: [root], root });
    assert.ok(plan.every((p) => p.record === null && p.resumeFrom === null));
    const baseline = plan.find((p) => p.notebook === "02_baseline_cnn")!;
    // 5 epochs × 60,000 / 1,500 samples/s + the test pass (10,000 / 4,500 samples/s).
    assert.ok(Math.abs(baseline.seconds! - (5 * 60_000 / 1500 + 10_000 / 4500)) < 1e-6);
    const lines = planLines(plan);
    assert.equal(lines.length, 5);
    assert.match(lines[0], /^02_baseline_cnn: 1 run, 1 to train — about 3 min$/);
    assert.match(
      fullProfileWarning(plan, PROFILES.full, CPU_FAST),
      /^⚠ the full profile on cpu-fast .*MNIST_PROFILE=reduced/,
    );
    assert.equal(fullProfileWarning(plan, PROFILES.reduced, CPU_FAST), "");
    const gpu = { ...CPU_FAST, name: "webgpu" as const };
    assert.equal(fullProfileWarning(plan, PROFILES.full, gpu), "");
    const unknown = await planStudy(PROFILES.full, gpu, { roots: [root], root });
    assert.match(planLines(unknown)[0], /time unknown on this backend/);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("planLines: cached, resuming and fresh runs per notebook", () => {
  const run = (o: Partial<PlannedRun>): PlannedRun =>
    ({
      notebook: "04_vgg16_scratch",
      name: "vgg16_scratch",
      parts: { training: { epochs: 10 } },
      key: "k",
      record: null,
      resumeFrom: null,
      seconds: 600,
      ...o,
    }) as PlannedRun;
  const lines = planLines([
    run({ record: {} as PlannedRun["record"], seconds: 0 }),
    run({ name: "vgg16_scratch (relu convs)", resumeFrom: 3, seconds: 420 }),
    run({}),
  ]);
  assert.deepEqual(lines, [
    "04_vgg16_scratch: 3 runs, 1 cached, vgg16_scratch (relu convs) resumes after epoch 3/10, 1 to train — about 17 min",
  ]);
});

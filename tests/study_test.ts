import assert from "node:assert/strict";
import { runCaption, setupStudy, testLine } from "../lib/study/study.ts";

/** Runs `fn` with the given environment and console.log captured. */
async function withEnv<T>(env: Record<string, string>, fn: () => Promise<T>) {
  const saved = Object.fromEntries(Object.keys(env).map((k) => [k, Deno.env.get(k)]));
  const lines: string[] = [];
  const log = console.log;
  console.log = (...a: unknown[]) => void lines.push(a.join(" "));
  try {
    for (const [k, v] of Object.entries(env)) Deno.env.set(k, v);
    return { result: await fn(), lines };
  } finally {
    console.log = log;
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) Deno.env.delete(k);
      else Deno.env.set(k, v);
    }
  }
}

Deno.test("setupStudy: the profile's data for the section, the backend line, no warning on quick", async () => {
  const runs = await Deno.makeTempDir();
  try {
    const { result, lines } = await withEnv(
      { MNIST_PROFILE: "quick", RUNS_DIR: runs },
      () => setupStudy("vgg16_scratch"),
    );
    assert.equal(result.profile.name, "quick");
    assert.deepEqual(
      [result.train.count, result.test.count],
      [300, 500],
      "the VGG-sized train set",
    );
    assert.match(lines[0], /^profile: quick/);
    assert.ok(!lines.some((l) => l.startsWith("⚠")), lines.join("\n"));
    assert.match(lines.at(-1)!, /^data: 300 train \/ 500 test digits from /);
    const base = await withEnv(
      { MNIST_PROFILE: "quick", RUNS_DIR: runs },
      () => setupStudy("baseline"),
    );
    assert.equal(base.result.train.count, 2000);
  } finally {
    await Deno.remove(runs, { recursive: true });
  }
});

Deno.test("setupStudy on the full profile on a CPU says how long the notebook's runs will take", async () => {
  const runs = await Deno.makeTempDir();
  try {
    // MNIST_RETRAIN: every run to train, as on a machine without the committed records
    const { result, lines } = await withEnv(
      { MNIST_PROFILE: "full", RUNS_DIR: runs, MNIST_RETRAIN: "1" },
      () => setupStudy("vgg_small"),
    );
    if (result.backend.name === "webgpu") return; // a real GPU: no warning is due
    const warning = lines.find((l) => l.startsWith("⚠ the full profile"));
    assert.ok(warning, lines.join("\n"));
    assert.match(warning, /MNIST_PROFILE=reduced .* MNIST_PROFILE=quick/);
    assert.equal(result.train.count, 60_000);
    // notebook 02's runs (seed 42 and the evidence seeds) are in records/: nothing to train, so
    // nothing to warn about
    const recorded = await withEnv(
      { MNIST_PROFILE: "full", RUNS_DIR: runs },
      () => setupStudy("baseline"),
    );
    assert.equal(
      recorded.lines.find((l) => l.startsWith("⚠ the full profile")),
      undefined,
      recorded.lines.join("\n"),
    );
  } finally {
    await Deno.remove(runs, { recursive: true });
  }
});

Deno.test("testLine and runCaption say what Keras prints and where a result came from", () => {
  assert.equal(
    testLine({ loss: 0.06691, accuracy: 0.9822, labels: new Uint8Array(10_000) }),
    "test loss 0.0669 · test accuracy 98.22% (10000 digits)",
  );
  assert.equal(
    runCaption({
      id: "2026-11-28T07-00-00_baseline_cnn_full_ab12",
      metrics: { epochsRun: 4, stoppedEarly: true, trainSeconds: 86.4, samplesPerSecond: 912.3 },
      config: { backend: { name: "cpu-fast", precision: "float32" }, createdAt: "2026-11-28" },
    }),
    "4 epochs (stopped early) in 86 s · 912 samples/s on cpu-fast (float32) · run record 2026-11-28T07-00-00_baseline_cnn_full_ab12",
  );
});

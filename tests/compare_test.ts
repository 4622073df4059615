import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import {
  bestOfStudy,
  comparisonCharts,
  findings,
  recordsSummary,
  runsOfProfile,
  runsOverview,
  runsTable,
  shortDevice,
} from "../lib/compare.ts";
import { DISPLAY } from "../lib/display.ts";
import { loadRuns } from "../lib/runs.ts";

const FIXTURES = fileURLToPath(new URL("./fixtures/runs", import.meta.url));

Deno.test("the fixture run records load, the interrupted .tmp- one is ignored", async () => {
  const runs = await loadRuns(FIXTURES);
  assert.equal(runs.length, 6);
  assert.ok(runs.every((r) => !r.id.startsWith(".tmp-")));
  assert.equal(runsOfProfile(runs, "full").length, 5);
  assert.equal(runsOfProfile(runs, "quick").length, 1);
  assert.match(
    recordsSummary(runs, FIXTURES),
    /^6 run records in .*: 5 full-profile, 1 quick-profile\.$/,
  );
});

Deno.test("runsTable has one row per run with the comparison columns", async () => {
  const full = runsOfProfile(await loadRuns(FIXTURES), "full");
  const df = runsTable(full);
  assert.equal(df.height, 5);
  assert.deepEqual(df.columns, [
    "model",
    "section",
    "profile",
    "parameters",
    "trained",
    "epochs",
    "stopped",
    "wall_s",
    "extract_s",
    "samples_per_s",
    "backend",
    "test_accuracy",
    "weights",
    "run",
  ]);
  const rows = df.toRecords() as Record<string, unknown>[];
  const scratch = rows.find((r) => r.model === "vgg16_scratch")!;
  assert.equal(scratch.stopped, "diverged");
  assert.equal(scratch.test_accuracy, 0.1135);
  const resnet = rows.find((r) => r.model === "resnet152v2_head")!;
  assert.match(String(resnet.weights), /random features \(ImageNet weights unavailable\)/);
  // a transfer run counts its frozen base: Keras's 58,331,648 + the head's 2048×10 + 10
  assert.equal(resnet.parameters, 58_352_138);
  assert.equal(resnet.trained, 20_490);
  assert.equal(resnet.wall_s, 900 + 1800);
  assert.equal(resnet.extract_s, 1800);
  const baseline = rows.find((r) => r.model === "baseline_cnn")!;
  assert.equal(baseline.parameters, baseline.trained);
  assert.equal(baseline.extract_s, 0);
});

Deno.test("findings flag the collapse; zero runs give notices, not errors", async () => {
  const full = runsOfProfile(await loadRuns(FIXTURES), "full");
  const text = findings(full);
  assert.match(text, /\*\*vgg16_scratch\*\*: 11\.35% test accuracy — \*\*collapsed\*\*/);
  assert.doesNotMatch(text, /baseline_cnn\*\*: [0-9.]+% test accuracy — \*\*collapsed/);
  assert.match(
    text,
    /resnet152v2_head\*\*: .*58,352,138 parameters \(20,490 trained, the rest a frozen base\).* 2700 s on webgpu \(1800 s of it the base's one pass\)/,
  );
  assert.match(findings([]), /No runs/);
  assert.deepEqual(await comparisonCharts([]), []);
  assert.match(
    String(runsOverview([], "full-profile runs")[DISPLAY]()["text/markdown"]),
    /no run records yet/,
  );
  assert.match(recordsSummary([], "/x"), /No run records in `\/x` yet/);
});

Deno.test("comparison charts render to SVG", async () => {
  const full = runsOfProfile(await loadRuns(FIXTURES), "full");
  const charts = await comparisonCharts(full, "fixtures");
  assert.equal(charts.length, 3);
  for (const c of charts) assert.match(c.svg, /^<svg[\s\S]*<path/);
  assert.ok(
    charts[2].svg.includes("vgg16_scratch"),
    "the learning curves have a legend entry per run",
  );
});

Deno.test("shortDevice keeps the device's first phrase", () => {
  assert.equal(
    shortDevice(
      "OpenBLAS 0.3.21 NO_LAPACKE DYNAMIC_ARCH MAX_THREADS=64, 2 threads via FFI; im2col",
    ),
    "OpenBLAS 0.3.21",
  );
  assert.equal(shortDevice("NVIDIA H100 80GB HBM3"), "NVIDIA H100 80GB HBM3");
});

Deno.test("bestOfStudy names the best run with its record, next to Keras's mnist_convnet", async () => {
  const full = runsOfProfile(await loadRuns(FIXTURES), "full");
  const text = bestOfStudy(full);
  // The fixtures' best full run is the VGG-style net at 99.1% (an invented number).
  const best = full.reduce((a, b) => (b.metrics.testAccuracy > a.metrics.testAccuracy ? b : a));
  assert.match(text, new RegExp(`best model: ${best.config.modelName}\\*\\* \\(`));
  assert.match(text, new RegExp(`${(100 * best.metrics.testAccuracy).toFixed(2)}%`));
  assert.match(text, new RegExp(`run record ${best.id}`));
  assert.match(text, /Keras's own MNIST convnet example reports 99\.20%/);
  assert.match(bestOfStudy([]), /No full-profile records/);
});

Deno.test("one comparison never mixes precisions", async () => {
  const runs = await loadRuns(FIXTURES);
  const bf16 = {
    ...runs[0],
    config: {
      ...runs[0].config,
      backend: { ...runs[0].config.backend, precision: "mixed_bfloat16" },
    },
  };
  const all = [...runs, bf16];
  assert.equal(runsOfProfile(all, "full").length, 5, "float32 by default");
  assert.deepEqual(runsOfProfile(all, "full", "mixed_bfloat16").map((r) => r.id), [bf16.id]);
});

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
  variantFrame,
  variantRanking,
} from "../lib/report/compare.ts";
import { DISPLAY } from "../lib/report/display.ts";
import { loadRuns } from "../lib/runs/runs.ts";
import { atSeed } from "./fixtures/seeded_records.ts";

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
    "ci95_wilson",
    "over_seeds",
    "weights",
    "run",
  ]);
  const rows = df.toRecords() as Record<string, unknown>[];
  const scratch = rows.find((r) => r.model === "vgg16_scratch")!;
  assert.equal(scratch.stopped, "diverged");
  assert.equal(scratch.test_accuracy, 0.1135);
  // 1,135 of 10,000: python3's Wilson formula (tests/stats_test.ts) gives 0.10743–0.11987
  assert.equal(scratch.ci95_wilson, "10.74–11.99%");
  assert.equal(scratch.over_seeds, "", "one seed: no spread to show");
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
  assert.match(
    text,
    /\*\*vgg16_scratch\*\*: 11\.35% \(95% interval 10\.74–11\.99%\) test accuracy — \*\*collapsed\*\*/,
  );
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
  // a folder outside the repository is named by its last name only (no machine path)
  assert.match(recordsSummary([], "/x"), /No run records in `…\/x` yet/);
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
  assert.match(
    text,
    /Keras's own MNIST convnet example reports 99\.20%, above this run's interval/,
  );
  assert.match(text, /95% interval 98\.68–99\.09% \(Wilson\)/);
  // vgg_small's fixture predictions are right on 40 digits baseline_cnn gets wrong, never the
  // reverse: b = 40, c = 0, p = 2·2⁻⁴⁰ = 1.8·10⁻¹²
  assert.match(
    text,
    /Against the runner-up: \*\*vgg_small at 98\.90% is better than baseline_cnn at 98\.50%\*\* \(McNemar exact p = 1\.8·10⁻¹²; 40 of 10,000 .* one seed each \(seed 1\), not yet shown across seeds\./,
  );
  assert.match(bestOfStudy([]), /No full-profile records/);
});

Deno.test("bestOfStudy over seeds: best only when every seed of the winner beats every seed of the runner-up", async () => {
  const full = runsOfProfile(await loadRuns(FIXTURES), "full");
  const small = full.find((r) => r.config.modelName === "vgg_small")!;
  const base = full.find((r) => r.config.modelName === "baseline_cnn")!;
  // vgg_small at seeds 1, 2, 3: 98.90, 98.85, 98.80%; baseline_cnn at 1, 2: 98.50, 98.60%
  const smalls = [small, atSeed(small, 2, 5), atSeed(small, 3, 10)];
  const held = bestOfStudy([...full, ...smalls.slice(1), atSeed(base, 2, -10)]);
  assert.match(held, /^\*\*The study's best model: vgg_small\*\*/);
  assert.match(
    held,
    /Across seeds: \*\*98\.85% ± 0\.05 over 3 seeds \(1: 98\.90, 2: 98\.85, 3: 98\.80\)\*\*/,
  );
  assert.match(
    held,
    /is better than baseline_cnn at 98\.55% ± 0\.07 \(2 seeds\) at every seed\*\*: each of the 6 pairings/,
  );
  // baseline_cnn's second seed reaches 98.85%: vgg_small's mean is still higher, but its seed 3
  // (98.80%) does not beat that run — no best is claimed.
  const mixed = bestOfStudy([...full, ...smalls.slice(1), atSeed(base, 2, -35)]);
  assert.match(mixed, /^\*\*The study's highest-scoring model: vgg_small\*\*/);
  assert.match(
    mixed,
    /\*\*not at every seed\*\*: \d of the 6 pairings .* So no single best model is claimed\./,
  );
});

Deno.test("variantFrame: interval per run, mean ± sd over the pool's seeds, ordered by the mean", async () => {
  const full = runsOfProfile(await loadRuns(FIXTURES), "full");
  const small = full.find((r) => r.config.modelName === "vgg_small")!;
  const base = full.find((r) => r.config.modelName === "baseline_cnn")!;
  const pool = [atSeed(small, 2, 100), atSeed(small, 3, 100)];
  const df = variantFrame(
    [{ variant: "small", record: small }, { variant: "base", record: base }],
    pool,
  );
  const rows = df.toRecords() as Record<string, unknown>[];
  // vgg_small's mean over seeds (98.90, 97.90, 97.90) is below baseline_cnn's one 98.50%
  assert.deepEqual(rows.map((r) => r.variant), ["base", "small"]);
  assert.equal(rows[1]["95% interval (Wilson)"], "98.68–99.09%");
  assert.equal(rows[1]["over seeds"], "98.23% ± 0.58 over 3 seeds (1: 98.90, 2: 97.90, 3: 97.90)");
  assert.equal(rows[0]["over seeds"], "98.50% (seed 1)");
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

Deno.test("variantRanking: best only where the top beats the runner-up, each variant against the next", async () => {
  const full = runsOfProfile(await loadRuns(FIXTURES), "full");
  const small = full.find((r) => r.config.modelName === "vgg_small")!;
  const base = full.find((r) => r.config.modelName === "baseline_cnn")!;
  const scratch = full.find((r) => r.config.modelName === "vgg16_scratch")!;
  const rows = [{ variant: "base", record: base }, { variant: "small", record: small }];
  const text = variantRanking(rows, { variant: "The study's run", record: scratch });
  assert.match(
    text,
    /^\*\*Best: small\*\* \(on seed 1 alone\) — 98\.90% \(95% interval 98\.68–99\.09%\) test accuracy\. The study's run scored 11\.35% \(95% interval 10\.74–11\.99%\)\./,
  );
  assert.match(
    text,
    /\n- \*\*small at 98\.90% is better than base at 98\.50%\*\* \(McNemar exact p = 1\.8·10⁻¹²/,
  );
  assert.match(text, /Every variant here ran at one seed \(1\)/);
  // at a second seed vgg_small falls to 98.40%: higher on average, not better at every seed
  const seeds = variantRanking(rows, null, [atSeed(small, 2, 50)]);
  assert.match(
    seeds,
    /^\*\*Highest: small\*\* — 98\.65% ± 0\.35 over 2 seeds \(1: 98\.90, 2: 98\.40\) test accuracy, but not shown better than base \(below\), so no single best is claimed\./,
  );
  assert.match(seeds, /Ranked by mean test accuracy over seeds/);
  assert.match(seeds, /\*\*not at every seed\*\*: 1 of the 2 pairings/);
});

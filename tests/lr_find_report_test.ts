import assert from "node:assert/strict";
import { finderChart, finderSentences, formatRate } from "../lib/report/lr_find_report.ts";
import type { LrFindRecord } from "../lib/study/lr_find_run.ts";
import { readCurve } from "../lib/train/lr_finder.ts";

/** A record whose smoothed loss is `losses` at rates 1e-5, 1e-4, …; `ended` as given. */
function record(id: string, net: string, losses: number[], ended: "diverged" | "end") {
  const points = losses.map((v, i) => ({ step: i, lr: 10 ** (i - 5), loss: v, smoothed: v }));
  return {
    id,
    dir: id,
    config: {
      modelName: net,
      keyParts: { finder: { startLr: 1e-5, endLr: 10 ** (losses.length - 6) } },
    },
    result: readCurve(points, ended, 1),
  } as unknown as LrFindRecord;
}

Deno.test("formatRate writes rates as the notebooks do", () => {
  assert.equal(formatRate(0.001), "1e-3");
  assert.equal(formatRate(0.00032), "3.2e-4");
  assert.equal(formatRate(1), "1e0");
});

Deno.test("finderSentences: each run's rate against its net's divergence point, from the numbers", () => {
  // floor 1.0 at 1e-3 (index 2), then 3.0 → the loss left its floor at lr 1e-3
  const linear = record("a", "vgg16_scratch", [2.3, 2.0, 1.0, 3.0, 9.0], "diverged");
  const relu = record("b", "vgg16_scratch (relu convs)", [2.3, 2.2, 1.5, 0.9, 0.8], "end");
  const lines = finderSentences([
    { label: "the study", lr: 1e-2, finder: linear },
    { label: "lr 1e-4", lr: 1e-4, finder: linear },
    { label: "at it", lr: 1e-3, finder: linear },
    { label: "near it", lr: 6e-4, finder: linear },
    { label: "ReLU", lr: 1e-3, finder: relu },
  ]);
  assert.match(
    lines[0],
    /^\*\*the study\*\* trains at 1e-2: 10\.0× above the divergence point of its net, vgg16_scratch \(1e-3, steepest descent at 1e-4\) — past/,
  );
  assert.match(lines[1], /1e-4: 10\.0× below the divergence point .*\(1e-3.*— inside the range/);
  assert.match(lines[2], /1e-3: at the divergence point of its net/);
  assert.match(lines[3], /6e-4: 1\.7× below .* — within a factor of 2 of it/);
  assert.match(
    lines[4],
    /the loss of its net, vgg16_scratch \(relu convs\), did not run away up to 1e-1, the end/,
  );
});

Deno.test("finderChart: one curve per net, log rates, a rule per training rate", async () => {
  const linear = record("a", "linear", [2.3, 2.0, 1.0, 3.0, 9000], "diverged");
  const relu = record("b", "relu", [2.3, 2.2, 1.5, 0.9, 0.8], "end");
  const chart = await finderChart([
    { label: "x", lr: 1e-3, finder: linear },
    { label: "y", lr: 1e-4, finder: linear },
    { label: "z", lr: 1e-3, finder: relu },
  ], "finder");
  const [curves, points, rules] = chart.spec.layer;
  assert.equal(curves.encoding.x.scale.type, "log");
  assert.deepEqual(
    new Set(curves.data.values.map((v: { net: string }) => v.net)),
    new Set(["linear", "relu"]),
  );
  assert.equal(curves.encoding.y.scale.domain[1], 1.5 * 2.3, "the runaway does not set the axis");
  assert.deepEqual(
    points.data.values.map((v: { lr: number }) => v.lr),
    [1e-3],
    "relu never diverged",
  );
  assert.deepEqual(rules.data.values.map((v: { lr: number }) => v.lr), [1e-3, 1e-4]);
  assert.match(chart.svg, /^<svg/);
});

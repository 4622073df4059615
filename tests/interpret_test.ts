import assert from "node:assert/strict";
import {
  confusionChart,
  confusionMatrix,
  interpretation,
  mistakeCaption,
  mostConfused,
  perClassAccuracy,
  worstMistakes,
} from "../lib/report/interpret.ts";
import { scorePredictions } from "../lib/train/evaluate.ts";
import type { MnistSplit } from "../lib/data/mnist.ts";
import { DISPLAY } from "../lib/report/display.ts";

// Hand-made predictions: 4s mistaken for 9 three times, 7 for 1 twice, 3 for 5 once.
const labels = [4, 4, 4, 4, 7, 7, 7, 3, 3, 0, 9, 9];
const predicted = [9, 9, 9, 4, 1, 1, 7, 5, 3, 0, 9, 4];

Deno.test("confusionMatrix counts true × predicted", () => {
  const m = confusionMatrix(labels, predicted);
  assert.equal(m.length, 10);
  assert.ok(m.every((row) => row.length === 10));
  assert.equal(m[4][9], 3);
  assert.equal(m[4][4], 1);
  assert.equal(m[7][1], 2);
  assert.equal(m[3][5], 1);
  assert.equal(m[9][4], 1);
  assert.equal(m.flat().reduce((a, b) => a + b, 0), labels.length);
  const acc = perClassAccuracy(m);
  assert.equal(acc[4], 0.25);
  assert.equal(acc[0], 1);
  assert.ok(Number.isNaN(acc[2]), "a class with no samples has no accuracy");
});

Deno.test("confusionMatrix rejects mismatched lengths and out-of-range classes", () => {
  assert.throws(() => confusionMatrix([1, 2], [1]), /2 labels but 1 predictions/);
  assert.throws(() => confusionMatrix([10], [1]), /outside 0…9/);
});

Deno.test("mostConfused ranks off-diagonal cells, largest first, ties in (true, predicted) order", () => {
  const df = mostConfused(confusionMatrix(labels, predicted), 3);
  assert.deepEqual(df.columns, ["true", "predicted", "count"]);
  assert.deepEqual(df.toRecords(), [
    { true: 4, predicted: 9, count: 3 },
    { true: 7, predicted: 1, count: 2 },
    { true: 3, predicted: 5, count: 1 },
  ]);
  // Only 4 distinct mistakes exist: asking for more returns just those.
  assert.equal(mostConfused(confusionMatrix(labels, predicted), 20).height, 4);
  // A perfect model has none.
  assert.equal(mostConfused(confusionMatrix([1, 2], [1, 2])).height, 0);
});

function probs(rows: number[][]): Float32Array {
  return Float32Array.from(rows.flat());
}
function onehotish(cls: number, p: number): number[] {
  const r = new Array(10).fill((1 - p) / 9);
  r[cls] = p;
  return r;
}

Deno.test("worstMistakes ranks misclassified samples by loss of the true class", () => {
  const truth = Uint8Array.from([4, 4, 7, 2]);
  const evaluation = scorePredictions(
    probs([onehotish(9, 0.6), onehotish(9, 0.97), onehotish(7, 0.9), onehotish(3, 0.5)]),
    truth,
  );
  const worst = worstMistakes(evaluation, 5);
  assert.deepEqual(worst.map((m) => m.index), [1, 0, 3]);
  assert.equal(worst[0].true, 4);
  assert.equal(worst[0].predicted, 9);
  assert.ok(Math.abs(worst[0].confidence - 0.97) < 1e-6);
  assert.equal(mistakeCaption(worst[0]), "true 4 → 9 (0.97)");
  assert.equal(worstMistakes(evaluation, 1).length, 1);
});

Deno.test("charts: confusion heat map with counts, mistakes grid with captions", async () => {
  const chart = await confusionChart(confusionMatrix(labels, predicted));
  assert.match(chart.svg, /^<svg/);
  assert.ok(chart.svg.includes(">3<"), "the count 3 is written in its cell");
  const bundle = chart[DISPLAY]();
  assert.ok("image/svg+xml" in bundle && "application/vnd.vegalite.v5+json" in bundle);

  const n = 4;
  const images = new Uint8Array(n * 28 * 28);
  for (let i = 0; i < images.length; i += 7) images[i] = 200;
  const split: MnistSplit = {
    images,
    labels: Uint8Array.from([4, 4, 7, 2]),
    count: n,
    rows: 28,
    cols: 28,
  };
  const evaluation = scorePredictions(
    probs([onehotish(9, 0.6), onehotish(9, 0.97), onehotish(7, 0.9), onehotish(3, 0.5)]),
    split.labels,
  );
  const shown = await interpretation(evaluation, split);
  assert.equal(shown.length, 3);
  const svgs = shown.map((d) => d[DISPLAY]()).filter((b) => "image/svg+xml" in b).map((b) =>
    String(b["image/svg+xml"])
  );
  assert.equal(svgs.length, 2);
  assert.ok(svgs[1].includes("true 4 → 9 (0.97)"));
  const tableBundle = shown[1][DISPLAY]();
  assert.match(String(tableBundle["text/html"]), /<table/);
});

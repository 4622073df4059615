import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import {
  deadFraction,
  dominantPrediction,
  gradientNorms,
  maxActivation,
  predictionShareChart,
  weightNorms,
} from "../lib/diagnostics.ts";

await tf.setBackend("cpu");

/** input 2 → dense (3 relu units, weights chosen by hand) → dense_1 (2 relu) → dense_2 (10 softmax). */
function handModel(): tf.LayersModel {
  const m = tf.sequential();
  m.add(tf.layers.dense({ inputShape: [2], units: 3, activation: "relu", name: "dense" }));
  m.add(tf.layers.dense({ units: 2, activation: "relu", name: "dense_1" }));
  m.add(tf.layers.dense({ units: 10, activation: "softmax", name: "dense_2" }));
  // Unit 0 copies x0, unit 1 copies x1, unit 2 is -x0-x1: dead for non-negative inputs.
  m.getLayer("dense").setWeights([tf.tensor2d([[1, 0, -1], [0, 1, -1]]), tf.zeros([3])]);
  m.getLayer("dense_1").setWeights([tf.tensor2d([[3, 0], [4, 0], [0, 0]]), tf.zeros([2])]);
  m.getLayer("dense_2").setWeights([tf.zeros([2, 10]), tf.zeros([10])]);
  return m;
}

Deno.test("dead units and activation size on a hand-built network", async () => {
  const m = handModel();
  const x = tf.tensor2d([[1, 2], [0.5, 0]]);
  assert.ok(Math.abs(await deadFraction(m, "dense", x) - 1 / 3) < 1e-9);
  assert.equal(await deadFraction(m, "dense_1", x), 1 / 2);
  assert.equal(await maxActivation(m, "dense_1", x), 11); // 3·1 + 4·2
});

Deno.test("weight norms are the kernels' L2 norms", async () => {
  const norms = await weightNorms(handModel());
  assert.ok(Math.abs(norms.get("dense")! - 2) < 1e-6); // sqrt(1+1+1+1)
  assert.equal(norms.get("dense_1"), 5);
  assert.equal(norms.get("dense_2"), 0);
});

Deno.test("gradient norms match the analytic gradient of the output layer", async () => {
  const m = handModel();
  const x = tf.tensor2d([[1, 2]]);
  const y = tf.tensor1d([3]);
  const g = await gradientNorms(m, x, y);
  // Uniform softmax p = 0.1; dL/dlogits = p - onehot; dL/dW2 = h ⊗ (p - onehot), h = [11, 0].
  const expected = 11 * Math.sqrt(9 * 0.01 + 0.81);
  assert.ok(Math.abs(g.get("dense_2")! - expected) < 1e-4, `${g.get("dense_2")} vs ${expected}`);
  assert.ok(g.has("dense") && g.has("dense_1"));
});

Deno.test("dominantPrediction and the prediction-share chart", async () => {
  const predicted = Uint8Array.of(1, 1, 1, 7);
  assert.deepEqual(dominantPrediction(predicted), { digit: 1, share: 0.75 });
  const chart = await predictionShareChart(predicted, Uint8Array.of(1, 2, 3, 7), "shares");
  assert.equal((chart.svg.match(/aria-roledescription="bar"/g) ?? []).length, 20);
});

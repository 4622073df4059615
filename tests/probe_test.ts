import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import {
  deadFraction,
  dominantPrediction,
  gradientNorms,
  maxActivation,
  TrainingProbe,
  weightNorms,
} from "../lib/train/probe.ts";
import { compileStudy } from "../lib/models/common.ts";
import { GRAY32 } from "../lib/data/preprocess.ts";
import { fit } from "../lib/train/train.ts";
import { fakeSplit } from "./fixtures/mnist.ts";

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

Deno.test("dominantPrediction finds the commonest answer and its share", () => {
  const predicted = Uint8Array.of(1, 1, 1, 7);
  assert.deepEqual(dominantPrediction(predicted), { digit: 1, share: 0.75 });
});

/** Two convolutions → pool ("the_pool") → two ReLU Dense layers of 7 and 5 units → softmax. */
function probedModel(): tf.LayersModel {
  const m = tf.sequential();
  m.add(
    tf.layers.conv2d(
      {
        inputShape: [32, 32, 1],
        filters: 2,
        kernelSize: 3,
        strides: 3,
      },
    ),
  );
  m.add(tf.layers.conv2d({ filters: 2, kernelSize: 3, strides: 2 }));
  m.add(tf.layers.maxPooling2d({ poolSize: 2, name: "the_pool" }));
  m.add(tf.layers.flatten());
  m.add(tf.layers.dense({ units: 7, activation: "relu", name: "first_relu" }));
  m.add(tf.layers.dense({ units: 5, activation: "relu", name: "second_relu" }));
  m.add(tf.layers.dense({ units: 10, activation: "softmax" }));
  return compileStudy(m);
}

Deno.test("TrainingProbe finds the model's convolutions and ReLU layers and records every batch", async () => {
  const train = fakeSplit(30, 1), test = fakeSplit(10, 2);
  const probe = new TrainingProbe(test, GRAY32, "the_pool", 8);
  const r = await fit(probedModel(), train, {
    epochs: 2,
    batchSize: 10,
    format: GRAY32,
    seed: 1,
    progress: false,
    onBatchEnd: probe.onBatchEnd,
    onEpochEnd: probe.onEpochEnd,
  });
  const d = probe.data;
  assert.equal(d.convLayers, 2);
  assert.deepEqual(d.reluDense, [{ name: "first_relu", units: 7 }, {
    name: "second_relu",
    units: 5,
  }]);
  assert.deepEqual(d.batchLosses.map((b) => [b.step, b.epoch]), [[1, 1], [2, 1], [3, 1], [4, 2], [
    5,
    2,
  ], [6, 2]]);
  assert.equal(d.epochs.length, 2);
  assert.equal(d.epochs[1].loss, r.history.getColumn("loss").toArray()[1]);
  for (const e of d.epochs) {
    assert.ok(e.dead.first_relu >= 0 && e.dead.first_relu <= 1);
    assert.deepEqual(Object.keys(e.weightNorms).length, 5, "2 convs + 3 dense kernels");
    assert.ok(e.convOutputMax > 0);
  }
  // The probe's state survives a backup: a fresh probe restored from it holds the same data.
  const copy = new TrainingProbe(test, GRAY32, "the_pool", 8);
  copy.restoreState(JSON.parse(JSON.stringify(probe.saveState())));
  assert.deepEqual(copy.data, d);
  probe.dispose();
  copy.dispose();
});

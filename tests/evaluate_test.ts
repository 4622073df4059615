import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { evaluate, scorePredictions } from "../lib/train/evaluate.ts";
import type { MnistSplit } from "../lib/data/mnist.ts";

await tf.setBackend("cpu");

Deno.test("scorePredictions: loss and accuracy of a hand-made case", () => {
  const probs = Float32Array.from([
    ...[0.9, 0.1, 0, 0, 0, 0, 0, 0, 0, 0],
    ...[0.2, 0.8, 0, 0, 0, 0, 0, 0, 0, 0],
    ...[0.6, 0.4, 0, 0, 0, 0, 0, 0, 0, 0],
    ...[0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
  ]);
  const s = scorePredictions(probs, Uint8Array.of(0, 1, 1, 3));
  assert.equal(s.accuracy, 0.5);
  assert.deepEqual(Array.from(s.predicted), [0, 1, 0, 9]);
  const expected = -(Math.log(0.9) + Math.log(0.8) + Math.log(0.4) + Math.log(1e-7)) / 4;
  assert.ok(Math.abs(s.loss - expected) < 1e-6, `${s.loss} vs ${expected}`);
});

Deno.test("evaluate returns the accuracy of a model that always answers one digit", async () => {
  const split: MnistSplit = {
    images: new Uint8Array(5 * 784),
    labels: Uint8Array.of(3, 3, 1, 3, 0),
    count: 5,
    rows: 28,
    cols: 28,
  };
  const m = tf.sequential();
  m.add(tf.layers.flatten({ inputShape: [32, 32, 3] }));
  m.add(
    tf.layers.dense({
      units: 10,
      activation: "softmax",
      kernelInitializer: "zeros",
      biasInitializer: "zeros",
    }),
  );
  const bias = new Float32Array(10);
  bias[3] = 5;
  m.layers[1].setWeights([tf.zeros([3072, 10]), tf.tensor1d(bias)]);
  const ev = await evaluate(m, split, { batchSize: 2 });
  assert.equal(ev.accuracy, 0.6);
  assert.deepEqual(Array.from(ev.predicted), [3, 3, 3, 3, 3]);
});

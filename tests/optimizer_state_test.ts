import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { readOptimizerState, writeOptimizerState } from "../lib/train/optimizer_state.ts";

await tf.setBackend("cpu");

/** A one-layer net under Adam, after `steps` updates on a fixed batch. */
async function trained(steps: number): Promise<tf.LayersModel> {
  const model = tf.sequential({
    layers: [tf.layers.dense({ units: 2, inputShape: [3], kernelInitializer: "ones" })],
  });
  model.compile({ optimizer: tf.train.adam(0.1), loss: "meanSquaredError" });
  const x = tf.tensor2d([[1, 2, 3], [-1, 0, 2]]), y = tf.tensor2d([[1, 0], [0, 1]]);
  for (let i = 0; i < steps; i++) await model.trainOnBatch(x, y);
  tf.dispose([x, y]);
  return model;
}

Deno.test("optimizer state: read holds the step count, the moments and Adam's running β products; no tensor is left behind", async () => {
  const model = await trained(3);
  const before = tf.memory().numTensors;
  const state = await readOptimizerState(model);
  assert.equal(
    tf.memory().numTensors,
    before,
    "the step-count scalar getWeights makes is disposed",
  );
  // the layer's name prefix depends on how many layers were made before: compare the rest
  assert.deepEqual(state.map((s) => s.name.replace(/^[^/]*\//, "")), [
    "iter",
    "kernel/m",
    "bias/m",
    "kernel/v",
    "bias/v",
    "__accBeta1",
    "__accBeta2",
  ]);
  assert.deepEqual(state.map((s) => s.shape), [[], [3, 2], [2], [3, 2], [2], [], []]);
  assert.equal(state[0].data[0], 3, "three steps taken");
  // tfjs starts the products at β and multiplies by β after each step, in float32: after 3 steps
  // they hold β⁴ as 0.9·0.9·0.9·0.9 rounded at each product (not pow(0.9, 4))
  const running = (beta: number) => {
    let p = Math.fround(beta);
    for (let i = 0; i < 3; i++) p = Math.fround(p * Math.fround(beta));
    return p;
  };
  assert.equal(state[5].data[0], running(0.9));
  assert.equal(state[6].data[0], running(0.999));
  assert.notEqual(running(0.9), Math.fround(0.9 ** 4), "the case that makes the products matter");
  model.dispose();
});

Deno.test("optimizer state: written back, training continues exactly as if never interrupted", async () => {
  // reference: 5 uninterrupted steps
  const ref = await trained(5);
  const want = await ref.getWeights()[0].data();
  // 3 steps, state saved, 2 more steps that are thrown away, state restored, weights restored
  const model = await trained(3);
  const weights = model.getWeights().map((w) => w.clone());
  const saved = (await readOptimizerState(model)).map((s) => ({
    name: s.name,
    tensor: tf.tensor(s.data, s.shape, s.dtype),
  }));
  const x = tf.tensor2d([[1, 2, 3], [-1, 0, 2]]), y = tf.tensor2d([[1, 0], [0, 1]]);
  await model.trainOnBatch(tf.mul(x, 7), y);
  await model.trainOnBatch(tf.mul(x, -3), y);
  model.setWeights(weights);
  tf.dispose(weights);
  const count = tf.memory().numTensors;
  await writeOptimizerState(model, saved);
  // the 7 given tensors and the 4 replaced moments are gone, and the optimizer made 4 moments of
  // its own: 7 fewer (kept, the replaced moments would leave 3 fewer)
  assert.equal(tf.memory().numTensors, count - saved.length);
  await model.trainOnBatch(x, y);
  await model.trainOnBatch(x, y);
  assert.deepEqual(
    await model.getWeights()[0].data(),
    want,
    "bit-identical to the uninterrupted run",
  );
  tf.dispose([x, y]);
  model.dispose();
  ref.dispose();
});

import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { batchNormModeGap } from "../lib/transfer/batchnorm_mode.ts";

await tf.setBackend("cpu");

/** A 1×1 "base" that is one BatchNorm with the given moving mean and variance (γ = 1, β = 0). */
function bnBase(mean: number, variance: number): tf.LayersModel {
  const input = tf.input({ shape: [2, 2, 1] });
  const bn = tf.layers.batchNormalization({ epsilon: 1e-9 });
  const model = tf.model({ inputs: input, outputs: bn.apply(input) as tf.SymbolicTensor });
  bn.setWeights([tf.ones([1]), tf.zeros([1]), tf.tensor1d([mean]), tf.tensor1d([variance])]);
  return model;
}

Deno.test("batchNormModeGap: zero when the moving statistics are the batch's, the relative gap otherwise", async () => {
  // Batch mean 2.5, population variance 1.25.
  const x = tf.tensor4d([1, 2, 3, 4], [1, 2, 2, 1]);
  assert.ok((await batchNormModeGap(bnBase(2.5, 1.25), x)) < 1e-5);
  // Inference with mean 0, variance 1 returns x itself; training mode standardises it.
  const z = [1, 2, 3, 4].map((v) => (v - 2.5) / Math.sqrt(1.25));
  const expected = Math.hypot(...z.map((v, i) => v - (i + 1))) / Math.hypot(1, 2, 3, 4);
  assert.ok(Math.abs((await batchNormModeGap(bnBase(0, 1), x)) - expected) < 1e-5);
  x.dispose();
});

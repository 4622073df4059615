/** The study's three CNNs train on the "cpu-fast" backend with the fused Adam. */
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { FAST_CPU, fusedAdam, registerFastCpuBackend } from "../lib/kernels/mod.ts";
import { buildBaseline } from "../lib/models/baseline.ts";
import { buildVggSmall } from "../lib/models/vgg_small.ts";
import { buildVgg16Scratch } from "../lib/models/vgg16_scratch.ts";

const reg = await registerFastCpuBackend();

Deno.test("why says which libraries the fast path runs on", () => {
  assert.equal(reg.available, true, reg.why);
  assert.match(reg.why, /GEMM|OpenBLAS|oneDNN/);
  assert.match(reg.why, /convolutions/);
});

for (
  const [name, build, input] of [
    ["baseline", () => buildBaseline({ seed: 3 }), [32, 32, 3]],
    ["vgg_small", () => buildVggSmall({ seed: 3 }), [32, 32, 1]],
    ["vgg16", () => buildVgg16Scratch({ seed: 3 }), [32, 32, 3]],
  ] as [string, () => tf.LayersModel, number[]][]
) {
  Deno.test(`${name} trains on cpu-fast: loss falls on a repeated batch`, async () => {
    await tf.setBackend(FAST_CPU);
    const model = build();
    model.compile({ optimizer: fusedAdam(1e-4), loss: "sparseCategoricalCrossentropy" });
    const x = tf.randomUniform([4, ...input], 0, 1, "float32", 5);
    const y = tf.tensor([1, 2, 3, 4], [4], "float32");
    const losses: number[] = [];
    for (let s = 0; s < 4; s++) {
      const l = await model.trainOnBatch(x, y);
      losses.push(Array.isArray(l) ? l[0] : l);
    }
    assert.ok(losses.every(Number.isFinite), `${losses}`);
    assert.ok(losses[3] < losses[0], `${losses}`);
    // the optimizer keeps tfjs's Adam state layout: iterations + m and v per weight
    const state = await model.optimizer.getWeights();
    assert.equal(state.length, 1 + 2 * model.trainableWeights.length);
    tf.dispose([x, y]);
    model.dispose();
  });
}

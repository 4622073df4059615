/**
 * Adam on large weights (lib/kernels/onednn/adam_dnnl.ts: oneDNN's passes, used by fusedAdam on
 * cpu-fast from 65,536 weights on) against tfjs's own Adam on its cpu backend, in tfjs's form,
 * and against the Keras form computed with tfjs ops; moments included.
 */
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { FAST_CPU, registerFastCpuBackend } from "../lib/kernels/mod.ts";
import { fusedAdam } from "../lib/kernels/js/adam.ts";
import { rand } from "./fixtures/kernels.ts";
import { skipWithout } from "./fixtures/native.ts";

await registerFastCpuBackend();

const N = 150_000; // above adam.ts's DNNL_MIN, not a multiple of any vector width

/** Weights and both moments after three steps of `make()`'s optimizer on `backend`. */
async function steps(backend: string, make: () => tf.Optimizer): Promise<Float32Array[]> {
  await tf.setBackend(backend);
  const w = tf.variable(tf.tensor1d(rand(N, 1)), true, `adam_dnnl_w_${backend}`);
  const opt = make();
  for (let s = 0; s < 3; s++) {
    // gradients of mixed scale, with zeros: √v + ε must matter somewhere
    const g = rand(N, 10 + s).map((x, i) => i % 97 === 0 ? 0 : x * (i % 3 ? 1 : 1e-4));
    const gt = tf.tensor1d(g);
    opt.applyGradients([{ name: w.name, tensor: gt }]);
    gt.dispose();
  }
  const state = await opt.getWeights();
  const out = [
    (await w.data()) as Float32Array,
    ...(await Promise.all(
      state.slice(1).map(async (s) => (await s.tensor.data()) as Float32Array),
    )),
  ];
  w.dispose();
  opt.dispose();
  return out;
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

Deno.test({
  name: "Adam on large weights (oneDNN's passes) matches tfjs's Adam and the Keras form",
  ignore: skipWithout("oneDNN"),
  async fn() {
    for (const form of ["tfjs", "keras"] as const) {
      // reference: tfjs's Adam on cpu (fusedAdam falls back to tfjs ops off cpu-fast)
      const ref = await steps("cpu", () => fusedAdam(0.01, 0.9, 0.999, 1e-7, form));
      const got = await steps(FAST_CPU, () => fusedAdam(0.01, 0.9, 0.999, 1e-7, form));
      assert.equal(got.length, 3, "weights, m and v");
      const moved = maxAbsDiff(ref[0], rand(N, 1));
      assert.ok(moved > 0.01, `the weights moved (${moved})`);
      // three steps of ~0.01 each: float32 rounding of w is ~6e-8
      assert.ok(maxAbsDiff(got[0], ref[0]) < 2e-6, `${form} w: ${maxAbsDiff(got[0], ref[0])}`);
      assert.ok(maxAbsDiff(got[1], ref[1]) < 1e-7, `${form} m: ${maxAbsDiff(got[1], ref[1])}`);
      assert.ok(maxAbsDiff(got[2], ref[2]) < 1e-8, `${form} v: ${maxAbsDiff(got[2], ref[2])}`);
    }
  },
});

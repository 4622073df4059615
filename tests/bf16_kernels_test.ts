/**
 * mixed_bfloat16 convolutions (oneDNN bf16 primitives, float32 accumulation) against tfjs's
 * float32 "cpu" backend within bf16 tolerance, and a few training steps that lower the loss as
 * float32 does. Ignored where the CPU has no native bf16 or oneDNN is absent.
 */
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { FAST_CPU, registerFastCpuBackend, setFastPrecision } from "../lib/kernels/mod.ts";
import { convDnnl, nativeBf16, setConvBf16 } from "../lib/kernels/js/conv.ts";
import { rand } from "./fixtures/kernels.ts";
import { skipWithout } from "./fixtures/native.ts";

await registerFastCpuBackend();
// No native bf16 is a property of the CPU, not a missing install: skipped everywhere.
const ignore = !nativeBf16() || skipWithout("oneDNN");

/** max |a − b| / max |b|: bf16 keeps 8 significant bits, so ~4e-3 per rounding. */
function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let d = 0, m = 0;
  for (let i = 0; i < b.length; i++) {
    d = Math.max(d, Math.abs(a[i] - b[i]));
    m = Math.max(m, Math.abs(b[i]));
  }
  return d / m;
}

async function convAndGrads(
  backend: string,
  shape: number[],
  filter: number[],
  stride: number,
  withBias: boolean,
) {
  await tf.setBackend(backend);
  const x = tf.tensor4d(
    rand(tf.util.sizeFromShape(shape), 1),
    shape as [number, number, number, number],
  );
  const w = tf.tensor4d(
    rand(tf.util.sizeFromShape(filter), 2),
    filter as [number, number, number, number],
  );
  const bias = tf.tensor1d(rand(filter[3], 4));
  // with a bias: the fused op, as layers call it (no ReLU: a bf16-rounded y near 0 flips its gate)
  const f = (a: tf.Tensor4D, b: tf.Tensor4D) =>
    withBias
      ? tf.fused.conv2d({ x: a, filter: b, strides: stride, pad: "same", bias })
      : tf.conv2d(a, b, stride, "same");
  const y = f(x, w);
  const up = tf.tensor(rand(y.size, 3), y.shape);
  const [dx, dw] = tf.grads((a: tf.Tensor, b: tf.Tensor) =>
    tf.sum(tf.mul(f(a as tf.Tensor4D, b as tf.Tensor4D), up))
  )([x, w]);
  return Promise.all([y, dx, dw].map(async (t) => (await t.data()) as Float32Array));
}

Deno.test({
  name: "bf16 Conv2D and both gradients match float32 cpu within bf16 tolerance",
  ignore,
  fn: async () => {
    for (
      const [shape, filter, stride, withBias] of [
        [[4, 9, 9, 16], [3, 3, 16, 32], 1, false],
        [[2, 8, 8, 3], [3, 3, 3, 64], 1, true],
        [[3, 7, 7, 32], [3, 3, 32, 16], 2, false],
        [[5, 2, 2, 64], [1, 1, 64, 48], 1, true],
        // maps smaller than the kernel: the gradients as per-tap bf16 GEMMs (conv_small.ts)
        [[16, 2, 2, 32], [3, 3, 32, 24], 1, true],
        [[20, 1, 1, 16], [3, 3, 16, 8], 1, false],
      ] as [number[], number[], number, boolean][]
    ) {
      const ref = await convAndGrads("cpu", shape, filter, stride, withBias);
      assert.equal(setConvBf16(true), true);
      try {
        const got = await convAndGrads(FAST_CPU, shape, filter, stride, withBias);
        ["y", "dx", "dw"].forEach((name, i) => {
          const e = relErr(got[i], ref[i]);
          assert.ok(e < 1.5e-2, `${name} ${shape} ${filter}: relative error ${e}`);
          // all three are computed from bf16 inputs (and y, dx, dW rounded to bf16)
          assert.ok(e > 1e-4, `${name}: float32-exact, so bf16 did not run`);
        });
      } finally {
        setConvBf16(false);
      }
    }
  },
});

Deno.test({
  name: "bf16 FusedConv2D with bias and ReLU (a oneDNN post-op) matches float32 cpu's forward",
  ignore,
  fn: async () => {
    const forward = async (backend: string) => {
      await tf.setBackend(backend);
      const x = tf.tensor4d(rand(3 * 8 * 8 * 16, 5), [3, 8, 8, 16]);
      const filter = tf.tensor4d(rand(3 * 3 * 16 * 24, 6), [3, 3, 16, 24]);
      const bias = tf.tensor1d(rand(24, 7));
      const y = tf.fused.conv2d({ x, filter, strides: 1, pad: "same", bias, activation: "relu" });
      const v = (await y.data()) as Float32Array;
      tf.dispose([x, filter, bias, y]);
      return v;
    };
    const ref = await forward("cpu");
    assert.equal(setConvBf16(true), true);
    try {
      const got = await forward(FAST_CPU);
      assert.ok(relErr(got, ref) < 1.5e-2, `relative error ${relErr(got, ref)}`);
      assert.ok(got.every((v) => v >= 0) && got.some((v) => v === 0), "the ReLU was applied");
    } finally {
      setConvBf16(false);
    }
  },
});

/** Two convolutions of one geometry in a row, with biases: both filters' gradients and dx. */
async function twoConvGrads(backend: string) {
  await tf.setBackend(backend);
  const x = tf.tensor4d(rand(3 * 8 * 8 * 16, 11), [3, 8, 8, 16]);
  const [wa, wb] = [12, 13].map((s) =>
    tf.tensor4d(rand(3 * 3 * 16 * 16, s, -0.3, 0.3), [3, 3, 16, 16])
  );
  const [ba, bb] = [14, 15].map((s) => tf.tensor1d(rand(16, s)));
  const up = tf.tensor4d(rand(3 * 8 * 8 * 16, 16), [3, 8, 8, 16]);
  const conv = (a: tf.Tensor, w: tf.Tensor, b: tf.Tensor) =>
    tf.fused.conv2d({
      x: a as tf.Tensor4D,
      filter: w as tf.Tensor4D,
      strides: 1,
      pad: "same",
      bias: b,
    });
  const grads = tf.grads((a: tf.Tensor, p: tf.Tensor, q: tf.Tensor) =>
    tf.sum(tf.mul(conv(conv(a, p, ba), q, bb), up))
  )([x, wa, wb]);
  return Promise.all(grads.map(async (t) => (await t.data()) as Float32Array));
}

Deno.test({
  name:
    "bf16 weight gradients reuse the forward's and the input gradient's bf16 copies only of their own tensors",
  ignore,
  fn: async () => {
    // The second convolution's forward leaves its input (the first one's output) in the shared
    // bf16 stage of this geometry: the first convolution's weight gradient must not take it.
    const ref = await twoConvGrads("cpu");
    assert.equal(setConvBf16(true), true);
    try {
      const got = await twoConvGrads(FAST_CPU);
      ["dx", "dW first", "dW second"].forEach((name, i) => {
        const e = relErr(got[i], ref[i]);
        assert.ok(e < 2e-2, `${name}: relative error ${e}`);
      });
    } finally {
      setConvBf16(false);
    }
  },
});

/**
 * A chain of four convolutions with biases: a (16 → 32 channels), b and c (32 → 32, one
 * geometry, so one set of primitives), then d after a multiplication, which breaks the chain:
 * y and every gradient.
 */
function chainGrads(): Promise<Float32Array[]> {
  const x = tf.tensor4d(rand(2 * 8 * 8 * 16, 21), [2, 8, 8, 16]);
  const shapes: [number, number, number, number][] = [
    [3, 3, 16, 32],
    [3, 3, 32, 32],
    [3, 3, 32, 32],
    [3, 3, 32, 32],
  ];
  const ws = shapes.map((s, i) =>
    tf.tensor4d(rand(tf.util.sizeFromShape(s), 22 + i, -0.2, 0.2), s)
  );
  const bs = shapes.map((s, i) => tf.tensor1d(rand(s[3], 30 + i)));
  const up = tf.tensor4d(rand(2 * 8 * 8 * 32, 40), [2, 8, 8, 32]);
  const conv = (a: tf.Tensor, i: number, w: tf.Tensor) =>
    tf.fused.conv2d({
      x: a as tf.Tensor4D,
      filter: w as tf.Tensor4D,
      strides: 1,
      pad: "same",
      bias: bs[i],
    });
  const f = (a: tf.Tensor, ...w: tf.Tensor[]) =>
    conv(tf.mul(conv(conv(conv(a, 0, w[0]), 1, w[1]), 2, w[2]), 0.5), 3, w[3]);
  const y = f(x, ...ws);
  const grads = tf.grads((a: tf.Tensor, p: tf.Tensor, q: tf.Tensor, r: tf.Tensor, s: tf.Tensor) =>
    tf.sum(tf.mul(f(a, p, q, r, s), up))
  )([x, ...ws]);
  return Promise.all([y, ...grads].map(async (t) => (await t.data()) as Float32Array));
}

Deno.test({
  name: "bf16 convolutions take the previous one's bf16 result only for its own tensor: same bits",
  ignore,
  fn: async () => {
    await tf.setBackend(FAST_CPU);
    const d = convDnnl()!;
    assert.equal(setConvBf16(true), true);
    try {
      d.chainBlocked = false;
      const apart = await chainGrads();
      d.chainBlocked = true;
      const before = d.chained;
      const chained = await chainGrads();
      // a → b → c in both forwards (y and the gradient's) and, backwards, c's dy → b → a: the
      // multiplication gives d a new tensor, and d's input gradient a new dy for c
      assert.equal(d.chained - before, 6, "bf16 copies taken");
      ["y", "dx", "dW a", "dW b", "dW c", "dW d"].forEach((name, i) => {
        assert.deepEqual(chained[i], apart[i], `${name}: differs from the unchained run`);
      });
    } finally {
      d.chainBlocked = true;
      setConvBf16(false);
    }
  },
});

/** A dense layer's output and its three gradients, plus a batched A·Bᵀ, on `backend`. */
async function denseAndGrads(backend: string) {
  await tf.setBackend(backend);
  const x = tf.tensor2d(rand(12 * 70, 51), [12, 70]);
  const w = tf.tensor2d(rand(70 * 33, 52, -0.3, 0.3), [70, 33]);
  const b = tf.tensor1d(rand(33, 53));
  const up = tf.tensor2d(rand(12 * 33, 54), [12, 33]);
  // as layers call it: _FusedMatMul with a bias; its gradients are matmuls with a transpose
  const dense = (a: tf.Tensor, k: tf.Tensor) =>
    tf.fused.matMul({ a: a as tf.Tensor2D, b: k as tf.Tensor2D, bias: b });
  const y = dense(x, w);
  const [dx, dw] = tf.grads((a: tf.Tensor, k: tf.Tensor) => tf.sum(tf.mul(dense(a, k), up)))([
    x,
    w,
  ]);
  const p = tf.tensor3d(rand(3 * 5 * 40, 55), [3, 5, 40]);
  const q = tf.tensor3d(rand(3 * 9 * 40, 56), [3, 9, 40]);
  const batched = tf.matMul(p, q, false, true);
  return Promise.all([y, dx, dw, batched].map(async (t) => (await t.data()) as Float32Array));
}

Deno.test({
  name: "bf16 matmuls (dense forward, both gradients, batched A·Bᵀ) match float32 cpu",
  ignore,
  fn: async () => {
    const ref = await denseAndGrads("cpu");
    assert.equal(setFastPrecision("mixed_bfloat16").precision, "mixed_bfloat16");
    let got: Float32Array[];
    try {
      got = await denseAndGrads(FAST_CPU);
    } finally {
      setFastPrecision("float32");
    }
    ["y", "dx", "dW", "batched"].forEach((name, i) => {
      const e = relErr(got[i], ref[i]);
      assert.ok(e < 1.5e-2, `${name}: relative error ${e}`);
      assert.ok(e > 1e-4, `${name}: float32-exact, so bf16 did not run`);
    });
    // back in float32, the same matmuls are float32's again
    const again = await denseAndGrads(FAST_CPU);
    again.forEach((a, i) => assert.ok(relErr(a, ref[i]) < 1e-5, `float32 after bf16: ${i}`));
  },
});

/**
 * Convolutions over maps smaller than the kernel (lib/kernels/js/conv_small.ts) against tfjs's
 * own cpu conv2d: explicit and "same" padding, strides, asymmetric padding, a fused bias and
 * ReLU through cpu-fast's FusedConv2D, and the geometries that stay on the other paths.
 */
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { smallMapConv } from "../lib/kernels/js/conv_small.ts";
import { geom } from "../lib/kernels/js/conv.ts";
import { FAST_CPU, registerFastCpuBackend } from "../lib/kernels/mod.ts";
import { randomFloats } from "./fixtures/keras_h5.ts";
import { maxRelDiff } from "./fixtures/kernels.ts";

await registerFastCpuBackend();

type Pad = "same" | "valid" | [
  [number, number],
  [number, number],
  [number, number],
  [number, number],
];

async function conv(
  backend: string,
  x: [number, number, number, number],
  filter: [number, number, number, number],
  stride: number,
  pad: Pad,
) {
  await tf.setBackend(backend);
  const xs = tf.tensor4d(randomFloats(tf.util.sizeFromShape(x), 1, 1), x);
  const w = tf.tensor4d(randomFloats(tf.util.sizeFromShape(filter), 2, 0.3), filter);
  const b = tf.tensor1d(randomFloats(filter[3], 3, 0.2));
  const y = tf.fused.conv2d({
    x: xs,
    filter: w,
    strides: stride,
    pad,
    bias: b,
    activation: "relu",
  });
  const r = { shape: y.shape, values: (await y.data()) as Float32Array };
  tf.dispose([xs, w, b, y]);
  return r;
}

Deno.test("convolutions on maps smaller than the kernel match tfjs cpu", async () => {
  const cases: [[number, number, number, number], [number, number, number, number], number, Pad][] =
    [
      [[40, 2, 2, 16], [3, 3, 16, 8], 1, "same"], // ResNet conv4's 3×3 once its padding is folded
      [[40, 2, 2, 16], [3, 3, 16, 8], 2, [[0, 0], [1, 1], [1, 1], [0, 0]]], // conv4's last block
      [[20, 1, 1, 12], [3, 3, 12, 5], 1, [[0, 0], [1, 1], [1, 1], [0, 0]]], // conv5: centre tap only
      [[30, 2, 3, 4], [5, 5, 4, 6], 2, "same"], // asymmetric "same" padding, non-square map
      [[70, 2, 2, 3], [3, 3, 3, 7], 1, [[0, 0], [2, 0], [0, 1], [0, 0]]],
    ];
  for (const [x, filter, stride, pad] of cases) {
    // each case is one the cpu-fast kernel sends down the unrolled-kernel path
    const info = tf.backend_util.computeConv2DInfo(x, filter, stride, 1, pad);
    const g = geom(info)!;
    assert.equal(smallMapConv(g), true, `${x} ${filter}`);
    const ref = await conv("cpu", x, filter, stride, pad);
    const got = await conv(FAST_CPU, x, filter, stride, pad);
    assert.deepEqual(got.shape, ref.shape);
    let err = 0;
    ref.values.forEach((r, i) => (err = Math.max(err, Math.abs(got.values[i] - r))));
    assert.ok(err < 1e-5, `${x} ${filter} stride ${stride} ${JSON.stringify(pad)}: ${err}`);
  }
});

Deno.test("smallMapConv: only maps smaller than the kernel, over a batch of rows", () => {
  const g = {
    batch: 256,
    inH: 2,
    inW: 2,
    inC: 256,
    outH: 2,
    outW: 2,
    outC: 256,
    fh: 3,
    fw: 3,
    sh: 1,
    sw: 1,
    padTop: 1,
    padLeft: 1,
  };
  assert.equal(smallMapConv(g), true);
  assert.equal(smallMapConv({ ...g, inH: 4, inW: 4, padTop: 0, padLeft: 0 }), false); // 16 ≥ 9 taps
  assert.equal(smallMapConv({ ...g, fh: 1, fw: 1, padTop: 0, padLeft: 0 }), false); // pointwise
  assert.equal(smallMapConv({ ...g, batch: 8 }), false); // building U would cost as much as the GEMM
  assert.equal(smallMapConv({ ...g, inC: 2048, outC: 2048 }), false); // U over 64 MB
});

async function convGrads(
  backend: string,
  x: [number, number, number, number],
  filter: [number, number, number, number],
  stride: number,
  pad: Pad,
) {
  await tf.setBackend(backend);
  const xs = tf.tensor4d(randomFloats(tf.util.sizeFromShape(x), 4, 1), x);
  const w = tf.tensor4d(randomFloats(tf.util.sizeFromShape(filter), 5, 0.3), filter);
  const yShape = tf.conv2d(xs, w, stride, pad).shape;
  const up = tf.tensor(randomFloats(tf.util.sizeFromShape(yShape), 6, 1), yShape);
  // the gradient of Σ up·conv(x, w): dy = up reaches both backward kernels
  const [dx, dw] = tf.grads((a: tf.Tensor, b: tf.Tensor) =>
    tf.sum(tf.mul(tf.conv2d(a as tf.Tensor4D, b as tf.Tensor4D, stride, pad), up))
  )([xs, w]);
  const r = { dx: (await dx.data()) as Float32Array, dw: (await dw.data()) as Float32Array };
  tf.dispose([xs, w, up, dx, dw]);
  return r;
}

Deno.test("both gradients on maps smaller than the kernel (per-tap GEMMs) match tfjs cpu", async () => {
  const cases: [[number, number, number, number], [number, number, number, number], number, Pad][] =
    [
      [[40, 2, 2, 16], [3, 3, 16, 8], 1, "same"], // VGG16's block 5 at 32×32 input
      [[40, 2, 2, 16], [3, 3, 16, 8], 2, [[0, 0], [1, 1], [1, 1], [0, 0]]], // a tap reaches 1 pixel
      [[20, 1, 1, 12], [3, 3, 12, 5], 1, [[0, 0], [1, 1], [1, 1], [0, 0]]], // 8 taps touch nothing
      [[30, 2, 3, 4], [5, 5, 4, 6], 2, "same"], // asymmetric "same" padding, non-square map
      [[70, 2, 2, 3], [3, 3, 3, 7], 1, [[0, 0], [2, 0], [0, 1], [0, 0]]],
      [[40, 3, 1, 4], [2, 2, 4, 5], 2, [[0, 0], [0, 0], [1, 0], [0, 0]]], // the last row unreached
    ];
  for (const [x, filter, stride, pad] of cases) {
    const info = tf.backend_util.computeConv2DInfo(x, filter, stride, 1, pad);
    assert.equal(smallMapConv(geom(info)!), true, `${x} ${filter}`);
    const ref = await convGrads("cpu", x, filter, stride, pad);
    const got = await convGrads(FAST_CPU, x, filter, stride, pad);
    const what = `${x} ${filter} stride ${stride} ${JSON.stringify(pad)}`;
    assert.ok(maxRelDiff(got.dx, ref.dx) < 1e-5, `dx ${what}: ${maxRelDiff(got.dx, ref.dx)}`);
    assert.ok(maxRelDiff(got.dw, ref.dw) < 1e-5, `dW ${what}: ${maxRelDiff(got.dw, ref.dw)}`);
  }
});

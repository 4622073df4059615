import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import "@tensorflow/tfjs-backend-webgpu";
import { probeGpu } from "../lib/machine/backend.ts";
import { filterGradPlan, gemmPlan, inputGradPlan } from "../lib/kernels/webgpu/webgpu_conv_grad.ts";
import { setupWebGpu, useConvGrad } from "../lib/kernels/webgpu/webgpu_setup.ts";

/**
 * [x shape, filter shape, strides, padding]: odd sizes, strides, padding, 1×1, split-K; at least
 * 16 channels in and out, so that both gradients run as GEMMs (narrower ones go to tfjs's).
 */
const GEOMETRIES: [number[], number[], number, "same" | "valid"][] = [
  [[2, 7, 9, 16], [3, 3, 16, 17], 1, "same"],
  [[3, 8, 8, 16], [3, 3, 16, 18], 2, "valid"],
  [[2, 11, 13, 17], [3, 3, 17, 16], 2, "same"],
  [[2, 9, 7, 20], [1, 1, 20, 19], 1, "valid"],
  [[1, 6, 6, 16], [5, 5, 16, 16], 1, "same"],
  [[2, 5, 6, 16], [2, 2, 16, 16], 2, "valid"],
  // filter gradient over 8,192 positions: split in 8 parts and summed by a second pass (its
  // input gradient, 3 channels wide, is tfjs's)
  [[8, 32, 32, 3], [3, 3, 3, 16], 1, "same"],
  // input gradient over 3·3·256 taps on 2×2 maps (block 5's shape): split in 2
  [[4, 2, 2, 16], [3, 3, 16, 256], 1, "same"],
  // more than one 64×64 tile each way
  [[1, 9, 9, 67], [3, 3, 67, 65], 1, "same"],
  // narrow: both gradients are tfjs's
  [[2, 7, 9, 3], [3, 3, 3, 5], 1, "same"],
];

/** Deterministic values in [-1, 1). */
function values(n: number, seed: number): Float32Array {
  return Float32Array.from({ length: n }, (_, i) => Math.sin(i * 0.731 + seed * 1.37));
}

/** dx and dw of Σ conv2d(x, w)·r on the current backend. */
async function grads(xs: number[], ws: number[], stride: number, pad: "same" | "valid") {
  const x = tf.tensor4d(
    values(xs.reduce((a, b) => a * b), 1),
    xs as [number, number, number, number],
  );
  const w = tf.tensor4d(
    values(ws.reduce((a, b) => a * b), 2),
    ws as [number, number, number, number],
  );
  const y = tf.conv2d(x, w, stride, pad);
  const r = tf.tensor(values(y.size, 3), y.shape);
  const [dx, dw] = tf.grads((a: tf.Tensor, b: tf.Tensor) =>
    tf.sum(tf.mul(tf.conv2d(a as tf.Tensor4D, b as tf.Tensor4D, stride, pad), r))
  )([x, w]);
  const out = { dx: await dx.data() as Float32Array, dw: await dw.data() as Float32Array };
  tf.dispose([x, w, y, r, dx, dw]);
  return out;
}

/** Within float32 rounding of sums of ~1,000 terms, relative to the gradient's scale. */
function assertClose(got: Float32Array, want: Float32Array, what: string) {
  assert.equal(got.length, want.length, `${what}: length`);
  const scale = Math.max(1, ...want.map(Math.abs));
  let worst = 0;
  for (let i = 0; i < want.length; i++) {
    const err = Math.abs(got[i] - want[i]) / scale;
    if (!(err <= worst)) worst = err; // NaN-safe
  }
  assert.ok(worst < 1e-5, `${what}: worst error ${worst} of the largest value ${scale}`);
}

const gpu = await probeGpu();

for (const mode of ["gemm", "study"] as const) {
  Deno.test({
    name: `WebGPU convolution gradients ("${mode}": ${
      mode === "gemm" ? "both GEMMs" : "GEMM filter, tfjs's input by map size"
    }) match tfjs-cpu on odd geometries`,
    ignore: !gpu,
    async fn() {
      const want = [];
      await tf.setBackend("cpu");
      for (const [xs, ws, s, p] of GEOMETRIES) want.push(await grads(xs, ws, s, p));
      await tf.setBackend("webgpu");
      assert.equal(setupWebGpu(mode).convGrad, mode);
      try {
        for (let i = 0; i < GEOMETRIES.length; i++) {
          const [xs, ws, s, p] = GEOMETRIES[i];
          const got = await grads(xs, ws, s, p);
          const what = `x ${xs} w ${ws} stride ${s} ${p}`;
          assertClose(got.dw, want[i].dw, `${what}: filter gradient`);
          assertClose(got.dx, want[i].dx, `${what}: input gradient`);
        }
        const shaders = Object.keys(
          (tf.backend() as unknown as { pipelineCache: object }).pipelineCache,
        );
        const ran = (key: string) => shaders.some((k) => k.startsWith(key));
        assert.ok(ran("mnistConvGradGemm_filter"), "the filter-gradient GEMM ran");
        assert.ok(ran("mnistConvGradSumParts"), "split-K's sum ran");
        if (mode === "gemm") assert.ok(ran("mnistConvGradGemm_input"), "input GEMM ran");
        if (mode === "study") {
          assert.ok(ran("conv2DDerInputMM"), "tfjs's matmul input gradient ran (large maps)");
          assert.ok(ran("conv2DDerInput_"), "tfjs's direct input gradient ran (small maps)");
        }
      } finally {
        useConvGrad("tfjs");
        await tf.setBackend("cpu");
      }
    },
  });
}

Deno.test({
  name: "NCHW convolution gradients still run (tfjs's kernels) with ours registered",
  ignore: !gpu,
  async fn() {
    const nchwGrad = async () => {
      const x = tf.tensor4d(values(2 * 3 * 5 * 5, 4), [2, 3, 5, 5]);
      const w = tf.tensor4d(values(3 * 3 * 3 * 2, 5), [3, 3, 3, 2]);
      const dw = tf.grad((b: tf.Tensor) =>
        tf.sum(tf.conv2d(x, b as tf.Tensor4D, 1, "same", "NCHW"))
      )(w);
      const got = await dw.data() as Float32Array;
      tf.dispose([x, w, dw]);
      return got;
    };
    await tf.setBackend("cpu");
    const want = await nchwGrad();
    await tf.setBackend("webgpu");
    setupWebGpu("gemm");
    try {
      assertClose(await nchwGrad(), want, "NCHW filter gradient");
    } finally {
      useConvGrad("tfjs");
      await tf.setBackend("cpu");
    }
  },
});

Deno.test("split-K plans: long inner dimensions on few tiles are split, big results are not", () => {
  const info = (x: number[], w: number[]) =>
    tf.backend_util.computeConv2DInfo(
      x as [number, number, number, number],
      w as [number, number, number, number],
      1,
      1,
      "same",
    );
  // VGG16's first layer at batch 100: a 27×64 filter gradient over 102,400 positions
  const first = filterGradPlan(info([100, 32, 32, 3], [3, 3, 3, 64]));
  assert.equal(first.splits, 100);
  assert.equal(first.chunk, 1024);
  // block 5 (2×2 maps): 4608×512 over 400 positions: no split
  assert.equal(filterGradPlan(info([100, 2, 2, 512], [3, 3, 512, 512])).splits, 1);
  // the input gradient of block 1 (102,400 rows) needs no split
  assert.equal(inputGradPlan(info([100, 32, 32, 64], [3, 3, 64, 64])).splits, 1);
  // every inner element is covered exactly once
  for (const [m, n, k] of [[27, 64, 102400], [5, 7, 2049], [64, 64, 16], [1, 1, 1]]) {
    const p = gemmPlan(m, n, k);
    assert.ok(p.chunk % 16 === 0 && (p.splits - 1) * p.chunk < k && p.splits * p.chunk >= k);
  }
});

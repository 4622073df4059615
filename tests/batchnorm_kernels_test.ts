/**
 * lib/kernels/js/batchnorm.ts (and pad.ts) against tfjs's reference "cpu" backend: Mean, Sum, Tile and
 * FusedBatchNorm on random inputs, then a whole BatchNormalization layer (training and
 * inference mode) with its gradients and moving averages.
 */
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { fallbackCounts, FAST_CPU, registerFastCpuBackend } from "../lib/kernels/mod.ts";
import { type Inputs, maxRelDiff, rand, runOn } from "./fixtures/kernels.ts";
import { batchNormRuns, setNativeBatchNorm } from "../lib/kernels/js/batchnorm_layer.ts";
import { loadDnnl } from "../lib/kernels/onednn/dnnl.ts";

await registerFastCpuBackend();

async function check(name: string, inputs: Inputs, attrs: object, tol: number) {
  const ref = await runOn("cpu", name, inputs, attrs);
  const got = await runOn(FAST_CPU, name, inputs, attrs);
  assert.deepEqual(got.shape, ref.shape, `${name} ${JSON.stringify(attrs)} shape`);
  const err = maxRelDiff(got.values, ref.values);
  assert.ok(err <= tol, `${name} ${JSON.stringify(attrs)}: error ${err} > ${tol}`);
}

function clearFallbacks(): void {
  for (const k of Object.keys(fallbackCounts)) delete fallbackCounts[k];
}

Deno.test("Mean and Sum over contiguous axes match cpu; other axes run tfjs's kernel", async () => {
  clearFallbacks();
  const x = { shape: [6, 5, 4, 7], values: rand(840, 1, -3, 5) };
  const runs: (number[] | null)[] = [
    [0],
    [0, 1],
    [0, 1, 2],
    [1, 2],
    [2, 1],
    [3],
    [-1],
    [1, 2, 3],
    [0, 1, 2, 3],
    [2],
    null,
  ];
  for (const name of ["Mean", "Sum"]) {
    for (const axis of runs) {
      for (const keepDims of [false, true]) await check(name, { x }, { axis, keepDims }, 1e-5);
    }
  }
  // a bias gradient's size (≥ 65,536 elements, outer = 1): the native BLAS's column sums
  const big = { shape: [20, 16, 16, 24], values: rand(20 * 16 * 16 * 24, 2, -1, 1.5) };
  for (const name of ["Mean", "Sum"]) {
    await check(name, { x: big }, { axis: [0, 1, 2], keepDims: false }, 1e-5);
  }
  assert.deepEqual(fallbackCounts, {});
  await check("Mean", { x }, { axis: [0, 2], keepDims: false }, 1e-5);
  assert.equal(fallbackCounts.Mean, 1);
  clearFallbacks();
});

Deno.test("Tile of a per-channel row matches cpu; other tilings run tfjs's kernel", async () => {
  clearFallbacks();
  for (const [shape, reps] of [[[1, 1, 1, 9], [3, 4, 5, 1]], [[1, 1], [7, 1]], [[1], [1]]]) {
    const x = { shape, values: rand(tf.util.sizeFromShape(shape), 2) };
    await check("Tile", { x }, { reps }, 0);
  }
  assert.deepEqual(fallbackCounts, {});
  await check("Tile", { x: { shape: [2, 3], values: rand(6, 3) } }, { reps: [2, 2] }, 0);
  assert.equal(fallbackCounts.Tile, 1);
  clearFallbacks();
});

Deno.test("FusedBatchNorm matches cpu with per-channel, scalar and missing parameters", async () => {
  clearFallbacks();
  const c = 6;
  const x = { shape: [4, 3, 5, c], values: rand(360 * 1, 4, -4, 6) };
  const vec = (seed: number, lo: number, hi: number) => ({
    shape: [c],
    values: rand(c, seed, lo, hi),
  });
  // tfjs's batchNorm wants mean and variance of one rank: length-1 vectors broadcast as scalars
  const one = (v: number) => ({ shape: [1], values: Float32Array.of(v) });
  const cases: Inputs[] = [
    {
      x,
      mean: vec(5, -1, 1),
      variance: vec(6, 0.1, 3),
      offset: vec(7, -1, 1),
      scale: vec(8, 0.5, 2),
    },
    { x, mean: vec(5, -1, 1), variance: vec(6, 0.1, 3) },
    { x, mean: one(0.3), variance: one(0.7), offset: one(-0.5), scale: vec(8, 0.5, 2) },
    {
      x: { shape: [10, c], values: rand(10 * c, 9) },
      mean: { shape: [1, c], values: rand(c, 10) },
      variance: { shape: [1, c], values: rand(c, 11, 0.2, 1) },
    },
  ];
  for (const inputs of cases) {
    for (const varianceEpsilon of [0.001, 1e-5]) {
      await check("FusedBatchNorm", inputs, { varianceEpsilon }, 2e-6);
    }
  }
  assert.deepEqual(fallbackCounts, {});
  clearFallbacks();
});

/** One BatchNormalization layer's output, gradients and moving statistics after `steps` calls. */
async function bnLayerRun(
  backend: string,
  training: boolean,
  steps: number,
  [n, h, w, c]: number[],
) {
  await tf.setBackend(backend);
  const layer = tf.layers.batchNormalization({ momentum: 0.9, epsilon: 1e-3 });
  layer.build([null, h, w, c]);
  // non-trivial gamma, beta and moving statistics
  layer.setWeights([
    tf.tensor1d(rand(c, 20, 0.5, 2)),
    tf.tensor1d(rand(c, 21)),
    tf.tensor1d(rand(c, 22)),
    tf.tensor1d(rand(c, 23, 0.5, 2)),
  ]);
  const upstream = tf.tensor4d(rand(n * h * w * c, 24), [n, h, w, c]);
  let y: Float32Array = new Float32Array(), yRun = y;
  let grads: Float32Array[] = [];
  for (let s = 0; s < steps; s++) {
    // an offset mean, so that a one-pass variance would lose digits
    const x = tf.tensor4d(rand(n * h * w * c, 30 + s, 3, 8), [n, h, w, c]);
    const vars = layer.trainableWeights.map((w) => w.read() as tf.Variable);
    const f = (xx: tf.Tensor) =>
      tf.sum(tf.mul(layer.apply(xx, { training }) as tf.Tensor, upstream)) as tf.Scalar;
    // each call updates the moving averages in training mode: 3× per step on both backends
    const dx = tf.grad(f)(x);
    const { grads: dv } = tf.variableGrads(() => f(x), vars);
    const g = [dx, ...vars.map((v) => dv[v.name])];
    // the output in the run's mode (training: the batch's own statistics), then inference
    yRun = (await (layer.apply(x, { training }) as tf.Tensor).data()) as Float32Array;
    y = (await (layer.apply(x, { training: false }) as tf.Tensor).data()) as Float32Array;
    grads = await Promise.all(g.map(async (t) => (await t.data()) as Float32Array));
  }
  const weights = await Promise.all(layer.getWeights().map(async (w) => await w.data()));
  return { y, yRun, grads, weights: weights as Float32Array[] };
}

/** Runs `f` once per training-mode engine: oneDNN (where it loads), then the JS loops. */
async function onEachEngine(f: (engine: string) => Promise<void>) {
  const engines = loadDnnl() ? ["dnnl", "js"] as const : ["js"] as const;
  for (const engine of engines) {
    setNativeBatchNorm(engine === "dnnl");
    const before = batchNormRuns[engine];
    try {
      await f(engine);
    } finally {
      setNativeBatchNorm(true);
    }
    assert.ok(batchNormRuns[engine] > before, `the ${engine} path ran`);
  }
}

Deno.test("a BatchNormalization layer matches cpu: training and inference, gradients, moving averages", async () => {
  // a small odd shape, and a VGG block's channel count (oneDNN's vectorised NHWC kernel)
  for (const shape of [[3, 5, 6, 8], [6, 8, 8, 64]]) {
    const ref = await Promise.all([true, false].map((t) => bnLayerRun("cpu", t, 3, shape)));
    await onEachEngine(async (engine) => {
      for (const training of [true, false]) {
        const r = ref[training ? 0 : 1];
        const got = await bnLayerRun(FAST_CPU, training, 3, shape);
        const at = `${engine}, ${shape}, training ${training}`;
        assert.ok(maxRelDiff(got.yRun, r.yRun) < 1e-5, `output (${at})`);
        assert.ok(maxRelDiff(got.y, r.y) < 1e-5, `inference output after (${at})`);
        r.grads.forEach((g, i) =>
          assert.ok(maxRelDiff(got.grads[i], g) < 1e-4, `gradient ${i} (${at})`)
        );
        // gamma, beta, moving mean, moving variance (updated by every training-mode call, untouched else)
        r.weights.forEach((wt, i) =>
          assert.ok(maxRelDiff(got.weights[i], wt) < 1e-5, `weight ${i} (${at})`)
        );
      }
    });
  }
});

Deno.test("training-mode BN on cpu-fast runs fused (no Mean/FusedBatchNorm kernels); axis 1 is tfjs's graph", async () => {
  await tf.setBackend(FAST_CPU);
  const kernelsOf = async (layer: tf.layers.Layer, x: tf.Tensor) =>
    (await tf.profile(() => layer.apply(x, { training: true }) as tf.Tensor)).kernelNames;
  const x = tf.randomUniform([4, 3, 5, 6]);
  const last = await kernelsOf(tf.layers.batchNormalization({}), x);
  assert.ok(!last.includes("Mean") && !last.includes("FusedBatchNorm"), last.join());
  const first = await kernelsOf(tf.layers.batchNormalization({ axis: 1 }), x);
  assert.ok(first.includes("Mean") && first.includes("FusedBatchNorm"), first.join());
  x.dispose();
});

// (tfjs 4.22's own gradient of a training-mode BN over a non-last axis throws on cpu too)
Deno.test("BN over a dense layer's [batch, features] matches cpu with gradients", async () => {
  const cases: [number[], number][] = [[[16, 10], -1], [[7, 2, 3], 2]];
  for (const [shape, axis] of cases) {
    const run = async (backend: string) => {
      await tf.setBackend(backend);
      const layer = tf.layers.batchNormalization({ axis, momentum: 0.5 });
      const x = tf.tensor(rand(tf.util.sizeFromShape(shape), 50, -2, 3), shape);
      const up = tf.tensor(rand(x.size, 51), shape);
      const f = (xx: tf.Tensor) =>
        tf.sum(tf.mul(layer.apply(xx, { training: true }) as tf.Tensor, up)) as tf.Scalar;
      const dx = await tf.grad(f)(x).data();
      const w = await Promise.all(layer.getWeights().map((t) => t.data()));
      return [dx, ...w] as Float32Array[];
    };
    const ref = await run("cpu");
    await onEachEngine(async (engine) => {
      const got = await run(FAST_CPU);
      ref.forEach((r, i) =>
        assert.ok(maxRelDiff(got[i], r) < 1e-4, `${engine}, ${shape} axis ${axis}: ${i}`)
      );
    });
  }
});

Deno.test("PadV2 matches cpu for zero padding, a constant, every rank and empty sides", async () => {
  clearFallbacks();
  const cases: [number[], [number, number][], number][] = [
    [[2, 5, 4, 3], [[0, 0], [1, 1], [1, 1], [0, 0]], 0],
    [[2, 5, 4, 3], [[0, 0], [3, 2], [0, 1], [0, 0]], 0],
    [[3, 4], [[1, 2], [2, 0]], -1.5],
    [[7], [[2, 3]], 4],
    [[2, 3, 4], [[1, 0], [0, 0], [2, 2]], 0],
  ];
  for (const [shape, paddings, constantValue] of cases) {
    const x = { shape, values: rand(tf.util.sizeFromShape(shape), 60) };
    await check("PadV2", { x }, { paddings, constantValue }, 0);
  }
  assert.deepEqual(fallbackCounts, {});
});

Deno.test("a small ResNetV2 base (BN, padding, 1×1 and small-map convolutions) predicts as on cpu", async () => {
  const { buildResNetV2Base } = await import("../lib/models/resnet152v2.ts");
  const run = async (backend: string) => {
    await tf.setBackend(backend);
    const model = buildResNetV2Base({
      seed: 3,
      stemFilters: 8,
      stacks: [{ filters: 4, blocks: 2, stride: 2 }, { filters: 8, blocks: 2, stride: 2 }, {
        filters: 8,
        blocks: 2,
        stride: 1,
      }], // maps 8 → 4 → 2 → 2: the GEMM path for 2×2 outputs
      inputShape: [32, 32, 3],
      trainable: false,
    });
    // BN statistics away from 0/1 so the inference normalisation matters
    let seed = 70;
    for (const layer of model.layers) {
      if (layer.getClassName() !== "BatchNormalization") continue;
      layer.setWeights(
        layer.getWeights().map((w, i) =>
          tf.tensor(rand(w.size, seed++, i === 3 ? 0.5 : -0.5, i === 3 ? 2 : 0.5), w.shape)
        ),
      );
    }
    const x = tf.tensor4d(rand(6 * 32 * 32 * 3, 99), [6, 32, 32, 3]);
    return (await (model.predict(x) as tf.Tensor).data()) as Float32Array;
  };
  const ref = await run("cpu"), got = await run(FAST_CPU);
  const err = maxRelDiff(got, ref);
  assert.ok(err < 1e-4, `max relative error ${err}`);
});

Deno.test("FusedDepthwiseConv2D 1×1 (a folded inference BatchNorm) matches cpu; other depthwise convolutions run tfjs's kernel", async () => {
  clearFallbacks();
  const x = rand(2 * 3 * 4 * 5, 80, -2, 2);
  x[8] = -0;
  const inputs = (fh: number, bias: boolean) => ({
    x: { shape: [2, 3, 4, 5], values: x },
    filter: { shape: [fh, fh, 5, 1], values: rand(fh * fh * 5, 81, -1.5, 1.5) },
    ...(bias ? { bias: { shape: [5], values: rand(5, 82) } } : {}),
  });
  const attrs = (activation: string) => ({
    strides: [1, 1],
    pad: "same",
    dataFormat: "NHWC",
    dilations: [1, 1],
    activation,
    leakyreluAlpha: 0.1,
  });
  for (const act of ["relu", "linear", "leakyrelu"]) {
    for (const bias of [true, false]) {
      await check("FusedDepthwiseConv2D", inputs(1, bias), attrs(act), 1e-6);
    }
  }
  assert.deepEqual(fallbackCounts, {});
  await check("FusedDepthwiseConv2D", inputs(3, true), attrs("relu"), 1e-5);
  assert.deepEqual(fallbackCounts, { FusedDepthwiseConv2D: 1 });
});

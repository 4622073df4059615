/**
 * lib/kernels/conv_relu_layer.ts against tfjs's reference "cpu" backend: a ReLU Conv2D layer's
 * output and gradients (input, kernel, bias) under a gradient, where cpu-fast runs it as one
 * fused convolution and cpu as Conv2D, Add and Relu.
 */
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { FAST_CPU, registerFastCpuBackend } from "../lib/kernels/mod.ts";
import { maxRelDiff, rand } from "./fixtures/kernels.ts";

await registerFastCpuBackend();

interface Case {
  filters: number;
  kernelSize: number;
  strides: number;
  padding: "same" | "valid";
  useBias: boolean;
  activation: "relu" | "linear";
  dataFormat?: "channelsFirst";
}

/** The layer's output and the gradients of sum(y·upstream), on `backend`. */
async function run(backend: string, c: Case, shape: number[]) {
  await tf.setBackend(backend);
  const layer = tf.layers.conv2d({
    ...c,
    kernelInitializer: "glorotUniform",
    biasInitializer: tf.initializers.randomUniform({ minval: -0.3, maxval: 0.3, seed: 3 }),
  });
  const x = tf.tensor4d(rand(tf.util.sizeFromShape(shape), 11, -1, 1.5), shape as never);
  layer.build(x.shape);
  // the same weights on both backends (initializers are seeded per call, not per layer)
  layer.setWeights(
    layer.getWeights().map((w, i) => tf.tensor(rand(w.size, 20 + i, -0.4, 0.4), w.shape)),
  );
  const outShape = (layer.apply(x) as tf.Tensor).shape;
  const up = tf.tensor(rand(tf.util.sizeFromShape(outShape), 12), outShape);
  const f = (xx: tf.Tensor) => tf.sum(tf.mul(layer.apply(xx) as tf.Tensor, up)) as tf.Scalar;
  const vars = layer.trainableWeights.map((w) => w.read() as tf.Variable);
  const { grads } = tf.variableGrads(() => f(x), vars);
  const kernels = (await tf.profile(() => tf.grad(f)(x))).kernelNames;
  const dx = tf.grad(f)(x);
  const out = [layer.apply(x) as tf.Tensor, dx, ...vars.map((v) => grads[v.name])];
  const values = await Promise.all(out.map((t) => t.data() as Promise<Float32Array>));
  return { values, kernels };
}

Deno.test("a ReLU Conv2D layer under a gradient matches cpu as one fused convolution", async () => {
  const cases: Case[] = [
    { filters: 16, kernelSize: 3, strides: 1, padding: "same", useBias: true, activation: "relu" },
    { filters: 8, kernelSize: 3, strides: 2, padding: "valid", useBias: true, activation: "relu" },
    { filters: 8, kernelSize: 1, strides: 1, padding: "same", useBias: false, activation: "relu" },
  ];
  for (const c of cases) {
    const ref = await run("cpu", c, [4, 9, 9, 5]);
    const got = await run(FAST_CPU, c, [4, 9, 9, 5]);
    ["output", "dx", "kernel", "bias"].slice(0, ref.values.length).forEach((what, i) =>
      assert.ok(
        maxRelDiff(got.values[i], ref.values[i]) < 1e-4,
        `${what} (${JSON.stringify(c)}): ${maxRelDiff(got.values[i], ref.values[i])}`,
      )
    );
    // cpu runs Conv2D, Add (bias), Relu; cpu-fast one FusedConv2D with the ReLU in it
    assert.ok(ref.kernels.includes("Relu"), ref.kernels.join());
    assert.ok(got.kernels.includes("FusedConv2D"), got.kernels.join());
    for (const k of ["Relu", "Conv2D", "Add"]) {
      assert.ok(!got.kernels.includes(k), got.kernels.join());
    }
  }
});

Deno.test("linear and channels-first convolutions keep tfjs's own graph on cpu-fast", async () => {
  const base = { filters: 4, kernelSize: 3, strides: 1, padding: "same", useBias: true } as const;
  for (
    const c of [{ ...base, activation: "linear" }, {
      ...base,
      activation: "relu",
      dataFormat: "channelsFirst",
    }] as Case[]
  ) {
    const ref = await run("cpu", c, [2, 8, 8, 3]);
    const got = await run(FAST_CPU, c, [2, 8, 8, 3]);
    ref.values.forEach((r, i) => assert.ok(maxRelDiff(got.values[i], r) < 1e-4, `${i}`));
    // the same kernels as tfjs builds on cpu
    assert.deepEqual(got.kernels, ref.kernels);
  }
});

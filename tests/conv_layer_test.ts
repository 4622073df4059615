/**
 * lib/kernels/js/conv_layer.ts against tfjs's reference "cpu" backend: a linear or ReLU Conv2D
 * layer's output and gradients (input, kernel, bias), where cpu-fast runs it as one FusedConv2D
 * with a lazy gradient and cpu as tfjs-core builds it; and that training skips the gradient
 * with respect to the images.
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
  activation: "relu" | "linear" | "sigmoid";
  dataFormat?: "channelsFirst";
}

/** Seeded weights, the same on both backends (initializers are seeded per call, not per layer). */
function setWeights(layer: tf.layers.Layer, seed: number): void {
  layer.setWeights(
    layer.getWeights().map((w, i) => tf.tensor(rand(w.size, seed + i, -0.4, 0.4), w.shape)),
  );
}

/** The layer's output and the gradients of sum(y·upstream), on `backend`. */
async function run(backend: string, c: Case, shape: number[]) {
  await tf.setBackend(backend);
  const layer = tf.layers.conv2d(c);
  const x = tf.tensor4d(rand(tf.util.sizeFromShape(shape), 11, -1, 1.5), shape as never);
  layer.build(x.shape);
  setWeights(layer, 20);
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

Deno.test("linear and ReLU Conv2D layers under a gradient match cpu as one FusedConv2D", async () => {
  const cases: Case[] = [
    { filters: 16, kernelSize: 3, strides: 1, padding: "same", useBias: true, activation: "relu" },
    { filters: 8, kernelSize: 3, strides: 2, padding: "valid", useBias: true, activation: "relu" },
    { filters: 8, kernelSize: 1, strides: 1, padding: "same", useBias: false, activation: "relu" },
    {
      filters: 16,
      kernelSize: 3,
      strides: 1,
      padding: "same",
      useBias: true,
      activation: "linear",
    },
    {
      filters: 8,
      kernelSize: 3,
      strides: 2,
      padding: "same",
      useBias: false,
      activation: "linear",
    },
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
    // cpu runs a ReLU layer as Conv2D, Add (bias), Relu; cpu-fast as one FusedConv2D
    if (c.activation === "relu") assert.ok(ref.kernels.includes("Relu"), ref.kernels.join());
    assert.ok(got.kernels.includes("FusedConv2D"), got.kernels.join());
    for (const k of ["Relu", "Conv2D", "Add"]) {
      assert.ok(!got.kernels.includes(k), got.kernels.join());
    }
  }
});

Deno.test("other activations and channels-first convolutions keep tfjs's own graph", async () => {
  const base = { filters: 4, kernelSize: 3, strides: 1, padding: "same", useBias: true } as const;
  const cases: Case[] = [
    { ...base, activation: "sigmoid" },
    { ...base, activation: "relu", dataFormat: "channelsFirst" },
  ];
  for (const c of cases) {
    const ref = await run("cpu", c, [2, 8, 8, 3]);
    const got = await run(FAST_CPU, c, [2, 8, 8, 3]);
    ref.values.forEach((r, i) => assert.ok(maxRelDiff(got.values[i], r) < 1e-4, `${i}`));
    // the same kernels as tfjs builds on cpu
    assert.deepEqual(got.kernels, ref.kernels);
  }
});

/** Weight gradients of a two-convolution net's loss, and the kernels that computed them. */
async function trainingGrads(backend: string) {
  await tf.setBackend(backend);
  const model = tf.sequential({
    layers: [
      tf.layers.conv2d({ inputShape: [8, 8, 3], filters: 8, kernelSize: 3 }),
      tf.layers.conv2d({ filters: 4, kernelSize: 3, padding: "same", activation: "relu" }),
      tf.layers.flatten(),
    ],
  });
  model.layers.forEach((l, i) => setWeights(l, 30 + 10 * i));
  const x = tf.tensor4d(rand(2 * 8 * 8 * 3, 13, -1, 1), [2, 8, 8, 3]);
  const up = tf.tensor(rand(2 * 6 * 6 * 4, 14), [2, 144]);
  const loss = () => tf.sum(tf.mul(model.apply(x) as tf.Tensor, up)) as tf.Scalar;
  const vars = model.trainableWeights.map((w) => w.read() as tf.Variable);
  const profile = await tf.profile(() => Object.values(tf.variableGrads(loss, vars).grads));
  const { grads } = tf.variableGrads(loss, vars);
  const values = await Promise.all(vars.map((v) => grads[v.name].data() as Promise<Float32Array>));
  const count = (k: string) => profile.kernels.filter((n) => n.name === k).length;
  return { values, inputGrads: count("Conv2DBackpropInput") };
}

Deno.test("training skips the first convolution's gradient with respect to the images", async () => {
  const ref = await trainingGrads("cpu");
  const got = await trainingGrads(FAST_CPU);
  ref.values.forEach((r, i) =>
    assert.ok(maxRelDiff(got.values[i], r) < 1e-4, `weight ${i}: ${maxRelDiff(got.values[i], r)}`)
  );
  // tfjs-core's fused (linear) convolution computes the first layer's input gradient too, though
  // only the second layer's is read
  assert.equal(ref.inputGrads, 2);
  assert.equal(got.inputGrads, 1);
});

/**
 * The folded inference pass (lib/transfer/inference.ts) against tfjs-layers' own `model.predict` on
 * tfjs's "cpu" backend: a small ResNet-v2 with non-trivial BatchNorm statistics (every fold
 * kind: padding into the convolution, BatchNorm into kernel and bias, ReLU into the epilogue),
 * on cpu and on cpu-fast; and a model it does not rewrite.
 */
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { inferenceGraph } from "../lib/transfer/inference.ts";
import { buildResNetV2Base } from "../lib/models/resnet152v2.ts";
import { buildVgg16Base } from "../lib/models/vgg16_imagenet.ts";
import { FAST_CPU, registerFastCpuBackend } from "../lib/kernels/mod.ts";
import { probeGpu } from "../lib/machine/backend.ts";
import { randomFloats } from "./fixtures/keras_h5.ts";
import { maxRelDiff } from "./fixtures/kernels.ts";

await registerFastCpuBackend();

/** A small ResNet-v2 (maps 8 → 4 → 2 → 1) with BatchNorm statistics away from 0 and 1. */
function smallResNet() {
  const model = buildResNetV2Base({
    seed: 5,
    stemFilters: 8,
    stacks: [
      { filters: 4, blocks: 2, stride: 2 },
      { filters: 8, blocks: 3, stride: 2 },
      { filters: 8, blocks: 2, stride: 2 },
    ],
    inputShape: [32, 32, 3],
    trainable: false,
  });
  let seed = 11;
  for (const layer of model.layers) {
    if (layer.getClassName() === "Conv2D" && layer.getWeights().length === 2) {
      // biases away from 0 too (the stem, the shortcut and the last 1×1 convolution have one)
      const [w, b] = layer.getWeights();
      layer.setWeights([w, tf.tensor(randomFloats(b.size, seed++, 0.5), b.shape)]);
    }
    if (layer.getClassName() !== "BatchNormalization") continue;
    // gamma, beta, moving mean, moving variance (> 0)
    layer.setWeights(
      layer.getWeights().map((w, i) => {
        const v = randomFloats(w.size, seed++, 0.5);
        if (i === 0 || i === 3) v.forEach((e, j) => (v[j] = 1 + e));
        return tf.tensor(v, w.shape);
      }),
    );
  }
  return model;
}

for (const backend of ["cpu", FAST_CPU, "webgpu"]) {
  Deno.test(`inferenceGraph on ${backend}: a small ResNet-v2 folded equals model.predict on cpu`, async () => {
    if (backend === "webgpu") {
      // explicit padding and the 1×1 depthwise pass on tfjs's WebGPU kernels (a software
      // adapter here: correctness only); CI has one (mesa-vulkan-drivers)
      await import("@tensorflow/tfjs-backend-webgpu");
      if (!(await probeGpu())) {
        assert.ok(!Deno.env.get("CI"), "CI must have a WebGPU adapter");
        return;
      }
    }
    await tf.setBackend("cpu");
    const model = smallResNet();
    const x = tf.tensor4d(randomFloats(5 * 32 * 32 * 3, 3, 1), [5, 32, 32, 3]);
    const ref = (await (model.predict(x) as tf.Tensor).data()) as Float32Array;
    await tf.setBackend(backend);
    const graph = await inferenceGraph(model);
    // 7 blocks: each folds BN+ReLU after its 1×1 and its 3×3 convolution and the 3×3's padding,
    // and runs its pre-activation BN+ReLU as one affine pass (as does post_bn+post_relu); the
    // stem's 7×7 takes its padding (the pool's stays: a max-pool follows it)
    assert.deepEqual(graph.folds, { batchNorms: 14, relus: 22, paddings: 8, affines: 8 });
    const before = tf.memory().numTensors;
    const y = graph.run(x);
    assert.deepEqual(y.shape, [5, 1, 1, 32]);
    assert.equal(tf.memory().numTensors, before + 1, "intermediates are freed");
    const got = (await y.data()) as Float32Array;
    const err = maxRelDiff(got, ref);
    assert.ok(err < 1e-4, `max relative error ${err}`);
    tf.dispose([x, y]);
    graph.dispose();
    model.dispose();
  });
}

Deno.test("inferenceGraph: BatchNorm after a convolution's own ReLU is not folded into it", async () => {
  await tf.setBackend("cpu");
  const input = tf.input({ shape: [6, 6, 2] });
  let h = tf.layers.conv2d({ filters: 3, kernelSize: 3, activation: "relu", name: "c" })
    .apply(input) as tf.SymbolicTensor;
  h = tf.layers.batchNormalization({ name: "bn" }).apply(h) as tf.SymbolicTensor;
  const model = tf.model({ inputs: input, outputs: h });
  model.layers[2].setWeights([
    tf.tensor1d([1.5, 0.5, 2]),
    tf.tensor1d([0.1, -0.2, 0.3]),
    tf.tensor1d([0.2, 0.1, -0.1]),
    tf.tensor1d([2, 0.5, 1]),
  ]);
  const graph = await inferenceGraph(model);
  assert.deepEqual(graph.folds, { batchNorms: 0, relus: 0, paddings: 0, affines: 1 });
  const x = tf.tensor4d(randomFloats(2 * 6 * 6 * 2, 9, 1), [2, 6, 6, 2]);
  const ref = await (model.predict(x) as tf.Tensor).data();
  const got = await graph.run(x).data();
  assert.ok(maxRelDiff(got, ref) < 1e-6);
});

Deno.test("inferenceGraph on cpu-fast: the VGG16 base (ReLU convolutions, nothing to fold) equals model.predict", async () => {
  await tf.setBackend(FAST_CPU);
  const model = buildVgg16Base({ seed: 4 });
  const graph = await inferenceGraph(model);
  assert.deepEqual(graph.folds, { batchNorms: 0, relus: 0, paddings: 0, affines: 0 });
  const x = tf.tensor4d(randomFloats(3 * 32 * 32 * 3, 8, 100), [3, 32, 32, 3]);
  const ref = await (model.predict(x) as tf.Tensor).data();
  const got = await graph.run(x).data();
  assert.ok(ref.some((v) => v > 0), "some features are non-zero");
  assert.ok(maxRelDiff(got, ref) < 1e-5);
  model.dispose();
});

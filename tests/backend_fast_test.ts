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

Deno.test("initBackend puts mixed_bfloat16 in force on cpu-fast only where the CPU has bf16", async () => {
  const { initBackend } = await import("../lib/machine/backend.ts");
  const { nativeBf16 } = await import("../lib/kernels/js/conv.ts");
  try {
    const info = await initBackend({ force: "cpu-fast", precision: "mixed_bfloat16", quiet: true });
    if (nativeBf16()) {
      assert.equal(info.precision, "mixed_bfloat16", info.why);
    } else {
      assert.equal(info.precision, "float32");
      assert.match(info.why, /no native bf16.*float32/);
    }
    const back = await initBackend({ force: "cpu-fast", precision: "float32", quiet: true });
    assert.equal(back.precision, "float32");
    await assert.rejects(
      initBackend({ force: "cpu-fast", precision: "float16" as "float32", quiet: true }),
      /float32 or mixed_bfloat16/,
    );
  } finally {
    (await import("../lib/kernels/mod.ts")).setFastPrecision("float32");
  }
});

Deno.test("a CNN under mixed_bfloat16 lowers the loss like float32 on the same batch", async () => {
  const { setFastPrecision } = await import("../lib/kernels/mod.ts");
  await tf.setBackend(FAST_CPU);
  const run = async (precision: "float32" | "mixed_bfloat16") => {
    const { precision: got } = setFastPrecision(precision);
    try {
      // no dropout: both runs see the same arithmetic but for bf16's rounding
      const init = (seed: number) => tf.initializers.glorotUniform({ seed });
      const model = tf.sequential({
        layers: [
          tf.layers.conv2d({
            inputShape: [32, 32, 3],
            filters: 16,
            kernelSize: 3,
            activation: "relu",
            kernelInitializer: init(1),
          }),
          tf.layers.maxPooling2d({ poolSize: 2 }),
          tf.layers.conv2d({
            filters: 32,
            kernelSize: 3,
            activation: "relu",
            kernelInitializer: init(2),
          }),
          tf.layers.flatten(),
          tf.layers.dense({ units: 10, kernelInitializer: init(3) }),
        ],
      });
      model.compile({ optimizer: fusedAdam(1e-3), loss: tf.losses.softmaxCrossEntropy });
      const x = tf.randomUniform([16, 32, 32, 3], 0, 1, "float32", 7);
      const y = tf.oneHot(tf.tensor1d(Array.from({ length: 16 }, (_, i) => i % 10), "int32"), 10);
      const losses: number[] = [];
      for (let s = 0; s < 8; s++) {
        const l = await model.trainOnBatch(x, y);
        losses.push(Array.isArray(l) ? l[0] : l);
      }
      tf.dispose([x, y]);
      model.dispose();
      return { got, losses };
    } finally {
      setFastPrecision("float32");
    }
  };
  const fp32 = await run("float32");
  const bf16 = await run("mixed_bfloat16");
  for (const { losses } of [fp32, bf16]) {
    assert.ok(losses.every(Number.isFinite), `${losses}`);
    assert.ok(losses[5] < losses[0], `${losses}`);
  }
  // same start (same weights, bf16 forward), then a descent within a few percent of float32's
  const drop = (l: number[]) => l[0] - l[5];
  assert.ok(Math.abs(bf16.losses[0] - fp32.losses[0]) < 0.02 * fp32.losses[0], `${bf16.losses}`);
  assert.ok(
    Math.abs(drop(bf16.losses) - drop(fp32.losses)) < 0.25 * drop(fp32.losses),
    `${bf16.losses} vs ${fp32.losses}`,
  );
  if (bf16.got === "mixed_bfloat16") assert.notDeepEqual(bf16.losses, fp32.losses);
});

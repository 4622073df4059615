import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { buildBaseline } from "../lib/models/baseline.ts";
import { buildVggSmall } from "../lib/models/vgg_small.ts";
import { buildVgg16Scratch } from "../lib/models/vgg16_scratch.ts";
import { buildHead, RESNET152V2_HEAD, VGG16_HEAD } from "../lib/models/heads.ts";
import { buildVgg16Base } from "../lib/models/vgg16_imagenet.ts";
import { stageShapes } from "../lib/models/summary.ts";

await tf.setBackend("cpu");

/** [name, output shape, params] per layer, as Keras's summary() prints them. */
function summary(model: tf.LayersModel): [string, (number | null)[], number][] {
  return model.layers.map((l) => [l.name, l.outputShape as (number | null)[], l.countParams()]);
}

Deno.test("baseline CNN: Keras's layer names, output shapes and 1,407,178 parameters", () => {
  const m = buildBaseline({ compile: false });
  assert.deepEqual(summary(m), [
    ["conv2d", [null, 30, 30, 64], 1792],
    ["max_pooling2d", [null, 29, 29, 64], 0],
    ["conv2d_1", [null, 27, 27, 32], 18464],
    ["max_pooling2d_1", [null, 26, 26, 32], 0],
    ["flatten", [null, 21632], 0],
    ["dense", [null, 64], 1384512],
    ["dropout", [null, 64], 0],
    ["dense_1", [null, 32], 2080],
    ["dropout_1", [null, 32], 0],
    ["dense_2", [null, 10], 330],
  ]);
  assert.equal(m.countParams(), 1_407_178);
  // The study's convolutions have no activation.
  assert.equal(m.getLayer("conv2d").getConfig().activation, "linear");
});

Deno.test("VGG-style net: single-channel input, 37,924,546 parameters", () => {
  const m = buildVggSmall({ compile: false });
  assert.deepEqual(m.inputs[0].shape, [null, 32, 32, 1]);
  const s = summary(m);
  assert.deepEqual(s.map((r) => r[2]), [
    640,
    36928,
    0,
    73856,
    147584,
    0,
    0,
    33558528,
    0,
    4097000,
    10010,
  ]);
  assert.deepEqual(s[5][1], [null, 8, 8, 128]);
  assert.equal(m.countParams(), 37_924_546);
});

Deno.test("VGG16 from scratch: block names, 1×1×512 after the stack, 20,922,946 parameters", () => {
  const m = buildVgg16Scratch({ compile: false });
  assert.equal(m.countParams(), 20_922_946);
  assert.deepEqual(m.getLayer("block5_pool").outputShape, [null, 1, 1, 512]);
  assert.equal(m.getLayer("block3_conv3").countParams(), 590_080);
  assert.equal(m.getLayer("block1_conv1").getConfig().activation, "linear");
  const fixed = buildVgg16Scratch({ compile: false, convActivation: "relu" });
  assert.equal(fixed.getLayer("block1_conv1").getConfig().activation, "relu");
  assert.equal(fixed.countParams(), 20_922_946);
});

Deno.test("a seed fixes the initial weights", async () => {
  const a = await buildBaseline({ seed: 3, compile: false }).getLayer("conv2d").getWeights()[0]
    .data();
  const b = await buildBaseline({ seed: 3, compile: false }).getLayer("conv2d").getWeights()[0]
    .data();
  const c = await buildBaseline({ seed: 4, compile: false }).getLayer("conv2d").getWeights()[0]
    .data();
  assert.deepEqual(a, b);
  assert.notDeepEqual(a, c);
});

Deno.test("buildHead: the study's transfer heads have Keras's parameter counts and layer names", () => {
  const vgg = buildHead([1, 1, 512], VGG16_HEAD, { seed: 1 });
  // 512·4096+4096 + 4096·1000+1000 + 1000·10+10
  assert.equal(vgg.countParams(), 6_208_258);
  assert.deepEqual(vgg.layers.map((l) => l.name), [
    "features",
    "flatten",
    "dense",
    "dropout",
    "dense_1",
    "dense_2",
  ]);
  const resnet = buildHead([1, 1, 2048], RESNET152V2_HEAD, { seed: 1 });
  assert.equal(resnet.countParams(), 2048 * 10 + 10);
  assert.deepEqual(resnet.outputs[0].shape, [null, 10]);
  vgg.dispose();
  resnet.dispose();
});

Deno.test("stageShapes: spatial size, convolutions and parameters per stage of a base", () => {
  const vgg = buildVgg16Base({ seed: 1 });
  const stages = stageShapes(vgg, ["block1", "block5"]).toRecords() as Record<string, unknown>[];
  assert.deepEqual(stages[0], {
    stage: "block1",
    layers: 3,
    convolutions: 2,
    "spatial in": "32×32",
    "spatial out": "16×16",
    channels: 64,
    parameters: 1792 + 36928,
  });
  assert.equal(stages[1]["spatial in"], "2×2");
  assert.equal(stages[1]["spatial out"], "1×1");
  vgg.dispose();
});

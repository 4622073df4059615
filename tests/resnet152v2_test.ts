import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import {
  buildResNet152V2Base,
  buildResNetV2Base,
  RESNET152V2_STACKS,
  type ResNetV2Stack,
} from "../lib/models/resnet152v2.ts";
import { loadKerasWeights } from "../lib/transfer/weights.ts";
import {
  fixtureFromModel,
  type FixtureLayer,
  randomFloats,
  writeKerasH5,
} from "./fixtures/keras_h5.ts";

await tf.setBackend("cpu");

const size = (shape: (number | null)[]) => shape.reduce((a: number, b) => a * (b ?? 1), 1);
const count = (ws: tf.LayerVariable[]) => ws.reduce((a, w) => a + size(w.shape), 0);
type Cfg = Record<string, unknown>;
const cfg = (m: tf.LayersModel, name: string) =>
  (m.getLayer(name) as unknown as { getConfig(): Cfg }).getConfig();

// Built once: ResNet152V2 takes about 2 s to build on the cpu backend.
const resnet = buildResNet152V2Base({ seed: 1 });

Deno.test("ResNet152V2 base: Keras's parameter counts (58,331,648; 143,744 BN moving statistics)", () => {
  assert.equal(resnet.countParams(), 58_331_648);
  assert.equal(count(resnet.trainableWeights), 58_331_648 - 143_744);
  assert.equal(count(resnet.nonTrainableWeights), 143_744);
  const weighted = resnet.layers.filter((l) => l.weights.length > 0);
  assert.equal(weighted.length, 306);
  assert.equal(resnet.weights.length, 814);
  assert.equal(resnet.layers.length, 564); // input, 5 stem, 50 blocks × 11 + 4 conv shortcuts + 3 pool shortcuts, post
});

Deno.test("ResNet152V2 base: Keras's layer names and shapes on 32×32×3", () => {
  const names = new Set(resnet.layers.map((l) => l.name));
  for (const n of ["conv1_pad", "conv1_conv", "pool1_pad", "pool1_pool", "post_bn", "post_relu"]) {
    assert.ok(names.has(n), n);
  }
  RESNET152V2_STACKS.forEach((s, i) => {
    for (let b = 1; b <= s.blocks; b++) {
      const p = `conv${i + 2}_block${b}`;
      const parts = [
        "preact_bn",
        "preact_relu",
        "1_conv",
        "1_bn",
        "1_relu",
        "2_pad",
        "2_conv",
        "2_bn",
        "2_relu",
        "3_conv",
        "out",
      ];
      for (const part of parts) assert.ok(names.has(`${p}_${part}`), `${p}_${part}`);
      assert.equal(names.has(`${p}_0_conv`), b === 1, `${p}_0_conv only in block1`);
    }
  });
  assert.ok(!names.has("conv5_block4_out") && names.has("conv4_block36_out"));
  const shape = (n: string) => resnet.getLayer(n).outputShape;
  assert.deepEqual(shape("conv1_pad"), [null, 38, 38, 3]);
  assert.deepEqual(shape("conv1_conv"), [null, 16, 16, 64]);
  assert.deepEqual(shape("pool1_pool"), [null, 8, 8, 64]);
  assert.deepEqual(shape("conv2_block1_0_conv"), [null, 8, 8, 256]);
  assert.deepEqual(shape("conv2_block3_2_pad"), [null, 10, 10, 64]);
  assert.deepEqual(shape("conv2_block3_out"), [null, 4, 4, 256]);
  assert.deepEqual(shape("conv3_block8_out"), [null, 2, 2, 512]);
  assert.deepEqual(shape("conv4_block36_out"), [null, 1, 1, 1024]);
  assert.deepEqual(shape("conv5_block3_out"), [null, 1, 1, 2048]);
  assert.deepEqual(resnet.outputs[0].shape, [null, 1, 1, 2048]);
  // The strided identity shortcuts: unnamed MaxPooling2D(1, strides 2) in Keras, after conv2/3/4's last block input.
  const pools = resnet.layers.filter((l) => l.name.startsWith("max_pooling2d"));
  assert.deepEqual(pools.map((l) => l.outputShape), [[null, 4, 4, 256], [null, 2, 2, 512], [
    null,
    1,
    1,
    1024,
  ]]);
  assert.deepEqual(pools.map((l) => [cfg(resnet, l.name).poolSize, cfg(resnet, l.name).strides]), [
    [[1, 1], [2, 2]],
    [[1, 1], [2, 2]],
    [[1, 1], [2, 2]],
  ]);
});

Deno.test("ResNet152V2 base: convolution and BatchNorm settings follow keras.applications", () => {
  const c1 = cfg(resnet, "conv1_conv");
  assert.deepEqual([c1.kernelSize, c1.strides, c1.useBias, c1.padding], [
    [7, 7],
    [2, 2],
    true,
    "valid",
  ]);
  assert.equal(cfg(resnet, "conv2_block1_1_conv").useBias, false);
  assert.equal(cfg(resnet, "conv2_block1_2_conv").useBias, false);
  assert.equal(cfg(resnet, "conv2_block1_3_conv").useBias, true);
  assert.equal(cfg(resnet, "conv2_block1_0_conv").useBias, true);
  assert.deepEqual(cfg(resnet, "conv2_block3_2_conv").strides, [2, 2]); // stride in the last block
  assert.deepEqual(cfg(resnet, "conv2_block1_2_conv").strides, [1, 1]);
  assert.deepEqual(cfg(resnet, "conv5_block3_2_conv").strides, [1, 1]); // conv5: stride1 = 1
  for (const l of resnet.layers.filter((l) => l.name.endsWith("_bn"))) {
    assert.equal(cfg(resnet, l.name).epsilon, 1.001e-5, l.name);
    assert.equal(cfg(resnet, l.name).momentum, 0.99, l.name);
  }
  assert.deepEqual(
    resnet.getLayer("conv2_block1_preact_bn").weights.map((w) =>
      w.name.split("/")[1].replace(/_\d+$/, "")
    ),
    ["gamma", "beta", "moving_mean", "moving_variance"],
  );
});

Deno.test("ResNet152V2 base frozen: nothing trainable", () => {
  const frozen = buildResNet152V2Base({ trainable: false });
  assert.equal(count(frozen.trainableWeights), 0);
  assert.equal(count(frozen.nonTrainableWeights), 58_331_648);
  frozen.dispose();
});

/** ResNet-v2 from the arrays with tf ops only (Keras's `block2`), independent of the builder. */
function resnetV2Reference(
  x: tf.Tensor4D,
  layers: FixtureLayer[],
  stacks: ResNetV2Stack[],
): tf.Tensor {
  const w = new Map(layers.map((l) => [l.name, l.weights.map((e) => tf.tensor(e.data, e.shape))]));
  const out = tf.tidy(() => {
    const pad = (y: tf.Tensor4D, p: number) => tf.pad(y, [[0, 0], [p, p], [p, p], [0, 0]]);
    const conv = (y: tf.Tensor4D, name: string, stride = 1) => {
      const [k, b] = w.get(name)!;
      const out = tf.conv2d(y, k as tf.Tensor4D, stride, "valid");
      return (b ? tf.add(out, b) : out) as tf.Tensor4D;
    };
    const bnRelu = (y: tf.Tensor4D, name: string) => {
      const [gamma, beta, mean, variance] = w.get(name)!;
      return tf.relu(tf.batchNorm(y, mean, variance, beta, gamma, 1.001e-5)) as tf.Tensor4D;
    };
    let y = conv(pad(x, 3), "conv1_conv", 2);
    y = tf.maxPool(pad(y, 1), 3, 2, "valid") as tf.Tensor4D;
    stacks.forEach((s, i) => {
      for (let b = 1; b <= s.blocks; b++) {
        const n = `conv${i + 2}_block${b}`;
        const stride = b === s.blocks ? s.stride : 1;
        const preact = bnRelu(y, `${n}_preact_bn`);
        const shortcut = b === 1
          ? conv(preact, `${n}_0_conv`)
          : stride > 1
          ? tf.maxPool(y, 1, stride, "valid")
          : y;
        let r = bnRelu(conv(preact, `${n}_1_conv`), `${n}_1_bn`);
        r = bnRelu(conv(pad(r, 1), `${n}_2_conv`, stride), `${n}_2_bn`);
        y = tf.add(shortcut, conv(r, `${n}_3_conv`)) as tf.Tensor4D;
      }
    });
    return bnRelu(y, "post_bn");
  });
  tf.dispose([...w.values()].flat());
  return out;
}

/** Kernels scaled to variance 1/fan-in so deep random nets neither vanish nor overflow. */
function tamed(model: tf.LayersModel, seed: number): FixtureLayer[] {
  return fixtureFromModel(model, "tf2", seed).map((l) => ({
    ...l,
    weights: l.weights.map((w) =>
      w.name.endsWith("/kernel:0")
        ? {
          ...w,
          data: w.data.map((v) => v * 2 * Math.sqrt(3 / (w.shape[0] * w.shape[1] * w.shape[2]))),
        }
        : w
    ),
  }));
}

async function assertRelClose(a: tf.Tensor, b: tf.Tensor, rel: number) {
  assert.deepEqual(a.shape, b.shape);
  const [da, db] = [await a.data(), await b.data()];
  let worst = 0, scale = 0;
  for (let i = 0; i < da.length; i++) {
    worst = Math.max(worst, Math.abs(da[i] - db[i]));
    scale = Math.max(scale, Math.abs(db[i]));
  }
  assert.ok(scale > 0 && Number.isFinite(scale), `reference scale ${scale}`);
  assert.ok(worst <= rel * scale, `max difference ${worst} vs scale ${scale}`);
}

Deno.test("small ResNet-v2 from a TF2-layout file (chunked layer_names, nested datasets) computes the reference", async () => {
  const stacks = [{ filters: 2, blocks: 2, stride: 2 }, { filters: 3, blocks: 3, stride: 2 }, {
    filters: 4,
    blocks: 2,
    stride: 1,
  }];
  const model = buildResNetV2Base({
    stacks,
    stemFilters: 4,
    inputShape: [16, 16, 3],
    name: "tiny",
    trainable: false,
  });
  const fixture = tamed(model, 4);
  // Keras lists every layer (input, pads, relus, adds, shortcut pools), which here forces chunking.
  const bytes = await writeKerasH5(fixture, {
    layerNameChunks: 3,
    kerasVersion: "2.2.4",
    backend: "tensorflow",
  });
  const before = tf.memory().numTensors;
  const report = await loadKerasWeights(model, bytes);
  assert.equal(tf.memory().numTensors, before);
  assert.equal(report.params, model.countParams());
  const x = tf.tensor4d(randomFloats(2 * 16 * 16 * 3, 8, 1), [2, 16, 16, 3]);
  const y = model.predict(x) as tf.Tensor;
  const ref = resnetV2Reference(x, fixture, stacks);
  await assertRelClose(y, ref, 1e-4);
  tf.dispose([x, y, ref]);
  model.dispose();
});

Deno.test("ResNet152V2 base loads a full-size TF2-layout file (234 MB) and computes the reference", async () => {
  const fixture = tamed(resnet, 6);
  const t0 = performance.now();
  const bytes = await writeKerasH5(fixture, { kerasVersion: "2.2.4", backend: "tensorflow" });
  const t1 = performance.now();
  const report = await loadKerasWeights(resnet, bytes);
  const t2 = performance.now();
  console.log(
    `wrote ${(bytes.length / 1e6).toFixed(1)} MB in ${((t1 - t0) / 1000).toFixed(1)} s, ` +
      `loaded in ${((t2 - t1) / 1000).toFixed(1)} s`,
  );
  assert.deepEqual(report, { layers: 306, tensors: 814, params: 58_331_648 });
  const x = tf.tensor4d(randomFloats(32 * 32 * 3, 9, 1), [1, 32, 32, 3]);
  const y = resnet.predict(x) as tf.Tensor;
  const ref = resnetV2Reference(x, fixture, RESNET152V2_STACKS);
  await assertRelClose(y, ref, 1e-3);
  tf.dispose([x, y, ref]);
});

import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { buildVgg16Base } from "../lib/models/vgg16_imagenet.ts";
import { join } from "node:path";
import { imagenetBase, loadKerasWeights } from "../lib/transfer/weights.ts";
import {
  fixtureFromModel,
  type FixtureLayer,
  randomFloats,
  tempDir,
  writeKerasH5,
} from "./fixtures/keras_h5.ts";

await tf.setBackend("cpu");

/** The 18 layer names of Keras's VGG16-notop weight file, in its order. */
const KERAS_LAYERS = [
  "block1_conv1",
  "block1_conv2",
  "block1_pool",
  "block2_conv1",
  "block2_conv2",
  "block2_pool",
  "block3_conv1",
  "block3_conv2",
  "block3_conv3",
  "block3_pool",
  "block4_conv1",
  "block4_conv2",
  "block4_conv3",
  "block4_pool",
  "block5_conv1",
  "block5_conv2",
  "block5_conv3",
  "block5_pool",
];

const size = (shape: (number | null)[]) => shape.reduce((a: number, b) => a * (b ?? 1), 1);
const count = (ws: tf.LayerVariable[]) => ws.reduce((a, w) => a + size(w.shape), 0);

Deno.test("VGG16 base: Keras's layer names, shapes and 14,714,688 parameters", () => {
  const model = buildVgg16Base({ seed: 1 });
  assert.deepEqual(model.layers.slice(1).map((l) => l.name), KERAS_LAYERS);
  const shapes = Object.fromEntries(model.layers.map((l) => [l.name, l.outputShape]));
  assert.deepEqual(shapes.block1_conv1, [null, 32, 32, 64]);
  assert.deepEqual(shapes.block1_pool, [null, 16, 16, 64]);
  assert.deepEqual(shapes.block3_conv3, [null, 8, 8, 256]);
  assert.deepEqual(shapes.block4_pool, [null, 2, 2, 512]);
  assert.deepEqual(shapes.block5_pool, [null, 1, 1, 512]);
  assert.equal(model.countParams(), 14_714_688);
  assert.equal(count(model.trainableWeights), 14_714_688);
  assert.equal(count(model.nonTrainableWeights), 0);
  const conv = model.getLayer("block2_conv1") as tf.layers.Layer & {
    getConfig(): Record<string, unknown>;
  };
  const cfg = conv.getConfig();
  assert.equal(cfg.activation, "relu");
  assert.equal(cfg.padding, "same");
  assert.deepEqual(conv.weights.map((w) => w.shape), [[3, 3, 64, 128], [128]]);
  model.dispose();
});

Deno.test("VGG16 base: frozen has no trainable weights; the seed repeats the initialisation", async () => {
  const frozen = buildVgg16Base({ seed: 3, trainable: false });
  assert.equal(frozen.trainable, false);
  assert.equal(count(frozen.trainableWeights), 0);
  assert.equal(count(frozen.nonTrainableWeights), 14_714_688);
  const again = buildVgg16Base({ seed: 3 });
  const other = buildVgg16Base({ seed: 4 });
  const k = (m: tf.LayersModel) => m.getLayer("block1_conv1").getWeights()[0].data();
  assert.deepEqual(await k(frozen), await k(again));
  assert.notDeepEqual(await k(frozen), await k(other));
  [frozen, again, other].forEach((m) => m.dispose());
});

/** VGG16 from the arrays with tf ops only: the reference the loaded model must match. */
function vggReference(x: tf.Tensor4D, layers: FixtureLayer[]): tf.Tensor {
  return tf.tidy(() => {
    let y: tf.Tensor4D = x;
    for (const l of layers) {
      if (l.name.endsWith("_pool")) y = tf.maxPool(y, 2, 2, "valid");
      else {
        const [k, b] = l.weights.map((w) => tf.tensor(w.data, w.shape));
        y = tf.relu(tf.add(tf.conv2d(y, k as tf.Tensor4D, 1, "same"), b));
      }
    }
    return y;
  });
}

Deno.test("VGG16 base loads a full-size file in the exact layout of Keras's (58 MB) and computes the reference", async () => {
  const model = buildVgg16Base({ trainable: false });
  // The file's layout: 18 layers, no input layer, legacy W/b names, pools with empty weight_names.
  const fixture = fixtureFromModel(model, "legacy", 9).slice(1).map((l) => ({
    ...l,
    // He-like scale keeps activations alive through 13 ReLU layers, so the comparison means something.
    weights: l.weights.map((w, i) =>
      i === 0 ? { ...w, data: w.data.map((v) => v * 2 * Math.sqrt(6 / (9 * w.shape[2]))) } : w
    ),
  }));
  assert.deepEqual(fixture.map((l) => l.name), KERAS_LAYERS);
  const t0 = performance.now();
  const bytes = await writeKerasH5(fixture);
  const t1 = performance.now();
  assert.ok(bytes.length > 58_858_752, `${bytes.length} bytes`);
  const before = tf.memory().numTensors;
  const report = await loadKerasWeights(model, bytes);
  const t2 = performance.now();
  console.log(
    `wrote ${(bytes.length / 1e6).toFixed(1)} MB in ${((t1 - t0) / 1000).toFixed(1)} s, loaded in ${
      ((t2 - t1) / 1000).toFixed(1)
    } s`,
  );
  assert.equal(tf.memory().numTensors, before);
  assert.deepEqual(report, { layers: 13, tensors: 26, params: 14_714_688 });
  const w = model.getLayer("block5_conv3").getWeights();
  assert.deepEqual(await w[0].data(), fixture[16].weights[0].data);
  assert.deepEqual(await w[1].data(), fixture[16].weights[1].data);

  const x = tf.tensor4d(randomFloats(32 * 32 * 3, 2, 100), [1, 32, 32, 3]);
  const y = model.predict(x) as tf.Tensor;
  const ref = vggReference(x, fixture);
  assert.deepEqual(y.shape, [1, 1, 1, 512]);
  const [a, b] = [await y.data(), await ref.data()];
  let worst = 0, scale = 0;
  for (let i = 0; i < a.length; i++) {
    worst = Math.max(worst, Math.abs(a[i] - b[i]));
    scale = Math.max(scale, Math.abs(b[i]));
  }
  assert.ok(scale > 0, "the reference output is not all zero");
  assert.ok(worst <= 1e-4 * scale, `max difference ${worst} vs scale ${scale}`);
  tf.dispose([x, y, ref]);
  model.dispose();

  // The notebook's entry point, given the file by path: loads it, reports where it came from.
  await using tmp = await tempDir();
  const path = join(tmp.path, "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5");
  await Deno.writeFile(path, bytes);
  const base = await imagenetBase("vgg16", { path, trainable: false });
  assert.equal(base.weights?.source, "path");
  assert.equal(base.weights?.verified, false, "a fake file is not Keras's published one");
  assert.equal(base.weightsKey, base.weights?.md5);
  assert.match(base.note, /ImageNet weights from path .* 14,714,688 values/);
  assert.deepEqual(
    await base.model.getLayer("block1_conv1").getWeights()[0].data(),
    fixture[0].weights[0].data,
  );
  base.model.dispose();
});

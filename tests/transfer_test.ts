import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { preprocessInput } from "../lib/features.ts";
import type { MnistSplit } from "../lib/mnist.ts";
import { buildVgg16Base } from "../lib/models/vgg16_imagenet.ts";
import { makeBatch, range } from "../lib/preprocess.ts";
import { scorePredictions } from "../lib/train.ts";
import {
  buildHead,
  cacheSavingsFrame,
  evaluateFeatures,
  featureBatch,
  featureStats,
  fitFeatures,
  RESNET152V2_HEAD,
  splitFeatures,
  stageShapes,
  VGG16_HEAD,
} from "../lib/transfer.ts";
import { tempDir } from "./fixtures/keras_h5.ts";

await tf.setBackend("cpu");

function assertAllClose(a: ArrayLike<number>, b: ArrayLike<number>, tol = 1e-5) {
  assert.equal(a.length, b.length);
  for (let i = 0; i < a.length; i++) {
    assert.ok(Math.abs(a[i] - b[i]) <= tol, `[${i}] ${a[i]} vs ${b[i]}`);
  }
}

/** `count` random 28×28 digits with labels 0…9 repeating. */
function fakeSplit(count: number, seed = 1): MnistSplit {
  const images = new Uint8Array(count * 784);
  let s = seed;
  for (let i = 0; i < images.length; i++) {
    s = (s * 1103515245 + 12345) >>> 0;
    images[i] = s >>> 24;
  }
  const labels = Uint8Array.from({ length: count }, (_, i) => i % 10);
  return { images, labels, count, rows: 28, cols: 28 };
}

/** A cheap "base" taking 32×32×3: 8×8 average pool, then a seeded 1×1 ReLU convolution → 4×4×2. */
function tinyBase(): tf.LayersModel {
  const input = tf.input({ shape: [32, 32, 3] });
  let x = tf.layers.averagePooling2d({ poolSize: 8, strides: 8 }).apply(input) as tf.SymbolicTensor;
  x = tf.layers.conv2d({
    filters: 2,
    kernelSize: 1,
    activation: "relu",
    kernelInitializer: tf.initializers.glorotUniform({ seed: 7 }),
    biasInitializer: "ones",
  }).apply(x) as tf.SymbolicTensor;
  const model = tf.model({ inputs: input, outputs: x });
  model.trainable = false;
  return model;
}

Deno.test("featureBatch gathers the rows and labels asked for, in order", async () => {
  const data = {
    features: Float32Array.from({ length: 4 * 6 }, (_, i) => i),
    shape: [4, 1, 2, 3],
    labels: Uint8Array.from([7, 8, 9, 3]),
  };
  const { x, y } = featureBatch(data, [2, 0]);
  assert.deepEqual(x.shape, [2, 1, 2, 3]);
  assert.deepEqual(Array.from(await x.data()), [12, 13, 14, 15, 16, 17, 0, 1, 2, 3, 4, 5]);
  assert.deepEqual(Array.from(await y.data()), [9, 7]);
  tf.dispose([x, y]);
});

Deno.test("buildHead: the study's heads have Keras's parameter counts and layer names", () => {
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

Deno.test("fitFeatures learns separable features, repeats with a seed, and evaluateFeatures scores them", async () => {
  // Feature j of a sample is 1 where j equals its label: a linear head learns this quickly.
  const count = 200;
  const labels = Uint8Array.from({ length: count }, (_, i) => i % 10);
  const features = new Float32Array(count * 10);
  labels.forEach((l, i) => (features[i * 10 + l] = 3));
  const data = { features, shape: [count, 1, 1, 10], labels, count };
  const run = async () => {
    const head = buildHead([1, 1, 10], RESNET152V2_HEAD, { seed: 3, learningRate: 0.05 });
    const fit = await fitFeatures(head, data, {
      epochs: 5,
      batchSize: 32,
      seed: 9,
      progress: false,
    });
    return { head, fit };
  };
  const a = await run();
  const b = await run();
  assert.equal(a.fit.epochsRun, 5);
  assert.equal(a.fit.stoppedEarly, false);
  assert.equal(a.fit.divergence, null);
  assert.deepEqual(a.fit.history.columns, ["epoch", "loss", "accuracy", "seconds"]);
  const loss = a.fit.history.getColumn("loss").toArray() as number[];
  assert.ok(loss[4] < loss[0] / 2, `loss fell: ${loss}`);
  assert.deepEqual(loss, b.fit.history.getColumn("loss").toArray());
  const ev = await evaluateFeatures(a.head, data, 64);
  assert.equal(ev.accuracy, 1);
  // The same numbers as predicting the whole set at once.
  const { x } = featureBatch(data, range(0, count));
  const p = a.head.predict(x) as tf.Tensor;
  const ref = scorePredictions(await p.data() as Float32Array, labels);
  assertAllClose(ev.probabilities, ref.probabilities, 1e-6);
  assert.ok(Math.abs(ev.loss - ref.loss) < 1e-6);
  tf.dispose([x, p]);
  a.head.dispose();
  b.head.dispose();
});

Deno.test("splitFeatures: the base's inference output on preprocessed images, cached, keyed by mode and data", async () => {
  await using dir = await tempDir();
  const base = tinyBase();
  const split = fakeSplit(10);
  const opts = {
    model: "tiny",
    weightsKey: "random:7",
    mode: "tf" as const,
    split: "train",
    batchSize: 4,
    cacheDir: dir.path,
    progress: false,
  };
  const first = await splitFeatures(base, split, opts);
  assert.equal(first.hit, false);
  assert.deepEqual(first.shape, [10, 4, 4, 2]);
  assert.deepEqual(Array.from(first.labels), Array.from(split.labels));
  // Reference: the whole split through the study transform, Keras's "tf" mode, then the base.
  const { x, y } = makeBatch(split, range(0, 10));
  const pre = preprocessInput(x, "tf");
  const out = base.predict(pre) as tf.Tensor;
  assertAllClose(first.features, await out.data(), 1e-5);
  tf.dispose([x, y, pre, out]);

  const again = await splitFeatures(base, split, opts);
  assert.equal(again.hit, true);
  assert.equal(again.path, first.path);
  assert.deepEqual(Array.from(again.features), Array.from(first.features));
  // The extraction time survives in the note next to the cache file.
  assert.equal(again.extractSeconds, first.extractSeconds);

  const study = await splitFeatures(base, split, { ...opts, mode: "study" });
  assert.equal(study.hit, false);
  assert.notEqual(study.path, first.path);
  const other = fakeSplit(10, 2);
  const changed = await splitFeatures(base, other, opts);
  assert.equal(changed.hit, false, "other images, other features");
  base.dispose();
});

Deno.test("cacheSavingsFrame: train features would be recomputed every epoch, test once", () => {
  const df = cacheSavingsFrame([
    { features: "train (study)", images: 100, extractSeconds: 2, hitSeconds: 0.01 },
    { features: "test (study)", images: 50, extractSeconds: 1, hitSeconds: 0.005 },
  ], 40);
  const rows = df.toRecords() as Record<string, number>[];
  assert.equal(rows[0]["base every epoch, est. (s)"], 80);
  assert.equal(rows[0]["passes saved"], 39);
  assert.equal(rows[1]["base every epoch, est. (s)"], 1);
  assert.equal(rows[1]["passes saved"], 0);
});

Deno.test("featureStats and stageShapes", () => {
  const s = featureStats({ features: Float32Array.from([0, 0, 2, 2]), mode: "study", split: "x" });
  assert.equal(s.zeroFraction, 0.5);
  assert.equal(s.mean, 1);
  assert.equal(s.std, 1);
  assert.equal(s.max, 2);
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

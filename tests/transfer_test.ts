import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { preprocessInput } from "../lib/transfer/features.ts";
import type { MnistSplit } from "../lib/data/mnist.ts";
import { buildHead, RESNET152V2_HEAD } from "../lib/models/heads.ts";
import { makeBatch, range } from "../lib/data/preprocess.ts";
import { scorePredictions } from "../lib/train/evaluate.ts";
import {
  evaluateFeatures,
  featureBatch,
  featureStats,
  fitFeatures,
  splitFeatures,
  transferRun,
} from "../lib/transfer/transfer.ts";
import { PROFILES } from "../lib/study/profile.ts";
import type { ImagenetBase } from "../lib/transfer/weights.ts";
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

const losses = (fit: { history: { getColumn(c: string): { toArray(): unknown } } }) =>
  fit.history.getColumn("loss").toArray() as number[];

Deno.test("transferRun: features once, a seeded head, a record with the extraction's facts; then cached", async () => {
  await using cache = await tempDir();
  await using runs = await tempDir();
  const base = {
    model: tinyBase(),
    weights: null,
    weightsKey: "random:7",
    preprocessing: "tf" as const,
    note: "random tiny base",
  } as unknown as ImagenetBase;
  const splits = { train: fakeSplit(60, 3), test: fakeSplit(20, 4) };
  const opts = {
    name: "vgg16" as const,
    base,
    head: RESNET152V2_HEAD,
    headName: "tiny_head",
    section: "test",
    mode: "tf" as const,
    splits,
    profile: PROFILES.quick,
    backend: { name: "cpu", device: "js", why: "test", precision: "float32" },
    seed: 5,
    epochs: 3,
    batchSize: 16,
    label: "random features",
    extractBatchSize: 16,
    cacheDir: cache.path,
    progress: false,
    root: runs.path,
    roots: [runs.path],
    retrain: false,
    log: () => {},
  };
  const first = await transferRun(opts);
  assert.equal(first.cached, false);
  const r = first.record, t = r.config.transfer!;
  assert.equal(r.config.modelName, "tiny_head_tf");
  assert.equal(r.config.label, "random features");
  assert.deepEqual(t.featureShape, [4, 4, 2]);
  assert.deepEqual(t.splits.map((s) => [s.split, s.images]), [["train", 60], ["test", 20]]);
  assert.equal(t.extractSeconds, t.splits[0].extractSeconds + t.splits[1].extractSeconds);
  assert.equal(t.features, "extracted");
  assert.equal(t.baseParameters, base.model.countParams());
  // The same features again (a cache hit) give the statistics and the head the record holds.
  const common = {
    model: "vgg16",
    weightsKey: "random:7",
    mode: "tf" as const,
    cacheDir: cache.path,
    progress: false,
  };
  const train = await splitFeatures(base.model, splits.train, { ...common, split: "train" });
  const test = await splitFeatures(base.model, splits.test, { ...common, split: "test" });
  assert.equal(train.hit, true);
  assert.deepEqual(t.featureStats, featureStats(train));
  const head = buildHead(train.shape.slice(1), RESNET152V2_HEAD, { seed: 5 });
  const fit = await fitFeatures(head, train, {
    epochs: 3,
    batchSize: 16,
    seed: 5,
    progress: false,
  });
  assert.deepEqual(losses(r), losses(fit));
  const ev = await evaluateFeatures(head, test);
  assert.ok(Math.abs(r.metrics.testAccuracy - ev.accuracy) < 1e-12);
  assertAllClose(r.evaluation.probabilities, ev.probabilities, 1e-6);

  // Asked again: the record is used and the base does not run (it would throw).
  const broken = {
    ...base,
    model: {
      ...base.model,
      predict: () => {
        throw new Error("base ran");
      },
    },
  };
  const again = await transferRun({ ...opts, base: broken as unknown as ImagenetBase });
  assert.equal(again.cached, true);
  assert.equal(again.record.id, r.id);
  // Another preprocessing is another run.
  const study = await transferRun({ ...opts, mode: "study" });
  assert.equal(study.cached, false);
  assert.notEqual(study.record.config.key, r.config.key);
  head.dispose();
  base.model.dispose();
});

Deno.test("featureStats: zero fraction, mean, spread and maximum", () => {
  const s = featureStats({ features: Float32Array.from([0, 0, 2, 2]), mode: "study", split: "x" });
  assert.deepEqual(s, { mode: "study", split: "x", mean: 1, std: 1, zeroFraction: 0.5, max: 2 });
});

import assert from "node:assert/strict";
import { join } from "node:path";
import * as tf from "@tensorflow/tfjs";
import {
  cacheReadSeconds,
  CAFFE_MEAN_BGR,
  extractFeatures,
  type FeatureKey,
  fingerprint,
  preprocessInput,
} from "../lib/transfer/features.ts";
import { randomFloats, tempDir } from "./fixtures/keras_h5.ts";

await tf.setBackend("cpu");

async function values(t: tf.Tensor): Promise<number[]> {
  return Array.from(await t.data());
}

function assertAllClose(a: ArrayLike<number>, b: ArrayLike<number>, tol = 1e-5) {
  assert.equal(a.length, b.length);
  for (let i = 0; i < a.length; i++) {
    assert.ok(Math.abs(a[i] - b[i]) <= tol, `[${i}] ${a[i]} vs ${b[i]}`);
  }
}

Deno.test("preprocessInput 'caffe': ×255, RGB→BGR, minus the BGR means", async () => {
  // Two pixels: (r, g, b) = (0.1, 0.5, 1.0) and black.
  const x = tf.tensor4d([0.1, 0.5, 1.0, 0, 0, 0], [1, 1, 2, 3]);
  const y = preprocessInput(x, "caffe");
  const [mb, mg, mr] = CAFFE_MEAN_BGR;
  assertAllClose(await values(y), [255 - mb, 127.5 - mg, 25.5 - mr, -mb, -mg, -mr], 1e-4);
  // One grey channel is repeated to three first (the flip then changes nothing, the means still differ).
  const grey = tf.tensor4d([0.5], [1, 1, 1, 1]);
  const g = preprocessInput(grey, "caffe");
  assert.deepEqual(g.shape, [1, 1, 1, 3]);
  assertAllClose(await values(g), [127.5 - mb, 127.5 - mg, 127.5 - mr], 1e-4);
  assert.throws(
    () => preprocessInput(tf.zeros([1, 1, 1, 2]) as tf.Tensor4D, "caffe"),
    /1 or 3 channels/,
  );
  tf.dispose([x, y, grey, g]);
});

Deno.test("preprocessInput 'tf' maps [0, 1] to [-1, 1]; 'study' is the identity", async () => {
  const x = tf.tensor4d([0, 0.25, 0.5, 1], [1, 2, 2, 1]);
  const rgb = preprocessInput(x, "tf");
  assert.deepEqual(rgb.shape, [1, 2, 2, 3]);
  assertAllClose(await values(rgb), [-1, -1, -1, -0.5, -0.5, -0.5, 0, 0, 0, 1, 1, 1], 1e-6);
  const three = tf.tensor4d([0, 0.5, 1], [1, 1, 1, 3]);
  assertAllClose(await values(preprocessInput(three, "tf")), [-1, 0, 1], 1e-6);
  assert.throws(
    () => preprocessInput(tf.zeros([1, 1, 1, 2]) as tf.Tensor4D, "tf"),
    /1 or 3 channels/,
  );
  tf.dispose([rgb, three]);
  const s = preprocessInput(x, "study");
  x.dispose(); // the result is the caller's own tensor
  assert.deepEqual(await values(s), [0, 0.25, 0.5, 1]);
  s.dispose();
  const before = tf.memory().numTensors;
  const z = tf.zeros([2, 3, 3, 3]) as tf.Tensor4D;
  tf.dispose([preprocessInput(z, "caffe"), preprocessInput(z, "tf"), z]);
  assert.equal(tf.memory().numTensors, before, "no intermediate tensors kept");
});

Deno.test("fingerprint: stable, sensitive to content and order", () => {
  const a = new Uint8Array([1, 2, 3]);
  assert.equal(fingerprint(a, "train"), fingerprint(new Uint8Array([1, 2, 3]), "train"));
  assert.notEqual(fingerprint(a, "train"), fingerprint(new Uint8Array([1, 2, 4]), "train"));
  assert.notEqual(fingerprint(a, "train"), fingerprint("train", a));
  assert.notEqual(fingerprint(1, "2"), fingerprint("1", 2));
});

const N = 10, H = 6;
const images = tf.tensor4d(randomFloats(N * H * H, 3, 0.5).map((v) => v + 0.5), [N, H, H, 1]);
const labels = tf.tensor1d([0, 1, 2, 0, 1, 2, 0, 1, 2, 0]); // float: tfjs's sparse loss floors labels

/** A tiny frozen base: conv → BatchNorm (non-trivial moving statistics) → relu → pool. */
function tinyBase(batchNorm: boolean): tf.LayersModel {
  const input = tf.input({ shape: [H, H, 1] });
  let x = tf.layers.conv2d({
    filters: 3,
    kernelSize: 3,
    name: "c",
    kernelInitializer: tf.initializers.glorotUniform({ seed: 1 }),
  })
    .apply(input) as tf.SymbolicTensor;
  if (batchNorm) x = tf.layers.batchNormalization({ name: "bn" }).apply(x) as tf.SymbolicTensor;
  x = tf.layers.activation({ activation: "relu" }).apply(x) as tf.SymbolicTensor;
  x = tf.layers.maxPooling2d({ poolSize: 2 }).apply(x) as tf.SymbolicTensor;
  const base = tf.model({ inputs: input, outputs: x });
  if (batchNorm) {
    base.getLayer("bn").setWeights([
      tf.tensor1d([1.5, 0.5, 1]),
      tf.tensor1d([0.1, -0.2, 0.3]),
      tf.tensor1d([0.2, -0.1, 0.05]),
      tf.tensor1d([2, 0.5, 1.5]),
    ]);
  }
  base.trainable = false;
  return base;
}

function tinyHead(featureShape: number[], seed = 2): tf.LayersModel {
  const head = tf.sequential();
  head.add(tf.layers.flatten({ inputShape: featureShape }));
  head.add(tf.layers.dense({
    units: 3,
    activation: "softmax",
    kernelInitializer: tf.initializers.glorotUniform({ seed }),
  }));
  head.compile({ optimizer: tf.train.sgd(0.5), loss: "sparseCategoricalCrossentropy" });
  return head;
}

/** The full frozen model: `head` on `base`'s output (shared layers), to check against training on features. */
function composeFrozen(base: tf.LayersModel, head: tf.LayersModel): tf.LayersModel {
  const out = head.apply(base.outputs[0]) as tf.SymbolicTensor;
  return tf.model({ inputs: base.inputs, outputs: out });
}

const KEY: FeatureKey = { model: "tiny", weights: "random:1", preprocessing: "study", data: "d0" };

Deno.test("extractFeatures: miss writes the cache, hit reads it back, any changed key part misses", async () => {
  await using tmp = await tempDir();
  const base = tinyBase(true);
  let batches = 0;
  const makeBatch = (s: number, e: number) => {
    batches++;
    return images.slice([s, 0, 0, 0], [e - s, H, H, 1]) as tf.Tensor4D;
  };
  const opts = { base, key: KEY, makeBatch, count: N, batchSize: 4, cacheDir: tmp.path };
  const before = tf.memory().numTensors;
  const first = await extractFeatures(opts);
  assert.equal(tf.memory().numTensors, before, "batches and outputs are disposed");
  assert.equal(first.hit, false);
  assert.equal(batches, 3);
  assert.deepEqual(first.shape, [N, 2, 2, 3]);
  assert.ok(first.seconds >= 0);
  // The features are the base's inference-mode outputs.
  const direct = base.predict(images) as tf.Tensor;
  assertAllClose(first.features, await direct.data());
  direct.dispose();

  const second = await extractFeatures(opts);
  assert.equal(second.hit, true);
  assert.equal(batches, 3, "a hit never runs the base");
  assert.deepEqual(second.features, first.features);
  assert.equal(second.path, first.path);
  // The base's time survives in the note next to the cache file; a hit's own time is a read.
  assert.equal(first.extractSeconds, first.seconds);
  assert.equal(second.extractSeconds, first.extractSeconds);
  assert.ok((await cacheReadSeconds(first.path)) >= 0);
  await Deno.remove(`${first.path}.json`);
  assert.ok(Number.isNaN((await extractFeatures(opts)).extractSeconds), "no note: unknown");

  for (
    const [part, value] of [["model", "tiny2"], ["weights", "abc123"], ["preprocessing", "caffe"], [
      "data",
      "d1",
    ]]
  ) {
    const r = await extractFeatures({ ...opts, key: { ...KEY, [part]: value } });
    assert.equal(r.hit, false, `changing ${part} must miss`);
    assert.notEqual(r.path, first.path);
  }
  const fewer = await extractFeatures({ ...opts, count: 7 });
  assert.equal(fewer.hit, false, "a changed sample count misses");
  assert.deepEqual(fewer.features, first.features.slice(0, 7 * 12));
  // Extra key parts take part too.
  assert.equal((await extractFeatures({ ...opts, key: { ...KEY, split: "test" } })).hit, false);

  const files = (await Array.fromAsync(Deno.readDir(tmp.path))).map((e) => e.name);
  assert.equal(files.filter((f) => f.endsWith(".features")).length, 7);
  assert.ok(
    files.every((f) => f.endsWith(".features") || f.endsWith(".features.json")),
    `no temporary files left: ${files}`,
  );
  // The header is small JSON naming the key.
  const bytes = await Deno.readFile(first.path);
  assert.equal(new TextDecoder().decode(bytes.subarray(0, 8)), "TLFEAT1\n");
  const headerLength = new DataView(bytes.buffer).getUint32(8, true);
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(12, 12 + headerLength)));
  assert.equal(bytes.length, 12 + headerLength + 4 * N * 12);
  assert.deepEqual(header.key, { ...KEY, count: N });
  assert.deepEqual(header.shape, [N, 2, 2, 3]);
  assert.equal(bytes.length % 4, 0);
});

Deno.test("extractFeatures: a truncated or foreign cache file is a miss and gets rewritten", async () => {
  await using tmp = await tempDir();
  const base = tinyBase(false);
  const makeBatch = (s: number, e: number) =>
    images.slice([s, 0, 0, 0], [e - s, H, H, 1]) as tf.Tensor4D;
  const opts = { base, key: KEY, makeBatch, count: N, cacheDir: tmp.path };
  const first = await extractFeatures(opts);
  const bytes = await Deno.readFile(first.path);
  await Deno.writeFile(first.path, bytes.slice(0, bytes.length - 8));
  await assert.rejects(() => cacheReadSeconds(first.path), /not a complete feature cache file/);
  const again = await extractFeatures(opts);
  assert.equal(again.hit, false);
  assert.deepEqual(again.features, first.features);
  assert.equal((await Deno.stat(first.path)).size, bytes.length);
  await Deno.writeFile(first.path, new TextEncoder().encode("not a feature file"));
  assert.equal((await extractFeatures(opts)).hit, false);
  assert.equal((await extractFeatures(opts)).hit, true);
  // makeBatch returning the wrong number of samples is an error, not silent garbage.
  await assert.rejects(
    () =>
      extractFeatures({
        ...opts,
        key: { ...KEY, data: "x" },
        makeBatch: () => images.slice([0], [1]) as tf.Tensor4D,
      }),
    /returned 1 samples/,
  );
  const name = first.path.split("/").pop();
  assert.deepEqual(
    (await Array.fromAsync(Deno.readDir(tmp.path))).map((e) => e.name).sort(),
    [name, `${name}.json`],
  );
});

Deno.test("a head trained on cached features predicts exactly as the full frozen model on the images", async () => {
  await using tmp = await tempDir();
  const base = tinyBase(true);
  const set = await extractFeatures({
    base,
    key: KEY,
    count: N,
    cacheDir: join(tmp.path, "c"),
    makeBatch: (s, e) => images.slice([s, 0, 0, 0], [e - s, H, H, 1]) as tf.Tensor4D,
  });
  const cached = await extractFeatures({
    base,
    key: KEY,
    count: N,
    cacheDir: join(tmp.path, "c"),
    makeBatch: () => {
      throw new Error("not called on a hit");
    },
  });
  assert.equal(cached.hit, true);
  const feats = tf.tensor(cached.features, cached.shape);
  const head = tinyHead(set.shape.slice(1));
  await head.fit(feats, labels, { epochs: 5, batchSize: 4, shuffle: false, verbose: 0 });
  const full = composeFrozen(base, head);
  assert.equal(full.trainableWeights.length, 2, "only the head trains in the composed model");
  const [p1, p2] = [head.predict(feats) as tf.Tensor, full.predict(images) as tf.Tensor];
  assertAllClose(await p1.data(), await p2.data(), 1e-6);
  tf.dispose([feats, p1, p2]);
});

Deno.test("training the head on cached features = fit of the frozen base + head on images (no BatchNorm)", async () => {
  await using tmp = await tempDir();
  const base = tinyBase(false);
  const set = await extractFeatures({
    base,
    key: KEY,
    count: N,
    cacheDir: tmp.path,
    makeBatch: (s, e) => images.slice([s, 0, 0, 0], [e - s, H, H, 1]) as tf.Tensor4D,
  });
  const feats = tf.tensor(set.features, set.shape);
  const onFeatures = tinyHead(set.shape.slice(1), 5);
  const inFull = tinyHead(set.shape.slice(1), 5);
  const full = composeFrozen(base, inFull);
  full.compile({ optimizer: tf.train.sgd(0.5), loss: "sparseCategoricalCrossentropy" });
  const fitOpts = { epochs: 3, batchSize: 4, shuffle: false, verbose: 0 as const };
  const h1 = await onFeatures.fit(feats, labels, fitOpts);
  const h2 = await full.fit(images, labels, fitOpts);
  assertAllClose(h1.history.loss as number[], h2.history.loss as number[], 1e-5);
  const [w1, w2] = [onFeatures.getWeights(), inFull.getWeights()];
  for (let i = 0; i < w1.length; i++) assertAllClose(await w1[i].data(), await w2[i].data(), 1e-5);
  feats.dispose();
});

Deno.test("why features are cached: tfjs's fit runs a frozen base's BatchNorm in training mode", async () => {
  // Keras runs BatchNorm of a frozen base in inference mode; tfjs's fit passes training=true to every
  // layer, so BN normalises with batch statistics and moves its moving averages even when frozen.
  // Training the head on cached (inference-mode) features gives Keras's behaviour.
  const base = tinyBase(true);
  const full = composeFrozen(base, tinyHead([2, 2, 3]));
  full.compile({ optimizer: tf.train.sgd(0.1), loss: "sparseCategoricalCrossentropy" });
  const mean = async () => Array.from(await base.getLayer("bn").getWeights()[2].data());
  const before = await mean();
  await full.fit(images, labels, { epochs: 1, batchSize: 10, verbose: 0 });
  assert.notDeepEqual(
    await mean(),
    before,
    "if this fails, tfjs now honours frozen BatchNorm: revisit",
  );
});

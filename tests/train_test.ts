import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { DivergenceGuard, EarlyStopping, fit } from "../lib/train/train.ts";
import { loadMnist, takeFirst } from "../lib/data/mnist.ts";
import { GRAY32 } from "../lib/data/preprocess.ts";

await tf.setBackend("cpu");

Deno.test("EarlyStopping counts patience as Keras does", () => {
  // Keras: best 1.0 (e0), 0.9 (e1), then three epochs without improvement → stops after e4.
  const es = new EarlyStopping("loss", 3);
  const stops = [1.0, 0.9, 0.95, 0.96, 0.97].map((v, e) => es.update(e, v));
  assert.deepEqual(stops, [false, false, false, false, true]);
  assert.equal(es.stoppedEpoch, 4);
  assert.equal(es.bestEpoch, 1);
  // min_delta: an improvement smaller than it does not reset the wait.
  const md = new EarlyStopping("loss", 2, 0.1);
  assert.deepEqual([1.0, 0.95, 0.92].map((v, e) => md.update(e, v)), [false, false, true]);
  // Never stops after the first epoch, even with patience 1 (Keras's `epoch > 0`).
  const p1 = new EarlyStopping("loss", 1);
  assert.deepEqual([Infinity, 2].map((v, e) => p1.update(e, v)), [false, false]);
});

Deno.test("the divergence guard flags NaN/Inf batches and exploding epoch losses", () => {
  const g = new DivergenceGuard();
  assert.equal(g.checkBatch(0, 3, 0.7), null);
  assert.match(g.checkBatch(0, 4, NaN)!.reason, /NaN at epoch 1, batch 5/);
  assert.match(g.checkBatch(2, 0, Infinity)!.reason, /Infinity/);
  // Inside an epoch: batch losses fall to ~0.1, then jump to ~14 (a collapse within epoch 1).
  const b = new DivergenceGuard();
  const seq = [
    ...Array(30).fill(0).map((_, i) => 2.3 * Math.exp(-i / 6) + 0.1),
    ...Array(30).fill(14),
  ];
  const firstFlag = seq.findIndex((l, i) => b.checkBatch(0, i, l) !== null);
  assert.ok(firstFlag >= 30 && firstFlag < 40, `flagged at batch ${firstFlag}`);
  const calm = new DivergenceGuard();
  const noisy = Array.from(
    { length: 200 },
    (_, i) => 0.3 + 0.25 * Math.sin(i * 1.7) + 0.5 * (i % 17 === 0 ? 1 : 0),
  );
  assert.ok(
    noisy.every((l, i) => calm.checkBatch(0, i, l) === null),
    "noisy but healthy losses pass",
  );
  const e = new DivergenceGuard();
  assert.equal(e.checkEpoch(0, 0.3), null);
  assert.equal(e.checkEpoch(1, 0.1), null);
  assert.equal(e.checkEpoch(2, 0.25), null, "a loss that rises a little is not divergence");
  const v = e.checkEpoch(3, 2.3);
  assert.ok(v);
  assert.equal(v.epoch, 3);
  assert.equal(v.bestLoss, 0.1);
  assert.match(v.reason, /exploded to 23\.0× its best/);
});

Deno.test("EarlyStopping and the divergence guard continue from their saved state", () => {
  // A resume restores each from its JSON (NaN and ±Infinity survive a backup as strings).
  const json = <T>(s: T): T => JSON.parse(JSON.stringify(s));
  const es = new EarlyStopping("val_loss", 2, 0.01);
  [1.0, 0.9, 0.95].forEach((v, e) => es.update(e, v));
  const saved = json(es.saveState());
  assert.deepEqual(saved, {
    monitor: "val_loss",
    patience: 2,
    minDelta: 0.01,
    best: 0.9,
    wait: 1,
    bestEpoch: 1,
    stoppedEpoch: -1,
  });
  const resumed = new EarlyStopping("val_loss", 2, 0.01);
  resumed.restoreState(saved);
  assert.equal(resumed.update(3, 0.96), es.update(3, 0.96));
  assert.equal(resumed.stoppedEpoch, 3);

  const g = new DivergenceGuard();
  for (let i = 0; i < 12; i++) g.checkBatch(0, i, 0.5);
  g.checkEpoch(0, 0.5);
  const copy = new DivergenceGuard();
  copy.restoreState(json(g.saveState()));
  assert.deepEqual(copy.saveState(), g.saveState());
  assert.deepEqual(copy.checkBatch(0, 12, 40), g.checkBatch(0, 12, 40));
});

/** A small conv net of the study's layer types, cheap enough for the pure-JS backend. */
function tinyCnn(seed: number): tf.LayersModel {
  const init = (k: number) => tf.initializers.glorotUniform({ seed: seed + k });
  const m = tf.sequential();
  m.add(tf.layers.maxPooling2d({ inputShape: [32, 32, 1], poolSize: 4, strides: 4 }));
  m.add(tf.layers.conv2d({ filters: 4, kernelSize: 3, kernelInitializer: init(1) }));
  m.add(tf.layers.maxPooling2d({ poolSize: 2, strides: 1 }));
  m.add(tf.layers.flatten());
  m.add(tf.layers.dense({ units: 16, activation: "relu", kernelInitializer: init(2) }));
  m.add(tf.layers.dropout({ rate: 0.2 }));
  m.add(tf.layers.dense({ units: 10, activation: "softmax", kernelInitializer: init(3) }));
  m.compile({
    optimizer: tf.train.adam(0.01),
    loss: "sparseCategoricalCrossentropy",
    metrics: ["accuracy"],
  });
  return m;
}

Deno.test("a short training run on real digits lowers the loss, and repeats with a seed", async () => {
  const train = takeFirst((await loadMnist()).train, 512);
  const run = () =>
    fit(tinyCnn(1), train, { epochs: 3, batchSize: 32, format: GRAY32, seed: 5, progress: false });
  const a = await run();
  const losses = a.history.getColumn("loss").toArray() as number[];
  assert.equal(a.epochsRun, 3);
  assert.ok(losses[2] < losses[0] - 0.15 && losses[1] < losses[0], `loss fell: ${losses}`);
  const b = await run();
  assert.deepEqual(b.history.getColumn("loss").toArray(), losses, "same seed, same history");
});

Deno.test("a learning-rate schedule sets Adam's rate before every step, counted over the run", async () => {
  const train = takeFirst((await loadMnist()).train, 96);
  const weights = (m: tf.LayersModel) => m.getWeights().map((w) => Array.from(w.dataSync()));
  const opts = { epochs: 2, batchSize: 32, format: GRAY32, seed: 3, progress: false };
  // Steps run on across epochs, as Keras's optimizer.iterations: 3 batches per epoch.
  const steps: number[] = [];
  const still = tinyCnn(4);
  const before = weights(still);
  await fit(still, train, { ...opts, learningRate: (step) => (steps.push(step), 0) });
  assert.deepEqual(steps, [0, 1, 2, 3, 4, 5]);
  assert.deepEqual(weights(still), before, "a rate of 0 at every step leaves every weight");
  // The same run with the compiled rate (0.01) moves them: the schedule was what held them.
  const moved = tinyCnn(4);
  await fit(moved, train, opts);
  assert.notDeepEqual(weights(moved), before);
  // The rate the optimizer is left with is the schedule's last.
  const decayed = tinyCnn(4);
  await fit(decayed, train, { ...opts, learningRate: (step) => 0.01 / (1 + step) });
  assert.equal((decayed.optimizer as unknown as { learningRate: number }).learningRate, 0.01 / 6);
  // An optimizer that keeps its rate in a tensor would ignore the schedule: refused.
  const sgd = tinyCnn(4);
  sgd.compile({ optimizer: tf.train.sgd(0.1), loss: "sparseCategoricalCrossentropy" });
  await assert.rejects(
    fit(sgd, train, { ...opts, learningRate: () => 0 }),
    /learning-rate schedule needs the model compiled with Adam, got SGD/,
  );
});

Deno.test("fit stops early with Keras's EarlyStopping and reports validation metrics", async () => {
  const train = takeFirst((await loadMnist()).train, 64);
  const m = tinyCnn(2);
  m.compile({
    optimizer: tf.train.sgd(0),
    loss: "sparseCategoricalCrossentropy",
    metrics: ["accuracy"],
  });
  // With a zero learning rate the loss never improves by 1.0, so patience 2 stops after epoch 3.
  const r = await fit(m, train, {
    epochs: 10,
    batchSize: 32,
    format: GRAY32,
    seed: 1,
    progress: false,
    validation: train,
    earlyStopping: { monitor: "loss", patience: 2, minDelta: 1.0 },
  });
  assert.equal(r.epochsRun, 3);
  assert.ok(r.stoppedEarly);
  assert.deepEqual(r.history.columns, [
    "epoch",
    "loss",
    "accuracy",
    "val_loss",
    "val_accuracy",
    "seconds",
  ]);
});

Deno.test("fit stops a run whose loss becomes NaN and says so", async () => {
  const train = takeFirst((await loadMnist()).train, 96);
  const m = tinyCnn(3);
  m.compile({
    optimizer: tf.train.sgd(1e30),
    loss: "sparseCategoricalCrossentropy",
    metrics: ["accuracy"],
  });
  const r = await fit(m, train, {
    epochs: 5,
    batchSize: 32,
    format: GRAY32,
    seed: 1,
    progress: false,
  });
  assert.ok(r.divergence, "divergence reported");
  assert.ok(r.epochsRun < 5, "training did not go on");
});

Deno.test("training holds one batch of float32 images at a time: memory does not grow with the data", async () => {
  const train = takeFirst((await loadMnist()).train, 640);
  const bytes: number[] = [];
  const model = tinyCnn(4);
  const before = tf.memory().numBytes;
  await fit(model, train, {
    epochs: 2,
    batchSize: 32,
    format: GRAY32,
    seed: 1,
    progress: false,
    onBatchEnd: () => void bytes.push(tf.memory().numBytes),
  });
  // After the optimizer's state exists (first steps), tensor memory is flat across 38 batches:
  // the 640 digits never become one float32 tensor (640×32×32×4 = 2.6 MB).
  const steady = bytes.slice(2);
  const spread = Math.max(...steady) - Math.min(...steady);
  assert.ok(spread < 32 * 32 * 32 * 4, `tensor memory varied by ${spread} bytes across batches`);
  const peak = Math.max(...bytes) - before;
  assert.ok(peak < (640 * 32 * 32 * 4) / 4, `peak ${peak} bytes above the model's own weights`);
});

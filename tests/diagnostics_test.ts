import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import {
  batchNormStory,
  collapseReport,
  deadFraction,
  dominantPrediction,
  gradientNorms,
  maxActivation,
  predictionShareChart,
  type ProbeData,
  probeSummary,
  runStory,
  seedStory,
  TrainingProbe,
  weightNorms,
} from "../lib/report/diagnostics.ts";
import { compileStudy } from "../lib/models/common.ts";
import { GRAY32 } from "../lib/data/preprocess.ts";
import { fit, historyFrame } from "../lib/train/train.ts";
import { fakeSplit } from "./fixtures/mnist.ts";

await tf.setBackend("cpu");

/** input 2 → dense (3 relu units, weights chosen by hand) → dense_1 (2 relu) → dense_2 (10 softmax). */
function handModel(): tf.LayersModel {
  const m = tf.sequential();
  m.add(tf.layers.dense({ inputShape: [2], units: 3, activation: "relu", name: "dense" }));
  m.add(tf.layers.dense({ units: 2, activation: "relu", name: "dense_1" }));
  m.add(tf.layers.dense({ units: 10, activation: "softmax", name: "dense_2" }));
  // Unit 0 copies x0, unit 1 copies x1, unit 2 is -x0-x1: dead for non-negative inputs.
  m.getLayer("dense").setWeights([tf.tensor2d([[1, 0, -1], [0, 1, -1]]), tf.zeros([3])]);
  m.getLayer("dense_1").setWeights([tf.tensor2d([[3, 0], [4, 0], [0, 0]]), tf.zeros([2])]);
  m.getLayer("dense_2").setWeights([tf.zeros([2, 10]), tf.zeros([10])]);
  return m;
}

Deno.test("dead units and activation size on a hand-built network", async () => {
  const m = handModel();
  const x = tf.tensor2d([[1, 2], [0.5, 0]]);
  assert.ok(Math.abs(await deadFraction(m, "dense", x) - 1 / 3) < 1e-9);
  assert.equal(await deadFraction(m, "dense_1", x), 1 / 2);
  assert.equal(await maxActivation(m, "dense_1", x), 11); // 3·1 + 4·2
});

Deno.test("weight norms are the kernels' L2 norms", async () => {
  const norms = await weightNorms(handModel());
  assert.ok(Math.abs(norms.get("dense")! - 2) < 1e-6); // sqrt(1+1+1+1)
  assert.equal(norms.get("dense_1"), 5);
  assert.equal(norms.get("dense_2"), 0);
});

Deno.test("gradient norms match the analytic gradient of the output layer", async () => {
  const m = handModel();
  const x = tf.tensor2d([[1, 2]]);
  const y = tf.tensor1d([3]);
  const g = await gradientNorms(m, x, y);
  // Uniform softmax p = 0.1; dL/dlogits = p - onehot; dL/dW2 = h ⊗ (p - onehot), h = [11, 0].
  const expected = 11 * Math.sqrt(9 * 0.01 + 0.81);
  assert.ok(Math.abs(g.get("dense_2")! - expected) < 1e-4, `${g.get("dense_2")} vs ${expected}`);
  assert.ok(g.has("dense") && g.has("dense_1"));
});

Deno.test("dominantPrediction and the prediction-share chart", async () => {
  const predicted = Uint8Array.of(1, 1, 1, 7);
  assert.deepEqual(dominantPrediction(predicted), { digit: 1, share: 0.75 });
  const chart = await predictionShareChart(predicted, Uint8Array.of(1, 2, 3, 7), "shares");
  assert.equal((chart.svg.match(/aria-roledescription="bar"/g) ?? []).length, 20);
});

/** Two convolutions → pool ("the_pool") → two ReLU Dense layers of 7 and 5 units → softmax. */
function probedModel(): tf.LayersModel {
  const m = tf.sequential();
  m.add(
    tf.layers.conv2d(
      {
        inputShape: [32, 32, 1],
        filters: 2,
        kernelSize: 3,
        strides: 3,
      },
    ),
  );
  m.add(tf.layers.conv2d({ filters: 2, kernelSize: 3, strides: 2 }));
  m.add(tf.layers.maxPooling2d({ poolSize: 2, name: "the_pool" }));
  m.add(tf.layers.flatten());
  m.add(tf.layers.dense({ units: 7, activation: "relu", name: "first_relu" }));
  m.add(tf.layers.dense({ units: 5, activation: "relu", name: "second_relu" }));
  m.add(tf.layers.dense({ units: 10, activation: "softmax" }));
  return compileStudy(m);
}

Deno.test("TrainingProbe finds the model's convolutions and ReLU layers and records every batch", async () => {
  const train = fakeSplit(30, 1), test = fakeSplit(10, 2);
  const probe = new TrainingProbe(test, GRAY32, "the_pool", 8);
  const r = await fit(probedModel(), train, {
    epochs: 2,
    batchSize: 10,
    format: GRAY32,
    seed: 1,
    progress: false,
    onBatchEnd: probe.onBatchEnd,
    onEpochEnd: probe.onEpochEnd,
  });
  const d = probe.data;
  assert.equal(d.convLayers, 2);
  assert.deepEqual(d.reluDense, [{ name: "first_relu", units: 7 }, {
    name: "second_relu",
    units: 5,
  }]);
  assert.deepEqual(d.batchLosses.map((b) => [b.step, b.epoch]), [[1, 1], [2, 1], [3, 1], [4, 2], [
    5,
    2,
  ], [6, 2]]);
  assert.equal(d.epochs.length, 2);
  assert.equal(d.epochs[1].loss, r.history.getColumn("loss").toArray()[1]);
  for (const e of d.epochs) {
    assert.ok(e.dead.first_relu >= 0 && e.dead.first_relu <= 1);
    assert.deepEqual(Object.keys(e.weightNorms).length, 5, "2 convs + 3 dense kernels");
    assert.ok(e.convOutputMax > 0);
  }
  // The probe's state survives a backup: a fresh probe restored from it holds the same data.
  const copy = new TrainingProbe(test, GRAY32, "the_pool", 8);
  copy.restoreState(JSON.parse(JSON.stringify(probe.saveState())));
  assert.deepEqual(copy.data, d);
  assert.deepEqual(probeSummary(d).columns, [
    "epoch",
    "loss",
    "accuracy",
    "dead units first_relu (7)",
    "dead units second_relu (5)",
    "max |conv stack output|",
    "gradient norm (all kernels)",
  ]);
  probe.dispose();
  copy.dispose();
});

const PROBE: ProbeData = {
  convOutputLayer: "pool",
  convLayers: 4,
  reluDense: [{ name: "fc", units: 100 }],
  batchLosses: [1, 2, 3, 4, 5, 6].map((l, i) => ({ step: i + 1, epoch: i < 3 ? 1 : 2, loss: l })),
  epochs: [1, 2].map((epoch) => ({
    epoch,
    loss: 1,
    accuracy: 0.5,
    weightNorms: { a: 3 },
    gradientNorms: { a: epoch === 1 ? 4 : 0 },
    dead: { fc: epoch === 1 ? 0.25 : 0.75 },
    convOutputMax: epoch * 100,
  })),
};

Deno.test("collapseReport takes its numbers from the run: labels, convolutions, layers", () => {
  // 10 digits: label 3 is the commonest (4 of 10); the model answers 7 for everything.
  const labels = Uint8Array.of(3, 3, 3, 3, 7, 1, 2, 5, 6, 0);
  const text = collapseReport(
    { accuracy: 0.1, predicted: new Uint8Array(10).fill(7), labels },
    PROBE,
    null,
  );
  assert.match(text, /predicts \*\*7\*\* for 100\.0%/);
  assert.match(text, /share of 3s, the commonest test digit \(40\.00% here\)/);
  assert.match(text, /4 convolutions compose/);
  assert.match(text, /\(fc, 100 units\) 25\.0% .* 75\.0% after epoch 2/);
  assert.match(text, /from 4\.00e\+0 to 0\.00e\+0/, "gradient norm √(4²) = 4 → 0");
  const ok = collapseReport({ accuracy: 0.6, predicted: labels, labels }, PROBE, {
    epoch: 1,
    reason: "boom",
  });
  assert.match(ok, /did not collapse/);
  assert.match(ok, /guard fired\*\*: boom/);
});

Deno.test("runStory tells where a run broke, from its record", () => {
  const story = runStory("Keras's loss", {
    history: historyFrame([
      { epoch: 1, loss: 1, accuracy: 0.6, seconds: 1 },
      { epoch: 2, loss: 9, accuracy: 0.1, seconds: 1 },
    ]),
    evaluation: {
      accuracy: 0.11,
      predicted: new Uint8Array(10).fill(1),
      labels: new Uint8Array(10),
    },
    metrics: { epochsRun: 2, divergence: { epoch: 1, batch: 1, reason: "exploded" } },
    probe: PROBE,
  });
  assert.match(
    story,
    /^\*\*Keras's loss\*\*: 2 epochs; train accuracy was highest in epoch 1 \(60\.0%\)/,
  );
  assert.match(story, /break in epoch 2, batch 2 \(exploded\) — 5 steps into training/);
  assert.match(story, /answers \*\*1\*\* for 100\.0%/);
  assert.doesNotMatch(story, /dead/, "the probe's conv output was not 0 after every epoch");
});

Deno.test("runStory says when a stack was dead: its output 0 for every probe digit, every epoch", () => {
  const silent = { ...PROBE, epochs: PROBE.epochs.map((e) => ({ ...e, convOutputMax: 0 })) };
  const story = runStory("ReLU convs", {
    history: historyFrame([
      { epoch: 1, loss: 2.3, accuracy: 0.11, seconds: 1 },
      { epoch: 2, loss: 2.3, accuracy: 0.11, seconds: 1 },
    ]),
    evaluation: {
      accuracy: 0.1,
      predicted: new Uint8Array(10).fill(1),
      labels: new Uint8Array(10),
    },
    metrics: { epochsRun: 2, divergence: null },
    probe: silent,
  });
  assert.match(
    story,
    new RegExp(
      `saw no break; the conv stack's output \\(${PROBE.convOutputLayer}\\) was exactly 0 .* ` +
        `dead from epoch ${PROBE.epochs[0].epoch} on; it answers`,
    ),
  );
});

Deno.test("seedStory counts the seeds that trained and names where each broke", () => {
  const rec = (accuracy: number, broke: boolean) => ({
    history: historyFrame([{ epoch: 1, loss: 1, accuracy, seconds: 1 }]),
    evaluation: { accuracy, predicted: new Uint8Array(10).fill(1), labels: new Uint8Array(10) },
    metrics: { epochsRun: 1, divergence: broke ? { epoch: 0, batch: 18, reason: "x" } : null },
    probe: { ...PROBE, batchLosses: PROBE.batchLosses.slice(0, 3) },
  });
  const text = seedStory(
    [{ seed: 1, record: rec(0.9, true) }, { seed: 2, record: rec(0.1, true) }, {
      seed: 3,
      record: rec(0.2, false),
    }],
    0.5,
    { seed: 1, record: rec(0.95, false) },
  );
  assert.match(
    text,
    /\*\*1 of 3 seeds trained\*\* past 50\.0% test accuracy in their first 3 steps \(seed 1: 90\.0%, seed 2: 10\.0%, seed 3: 20\.0%\)/,
  );
  assert.match(
    text,
    /saw 2 of them break: seed 1 in epoch 1, batch 19; seed 2 in epoch 1, batch 19\./,
  );
  assert.match(text, /\*\*Seed 1 with the study's full settings\*\*: 1 epochs/);
});

Deno.test("batchNormStory says whether the moving averages settled, from the record", () => {
  const rec = (val: number[], test: number) => ({
    history: historyFrame(val.map((v, i) => ({
      epoch: i + 1,
      loss: 1,
      accuracy: 0.9 + 0.03 * i,
      val_loss: 1,
      val_accuracy: v,
      seconds: 1,
    }))),
    evaluation: { accuracy: test, predicted: new Uint8Array(10), labels: new Uint8Array(10) },
    metrics: { epochsRun: val.length, divergence: null },
    probe: {
      ...PROBE,
      batchLosses: Array.from({ length: 600 }, (_, i) => ({ step: i + 1, epoch: 1, loss: 1 })),
    },
  });
  const settled = batchNormStory("BN", rec([0.1, 0.92, 0.955], 0.955));
  assert.match(settled, /after 600 steps, test accuracy 95\.50% against 96\.00% training/);
  assert.match(settled, /within 2 points of the training accuracy from epoch 2 on/);
  assert.match(settled, /had settled: the explanation holds/);
  const lagging = batchNormStory("BN", rec([0.1, 0.1, 0.11], 0.11));
  assert.match(lagging, /in no epoch did the validation accuracy/);
  assert.match(lagging, /does not hold by itself/);
  const short = batchNormStory("BN", { ...rec([0.1], 0.1), probe: PROBE });
  assert.match(short, /too short to tell/);
});

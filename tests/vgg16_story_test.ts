import assert from "node:assert/strict";
import type { ProbeData } from "../lib/train/probe.ts";
import {
  batchNormStory,
  collapseReport,
  probeSummary,
  runStory,
  seedStory,
} from "../lib/report/vgg16_story.ts";
import { historyFrame } from "../lib/train/train.ts";

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

Deno.test("probeSummary has a dead-units column per ReLU Dense layer, named with its units", () => {
  const d: ProbeData = {
    ...PROBE,
    reluDense: [{ name: "first_relu", units: 7 }, { name: "second_relu", units: 5 }],
  };
  assert.deepEqual(probeSummary(d).columns, [
    "epoch",
    "loss",
    "accuracy",
    "dead units first_relu (7)",
    "dead units second_relu (5)",
    "max |conv stack output|",
    "gradient norm (all kernels)",
  ]);
});

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

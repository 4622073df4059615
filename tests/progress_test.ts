import assert from "node:assert/strict";
import {
  type BatchProgress,
  LiveCurves,
  notebookProgress,
  terminalProgress,
} from "../lib/train/progress.ts";
import { type MimeBundle } from "../lib/report/display.ts";
import { VEGALITE_MIME } from "../lib/report/charts.ts";

/** A fake kernel: every display message, in order. */
function fakeKernel() {
  const sent: { bundle: MimeBundle; display_id: string; update: boolean }[] = [];
  return {
    sent,
    send: (bundle: MimeBundle, opts: { display_id: string; update: boolean }) => {
      sent.push({ bundle, ...opts });
      return Promise.resolve();
    },
  };
}

/** Drives a reporter through `epochs` epochs of `batches` batches of 10 samples, 1 s apart. */
async function train(
  reporter: ReturnType<typeof notebookProgress>,
  clock: { t: number },
  epochs: number,
  batches: number,
) {
  for (let epoch = 0; epoch < epochs; epoch++) {
    for (let b = 1; b <= batches; b++) {
      clock.t += 1000;
      const p: BatchProgress = {
        epoch,
        epochs,
        seen: b * 10,
        count: batches * 10,
        loss: 2 / (epoch * batches + b),
        accuracy: 1 - 1 / (epoch * batches + b + 1),
        samplesPerSecond: 10,
      };
      await reporter.batch(p);
    }
    await reporter.epoch({
      epoch: epoch + 1,
      epochs,
      count: batches * 10,
      loss: 2 / ((epoch + 1) * batches),
      accuracy: 0.9,
      val_loss: 0.5,
      val_accuracy: 0.8 + epoch / 100,
      seconds: batches,
    });
  }
}

Deno.test("the notebook reporter redraws one live chart in place, from the line's own values", async () => {
  const kernel = fakeKernel();
  const clock = { t: 0 };
  const reporter = notebookProgress("baseline", {
    send: kernel.send,
    now: () => clock.t,
    pointsPerEpoch: 5,
    chartEveryMs: 3000,
  });
  await train(reporter, clock, 2, 10);
  const charts = kernel.sent.filter((m) => VEGALITE_MIME in m.bundle);
  const lines = kernel.sent.filter((m) => !(VEGALITE_MIME in m.bundle));
  // one slot for the chart: shown once, then only updated
  assert.equal(new Set(charts.map((m) => m.display_id)).size, 1);
  assert.deepEqual(charts.map((m) => m.update), charts.map((_, i) => i > 0));
  // every 3 s between epochs (batches 1 s apart, a point every 2 batches), and every epoch end
  assert.ok(charts.length >= 4 && charts.length <= 2 * (10 / 3 + 1) + 2, `${charts.length} draws`);
  // the progress line is still there, in its own slots
  assert.ok(lines.some((m) => /baseline epoch 1\/2 .* loss/.test(String(m.bundle["text/plain"]))));
  const last = charts.at(-1)!.bundle;
  assert.match(String(last["image/svg+xml"]), /^<svg/);
  const values = (last[VEGALITE_MIME] as { data: { values: Record<string, unknown>[] } }).data
    .values;
  // training points at the first batch and every fifth of each epoch (its end from epoch()),
  // loss and accuracy each; the validation point at each end
  const trainLoss = values.filter((v) => v.split === "train" && v.metric === "loss");
  assert.deepEqual(
    trainLoss.map((v) => v.epoch),
    [0.1, 0.2, 0.4, 0.6, 0.8, 1, 1.1, 1.2, 1.4, 1.6, 1.8, 2],
  );
  assert.deepEqual(
    trainLoss.slice(0, 2).map((v) => v.value),
    [2 / 1, 2 / 2],
    "the running means the line shows at those batches",
  );
  const val = values.filter((v) => v.split === "validation" && v.metric === "accuracy");
  assert.deepEqual(val.map((v) => [v.epoch, v.value]), [[1, 0.8], [2, 0.81]]);
});

Deno.test("outside a kernel the live chart draws nothing; the terminal keeps its line", async () => {
  const curves = new LiveCurves("x");
  await curves.batch({
    epoch: 0,
    epochs: 1,
    seen: 5,
    count: 10,
    loss: 1,
    accuracy: 0.5,
    samplesPerSecond: 1,
  });
  assert.deepEqual([curves.points.length, curves.draws], [0, 0]);
  const out: string[] = [];
  const term = terminalProgress({ tty: false, write: (s) => out.push(s), now: () => 0 });
  await term.epoch({
    epoch: 1,
    epochs: 1,
    count: 10,
    loss: 0.5,
    accuracy: 0.9,
    seconds: 1,
  });
  assert.match(out.join(""), /^epoch 1\/1 █+ 10\/10 {2}loss 0\.5000 {2}acc 0\.9000 {2}1\.0 s\n$/);
});

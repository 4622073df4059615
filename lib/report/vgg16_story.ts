/**
 * Notebook 04's text and tables (VGG16 from scratch), every number taken from the run records:
 * the probe's per-epoch summary, the collapse verdict, and the stories of a run, a seed sweep and
 * a BatchNorm run.
 */
import pl from "nodejs-polars";
import { dominantPrediction, type ProbeData } from "../train/probe.ts";

/** Per-epoch summary: loss, accuracy, dead units, conv output size, total gradient norm. */
export function probeSummary(probe: ProbeData): pl.DataFrame {
  const e = probe.epochs;
  const total = (m: Record<string, number>) =>
    Math.sqrt(Object.values(m).reduce((s, v) => s + v * v, 0));
  return pl.DataFrame([
    pl.Series("epoch", e.map((p) => p.epoch), pl.Int32),
    pl.Series("loss", e.map((p) => p.loss)),
    pl.Series("accuracy", e.map((p) => p.accuracy)),
    ...probe.reluDense.map((l) =>
      pl.Series(`dead units ${l.name} (${l.units})`, e.map((p) => p.dead[l.name] ?? NaN))
    ),
    pl.Series("max |conv stack output|", e.map((p) => p.convOutputMax)),
    pl.Series("gradient norm (all kernels)", e.map((p) => total(p.gradientNorms))),
  ]);
}

/**
 * The reproduction's verdict in plain words, every number taken from this run (its
 * evaluation, its probe data and the test labels): whether it collapsed, what the accuracy
 * then means, and what the probes saw when it broke.
 */
export function collapseReport(
  e: { accuracy: number; predicted: Uint8Array; labels: Uint8Array },
  probe: ProbeData,
  divergence: { epoch: number; reason: string } | null,
): string {
  const dom = dominantPrediction(e.predicted);
  const common = dominantPrediction(e.labels);
  const labelShare = e.labels.filter((l) => l === dom.digit).length / e.labels.length;
  const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
  const lines: string[] = [];
  if (dom.share > 0.9) {
    lines.push(
      `- **The model answers one digit.** It predicts **${dom.digit}** for ${
        pct(dom.share)
      } of the test digits. ` +
        `${dom.digit} makes up ${pct(labelShare)} of the test set, so the accuracy is ${
          pct(e.accuracy)
        }: exactly what a constant guess scores. The study's 0.11 is the same thing — the share ` +
        `of ${common.digit}s, the commonest test digit (${(100 * common.share).toFixed(2)}% here).`,
    );
  } else {
    lines.push(
      `- In this run the model did not collapse to one answer: its commonest prediction (${dom.digit}) covers ` +
        `${pct(dom.share)} of the test digits, and the accuracy is ${pct(e.accuracy)}.`,
    );
  }
  lines.push(
    divergence
      ? `- **The divergence guard fired**: ${divergence.reason}.`
      : `- The divergence guard saw no NaN and no exploding epoch loss in this run.`,
  );
  const ep = probe.epochs;
  if (ep.length > 0) {
    const first = ep[0], last = ep[ep.length - 1];
    const peak = ep.reduce((a, b) => (b.convOutputMax > a.convOutputMax ? b : a));
    const n = probe.convLayers;
    lines.push(
      `- **The conv stack is one linear map.** Without activations, ${n} convolutions compose to a single ` +
        `linear function of the pixels (max-pooling only picks among them). Its output grew from ` +
        `${first.convOutputMax.toExponential(2)} after epoch ${first.epoch} to ${
          peak.convOutputMax.toExponential(2)
        } ` +
        `(epoch ${peak.epoch}): each layer's growth multiplies through all ${n}.`,
    );
    const [d0, d1] = probe.reluDense;
    if (d0) {
      lines.push(
        `- **Dead units.** In the first ReLU layer (${d0.name}, ${d0.units} units) ${
          pct(first.dead[d0.name])
        } of the units output zero for every probe digit after epoch ${first.epoch}, ${
          pct(last.dead[d0.name])
        } after epoch ${last.epoch}` +
          (d1 ? `; in ${d1.name} ${pct(first.dead[d1.name])} → ${pct(last.dead[d1.name])}.` : "."),
      );
    }
    const gTotal = (m: Record<string, number>) =>
      Math.sqrt(Object.values(m).reduce((s, v) => s + v * v, 0));
    lines.push(
      `- **Gradients.** The total gradient norm on the probe batch went from ${
        gTotal(first.gradientNorms).toExponential(2)
      } to ${gTotal(last.gradientNorms).toExponential(2)}.`,
    );
  }
  return lines.join("\n");
}

/** What a run record must hold for the stories below. */
interface StoryRecord {
  history: pl.DataFrame;
  evaluation: { accuracy: number; predicted: Uint8Array; labels: Uint8Array };
  metrics: {
    epochsRun: number;
    divergence: { epoch: number; batch: number | null; reason: string } | null;
  };
  probe: ProbeData | null;
}

/**
 * One run's course in one sentence, every number from its record: how far it trained before
 * anything broke, where the divergence guard saw it break (epoch and batch), and what it
 * answers in the end. `title` names the run, e.g. "With Keras's loss (from logits)".
 */
export function runStory(title: string, r: StoryRecord): string {
  const acc = r.history.getColumn("accuracy").toArray() as number[];
  const best = acc.reduce((b, v, i) => (v > acc[b] ? i : b), 0);
  const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
  const dom = dominantPrediction(r.evaluation.predicted);
  const d = r.metrics.divergence;
  const broke = d
    ? `the divergence guard saw it break in epoch ${d.epoch + 1}${
      d.batch === null ? "" : `, batch ${d.batch + 1}`
    } (${d.reason})`
    : "the divergence guard saw no break";
  const stepsPerEpoch = r.probe && r.metrics.epochsRun
    ? Math.round(r.probe.batchLosses.length / r.metrics.epochsRun)
    : null;
  const early = d && d.batch !== null && stepsPerEpoch
    ? ` — ${d.epoch * stepsPerEpoch + d.batch + 1} steps into training`
    : "";
  const answer = dom.share > 0.9
    ? `it answers **${dom.digit}** for ${pct(dom.share)} of the test digits (test accuracy ${
      pct(r.evaluation.accuracy)
    })`
    : `test accuracy ${pct(r.evaluation.accuracy)}, its commonest answer (${dom.digit}) ${
      pct(dom.share)
    } of the digits`;
  // a ReLU stack whose output is exactly 0 for every probe digit passes no gradient to any
  // convolution: the net is dead, which no later step can undo (notebook 04's ReLU + Glorot fix)
  const ep = r.probe?.epochs ?? [];
  const dead = ep.length > 0 && ep.every((e) => e.convOutputMax === 0)
    ? `; the conv stack's output (${r.probe!.convOutputLayer}) was exactly 0 for every probe ` +
      `digit after every epoch: with all of its last ReLUs off, no gradient reaches any ` +
      `convolution, so the net was dead from epoch ${ep[0].epoch} on`
    : "";
  return `**${title}**: ${r.metrics.epochsRun} epochs; train accuracy was highest in epoch ${
    best + 1
  } (${pct(acc[best])}); ${broke}${early}${dead}; ${answer}.`;
}

/**
 * Whether a BatchNorm run's moving averages settled, from its record: BatchNormalization
 * trains on each batch's own statistics and is evaluated with moving averages (momentum 0.99:
 * ~100 steps to forget a start), so a run whose test accuracy (inference mode, every epoch's
 * validation) is far below its training accuracy is being judged with averages that have not
 * caught up. Settled here means test within `tolerance` of the last epoch's train accuracy.
 */
export function batchNormStory(title: string, r: StoryRecord, tolerance = 0.02): string {
  const pct = (x: number) => `${(100 * x).toFixed(2)}%`;
  const train = r.history.getColumn("accuracy").toArray() as number[];
  const val = r.history.columns.includes("val_accuracy")
    ? r.history.getColumn("val_accuracy").toArray() as number[]
    : [];
  const steps = r.probe?.batchLosses.length;
  const last = train.length - 1;
  const gap = train[last] - r.evaluation.accuracy;
  const settledAt = val.findIndex((v, i) => train[i] - v <= tolerance);
  const when = settledAt < 0
    ? "in no epoch did the validation accuracy (inference mode) come within " +
      `${(100 * tolerance).toFixed(0)} points of the training accuracy`
    : `the validation accuracy (inference mode) was within ${
      (100 * tolerance).toFixed(0)
    } points of the training accuracy from epoch ${settledAt + 1} on`;
  const verdict = steps !== undefined && steps < 300
    ? "this run is too short to tell (momentum 0.99 averages over ~100 steps; a few hundred " +
      "are needed before they can match the batch statistics)"
    : gap <= tolerance
    ? "the moving averages had settled: the explanation holds (a chance-level score after a " +
      "few hundred steps is the averages lagging, not a broken model)"
    : "the moving averages had not caught up even here: the explanation does not hold by " +
      "itself";
  return `**${title}**: after ${
    steps === undefined ? `${r.metrics.epochsRun} epochs` : `${steps} steps`
  }, ` +
    `test accuracy ${pct(r.evaluation.accuracy)} against ${pct(train[last])} training ` +
    `accuracy in its last epoch; ${when}. So ${verdict}.`;
}

/**
 * The seed sweep in words, from its records: how many seeds trained in their first steps, where
 * the divergence guard saw each break, and — when one was picked — that seed's full run.
 */
export function seedStory(
  sweep: { seed: number; record: StoryRecord }[],
  above: number,
  rerun: { seed: number; record: StoryRecord } | null,
): string {
  const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
  const trained = sweep.filter((s) => s.record.evaluation.accuracy > above);
  const broke = sweep.filter((s) => s.record.metrics.divergence);
  const steps = sweep[0]?.record.probe?.batchLosses.length ?? 0;
  const lines = [
    `- **${trained.length} of ${sweep.length} seeds trained** past ${
      pct(above)
    } test accuracy in ` +
    `their first ${steps} steps (${
      sweep.map((s) => `seed ${s.seed}: ${pct(s.record.evaluation.accuracy)}`).join(", ")
    }).`,
    `- The divergence guard saw ${broke.length} of them break: ${
      broke.map((s) => {
        const d = s.record.metrics.divergence!;
        return `seed ${s.seed} in epoch ${d.epoch + 1}${
          d.batch === null ? "" : `, batch ${d.batch + 1}`
        }`;
      }).join("; ") || "none"
    }.`,
  ];
  if (rerun) {
    lines.push(`- ${runStory(`Seed ${rerun.seed} with the study's full settings`, rerun.record)}`);
  }
  return lines.join("\n");
}

/**
 * Looking inside a training run: per-layer weight and gradient norms, dead ReLU units, and what
 * the model predicts. Used to explain why VGG16 without activations collapses (notebook 04).
 */
import * as tf from "@tensorflow/tfjs";
import pl from "nodejs-polars";
import type { EpochLogs } from "../train/train.ts";
import type { MnistSplit } from "../data/mnist.ts";
import { type InputFormat, makeBatch, range } from "../data/preprocess.ts";
import { type Chart, renderChart } from "./charts.ts";
import { batchLoss } from "../train/loss.ts";

/** L2 norm of each layer's kernel (layers without a kernel are skipped), in layer order. */
export async function weightNorms(model: tf.LayersModel): Promise<Map<string, number>> {
  const names: string[] = [], norms: tf.Scalar[] = [];
  for (const layer of model.layers) {
    const kernel = layer.getWeights()[0];
    if (!kernel || layer.getWeights().length === 0 || kernel.rank < 2) continue;
    names.push(layer.name);
    norms.push(tf.norm(kernel) as tf.Scalar);
  }
  const values = await readScalars(norms);
  return new Map(names.map((n, i) => [n, values[i]]));
}

/** Reads scalars back in one read (on a GPU, one wait instead of one per value) and frees them. */
async function readScalars(scalars: tf.Scalar[]): Promise<number[]> {
  if (scalars.length === 0) return [];
  const packed = tf.stack(scalars);
  tf.dispose(scalars);
  const values = await packed.data();
  packed.dispose();
  return Array.from(values);
}

/**
 * L2 norm of the loss gradient with respect to each layer's kernel, on one batch, in training
 * mode (as `fit` computes it). Weights are not changed.
 */
export async function gradientNorms(
  model: tf.LayersModel,
  x: tf.Tensor,
  y: tf.Tensor,
): Promise<Map<string, number>> {
  const kernels = new Map<string, tf.LayerVariable>();
  for (const layer of model.layers) {
    const w = layer.trainableWeights[0];
    if (w && w.shape.length >= 2) kernels.set(layer.name, w);
  }
  const vars = [...kernels.values()].map((w) => w.read() as tf.Variable);
  // The loss the model trains with (from logits, or tfjs's clipped form): the gradient `fit` sees.
  const { grads, value } = tf.variableGrads(() => batchLoss(model, x, y, true), vars);
  const names = [...kernels.keys()];
  const norms = names.map((_, i) => {
    const g = grads[vars[i].name];
    return (g ? tf.norm(g) : tf.scalar(0)) as tf.Scalar;
  });
  tf.dispose([value, ...Object.values(grads)]);
  const values = await readScalars(norms);
  return new Map(names.map((n, i) => [n, values[i]]));
}

/** The output of one inner layer on `x` (inference mode). */
function layerOutput(model: tf.LayersModel, layerName: string, x: tf.Tensor): tf.Tensor {
  const output = model.getLayer(layerName).output as tf.SymbolicTensor;
  return tf.model({ inputs: model.inputs, outputs: output }).predict(x) as tf.Tensor;
}

/** Reduces a tensor to one number on the host and frees both. */
async function scalarOf(t: tf.Tensor, reduce: (t: tf.Tensor) => tf.Tensor): Promise<number> {
  const r = tf.tidy(() => reduce(t));
  const v = (await r.data())[0];
  tf.dispose([t, r]);
  return v;
}

/** Fraction of a ReLU layer's units that output zero for every sample of `x` (dead units). */
export async function deadFraction(
  model: tf.LayersModel,
  layerName: string,
  x: tf.Tensor,
): Promise<number> {
  const act = layerOutput(model, layerName, x);
  const units = act.shape[1]!;
  const alive = await scalarOf(act, (a) => tf.sum(tf.cast(tf.greater(tf.max(a, 0), 0), "float32")));
  return 1 - alive / units;
}

/** Largest absolute activation of a layer on `x`: how big the signal has grown. */
export function maxActivation(
  model: tf.LayersModel,
  layerName: string,
  x: tf.Tensor,
): Promise<number> {
  return scalarOf(layerOutput(model, layerName, x), (a) => tf.max(tf.abs(a)));
}

/** One epoch's look inside the network (plain JSON: it goes into run records). */
export interface EpochProbe {
  epoch: number;
  loss: number;
  accuracy: number;
  /** Kernel L2 norm per layer, in layer order. */
  weightNorms: Record<string, number>;
  /** Loss-gradient L2 norm per layer's kernel on the probe batch, in layer order. */
  gradientNorms: Record<string, number>;
  /** Fraction of dead units per ReLU Dense layer. */
  dead: Record<string, number>;
  convOutputMax: number;
}

/** Everything a probe saw: what notebook 04 shows, stored in the run record as `probe.json`. */
export interface ProbeData {
  /** The layer whose output size is tracked (the conv stack's last), and how many convolutions feed it. */
  convOutputLayer: string;
  convLayers: number;
  /** The Dense layers with a ReLU, whose dead units are counted. */
  reluDense: { name: string; units: number }[];
  batchLosses: { step: number; epoch: number; loss: number }[];
  epochs: EpochProbe[];
}

interface LayerLike {
  name: string;
  getClassName(): string;
  getConfig(): Record<string, unknown>;
}

/** The model's structure as the probe needs it: its convolutions and its ReLU Dense layers. */
function probeLayers(model: tf.LayersModel, convOutputLayer: string) {
  const layers = model.layers as unknown as LayerLike[];
  const upTo = layers.findIndex((l) => l.name === convOutputLayer);
  if (upTo < 0) throw new Error(`${model.name} has no layer "${convOutputLayer}" to probe`);
  return {
    convLayers: layers.slice(0, upTo + 1).filter((l) => l.getClassName() === "Conv2D").length,
    reluDense: layers.filter((l) =>
      l.getClassName() === "Dense" && l.getConfig().activation === "relu"
    )
      .map((l) => ({ name: l.name, units: l.getConfig().units as number })),
  };
}

/**
 * Records batch losses and, after every epoch, weight/gradient norms, dead units of the
 * model's ReLU Dense layers and the size of the conv stack's output, on a fixed probe batch.
 * Pass `onBatchEnd` and `onEpochEnd` to `fit`, and the probe itself as a stateful callback
 * (`stateful: [probe]`) so a resumed run keeps what it saw before.
 */
export class TrainingProbe {
  #data: ProbeData;
  #x: tf.Tensor4D;
  #y: tf.Tensor1D;

  constructor(
    probeSplit: MnistSplit,
    format: InputFormat,
    convOutputLayer: string,
    size = 64,
  ) {
    const batch = makeBatch(probeSplit, range(0, Math.min(size, probeSplit.count)), format);
    this.#x = batch.x;
    this.#y = batch.y;
    this.#data = { convOutputLayer, convLayers: 0, reluDense: [], batchLosses: [], epochs: [] };
  }

  /** What the probe has seen so far. */
  get data(): ProbeData {
    return this.#data;
  }

  onBatchEnd = (epoch: number, _batch: number, loss: number): void => {
    const b = this.#data.batchLosses;
    b.push({ step: b.length + 1, epoch: epoch + 1, loss });
  };

  onEpochEnd = async (logs: EpochLogs, model: tf.LayersModel): Promise<void> => {
    Object.assign(this.#data, probeLayers(model, this.#data.convOutputLayer));
    const dead: Record<string, number> = {};
    for (const l of this.#data.reluDense) dead[l.name] = await deadFraction(model, l.name, this.#x);
    this.#data.epochs.push({
      epoch: logs.epoch,
      loss: logs.loss,
      accuracy: logs.accuracy,
      weightNorms: Object.fromEntries(await weightNorms(model)),
      gradientNorms: Object.fromEntries(await gradientNorms(model, this.#x, this.#y)),
      dead,
      convOutputMax: await maxActivation(model, this.#data.convOutputLayer, this.#x),
    });
  };

  saveState(): unknown {
    return this.#data;
  }

  restoreState(state: unknown): void {
    this.#data = state as ProbeData;
  }

  dispose(): void {
    tf.dispose([this.#x, this.#y]);
  }
}

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

/** Loss after every batch (log scale): shows the exact step where a run breaks. */
export function batchLossChart(
  points: { step: number; epoch: number; loss: number }[],
  title: string,
): Promise<Chart> {
  // Keep the SVG small on long runs: at most ~1,500 points.
  const every = Math.max(1, Math.ceil(points.length / 1500));
  const values = points.filter((_, i) => i % every === 0).map((p) => ({
    ...p,
    loss: Math.max(p.loss, 1e-4),
  }));
  return renderChart({
    title,
    width: 560,
    height: 200,
    data: { values },
    mark: { type: "line", strokeWidth: 1 },
    encoding: {
      x: { field: "step", type: "quantitative", title: "training step (batch)" },
      y: { field: "loss", type: "quantitative", scale: { type: "log" }, title: "batch loss (log)" },
      color: { field: "epoch", type: "ordinal" },
    },
  }, title);
}

/** Heat map of a per-layer quantity (weight or gradient norm) across epochs, log colour. */
export function layerHeatmap(
  probes: EpochProbe[],
  which: "weightNorms" | "gradientNorms",
  title: string,
): Promise<Chart> {
  const values: { epoch: number; layer: string; value: number; order: number }[] = [];
  for (const p of probes) {
    Object.entries(p[which]).forEach(([layer, value], order) =>
      values.push({ epoch: p.epoch, layer, value: Math.max(value, 1e-12), order })
    );
  }
  return renderChart({
    title,
    data: { values },
    mark: { type: "rect", tooltip: true },
    encoding: {
      x: { field: "epoch", type: "ordinal" },
      y: { field: "layer", type: "nominal", sort: { field: "order" } },
      color: {
        field: "value",
        type: "quantitative",
        scale: { type: "log", scheme: "viridis" },
        title: which,
      },
    },
  }, title);
}

/** How often the model predicts each digit on the test set, next to how often each digit occurs. */
export function predictionShareChart(
  predicted: Uint8Array,
  labels: Uint8Array,
  title: string,
): Promise<Chart> {
  const values: { digit: number; share: number; of: string }[] = [];
  for (let d = 0; d < 10; d++) {
    values.push({
      digit: d,
      of: "predicted",
      share: predicted.filter((p) => p === d).length / predicted.length,
    });
    values.push({
      digit: d,
      of: "true labels",
      share: labels.filter((p) => p === d).length / labels.length,
    });
  }
  return renderChart({
    title,
    width: 360,
    height: 180,
    data: { values },
    mark: { type: "bar", tooltip: true },
    encoding: {
      x: { field: "digit", type: "ordinal" },
      xOffset: { field: "of" },
      y: { field: "share", type: "quantitative", axis: { format: ".0%" } },
      color: { field: "of", type: "nominal" },
    },
  }, title);
}

/** The digit a model predicts most often on the test set, and how often. */
export function dominantPrediction(predicted: Uint8Array): { digit: number; share: number } {
  const counts = new Array(10).fill(0);
  for (const p of predicted) counts[p]++;
  const digit = counts.indexOf(Math.max(...counts));
  return { digit, share: counts[digit] / predicted.length };
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

/**
 * The transfer-learning pipeline of notebooks 05 and 06: the frozen base runs once per split and
 * preprocessing (features cached on disk by lib/features.ts), then the head trains on the cached
 * features for all its epochs. `fitFeatures` and `evaluateFeatures` return the same `FitResult`
 * and `Evaluation` as lib/train.ts, so run records and interpretation work unchanged.
 */
import * as tf from "@tensorflow/tfjs";
import pl from "nodejs-polars";
import { type Chart, metricCurvesChart } from "./charts.ts";
import { type Displayable, LiveText, markdown } from "./display.ts";
import {
  extractFeatures,
  type FeatureSet,
  fingerprint,
  preprocessInput,
  type PreprocessMode,
} from "./features.ts";
import type { MnistSplit } from "./mnist.ts";
import { compileStudy, glorot } from "./models/common.ts";
import { makeBatch, range, RGB32 } from "./preprocess.ts";
import { type ImagenetBase, type ImagenetName, KERAS_WEIGHTS, weightsUrl } from "./weights.ts";
import {
  type BatchSource,
  evaluateSource,
  type Evaluation,
  type FitResult,
  fitSource,
  progressBar,
} from "./train.ts";

/** The label every table, chart and run record carries when the base is random. */
export const RANDOM_FEATURES_LABEL = "random features (ImageNet weights unavailable)";

/** A split's features from a frozen base, with its labels. */
export interface FeatureSplit extends FeatureSet {
  /** "train" or "test". */
  split: string;
  mode: PreprocessMode;
  labels: Uint8Array;
  count: number;
  /** Seconds the base took when these features were computed (this run or the one that cached them). */
  extractSeconds: number;
  /** Images per second of that extraction. */
  imagesPerSecond: number;
}

/** What was recorded next to a cache file when it was written (the cache header has no timings). */
interface CacheNote {
  extractSeconds: number;
  count: number;
  createdAt: string;
}

async function readNote(path: string): Promise<CacheNote | undefined> {
  try {
    return JSON.parse(await Deno.readTextFile(`${path}.json`)) as CacheNote;
  } catch {
    return undefined;
  }
}

/** Options of `splitFeatures`. */
export interface SplitFeatureOptions {
  /** Base model name in the cache key, e.g. "vgg16". */
  model: string;
  /** `imagenetBase(...).weightsKey`: the weights' md5 or `random:<seed>`. */
  weightsKey: string;
  mode: PreprocessMode;
  /** "train" or "test" (part of the cache key and of the progress line). */
  split: string;
  /** Images per forward pass; default 64. */
  batchSize?: number;
  cacheDir?: string;
  /** Live progress line; default true. */
  progress?: boolean;
}

/**
 * Features of every image of `data` from the frozen `base` (in inference mode), via the disk cache:
 * images go through the study's transform (pad to 32, /255, 3 channels), then `preprocessInput`
 * with `mode`. The cache key names the base, its weights, the preprocessing, the split and a
 * fingerprint of the exact images and labels, so any change recomputes.
 */
export async function splitFeatures(
  base: tf.LayersModel,
  data: MnistSplit,
  opts: SplitFeatureOptions,
): Promise<FeatureSplit> {
  const px = data.rows * data.cols;
  const labels = data.labels.slice(0, data.count);
  const key = {
    model: opts.model,
    weights: opts.weightsKey,
    preprocessing: opts.mode,
    data: fingerprint(data.images.subarray(0, data.count * px), labels),
    split: opts.split,
    input: "study-pad32-rgb",
  };
  const live = new LiveText(opts.progress === false);
  const t0 = performance.now();
  let shown = 0;
  // extractFeatures does not await onBatch: chain the updates so they arrive in order.
  let pending = Promise.resolve();
  const set = await extractFeatures({
    base,
    key,
    count: data.count,
    batchSize: opts.batchSize,
    cacheDir: opts.cacheDir,
    makeBatch: (start, end) => {
      const { x, y } = makeBatch(data, range(start, end), RGB32);
      y.dispose();
      try {
        return preprocessInput(x, opts.mode);
      } finally {
        x.dispose();
      }
    },
    onBatch: (done, count) => {
      const now = performance.now();
      if (opts.progress === false || (now - shown < 1000 && done < count)) return;
      shown = now;
      const rate = done / ((now - t0) / 1000);
      const text =
        `${opts.model} ${opts.split} (${opts.mode}) ${
          progressBar(done / count)
        } ${done}/${count}  ` +
        `${rate.toFixed(0)} images/s  ETA ${((count - done) / rate).toFixed(0)} s`;
      pending = pending.then(() => live.update(text));
    },
  });
  await pending;
  let extractSeconds = set.seconds;
  if (set.hit) {
    const note = await readNote(set.path);
    extractSeconds = note?.count === data.count ? note.extractSeconds : NaN;
  } else {
    const note: CacheNote = {
      extractSeconds: set.seconds,
      count: data.count,
      createdAt: new Date().toISOString(),
    };
    await Deno.writeTextFile(`${set.path}.json`, JSON.stringify(note) + "\n");
  }
  const line = set.hit
    ? `${opts.model} ${opts.split} (${opts.mode}): ${data.count} feature rows read from the cache ` +
      `in ${set.seconds.toFixed(2)} s`
    : `${opts.model} ${opts.split} (${opts.mode}): base ran over ${data.count} images in ` +
      `${set.seconds.toFixed(1)} s (${(data.count / set.seconds).toFixed(0)} images/s), cached`;
  await live.update(line);
  return {
    ...set,
    split: opts.split,
    mode: opts.mode,
    labels,
    count: data.count,
    extractSeconds,
    imagesPerSecond: data.count / extractSeconds,
  };
}

/** Rows `indices` of a feature split as a batch: x [n, ...feature shape], y float32 labels [n]. */
export function featureBatch(
  data: { features: Float32Array; shape: number[]; labels: Uint8Array },
  indices: ArrayLike<number>,
): { x: tf.Tensor; y: tf.Tensor1D } {
  const per = data.shape.slice(1).reduce((a, b) => a * b, 1);
  const rows = new Float32Array(indices.length * per);
  const labels = new Float32Array(indices.length);
  for (let i = 0; i < indices.length; i++) {
    const r = indices[i];
    rows.set(data.features.subarray(r * per, (r + 1) * per), i * per);
    labels[i] = data.labels[r];
  }
  return { x: tf.tensor(rows, [indices.length, ...data.shape.slice(1)]), y: tf.tensor1d(labels) };
}

/** Head layers after Flatten, as the study declares them. */
export type HeadLayer =
  | { dense: number; activation: "relu" | "softmax" }
  | { dropout: number };

/** The study's VGG16 head: Flatten → Dense(4096, relu) → Dropout(0.2) → Dense(1000, relu) → Dense(10, softmax). */
export const VGG16_HEAD: HeadLayer[] = [
  { dense: 4096, activation: "relu" },
  { dropout: 0.2 },
  { dense: 1000, activation: "relu" },
  { dense: 10, activation: "softmax" },
];

/** The study's ResNet152V2 head: Flatten → Dense(10, softmax). */
export const RESNET152V2_HEAD: HeadLayer[] = [{ dense: 10, activation: "softmax" }];

/**
 * A head that takes the base's feature shape (e.g. 1×1×512): Flatten then `layers`, with Keras's
 * default names (flatten, dense, dense_1, …) and initialisers, compiled as the study compiles
 * (Adam, sparse categorical cross-entropy, accuracy).
 */
export function buildHead(
  featureShape: number[],
  layers: HeadLayer[],
  opts: { seed?: number; learningRate?: number; name?: string } = {},
): tf.LayersModel {
  const init = glorot(opts.seed);
  const input = tf.input({ shape: featureShape, name: "features" });
  let x = tf.layers.flatten({ name: "flatten" }).apply(input) as tf.SymbolicTensor;
  let dense = 0, dropout = 0;
  const suffix = (n: number) => (n === 0 ? "" : `_${n}`);
  for (const l of layers) {
    const layer = "dense" in l
      ? tf.layers.dense({
        units: l.dense,
        activation: l.activation,
        kernelInitializer: init(),
        name: `dense${suffix(dense++)}`,
      })
      : tf.layers.dropout({ rate: l.dropout, name: `dropout${suffix(dropout++)}` });
    x = layer.apply(x) as tf.SymbolicTensor;
  }
  return compileStudy(tf.model({ inputs: input, outputs: x, name: opts.name ?? "head" }), opts);
}

/** Options of `fitFeatures`: the settings of lib/train.ts's `fit` that a head needs. */
export interface FitFeatureOptions {
  epochs: number;
  batchSize: number;
  /** Fixes the shuffle order and dropout masks. */
  seed?: number;
  /** "stop" (default) ends a diverged run; "warn" records it and trains on; "off" skips the check. */
  divergence?: "stop" | "warn" | "off";
  /** Live progress line; default true. */
  progress?: boolean;
  /** Label of the progress line, e.g. "head (study)". */
  label?: string;
}

/**
 * Trains `head` on cached features as Keras's `fit` would train the frozen model: shuffled batches
 * every epoch, per-epoch mean loss and accuracy, the divergence guard. Returns a `FitResult`.
 */
export function fitFeatures(
  head: tf.LayersModel,
  train: Pick<FeatureSplit, "features" | "shape" | "labels" | "count">,
  opts: FitFeatureOptions,
): Promise<FitResult> {
  return fitSource(head, featureSource(train), opts);
}

/** Cached features as a batch source for `fitSource` / `evaluateSource`. */
function featureSource(
  data: Pick<FeatureSplit, "features" | "shape" | "labels" | "count">,
): BatchSource {
  return { count: data.count, batch: (idx) => featureBatch(data, idx) };
}

/** The head's loss, accuracy and predictions on a feature split (Keras's `evaluate`, on features). */
export function evaluateFeatures(
  head: tf.LayersModel,
  data: Pick<FeatureSplit, "features" | "shape" | "labels" | "count">,
  batchSize = 256,
): Promise<Evaluation> {
  return evaluateSource(head, featureSource(data), data.labels.slice(0, data.count), batchSize);
}

/** What the cache saved for one feature set: the base's cost once, a cache hit, every epoch. */
export interface CacheCost {
  features: string;
  images: number;
  /** Seconds the base took over these images (once). */
  extractSeconds: number;
  /** Seconds to read them back from the cache. */
  hitSeconds: number;
}

/**
 * The feature cache's saving as a table: per feature set, the base's one pass, a cache hit, and the
 * estimated cost of running the frozen base's forward pass every epoch instead (Keras's frozen-base
 * `fit`: `epochs` forward passes over the training images; the test set once either way).
 */
export function cacheSavingsFrame(rows: CacheCost[], epochs: number): pl.DataFrame {
  const perEpoch = rows.map((r) => (r.features.includes("train") ? epochs : 1));
  return pl.DataFrame([
    pl.Series("features", rows.map((r) => r.features), pl.Utf8),
    pl.Series("images", rows.map((r) => r.images), pl.Int64),
    pl.Series("base once (s)", rows.map((r) => r.extractSeconds), pl.Float64),
    pl.Series("cache hit (s)", rows.map((r) => r.hitSeconds), pl.Float64),
    pl.Series(
      "base every epoch, est. (s)",
      rows.map((r, i) => r.extractSeconds * perEpoch[i]),
      pl.Float64,
    ),
    pl.Series("passes saved", perEpoch.map((p) => p - 1), pl.Int32),
  ]);
}

/** Summary statistics of a feature set: how much of the base's output is zero, its scale. */
export function featureStats(set: Pick<FeatureSplit, "features" | "mode" | "split">): {
  mode: string;
  split: string;
  mean: number;
  std: number;
  zeroFraction: number;
  max: number;
} {
  const f = set.features;
  let sum = 0, sq = 0, zeros = 0, max = -Infinity;
  for (let i = 0; i < f.length; i++) {
    const v = f[i];
    sum += v;
    sq += v * v;
    if (v === 0) zeros++;
    if (v > max) max = v;
  }
  const mean = sum / f.length;
  return {
    mode: set.mode,
    split: set.split,
    mean,
    std: Math.sqrt(Math.max(0, sq / f.length - mean * mean)),
    zeroFraction: zeros / f.length,
    max,
  };
}

/**
 * Spatial size through a base: for each named stage (layers whose name starts with a prefix), the
 * output shape of its last layer and how many layers run at that size. Read from the model's
 * static shapes; nothing runs.
 */
export function stageShapes(model: tf.LayersModel, prefixes: string[]): pl.DataFrame {
  const rows = prefixes.map((p) => {
    const layers = model.layers.filter((l) => l.name.startsWith(p));
    const weighted = layers.filter((l) => l.countParams() > 0);
    const last = layers[layers.length - 1];
    const shape = (last?.outputShape ?? []) as (number | null)[];
    const first = layers[0]?.input;
    const inShape = (Array.isArray(first) ? first[0] : first)?.shape ?? [];
    return {
      stage: p,
      layers: layers.length,
      convolutions: weighted.filter((l) => l.getClassName() === "Conv2D").length,
      in: inShape.slice(1, 3).join("×"),
      out: shape.slice(1, 3).join("×"),
      channels: shape[3] ?? 0,
      parameters: weighted.reduce((s, l) => s + l.countParams(), 0),
    };
  });
  const col = <K extends keyof (typeof rows)[number]>(k: K) => rows.map((r) => r[k]);
  return pl.DataFrame([
    pl.Series("stage", col("stage"), pl.Utf8),
    pl.Series("layers", col("layers"), pl.Int32),
    pl.Series("convolutions", col("convolutions"), pl.Int32),
    pl.Series("spatial in", col("in"), pl.Utf8),
    pl.Series("spatial out", col("out"), pl.Utf8),
    pl.Series("channels", col("channels"), pl.Int32),
    pl.Series("parameters", col("parameters"), pl.Int64),
  ]);
}

/** Where to put the weight files so the notebook finds them, by base name. */
function weightsHelp(base: ImagenetBase, name: ImagenetName): string {
  const spec = KERAS_WEIGHTS[name];
  return [
    `> **⚠ ImageNet weights unavailable** — this notebook runs the same pipeline on a **randomly`,
    `> initialised, frozen ${name} base** (seed-fixed). Every table, chart and run record below is`,
    `> labelled *${RANDOM_FEATURES_LABEL}*; none of it is an ImageNet result.`,
    `>`,
    `> To get the real thing, make \`${spec.file}\` (${
      (spec.size / 1e6).toFixed(1)
    } MB, md5 \`${spec.md5}\`) available in one of these ways, then rerun:`,
    `> - Keras's cache: \`~/.keras/models/${spec.file}\` (where \`keras.applications.${
      name === "vgg16" ? "VGG16" : "ResNet152V2"
    }(weights="imagenet")\` leaves it; \`$KERAS_HOME/models/\` if set);`,
    `> - the project cache: \`data/weights/${spec.file}\`;`,
    `> - a network connection: the notebook downloads it from \`${
      weightsUrl(spec)
    }\` and checks the md5.`,
    `>`,
    `> Why it failed here: ${base.error?.attempts.map((a) => `\`${a}\``).join("; ") ?? "unknown"}`,
  ].join("\n");
}

/** The notebook's first output: a warning box when the base is random, else one line on its weights. */
export function weightsNotice(base: ImagenetBase, name: ImagenetName): Displayable {
  return base.weights === null ? markdown(weightsHelp(base, name)) : markdown(`✓ ${base.note}`);
}

/** "ImageNet features" or the random-features label, for tables, titles and run records. */
export function featuresLabel(base: ImagenetBase): string {
  return base.weights === null ? RANDOM_FEATURES_LABEL : "ImageNet features";
}

/** Train and test features of one preprocessing. */
export interface ModeFeatures {
  mode: PreprocessMode;
  train: FeatureSplit;
  test: FeatureSplit;
}

/**
 * Features of both splits for each preprocessing mode, then every set read once more from the
 * cache to time a hit; `costs` feeds `cacheSavingsFrame`.
 */
export async function featureSets(
  base: ImagenetBase,
  name: ImagenetName,
  splits: { train: MnistSplit; test: MnistSplit },
  modes: PreprocessMode[],
  opts: { batchSize?: number; cacheDir?: string; progress?: boolean } = {},
): Promise<{ sets: ModeFeatures[]; costs: CacheCost[] }> {
  const sets: ModeFeatures[] = [];
  const costs: CacheCost[] = [];
  for (const mode of modes) {
    const common = { ...opts, model: name, weightsKey: base.weightsKey, mode };
    const train = await splitFeatures(base.model, splits.train, { ...common, split: "train" });
    const test = await splitFeatures(base.model, splits.test, { ...common, split: "test" });
    sets.push({ mode, train, test });
  }
  for (const { mode, train, test } of sets) {
    for (const [set, data] of [[train, splits.train], [test, splits.test]] as const) {
      const hit = await splitFeatures(base.model, data, {
        ...opts,
        model: name,
        weightsKey: base.weightsKey,
        mode,
        split: set.split,
        progress: false,
      });
      costs.push({
        features: `${set.split} (${mode})`,
        images: set.count,
        extractSeconds: set.extractSeconds,
        hitSeconds: hit.seconds,
      });
    }
  }
  return { sets, costs };
}

/** One trained head per preprocessing mode. */
export interface HeadResult {
  mode: PreprocessMode;
  head: tf.LayersModel;
  fit: FitResult;
  evaluation: Evaluation;
  /** Base seconds for this mode's train and test features (when they were computed). */
  extractSeconds: number;
}

/** Trains a fresh head (same seed) on each mode's train features and evaluates it on its test features. */
export async function trainHeads(
  sets: ModeFeatures[],
  layers: HeadLayer[],
  opts: { epochs: number; batchSize: number; seed: number; name?: string },
): Promise<HeadResult[]> {
  const out: HeadResult[] = [];
  for (const { mode, train, test } of sets) {
    const head = buildHead(train.shape.slice(1), layers, { seed: opts.seed, name: opts.name });
    const fit = await fitFeatures(head, train, { ...opts, label: `head (${mode})` });
    const evaluation = await evaluateFeatures(head, test);
    out.push({
      mode,
      head,
      fit,
      evaluation,
      extractSeconds: train.extractSeconds + test.extractSeconds,
    });
  }
  return out;
}

/** The preprocessing comparison: one row per mode, test metrics and what each step cost. */
export function preprocessingFrame(results: HeadResult[], label: string): pl.DataFrame {
  const described: Record<string, string> = {
    study: "study: x/255 in [0, 1] (what the study fed)",
    caffe: "caffe: BGR, ×255 minus ImageNet means (Keras VGG16)",
    tf: "tf: x/127.5 − 1 in [−1, 1] (Keras ResNetV2)",
  };
  return pl.DataFrame([
    pl.Series("preprocessing", results.map((r) => described[r.mode] ?? r.mode), pl.Utf8),
    pl.Series("features", results.map(() => label), pl.Utf8),
    pl.Series("test_accuracy", results.map((r) => r.evaluation.accuracy), pl.Float64),
    pl.Series("test_loss", results.map((r) => r.evaluation.loss), pl.Float64),
    pl.Series("final_train_loss", results.map((r) => lastOf(r.fit.history, "loss")), pl.Float64),
    pl.Series("epochs", results.map((r) => r.fit.epochsRun), pl.Int32),
    pl.Series("extract_s", results.map((r) => r.extractSeconds), pl.Float64),
    pl.Series("head_train_s", results.map((r) => r.fit.seconds), pl.Float64),
  ]);
}

function lastOf(df: pl.DataFrame, column: string): number {
  const values = df.getColumn(column).toArray() as number[];
  return values[values.length - 1] ?? NaN;
}

/** Loss and accuracy per epoch of each mode's head, one line per preprocessing. */
export function preprocessingCurves(results: HeadResult[], title: string): Promise<Chart> {
  const values = results.flatMap((r) =>
    (r.fit.history.toRecords() as Record<string, number>[]).flatMap((row) =>
      ["loss", "accuracy"].map((metric) => ({
        epoch: row.epoch,
        metric,
        preprocessing: r.mode,
        value: row[metric],
      }))
    )
  );
  return metricCurvesChart(values, title, { color: "preprocessing" });
}

/** Feature statistics of each mode's training features, as a table. */
export function featureStatsFrame(sets: ModeFeatures[]): pl.DataFrame {
  return pl.DataFrame(sets.map((s) => featureStats(s.train)));
}

/**
 * How far the base's output moves when its BatchNorm layers run in training mode (batch
 * statistics, what tfjs's `fit` does even in a frozen base) instead of inference mode (moving
 * statistics, what Keras does for a frozen base and what the feature cache uses): ‖train − infer‖ / ‖infer‖.
 */
export async function batchNormModeGap(base: tf.LayersModel, x: tf.Tensor4D): Promise<number> {
  const ratio = tf.tidy(() => {
    const infer = base.predict(x) as tf.Tensor;
    const train = base.apply(x, { training: true }) as tf.Tensor;
    return tf.div(tf.norm(tf.sub(train, infer)), tf.maximum(tf.norm(infer), 1e-12));
  });
  const [value] = await ratio.data();
  ratio.dispose();
  return value;
}

/**
 * The transfer-learning pipeline of notebooks 05 and 06: the frozen base runs once per split and
 * preprocessing (features cached on disk by lib/transfer/features.ts), then the head trains on the cached
 * features for all its epochs. `fitFeatures` and `evaluateFeatures` return the same `FitResult`
 * and `Evaluation` as lib/train/ does, so run records and interpretation work unchanged. What the
 * notebooks show of it (notices, tables, curves) is in lib/transfer/transfer_report.ts.
 */
import * as tf from "@tensorflow/tfjs";
import { LiveText } from "../report/display.ts";
import {
  cacheReadSeconds,
  extractFeatures,
  type FeatureSet,
  fingerprint,
  preprocessInput,
  type PreprocessMode,
} from "./features.ts";
import type { MnistSplit } from "../data/mnist.ts";
import { buildHead, type HeadLayer } from "../models/heads.ts";
import { makeBatch, range, RGB32 } from "../data/preprocess.ts";
import { type BackupOptions, type FitResult, fitSource, progressBar } from "../train/train.ts";
import { type BatchSource, evaluateSource, type Evaluation } from "../train/evaluate.ts";
import type { ImagenetBase, ImagenetName } from "./weights.ts";
import { reporterFor } from "../train/progress.ts";
import type { Profile } from "../study/profile.ts";
import { cachedRun, type CachedRunOptions, type RunOutcome } from "../runs/run_cache.ts";
import { kerasAdam, type RunKeyParts } from "../runs/run_key.ts";
import type { TransferFacts } from "../runs/runs.ts";

/** A split's features from a frozen base, with its labels. */
export interface FeatureSplit extends FeatureSet {
  /** "train" or "test". */
  split: string;
  mode: PreprocessMode;
  labels: Uint8Array;
  count: number;
  /** Images per second of the base's pass that computed these features (`extractSeconds`). */
  imagesPerSecond: number;
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
    imagesPerSecond: data.count / set.extractSeconds,
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

/** Options of `fitFeatures`: the settings of lib/train/train.ts's `fit` that a head needs. */
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
  /** Per-epoch backups, so an interrupted head resumes. */
  backup?: BackupOptions;
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

/** What the cache saved for one feature set: the base's cost once, a cache hit, every epoch. */
export interface CacheCost {
  features: string;
  images: number;
  /** Seconds the base took over these images (once). */
  extractSeconds: number;
  /** Seconds to read them back from the cache. */
  hitSeconds: number;
}

/** Options of `transferRun`: one head on one preprocessing of one frozen base. */
export interface TransferRunOptions extends CachedRunOptions {
  name: ImagenetName;
  base: ImagenetBase;
  head: HeadLayer[];
  /** The head's model and record name, e.g. "vgg16_imagenet_head". */
  headName: string;
  section: string;
  mode: PreprocessMode;
  splits: { train: MnistSplit; test: MnistSplit };
  profile: Profile;
  backend: { name: string; device: string; why: string; precision: string };
  seed: number;
  epochs: number;
  batchSize: number;
  /** A caveat for tables and the record, e.g. the random-features label. */
  label?: string;
  /** Images per forward pass of the base. */
  extractBatchSize?: number;
  cacheDir?: string;
  progress?: boolean;
}

/** What a transfer run's key needs: the data only by size, the base only by its weights. */
export type TransferKeyOptions =
  & Pick<
    TransferRunOptions,
    "name" | "head" | "headName" | "mode" | "profile" | "backend" | "seed" | "epochs" | "batchSize"
  >
  & { splits: { train: { count: number }; test: { count: number } }; base: { weightsKey: string } };

/** The key parts of a transfer head's run: the head, its training, its features and the base's weights. */
export function transferKeyParts(o: TransferKeyOptions): RunKeyParts {
  return {
    model: { builder: o.headName, options: { head: o.head } },
    training: {
      epochs: o.epochs,
      batchSize: o.batchSize,
      optimizer: kerasAdam(),
      loss: "logits",
      earlyStopping: null,
      validation: null,
      onDivergence: "stop",
    },
    data: {
      profile: o.profile.name,
      trainSamples: o.splits.train.count,
      testSamples: o.splits.test.count,
      input: `features: ${o.name} base, ${o.mode} preprocessing`,
    },
    seed: o.seed,
    weights: o.base.weightsKey,
    backend: o.backend.name as RunKeyParts["backend"],
    precision: o.backend.precision as RunKeyParts["precision"],
  };
}

/**
 * One head's run on one preprocessing, computed once: an existing record with the same key
 * (head, training, data, base weights, backend) is used without touching the base; otherwise
 * the base's features come from the feature cache (or one pass of the base), the head trains
 * with per-epoch backups, and the record keeps what the notebook shows of the extraction:
 * timings, feature shape and statistics.
 */
export function transferRun(o: TransferRunOptions): Promise<RunOutcome> {
  const parts = transferKeyParts(o);
  return cachedRun({
    modelName: o.mode === "study" ? o.headName : `${o.headName}_${o.mode}`,
    section: o.section,
    keyParts: parts,
    profile: o.profile,
    backend: o.backend,
    weightsSource: o.base.weights
      ? `${o.base.weights.source}: ${o.base.weights.path.split("/").pop()}`
      : `random init (seed ${o.seed})`,
    label: o.label,
  }, async (backup) => {
    const common = {
      model: o.name,
      weightsKey: o.base.weightsKey,
      mode: o.mode,
      batchSize: o.extractBatchSize,
      cacheDir: o.cacheDir,
      progress: o.progress,
    };
    const train = await splitFeatures(o.base.model, o.splits.train, { ...common, split: "train" });
    const test = await splitFeatures(o.base.model, o.splits.test, { ...common, split: "test" });
    const head = buildHead(train.shape.slice(1), o.head, { seed: o.seed, name: o.headName });
    const fit = await fitFeatures(head, train, {
      epochs: o.epochs,
      batchSize: o.batchSize,
      seed: o.seed,
      label: `head (${o.mode})`,
      progress: o.progress,
      backup,
    });
    const evaluation = await evaluateFeatures(head, test);
    const readSeconds = async (set: FeatureSplit) =>
      set.hit ? set.seconds : await cacheReadSeconds(set.path);
    const transfer: TransferFacts = {
      baseParameters: o.base.model.countParams(),
      extractSeconds: train.extractSeconds + test.extractSeconds,
      cacheReadSeconds: (train.hit ? train.seconds : 0) + (test.hit ? test.seconds : 0),
      features: train.hit && test.hit ? "feature cache" : "extracted",
      preprocessing: o.mode,
      featureShape: train.shape.slice(1),
      splits: await Promise.all([train, test].map(async (set) => ({
        split: set.split,
        images: set.count,
        extractSeconds: set.extractSeconds,
        readSeconds: await readSeconds(set),
      }))),
      featureStats: featureStats(train),
    };
    return { model: head, fit, evaluation, transfer };
  }, { log: (line) => reporterFor(o.progress).note(line), ...o });
}

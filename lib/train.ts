/**
 * Keras-style `fit` and `evaluate` over MNIST splits, with the study's settings and our
 * callbacks: live progress, EarlyStopping with Keras's semantics, and a divergence guard.
 * Batches are built one at a time from the uint8 images (preprocess.ts).
 */
import * as tf from "@tensorflow/tfjs";
import pl from "nodejs-polars";
import type { MnistSplit } from "./mnist.ts";
import { batches, type InputFormat, makeBatch, range, RGB32, rng, shuffled } from "./preprocess.ts";
import { LiveText } from "./display.ts";

/** Keras's `EarlyStopping(monitor, patience, min_delta)` in mode "min", as a pure state machine. */
export class EarlyStopping {
  best = Infinity;
  wait = 0;
  bestEpoch = -1;
  stoppedEpoch = -1;
  constructor(
    readonly monitor: "loss" | "val_loss" = "loss",
    readonly patience = 3,
    readonly minDelta = 0,
  ) {}

  /** Feeds one epoch's value (epochs from 0); returns true when training should stop. */
  update(epoch: number, value: number): boolean {
    // Keras counts the epoch first, then resets on improvement, and never stops after epoch 0.
    this.wait += 1;
    // Keras negates min_delta in "min" mode: an improvement must beat the best by min_delta.
    if (value + this.minDelta < this.best) {
      this.best = value;
      this.bestEpoch = epoch;
      this.wait = 0;
    }
    if (this.wait >= this.patience && epoch > 0) {
      this.stoppedEpoch = epoch;
      return true;
    }
    return false;
  }
}

/** What the divergence guard saw: where and why it judged the run broken. */
export interface Divergence {
  epoch: number;
  batch: number | null;
  loss: number;
  bestLoss: number;
  reason: string;
}

/**
 * Judges a loss value: a NaN/Inf loss is divergence, and so is an epoch loss that explodes
 * to `factor`× its best and at least 0.5 above it (a small loss doubling is noise, not collapse).
 */
export class DivergenceGuard {
  best = Infinity;
  /** Smoothed batch loss (exponential moving average over ~10 batches) and its lowest value. */
  #smooth: number | null = null;
  #bestSmooth = Infinity;
  #batches = 0;
  constructor(readonly factor = 5) {}

  /**
   * Judges one batch: NaN/Inf, or a smoothed batch loss that explodes to `factor`× its lowest
   * and at least 1.0 above it — a run can break inside its first epoch, before any epoch loss
   * exists to compare.
   */
  checkBatch(epoch: number, batch: number, loss: number): Divergence | null {
    if (!Number.isFinite(loss)) {
      return {
        epoch,
        batch,
        loss,
        bestLoss: this.best,
        reason: `loss became ${loss} at epoch ${epoch + 1}, batch ${batch + 1}`,
      };
    }
    this.#smooth = this.#smooth === null ? loss : 0.9 * this.#smooth + 0.1 * loss;
    // Judge only once the average has settled (10 batches) and has a low point to compare with.
    if (++this.#batches < 10) return null;
    const smooth = this.#smooth, low = this.#bestSmooth;
    this.#bestSmooth = Math.min(low, smooth);
    if (smooth > this.factor * low && smooth - low > 1.0) {
      return {
        epoch,
        batch,
        loss: smooth,
        bestLoss: low,
        reason: `the smoothed batch loss exploded to ${smooth.toFixed(3)} at epoch ${epoch + 1}, ` +
          `batch ${batch + 1} — ${(smooth / low).toFixed(1)}× its lowest (${low.toFixed(3)})`,
      };
    }
    return null;
  }

  checkEpoch(epoch: number, loss: number): Divergence | null {
    if (!Number.isFinite(loss)) {
      return {
        epoch,
        batch: null,
        loss,
        bestLoss: this.best,
        reason: `epoch ${epoch + 1} loss is ${loss}`,
      };
    }
    const exploded = loss > this.factor * this.best && loss - this.best > 0.5;
    const verdict = exploded
      ? {
        epoch,
        batch: null,
        loss,
        bestLoss: this.best,
        reason:
          `epoch ${epoch + 1} loss ${loss.toFixed(4)} exploded to ${
            (loss / this.best).toFixed(1)
          }× ` +
          `its best (${this.best.toFixed(4)})`,
      }
      : null;
    this.best = Math.min(this.best, loss);
    return verdict;
  }
}

export interface EpochLogs {
  epoch: number;
  loss: number;
  accuracy: number;
  val_loss?: number;
  val_accuracy?: number;
  seconds: number;
}

export interface FitOptions {
  epochs: number;
  batchSize: number;
  format?: InputFormat;
  /** Fixes the shuffle order of every epoch. */
  seed?: number;
  /** Evaluated after each epoch, as Keras's `validation_data`. */
  validation?: MnistSplit;
  earlyStopping?: { monitor?: "loss" | "val_loss"; patience: number; minDelta?: number };
  /** "stop" (default) ends a diverged run; "warn" records it and trains on; "off" skips the check. */
  divergence?: "stop" | "warn" | "off";
  /** Show a live progress line (notebook) or per-epoch log lines (terminal). Default true. */
  progress?: boolean;
  onEpochEnd?: (logs: EpochLogs, model: tf.LayersModel) => void | Promise<void>;
  onBatchEnd?: (epoch: number, batch: number, loss: number) => void | Promise<void>;
  /** Prefix of the progress line, e.g. "head (study)". */
  label?: string;
}

/** Where training batches come from: images through the study's transform, or cached features. */
export interface BatchSource {
  count: number;
  /** The model's inputs and labels for these sample indices (the caller disposes them). */
  batch(indices: Int32Array): { x: tf.Tensor; y: tf.Tensor };
}

/** `fit`'s options for any batch source: validation is a callback instead of a split. */
export type SourceFitOptions = Omit<FitOptions, "validation" | "format"> & {
  validate?: () => Promise<{ loss: number; accuracy: number }>;
};

export interface FitResult {
  history: pl.DataFrame;
  epochsRun: number;
  stoppedEarly: boolean;
  divergence: Divergence | null;
  seconds: number;
  samplesPerSecond: number;
}

/** A text progress bar, e.g. "████░░░░". */
export function progressBar(fraction: number, width = 24): string {
  const full = Math.round(fraction * width);
  return "█".repeat(full) + "░".repeat(width - full);
}

/**
 * Runs `fn` with `Math.random` drawn from a seeded PRNG. tfjs has no global seed: its unseeded
 * random ops (dropout masks) seed themselves from `Math.random`, so this makes them repeat.
 */
export async function withSeededRandom<T>(
  seed: number | undefined,
  fn: () => Promise<T>,
): Promise<T> {
  if (seed === undefined) return await fn();
  const original = Math.random;
  Math.random = rng(seed ^ 0x5bd1e995);
  try {
    return await fn();
  } finally {
    Math.random = original;
  }
}

/**
 * Trains `model` on `train` as Keras's `fit` does: shuffled batches, per-epoch mean metrics.
 * With `seed`, the shuffles and dropout masks repeat exactly.
 */
export function fit(
  model: tf.LayersModel,
  train: MnistSplit,
  opts: FitOptions,
): Promise<FitResult> {
  const format = opts.format ?? RGB32;
  const { validation, ...rest } = opts;
  const batchSize = Math.max(opts.batchSize, 256);
  return fitSource(model, { count: train.count, batch: (idx) => makeBatch(train, idx, format) }, {
    ...rest,
    validate: validation ? () => evaluate(model, validation, { format, batchSize }) : undefined,
  });
}

/** `fit` over any batch source (e.g. cached features), with the same loop, callbacks and result. */
export function fitSource(
  model: tf.LayersModel,
  train: BatchSource,
  opts: SourceFitOptions,
): Promise<FitResult> {
  return withSeededRandom(opts.seed, () => fitLoop(model, train, opts));
}

async function fitLoop(
  model: tf.LayersModel,
  train: BatchSource,
  opts: SourceFitOptions,
): Promise<FitResult> {
  const label = opts.label ? `${opts.label} ` : "";
  const random = rng(opts.seed ?? Math.floor(Math.random() * 2 ** 31));
  const stopper = opts.earlyStopping
    ? new EarlyStopping(
      opts.earlyStopping.monitor,
      opts.earlyStopping.patience,
      opts.earlyStopping.minDelta,
    )
    : null;
  const guardMode = opts.divergence ?? "stop";
  const guard = new DivergenceGuard();
  const live = new LiveText(opts.progress === false);
  const rows: EpochLogs[] = [];
  let divergence: Divergence | null = null;
  let stoppedEarly = false;
  let samples = 0;
  let batchSeconds = 0;
  const t0 = performance.now();

  for (let epoch = 0; epoch < opts.epochs; epoch++) {
    const e0 = performance.now();
    const order = batches(shuffled(train.count, random), opts.batchSize);
    let lossSum = 0, accSum = 0, seen = 0, lastShown = 0;
    let batchDivergence: Divergence | null = null;
    for (let b = 0; b < order.length; b++) {
      const { x, y } = train.batch(order[b]);
      const [loss, acc] = await model.trainOnBatch(x, y) as number[];
      tf.dispose([x, y]);
      const n = order[b].length;
      lossSum += loss * n;
      accSum += acc * n;
      seen += n;
      samples += n;
      await opts.onBatchEnd?.(epoch, b, loss);
      if (guardMode !== "off" && !batchDivergence) {
        batchDivergence = guard.checkBatch(epoch, b, loss);
        if (batchDivergence && guardMode === "stop") break;
      }
      const now = performance.now();
      if (opts.progress !== false && now - lastShown > 1000 && b < order.length - 1) {
        lastShown = now;
        const rate = seen / ((now - e0) / 1000);
        await live.update(
          `${label}epoch ${epoch + 1}/${opts.epochs} ${
            progressBar(seen / train.count)
          } ${seen}/${train.count}  ` +
            `loss ${(lossSum / seen).toFixed(4)}  acc ${(accSum / seen).toFixed(4)}  ` +
            `${rate.toFixed(0)} samples/s  ETA ${((train.count - seen) / rate).toFixed(0)} s`,
        );
      }
    }
    const logs: EpochLogs = {
      epoch: epoch + 1,
      loss: lossSum / seen,
      accuracy: accSum / seen,
      seconds: 0,
    };
    batchSeconds += (performance.now() - e0) / 1000;
    if (opts.validate) {
      const val = await opts.validate();
      logs.val_loss = val.loss;
      logs.val_accuracy = val.accuracy;
    }
    logs.seconds = (performance.now() - e0) / 1000;
    rows.push(logs);
    await opts.onEpochEnd?.(logs, model);
    if (opts.progress !== false) {
      const val = logs.val_loss === undefined
        ? ""
        : `  val_loss ${logs.val_loss.toFixed(4)}  val_acc ${logs.val_accuracy!.toFixed(4)}`;
      await live.update(
        `${label}epoch ${epoch + 1}/${opts.epochs} ${
          progressBar(1)
        } ${train.count}/${train.count}  loss ${logs.loss.toFixed(4)}  ` +
          `acc ${logs.accuracy.toFixed(4)}${val}  ${logs.seconds.toFixed(1)} s`,
      );
      // Keep each finished epoch's line; the next epoch gets a fresh live line.
      if (epoch < opts.epochs - 1) live.detach();
    }
    if (guardMode !== "off") {
      const verdict = batchDivergence ?? guard.checkEpoch(epoch, logs.loss);
      if (verdict && !divergence) {
        divergence = verdict;
        console.warn(`⚠ training diverged: ${verdict.reason}`);
      }
      if (verdict && guardMode === "stop") break;
    }
    if (stopper) {
      const value = stopper.monitor === "loss" ? logs.loss : logs.val_loss;
      if (value === undefined) {
        throw new Error("EarlyStopping monitors val_loss but no validation split was given");
      }
      if (stopper.update(epoch, value)) {
        stoppedEarly = true;
        break;
      }
    }
  }
  const seconds = (performance.now() - t0) / 1000;
  return {
    history: historyFrame(rows),
    epochsRun: rows.length,
    stoppedEarly,
    divergence,
    seconds,
    // Training throughput: batches only (the epoch seconds also include validation, as Keras's do).
    samplesPerSecond: samples / Math.max(batchSeconds, 1e-9),
  };
}

/** Per-epoch logs as a polars DataFrame (validation columns only when present). */
export function historyFrame(rows: EpochLogs[]): pl.DataFrame {
  const cols: Record<string, number[]> = {
    loss: rows.map((r) => r.loss),
    accuracy: rows.map((r) => r.accuracy),
  };
  if (rows.some((r) => r.val_loss !== undefined)) {
    cols.val_loss = rows.map((r) => r.val_loss ?? NaN);
    cols.val_accuracy = rows.map((r) => r.val_accuracy ?? NaN);
  }
  cols.seconds = rows.map((r) => r.seconds);
  const epoch = pl.Series("epoch", rows.map((r) => r.epoch), pl.Int32);
  return pl.DataFrame([
    epoch,
    ...Object.entries(cols).map(([k, v]) => pl.Series(k, v, pl.Float64)),
  ]);
}

export interface Evaluation {
  loss: number;
  accuracy: number;
  /** Softmax outputs, row-major [count, 10]. */
  probabilities: Float32Array;
  predicted: Uint8Array;
  labels: Uint8Array;
}

/** Keras clips probabilities to [ε, 1−ε] before the log; so do we, so the numbers agree. */
const EPSILON = 1e-7;

/** Loss, accuracy and predictions from softmax outputs, computed on the host. */
export function scorePredictions(
  probabilities: Float32Array,
  labels: Uint8Array,
  classes = 10,
): Evaluation {
  const n = labels.length;
  const predicted = new Uint8Array(n);
  let loss = 0, correct = 0;
  for (let i = 0; i < n; i++) {
    let best = 0;
    for (let c = 1; c < classes; c++) {
      if (probabilities[i * classes + c] > probabilities[i * classes + best]) best = c;
    }
    predicted[i] = best;
    if (best === labels[i]) correct++;
    const p = Math.min(Math.max(probabilities[i * classes + labels[i]], EPSILON), 1 - EPSILON);
    loss -= Math.log(p);
  }
  return { loss: loss / n, accuracy: correct / n, probabilities, predicted, labels };
}

/** Runs the model over a whole split in batches and scores it (Keras's `evaluate`, plus predictions). */
export function evaluate(
  model: tf.LayersModel,
  split: MnistSplit,
  opts: { format?: InputFormat; batchSize?: number } = {},
): Promise<Evaluation> {
  const format = opts.format ?? RGB32;
  const source = { count: split.count, batch: (idx: Int32Array) => makeBatch(split, idx, format) };
  return evaluateSource(model, source, split.labels.slice(0, split.count), opts.batchSize);
}

/** `evaluate` over any batch source; `labels` are the source's labels in order. */
export async function evaluateSource(
  model: tf.LayersModel,
  source: BatchSource,
  labels: Uint8Array,
  batchSize = 256,
): Promise<Evaluation> {
  const probabilities = new Float32Array(source.count * 10);
  for (const idx of batches(range(0, source.count), batchSize)) {
    const { x, y } = source.batch(idx);
    const out = model.predict(x) as tf.Tensor;
    probabilities.set(await out.data() as Float32Array, idx[0] * 10);
    tf.dispose([x, y, out]);
  }
  return scorePredictions(probabilities, labels);
}

/**
 * A learning-rate finder (Smith's range test, fastai's `lr_find`): from the model's current
 * weights, train with a learning rate rising exponentially from `startLr` to `endLr`, record
 * every step's loss and its smoothed value (fastai's debiased moving average), stop once the
 * smoothed loss exceeds `stopFactor`× its lowest, and put the weights and the optimizer back
 * exactly as they were. The curve gives two rates: where the loss falls fastest (steepest
 * descent) and where it turned up for good (divergence).
 *
 * Each step's loss is measured before that step's update (as Keras's `train_on_batch` and
 * fastai's recorder do), so the loss at point k+1 is the first to show what the rate of point k
 * did; the divergence rate is the rate of the step taken from the lowest point.
 */
import * as tf from "@tensorflow/tfjs";
import { type NamedTensor, readOptimizerState, writeOptimizerState } from "./optimizer_state.ts";
import { lossOf, trainStep } from "./loss.ts";
import { batches, rng, shuffled } from "../data/preprocess.ts";
import type { BatchSource } from "./evaluate.ts";

/** How the range test runs; defaults are fastai's `lr_find`. */
export interface LrFindSettings {
  /** First learning rate (fastai: 1e-7). */
  startLr: number;
  /** Last learning rate, reached at the last step (fastai: 10). */
  endLr: number;
  /** Steps from `startLr` to `endLr` (fastai: 100). */
  steps: number;
  batchSize: number;
  /** β of the debiased moving average of the loss (fastai: 0.98; 0 keeps the raw loss). */
  smoothing: number;
  /** Stop once the smoothed loss exceeds this multiple of its lowest value (fastai: 4). */
  stopFactor: number;
}

/** fastai's defaults, with the batch size left to the caller. */
export const FASTAI_LR_FIND: Omit<LrFindSettings, "batchSize"> = {
  startLr: 1e-7,
  endLr: 10,
  steps: 100,
  smoothing: 0.98,
  stopFactor: 4,
};

/** One step of the range test. */
export interface LrFindPoint {
  step: number;
  lr: number;
  /** The batch's loss before this step's update. */
  loss: number;
  /** The debiased moving average of the losses up to this step. */
  smoothed: number;
}

/** The finder's curve and what it reads from it. */
export interface LrFindResult {
  points: LrFindPoint[];
  /** The rate where the smoothed loss falls fastest per unit of ln(lr), or null (too few points). */
  steepestLr: number | null;
  /**
   * Where the loss left its floor for good: the rate of the last step taken from a point whose
   * smoothed loss was within `FLOOR_TOLERANCE` of the lowest, before it rose past `stopFactor`×
   * that low (or became NaN/∞); null when the test reached `endLr` without that. On a curve
   * with a sharp low this is the lowest point; on a flat one (a net that barely learns at small
   * rates), the end of the plateau rather than wherever noise put its minimum.
   */
  divergenceLr: number | null;
  /** The lowest smoothed loss and the rate of its point. */
  minLoss: number;
  minLossLr: number;
  /** Why it ended: "diverged" (the stop rule) or "end" (reached `endLr`). */
  ended: "diverged" | "end";
  seconds: number;
}

/** The rate at step `i` of an exponential sweep from `start` to `end` in `steps` steps. */
export function sweepRate(settings: Pick<LrFindSettings, "startLr" | "endLr" | "steps">) {
  const { startLr, endLr, steps } = settings;
  if (!(startLr > 0 && endLr > startLr && steps >= 2)) {
    throw new Error(
      `the learning-rate finder needs 0 < startLr < endLr and steps ≥ 2, got ` +
        `${startLr}, ${endLr}, ${steps}`,
    );
  }
  return (i: number) => startLr * (endLr / startLr) ** (i / (steps - 1));
}

/**
 * fastai's `AvgSmoothLoss`: v ← β·v + (1−β)·loss, reported as v / (1 − βᵗ) so the first values
 * are not pulled toward the zero the average starts from.
 */
export function smoothLosses(losses: number[], beta: number): number[] {
  let v = 0;
  return losses.map((l, i) => {
    v = beta * v + (1 - beta) * l;
    return beta === 0 ? l : v / (1 - beta ** (i + 1));
  });
}

/**
 * The steepest-descent rate: where the smoothed loss falls fastest per unit of ln(lr), among
 * the points up to the end of its floor, skipping the first tenth (fastai skips them too: the
 * average has not settled). Null without a falling stretch of three points there.
 */
export function steepestRate(points: LrFindPoint[]): number | null {
  if (points.length === 0) return null;
  const low = floorEnd(points);
  const from = Math.floor(points.length / 10);
  let best: number | null = null, bestSlope = 0;
  for (let k = from; k < low; k++) {
    const a = points[k], b = points[k + 1];
    const slope = (b.smoothed - a.smoothed) / (Math.log(b.lr) - Math.log(a.lr));
    if (slope < bestSlope) {
      bestSlope = slope;
      best = a.lr;
    }
  }
  return low - from >= 2 ? best : null;
}

/** How far above its lowest the smoothed loss may be and still count as on its floor. */
const FLOOR_TOLERANCE = 0.05;

/** Index of the lowest finite smoothed loss (the first on ties). */
function lowestPoint(points: LrFindPoint[]): number {
  let low = 0;
  points.forEach((p, k) => {
    if (Number.isFinite(p.smoothed) && !(p.smoothed >= points[low].smoothed)) low = k;
  });
  return low;
}

/** Index of the last point whose smoothed loss is within `FLOOR_TOLERANCE` of the lowest. */
export function floorEnd(points: LrFindPoint[]): number {
  const low = points[lowestPoint(points)].smoothed;
  let end = 0;
  points.forEach((p, k) => {
    if (p.smoothed <= low + FLOOR_TOLERANCE * Math.abs(low)) end = k;
  });
  return end;
}

/** Everything a range test changes: the weights, the optimizer's state and its rate. */
interface Snapshot {
  weights: tf.Tensor[];
  optimizer: NamedTensor[];
  learningRate: number;
}

interface OptimizerInternals {
  learningRate: number;
  setLearningRate?(lr: number): void;
  getClassName(): string;
}

function optimizerOf(model: tf.LayersModel): OptimizerInternals {
  const opt = model.optimizer as unknown as OptimizerInternals | undefined;
  if (!opt) throw new Error(`${model.name}: compile the model before running the finder`);
  return opt;
}

/**
 * Sets the optimizer's rate for the next step. SGD keeps its rate in a tensor made once (its
 * `setLearningRate` remakes it); Adam and the others read the field at every update.
 */
function setRate(opt: OptimizerInternals, lr: number): void {
  if (typeof opt.setLearningRate === "function") opt.setLearningRate(lr);
  else opt.learningRate = lr;
}

/** Host copies of a tensor (not shared buffers: the fused Adam updates weights in place). */
async function copyOf(t: tf.Tensor): Promise<tf.Tensor> {
  return tf.tensor(await t.data(), t.shape, t.dtype);
}

async function snapshot(model: tf.LayersModel): Promise<Snapshot> {
  const optimizer = (await readOptimizerState(model)).map((v) => ({
    name: v.name,
    tensor: tf.tensor(v.data, v.shape, v.dtype),
  }));
  const weights = await Promise.all(model.weights.map((w) => copyOf(w.read())));
  return { weights, optimizer, learningRate: optimizerOf(model).learningRate };
}

async function restore(model: tf.LayersModel, s: Snapshot): Promise<void> {
  model.setWeights(s.weights);
  // the weights now hold their own copies (in-place updates need that)
  tf.dispose(s.weights);
  // the moments the test created are disposed with the state it replaces
  await writeOptimizerState(model, s.optimizer);
  setRate(optimizerOf(model), s.learningRate);
}

/** The loss of one training step (before its update), with the model's own loss and optimizer. */
async function stepLoss(model: tf.LayersModel, x: tf.Tensor, y: tf.Tensor): Promise<number> {
  if (lossOf(model) === "logits") return (await trainStep(model, x, y))[0];
  const out = await model.trainOnBatch(x, y);
  return Array.isArray(out) ? out[0] : out;
}

/**
 * Runs the range test on `model` (compiled; its optimizer is the one tested) over batches of
 * `source` (reshuffled with `seed` each pass), then restores the model's weights and optimizer.
 * `onStep` sees each point as it is recorded (a progress line).
 */
export async function lrFind(
  model: tf.LayersModel,
  source: BatchSource,
  settings: LrFindSettings,
  opts: { seed?: number; onStep?: (p: LrFindPoint) => void | Promise<void> } = {},
): Promise<LrFindResult> {
  const rate = sweepRate(settings);
  if (!(settings.smoothing >= 0 && settings.smoothing < 1) || !(settings.stopFactor > 1)) {
    throw new Error(
      `the finder needs 0 ≤ smoothing < 1 and stopFactor > 1, got ${settings.smoothing}, ` +
        `${settings.stopFactor}`,
    );
  }
  const t0 = performance.now();
  const saved = await snapshot(model);
  const opt = optimizerOf(model);
  const random = rng(opts.seed ?? 42);
  const points: LrFindPoint[] = [];
  let order: Int32Array[] = [];
  let ended: LrFindResult["ended"] = "end";
  let v = 0, low = Infinity;
  try {
    for (let step = 0; step < settings.steps; step++) {
      if (order.length === 0) order = batches(shuffled(source.count, random), settings.batchSize);
      const lr = rate(step);
      setRate(opt, lr);
      const { x, y } = source.batch(order.shift()!);
      const loss = await stepLoss(model, x, y);
      tf.dispose([x, y]);
      const b = settings.smoothing;
      v = b * v + (1 - b) * loss;
      const smoothed = b === 0 ? loss : v / (1 - b ** (step + 1));
      const point = { step, lr, loss, smoothed };
      points.push(point);
      await opts.onStep?.(point);
      if (!Number.isFinite(smoothed) || smoothed > settings.stopFactor * low) {
        ended = "diverged";
        break;
      }
      low = Math.min(low, smoothed);
    }
  } finally {
    await restore(model, saved);
  }
  return readCurve(points, ended, (performance.now() - t0) / 1000);
}

/**
 * The rates a recorded curve gives (a record keeps the curve; what is read from it is
 * recomputed here, so the reading has one definition).
 */
export function readCurve(
  points: LrFindPoint[],
  ended: LrFindResult["ended"],
  seconds: number,
): LrFindResult {
  if (points.length === 0) throw new Error("a learning-rate finder curve needs at least one point");
  const lowest = lowestPoint(points);
  return {
    points,
    steepestLr: steepestRate(points),
    divergenceLr: ended === "diverged" ? points[floorEnd(points)].lr : null,
    minLoss: points[lowest].smoothed,
    minLossLr: points[lowest].lr,
    ended,
    seconds,
  };
}

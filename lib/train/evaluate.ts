/**
 * Keras-style `evaluate`: a model run over a whole split (or any batch source) in batches, its
 * outputs read back once and scored on the host — loss, accuracy, predictions and probabilities,
 * from softmax outputs or from logits (lib/train/loss.ts).
 */
import * as tf from "@tensorflow/tfjs";
import type { MnistSplit } from "../data/mnist.ts";
import { batches, type InputFormat, makeBatch, range, RGB32 } from "../data/preprocess.ts";
import { EPSILON, type LossKind, lossOf, scoringOutputs } from "./loss.ts";

/**
 * Where batches come from — images through the study's transform, or cached features — for
 * `evaluateSource` here and for the fit loop (lib/train/train.ts).
 */
export interface BatchSource {
  count: number;
  /** The model's inputs and labels for these sample indices (the caller disposes them). */
  batch(indices: Int32Array): { x: tf.Tensor; y: tf.Tensor };
}

export interface Evaluation {
  loss: number;
  accuracy: number;
  /** Softmax outputs, row-major [count, 10]. */
  probabilities: Float32Array;
  predicted: Uint8Array;
  labels: Uint8Array;
  /** The cross-entropy the loss was computed with (lib/train/loss.ts). */
  lossKind: LossKind;
}

/** Index of the largest of `classes` values starting at `offset` (the first on ties). */
export function argmaxAt(values: Float32Array, offset: number, classes: number): number {
  let best = 0;
  for (let c = 1; c < classes; c++) {
    if (values[offset + c] > values[offset + best]) best = c;
  }
  return best;
}

/**
 * Loss, accuracy and predictions from softmax outputs, computed on the host, with the
 * probabilities clipped to [ε, 1−ε] before the log as tfjs's and Keras's probability form does.
 */
export function scorePredictions(
  probabilities: Float32Array,
  labels: Uint8Array,
  classes = 10,
): Evaluation {
  const n = labels.length;
  const predicted = new Uint8Array(n);
  let loss = 0, correct = 0;
  for (let i = 0; i < n; i++) {
    predicted[i] = argmaxAt(probabilities, i * classes, classes);
    if (predicted[i] === labels[i]) correct++;
    const p = Math.min(Math.max(probabilities[i * classes + labels[i]], EPSILON), 1 - EPSILON);
    loss -= Math.log(p);
  }
  return {
    loss: loss / n,
    accuracy: correct / n,
    probabilities,
    predicted,
    labels,
    lossKind: "clipped",
  };
}

/**
 * Loss, accuracy, predictions and softmax probabilities from logits, in float64 on the host:
 * the loss is log-sum-exp(z) − z[label] (Keras's from-logits cross-entropy), which stays exact
 * however saturated the softmax is.
 */
export function scoreLogits(logits: Float32Array, labels: Uint8Array, classes = 10): Evaluation {
  const n = labels.length;
  const probabilities = new Float32Array(n * classes);
  const predicted = new Uint8Array(n);
  let loss = 0, correct = 0;
  for (let i = 0; i < n; i++) {
    const o = i * classes;
    predicted[i] = argmaxAt(logits, o, classes);
    if (predicted[i] === labels[i]) correct++;
    const max = logits[o + predicted[i]];
    let sum = 0;
    for (let c = 0; c < classes; c++) sum += Math.exp(logits[o + c] - max);
    for (let c = 0; c < classes; c++) probabilities[o + c] = Math.exp(logits[o + c] - max) / sum;
    loss += max + Math.log(sum) - logits[o + labels[i]];
  }
  return {
    loss: loss / n,
    accuracy: correct / n,
    probabilities,
    predicted,
    labels,
    lossKind: "logits",
  };
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
  // The outputs stay on the backend and are read once at the end: on a GPU a read per batch
  // would wait for each batch to finish before the next is queued.
  const parts: tf.Tensor[] = [];
  for (const idx of batches(range(0, source.count), batchSize)) {
    const { x, y } = source.batch(idx);
    parts.push(scoringOutputs(model, x));
    tf.dispose([x, y]);
  }
  const all = parts.length === 1 ? parts[0] : tf.concat(parts.length ? parts : [tf.zeros([0, 10])]);
  const outputs = await all.data() as Float32Array;
  tf.dispose([all, ...parts]);
  return lossOf(model) === "logits"
    ? scoreLogits(outputs, labels)
    : scorePredictions(outputs, labels);
}

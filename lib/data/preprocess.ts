/**
 * The study's transforms, applied per batch on the backend: pad 28→32 with zeros, scale to
 * [0,1], and repeat to 3 channels for the models that take RGB. Only one batch of float32
 * images exists at a time; the full 60,000×32×32×3 array (737 MB) is never built.
 */
import * as tf from "@tensorflow/tfjs";
import type { MnistSplit } from "./mnist.ts";

/** Input format of a model: side length after padding and number of channels. */
export interface InputFormat {
  size: number;
  channels: 1 | 3;
}

/** The format the study feeds the baseline and the ImageNet models. */
export const RGB32: InputFormat = { size: 32, channels: 3 };
/** The format the study feeds its VGG-style net. */
export const GRAY32: InputFormat = { size: 32, channels: 1 };

/**
 * The study's transform on a batch of raw pixels [n, 28, 28, 1] (values 0–255): zero-pad
 * symmetrically to `size`, divide by 255, repeat the channel `channels` times.
 */
export function studyTransform(raw: tf.Tensor4D, format: InputFormat = RGB32): tf.Tensor4D {
  return tf.tidy(() => {
    const [, h, w] = raw.shape;
    const top = Math.floor((format.size - h) / 2);
    const left = Math.floor((format.size - w) / 2);
    const padded = tf.pad(raw, [[0, 0], [top, format.size - h - top], [
      left,
      format.size - w - left,
    ], [
      0,
      0,
    ]]);
    const scaled = tf.div(padded, 255) as tf.Tensor4D;
    return format.channels === 1 ? scaled : tf.tile(scaled, [1, 1, 1, format.channels]);
  });
}

/** Copies the pixels of the given samples into one host buffer (uint8 → float32, no scaling). */
function gatherPixels(split: MnistSplit, indices: ArrayLike<number>): Float32Array {
  const px = split.rows * split.cols;
  const out = new Float32Array(indices.length * px);
  for (let i = 0; i < indices.length; i++) {
    const from = indices[i] * px;
    for (let p = 0; p < px; p++) out[i * px + p] = split.images[from + p];
  }
  return out;
}

/** A model-ready batch: images through the study's transform, labels as float32 [n]. */
export function makeBatch(
  split: MnistSplit,
  indices: ArrayLike<number>,
  format: InputFormat = RGB32,
): { x: tf.Tensor4D; y: tf.Tensor1D } {
  const pixels = gatherPixels(split, indices);
  const labels = Float32Array.from({ length: indices.length }, (_, i) => split.labels[indices[i]]);
  return tf.tidy(() => {
    const raw = tf.tensor4d(pixels, [indices.length, split.rows, split.cols, 1]);
    return { x: studyTransform(raw, format), y: tf.tensor1d(labels) };
  });
}

/** The indices start, start+1, …, end-1. */
export function range(start: number, end: number): Int32Array {
  return Int32Array.from({ length: Math.max(0, end - start) }, (_, i) => start + i);
}

/** A seeded random source whose position can be saved and restored (for resumable runs). */
export interface Rng {
  (): number;
  /** The generator's whole state: setting it back replays the same numbers. */
  state: number;
}

/** A small seedable PRNG (mulberry32): tfjs has no global seed, so shuffles use this. */
export function rng(seed: number): Rng {
  let a = seed >>> 0;
  const next = (() => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }) as Rng;
  Object.defineProperty(next, "state", {
    get: () => a,
    set: (v: number) => {
      a = v >>> 0;
    },
  });
  return next;
}

/** A Fisher–Yates permutation of 0…n-1 drawn from `random`. */
export function shuffled(n: number, random: () => number): Int32Array {
  const p = range(0, n);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [p[i], p[j]] = [p[j], p[i]];
  }
  return p;
}

/** Splits an index order into consecutive batches (the last one may be short, as in Keras). */
export function batches(order: Int32Array, batchSize: number): Int32Array[] {
  const out: Int32Array[] = [];
  for (let s = 0; s < order.length; s += batchSize) out.push(order.subarray(s, s + batchSize));
  return out;
}

/** The shape the study prints for a split after its transform, e.g. "(60000, 32, 32, 3) (60000,)". */
export function studyShapes(split: MnistSplit, format: InputFormat = RGB32): string {
  return `(${split.count}, ${format.size}, ${format.size}, ${format.channels}) (${split.count},)`;
}

/**
 * Transfer learning's one extra step: the pretrained base's input preprocessing, and a disk cache
 * of the frozen base's features so the head trains on them for all its epochs (the same result as
 * Keras's frozen-base `fit`, at a fraction of the cost: the base runs once).
 */
import * as tf from "@tensorflow/tfjs";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { REPO_ROOT } from "../machine/env.ts";
import { writeFileAtomic } from "../machine/atomic_write.ts";
import { inferenceGraph } from "./inference.ts";

/** Input preprocessing: Keras's "caffe" (VGG16), "tf" (ResNetV2), or "study" (none: x in [0, 1]). */
export type PreprocessMode = "caffe" | "tf" | "study";

/** ImageNet BGR channel means that Keras's "caffe" mode subtracts, in B, G, R order. */
export const CAFFE_MEAN_BGR = [103.939, 116.779, 123.68] as const;

/**
 * Maps the study's images (NHWC, values in [0, 1]) to what a pretrained base expects, as Keras's
 * `preprocess_input` does on [0, 255] RGB: "caffe" → ×255, RGB→BGR, minus the BGR means;
 * "tf" → ×255 / 127.5 − 1, i.e. [−1, 1]. Both repeat a 1-channel (grey) input to the 3 channels
 * the ImageNet bases take. "study" → unchanged (a new tensor, so the caller may dispose both).
 * Does not dispose `x`.
 */
export function preprocessInput(x: tf.Tensor4D, mode: PreprocessMode): tf.Tensor4D {
  return tf.tidy(() => {
    if (mode === "study") return x.clone();
    if (mode !== "caffe" && mode !== "tf") throw new Error(`unknown preprocessing mode "${mode}"`);
    const channels = x.shape[3];
    if (channels !== 1 && channels !== 3) {
      throw new Error(`${mode} preprocessing needs 1 or 3 channels, got ${channels}`);
    }
    const rgb = tf.mul(channels === 1 ? tf.tile(x, [1, 1, 1, 3]) : x, 255);
    if (mode === "tf") return tf.sub(tf.div(rgb, 127.5), 1) as tf.Tensor4D;
    const bgr = tf.reverse(rgb, -1);
    return tf.sub(bgr, tf.tensor1d(CAFFE_MEAN_BGR as unknown as number[])) as tf.Tensor4D;
  });
}

/** What identifies a feature set; any change is a cache miss. */
export interface FeatureKey {
  /** Base model name, e.g. "vgg16". */
  model: string;
  /** The weights: their md5, or `random:<seed>` for a random base. */
  weights: string;
  /** Preprocessing mode (and anything else about the input pipeline worth naming). */
  preprocessing: string;
  /** Fingerprint of the samples (see `fingerprint`). */
  data: string;
  /** Any further parts (input size, split name, …). */
  [part: string]: string | number;
}

/** Arguments of `extractFeatures`. */
export interface ExtractOptions {
  /** The frozen base; run in inference mode (BatchNorm uses its moving statistics). */
  base: tf.LayersModel;
  key: FeatureKey;
  /** Returns samples [start, end) as an NHWC batch, already preprocessed; disposed after use. */
  makeBatch: (start: number, end: number) => tf.Tensor4D | Promise<tf.Tensor4D>;
  count: number;
  /** Samples per forward pass; default 64. */
  batchSize?: number;
  /** Default `<repo>/data/cache`. */
  cacheDir?: string;
  /** Called after each batch with samples done and the total. */
  onBatch?: (done: number, count: number) => void;
}

/** Features of `count` samples, row-major with shape `[count, ...base output]`. */
export interface FeatureSet {
  features: Float32Array;
  shape: number[];
  /** True when read from the cache. */
  hit: boolean;
  /** Time taken (reading, or running the base and writing). */
  seconds: number;
  /**
   * Seconds the base took when these features were computed: this call's `seconds` on a miss, the
   * cache note's on a hit (NaN when the note is missing, e.g. a cache written before notes existed).
   */
  extractSeconds: number;
  /** The cache file. */
  path: string;
}

/** Default feature cache: `<repo>/data/cache` (found from this file, whatever the working directory). */
const FEATURE_CACHE_DIR = join(REPO_ROOT, "data", "cache");

const MAGIC = "TLFEAT1\n";
const VERSION = 1;

interface Header {
  version: number;
  key: Record<string, string | number>;
  shape: number[];
  dtype: "float32";
  endian: "little";
}

/** A short stable hash of arrays, strings and numbers, e.g. the uint8 images and labels. */
export function fingerprint(...parts: (ArrayBufferView | string | number)[]): string {
  const hash = createHash("sha256");
  for (const p of parts) {
    if (typeof p === "string" || typeof p === "number") hash.update(`${typeof p}:${p};`);
    else {
      hash.update(`bytes:${p.byteLength};`);
      hash.update(new Uint8Array(p.buffer, p.byteOffset, p.byteLength));
    }
  }
  return hash.digest("hex").slice(0, 16);
}

/** The key as canonical JSON (sorted parts) so equal keys always hash alike. */
function canonical(key: Record<string, string | number>): string {
  return JSON.stringify(Object.fromEntries(Object.entries(key).sort(([a], [b]) => a < b ? -1 : 1)));
}

/** The cache file for a key (including the sample count). */
function featureCachePath(
  key: FeatureKey,
  count: number,
  cacheDir = FEATURE_CACHE_DIR,
): string {
  const full = canonical({ ...key, count });
  const id = createHash("sha256").update(full).digest("hex").slice(0, 16);
  return join(cacheDir, `${key.model.replace(/[^\w.-]/g, "_")}-${id}.features`);
}

/** Reads a cache file if it is complete and its header matches the key exactly; else undefined. */
async function readCache(path: string, key: Record<string, string | number>, shape: number[]) {
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw e;
  }
  const parsed = parseCache(bytes);
  if (!parsed) return undefined;
  const { header, features } = parsed;
  if (canonical(header.key) !== canonical(key) || !tf.util.arraysEqual(header.shape, shape)) {
    return undefined;
  }
  return features;
}

/** Header and features of a complete cache file's bytes (a view, no copy); undefined if it is not one. */
function parseCache(bytes: Uint8Array): { header: Header; features: Float32Array } | undefined {
  const magic = new TextDecoder().decode(bytes.subarray(0, MAGIC.length));
  if (magic !== MAGIC || bytes.length < MAGIC.length + 4) return undefined;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerLen = view.getUint32(MAGIC.length, true);
  const dataAt = MAGIC.length + 4 + headerLen;
  let header: Header;
  try {
    header = JSON.parse(new TextDecoder().decode(bytes.subarray(MAGIC.length + 4, dataAt)));
  } catch {
    return undefined;
  }
  const n = header.shape?.reduce((a, b) => a * b, 1);
  if (
    header.version !== VERSION || bytes.length !== dataAt + 4 * n ||
    (bytes.byteOffset + dataAt) % 4 !== 0
  ) return undefined;
  return { header, features: new Float32Array(bytes.buffer, bytes.byteOffset + dataAt, n) };
}

/**
 * Seconds to read a cache file back as a hit does (read and parse; the base never runs), e.g. to
 * show what a hit costs right after this run wrote the file.
 */
export async function cacheReadSeconds(path: string): Promise<number> {
  const t0 = performance.now();
  if (!parseCache(await Deno.readFile(path))) {
    throw new Error(`${path} is not a complete feature cache file`);
  }
  return (performance.now() - t0) / 1000;
}

/** What is recorded next to a cache file (`<file>.json`) when it is written: the header has no timings. */
interface CacheNote {
  extractSeconds: number;
  count: number;
  createdAt: string;
}

/** The base's seconds from the note next to a cache file of `count` samples; NaN if there is none. */
async function notedExtractSeconds(path: string, count: number): Promise<number> {
  try {
    const note = JSON.parse(await Deno.readTextFile(`${path}.json`)) as CacheNote;
    return note.count === count ? note.extractSeconds : NaN;
  } catch {
    return NaN;
  }
}

async function writeNote(path: string, note: CacheNote): Promise<void> {
  await writeFileAtomic(`${path}.json`, JSON.stringify(note) + "\n");
}

/** Writes header and features to a temporary file, then renames it into place (atomic). */
async function writeCache(path: string, header: Header, features: Float32Array): Promise<void> {
  const json = new TextEncoder().encode(JSON.stringify(header));
  // Pad the header with spaces so the float32 data starts 4-byte aligned (read back as a view, no copy).
  const pad = (4 - ((MAGIC.length + 4 + json.length) % 4)) % 4;
  const head = new Uint8Array(MAGIC.length + 4 + json.length + pad).fill(0x20);
  head.set(new TextEncoder().encode(MAGIC), 0);
  new DataView(head.buffer).setUint32(MAGIC.length, json.length + pad, true);
  head.set(json, MAGIC.length + 4);
  await writeFileAtomic(path, async (tmp) => {
    using file = await Deno.open(tmp, { write: true, createNew: true });
    for (
      const chunk of [
        head,
        new Uint8Array(features.buffer, features.byteOffset, features.byteLength),
      ]
    ) {
      for (let done = 0; done < chunk.length;) done += await file.write(chunk.subarray(done));
    }
  });
}

/**
 * Runs the frozen `base` once over `count` samples and caches the features as float32 on disk, or
 * reads them back when a cache file with exactly this key (and count) exists. A changed key part —
 * model, weights, preprocessing, data fingerprint, count — names another file, so it misses.
 */
export async function extractFeatures(opts: ExtractOptions): Promise<FeatureSet> {
  const t0 = performance.now();
  const { base, count } = opts;
  const batchSize = opts.batchSize ?? 64;
  const outShape = base.outputs[0].shape.slice(1);
  if (outShape.some((d) => d === null)) {
    throw new Error(`base output shape ${outShape} is not fully known`);
  }
  const shape = [count, ...(outShape as number[])];
  const key = { ...opts.key, count };
  const path = featureCachePath(opts.key, count, opts.cacheDir);
  const cached = await readCache(path, key, shape);
  if (cached) {
    const seconds = (performance.now() - t0) / 1000;
    const extractSeconds = await notedExtractSeconds(path, count);
    return { features: cached, shape, hit: true, seconds, extractSeconds, path };
  }

  const per = shape.slice(1).reduce((a, b) => a * b, 1);
  const features = new Float32Array(count * per);
  // the base's inference pass with BatchNorm, ReLU and padding folded (lib/transfer/inference.ts)
  const graph = await inferenceGraph(base);
  try {
    for (let start = 0; start < count; start += batchSize) {
      const end = Math.min(count, start + batchSize);
      const x = await opts.makeBatch(start, end);
      try {
        if (x.shape[0] !== end - start) {
          throw new Error(`makeBatch(${start}, ${end}) returned ${x.shape[0]} samples`);
        }
        const y = graph.run(x);
        try {
          features.set(await y.data() as Float32Array, start * per);
        } finally {
          y.dispose();
        }
      } finally {
        x.dispose();
      }
      opts.onBatch?.(end, count);
    }
  } finally {
    graph.dispose();
  }
  await writeCache(
    path,
    { version: VERSION, key, shape, dtype: "float32", endian: "little" },
    features,
  );
  const seconds = (performance.now() - t0) / 1000;
  await writeNote(path, { extractSeconds: seconds, count, createdAt: new Date().toISOString() });
  return { features, shape, hit: false, seconds, extractSeconds: seconds, path };
}

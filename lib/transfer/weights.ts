/**
 * Keras ImageNet weights: where they come from (a given path, Keras's own cache, the project cache,
 * or a checked download) and how they load into a tfjs model (by layer name, every shape checked).
 */
import * as tf from "@tensorflow/tfjs";
import { createHash } from "node:crypto";
import { homedir } from "node:os";
import { join } from "node:path";
import { envVar, REPO_ROOT } from "../machine/env.ts";
import { writeFileAtomic } from "../machine/atomic_write.ts";
import { type H5LayerInfo, withKerasH5 } from "./h5.ts";
import {
  buildVgg16Base,
  type ImagenetBaseOptions,
  VGG16_PREPROCESSING,
} from "../models/vgg16_imagenet.ts";
import { buildResNet152V2Base, RESNET152V2_PREPROCESSING } from "../models/resnet152v2.ts";

/** A weight file Keras downloads: its name, where it lives under the base URL, and its checks. */
export interface KerasWeightsSpec {
  /** File name, also the name in Keras's cache (`~/.keras/models/<file>`). */
  file: string;
  /** Folder under the base URL, e.g. "vgg16". */
  subdir: string;
  /** Size in bytes (a cheap first check of a cached file). */
  size?: number;
  /** md5 hex digest, as Keras's `get_file(file_hash=…)` checks it. */
  md5?: string;
}

/** The ImageNet weight files the study uses (from keras.applications; see shared reference). */
export const KERAS_WEIGHTS = {
  vgg16: {
    file: "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
    subdir: "vgg16",
    size: 58_889_256,
    md5: "6d6bbae143d832006294945121d1f1fc",
  },
  resnet152v2: {
    file: "resnet152v2_weights_tf_dim_ordering_tf_kernels_notop.h5",
    subdir: "resnet",
    size: 234_545_216,
    md5: "ed17cf2e0169df9d443503ef94b23b33",
  },
} as const satisfies Record<string, KerasWeightsSpec>;

/** Names of the bundled weight specs. */
export type ImagenetName = keyof typeof KERAS_WEIGHTS;

/** Keras's download root; override with the `baseUrl` option or `KERAS_WEIGHTS_BASE_URL`. */
const DEFAULT_BASE_URL = "https://storage.googleapis.com/tensorflow/keras-applications";

/**
 * A download progress callback that logs a line at every `step` of the total (default 10%),
 * so a notebook cell shows progress without thousands of lines.
 */
export function logProgress(label: string, step = 0.1): NonNullable<LocateOptions["onProgress"]> {
  let next = step;
  return (bytes, total) => {
    if (!total || bytes / total < next) return;
    while (bytes / total >= next) next += step;
    console.log(`${label}: ${(bytes / 1e6).toFixed(1)} of ${(total / 1e6).toFixed(1)} MB`);
  };
}

/** Where weights were found. */
export type WeightsSource = "path" | "keras-cache" | "project-cache" | "download";

/** The file that will be loaded and how it was obtained. */
export interface WeightsLocation {
  path: string;
  source: WeightsSource;
  /** md5 of the file as it is on disk (computed, not copied from the table). */
  md5: string;
  /** Whether the md5 equals Keras's published one (always true except for an explicit path). */
  verified: boolean;
}

/** Where to look and how to download. */
export interface LocateOptions {
  /** An explicit file: used as given (its md5 is reported, not enforced). */
  path?: string;
  /** Keras's home (default `$KERAS_HOME`, else `~/.keras`); its `models/` is Keras's cache. */
  kerasHome?: string;
  /** The project's cache folder (default `<repo>/data/weights`); downloads land here. */
  projectCache?: string;
  /** Download root (default `$KERAS_WEIGHTS_BASE_URL`, else Keras's). */
  baseUrl?: string;
  /** Set `false` to never download (offline runs). */
  download?: boolean;
  /** Download progress: bytes so far and the expected total (when known). */
  onProgress?: (bytes: number, total: number | undefined) => void;
  /** The fetch to use (default the global one). */
  fetch?: typeof fetch;
}

/** Weights could not be obtained from any source; `attempts` says what was tried and why each failed. */
export class WeightsUnavailableError extends Error {
  constructor(message: string, readonly attempts: string[], options?: { cause?: unknown }) {
    super(`${message}\n  - ${attempts.join("\n  - ")}`, options);
    this.name = "WeightsUnavailableError";
  }
}

/** A file's md5 (or size) is not the published one. */
export class WeightsChecksumError extends Error {
  constructor(
    readonly path: string,
    readonly expected: string,
    readonly actual: string,
    what = "md5",
  ) {
    super(`${what} mismatch for ${path}: expected ${expected}, got ${actual}`);
    this.name = "WeightsChecksumError";
  }
}

/** The file's layers do not fit the model; lists every problem found, nothing was assigned. */
export class WeightsMismatchError extends Error {
  constructor(
    label: string,
    readonly missing: string[],
    readonly unexpected: string[],
    readonly problems: string[],
  ) {
    const lines = [
      ...(missing.length
        ? [`model layers with weights missing from the file: ${missing.join(", ")}`]
        : []),
      ...(unexpected.length ? [`file layers not in the model: ${unexpected.join(", ")}`] : []),
      ...problems,
    ];
    super(`${label} does not fit the model:\n  - ${lines.join("\n  - ")}`);
    this.name = "WeightsMismatchError";
  }
}

/** Default project weight cache: `<repo>/data/weights`. */
export const PROJECT_WEIGHTS_DIR = join(REPO_ROOT, "data", "weights");

/** Keras's model cache folders to look in, as Keras resolves them (KERAS_HOME, ~/.keras, /tmp/.keras). */
export function kerasCacheDirs(kerasHome?: string): string[] {
  const home = kerasHome ?? envVar("KERAS_HOME");
  if (home) return [join(home, "models")];
  // Keras falls back to /tmp/.keras when ~/.keras is not writable.
  return [join(envVar("HOME") ?? homedir(), ".keras", "models"), join("/tmp", ".keras", "models")];
}

/** The URL Keras downloads a spec from, under `baseUrl` (option, env var, or Keras's). */
export function weightsUrl(spec: KerasWeightsSpec, baseUrl?: string): string {
  const base = (baseUrl ?? envVar("KERAS_WEIGHTS_BASE_URL") ?? DEFAULT_BASE_URL).replace(
    /\/+$/,
    "",
  );
  return `${base}/${spec.subdir}/${spec.file}`;
}

/** md5 hex digest of a file, streamed (234 MB takes about a second). */
export async function md5File(path: string): Promise<string> {
  const hash = createHash("md5");
  using file = await Deno.open(path, { read: true });
  for await (const chunk of file.readable) hash.update(chunk);
  return hash.digest("hex");
}

async function fileSize(path: string): Promise<number | undefined> {
  try {
    const st = await Deno.stat(path);
    return st.isFile ? st.size : undefined;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw e;
  }
}

/**
 * Checks a cached file against its spec: size first (cheap), then md5.
 * Returns the md5 when it matches, or why it does not.
 */
export async function checkFile(
  path: string,
  spec: KerasWeightsSpec,
): Promise<{ ok: true; md5: string } | { ok: false; reason: string }> {
  const size = await fileSize(path);
  if (size === undefined) return { ok: false, reason: `${path}: not there` };
  if (spec.size !== undefined && size !== spec.size) {
    return {
      ok: false,
      reason: `${path}: ${size} bytes, expected ${spec.size} (truncated or another file)`,
    };
  }
  const md5 = await md5File(path);
  if (spec.md5 !== undefined && md5 !== spec.md5) {
    return { ok: false, reason: `${path}: md5 ${md5}, expected ${spec.md5}` };
  }
  return { ok: true, md5 };
}

async function writeAll(file: Deno.FsFile, chunk: Uint8Array): Promise<void> {
  for (let done = 0; done < chunk.length;) done += await file.write(chunk.subarray(done));
}

/**
 * Downloads `url` to `dest`: streamed to a temporary file in the same folder, md5 (and length)
 * checked, then renamed into place, so `dest` only ever holds a complete, verified file. On any
 * failure (HTTP error, network error mid-stream, wrong length or md5) the temporary file is removed.
 */
async function downloadFile(
  url: string,
  dest: string,
  opts: {
    md5?: string;
    size?: number;
    onProgress?: LocateOptions["onProgress"];
    fetch?: typeof fetch;
  } = {},
): Promise<{ md5: string; bytes: number }> {
  return await writeFileAtomic(dest, async (tmp) => {
    const res = await (opts.fetch ?? fetch)(url);
    if (!res.ok || !res.body) {
      await res.body?.cancel();
      throw new Error(`HTTP ${res.status} ${res.statusText} from ${url}`);
    }
    const announced = Number(res.headers.get("content-length")) || undefined;
    const total = announced ?? opts.size;
    const hash = createHash("md5");
    let bytes = 0;
    {
      // Closed at the end of this block, also when the stream fails: the checks come after.
      using file = await Deno.open(tmp, { write: true, createNew: true });
      for await (const chunk of res.body) {
        hash.update(chunk);
        await writeAll(file, chunk);
        bytes += chunk.length;
        opts.onProgress?.(bytes, total);
      }
    }
    if (announced !== undefined && bytes !== announced) {
      throw new Error(`download of ${url} ended early: ${bytes} of ${announced} bytes`);
    }
    const md5 = hash.digest("hex");
    if (opts.md5 !== undefined && md5 !== opts.md5) {
      throw new WeightsChecksumError(url, opts.md5, md5);
    }
    if (opts.md5 === undefined && opts.size !== undefined && bytes !== opts.size) {
      throw new WeightsChecksumError(url, `${opts.size} bytes`, `${bytes} bytes`, "size");
    }
    return { md5, bytes };
  });
}

/**
 * Finds weights, in order: `opts.path`; Keras's cache; the project cache; a download into the
 * project cache. Cached files are checked (size, md5) and a bad one is skipped (Keras's cache,
 * which is not ours to touch) or deleted and replaced (the project cache). Throws
 * `WeightsUnavailableError` listing every attempt when none works (e.g. offline), so a caller can
 * fall back to a random base and say why.
 */
export async function locateWeights(
  which: ImagenetName | KerasWeightsSpec,
  opts: LocateOptions = {},
): Promise<WeightsLocation> {
  const spec: KerasWeightsSpec = typeof which === "string" ? KERAS_WEIGHTS[which] : which;
  const attempts: string[] = [];

  if (opts.path !== undefined) {
    if ((await fileSize(opts.path)) === undefined) {
      throw new WeightsUnavailableError(`weights file not found`, [`${opts.path}: not there`]);
    }
    const md5 = await md5File(opts.path);
    return {
      path: opts.path,
      source: "path",
      md5,
      verified: spec.md5 === undefined || md5 === spec.md5,
    };
  }

  for (const dir of kerasCacheDirs(opts.kerasHome)) {
    const path = join(dir, spec.file);
    const check = await checkFile(path, spec);
    if (check.ok) return { path, source: "keras-cache", md5: check.md5, verified: true };
    attempts.push(`Keras cache ${check.reason}`);
  }

  const projectPath = join(opts.projectCache ?? PROJECT_WEIGHTS_DIR, spec.file);
  const check = await checkFile(projectPath, spec);
  if (check.ok) {
    return { path: projectPath, source: "project-cache", md5: check.md5, verified: true };
  }
  attempts.push(`project cache ${check.reason}`);
  if ((await fileSize(projectPath)) !== undefined) {
    await Deno.remove(projectPath); // ours and wrong: never trust it again
    attempts.push(`project cache: removed the bad file`);
  }

  if (opts.download === false) {
    throw new WeightsUnavailableError(`${spec.file} is not cached and downloads are off`, attempts);
  }
  const url = weightsUrl(spec, opts.baseUrl);
  try {
    const { md5 } = await downloadFile(url, projectPath, {
      md5: spec.md5,
      size: spec.size,
      onProgress: opts.onProgress,
      fetch: opts.fetch,
    });
    return { path: projectPath, source: "download", md5, verified: true };
  } catch (e) {
    attempts.push(`download ${url}: ${(e as Error).message}`);
    throw new WeightsUnavailableError(`could not obtain ${spec.file}`, attempts, { cause: e });
  }
}

/** Layers of a model, descending into nested models, so a base inside a bigger model still loads. */
function leafLayers(model: tf.LayersModel): tf.layers.Layer[] {
  return model.layers.flatMap((l) => l instanceof tf.LayersModel ? leafLayers(l) : [l]);
}

// Keras 1 names (VGG16's file) → the Keras 2 / tfjs names; unknown names fall back to position.
const LEGACY: Record<string, string> = {
  W: "kernel",
  b: "bias",
  running_mean: "moving_mean",
  running_std: "moving_variance",
};

/** The role of a stored weight (`kernel`, `bias`, `gamma`, …) from its name, or undefined. */
export function weightRole(name: string, layer: string): string | undefined {
  let base = name.replace(/:\d+$/, "");
  base = base.slice(base.lastIndexOf("/") + 1);
  if (base.startsWith(`${layer}_`)) base = base.slice(layer.length + 1);
  const role = base.replace(/_\d+$/, "");
  const known = ["kernel", "bias", "gamma", "beta", "moving_mean", "moving_variance"];
  if (known.includes(role)) return role;
  return LEGACY[role];
}

/** What `loadKerasWeights` assigned. */
export interface LoadReport {
  /** Layers that received weights. */
  layers: number;
  /** Tensors assigned. */
  tensors: number;
  /** Values assigned (the model's parameter count when everything loads). */
  params: number;
}

/**
 * Loads a Keras `.h5` weight file into `model` by layer name: for each file layer with weights,
 * `layer.setWeights` in Keras order (kernel, bias; BN gamma, beta, moving_mean, moving_variance).
 * Everything is checked before anything is assigned — missing and unexpected layers, weight counts,
 * roles and shapes — and all problems are reported together in a `WeightsMismatchError`.
 * Layers without weights in either the file or the model (pools, pads, activations) are ignored.
 */
export async function loadKerasWeights(
  model: tf.LayersModel,
  src: string | Uint8Array,
): Promise<LoadReport> {
  const label = typeof src === "string" ? src : "weight bytes";
  return await withKerasH5(src, (file) => {
    const infos = file.infos().filter((i) => i.weightNames.length > 0);
    const layers = new Map(
      leafLayers(model).filter((l) => l.weights.length > 0).map((l) => [l.name, l]),
    );
    const inFile = new Set(infos.map((i) => i.name));
    const missing = [...layers.keys()].filter((n) => !inFile.has(n));
    const unexpected = infos.map((i) => i.name).filter((n) => !layers.has(n));
    const problems: string[] = [];
    const plan: [tf.layers.Layer, H5LayerInfo][] = [];
    for (const info of infos) {
      const layer = layers.get(info.name);
      if (!layer) continue;
      const vars = layer.weights;
      if (vars.length !== info.weightNames.length) {
        problems.push(
          `${info.name}: file has ${info.weightNames.length} weights (${
            info.weightNames.join(", ")
          }), ` +
            `model has ${vars.length}`,
        );
        continue;
      }
      vars.forEach((v, i) => {
        const fileRole = weightRole(info.weightNames[i], info.name);
        const modelRole = weightRole(v.originalName ?? v.name, layer.name);
        if (fileRole && modelRole && fileRole !== modelRole) {
          problems.push(
            `${info.name}: weight ${i} is ${
              info.weightNames[i]
            } in the file but ${modelRole} in the model`,
          );
        }
        if (!tf.util.arraysEqual(v.shape as number[], info.shapes[i])) {
          problems.push(
            `${info.name}: ${info.weightNames[i]} has shape [${
              info.shapes[i]
            }], model expects [${v.shape}]`,
          );
        }
      });
      plan.push([layer, info]);
    }
    if (missing.length || unexpected.length || problems.length) {
      throw new WeightsMismatchError(label, missing, unexpected, problems);
    }
    let tensors = 0, params = 0;
    for (const [layer, info] of plan) {
      // Read one layer at a time so only one layer's arrays are held besides the model.
      const values = file.read(info.name).map((w) => tf.tensor(w.data, w.shape, "float32"));
      try {
        layer.setWeights(values);
      } finally {
        tf.dispose(values);
      }
      tensors += values.length;
      params += values.reduce((a, t) => a + t.size, 0);
    }
    return { layers: plan.length, tensors, params };
  }, label);
}

/** A base model with ImageNet weights, or a random one when the weights cannot be had. */
export interface ImagenetBase {
  model: tf.LayersModel;
  /** Where the weights came from; null when the base is random. */
  weights: WeightsLocation | null;
  /** Identifies the weights in cache keys: their md5, or `random:<seed>`. */
  weightsKey: string;
  /** The input preprocessing these weights expect (`preprocessInput` mode). */
  preprocessing: "caffe" | "tf";
  /** One line for the notebook: what was loaded, or why the base is random. */
  note: string;
  /** Why the weights were unavailable, when they were. */
  error?: WeightsUnavailableError;
}

/**
 * Builds Keras's VGG16 or ResNet152V2 base and loads its ImageNet weights (see `locateWeights`).
 * When they cannot be obtained, the base keeps its (seeded) random initialisation and `note` says so;
 * any other error (a file that does not fit) is thrown.
 */
export async function imagenetBase(
  name: ImagenetName,
  opts: ImagenetBaseOptions & LocateOptions = {},
): Promise<ImagenetBase> {
  const model = name === "vgg16" ? buildVgg16Base(opts) : buildResNet152V2Base(opts);
  const preprocessing = name === "vgg16" ? VGG16_PREPROCESSING : RESNET152V2_PREPROCESSING;
  try {
    const weights = await locateWeights(name, opts);
    const t0 = performance.now();
    const report = await loadKerasWeights(model, weights.path);
    const secs = ((performance.now() - t0) / 1000).toFixed(1);
    return {
      model,
      weights,
      weightsKey: weights.md5,
      preprocessing,
      note: `${name}: ImageNet weights from ${weights.source} ${weights.path} (md5 ${weights.md5}` +
        `${weights.verified ? "" : ", not Keras's published file"}), ` +
        `${report.params.toLocaleString("en-US")} values in ${secs} s`,
    };
  } catch (e) {
    if (!(e instanceof WeightsUnavailableError)) {
      model.dispose();
      throw e;
    }
    // An unseeded random base must never share a feature cache entry with another one.
    const seed = opts.seed ?? `unseeded-${crypto.randomUUID()}`;
    return {
      model,
      weights: null,
      weightsKey: `random:${seed}`,
      preprocessing,
      note:
        `${name}: ImageNet weights unavailable, using a RANDOM base (seed ${seed}). ${e.message}`,
      error: e,
    };
  }
}

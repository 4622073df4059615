/**
 * Run records: one folder per training run under `outputs/runs/<run-id>/` holding
 * `config.json`, `history.csv`, `metrics.json` and the weights (`model.json` + `weights.bin`,
 * tfjs format). The comparison notebook reads only these, so a record must say everything
 * needed to compare runs later. Folders are written under a `.tmp-` name and renamed at the
 * end, so an interrupted run never leaves a folder that looks complete.
 */
import * as tf from "@tensorflow/tfjs";
import pl from "nodejs-polars";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { confusionMatrix, perClassAccuracy } from "./interpret.ts";
import type { Profile } from "./profile.ts";
import {
  type Divergence,
  type EpochLogs,
  type Evaluation,
  type FitResult,
  historyFrame,
} from "./train.ts";

/** The repository root, found from this file so notebooks work whatever their working directory. */
const REPO_ROOT = fileURLToPath(new URL("../", import.meta.url));

/** Where run records live: `$RUNS_DIR` when set (tests, fixture sets), else `<repo>/outputs/runs`. */
export function runsRoot(): string {
  let env: string | undefined;
  try {
    env = Deno.env.get("RUNS_DIR") || undefined;
  } catch {
    env = undefined; // no --allow-env: behave as if unset
  }
  return env ?? join(REPO_ROOT, "outputs", "runs");
}

/** What a notebook or script hands over after training and evaluating a model. */
export interface RunInput {
  model: tf.LayersModel;
  /** e.g. "baseline_cnn", "vgg16_imagenet_head". */
  modelName: string;
  /** The study section or notebook, e.g. "02_baseline". */
  section: string;
  /** Hyper-parameters as passed to the builder and `fit` (epochs, batch size, learning rate…). */
  config: Record<string, unknown>;
  fit: FitResult;
  /** Evaluation on the test split. */
  evaluation: Evaluation;
  /** `initBackend()`'s answer (lib/backend.ts's BackendInfo; typed by shape so this module stays light). */
  backend: { name: string; device: string; why: string };
  profile: Profile;
  seed?: number;
  /** Where the initial weights came from, e.g. "random init", "keras-cache: vgg16_…h5". */
  weightsSource?: string;
  /** A caveat shown next to the result, e.g. "random features (ImageNet weights unavailable)". */
  label?: string;
}

/** `config.json`: how the run was made. */
export interface RunConfig {
  runId: string;
  createdAt: string;
  modelName: string;
  section: string;
  hyperParameters: Record<string, unknown>;
  profile: { name: string; trainSamples: number; testSamples: number };
  backend: { name: string; device: string; why: string };
  seed: number | null;
  weightsSource: string;
  versions: { tfjs: string; deno: string; v8: string; typescript: string };
}

/** `metrics.json`: what the run achieved. Non-finite numbers are stored as null (JSON has no NaN). */
export interface RunMetrics {
  testLoss: number | null;
  testAccuracy: number;
  testSamples: number;
  perClassAccuracy: (number | null)[];
  /** `confusion[true][predicted]`, 10×10. */
  confusion: number[][];
  trainSeconds: number;
  samplesPerSecond: number;
  parameters: number;
  epochsRun: number;
  stoppedEarly: boolean;
  diverged: boolean;
  divergence: Divergence | null;
  label: string | null;
}

/** A run record read back from disk. */
export interface RunRecord {
  id: string;
  dir: string;
  config: RunConfig;
  /** Columns epoch, loss, accuracy[, val_loss, val_accuracy], seconds. */
  history: pl.DataFrame;
  metrics: RunMetrics;
}

/** Raised when run records cannot be written; the message names the folder. */
export class RunWriteError extends Error {
  override name = "RunWriteError";
}

const HISTORY_COLUMNS = [
  "epoch",
  "loss",
  "accuracy",
  "val_loss",
  "val_accuracy",
  "seconds",
] as const;

/** A folder-safe id: `2026-11-27T21-03-12_baseline_cnn_full_ab12` (UTC time, model, profile, random). */
export function makeRunId(modelName: string, profile: string, now = new Date()): string {
  const stamp = now.toISOString().slice(0, 19).replace(/:/g, "-");
  const safe = (s: string) =>
    s.toLowerCase().replace(/[^a-z0-9_-]+/g, "_").replace(/^_+|_+$/g, "") || "model";
  const random = crypto.getRandomValues(new Uint8Array(2));
  const hex = [...random].map((b) => b.toString(16).padStart(2, "0")).join("");
  return `${stamp}_${safe(modelName)}_${safe(profile)}_${hex}`;
}

function finiteOrNull(x: number): number | null {
  return Number.isFinite(x) ? x : null;
}

/** JSON with NaN/±Infinity as null (JSON.stringify would do that silently; this makes it explicit). */
function toJson(value: unknown): string {
  return JSON.stringify(
    value,
    (_k, v) => (typeof v === "number" && !Number.isFinite(v) ? null : v),
    2,
  ) + "\n";
}

function csvNumber(v: unknown): string {
  return typeof v === "number" && Number.isFinite(v) ? String(v) : "";
}

/** History as CSV with a fixed header; a missing or non-finite value is an empty field. */
export function historyCsv(history: pl.DataFrame): string {
  const rows = history.toRecords() as Record<string, unknown>[];
  const lines = [HISTORY_COLUMNS.join(",")];
  for (const r of rows) lines.push(HISTORY_COLUMNS.map((c) => csvNumber(r[c])).join(","));
  return lines.join("\n") + "\n";
}

/** Parses `history.csv` back into the DataFrame `fit` returned (validation columns only if present). */
export function parseHistoryCsv(text: string, name = "history.csv"): pl.DataFrame {
  const [header, ...lines] = text.trim().split(/\r?\n/);
  const cols = header.split(",");
  const at = (c: string) => cols.indexOf(c);
  for (const c of ["epoch", "loss", "accuracy"]) {
    if (at(c) < 0) throw new Error(`${name}: no column "${c}" in header "${header}"`);
  }
  const num = (f: string[], c: string) => {
    const i = at(c);
    return i < 0 || f[i] === undefined || f[i] === "" ? undefined : Number(f[i]);
  };
  const rows: EpochLogs[] = lines.filter((l) => l.trim() !== "").map((l) => {
    const f = l.split(",");
    return {
      epoch: num(f, "epoch") ?? NaN,
      loss: num(f, "loss") ?? NaN,
      accuracy: num(f, "accuracy") ?? NaN,
      val_loss: num(f, "val_loss"),
      val_accuracy: num(f, "val_accuracy"),
      seconds: num(f, "seconds") ?? NaN,
    };
  });
  return historyFrame(rows);
}

/** The model as tfjs's model.json + weights.bin, captured through a save handler (no `file://` in Deno). */
async function modelFiles(model: tf.LayersModel): Promise<{ json: string; weights: Uint8Array }> {
  let captured: tf.io.ModelArtifacts | undefined;
  await model.save(tf.io.withSaveHandler((artifacts) => {
    captured = artifacts;
    return Promise.resolve({ modelArtifactsInfo: tf.io.getModelArtifactsInfoForJSON(artifacts) });
  }));
  const a = captured!;
  const data = a.weightData === undefined
    ? new ArrayBuffer(0)
    : tf.io.CompositeArrayBuffer.join(a.weightData);
  const json = {
    format: a.format ?? "layers-model",
    generatedBy: a.generatedBy ?? `TensorFlow.js tfjs-layers v${tf.version.tfjs}`,
    convertedBy: a.convertedBy ?? null,
    modelTopology: a.modelTopology,
    trainingConfig: a.trainingConfig,
    weightsManifest: [{ paths: ["weights.bin"], weights: a.weightSpecs ?? [] }],
  };
  return { json: JSON.stringify(json), weights: new Uint8Array(data) };
}

/** Options of `saveRun`. */
export interface SaveRunOptions {
  /** Folder holding the run folders; default `runsRoot()`. */
  root?: string;
  /** Fixes the run's time stamp (tests). */
  now?: Date;
  /** Called after each file is written into the temporary folder; a test hook to simulate a crash. */
  afterFile?: (name: string) => void | Promise<void>;
}

/**
 * Writes a run record and returns its folder. Files go into `<root>/.tmp-<id>/` first and the
 * folder is renamed to `<root>/<id>/` only when all are written; on an error the temporary
 * folder is removed. An unwritable root raises `RunWriteError` naming it.
 */
export async function saveRun(input: RunInput, opts: SaveRunOptions = {}): Promise<string> {
  const root = opts.root ?? runsRoot();
  const now = opts.now ?? new Date();
  // Two runs started in the same second share the time stamp; the random suffix tells them apart.
  let id = makeRunId(input.modelName, input.profile.name, now);
  while (await exists(join(root, id))) id = makeRunId(input.modelName, input.profile.name, now);
  const tmp = join(root, `.tmp-${id}`);
  const final = join(root, id);
  try {
    await Deno.mkdir(tmp, { recursive: true });
  } catch (e) {
    throw new RunWriteError(
      `cannot write run records in ${root}: ${(e as Error).message}. ` +
        `Check that the folder is writable, or point RUNS_DIR at one that is.`,
    );
  }
  try {
    const write = async (name: string, data: string | Uint8Array) => {
      const path = join(tmp, name);
      if (typeof data === "string") await Deno.writeTextFile(path, data);
      else await Deno.writeFile(path, data);
      await opts.afterFile?.(name);
    };
    const { evaluation, fit } = input;
    const matrix = confusionMatrix(evaluation.labels, evaluation.predicted);
    const config: RunConfig = {
      runId: id,
      createdAt: now.toISOString(),
      modelName: input.modelName,
      section: input.section,
      hyperParameters: input.config,
      profile: {
        name: input.profile.name,
        trainSamples: input.profile.trainSamples,
        testSamples: input.profile.testSamples,
      },
      backend: { name: input.backend.name, device: input.backend.device, why: input.backend.why },
      seed: input.seed ?? null,
      weightsSource: input.weightsSource ?? "random init",
      versions: {
        tfjs: tf.version.tfjs,
        deno: Deno.version.deno,
        v8: Deno.version.v8,
        typescript: Deno.version.typescript,
      },
    };
    const metrics: RunMetrics = {
      testLoss: finiteOrNull(evaluation.loss),
      testAccuracy: evaluation.accuracy,
      testSamples: evaluation.labels.length,
      perClassAccuracy: perClassAccuracy(matrix).map(finiteOrNull),
      confusion: matrix,
      trainSeconds: fit.seconds,
      samplesPerSecond: fit.samplesPerSecond,
      parameters: input.model.countParams(),
      epochsRun: fit.epochsRun,
      stoppedEarly: fit.stoppedEarly,
      diverged: fit.divergence !== null,
      divergence: fit.divergence,
      label: input.label ?? null,
    };
    await write("config.json", toJson(config));
    await write("history.csv", historyCsv(fit.history));
    await write("metrics.json", toJson(metrics));
    const files = await modelFiles(input.model);
    await write("model.json", files.json);
    await write("weights.bin", files.weights);
    await Deno.rename(tmp, final);
  } catch (e) {
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
    if (e instanceof Deno.errors.PermissionDenied) {
      throw new RunWriteError(`cannot write run records in ${root}: ${e.message}`);
    }
    throw e;
  }
  return final;
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch {
    return false;
  }
}

async function readJson<T>(path: string): Promise<T> {
  return JSON.parse(await Deno.readTextFile(path)) as T;
}

/** Reads one run folder; throws with the folder's name when a file is missing or malformed. */
export async function loadRun(dir: string): Promise<RunRecord> {
  try {
    const config = await readJson<RunConfig>(join(dir, "config.json"));
    const metrics = await readJson<RunMetrics>(join(dir, "metrics.json"));
    const history = parseHistoryCsv(
      await Deno.readTextFile(join(dir, "history.csv")),
      join(dir, "history.csv"),
    );
    return { id: config.runId ?? dir.split("/").pop()!, dir, config, history, metrics };
  } catch (e) {
    throw new Error(`run record ${dir} is unreadable: ${(e as Error).message}`);
  }
}

/**
 * All complete run records under `root` (default `runsRoot()`), oldest first. Temporary
 * `.tmp-*` folders (interrupted runs) are ignored; an unreadable record is skipped with a
 * warning rather than hiding all the others. A missing root means no runs yet.
 */
export async function loadRuns(root = runsRoot()): Promise<RunRecord[]> {
  const dirs: string[] = [];
  try {
    for await (const entry of Deno.readDir(root)) {
      if (entry.isDirectory && !entry.name.startsWith(".")) dirs.push(entry.name);
    }
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return [];
    throw e;
  }
  const records: RunRecord[] = [];
  for (const name of dirs.sort()) {
    try {
      records.push(await loadRun(join(root, name)));
    } catch (e) {
      console.warn(`⚠ skipping ${(e as Error).message}`);
    }
  }
  return records.sort((a, b) =>
    a.config.createdAt.localeCompare(b.config.createdAt) || a.id.localeCompare(b.id)
  );
}

/** Reloads a run's trained model from its `model.json` + `weights.bin` (a custom load handler). */
export async function loadRunModel(dir: string): Promise<tf.LayersModel> {
  const json = await readJson<{
    format?: string;
    generatedBy?: string;
    convertedBy?: string | null;
    modelTopology: tf.io.ModelArtifacts["modelTopology"];
    trainingConfig?: tf.io.TrainingConfig;
    weightsManifest: { paths: string[]; weights: tf.io.WeightsManifestEntry[] }[];
  }>(join(dir, "model.json"));
  const buffers = await Promise.all(
    json.weightsManifest.flatMap((g) => g.paths).map(async (p) => {
      const bytes = await Deno.readFile(join(dir, p));
      return bytes.buffer.slice(
        bytes.byteOffset,
        bytes.byteOffset + bytes.byteLength,
      ) as ArrayBuffer;
    }),
  );
  const artifacts: tf.io.ModelArtifacts = {
    modelTopology: json.modelTopology,
    format: json.format,
    generatedBy: json.generatedBy,
    convertedBy: json.convertedBy ?? undefined,
    trainingConfig: json.trainingConfig,
    weightSpecs: json.weightsManifest.flatMap((g) => g.weights),
    weightData: tf.io.CompositeArrayBuffer.join(buffers),
  };
  return await tf.loadLayersModel({ load: () => Promise.resolve(artifacts) });
}

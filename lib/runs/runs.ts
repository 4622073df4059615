/**
 * Run records, the one typed schema every producer fills and every reader reads: one folder
 * per finished training run under `outputs/runs/<run-id>/` (or `$RUNS_DIR`) holding
 *
 * - `config.json` — how the run was made: its key and the parts of it (lib/runs/run_key.ts), the
 *   backend, precision and machine, seed, weights, label, transfer timings;
 * - `history.csv` — the per-epoch history;
 * - `metrics.json` — what it achieved: test loss/accuracy, per-class accuracy, confusion;
 * - `test_labels.u8` + `test_probabilities.f32` — the test set's labels and the softmax
 *   outputs, so every number and picture a notebook shows after training (worst mistakes
 *   included) comes back from the record without the model;
 * - `probe.json` — the diagnostics probe's data, where a probe was attached;
 * - `model.json` + `weights.bin` — the trained weights (tfjs format), optional: nothing
 *   displayed needs them, and records committed to the repository leave them out.
 *
 * Records hold no absolute paths, so a folder copied from another machine is used as it is.
 * Folders are written under a `.tmp-` name and renamed at the end (lib/machine/atomic_write.ts),
 * so an interrupted run never leaves a folder that looks complete.
 */
import * as tf from "@tensorflow/tfjs";
import pl from "nodejs-polars";
import { join } from "node:path";
import { envVar, REPO_ROOT } from "../machine/env.ts";
import { isNoSpace, UserError } from "../machine/cli_error.ts";
import { writeDirAtomic } from "../machine/atomic_write.ts";
import { formatBytes } from "../report/format.ts";
import { confusionMatrix, perClassAccuracy } from "../report/interpret.ts";
import type { LossKind } from "../train/loss.ts";
import type { Profile } from "../study/profile.ts";
import type { ProbeData } from "../train/probe.ts";
import type { RunKeyParts } from "./run_key.ts";
import { type Divergence, type EpochLogs, type FitResult, historyFrame } from "../train/train.ts";
import { argmaxAt, type Evaluation } from "../train/evaluate.ts";

/** The schema version this code writes and reads; older records are refused with a message. */
export const RUN_SCHEMA = 2;

/** Where run records live: `$RUNS_DIR` when set (tests, long runs), else `<repo>/outputs/runs`. */
export function runsRoot(): string {
  return envVar("RUNS_DIR") ?? join(REPO_ROOT, "outputs", "runs");
}

/**
 * The study's full-profile records, committed with the repository (without weights), so a
 * fresh clone renders the whole study without training.
 */
export const STUDY_RECORDS = join(REPO_ROOT, "records");

/** Every folder searched for records, in order: the writable runs root, then the committed ones. */
export function recordRoots(): string[] {
  const own = runsRoot();
  return own === STUDY_RECORDS ? [own] : [own, STUDY_RECORDS];
}

/** A transfer run's frozen-base facts: the base ran once over the data, the head trained on features. */
export interface TransferFacts {
  /** Parameters of the frozen base (not trained, but part of the model). */
  baseParameters: number;
  /** Seconds the base's one pass over train + test took when the features were extracted. */
  extractSeconds: number;
  /** Seconds reading the cached features back took in this run (0 when they were extracted). */
  cacheReadSeconds: number;
  /** Where the features came from in this run: "extracted" or "feature cache". */
  features: string;
  /** The preprocessing of the base's input, e.g. "study" or "caffe". */
  preprocessing: string;
  /** Shape of one image's features, e.g. [1, 1, 512]. */
  featureShape: number[];
  /** Per split: images, the base's one pass, and reading the cached features back. */
  splits: { split: string; images: number; extractSeconds: number; readSeconds: number }[];
  /** Statistics of the training features (how much is zero, their scale). */
  featureStats: {
    mode: string;
    split: string;
    mean: number;
    std: number;
    zeroFraction: number;
    max: number;
  };
}

/** What a notebook or script hands over after training and evaluating a model. */
export interface RunInput {
  model: tf.LayersModel;
  /** e.g. "baseline_cnn", "vgg16_imagenet_head". */
  modelName: string;
  /** The study section or notebook, e.g. "02_baseline". */
  section: string;
  /** The run's key and what went into it (lib/runs/run_key.ts): builder, training, data, seed, backend. */
  key: string;
  keyParts: RunKeyParts;
  fit: FitResult;
  /** Evaluation on the test split. */
  evaluation: Evaluation;
  /** `initBackend()`'s answer (lib/machine/backend.ts's BackendInfo; typed by shape so this module stays light). */
  backend: { name: string; device: string; why: string; precision?: string };
  profile: Profile;
  seed?: number;
  /** Where the initial weights came from, e.g. "random init", "keras-cache: vgg16_…h5". */
  weightsSource?: string;
  /** A caveat shown next to the result, e.g. "random features (ImageNet weights unavailable)". */
  label?: string;
  /** The probe's data, for runs that looked inside the network (notebook 04). */
  probe?: ProbeData;
  /** For transfer heads: the frozen base's size and its one feature pass. */
  transfer?: TransferFacts;
}

/** The machine a run was trained on, as a reader needs it to judge a time. */
export interface MachineInfo {
  cpu: string;
  /**
   * The CPU's vendor, family and model numbers (`/proc/cpuinfo`, e.g. "AuthenticAMD 25/17"): a
   * virtual machine's model name can be as bare as "AMD EPYC" for two generations of chip, and
   * these tell them apart. Absent off Linux and in records made before it was kept.
   */
  cpuId?: string;
  cores: number;
  os: string;
}

/** `config.json`: how the run was made. */
export interface RunConfig {
  schema: typeof RUN_SCHEMA;
  runId: string;
  createdAt: string;
  /** The run key (a hash of `keyParts`): the same key is the same run. */
  key: string;
  keyParts: RunKeyParts;
  modelName: string;
  section: string;
  profile: { name: string; trainSamples: number; testSamples: number };
  backend: { name: string; device: string; why: string; precision: string };
  machine: MachineInfo;
  seed: number | null;
  weightsSource: string;
  label: string | null;
  transfer: TransferFacts | null;
  /** The epoch a backup was resumed from (0: trained in one go). */
  resumedFrom: number;
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
  /** The cross-entropy the test loss (and training) used. */
  lossKind: LossKind;
}

/** A run record read back from disk. */
export interface RunRecord {
  id: string;
  dir: string;
  config: RunConfig;
  /** Columns epoch, loss, accuracy[, val_loss, val_accuracy], seconds. */
  history: pl.DataFrame;
  metrics: RunMetrics;
  /** The test evaluation, rebuilt from the stored labels and probabilities. */
  evaluation: Evaluation;
  probe: ProbeData | null;
  /** Whether `model.json` + `weights.bin` are beside the record. */
  hasWeights: boolean;
}

/** Raised when run records cannot be written; the message names the folder (and the space needed). */
export class RunWriteError extends UserError {
  override name = "RunWriteError";
  constructor(message: string, readonly bytes = 0, options?: ErrorOptions) {
    super(message, options);
  }
}

/**
 * Raised for a record folder that cannot be read (a damaged or missing file, an old schema); the
 * message names the folder and what is wrong. Such a folder is never changed by the study.
 */
export class RunRecordError extends UserError {
  override name = "RunRecordError";
  constructor(readonly dir: string, readonly problem: string, what = "run record") {
    super(`${what} ${dir} is unreadable: ${problem}`);
  }
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
  /** Write the trained weights beside the record (default true). */
  weights?: boolean;
}

/** The CPU's model name and numbers and the core count, from /proc/cpuinfo where there is one. */
export function machineInfo(): MachineInfo {
  let info = "";
  try {
    info = Deno.readTextFileSync("/proc/cpuinfo");
  } catch {
    // not Linux, or not readable: the CPU stays unnamed
  }
  return {
    cpu: cpuField(info, "model name") ?? "unknown CPU",
    ...cpuIdOf(info),
    cores: navigator.hardwareConcurrency,
    os: `${Deno.build.os} ${Deno.build.arch}`,
  };
}

/** The first processor's `field` in /proc/cpuinfo's text. */
function cpuField(info: string, field: string): string | undefined {
  return info.match(new RegExp(`^${field}\\s*:\\s*(.+)$`, "m"))?.[1]?.trim();
}

/** `{ cpuId }` from /proc/cpuinfo's text ("AuthenticAMD 25/17"), or nothing when a part is missing. */
export function cpuIdOf(info: string): { cpuId?: string } {
  const [vendor, family, model] = ["vendor_id", "cpu family", "model"].map((f) =>
    cpuField(info, f)
  );
  return vendor && family && model ? { cpuId: `${vendor} ${family}/${model}` } : {};
}

/** A Float32Array's bytes in little-endian order (the order every record file uses). */
function littleEndianBytes(values: Float32Array): Uint8Array {
  const out = new Uint8Array(values.length * 4);
  const view = new DataView(out.buffer);
  values.forEach((v, i) => view.setFloat32(i * 4, v, true));
  return out;
}

/**
 * Writes a run record and returns its folder. Files go into `<root>/.tmp-<id>-…/` first and the
 * folder is renamed to `<root>/<id>/` only when all are written; on an error the temporary
 * folder is removed. An unwritable root raises `RunWriteError` naming it.
 */
export async function saveRun(input: RunInput, opts: SaveRunOptions = {}): Promise<string> {
  const root = opts.root ?? runsRoot();
  const now = opts.now ?? new Date();
  // Two runs started in the same second share the time stamp; the random suffix tells them apart.
  let id = makeRunId(input.modelName, input.profile.name, now);
  while (await exists(join(root, id))) id = makeRunId(input.modelName, input.profile.name, now);
  const final = join(root, id);
  // What the record will take on disk, for the message when it does not fit.
  const bytes = recordBytes(input, opts.weights !== false);
  // Set once the temporary folder exists: an error before that is the root's (unwritable).
  let started = false;
  const fill = async (tmp: string) => {
    started = true;
    const write = async (name: string, data: string | Uint8Array) => {
      const path = join(tmp, name);
      if (typeof data === "string") await Deno.writeTextFile(path, data);
      else await Deno.writeFile(path, data);
      await opts.afterFile?.(name);
    };
    const { evaluation, fit } = input;
    const matrix = confusionMatrix(evaluation.labels, evaluation.predicted);
    const config: RunConfig = {
      schema: RUN_SCHEMA,
      runId: id,
      createdAt: now.toISOString(),
      key: input.key,
      keyParts: input.keyParts,
      modelName: input.modelName,
      section: input.section,
      profile: {
        name: input.profile.name,
        trainSamples: input.profile.trainSamples,
        testSamples: input.profile.testSamples,
      },
      backend: {
        name: input.backend.name,
        device: input.backend.device,
        why: input.backend.why,
        precision: input.backend.precision ?? "float32",
      },
      machine: machineInfo(),
      seed: input.seed ?? null,
      weightsSource: input.weightsSource ?? "random init",
      label: input.label ?? null,
      transfer: input.transfer ?? null,
      resumedFrom: fit.resumedFrom ?? 0,
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
      lossKind: evaluation.lossKind,
    };
    await write("config.json", toJson(config));
    await write("history.csv", historyCsv(fit.history));
    await write("metrics.json", toJson(metrics));
    await write("test_labels.u8", evaluation.labels);
    await write("test_probabilities.f32", littleEndianBytes(evaluation.probabilities));
    if (input.probe) await write("probe.json", toJson(input.probe));
    if (opts.weights !== false) {
      const files = await modelFiles(input.model);
      await write("model.json", files.json);
      await write("weights.bin", files.weights);
    }
  };
  try {
    await writeDirAtomic(final, fill);
  } catch (e) {
    if (!started) {
      throw new RunWriteError(
        `cannot write run records in ${root}: ${(e as Error).message}. ` +
          `Check that the folder is writable, or point RUNS_DIR at one that is.`,
        bytes,
        { cause: e },
      );
    }
    if (e instanceof Deno.errors.PermissionDenied || isNoSpace(e)) {
      throw new RunWriteError(
        `cannot write the run record in ${root} (it needs about ${formatBytes(bytes)} free): ` +
          (e as Error).message,
        bytes,
        { cause: e },
      );
    }
    throw e;
  }
  return final;
}

/** Bytes a record takes: the test predictions, the weights, and a margin for the small files. */
function recordBytes(input: RunInput, weights: boolean): number {
  const n = input.evaluation.labels.length;
  const params = weights ? input.model.countParams() * 4 : 0;
  return n * 41 + params + 64 * 1024;
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
  let config: RunConfig;
  try {
    config = await readJson<RunConfig>(join(dir, "config.json"));
  } catch (e) {
    throw new RunRecordError(dir, `config.json: ${(e as Error).message}`);
  }
  if (config.schema !== RUN_SCHEMA) {
    throw new RunRecordError(
      dir,
      `it has schema ${config.schema ?? 1}, this version reads schema ${RUN_SCHEMA}: ` +
        `it was written by an older version of the study; train it again ` +
        `(MNIST_RETRAIN=1) or move the folder out of the runs folder`,
    );
  }
  // Which file is being read, so the message names it.
  let file = "metrics.json";
  try {
    const metrics = await readJson<RunMetrics>(join(dir, "metrics.json"));
    if (typeof metrics?.testAccuracy !== "number") throw new Error("no test accuracy in it");
    file = "history.csv";
    const history = parseHistoryCsv(
      await Deno.readTextFile(join(dir, "history.csv")),
      join(dir, "history.csv"),
    );
    file = "test_labels.u8";
    const labels = await Deno.readFile(join(dir, "test_labels.u8"));
    file = "test_probabilities.f32";
    const bytes = await Deno.readFile(join(dir, "test_probabilities.f32"));
    if (bytes.length !== labels.length * 40) {
      throw new Error(
        `it holds ${bytes.length} bytes, expected ${labels.length * 40}`,
      );
    }
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const probabilities = Float32Array.from(
      { length: labels.length * 10 },
      (_, i) => view.getFloat32(i * 4, true),
    );
    const predicted = Uint8Array.from(
      { length: labels.length },
      (_, i) => argmaxAt(probabilities, i * 10, 10),
    );
    const evaluation: Evaluation = {
      loss: metrics.testLoss ?? NaN,
      accuracy: metrics.testAccuracy,
      probabilities,
      predicted,
      labels,
      lossKind: metrics.lossKind,
    };
    file = "probe.json";
    const probe = await exists(join(dir, "probe.json"))
      ? await readJson<ProbeData>(join(dir, "probe.json"))
      : null;
    const hasWeights = await exists(join(dir, "weights.bin"));
    return { id: config.runId, dir, config, history, metrics, evaluation, probe, hasWeights };
  } catch (e) {
    throw new RunRecordError(dir, `${file}: ${(e as Error).message}`);
  }
}

/** A record's config without the rest: enough to match keys (fast over many folders). */
async function readConfig(dir: string): Promise<RunConfig | null> {
  try {
    const config = await readJson<RunConfig>(join(dir, "config.json"));
    return config.schema === RUN_SCHEMA ? config : null;
  } catch {
    return null;
  }
}

/**
 * The newest readable finished record with this key under any of `roots` (default
 * `recordRoots()`), or null. Only complete folders count (`.tmp-*` and dot-folders are skipped).
 * A damaged record with the key is reported by `onDamaged` (default: one warning line) and
 * treated as absent — never changed or deleted; the run then trains into a new folder.
 */
export async function findRun(
  key: string,
  roots = recordRoots(),
  onDamaged: (e: RunRecordError) => void = (e) => console.warn(damagedLine(e)),
): Promise<RunRecord | null> {
  const found: { dir: string; createdAt: string }[] = [];
  for (const root of roots) {
    for (const name of await runFolders(root)) {
      const config = await readConfig(join(root, name));
      if (config?.key === key) found.push({ dir: join(root, name), createdAt: config.createdAt });
    }
  }
  return await newestReadable(found, loadRun, onDamaged);
}

/**
 * The newest of `found` (by creation time) that `load` can read, or null; each unreadable one on
 * the way is reported by `onDamaged` and passed over (a kind of record shares this rule).
 */
export async function newestReadable<T>(
  found: { dir: string; createdAt: string }[],
  load: (dir: string) => Promise<T>,
  onDamaged: (e: RunRecordError) => void,
): Promise<T | null> {
  for (const { dir } of found.toSorted((a, b) => b.createdAt.localeCompare(a.createdAt))) {
    try {
      return await load(dir);
    } catch (e) {
      if (!(e instanceof RunRecordError)) throw e;
      onDamaged(e);
    }
  }
  return null;
}

/** The one line a damaged record gets where it is passed over. */
export function damagedLine(e: RunRecordError): string {
  return `⚠ ${e.message} — treated as absent and left as it is (move it away or delete it)`;
}

/**
 * Every record folder under `roots` that cannot be read (a damaged file, an old schema), with
 * what is wrong: what the report's plan and `deno task results --check` list.
 */
export async function damagedRecords(roots = recordRoots()): Promise<RunRecordError[]> {
  const out: RunRecordError[] = [];
  for (const root of roots) {
    for (const name of await runFolders(root)) {
      try {
        await loadRun(join(root, name));
      } catch (e) {
        if (!(e instanceof RunRecordError)) throw e;
        out.push(e);
      }
    }
  }
  return out;
}

/**
 * Every readable record's config and metrics under `roots`, oldest first — what a scan over
 * many records needs (throughput, keys) without reading their histories and predictions.
 */
export async function recordSummaries(
  roots = recordRoots(),
): Promise<{ config: RunConfig; metrics: RunMetrics }[]> {
  const out: { config: RunConfig; metrics: RunMetrics }[] = [];
  for (const root of roots) {
    for (const name of await runFolders(root)) {
      const config = await readConfig(join(root, name));
      if (!config) continue;
      try {
        out.push({ config, metrics: await readJson<RunMetrics>(join(root, name, "metrics.json")) });
      } catch {
        // unreadable metrics: loadRuns names such a record; a scan just skips it
      }
    }
  }
  return out.sort((a, b) => a.config.createdAt.localeCompare(b.config.createdAt));
}

/**
 * Names of the record folders directly under `root`, sorted (none when it does not exist); dot
 * folders (`.tmp-*` of an unfinished write, `.backups`, `.locks`) are not records.
 */
export async function runFolders(root: string): Promise<string[]> {
  const dirs: string[] = [];
  try {
    for await (const entry of Deno.readDir(root)) {
      if (entry.isDirectory && !entry.name.startsWith(".")) dirs.push(entry.name);
    }
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return [];
    throw e;
  }
  return dirs.sort();
}

/**
 * All complete run records under `root` (default `recordRoots()`: the runs folder, then the
 * committed study records), oldest first. Temporary
 * `.tmp-*` folders (interrupted runs) are ignored; an unreadable record is skipped with a
 * warning rather than hiding all the others. A missing root means no runs yet.
 */
export async function loadRuns(root: string | string[] = recordRoots()): Promise<RunRecord[]> {
  const records: RunRecord[] = [];
  const seen = new Set<string>();
  for (const r of Array.isArray(root) ? root : [root]) {
    for (const name of await runFolders(r)) {
      try {
        const record = await loadRun(join(r, name));
        // The same record copied into two roots counts once (the first root wins).
        if (seen.has(record.id)) continue;
        seen.add(record.id);
        records.push(record);
      } catch (e) {
        if (!(e instanceof RunRecordError)) throw e;
        console.warn(damagedLine(e));
      }
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

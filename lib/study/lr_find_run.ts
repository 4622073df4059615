/**
 * Learning-rate finder runs (lib/train/lr_finder.ts) as records, computed once. A finder run's key is
 * everything that determines its curve — the network (builder and options), the optimizer and
 * loss, the sweep's settings, the data, the seed, the backend and precision — hashed as a
 * training run's key is (lib/runs/run_key.ts). The study's learning rate and schedule are not in it:
 * the finder sweeps the rate, so a fix that only changes the rate shares its net's curve.
 *
 * A record is a folder `<records root>/.lr-find/<id>/` holding `config.json` (key, parts,
 * machine, versions), `curve.csv` (step, lr, loss, smoothed) and `result.json` (the rates read
 * from the curve). They sit apart from the training records, which have another schema, in the
 * same roots: the runs folder (`RUNS_DIR`) and the committed `records/`.
 */
import * as tf from "@tensorflow/tfjs";
import { join } from "node:path";
import type { BackendName, Precision } from "../machine/backend.ts";
import { writeDirAtomic } from "../machine/atomic_write.ts";
import type { LossKind } from "../train/loss.ts";
import {
  lrFind,
  type LrFindPoint,
  type LrFindResult,
  type LrFindSettings,
  readCurve,
} from "../train/lr_finder.ts";
import type { MnistSplit } from "../data/mnist.ts";
import { makeBatch } from "../data/preprocess.ts";
import type { Profile } from "./profile.ts";
import { computeOnce, retrainRequested } from "../runs/run_cache.ts";
import { canonicalJson, kerasAdam, type TrainingSettings } from "../runs/run_key.ts";
import {
  damagedLine,
  type MachineInfo,
  machineInfo,
  makeRunId,
  newestReadable,
  recordRoots,
  runFolders,
  RunRecordError,
  runsRoot,
} from "../runs/runs.ts";
import { type ModelName, studyModel, type Variant } from "./settings.ts";
import { runName } from "./study_run.ts";

/** Schema of the finder's records. */
export const LR_FIND_SCHEMA = 1;

/** The folder under each records root that holds finder records. */
export const LR_FIND_DIR = ".lr-find";

/** Everything that determines a finder curve. */
export interface LrFindKeyParts {
  kind: "lr_find";
  model: { builder: string; options: Record<string, unknown> };
  /** The optimizer the rate is swept for (its own rate is replaced at every step). */
  optimizer: Omit<TrainingSettings["optimizer"], "learningRate" | "schedule">;
  loss: LossKind;
  finder: LrFindSettings;
  data: { profile: Profile["name"]; trainSamples: number; input: string };
  seed: number;
  weights: string;
  backend: BackendName;
  precision: Precision;
}

/** `config.json` of a finder record (`result.json` keeps how it ended and the time it took). */
export interface LrFindConfig {
  schema: typeof LR_FIND_SCHEMA;
  kind: "lr_find";
  runId: string;
  createdAt: string;
  key: string;
  keyParts: LrFindKeyParts;
  /** The net it was run on, e.g. "vgg16_scratch (relu convs)". */
  modelName: string;
  section: string;
  backend: { name: string; device: string; why: string; precision: string };
  machine: MachineInfo;
  versions: { tfjs: string; deno: string };
}

/** A finder record read back. */
export interface LrFindRecord {
  id: string;
  dir: string;
  config: LrFindConfig;
  result: LrFindResult;
}

/** The finder's key: the first 16 hex digits of SHA-256 over the parts' canonical JSON. */
export async function lrFindKey(parts: LrFindKeyParts): Promise<string> {
  const digest = await crypto.subtle.digest(
    "SHA-256",
    new TextEncoder().encode(canonicalJson(parts)),
  );
  return [...new Uint8Array(digest).slice(0, 8)].map((b) => b.toString(16).padStart(2, "0"))
    .join("");
}

/**
 * The sweep notebook 04 runs per profile: the study's batch of 100, rates from 1e-6 to 1, with
 * fastai's smoothing and stop rule. The full profile takes 150 steps (a ratio of 1.1 between
 * neighbouring rates; 15,000 digits, none seen twice), the others a coarse look.
 */
export function studyFinderSettings(profile: Profile): LrFindSettings {
  const steps = profile.name === "full" ? 150 : profile.name === "reduced" ? 60 : 6;
  return { startLr: 1e-6, endLr: 1, steps, batchSize: 100, smoothing: 0.98, stopFactor: 4 };
}

/** What a study finder run needs to know. */
export interface StudyFinderOptions {
  model: ModelName;
  variant?: Variant;
  profile: Profile;
  backend: { name: string; device: string; why: string; precision: string };
  train: MnistSplit;
  seed: number;
  loss?: LossKind;
  /** Default: `studyFinderSettings(profile)`. */
  settings?: LrFindSettings;
}

/** The key parts of a study net's finder run (the variant's rate and schedule left out). */
export function studyFinderParts(
  opts: Omit<StudyFinderOptions, "train"> & {
    train: { count: number };
  },
): LrFindKeyParts {
  const m = studyModel(opts.model);
  const v = opts.variant ?? {};
  const { learningRate: _lr, schedule: _s, ...optimizer } = kerasAdam();
  return {
    kind: "lr_find",
    model: {
      builder: m.name,
      options: m.name === "baseline" ? {} : {
        convActivation: v.convActivation ?? "linear",
        convInit: v.convInit ?? "glorot",
        batchNorm: v.batchNorm ?? false,
      },
    },
    optimizer,
    loss: opts.loss ?? "logits",
    finder: opts.settings ?? studyFinderSettings(opts.profile),
    data: { profile: opts.profile.name, trainSamples: opts.train.count, input: m.input },
    seed: opts.seed,
    weights: "random init",
    backend: opts.backend.name as BackendName,
    precision: opts.backend.precision as Precision,
  };
}

function curveCsv(points: LrFindPoint[]): string {
  const num = (v: number) => (Number.isFinite(v) ? String(v) : "");
  return [
    "step,lr,loss,smoothed",
    ...points.map((p) => [p.step, p.lr, num(p.loss), num(p.smoothed)].join(",")),
  ].join("\n") + "\n";
}

function parseCurve(text: string): LrFindPoint[] {
  const [header, ...lines] = text.trim().split(/\r?\n/);
  if (header !== "step,lr,loss,smoothed") throw new Error(`curve.csv: unexpected header ${header}`);
  const num = (f: string) => (f === "" ? NaN : Number(f));
  return lines.map((l) => {
    const [step, lr, loss, smoothed] = l.split(",");
    return { step: Number(step), lr: Number(lr), loss: num(loss), smoothed: num(smoothed) };
  });
}

/** Writes a finder record under `<root>/.lr-find/` (temporary name, then renamed); its folder. */
async function saveLrFind(
  input: {
    key: string;
    keyParts: LrFindKeyParts;
    modelName: string;
    section: string;
    backend: LrFindConfig["backend"];
    result: LrFindResult;
  },
  root = runsRoot(),
  now = new Date(),
): Promise<string> {
  const base = join(root, LR_FIND_DIR);
  const id = makeRunId(`lr_find_${input.modelName}`, input.keyParts.data.profile, now);
  const final = join(base, id);
  await writeDirAtomic(final, async (tmp) => {
    const config: LrFindConfig = {
      schema: LR_FIND_SCHEMA,
      kind: "lr_find",
      runId: id,
      createdAt: now.toISOString(),
      key: input.key,
      keyParts: input.keyParts,
      modelName: input.modelName,
      section: input.section,
      backend: input.backend,
      machine: machineInfo(),
      versions: { tfjs: tf.version.tfjs, deno: Deno.version.deno },
    };
    const { points, ...rest } = input.result;
    await Deno.writeTextFile(join(tmp, "config.json"), JSON.stringify(config, null, 2) + "\n");
    await Deno.writeTextFile(join(tmp, "curve.csv"), curveCsv(points));
    await Deno.writeTextFile(join(tmp, "result.json"), JSON.stringify(rest, null, 2) + "\n");
  });
  return final;
}

/** Reads one finder record; an error names the folder. */
export async function loadLrFind(dir: string): Promise<LrFindRecord> {
  try {
    const config = JSON.parse(await Deno.readTextFile(join(dir, "config.json"))) as LrFindConfig;
    if (config.kind !== "lr_find" || config.schema !== LR_FIND_SCHEMA) {
      throw new Error(`not a learning-rate finder record of schema ${LR_FIND_SCHEMA}`);
    }
    const { ended, seconds } = JSON.parse(await Deno.readTextFile(join(dir, "result.json")));
    const points = parseCurve(await Deno.readTextFile(join(dir, "curve.csv")));
    return { id: config.runId, dir, config, result: readCurve(points, ended, seconds) };
  } catch (e) {
    throw new RunRecordError(dir, (e as Error).message, "learning-rate finder record");
  }
}

/** Whether `dir` is a finder record (its config says so). */
export async function isLrFindRecord(dir: string): Promise<boolean> {
  try {
    const config = JSON.parse(await Deno.readTextFile(join(dir, "config.json")));
    return config.kind === "lr_find";
  } catch {
    return false;
  }
}

/** Every finder record's folder under `roots`, with its key and time. */
async function finderFolders(
  roots: string[],
): Promise<{ dir: string; key: string; createdAt: string }[]> {
  const out = [];
  for (const root of roots) {
    const base = join(root, LR_FIND_DIR);
    for (const name of await runFolders(base)) {
      try {
        const c = JSON.parse(await Deno.readTextFile(join(base, name, "config.json")));
        if (c.kind === "lr_find") {
          out.push({ dir: join(base, name), key: c.key, createdAt: c.createdAt });
        }
      } catch {
        // unreadable: not a record this scan can use
      }
    }
  }
  return out;
}

/**
 * The newest readable finder record with this key under `roots` (default `recordRoots()`), or
 * null. A damaged one is passed over with a line, and left as it is, as training records are.
 */
export async function findLrFind(
  key: string,
  roots = recordRoots(),
  onDamaged: (e: RunRecordError) => void = (e) => console.warn(damagedLine(e)),
): Promise<LrFindRecord | null> {
  const same = (await finderFolders(roots)).filter((f) => f.key === key);
  return await newestReadable(same, loadLrFind, onDamaged);
}

/** Every finder record's key under `roots` (what the plan and a merge of records compare). */
export async function lrFindKeys(roots = recordRoots()): Promise<Set<string>> {
  return new Set((await finderFolders(roots)).map((f) => f.key));
}

/**
 * A study net's finder run: its record if one exists with the same key (unless `MNIST_RETRAIN`
 * or `retrain`), else the range test from the net's initial weights (the builder's, from
 * `seed`), written as a record. One line says which.
 */
export async function studyLrFind(
  opts: StudyFinderOptions,
  run: {
    root?: string;
    roots?: string[];
    retrain?: boolean;
    log?: (line: string) => void;
    /** How often a process waiting for another's finder run looks again (default 2 s). */
    lockPollMs?: number;
  } = {},
): Promise<LrFindRecord> {
  const log = run.log ?? ((line: string) => console.log(line));
  const m = studyModel(opts.model);
  const parts = studyFinderParts(opts);
  const key = await lrFindKey(parts);
  const name = runName(m.kerasName, {
    ...opts.variant,
    learningRate: undefined,
    lrSchedule: undefined,
  }, parts.loss);
  const root = run.root ?? runsRoot();
  const roots = run.roots ?? recordRoots();
  // One process computes a finder run at a time, under the same per-key lock as a training run:
  // a second process asking for it waits and reads the first one's record.
  const { result, found } = await computeOnce({
    key,
    describe: `${name}'s learning-rate finder`,
    root,
    retrain: run.retrain ?? retrainRequested(),
    log,
    pollMs: run.lockPollMs,
    find: (quiet) => findLrFind(key, roots, quiet ? () => {} : undefined),
    createdAt: (r) => r.config.createdAt,
    compute: () => computeLrFind(opts, { key, parts, name, root, log }),
  });
  if (found) log(`${name}: learning-rate finder from record ${result.id}`);
  return result;
}

/** The range test of a study finder run, written as a record under `root`. */
async function computeLrFind(
  opts: StudyFinderOptions,
  at: {
    key: string;
    parts: LrFindKeyParts;
    name: string;
    root: string;
    log: (line: string) => void;
  },
): Promise<LrFindRecord> {
  const { key, parts, name, log } = at;
  const m = studyModel(opts.model);
  const s = parts.finder;
  log(
    `${name}: learning-rate finder, ${s.steps} steps of batch ${s.batchSize} from lr ${s.startLr} ` +
      `to ${s.endLr} on ${opts.backend.name} — key ${key}`,
  );
  const model = m.build({ seed: opts.seed, loss: parts.loss, ...parts.model.options });
  try {
    const source = {
      count: opts.train.count,
      batch: (idx: Int32Array) => makeBatch(opts.train, idx, m.format),
    };
    const result = await lrFind(model, source, s, { seed: opts.seed });
    const dir = await saveLrFind({
      key,
      keyParts: parts,
      modelName: name,
      section: m.section,
      backend: opts.backend,
      result,
    }, at.root);
    return await loadLrFind(dir);
  } finally {
    model.dispose();
  }
}

/** The files of a finder record (all of them are published: no weights are kept). */
const LR_FIND_FILES = ["config.json", "curve.csv", "result.json"];

/**
 * Copies a full-profile finder record into `<dest>/.lr-find/` (written under a temporary name,
 * then renamed) and returns its folder; when `dest` already holds a record with the same key
 * (made on another machine, say), that one stays and its folder is returned instead.
 */
export async function publishLrFind(dir: string, dest: string): Promise<string> {
  const record = await loadLrFind(dir);
  const profile = record.config.keyParts.data.profile;
  if (profile !== "full") {
    throw new Error(
      `${record.id} is a ${profile}-profile finder run; records/ holds the study's full-profile ` +
        `runs only`,
    );
  }
  const same = (await finderFolders([dest])).find((f) =>
    f.key === record.config.key && !f.dir.endsWith(`/${record.id}`)
  );
  if (same) return same.dir;
  const base = join(dest, LR_FIND_DIR);
  const final = join(base, record.id);
  await writeDirAtomic(final, async (tmp) => {
    for (const name of LR_FIND_FILES) await Deno.copyFile(join(dir, name), join(tmp, name));
  }, { replace: true });
  return final;
}

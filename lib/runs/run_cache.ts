/**
 * Runs are computed once. Every training run has a key (lib/runs/run_key.ts); asking for a run
 * whose finished record exists uses the record and trains nothing, saying so in one line.
 * Otherwise the run trains with per-epoch backups (so a killed run resumes), its record is
 * written, its backup removed, and the record read back — so what a notebook shows after a
 * fresh run and after a cached one comes from the same place. `MNIST_RETRAIN=1` (or
 * `retrain`) trains even when a record exists.
 *
 * One process trains a key at a time (lib/runs/run_lock.ts): a second one asking for the same run
 * waits for the first and then shows the record it wrote. A damaged record is passed over (and
 * left as it is); a damaged backup is moved aside and the run starts again from epoch 1. When
 * the record cannot be written the trained run is not lost: its last backup holds it, or, when
 * that could not be written either, the record goes to a temporary folder the error names.
 */
import type * as tf from "@tensorflow/tfjs";
import { BackupError, backupPath, inspectBackup, moveAside, removeBackup } from "./backup.ts";
import { formatDuration } from "../report/format.ts";
import { envVar } from "../machine/env.ts";
import { acquireRunLock, lockPath, type StopLine } from "./run_lock.ts";
import type { Profile } from "../study/profile.ts";
import type { ProbeData } from "../train/probe.ts";
import { describeRun, runKey, type RunKeyParts } from "./run_key.ts";
import { estimateSeconds, expectedThroughput } from "./estimate.ts";
import {
  findRun,
  loadRun,
  recordRoots,
  type RunInput,
  type RunRecord,
  runsRoot,
  RunWriteError,
  saveRun,
  type TransferFacts,
} from "./runs.ts";
import type { BackupOptions, FitResult } from "../train/train.ts";
import type { Evaluation } from "../train/evaluate.ts";

/** What identifies and labels a run, besides how it trains. */
export interface RunSpec {
  /** The name its record carries, e.g. "vgg16_scratch (relu convs)". */
  modelName: string;
  section: string;
  keyParts: RunKeyParts;
  profile: Profile;
  backend: { name: string; device: string; why: string; precision: string };
  weightsSource: string;
  label?: string;
}

/** What a training function hands back for the record. */
export interface TrainedRun {
  /** Its weights go into the record; `cachedRun` disposes it (and its optimizer) after. */
  model: tf.LayersModel;
  fit: FitResult;
  evaluation: Evaluation;
  probe?: ProbeData;
  transfer?: TransferFacts;
}

export interface CachedRunOptions {
  /** Train even when a record exists (default: `MNIST_RETRAIN=1`). */
  retrain?: boolean;
  /** Where the record and backup are written (default `runsRoot()`). */
  root?: string;
  /** Where records are looked for (default `recordRoots()`). */
  roots?: string[];
  /** Where the one-line messages go (default console.log). */
  log?: (line: string) => void | Promise<void>;
  /** Write the trained weights beside the record (default true). */
  weights?: boolean;
  /** How often a process waiting for another's run looks again (default 2 s). */
  lockPollMs?: number;
}

/** A run's record, and whether it came from an earlier run. */
export interface RunOutcome {
  record: RunRecord;
  cached: boolean;
}

/** Whether `MNIST_RETRAIN` asks for training even when records exist. */
export function retrainRequested(): boolean {
  const v = envVar("MNIST_RETRAIN");
  return v !== undefined && v !== "0" && v.toLowerCase() !== "false";
}

/** The line a cache hit prints: which record, when and where it was trained, how long it took. */
function cachedLine(r: RunRecord): string {
  const t = r.config.transfer;
  const wall = r.metrics.trainSeconds + (t ? t.extractSeconds : 0);
  return `from run record ${r.id}: trained ${
    r.config.createdAt.slice(0, 16).replace("T", " ")
  } UTC ` +
    `on ${r.config.backend.name} (${r.config.backend.precision}, ${r.config.machine.cpu}), ` +
    `${formatDuration(wall)}`;
}

/**
 * The run's record: an existing one with the same key, else `train` runs (with `backup` for
 * its `fit`) and its result becomes the record. Training holds the key's lock; while another
 * process holds it, this one waits and then shows that process's record.
 */
export async function cachedRun(
  spec: RunSpec,
  train: (backup: BackupOptions) => Promise<TrainedRun>,
  opts: CachedRunOptions = {},
): Promise<RunOutcome> {
  const log = opts.log ?? ((line: string) => console.log(line));
  const key = await runKey(spec.keyParts);
  const root = opts.root ?? runsRoot();
  const roots = opts.roots ?? recordRoots();
  const describe = describeRun(spec.modelName, spec.keyParts);
  const path = backupPath(root, key);
  const { result, found } = await computeOnce({
    key,
    describe,
    root,
    retrain: opts.retrain ?? retrainRequested(),
    log,
    pollMs: opts.lockPollMs,
    find: (quiet) => findRun(key, roots, quiet ? () => {} : undefined),
    createdAt: (r) => r.config.createdAt,
    whereStopped: (signal) => stoppedLine(signal, describe, path),
    compute: async () => {
      await setAsideDamagedBackup(path, describe, log);
      const sps = await expectedThroughput(spec.keyParts, spec.backend, roots);
      const estimate = sps ? `, about ${formatDuration(estimateSeconds(spec.keyParts, sps))}` : "";
      await log(
        `training ${describe} on ${spec.backend.name} ` +
          `(${spec.backend.precision})${estimate} — run key ${key}`,
      );
      const trained = await train({ path, key, describe });
      try {
        const dir = await saveKeepingTheRun(runInput(spec, key, trained), root, path, opts.weights);
        await removeBackup(path);
        return await loadRun(dir);
      } finally {
        // The record is the run's result (its weights are saved beside it): the trained model
        // and its optimizer's moments go now, so a notebook that trains many runs (04: 19 in the
        // quick profile) holds none of them.
        trained.model.optimizer?.dispose();
        trained.model.dispose();
      }
    },
  });
  if (found) await log(cachedLine(result));
  return { record: result, cached: found };
}

/** How `computeOnce` finds and makes a keyed result (a run record, a finder record). */
export interface OnceSpec<T> {
  key: string;
  /** The run in words, for the lines and the lock. */
  describe: string;
  /** The runs folder that holds the lock (and receives the result). */
  root: string;
  /** Compute even when a result exists. */
  retrain: boolean;
  log: (line: string) => void | Promise<void>;
  /** How often a process waiting for another's result looks again (default 2 s). */
  pollMs?: number;
  /** The key's newest result, or null; `quiet` for the looks made while waiting (no repeated warnings). */
  find: (quiet: boolean) => Promise<T | null>;
  /** When a result was written (ISO time). */
  createdAt: (result: T) => string;
  /** Where the computation stood when a signal stopped this process. */
  whereStopped?: StopLine;
  /** Makes and writes the result; runs under the key's lock. */
  compute: () => Promise<T>;
}

/**
 * A keyed result computed once, across processes: the key's existing result, else `compute`'s,
 * made under the key's lock (lib/runs/run_lock.ts) — of several processes asking at once one
 * computes and the others wait and take its result. With `retrain` an existing result is passed
 * over, but one written while this process waited is taken (it was asked for at the same time).
 * `found` says whether the result came from elsewhere rather than from `compute`.
 */
export async function computeOnce<T>(s: OnceSpec<T>): Promise<{ result: T; found: boolean }> {
  if (!s.retrain) {
    const found = await s.find(false);
    if (found) return { result: found, found: true };
  }
  const waitFrom = new Date().toISOString();
  let got;
  try {
    got = await acquireRunLock(lockPath(s.root, s.key), {
      describe: s.describe,
      log: s.log,
      pollMs: s.pollMs,
      done: async () => {
        const r = await s.find(true);
        return r && (!s.retrain || s.createdAt(r) >= waitFrom) ? r : null;
      },
      whereStopped: s.whereStopped,
    });
  } catch (e) {
    // The lock is the first file a run writes: a runs folder that cannot take it cannot take
    // the result either, so say so now rather than after computing it.
    if (e instanceof Deno.errors.PermissionDenied || (e as Error).message?.includes("os error")) {
      throw new RunWriteError(
        `cannot write in the runs folder ${s.root}: ${(e as Error).message}. Check that it is ` +
          `writable and has space, or point RUNS_DIR at one that is.`,
      );
    }
    throw e;
  }
  if (got.lock === undefined) return { result: got.result, found: true };
  const lock = got.lock;
  try {
    // A holder may have finished between our first look and our lock.
    if (!s.retrain) {
      const found = await s.find(true);
      if (found) return { result: found, found: true };
    }
    return { result: await s.compute(), found: false };
  } finally {
    await lock.release();
  }
}

/** What the record of a run trained now is written from. */
function runInput(spec: RunSpec, key: string, trained: TrainedRun): RunInput {
  return {
    model: trained.model,
    modelName: spec.modelName,
    section: spec.section,
    key,
    keyParts: spec.keyParts,
    fit: trained.fit,
    evaluation: trained.evaluation,
    backend: spec.backend,
    profile: spec.profile,
    seed: spec.keyParts.seed,
    weightsSource: spec.weightsSource,
    label: spec.label,
    probe: trained.probe,
    transfer: trained.transfer,
  };
}

/**
 * A damaged backup (truncated, not a backup) is moved aside — kept beside the others as
 * `<file>.damaged-<time>` to look at, never deleted — and the run starts again from epoch 1: a
 * damaged file cannot be resumed from, and stopping would only ask the user to do the same.
 */
async function setAsideDamagedBackup(
  path: string,
  describe: string,
  log: (line: string) => void | Promise<void>,
): Promise<void> {
  try {
    inspectBackup(path);
  } catch (e) {
    if (!(e instanceof BackupError)) throw e;
    const aside = await moveAside(path);
    await log(
      `⚠ ${e.message.replace(/;.*$/, "")}: moved to ${aside}; ${describe} starts again from ` +
        `epoch 1`,
    );
  }
}

/** Where a run stood when a signal stopped its process: the line printed as it exits. */
function stoppedLine(signal: Deno.Signal, describe: string, backup: string): string {
  let header = null;
  try {
    header = inspectBackup(backup);
  } catch {
    // a damaged backup: said as "nothing to resume"
  }
  return header
    ? `stopped by ${signal}: ${describe} after epoch ${header.epoch}/${header.epochs}; its ` +
      `backup ${backup} resumes it when the same run is asked for again`
    : `stopped by ${signal}: ${describe} in its first epoch (no backup yet: it starts again)`;
}

/**
 * Writes the record; when it cannot be written (a full disk, no permission) the error names the
 * folder and the space needed, and says where the trained run is kept: in its last backup when
 * that holds the finished run (asking for the run again writes the record without training), else
 * in a record written to a temporary folder.
 */
async function saveKeepingTheRun(
  input: RunInput,
  root: string,
  backup: string,
  weights: boolean | undefined,
): Promise<string> {
  try {
    return await saveRun(input, { root, weights });
  } catch (e) {
    if (!(e instanceof RunWriteError)) throw e;
    let header = null;
    try {
      header = inspectBackup(backup);
    } catch {
      // damaged: not a place the run is kept
    }
    if (header && header.epoch === input.fit.epochsRun) {
      throw new RunWriteError(
        `${e.message}. The trained run is kept in its backup ${backup} (after epoch ` +
          `${header.epoch}/${header.epochs}): make space and ask for the run again — the record ` +
          `is written without training`,
        e.bytes,
        { cause: e },
      );
    }
    let elsewhere: string;
    try {
      elsewhere = await saveRun(input, {
        root: await Deno.makeTempDir({ prefix: "mnist-run-" }),
        weights,
      });
    } catch {
      throw new RunWriteError(
        `${e.message}. The trained run could not be kept anywhere (its backup and a temporary ` +
          `folder failed too): make space and train it again`,
        e.bytes,
        { cause: e },
      );
    }
    throw new RunWriteError(
      `${e.message}. The trained run was written instead to ${elsewhere}: make space, then move ` +
        `that folder into ${root}`,
      e.bytes,
      { cause: e },
    );
  }
}

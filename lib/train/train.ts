/**
 * Keras-style `fit` over MNIST splits, with the study's settings and our callbacks: live
 * progress, EarlyStopping with Keras's semantics, and a divergence guard. Batches are built one
 * at a time from the uint8 images (preprocess.ts). The loop carries its resumable state in one
 * object (`FitState`), which a per-epoch backup writes and a resume restores (lib/runs/backup.ts).
 * Evaluation is lib/train/evaluate.ts.
 */
import * as tf from "@tensorflow/tfjs";
import pl from "nodejs-polars";
import type { MnistSplit } from "../data/mnist.ts";
import {
  batches,
  type InputFormat,
  makeBatch,
  RGB32,
  type Rng,
  rng,
  shuffled,
} from "../data/preprocess.ts";
import {
  type BackupHeader,
  BackupWriteError,
  type LoopState,
  readBackup,
  restoreBackup,
  saveBackup,
} from "../runs/backup.ts";
import { type BatchSource, evaluate } from "./evaluate.ts";
import { trainStepOnDevice } from "./loss.ts";
import { progressBar, type ProgressReporter, reporterFor } from "./progress.ts";
import { trimGpuPool } from "../kernels/webgpu/webgpu_setup.ts";

/**
 * Anything whose state must survive a resume, saved and restored the same way: the loop's own
 * parts (the random streams, EarlyStopping, the divergence guard) and the caller's callbacks
 * (e.g. the diagnostics probe). `saveState` returns plain JSON (NaN and ±Infinity allowed).
 */
export interface StatefulCallback<S = unknown> {
  saveState(): S;
  restoreState(state: S): void;
}

/** EarlyStopping's settings and bookkeeping, as a backup holds them. */
export interface EarlyStoppingState {
  monitor: "loss" | "val_loss";
  patience: number;
  minDelta: number;
  best: number;
  wait: number;
  bestEpoch: number;
  stoppedEpoch: number;
}

/** Keras's `EarlyStopping(monitor, patience, min_delta)` in mode "min", as a pure state machine. */
export class EarlyStopping implements StatefulCallback<EarlyStoppingState> {
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

  saveState(): EarlyStoppingState {
    const { monitor, patience, minDelta, best, wait, bestEpoch, stoppedEpoch } = this;
    return { monitor, patience, minDelta, best, wait, bestEpoch, stoppedEpoch };
  }

  /** Continues from `saveState()` (settings included: a backup of the same run has the same). */
  restoreState(s: EarlyStoppingState): void {
    Object.assign(this, s);
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

/** Everything the divergence guard has seen, as a backup holds it. */
export interface DivergenceGuardState {
  best: number;
  smooth: number | null;
  bestSmooth: number;
  batches: number;
}

/**
 * Judges a loss value: a NaN/Inf loss is divergence, and so is an epoch loss that explodes
 * to `factor`× its best and at least 0.5 above it (a small loss doubling is noise, not collapse).
 */
export class DivergenceGuard implements StatefulCallback<DivergenceGuardState> {
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

  /** Everything the guard has seen, for a backup. */
  saveState(): DivergenceGuardState {
    return {
      best: this.best,
      smooth: this.#smooth,
      bestSmooth: this.#bestSmooth,
      batches: this.#batches,
    };
  }

  /** Continues from a backup's `saveState()`. */
  restoreState(s: DivergenceGuardState): void {
    this.best = s.best;
    this.#smooth = s.smooth;
    this.#bestSmooth = s.bestSmooth;
    this.#batches = s.batches;
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

/**
 * Training steps between two reads of the loss on a GPU backend. The read started after step k
 * is awaited after step k + N: by then the GPU has long finished step k, so training never waits
 * on it, and no more than N steps are queued ahead of the GPU. Progress, `onBatchEnd` and the
 * divergence guard see each step's loss up to 2N steps late (a diverged run stops that much
 * later). On CPU backends a read costs nothing: every step is read at once (N = 1).
 */
export const GPU_READ_EVERY = 16;

/** Steps between loss reads on `backend` (the current one by default): see GPU_READ_EVERY. */
export function readEvery(backend = tf.getBackend()): number {
  return backend === "webgpu" ? GPU_READ_EVERY : 1;
}

/** One training step's numbers, once read back. */
export interface StepOutcome {
  batch: number;
  /** Samples in the batch. */
  n: number;
  loss: number;
  accuracy: number;
}

/**
 * Collects steps' loss and accuracy scalars on the backend and reads them back together, one
 * asynchronous read per `every` steps (every = 1: each step at once). `push` hands back the
 * steps whose read has finished, in order; `flush` reads the rest and hands back everything.
 */
export class StepReads {
  #queued: { batch: number; n: number; loss: tf.Scalar; accuracy: tf.Scalar }[] = [];
  #reading: Promise<StepOutcome[]> | null = null;
  constructor(readonly every: number) {}

  async push(batch: number, n: number, loss: tf.Scalar, accuracy: tf.Scalar) {
    this.#queued.push({ batch, n, loss, accuracy });
    if (this.#queued.length < this.every) return [];
    if (this.every === 1) return await this.#read();
    const done = this.#reading ? await this.#reading : [];
    this.#reading = this.#read();
    return done;
  }

  async flush(): Promise<StepOutcome[]> {
    const done = this.#reading ? await this.#reading : [];
    this.#reading = null;
    return this.#queued.length ? [...done, ...await this.#read()] : done;
  }

  /** Starts one read of every queued step (one stacked tensor) and frees the scalars. */
  #read(): Promise<StepOutcome[]> {
    const steps = this.#queued;
    this.#queued = [];
    const scalars = steps.flatMap((s) => [s.loss, s.accuracy]);
    const packed = tf.stack(scalars);
    tf.dispose(scalars);
    return packed.data().then((v) => {
      packed.dispose();
      return steps.map((s, i) => ({
        batch: s.batch,
        n: s.n,
        loss: v[2 * i],
        accuracy: v[2 * i + 1],
      }));
    });
  }
}

/** Per-epoch backups of this fit, so a killed run resumes (lib/runs/backup.ts). */
export interface BackupOptions {
  /** The backup file, e.g. `backupPath(runsRoot(), key)`. */
  path: string;
  /** The run's key; a backup with another key is never restored. */
  key: string;
  /** Words for the resume line, e.g. "vgg16_scratch (full, seed 42)". */
  describe: string;
  /** Test hook: called between writing the temporary file and renaming it. */
  beforeRename?: (tmpPath: string) => void | Promise<void>;
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
  /**
   * Where progress shows: a reporter (lib/train/progress.ts), `true` (default: the notebook's live
   * line) or `false` (nothing).
   */
  progress?: boolean | ProgressReporter;
  onEpochEnd?: (logs: EpochLogs, model: tf.LayersModel) => void | Promise<void>;
  onBatchEnd?: (epoch: number, batch: number, loss: number) => void | Promise<void>;
  /**
   * The optimizer's learning rate for each step (counted from 0 over the whole run, as Keras's
   * `optimizer.iterations`), e.g. a schedule from lib/train/lr_schedule.ts; default: the compiled rate.
   */
  learningRate?: (step: number) => number;
  /** Prefix of the progress line, e.g. "head (study)". */
  label?: string;
  /** Write a backup after every epoch and resume from it (Keras's BackupAndRestore). */
  backup?: BackupOptions;
  /** Callbacks whose state goes into the backup with the loop's. */
  stateful?: StatefulCallback[];
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
  /** Training wall time, summed over every session of a resumed run. */
  seconds: number;
  samplesPerSecond: number;
  /** The epoch a backup was restored from (0 when the run started fresh). */
  resumedFrom: number;
}

export { progressBar };

/**
 * Runs `fn` with `Math.random` drawn from `random`. tfjs has no global seed: its unseeded
 * random ops (dropout masks) seed themselves from `Math.random`, so this makes them repeat.
 */
async function withRandom<T>(random: Rng | null, fn: () => Promise<T>): Promise<T> {
  if (!random) return await fn();
  const original = Math.random;
  Math.random = random;
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
  const seed = opts.seed ?? Math.floor(Math.random() * 2 ** 31);
  const dropout = opts.seed === undefined ? null : rng(opts.seed ^ 0x5bd1e995);
  return withRandom(dropout, () => fitLoop(model, train, opts, rng(seed), dropout));
}

/**
 * Everything the fit loop carries from one epoch to the next besides the tensors: what a backup
 * writes after each epoch (`loopJson`) and a resume restores in one assignment (`fitStateOf`).
 */
export interface FitState {
  /** Finished epochs (a backup keeps it in its header). */
  epoch: number;
  /** The finished epochs' logs: the history. */
  rows: EpochLogs[];
  divergence: Divergence | null;
  stoppedEarly: boolean;
  /** Samples trained on and seconds spent in training batches, over every session: throughput. */
  samples: number;
  batchSeconds: number;
  /** Training wall time up to the last finished epoch, summed over every session. */
  seconds: number;
  /**
   * The state of each part that keeps its own, as of the last backup or the one resumed from
   * (null before either: nothing to restore).
   */
  parts: PartStates | null;
}

/** The parts of a fit that keep their own state, each a `StatefulCallback`. */
interface FitParts {
  /** The stream that shuffles every epoch. */
  shuffle: StatefulCallback<number>;
  /** The stream dropout masks are drawn from (a seeded fit only). */
  dropout: StatefulCallback<number> | null;
  stopper: EarlyStopping | null;
  guard: DivergenceGuard;
  /** The caller's (`opts.stateful`). */
  stateful: StatefulCallback[];
}

/** What each of `FitParts` saved, under the same names. */
interface PartStates {
  shuffle: number;
  dropout: number | null;
  stopper: EarlyStoppingState | null;
  guard: DivergenceGuardState;
  stateful: unknown[];
}

/** A random stream (lib/data/preprocess.ts's `Rng`, whose position is its `state`) as a part. */
function streamPart(stream: Rng): StatefulCallback<number> {
  return {
    saveState: () => stream.state,
    restoreState: (s) => {
      stream.state = s;
    },
  };
}

function saveParts(p: FitParts): PartStates {
  return {
    shuffle: p.shuffle.saveState(),
    dropout: p.dropout ? p.dropout.saveState() : null,
    stopper: p.stopper ? p.stopper.saveState() : null,
    guard: p.guard.saveState(),
    stateful: p.stateful.map((c) => c.saveState()),
  };
}

/** Continues each part from its saved state; a part this fit or the backup lacks is left as it is. */
function restoreParts(p: FitParts, s: PartStates): void {
  p.shuffle.restoreState(s.shuffle);
  if (p.dropout && s.dropout !== null) p.dropout.restoreState(s.dropout);
  if (p.stopper && s.stopper) p.stopper.restoreState(s.stopper);
  p.guard.restoreState(s.guard);
  p.stateful.forEach((c, i) => c.restoreState(s.stateful[i]));
}

/**
 * A `FitState` as a backup's `loop` JSON: one flat object with the fields, in the order, that
 * backups have always had (so older backups resume and newer ones read the same), the epoch
 * left to the header, NaN and ±Infinity kept as strings (`nonFinite`).
 */
function loopJson({ parts, ...s }: FitState): LoopState {
  if (!parts) throw new Error("a backup needs its parts' states: saveParts first");
  const loop: LoopJson = {
    rows: s.rows,
    shuffle: parts.shuffle,
    dropout: parts.dropout,
    stopper: parts.stopper,
    guard: parts.guard,
    divergence: s.divergence,
    stoppedEarly: s.stoppedEarly,
    samples: s.samples,
    batchSeconds: s.batchSeconds,
    seconds: s.seconds,
    stateful: parts.stateful,
  };
  return JSON.parse(JSON.stringify(loop, nonFinite));
}

/** A backup's `loop` JSON, NaN and ±Infinity revived: a `FitState` flat, less its epoch. */
type LoopJson = Omit<FitState, "epoch" | "parts"> & PartStates;

/** The `FitState` a backup holds: `loopJson` undone, the epoch from the header. */
function fitStateOf(header: BackupHeader): FitState & { parts: PartStates } {
  const loop = reviveNonFinite(header.loop) as unknown as LoopJson;
  const { shuffle, dropout, stopper, guard, stateful, ...s } = loop;
  return { ...s, epoch: header.epoch, parts: { shuffle, dropout, stopper, guard, stateful } };
}

/**
 * Sets the rate of the model's Adam, which reads it at every update (tfjs's SGD, by contrast,
 * keeps it in a tensor made once), so a schedule takes effect from the next step.
 */
function setLearningRate(model: tf.LayersModel, rate: number): void {
  const opt = model.optimizer;
  // By class name: tfjs's optimizers answer `instanceof` for any optimizer class.
  if (opt?.getClassName() !== "Adam") {
    throw new Error(
      `a learning-rate schedule needs the model compiled with Adam, got ${opt?.getClassName()}`,
    );
  }
  (opt as unknown as { learningRate: number }).learningRate = rate;
}

async function fitLoop(
  model: tf.LayersModel,
  train: BatchSource,
  opts: SourceFitOptions,
  random: Rng,
  dropout: Rng | null,
): Promise<FitResult> {
  const progress = reporterFor(opts.progress, opts.label ?? "");
  const stopper = opts.earlyStopping
    ? new EarlyStopping(
      opts.earlyStopping.monitor,
      opts.earlyStopping.patience,
      opts.earlyStopping.minDelta,
    )
    : null;
  const guardMode = opts.divergence ?? "stop";
  const guard = new DivergenceGuard();
  const parts: FitParts = {
    shuffle: streamPart(random),
    dropout: dropout ? streamPart(dropout) : null,
    stopper,
    guard,
    stateful: opts.stateful ?? [],
  };
  let state: FitState = {
    epoch: 0,
    rows: [],
    divergence: null,
    stoppedEarly: false,
    samples: 0,
    batchSeconds: 0,
    seconds: 0,
    parts: null,
  };

  if (opts.backup) {
    const backup = await readBackup(opts.backup.path);
    if (backup && backup.header.key === opts.backup.key) {
      await restoreBackup(model, backup);
      const resumed = fitStateOf(backup.header);
      restoreParts(parts, resumed.parts);
      state = resumed;
      await progress.note(
        `resuming ${opts.backup.describe} after epoch ${state.epoch}/${opts.epochs} — backup of ${
          backup.header.savedAt.slice(0, 19).replace("T", " ")
        } UTC`,
      );
    } else if (backup) {
      tf.dispose([...backup.model, ...backup.optimizer].map((n) => n.tensor));
    }
  }
  const start = state.epoch, earlierSeconds = state.seconds;
  const t0 = performance.now();
  const finished = () => state.stoppedEarly || (state.divergence !== null && guardMode === "stop");

  while (state.epoch < opts.epochs && !finished()) {
    const epoch = state.epoch;
    const e0 = performance.now();
    const order = batches(shuffled(train.count, random), opts.batchSize);
    let lossSum = 0, accSum = 0, seen = 0;
    let batchDivergence: Divergence | null = null;
    // Steps' losses are read in arrears (StepReads): true once a read one says "stop".
    const take = async (done: StepOutcome[]): Promise<boolean> => {
      for (const { batch: b, n, loss, accuracy: acc } of done) {
        lossSum += loss * n;
        accSum += acc * n;
        seen += n;
        await opts.onBatchEnd?.(epoch, b, loss);
        if (guardMode !== "off" && !batchDivergence) {
          batchDivergence = guard.checkBatch(epoch, b, loss);
          if (batchDivergence && guardMode === "stop") return true;
        }
        await progress.batch({
          epoch,
          epochs: opts.epochs,
          seen,
          count: train.count,
          loss: lossSum / seen,
          accuracy: accSum / seen,
          samplesPerSecond: seen / Math.max((performance.now() - e0) / 1000, 1e-9),
        });
      }
      return false;
    };
    const reads = new StepReads(readEvery());
    let stop = false;
    for (let b = 0; b < order.length && !stop; b++) {
      if (opts.learningRate) setLearningRate(model, opts.learningRate(epoch * order.length + b));
      const { x, y } = train.batch(order[b]);
      const { loss, accuracy } = trainStepOnDevice(model, x, y);
      tf.dispose([x, y]);
      state.samples += order[b].length;
      stop = await take(await reads.push(b, order[b].length, loss, accuracy));
    }
    const rest = await reads.flush();
    if (!stop) await take(rest);
    const logs: EpochLogs = {
      epoch: epoch + 1,
      loss: lossSum / seen,
      accuracy: accSum / seen,
      seconds: 0,
    };
    state.batchSeconds += (performance.now() - e0) / 1000;
    if (opts.validate) {
      const val = await opts.validate();
      logs.val_loss = val.loss;
      logs.val_accuracy = val.accuracy;
    }
    logs.seconds = (performance.now() - e0) / 1000;
    state.rows.push(logs);
    trimGpuPool(); // GPU buffers of sizes this epoch did not use (lib/kernels/webgpu/webgpu_setup.ts)
    await opts.onEpochEnd?.(logs, model);
    await progress.epoch({ ...logs, epochs: opts.epochs, count: train.count });
    if (guardMode !== "off") {
      const verdict = batchDivergence ?? guard.checkEpoch(epoch, logs.loss);
      if (verdict && !state.divergence) {
        state.divergence = verdict;
        console.warn(`⚠ training diverged: ${verdict.reason}`);
      }
    }
    if (stopper && !(state.divergence && guardMode === "stop")) {
      const value = stopper.monitor === "loss" ? logs.loss : logs.val_loss;
      if (value === undefined) {
        throw new Error("EarlyStopping monitors val_loss but no validation split was given");
      }
      state.stoppedEarly = stopper.update(epoch, value);
    }
    state.epoch = epoch + 1;
    state.seconds = earlierSeconds + (performance.now() - t0) / 1000;
    if (opts.backup) {
      state.parts = saveParts(parts);
      await backUp(model, opts.backup, opts.epochs, state);
    }
  }
  return {
    history: historyFrame(state.rows),
    epochsRun: state.rows.length,
    stoppedEarly: state.stoppedEarly,
    divergence: state.divergence,
    seconds: earlierSeconds + (performance.now() - t0) / 1000,
    // Training throughput: batches only (the epoch seconds also include validation, as Keras's do).
    samplesPerSecond: state.samples / Math.max(state.batchSeconds, 1e-9),
    resumedFrom: start,
  };
}

/** Writes `state` after its epoch; one that cannot be written is a warning, not the run's end. */
async function backUp(
  model: tf.LayersModel,
  backup: BackupOptions,
  epochs: number,
  state: FitState,
): Promise<void> {
  try {
    await saveBackup(
      backup.path,
      {
        key: backup.key,
        describe: backup.describe,
        epoch: state.epoch,
        epochs,
        loop: loopJson(state),
      },
      model,
      { beforeRename: backup.beforeRename },
    );
  } catch (e) {
    // A backup that cannot be written (full disk) must not end the run: the previous one
    // stays as it was, training goes on and the next epoch tries again.
    if (!(e instanceof BackupWriteError)) throw e;
    console.warn(
      `⚠ after epoch ${state.epoch}/${epochs}: ${e.message}; training goes on and the ` +
        `next epoch tries again`,
    );
  }
}

/** JSON keeps NaN and ±Infinity as strings (a diverged run's losses must survive a resume). */
function nonFinite(_key: string, v: unknown): unknown {
  return typeof v === "number" && !Number.isFinite(v) ? `__${v}` : v;
}

/** Undoes `nonFinite` on a parsed value. */
function reviveNonFinite<T>(value: T): T {
  return JSON.parse(
    JSON.stringify(value),
    (_k, v) => typeof v === "string" && /^__(NaN|-?Infinity)$/.test(v) ? Number(v.slice(2)) : v,
  );
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

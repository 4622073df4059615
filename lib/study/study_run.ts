/**
 * One of the study's from-scratch models, trained once: its settings from the study's table
 * (lib/study/settings.ts), its key, and the cached record or a fresh, resumable training run. The
 * notebooks and the train CLI both call `studyRun`, so the same run asked for from either
 * gives the same key and one record.
 */
import { TrainingProbe } from "../train/probe.ts";
import type { LossKind } from "../train/loss.ts";
import { scheduleFn, scheduleSpec } from "../train/lr_schedule.ts";
import type { MnistSplit } from "../data/mnist.ts";
import type { VggOptions } from "../models/vgg_small.ts";
import type { Profile } from "./profile.ts";
import { epochsFor } from "./profile.ts";
import { type ProgressReporter, reporterFor } from "../train/progress.ts";
import { cachedRun, type CachedRunOptions, type RunOutcome } from "../runs/run_cache.ts";
import { kerasAdam, type RunKeyParts } from "../runs/run_key.ts";
import { type ModelName, studyModel, type Variant } from "./settings.ts";
import { fit } from "../train/train.ts";
import { evaluate } from "../train/evaluate.ts";

export interface StudyRunOptions extends CachedRunOptions {
  model: ModelName;
  profile: Profile;
  backend: { name: string; device: string; why: string; precision: string };
  train: MnistSplit;
  test: MnistSplit;
  seed: number;
  variant?: Variant;
  /** Default "logits" (Keras 2.x); "clipped" is tfjs's form (lib/train/loss.ts). */
  loss?: LossKind;
  /** Default: the study's, capped by the profile. */
  epochs?: number;
  batchSize?: number;
  onDivergence?: "stop" | "warn" | "off";
  /** Record name; default from the model and its departures from the study (`runName`). */
  modelName?: string;
  progress?: boolean | ProgressReporter;
}

/** A run's model name with any departure from the study, e.g. "vgg16_scratch (relu convs, lr 0.0001)". */
export function runName(kerasName: string, v: Variant = {}, loss: LossKind = "logits"): string {
  const parts = [
    v.convActivation && v.convActivation !== "linear" ? `${v.convActivation} convs` : "",
    v.convInit === "he" ? "He init" : "",
    v.batchNorm ? "BatchNorm" : "",
    v.learningRate !== undefined && v.learningRate !== 0.001 ? `lr ${v.learningRate}` : "",
    v.lrSchedule === "cosine" ? "cosine lr" : "",
    loss === "clipped" ? "clipped loss" : "",
  ].filter(Boolean);
  return parts.length ? `${kerasName} (${parts.join(", ")})` : kerasName;
}

/** What a run's key needs of its options: the data only by size. */
export type KeyOptions = Omit<StudyRunOptions, "train" | "test"> & {
  train: { count: number };
  test: { count: number };
};

/** The key parts of a study run: the table's settings with this call's changes. */
export function studyKeyParts(opts: KeyOptions): RunKeyParts {
  const m = studyModel(opts.model);
  const v = opts.variant ?? {};
  const vgg = m.name !== "baseline";
  if (!vgg && (v.convActivation || v.convInit || v.batchNorm)) {
    throw new Error("conv activation, conv init and BatchNorm apply to the VGG models only");
  }
  const epochs = opts.epochs ?? epochsFor(opts.profile, m.epochs);
  const batchSize = opts.batchSize ?? m.batchSize;
  const schedule = scheduleSpec(v.lrSchedule, epochs, Math.ceil(opts.train.count / batchSize));
  return {
    model: {
      builder: m.name,
      // Defaults written out, so "the study's settings" has one key however it is asked for.
      options: vgg
        ? {
          convActivation: v.convActivation ?? "linear",
          convInit: v.convInit ?? "glorot",
          batchNorm: v.batchNorm ?? false,
        }
        : {},
    },
    training: {
      epochs,
      batchSize,
      // A constant rate adds nothing, so runs trained before schedules existed keep their keys.
      optimizer: { ...kerasAdam(v.learningRate ?? 0.001), ...(schedule ? { schedule } : {}) },
      loss: opts.loss ?? "logits",
      earlyStopping: m.earlyStopping,
      validation: m.validation,
      onDivergence: opts.onDivergence ?? "stop",
    },
    data: {
      profile: opts.profile.name,
      trainSamples: opts.train.count,
      testSamples: opts.test.count,
      input: m.input,
    },
    seed: opts.seed,
    weights: "random init",
    backend: opts.backend.name as RunKeyParts["backend"],
    precision: opts.backend.precision as RunKeyParts["precision"],
  };
}

/**
 * The run's record: from an earlier run with the same key, or trained now (resuming from a
 * backup when one exists). VGG16 runs carry the diagnostics probe (notebook 04 shows it).
 */
export function studyRun(opts: StudyRunOptions): Promise<RunOutcome> {
  const m = studyModel(opts.model);
  const parts = studyKeyParts(opts);
  const t = parts.training;
  // One reporter for the run's own lines (cached, training, resuming) and its progress, so a
  // notebook shows them as display outputs in order.
  const progress = reporterFor(opts.progress);
  return cachedRun({
    modelName: opts.modelName ?? runName(m.kerasName, opts.variant, t.loss),
    section: m.section,
    keyParts: parts,
    profile: opts.profile,
    backend: opts.backend,
    weightsSource: "random init (glorot uniform)",
  }, async (backup) => {
    const model = m.build({
      seed: opts.seed,
      learningRate: t.optimizer.learningRate,
      loss: t.loss,
      ...parts.model.options,
    } as VggOptions);
    const probe = m.name === "vgg16_scratch"
      ? new TrainingProbe(opts.test, m.format, "block5_pool")
      : null;
    try {
      const result = await fit(model, opts.train, {
        epochs: t.epochs,
        batchSize: t.batchSize,
        format: m.format,
        seed: opts.seed,
        learningRate: t.optimizer.schedule
          ? scheduleFn(t.optimizer.learningRate, t.optimizer.schedule)
          : undefined,
        validation: t.validation === "test" ? opts.test : undefined,
        earlyStopping: t.earlyStopping ?? undefined,
        divergence: t.onDivergence,
        progress,
        backup,
        onBatchEnd: probe?.onBatchEnd,
        onEpochEnd: probe?.onEpochEnd,
        stateful: probe ? [probe] : [],
      });
      const evaluation = await evaluate(model, opts.test, { format: m.format });
      return { model, fit: result, evaluation, probe: probe?.data };
    } finally {
      probe?.dispose();
    }
  }, { log: (line) => progress.note(line), ...opts });
}

/**
 * The seed notebook 04 trains in full after its sweep: the first sweep seed whose run got past
 * the sweep's accuracy bar, or null when none did (or a run is missing).
 */
export function pickTrainingSeed(
  sweep: { seed: number; testAccuracy: number | null }[],
  above: number,
): number | null {
  for (const r of sweep) {
    if (r.testAccuracy === null) return null;
    if (r.testAccuracy > above) return r.seed;
  }
  return null;
}

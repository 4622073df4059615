/**
 * The study's models and their settings, in one table: builder, input format, batch size,
 * epochs, callbacks and section. The notebooks, the train CLI, the bench, the profiler and the
 * report's plan all read it, so a setting changes in one place.
 */
import type * as tf from "@tensorflow/tfjs";
import { buildHead, VGG16_HEAD } from "../models/heads.ts";
import { buildBaseline } from "../models/baseline.ts";
import { buildVgg16Scratch } from "../models/vgg16_scratch.ts";
import { buildVggSmall, type VggOptions } from "../models/vgg_small.ts";
import { GRAY32, type InputFormat, RGB32 } from "../data/preprocess.ts";
import type { TrainingSettings } from "../runs/run_key.ts";
import type { LrScheduleName } from "../train/lr_schedule.ts";

/** The models trained from scratch, by the name the CLI and bench use. */
export type ModelName = "baseline" | "vgg_small" | "vgg16_scratch";

/** One of the study's from-scratch models with the settings the study trained it with. */
export interface StudyModel {
  name: ModelName;
  /** The Keras model name its builder gives (and its run records carry). */
  kerasName: string;
  /** The notebook that presents it. */
  section: string;
  title: string;
  build: (opts: VggOptions) => tf.LayersModel;
  format: InputFormat;
  /** `format`'s name in records and keys. */
  input: "RGB32" | "GRAY32";
  batchSize: number;
  epochs: number;
  /** Which training set of the profile it uses ("vgg": the profile's VGG-sized one). */
  data: "default" | "vgg";
  /** The study's EarlyStopping (monitor loss, patience 3), or none. */
  earlyStopping: TrainingSettings["earlyStopping"];
  /** The study validated its VGG runs on the test set every epoch. */
  validation: TrainingSettings["validation"];
}

export const STUDY_MODELS: Record<ModelName, StudyModel> = {
  baseline: {
    name: "baseline",
    kerasName: "baseline_cnn",
    section: "02_baseline_cnn",
    title: "baseline CNN",
    build: buildBaseline,
    format: RGB32,
    input: "RGB32",
    batchSize: 32,
    epochs: 5,
    data: "default",
    earlyStopping: null,
    validation: null,
  },
  vgg_small: {
    name: "vgg_small",
    kerasName: "vgg_small",
    section: "03_vgg_small",
    title: "VGG-style net",
    build: buildVggSmall,
    format: GRAY32,
    input: "GRAY32",
    batchSize: 100,
    epochs: 10,
    data: "vgg",
    earlyStopping: { monitor: "loss", patience: 3, minDelta: 0 },
    validation: "test",
  },
  vgg16_scratch: {
    name: "vgg16_scratch",
    kerasName: "vgg16_scratch",
    section: "04_vgg16_scratch",
    title: "VGG16 from scratch",
    build: buildVgg16Scratch,
    format: RGB32,
    input: "RGB32",
    batchSize: 100,
    epochs: 10,
    data: "vgg",
    earlyStopping: { monitor: "loss", patience: 3, minDelta: 0 },
    validation: "test",
  },
};

/** The transfer heads (notebooks 05/06): trained on cached features of a frozen base. */
export const TRANSFER_HEADS = {
  vgg16: {
    section: "05_transfer_vgg16",
    kerasName: "vgg16_imagenet_head",
    batchSize: 64,
    epochs: 40,
    /** Keras's own preprocessing for this base, compared with the study's [0, 1] input. */
    kerasPreprocessing: "caffe",
    /** The quick profile's images for this base (~80 images/s on a 2-core CPU). */
    quick: { train: 1000, test: 250 },
  },
  resnet152v2: {
    section: "06_transfer_resnet152v2",
    kerasName: "resnet152v2_head",
    batchSize: 256,
    epochs: 40,
    kerasPreprocessing: "tf",
    /** The quick profile's images for this base (~30 images/s on a 2-core CPU). */
    quick: { train: 500, test: 200 },
  },
} as const;

/** A departure from the study's settings for the VGG nets (notebook 04's experiments). */
export interface Variant {
  convActivation?: "linear" | "relu";
  convInit?: "glorot" | "he";
  batchNorm?: boolean;
  learningRate?: number;
  /** "cosine": Keras's CosineDecay from the learning rate to 0 over the run's steps. */
  lrSchedule?: LrScheduleName;
}

/** A study model by name, or an error naming the choices. */
export function studyModel(name: string): StudyModel {
  const m = STUDY_MODELS[name as ModelName];
  if (!m) {
    throw new Error(
      `unknown model "${name}"; choose one of ${Object.keys(STUDY_MODELS).join(", ")}`,
    );
  }
  return m;
}

/** A transfer section's name in `TRANSFER_HEADS` (the base's name). */
export type TransferName = keyof typeof TRANSFER_HEADS;

/** A model as the bench and the profiler time it: builder, the study's batch size, input shape. */
export interface BenchModel {
  build: () => tf.LayersModel;
  batch: number;
  input: number[];
}

/**
 * The models `deno task bench` and bench/profile.ts time, from the tables above: the study's
 * from-scratch models (VGG16 under "vgg16", the PyTorch peer bench's name) and notebook 05's head
 * on its 1×1×512 features (profiler only).
 */
export function benchModels(opts: { heads?: boolean } = {}): Record<string, BenchModel> {
  const out: Record<string, BenchModel> = {};
  for (const m of Object.values(STUDY_MODELS)) {
    out[m.name === "vgg16_scratch" ? "vgg16" : m.name] = {
      build: () => m.build({ seed: 1 }),
      batch: m.batchSize,
      input: [32, 32, m.format.channels],
    };
  }
  if (opts.heads) {
    out.vgg16_head = {
      build: () => buildHead([1, 1, 512], VGG16_HEAD, { seed: 1 }),
      batch: TRANSFER_HEADS.vgg16.batchSize,
      input: [1, 1, 512],
    };
  }
  return out;
}

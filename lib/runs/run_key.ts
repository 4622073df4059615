/**
 * A run's key: everything that determines a training run — the model builder and its options,
 * the training settings, the data selection, the seed, the weights of a transfer base, the
 * backend kind and numeric precision — written as canonical JSON and hashed. The same key is
 * the same run: its record is used instead of training again; any changed part is a new run.
 */
import type { BackendName, Precision } from "../machine/backend.ts";
import type { LossKind } from "../train/loss.ts";
import type { LrScheduleSpec } from "../train/lr_schedule.ts";

/** How a run trains (the settings `fit` is given). */
export interface TrainingSettings {
  epochs: number;
  batchSize: number;
  optimizer: {
    name: "adam";
    learningRate: number;
    beta1: number;
    beta2: number;
    epsilon: number;
    /** How the rate changes during the run; absent for a constant rate (Keras's default). */
    schedule?: LrScheduleSpec;
  };
  loss: LossKind;
  earlyStopping: { monitor: "loss" | "val_loss"; patience: number; minDelta: number } | null;
  /** The split evaluated after each epoch ("test", as the study's VGG runs), or none. */
  validation: "test" | null;
  /** What the divergence guard does: it can end a run, so it is part of what the run is. */
  onDivergence: "stop" | "warn" | "off";
}

/** Which data a run sees. */
export interface DataSelection {
  profile: "full" | "reduced" | "quick";
  trainSamples: number;
  testSamples: number;
  /** The model's input, e.g. "RGB32", "GRAY32", or "features: vgg16 base (study)". */
  input: string;
}

/** Everything that determines a run. */
export interface RunKeyParts {
  /** The builder (e.g. "vgg16_scratch") and its options (conv activation, init, BatchNorm…). */
  model: { builder: string; options: Record<string, unknown> };
  training: TrainingSettings;
  data: DataSelection;
  seed: number;
  /** Where a transfer base's weights come from ("random init" for models trained from scratch). */
  weights: string;
  backend: BackendName;
  precision: Precision;
}

/** Adam with Keras's defaults at a given learning rate (the study's optimizer). */
export function kerasAdam(learningRate = 0.001): TrainingSettings["optimizer"] {
  return { name: "adam", learningRate, beta1: 0.9, beta2: 0.999, epsilon: 1e-7 };
}

/** JSON with object keys sorted at every level, so equal parts always give equal text. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(
    value,
    (_k, v) =>
      v && typeof v === "object" && !Array.isArray(v)
        ? Object.fromEntries(
          Object.keys(v).sort().filter((k) => v[k] !== undefined).map((k) => [k, v[k]]),
        )
        : v,
  );
}

/** The key: the first 16 hex digits of SHA-256 over the canonical JSON of the parts. */
export async function runKey(parts: RunKeyParts): Promise<string> {
  const digest = await crypto.subtle.digest(
    "SHA-256",
    new TextEncoder().encode(canonicalJson(parts)),
  );
  return [...new Uint8Array(digest).slice(0, 8)].map((b) => b.toString(16).padStart(2, "0"))
    .join("");
}

/** Words for a run in progress lines, e.g. "vgg16_scratch (full, seed 42)". */
export function describeRun(modelName: string, parts: RunKeyParts): string {
  return `${modelName} (${parts.data.profile}, seed ${parts.seed})`;
}

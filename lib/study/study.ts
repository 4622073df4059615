/**
 * The opening of every model notebook in one call: profile, backend, data. Keeps the first
 * cell of each section to a couple of lines and the same everywhere.
 */
import { type BackendInfo, initBackend } from "../machine/backend.ts";
import { loadMnist, type Mnist, type MnistSplit } from "../data/mnist.ts";
import { currentProfile, describeProfile, type Profile, profileSplits } from "./profile.ts";
import { type ModelName, STUDY_MODELS, TRANSFER_HEADS, type TransferName } from "./settings.ts";
import { fullProfileWarning, planStudy } from "../runs/plan.ts";

export interface StudySetup {
  profile: Profile;
  backend: BackendInfo;
  mnist: Mnist;
  /** The training split this profile uses. */
  train: MnistSplit;
  /** The test split this profile uses. */
  test: MnistSplit;
}

/**
 * Reads the profile, starts the backend (printing which and why) and loads MNIST. Given one
 * of the study's models (or transfer bases), takes the training set its settings name (the VGG
 * sections use the profile's VGG-sized one) and, on the full profile on a CPU, says up front
 * how long that notebook's runs not yet recorded will take; `"vgg"` asks for the VGG-sized set.
 */
export async function setupStudy(
  section: ModelName | TransferName | "default" | "vgg" = "default",
): Promise<StudySetup> {
  const profile = currentProfile();
  console.log(describeProfile(profile));
  const backend = await initBackend();
  const notebook = section in STUDY_MODELS
    ? STUDY_MODELS[section as ModelName].section
    : section in TRANSFER_HEADS
    ? TRANSFER_HEADS[section as TransferName].section
    : null;
  if (notebook) {
    const warning = fullProfileWarning(
      await planStudy(profile, backend, { notebook }),
      profile,
      backend,
    );
    if (warning) console.log(warning);
  }
  const mnist = await loadMnist();
  const data = section === "vgg" ||
      (section in STUDY_MODELS && STUDY_MODELS[section as ModelName].data === "vgg")
    ? "vgg"
    : "default";
  const { train, test } = profileSplits(mnist, profile, data);
  console.log(`data: ${train.count} train / ${test.count} test digits from ${mnist.source}`);
  return { profile, backend, mnist, train, test };
}

/** Test loss and accuracy as one line, as Keras's `evaluate` prints them. */
export function testLine(e: { loss: number; accuracy: number; labels: Uint8Array }): string {
  return `test loss ${e.loss.toFixed(4)} · test accuracy ${(100 * e.accuracy).toFixed(2)}% ` +
    `(${e.labels.length} digits)`;
}

/** A table caption for a run's history: epochs, time, speed, backend, and the record it is from. */
export function runCaption(r: {
  id: string;
  metrics: {
    epochsRun: number;
    stoppedEarly: boolean;
    trainSeconds: number;
    samplesPerSecond: number;
  };
  config: { backend: { name: string; precision: string }; createdAt: string };
}): string {
  const m = r.metrics;
  return `${m.epochsRun} epochs${m.stoppedEarly ? " (stopped early)" : ""} in ${
    m.trainSeconds.toFixed(0)
  } s · ${m.samplesPerSecond.toFixed(0)} samples/s on ${r.config.backend.name} ` +
    `(${r.config.backend.precision}) · run record ${r.id}`;
}

/**
 * The opening of every model notebook in one call: profile, backend, data. Keeps the first
 * cell of each section to a couple of lines and the same everywhere.
 */
import { type BackendInfo, initBackend } from "./backend.ts";
import { loadMnist, type Mnist, type MnistSplit } from "./mnist.ts";
import { currentProfile, describeProfile, type Profile, profileSplits } from "./profile.ts";
import { type ModelName, STUDY_MODELS } from "./settings.ts";

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
 * of the study's models, takes the training set its settings name (the VGG sections use the
 * profile's VGG-sized one); `"vgg"` asks for that set directly.
 */
export async function setupStudy(
  data: ModelName | "default" | "vgg" = "default",
): Promise<StudySetup> {
  const profile = currentProfile();
  console.log(describeProfile(profile));
  const backend = await initBackend();
  const mnist = await loadMnist();
  const section = data === "default" || data === "vgg" ? data : STUDY_MODELS[data].data;
  const { train, test } = profileSplits(mnist, profile, section);
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

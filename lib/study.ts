/**
 * The opening of every model notebook in one call: profile, backend, data. Keeps the first
 * cell of each section to a couple of lines and the same everywhere.
 */
import { type BackendInfo, initBackend } from "./backend.ts";
import { loadMnist, type Mnist, type MnistSplit } from "./mnist.ts";
import { currentProfile, describeProfile, type Profile, profileSplits } from "./profile.ts";

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
 * Reads the profile, starts the backend (printing which and why) and loads MNIST.
 * `section: "vgg"` takes the profile's (smaller) training set for the VGG sections.
 */
export async function setupStudy(section: "default" | "vgg" = "default"): Promise<StudySetup> {
  const profile = currentProfile();
  console.log(describeProfile(profile));
  const backend = await initBackend();
  const mnist = await loadMnist();
  const { train, test } = profileSplits(mnist, profile, section);
  console.log(`data: ${train.count} train / ${test.count} test digits from ${mnist.source}`);
  return { profile, backend, mnist, train, test };
}

/** Test loss and accuracy as one line, as Keras's `evaluate` prints them. */
export function testLine(e: { loss: number; accuracy: number; labels: Uint8Array }): string {
  return `test loss ${e.loss.toFixed(4)} · test accuracy ${(100 * e.accuracy).toFixed(2)}% ` +
    `(${e.labels.length} digits)`;
}

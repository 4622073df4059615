/**
 * Run profiles: the notebooks use the study's full settings by default; `MNIST_PROFILE=quick`
 * shrinks every run (a few thousand samples, one epoch) for tests, CI and a first look.
 */
import type { Mnist, MnistSplit } from "../data/mnist.ts";
import { takeFirst } from "../data/mnist.ts";
import { envVar } from "../machine/env.ts";

export interface Profile {
  name: "full" | "reduced" | "quick";
  /** Training samples used (all 60,000 in the full profile). */
  trainSamples: number;
  /** Test samples used (all 10,000 in the full profile). */
  testSamples: number;
  /** Caps a section's epoch count (Infinity in the full profile). */
  maxEpochs: number;
  /**
   * Training samples for the VGG sections, whose nets cost 20–60× the baseline per sample
   * (equal to `trainSamples` except in the quick profile, which must stay fast for CI).
   */
  vggTrainSamples: number;
}

export const PROFILES: Record<Profile["name"], Profile> = {
  full: {
    name: "full",
    trainSamples: 60_000,
    testSamples: 10_000,
    maxEpochs: Infinity,
    vggTrainSamples: 60_000,
  },
  /** The study's epochs and batch sizes on a tenth of the data: for CPU-only machines. */
  reduced: {
    name: "reduced",
    trainSamples: 6_000,
    testSamples: 2_000,
    maxEpochs: Infinity,
    vggTrainSamples: 2_000,
  },
  quick: {
    name: "quick",
    trainSamples: 2_000,
    testSamples: 500,
    maxEpochs: 1,
    vggTrainSamples: 300,
  },
};

/** The profile named by `MNIST_PROFILE` (full when unset). */
export function currentProfile(name = envVar("MNIST_PROFILE") ?? "full"): Profile {
  const profile = PROFILES[name as Profile["name"]];
  if (!profile) {
    throw new Error(`MNIST_PROFILE=${name} is not one of: ${Object.keys(PROFILES).join(", ")}`);
  }
  return profile;
}

/** The epochs a section runs under this profile. */
export function epochsFor(profile: Profile, studyEpochs: number): number {
  return Math.min(studyEpochs, profile.maxEpochs);
}

/**
 * The train/test splits a profile uses (views of the first samples; no copies). The VGG
 * sections train on `vggTrainSamples`.
 */
export function profileSplits(
  mnist: Mnist,
  profile: Profile,
  section: "default" | "vgg" = "default",
): { train: MnistSplit; test: MnistSplit } {
  const trainSamples = section === "vgg" ? profile.vggTrainSamples : profile.trainSamples;
  return {
    train: takeFirst(mnist.train, trainSamples),
    test: takeFirst(mnist.test, profile.testSamples),
  };
}

/** One line for the top of a notebook. */
export function describeProfile(profile: Profile): string {
  if (profile.name === "reduced") {
    return `profile: reduced — the study's epochs and batch sizes on ${profile.trainSamples} train / ` +
      `${profile.testSamples} test samples (MNIST_PROFILE=full for all of MNIST)`;
  }
  return profile.name === "full"
    ? "profile: full — the study's settings (60,000 train / 10,000 test, all epochs)"
    : `profile: quick — ${profile.trainSamples} train / ${profile.testSamples} test samples, ` +
      `at most ${profile.maxEpochs} epoch (set MNIST_PROFILE=full or unset it for the study's settings)`;
}

import assert from "node:assert/strict";
import type { Mnist, MnistSplit } from "../lib/data/mnist.ts";
import {
  currentProfile,
  describeProfile,
  epochsFor,
  PROFILES,
  profileSplits,
} from "../lib/study/profile.ts";

function split(count: number): MnistSplit {
  return {
    images: Uint8Array.from({ length: count * 784 }, (_, i) => i % 251),
    labels: Uint8Array.from({ length: count }, (_, i) => i % 10),
    count,
    rows: 28,
    cols: 28,
  };
}

Deno.test("profiles: the study's full settings by default, reduced and quick shrink the data", () => {
  assert.equal(currentProfile("full"), PROFILES.full);
  assert.deepEqual(
    [PROFILES.full.trainSamples, PROFILES.full.testSamples, PROFILES.full.vggTrainSamples],
    [60_000, 10_000, 60_000],
  );
  assert.equal(epochsFor(PROFILES.full, 10), 10);
  assert.equal(epochsFor(PROFILES.reduced, 10), 10, "reduced keeps the study's epochs");
  assert.equal(epochsFor(PROFILES.quick, 40), 1);
  assert.throws(
    () => currentProfile("huge"),
    /MNIST_PROFILE=huge is not one of: full, reduced, quick/,
  );
  const before = Deno.env.get("MNIST_PROFILE");
  try {
    Deno.env.set("MNIST_PROFILE", "quick");
    assert.equal(currentProfile(), PROFILES.quick);
    Deno.env.delete("MNIST_PROFILE");
    assert.equal(currentProfile(), PROFILES.full, "unset means full");
  } finally {
    if (before !== undefined) Deno.env.set("MNIST_PROFILE", before);
  }
  assert.match(describeProfile(PROFILES.reduced), /^profile: reduced — .* 6000 train \/ 2000 test/);
  assert.match(describeProfile(PROFILES.full), /60,000 train \/ 10,000 test/);
});

Deno.test("profileSplits: views of the first samples, the VGG sections' own training size", () => {
  const mnist = { train: split(3000), test: split(600), source: "test" } as unknown as Mnist;
  const q = profileSplits(mnist, PROFILES.quick);
  assert.deepEqual([q.train.count, q.test.count], [2000, 500]);
  const v = profileSplits(mnist, PROFILES.quick, "vgg");
  assert.equal(v.train.count, 300);
  // The first samples, not a copy: the same bytes.
  assert.equal(v.train.images.buffer, mnist.train.images.buffer);
  assert.deepEqual([...v.train.labels.slice(0, 12)], [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]);
});

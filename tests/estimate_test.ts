import assert from "node:assert/strict";
import { PROFILES } from "../lib/study/profile.ts";
import { estimateSeconds, expectedThroughput, ROUGH_CPU_THROUGHPUT } from "../lib/runs/estimate.ts";
import { studyKeyParts } from "../lib/study/study_run.ts";

const CPU = { name: "cpu-fast", device: "test", why: "test", precision: "float32" };
const parts = studyKeyParts({
  model: "vgg16_scratch",
  profile: PROFILES.quick,
  backend: CPU,
  train: { count: 300 },
  test: { count: 500 },
  seed: 42,
});

Deno.test("estimateSeconds: the epochs over the training set, validation and the test pass", () => {
  // 300 train digits, 1 epoch, validating on 500: 300/100 + 500/300 (validation) + 500/300 (test).
  const s = estimateSeconds(parts, 100);
  assert.ok(Math.abs(s - (3 + 5 / 3 + 5 / 3)) < 1e-9, `${s}`);
});

Deno.test("expectedThroughput: the rough CPU figure without records, none for another backend", async () => {
  const empty = await Deno.makeTempDir();
  try {
    assert.equal(
      await expectedThroughput(parts, CPU, [empty]),
      ROUGH_CPU_THROUGHPUT.vgg16_scratch,
    );
    const bn = {
      ...parts,
      model: { ...parts.model, options: { ...parts.model.options, batchNorm: true } },
    };
    assert.equal(
      await expectedThroughput(bn, CPU, [empty]),
      ROUGH_CPU_THROUGHPUT["vgg16_scratch+batchNorm"],
    );
    assert.equal(await expectedThroughput(parts, { ...CPU, name: "webgpu" }, [empty]), null);
  } finally {
    await Deno.remove(empty, { recursive: true });
  }
});

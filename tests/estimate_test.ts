import assert from "node:assert/strict";
import { join } from "node:path";
import { PROFILES } from "../lib/study/profile.ts";
import { RUN_SCHEMA } from "../lib/runs/runs.ts";
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

/** A record's two summary files (all the estimate reads), in `root`. */
async function summaryRecord(
  root: string,
  name: string,
  o: {
    createdAt: string;
    samplesPerSecond: number;
    cpuId?: string;
    device?: string;
    options?: Record<string, unknown>;
  },
) {
  const dir = join(root, name);
  await Deno.mkdir(dir, { recursive: true });
  const machine = {
    cpu: "AMD EPYC",
    ...(o.cpuId ? { cpuId: o.cpuId } : {}),
    cores: 2,
    os: "linux",
  };
  await Deno.writeTextFile(
    join(dir, "config.json"),
    JSON.stringify({
      schema: RUN_SCHEMA,
      createdAt: o.createdAt,
      keyParts: { ...parts, model: { ...parts.model, options: o.options ?? parts.model.options } },
      backend: { ...CPU, device: o.device ?? CPU.device },
      machine,
    }),
  );
  await Deno.writeTextFile(
    join(dir, "metrics.json"),
    JSON.stringify({ samplesPerSecond: o.samplesPerSecond }),
  );
}

Deno.test("expectedThroughput: the newest record on the same CPU, else the newest on the same backend line", async () => {
  const root = await Deno.makeTempDir();
  try {
    await summaryRecord(root, "a", {
      createdAt: "2026-12-01T00:00:00Z",
      samplesPerSecond: 100,
      cpuId: "AuthenticAMD 25/17",
    });
    await summaryRecord(root, "b", {
      createdAt: "2026-12-02T00:00:00Z",
      samplesPerSecond: 200,
      cpuId: "AuthenticAMD 26/2",
    });
    await summaryRecord(root, "c", { createdAt: "2026-12-03T00:00:00Z", samplesPerSecond: 300 });
    // newest of all, but another backend line (other kernels or threads): never used
    await summaryRecord(root, "d", {
      createdAt: "2026-12-04T00:00:00Z",
      samplesPerSecond: 900,
      cpuId: "AuthenticAMD 25/17",
      device: "other kernels",
    });
    assert.equal(await expectedThroughput(parts, CPU, [root], "AuthenticAMD 25/17"), 100);
    assert.equal(await expectedThroughput(parts, CPU, [root], "AuthenticAMD 26/2"), 200);
    // a CPU no record was made on, or one that cannot be told: the newest on this backend line
    assert.equal(await expectedThroughput(parts, CPU, [root], "GenuineIntel 6/143"), 300);
    assert.equal(await expectedThroughput(parts, CPU, [root], null), 300);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("expectedThroughput: a record differing only in activation or init times a run; BatchNorm does not", async () => {
  const root = await Deno.makeTempDir();
  const zen4 = "AuthenticAMD 25/17";
  const relu = { ...parts.model.options, convActivation: "relu", convInit: "he" };
  const bn = { ...parts.model.options, convActivation: "relu", batchNorm: true };
  try {
    // BatchNorm adds layers: its record is never used for a run without it
    await summaryRecord(root, "bn", {
      createdAt: "2026-12-01T00:00:00Z",
      samplesPerSecond: 90,
      cpuId: zen4,
      options: bn,
    });
    assert.equal(
      await expectedThroughput(parts, CPU, [root], zen4),
      ROUGH_CPU_THROUGHPUT.vgg16_scratch,
    );
    // ReLU + He init on this CPU times the linear net better than the rough figure
    await summaryRecord(root, "relu", {
      createdAt: "2026-12-02T00:00:00Z",
      samplesPerSecond: 117,
      cpuId: zen4,
      options: relu,
    });
    assert.equal(await expectedThroughput(parts, CPU, [root], zen4), 117);
    // the same options on an unknown CPU: the same CPU comes first, then the same options
    await summaryRecord(root, "linear", {
      createdAt: "2026-12-03T00:00:00Z",
      samplesPerSecond: 150,
    });
    assert.equal(await expectedThroughput(parts, CPU, [root], zen4), 117);
    assert.equal(await expectedThroughput(parts, CPU, [root], "AuthenticAMD 26/2"), 150);
    // and the same options on the same CPU beat both
    await summaryRecord(root, "linear-zen4", {
      createdAt: "2026-11-30T00:00:00Z",
      samplesPerSecond: 130,
      cpuId: zen4,
    });
    assert.equal(await expectedThroughput(parts, CPU, [root], zen4), 130);
    const withBn = {
      ...parts,
      model: { ...parts.model, options: { ...bn, convActivation: "linear" } },
    };
    assert.equal(await expectedThroughput(withBn, CPU, [root], zen4), 90);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

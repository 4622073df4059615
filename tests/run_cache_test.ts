import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { PROFILES } from "../lib/study/profile.ts";
import { compileStudy } from "../lib/models/common.ts";
import { type BackupOptions, fitSource } from "../lib/train/train.ts";
import { evaluateSource } from "../lib/train/evaluate.ts";
import { backupPath } from "../lib/runs/backup.ts";
import { cachedRun, computeOnce, retrainRequested } from "../lib/runs/run_cache.ts";
import { RunWriteError } from "../lib/runs/runs.ts";
import { join } from "node:path";
import { canonicalJson, runKey } from "../lib/runs/run_key.ts";
import { studyKeyParts, type StudyRunOptions } from "../lib/study/study_run.ts";
import { fakeSplit } from "./fixtures/mnist.ts";

await tf.setBackend("cpu");

const CPU = { name: "cpu", device: "pure JavaScript", why: "test", precision: "float32" };
const base: StudyRunOptions = {
  model: "vgg16_scratch",
  profile: PROFILES.quick,
  backend: CPU,
  train: fakeSplit(300, 1),
  test: fakeSplit(500, 2),
  seed: 42,
};

Deno.test("canonical JSON ignores key order, so equal settings give one key", async () => {
  assert.equal(
    canonicalJson({ b: 1, a: { d: [2, 1], c: null } }),
    '{"a":{"c":null,"d":[2,1]},"b":1}',
  );
  const parts = studyKeyParts(base);
  const shuffled = Object.fromEntries(Object.entries(parts).reverse()) as typeof parts;
  assert.equal(await runKey(shuffled), await runKey(parts));
  // Defaults written out: asking for the study's settings explicitly is the same run.
  assert.equal(
    await runKey(
      studyKeyParts({
        ...base,
        variant: { convActivation: "linear", learningRate: 0.001, lrSchedule: "constant" },
      }),
    ),
    await runKey(parts),
  );
});

Deno.test("each key part changed alone is another run", async () => {
  const key = (o: Partial<StudyRunOptions>) => runKey(studyKeyParts({ ...base, ...o }));
  const k0 = await key({});
  const changes: [string, Partial<StudyRunOptions>][] = [
    ["seed", { seed: 43 }],
    ["epochs", { epochs: 2 }],
    ["batch size", { batchSize: 50 }],
    ["learning rate", { variant: { learningRate: 1e-4 } }],
    ["learning-rate schedule", { variant: { lrSchedule: "cosine" } }],
    ["profile", { profile: PROFILES.reduced }],
    ["train samples", { train: fakeSplit(200, 1) }],
    ["backend", { backend: { ...CPU, name: "cpu-fast" } }],
    ["precision", { backend: { ...CPU, precision: "mixed_bfloat16" } }],
    ["model option", { variant: { convActivation: "relu" } }],
    ["init", { variant: { convInit: "he" } }],
    ["batch norm", { variant: { batchNorm: true } }],
    ["loss", { loss: "clipped" }],
    ["divergence guard", { onDivergence: "warn" }],
    ["model", { model: "vgg_small" }],
  ];
  const keys = new Set([k0]);
  for (const [what, change] of changes) {
    const k = await key(change);
    assert.notEqual(k, k0, `${what} changed the key`);
    keys.add(k);
  }
  assert.equal(keys.size, changes.length + 1, "every change gives its own key");
});

/**
 * A real (tiny) training function: a softmax layer on 4 features, `epochs` epochs after a wait of
 * `delayMs`; counts its calls in `calls`. `seconds` replaces the measured training time.
 */
function tinyTrainer(
  calls: { n: number },
  o: { delayMs?: number; epochs?: number; seconds?: number } = {},
) {
  return async (backup: BackupOptions) => {
    calls.n++;
    await new Promise((r) => setTimeout(r, o.delayMs ?? 0));
    const model = tf.sequential();
    model.add(tf.layers.dense({ inputShape: [4], units: 10, activation: "softmax" }));
    compileStudy(model);
    const source = {
      count: 30,
      batch: (idx: Int32Array) => ({
        x: tf.tensor2d(Array.from(idx, (i) => [i % 3, 1, i % 5, 0.5])),
        y: tf.tensor1d(Array.from(idx, (i) => i % 10)),
      }),
    };
    const fit = await fitSource(model, source, {
      epochs: o.epochs ?? 2,
      batchSize: 10,
      seed: 1,
      progress: false,
      backup,
    });
    const labels = Uint8Array.from({ length: 30 }, (_, i) => i % 10);
    return {
      model,
      fit: o.seconds === undefined ? fit : { ...fit, seconds: o.seconds },
      evaluation: await evaluateSource(model, source, labels),
    };
  };
}

Deno.test("cachedRun: the same run is trained once; a changed key part trains again", async () => {
  const root = await Deno.makeTempDir({ prefix: "run_cache_" });
  try {
    const lines: string[] = [];
    const opts = { root, roots: [root], log: (l: string) => void lines.push(l), retrain: false };
    const spec = {
      modelName: "fake",
      section: "test",
      keyParts: studyKeyParts(base),
      profile: PROFILES.quick,
      backend: CPU,
      weightsSource: "random init",
    };
    const calls = { n: 0 };
    const trainTiny = tinyTrainer(calls, { epochs: 1, seconds: 1 });
    const tensors = tf.memory().numTensors;
    const a = await cachedRun(spec, trainTiny, opts);
    assert.equal(a.cached, false);
    assert.equal(
      tf.memory().numTensors,
      tensors,
      "the trained model and its optimizer's moments are disposed once the record is written",
    );
    assert.equal(calls.n, 1);
    assert.match(lines.at(-1)!, /^training fake \(quick, seed 42\) on cpu \(float32\)/);
    const b = await cachedRun(spec, trainTiny, opts);
    assert.equal(b.cached, true, "same key: the record is used");
    assert.equal(calls.n, 1, "nothing trained the second time");
    assert.equal(b.record.id, a.record.id);
    assert.match(
      lines.at(-1)!,
      new RegExp(`^from run record ${a.record.id}: trained .* on cpu \\(float32, .*\\), 1 s$`),
    );
    // A changed part trains again, and retrain forces it; its time is estimated from the
    // record's throughput, but not where the backend line differs (other kernels or set-up).
    await cachedRun({ ...spec, keyParts: studyKeyParts({ ...base, seed: 1 }) }, trainTiny, opts);
    assert.equal(calls.n, 2);
    assert.match(lines.at(-1)!, /^training fake \(quick, seed 1\) on cpu \(float32\), about /);
    const elsewhere = { ...spec, backend: { ...CPU, device: "pure JavaScript, another build" } };
    await cachedRun(
      { ...elsewhere, keyParts: studyKeyParts({ ...base, seed: 2 }) },
      trainTiny,
      opts,
    );
    assert.match(lines.at(-1)!, /^training fake \(quick, seed 2\) on cpu \(float32\) — run key/);
    assert.equal(calls.n, 3);
    await cachedRun(spec, trainTiny, { ...opts, retrain: true });
    assert.equal(calls.n, 4);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("MNIST_RETRAIN, durations and the time estimate", () => {
  const before = Deno.env.get("MNIST_RETRAIN");
  try {
    Deno.env.set("MNIST_RETRAIN", "1");
    assert.equal(retrainRequested(), true);
    Deno.env.set("MNIST_RETRAIN", "0");
    assert.equal(retrainRequested(), false);
  } finally {
    if (before === undefined) Deno.env.delete("MNIST_RETRAIN");
    else Deno.env.set("MNIST_RETRAIN", before);
  }
});

Deno.test("cachedRun asked twice at once trains once: the second waits for the lock and shows the record", async () => {
  const root = await Deno.makeTempDir({ prefix: "run_cache_lock_" });
  try {
    const lines: string[] = [];
    const opts = {
      root,
      roots: [root],
      log: (l: string) => void lines.push(l),
      retrain: false,
      lockPollMs: 20,
    };
    const spec = {
      modelName: "fake",
      section: "test",
      keyParts: studyKeyParts({ ...base, seed: 3 }),
      profile: PROFILES.quick,
      backend: CPU,
      weightsSource: "random init",
    };
    const calls = { n: 0 };
    const [a, b] = await Promise.all([
      cachedRun(spec, tinyTrainer(calls, { delayMs: 200 }), opts),
      new Promise((r) => setTimeout(r, 50)).then(() => cachedRun(spec, tinyTrainer(calls), opts)),
    ]);
    assert.equal(calls.n, 1, "trained once");
    assert.equal(a.cached, false);
    assert.equal(b.cached, true);
    assert.equal(b.record.id, a.record.id);
    assert.equal(lines.filter((l) => l.startsWith("waiting for fake (quick, seed 3)")).length, 1);
    assert.deepEqual(
      [...Deno.readDirSync(`${root}/.locks`)].filter((e) => e.name.endsWith(".lock")),
      [],
    );
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("cachedRun: a damaged backup is moved aside with one line and the run starts from epoch 1", async () => {
  const root = await Deno.makeTempDir({ prefix: "run_cache_damaged_" });
  try {
    const lines: string[] = [];
    const keyParts = studyKeyParts({ ...base, seed: 4 });
    const spec = {
      modelName: "fake",
      section: "test",
      keyParts,
      profile: PROFILES.quick,
      backend: CPU,
      weightsSource: "random init",
    };
    const path = backupPath(root, await runKey(keyParts));
    await Deno.mkdir(`${root}/.backups`);
    await Deno.writeTextFile(path, 'MNISTBAK\u0005\u0000\u0000\u0000{"ep');
    const calls = { n: 0 };
    const out = await cachedRun(spec, tinyTrainer(calls), {
      root,
      roots: [root],
      log: (l: string) => void lines.push(l),
      retrain: false,
    });
    assert.equal(out.record.config.resumedFrom, 0, "from epoch 1");
    const said = lines.filter((l) => l.startsWith("⚠ backup"));
    assert.equal(said.length, 1, lines.join("\n"));
    assert.match(
      said[0],
      new RegExp(
        `^⚠ backup ${path} is unreadable \\(damaged header\\): moved to ${path}\\.damaged-[0-9T-]+; fake \\(quick, seed 4\\) starts again from epoch 1$`,
      ),
    );
    const names = [...Deno.readDirSync(`${root}/.backups`)].map((e) => e.name);
    assert.equal(names.length, 1, "the finished run removed its own backup; the damaged one stays");
    assert.match(names[0], /\.backup\.damaged-/);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("computeOnce: a runs folder that cannot take the lock is named before anything is computed", async () => {
  const dir = await Deno.makeTempDir();
  try {
    // a file where the runs folder should be: its lock folder cannot be made (os error 20)
    const root = join(dir, "not-a-folder");
    await Deno.writeTextFile(root, "");
    let computed = 0;
    await assert.rejects(
      computeOnce({
        key: "0123456789abcdef",
        describe: "a finder run",
        root,
        retrain: false,
        log: () => {},
        find: () => Promise.resolve(null),
        createdAt: () => "",
        compute: () => Promise.resolve(++computed),
      }),
      (e: Error) => {
        assert.ok(e instanceof RunWriteError, String(e));
        assert.match(e.message, new RegExp(`^cannot write in the runs folder ${root}: .*RUNS_DIR`));
        return true;
      },
    );
    assert.equal(computed, 0);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { join } from "node:path";
import { PROFILES } from "../lib/study/profile.ts";
import { GRAY32, makeBatch, range } from "../lib/data/preprocess.ts";
import { fit } from "../lib/train/train.ts";
import { evaluate } from "../lib/train/evaluate.ts";
import {
  cpuIdOf,
  damagedRecords,
  findRun,
  historyCsv,
  loadRun,
  loadRunModel,
  loadRuns,
  parseHistoryCsv,
  type RunInput,
  RunRecordError,
  RunWriteError,
  saveRun,
} from "../lib/runs/runs.ts";
import { kerasAdam, type RunKeyParts } from "../lib/runs/run_key.ts";
import { fakeSplit } from "./fixtures/mnist.ts";
import { tinyCnn } from "./fixtures/tiny_cnn.ts";

await tf.setBackend("cpu");

const BACKEND = { name: "cpu", device: "pure JavaScript", why: "test", precision: "float32" };

const KEY_PARTS: RunKeyParts = {
  model: { builder: "tiny_cnn", options: {} },
  training: {
    epochs: 2,
    batchSize: 10,
    optimizer: kerasAdam(),
    loss: "logits",
    earlyStopping: null,
    validation: "test",
    onDivergence: "stop",
  },
  data: { profile: "quick", trainSamples: 40, testSamples: 20, input: "GRAY32" },
  seed: 7,
  weights: "random init",
  backend: "cpu",
  precision: "float32",
};

const train = fakeSplit(40, 1);
const test = fakeSplit(20, 2);

async function trainedRun(seed = 7): Promise<RunInput> {
  const model = tinyCnn(seed);
  const result = await fit(model, train, {
    epochs: 2,
    batchSize: 10,
    format: GRAY32,
    seed,
    validation: test,
    progress: false,
  });
  const evaluation = await evaluate(model, test, { format: GRAY32 });
  return {
    model,
    modelName: "tiny_cnn",
    section: "test",
    key: "00112233aabbccdd",
    keyParts: KEY_PARTS,
    fit: result,
    evaluation,
    backend: BACKEND,
    profile: PROFILES.quick,
    seed,
    label: "fixture model",
  };
}

async function entries(dir: string): Promise<string[]> {
  const names: string[] = [];
  for await (const e of Deno.readDir(dir)) names.push(e.name);
  return names.sort();
}

Deno.test("saveRun writes a complete record that loadRuns and loadRunModel read back", async () => {
  const root = await Deno.makeTempDir({ prefix: "runs_test_" });
  try {
    const input = await trainedRun();
    const dir = await saveRun(input, { root, now: new Date("2026-11-27T21:03:12Z") });
    assert.match(dir.split("/").pop()!, /^2026-11-27T21-03-12_tiny_cnn_quick_[0-9a-f]{4}$/);
    assert.deepEqual(await entries(dir), [
      "config.json",
      "history.csv",
      "metrics.json",
      "model.json",
      "test_labels.u8",
      "test_probabilities.f32",
      "weights.bin",
    ]);
    assert.deepEqual(
      await entries(root),
      [dir.split("/").pop()!],
      "no temporary folder is left behind",
    );

    const [record, ...more] = await loadRuns(root);
    assert.equal(more.length, 0);
    assert.equal(record.config.modelName, "tiny_cnn");
    assert.equal(record.config.section, "test");
    assert.equal(record.config.seed, 7);
    assert.equal(record.config.profile.name, "quick");
    assert.equal(record.config.backend.name, "cpu");
    assert.equal(record.config.weightsSource, "random init");
    assert.equal(record.config.versions.tfjs, tf.version.tfjs);
    assert.equal(record.config.versions.deno, Deno.version.deno);
    assert.equal(record.config.schema, 2);
    assert.equal(record.config.key, "00112233aabbccdd");
    assert.deepEqual(record.config.keyParts, KEY_PARTS);
    assert.equal(record.config.backend.precision, "float32");
    assert.ok(record.config.machine.cores >= 1);
    assert.equal(record.metrics.lossKind, "logits");
    // The evaluation comes back whole: labels, probabilities, predictions, loss and accuracy.
    assert.deepEqual([...record.evaluation.labels], [...input.evaluation.labels]);
    assert.deepEqual([...record.evaluation.probabilities], [...input.evaluation.probabilities]);
    assert.deepEqual([...record.evaluation.predicted], [...input.evaluation.predicted]);
    assert.equal(record.evaluation.loss, input.evaluation.loss);
    assert.equal(record.hasWeights, true);
    assert.equal(record.probe, null);
    // No absolute path inside the record: it can be moved to another machine.
    for (const f of ["config.json", "metrics.json"]) {
      assert.ok(!(await Deno.readTextFile(join(dir, f))).includes(root), `${f} names its folder`);
    }
    assert.equal(record.metrics.testAccuracy, input.evaluation.accuracy);
    assert.equal(record.metrics.parameters, input.model.countParams());
    assert.equal(record.metrics.epochsRun, 2);
    assert.equal(record.metrics.diverged, false);
    assert.equal(record.metrics.label, "fixture model");
    assert.equal(record.metrics.confusion.length, 10);
    assert.equal(record.metrics.confusion.flat().reduce((a, b) => a + b, 0), test.count);
    assert.equal(record.metrics.perClassAccuracy.length, 10);
    assert.deepEqual(record.history.columns, input.fit.history.columns);
    assert.deepEqual(record.history.toRecords(), input.fit.history.toRecords());

    // The reloaded weights give the same predictions as the trained model.
    const reloaded = await loadRunModel(dir);
    const { x } = makeBatch(test, range(0, test.count), GRAY32);
    const before = await (input.model.predict(x) as tf.Tensor).data();
    const after = await (reloaded.predict(x) as tf.Tensor).data();
    assert.deepEqual(Array.from(after), Array.from(before));
    tf.dispose(x);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("a crash while writing leaves no folder that looks complete", async () => {
  const root = await Deno.makeTempDir({ prefix: "runs_test_" });
  try {
    const input = await trainedRun();
    await assert.rejects(
      saveRun(input, {
        root,
        afterFile: (name) => {
          if (name === "metrics.json") throw new Error("simulated crash");
        },
      }),
      /simulated crash/,
    );
    assert.deepEqual(await entries(root), [], "the temporary folder is removed");
    // A process killed mid-write leaves a .tmp- folder behind: the reader ignores it.
    await Deno.mkdir(join(root, ".tmp-2026-01-01T00-00-00_tiny_cnn_quick_0000"));
    await Deno.writeTextFile(
      join(root, ".tmp-2026-01-01T00-00-00_tiny_cnn_quick_0000", "config.json"),
      "{}",
    );
    assert.deepEqual(await loadRuns(root), []);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("an unwritable runs folder gives an error naming it", async () => {
  const base = await Deno.makeTempDir({ prefix: "runs_test_" });
  try {
    // A path below a regular file can never be created, even as root.
    await Deno.writeTextFile(join(base, "not-a-folder"), "");
    const root = join(base, "not-a-folder", "runs");
    const input = await trainedRun();
    await assert.rejects(saveRun(input, { root }), (e: Error) => {
      assert.ok(e instanceof RunWriteError);
      assert.ok(e.message.includes(root), e.message);
      return true;
    });
  } finally {
    await Deno.remove(base, { recursive: true });
  }
});

Deno.test("loadRuns: a missing root means no runs; history CSV keeps empty validation columns out", async () => {
  assert.deepEqual(await loadRuns("/nonexistent/runs/folder"), []);
  const csv = "epoch,loss,accuracy,val_loss,val_accuracy,seconds\n1,2.3,0.1,,,1.5\n2,,0.2,,,1.4\n";
  const df = parseHistoryCsv(csv);
  assert.deepEqual(df.columns, ["epoch", "loss", "accuracy", "seconds"]);
  assert.ok(Number.isNaN(df.getColumn("loss").toArray()[1] as number));
  assert.equal(
    historyCsv(df),
    "epoch,loss,accuracy,val_loss,val_accuracy,seconds\n1,2.3,0.1,,,1.5\n2,,0.2,,,1.4\n",
  );
});

Deno.test("the same seed gives the same history on the cpu backend", async () => {
  const history = async (seed: number) => {
    const model = tinyCnn(seed);
    const r = await fit(model, train, {
      epochs: 2,
      batchSize: 8,
      format: GRAY32,
      seed,
      progress: false,
    });
    model.dispose();
    return r.history.select("epoch", "loss", "accuracy").toRecords();
  };
  const a = await history(11);
  const b = await history(11);
  assert.deepEqual(a, b);
  const c = await history(12);
  assert.notDeepEqual(a, c, "a different seed changes the run (the seed is really used)");
});

Deno.test("a record copied into another runs folder is found by its key and read there", async () => {
  const a = await Deno.makeTempDir({ prefix: "runs_a_" });
  const b = await Deno.makeTempDir({ prefix: "runs_b_" });
  try {
    const dir = await saveRun(await trainedRun(), { root: a, weights: false });
    const name = dir.split("/").pop()!;
    await Deno.mkdir(join(b, "elsewhere", name), { recursive: true });
    for (const e of Deno.readDirSync(dir)) {
      await Deno.copyFile(join(dir, e.name), join(b, "elsewhere", name, e.name));
    }
    await Deno.remove(a, { recursive: true });
    const found = await findRun("00112233aabbccdd", [join(b, "elsewhere")]);
    assert.ok(found, "found in the new folder");
    assert.equal(found.dir, join(b, "elsewhere", name));
    assert.equal(found.hasWeights, false, "a record without weights still loads");
    assert.equal(await findRun("ffffffffffffffff", [join(b, "elsewhere")]), null);
  } finally {
    await Deno.remove(a, { recursive: true }).catch(() => {});
    await Deno.remove(b, { recursive: true });
  }
});

Deno.test("a record of the old schema is refused with a message that says what to do", async () => {
  const root = await Deno.makeTempDir({ prefix: "runs_old_" });
  try {
    await Deno.mkdir(join(root, "old"));
    await Deno.writeTextFile(join(root, "old", "config.json"), JSON.stringify({ runId: "old" }));
    await assert.rejects(
      loadRun(join(root, "old")),
      /schema 1, this version reads schema 2.*MNIST_RETRAIN=1/,
    );
    assert.deepEqual(await loadRuns(root), [], "loadRuns skips it (with a warning)");
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("a damaged record is passed over with one line, never changed; the others still count", async () => {
  const root = await Deno.makeTempDir({ prefix: "runs_damaged_" });
  try {
    const input = await trainedRun();
    const older = await saveRun(input, { root, weights: false, now: new Date("2026-01-01") });
    const newer = await saveRun(input, { root, weights: false, now: new Date("2026-02-01") });
    const metrics = join(newer, "metrics.json");
    const broken = (await Deno.readTextFile(metrics)).replace("{", '{"label": "a\tb",');
    await Deno.writeTextFile(metrics, broken);

    const seen: RunRecordError[] = [];
    const found = await findRun("00112233aabbccdd", [root], (e) => seen.push(e));
    assert.equal(found?.dir, older, "the readable record with the key");
    assert.equal(seen.length, 1);
    assert.equal(seen[0].dir, newer);
    assert.match(
      seen[0].message,
      new RegExp(`^run record ${newer} is unreadable: metrics\\.json: Bad control character`),
    );
    assert.equal(await Deno.readTextFile(metrics), broken, "left as it is");

    await Deno.writeFile(join(older, "test_labels.u8"), new Uint8Array(3));
    assert.equal(await findRun("00112233aabbccdd", [root], () => {}), null, "none readable");
    const damaged = await damagedRecords([root]);
    assert.deepEqual(damaged.map((e) => e.dir).sort(), [older, newer].sort());
    assert.match(
      damaged.find((e) => e.dir === older)!.problem,
      /^test_probabilities\.f32: it holds \d+ bytes, expected 120$/,
    );
    assert.deepEqual(await loadRuns(root), [], "loadRuns skips both (with a warning each)");
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("a record that does not fit on the disk: an error naming the folder and the space needed", async () => {
  const root = await Deno.makeTempDir({ prefix: "runs_full_" });
  try {
    const input = await trainedRun();
    await assert.rejects(
      saveRun(input, {
        root,
        afterFile: (name) => {
          if (name === "weights.bin") {
            throw new Error("No space left on device (os error 28): writefile 'weights.bin'");
          }
        },
      }),
      (e: Error) => {
        assert.ok(e instanceof RunWriteError);
        const n = input.evaluation.labels.length, params = input.model.countParams();
        const kB = Math.ceil((n * 41 + params * 4 + 64 * 1024) / 1e3);
        assert.equal(
          e.message,
          `cannot write the run record in ${root} (it needs about ${kB} kB free): No space ` +
            `left on device (os error 28): writefile 'weights.bin'`,
        );
        return true;
      },
    );
    assert.deepEqual(await entries(root), [], "nothing half-written");
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("cpuIdOf: vendor, family and model from /proc/cpuinfo, which a bare model name lacks", () => {
  // The first processor's lines as a 2-core Zen 4 cloud machine prints them; "model name" must
  // not be read as "model".
  const zen4 = [
    "processor\t: 0",
    "vendor_id\t: AuthenticAMD",
    "cpu family\t: 25",
    "model\t\t: 17",
    "model name\t: AMD EPYC",
    "stepping\t: 1",
    "",
    "processor\t: 1",
    "vendor_id\t: AuthenticAMD",
    "cpu family\t: 25",
    "model\t\t: 17",
  ].join("\n");
  assert.deepEqual(cpuIdOf(zen4), { cpuId: "AuthenticAMD 25/17" });
  assert.deepEqual(cpuIdOf("model name\t: AMD EPYC\n"), {}, "no numbers, no id");
  assert.deepEqual(cpuIdOf(""), {});
});

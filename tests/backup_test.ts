import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { join } from "node:path";
import {
  BackupError,
  backupPath,
  inspectBackup,
  listBackups,
  moveAside,
  readBackup,
  removeBackup,
} from "../lib/runs/backup.ts";
import { formatBytes } from "../lib/report/format.ts";
import { GRAY32 } from "../lib/data/preprocess.ts";
import { fit, type FitOptions } from "../lib/train/train.ts";
import { fakeSplit } from "./fixtures/mnist.ts";
import { tinyCnn } from "./fixtures/tiny_cnn.ts";

await tf.setBackend("cpu");

const train = fakeSplit(60, 1, (i) => (i * 7) % 10), test = fakeSplit(20, 2, (i) => (i * 7) % 10);

/** A stand-in for the probe: state that must carry across a resume. */
class Counter {
  batches = 0;
  onBatchEnd = () => {
    this.batches++;
  };
  saveState = () => this.batches;
  restoreState = (s: unknown) => {
    this.batches = s as number;
  };
}

function options(path: string, counter: Counter, extra: Partial<FitOptions> = {}): FitOptions {
  return {
    epochs: 4,
    batchSize: 16,
    format: GRAY32,
    seed: 9,
    validation: test,
    earlyStopping: { monitor: "val_loss", patience: 3 },
    progress: false,
    backup: { path, key: "k1", describe: "tiny (test, seed 9)" },
    onBatchEnd: counter.onBatchEnd,
    stateful: [counter],
    ...extra,
  };
}

async function weightsOf(model: tf.LayersModel): Promise<number[][]> {
  return await Promise.all(model.getWeights().map(async (w) => [...await w.data()]));
}

Deno.test("a fit interrupted in epoch 3 resumes from its backup bit-identical on cpu", async () => {
  const dir = await Deno.makeTempDir();
  try {
    // Uninterrupted reference.
    const refCounter = new Counter();
    const refModel = tinyCnn(11);
    const ref = await fit(refModel, train, options(join(dir, "ref.backup"), refCounter));

    // Interrupted: an error thrown in the middle of epoch 3 (index 2) stands for a kill.
    const path = join(dir, "run.backup");
    const counter = new Counter();
    await assert.rejects(
      fit(
        tinyCnn(11),
        train,
        options(path, counter, {
          onBatchEnd: (epoch, batch) => {
            counter.onBatchEnd();
            if (epoch === 2 && batch === 1) throw new Error("killed");
          },
        }),
      ),
      /killed/,
    );
    const backup = await readBackup(path);
    assert.equal(backup?.header.epoch, 2, "the last finished epoch is in the backup");
    tf.dispose([...backup!.model, ...backup!.optimizer].map((n) => n.tensor));

    const lines: string[] = [];
    const counter2 = new Counter();
    const resumedModel = tinyCnn(11);
    const resumed = await fit(resumedModel, train, {
      ...options(path, counter2),
      progress: { batch() {}, epoch() {}, note: (t) => void lines.push(t) },
    });
    assert.match(lines[0], /^resuming tiny \(test, seed 9\) after epoch 2\/4 — backup of /);
    assert.equal(resumed.resumedFrom, 2);
    assert.deepEqual(
      resumed.history.toRecords().map((r) => [r.loss, r.accuracy, r.val_loss]),
      ref.history.toRecords().map((r) => [r.loss, r.accuracy, r.val_loss]),
    );
    assert.deepEqual(
      await weightsOf(resumedModel),
      await weightsOf(refModel),
      "bit-identical weights",
    );
    assert.equal(counter2.batches, refCounter.batches, "the callback's state carried over");
    assert.equal(resumed.epochsRun, ref.epochsRun);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("writing backups leaves no tensor behind (getWeights' fresh step-count scalar is disposed)", async () => {
  const dir = await Deno.makeTempDir();
  try {
    /** Tensors a 3-epoch fit leaves once its model and optimizer are disposed. */
    const leftOver = async (backup: boolean) => {
      const before = tf.memory().numTensors;
      const model = tinyCnn(11);
      await fit(model, train, {
        ...options(join(dir, "run.backup"), new Counter()),
        epochs: 3,
        earlyStopping: undefined,
        backup: backup ? { path: join(dir, "run.backup"), key: "k3", describe: "tiny" } : undefined,
      });
      model.optimizer.dispose();
      model.dispose();
      return tf.memory().numTensors - before;
    };
    assert.equal(await leftOver(true), await leftOver(false), "three backups, no tensor more");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the fit loop's state keeps the on-disk shape of earlier backups", async () => {
  // Backups written before the loop kept one FitState object must still resume, and new ones
  // read the same: the `loop` JSON is flat, its fields in this order.
  const dir = await Deno.makeTempDir();
  try {
    const path = join(dir, "shape.backup");
    await fit(tinyCnn(11), train, { ...options(path, new Counter()), epochs: 1 });
    const loop = inspectBackup(path)!.loop as Record<string, Record<string, unknown>>;
    assert.deepEqual(Object.keys(loop), [
      "rows",
      "shuffle",
      "dropout",
      "stopper",
      "guard",
      "divergence",
      "stoppedEarly",
      "samples",
      "batchSeconds",
      "seconds",
      "stateful",
    ]);
    assert.deepEqual(Object.keys(loop.stopper), [
      "monitor",
      "patience",
      "minDelta",
      "best",
      "wait",
      "bestEpoch",
      "stoppedEpoch",
    ]);
    assert.deepEqual(Object.keys(loop.guard), ["best", "smooth", "bestSmooth", "batches"]);
    assert.equal(loop.guard.bestSmooth, "__Infinity", "±Infinity and NaN kept as strings");
    assert.deepEqual(loop.stateful, [4], "the callbacks' states, in order");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a crash while a backup is written leaves the previous backup usable", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = backupPath(dir, "k1");
    let writes = 0;
    await assert.rejects(
      fit(tinyCnn(11), train, {
        ...options(path, new Counter()),
        backup: {
          path,
          key: "k1",
          describe: "tiny",
          beforeRename: () => {
            if (++writes === 2) throw new Error("crash while writing epoch 2's backup");
          },
        },
      }),
      /crash while writing/,
    );
    const backup = await readBackup(path);
    assert.equal(backup?.header.epoch, 1, "epoch 1's backup is intact");
    tf.dispose([...backup!.model, ...backup!.optimizer].map((n) => n.tensor));
    const left = [...Deno.readDirSync(join(dir, ".backups"))].map((e) => e.name);
    assert.deepEqual(left, ["k1.backup"], "no temporary file left behind");

    // A damaged file is refused with a message that says what to do.
    await Deno.writeFile(path, new TextEncoder().encode("MNISTBAK garbage"));
    await assert.rejects(
      readBackup(path),
      (e) => e instanceof BackupError && /move it aside/.test(e.message),
    );
    await removeBackup(path);
    assert.equal(await readBackup(path), null);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a backup of another run (another key) is not restored", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = join(dir, "x.backup");
    await fit(tinyCnn(11), train, { ...options(path, new Counter()), epochs: 1 });
    const notes: string[] = [];
    const r = await fit(tinyCnn(11), train, {
      ...options(path, new Counter()),
      epochs: 1,
      backup: { path, key: "another", describe: "other" },
      progress: { batch() {}, epoch() {}, note: (t) => void notes.push(t) },
    });
    assert.equal(r.resumedFrom, 0);
    assert.deepEqual(notes, []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a backup that cannot be written is one warning; training goes on and the next epoch writes it", async () => {
  const dir = await Deno.makeTempDir();
  const warn = console.warn;
  const warnings: string[] = [];
  console.warn = (...a: unknown[]) => void warnings.push(a.join(" "));
  try {
    const path = backupPath(dir, "k1");
    let writes = 0;
    const result = await fit(tinyCnn(11), train, {
      ...options(path, new Counter()),
      epochs: 3,
      backup: {
        path,
        key: "k1",
        describe: "tiny",
        beforeRename: () => {
          if (++writes === 1) throw new Error("No space left on device (os error 28)");
        },
      },
    });
    assert.equal(result.epochsRun, 3, "the run went on");
    assert.equal(warnings.length, 1, warnings.join("\n"));
    const size = (await Deno.stat(path)).size;
    assert.equal(
      warnings[0],
      `⚠ after epoch 1/3: could not write the backup in ${join(dir, ".backups")} (it needs ` +
        `about ${formatBytes(size)} free): No space left on device (os error 28); training goes ` +
        `on and the next epoch tries again`,
    );
    assert.equal(inspectBackup(path)?.epoch, 3, "the next epochs wrote it");
    assert.deepEqual([...Deno.readDirSync(join(dir, ".backups"))].map((e) => e.name), [
      "k1.backup",
    ]);
  } finally {
    console.warn = warn;
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("inspectBackup reads the header only and names a damaged file; moveAside keeps it", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = backupPath(dir, "k1");
    assert.equal(inspectBackup(path), null, "none yet");
    await fit(tinyCnn(11), train, { ...options(path, new Counter()), epochs: 2 });
    // the fit removes nothing: its caller (lib/runs/run_cache.ts) removes the backup of a finished run
    const header = inspectBackup(path)!;
    assert.deepEqual([header.key, header.epoch, header.epochs], ["k1", 2, 2]);
    assert.deepEqual(listBackups(dir).map((b) => b.header.epoch), [2]);
    const bytes = await Deno.readFile(path);
    const cases: [Uint8Array, string][] = [
      [bytes.subarray(0, bytes.length - 4), "truncated"],
      [bytes.subarray(0, 200), "damaged header"],
      [new TextEncoder().encode("not a backup at all"), "not a backup file"],
      [new Uint8Array(0), "not a backup file"],
    ];
    for (const [damaged, why] of cases) {
      await Deno.writeFile(path, damaged);
      assert.throws(
        () => inspectBackup(path),
        (e: Error) =>
          e instanceof BackupError && e.message.includes(`${path} is unreadable (${why})`),
        why,
      );
      await assert.rejects(readBackup(path), BackupError, why);
    }
    assert.deepEqual(listBackups(dir), [], "a damaged backup is nothing to resume");
    const aside = await moveAside(path, new Date("2026-12-02T21:50:00Z"));
    assert.equal(aside, `${path}.damaged-2026-12-02T21-50-00`);
    assert.equal((await Deno.stat(aside)).size, 0, "kept as it was");
    assert.equal(inspectBackup(path), null);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

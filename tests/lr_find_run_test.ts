import assert from "node:assert/strict";
import { join } from "node:path";
import {
  findLrFind,
  isLrFindRecord,
  loadLrFind,
  LR_FIND_DIR,
  lrFindKey,
  lrFindKeys,
  publishLrFind,
  studyFinderParts,
  studyFinderSettings,
  studyLrFind,
} from "../lib/study/lr_find_run.ts";
import { initBackend } from "../lib/machine/backend.ts";
import { loadMnist, takeFirst } from "../lib/data/mnist.ts";
import { PROFILES } from "../lib/study/profile.ts";
import { loadRuns } from "../lib/runs/runs.ts";
import { publishRecord } from "../lib/runs/results.ts";
import { acquireRunLock, lockPath } from "../lib/runs/run_lock.ts";

const CPU = { name: "cpu", device: "test", why: "test", precision: "float32" };
const base = {
  model: "vgg16_scratch" as const,
  profile: PROFILES.full,
  backend: CPU,
  train: { count: 60_000 },
  seed: 42,
};

Deno.test("a finder key: the net, sweep, data and seed count; the training rate and schedule do not", async () => {
  const key = (o: Partial<typeof base> & { variant?: object }) =>
    lrFindKey(studyFinderParts({ ...base, ...o }));
  const study = await key({});
  assert.equal(await key({ variant: { learningRate: 1e-4 } }), study, "a rate-only fix");
  assert.equal(await key({ variant: { lrSchedule: "cosine" } }), study);
  assert.equal(await key({ variant: { convActivation: "linear" } }), study, "defaults written out");
  assert.notEqual(await key({ variant: { convActivation: "relu" } }), study);
  assert.notEqual(await key({ seed: 1 }), study);
  assert.notEqual(await key({ profile: PROFILES.quick }), study, "another sweep");
  assert.notEqual(await key({ train: { count: 300 } }), study);
  assert.notEqual(await key({ backend: { ...CPU, name: "cpu-fast" } }), study);
  const s = studyFinderSettings(PROFILES.full);
  assert.equal(s.batchSize, 100, "the study's batch");
  assert.ok(s.steps >= 100 && s.steps <= 300, "a few hundred steps at most");
});

Deno.test("a finder run another process is computing is waited for under the run lock, then read from its record", async () => {
  const root = await Deno.makeTempDir();
  try {
    const mnist = await loadMnist();
    const opts = {
      model: "baseline" as const,
      profile: PROFILES.quick,
      backend: await initBackend({ quiet: true }),
      train: takeFirst(mnist.train, 64),
      seed: 8,
      settings: { startLr: 1e-4, endLr: 1, steps: 4, batchSize: 16, smoothing: 0.5, stopFactor: 4 },
    };
    // the other process's record, computed beforehand in a folder of its own
    const elsewhere = join(root, "elsewhere");
    const theirs = await studyLrFind(opts, { root: elsewhere, roots: [elsewhere], log: () => {} });
    // the other process holds the key's lock while it computes
    const holder = await acquireRunLock(lockPath(root, theirs.config.key), {
      describe: "the other process's finder run",
      log: () => {},
    });
    const lines: string[] = [];
    const asked = studyLrFind(opts, {
      root,
      roots: [root],
      retrain: false,
      log: (l: string) => lines.push(l),
      lockPollMs: 20,
    });
    while (!lines.length) await new Promise((r) => setTimeout(r, 10));
    assert.match(
      lines[0],
      /^waiting for baseline_cnn's learning-rate finder: being trained by PID/,
    );
    // it writes its record (whole, as records are: a hidden folder renamed into place, so the
    // waiter's looks never find half of it), then lets go of the lock
    const part = join(root, LR_FIND_DIR, `.${theirs.id}.part`);
    await Deno.mkdir(part, { recursive: true });
    for (const f of ["config.json", "curve.csv", "result.json"]) {
      await Deno.copyFile(join(theirs.dir, f), join(part, f));
    }
    await Deno.rename(part, join(root, LR_FIND_DIR, theirs.id));
    await holder.lock!.release();
    const got = await asked;
    assert.equal(got.id, theirs.id, "the other process's record");
    assert.deepEqual(got.result, theirs.result);
    assert.equal(lines.length, 2, lines.join("\n"));
    assert.match(lines[1], new RegExp(`from record ${theirs.id}$`), "not computed again");
    assert.deepEqual(await Array.fromAsync(Deno.readDir(join(root, ".locks"))), [], "no lock left");
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("a finder run is computed once: a record, found by key, apart from the training records", async () => {
  const root = await Deno.makeTempDir();
  try {
    const mnist = await loadMnist();
    const train = takeFirst(mnist.train, 64);
    const settings = {
      startLr: 1e-4,
      endLr: 1,
      steps: 4,
      batchSize: 16,
      smoothing: 0.5,
      stopFactor: 4,
    };
    const opts = {
      model: "baseline" as const,
      profile: PROFILES.quick,
      // the CPU fast path where it is set up (tfjs's pure-JS kernels take minutes for this net)
      backend: await initBackend({ quiet: true }),
      train,
      seed: 7,
      settings,
    };
    const lines: string[] = [];
    const run = { root, roots: [root], retrain: false, log: (l: string) => lines.push(l) };
    const first = await studyLrFind(opts, run);
    assert.match(lines[0], /^baseline_cnn: learning-rate finder, 4 steps of batch 16/);
    assert.ok(first.result.points.length <= 4);
    if (first.result.ended === "end") assert.equal(first.result.points.length, 4);
    assert.ok(first.result.points.every((p, i) => i === 0 || p.lr > first.result.points[i - 1].lr));
    assert.ok(await isLrFindRecord(first.dir));
    assert.equal(first.dir, join(root, LR_FIND_DIR, first.id));
    // the same run again: from the record, the same curve
    const again = await studyLrFind(opts, run);
    assert.match(lines[1], new RegExp(`from record ${first.id}$`));
    assert.deepEqual(again.result, first.result);
    assert.deepEqual(await lrFindKeys([root]), new Set([first.config.key]));
    assert.equal((await findLrFind(first.config.key, [root]))!.id, first.id);
    assert.equal(await findLrFind("0000000000000000", [root]), null);
    // a newer record of the key that is damaged is passed over with a line, and left as it is
    const damaged = join(root, LR_FIND_DIR, "damaged");
    await Deno.mkdir(damaged);
    await Deno.writeTextFile(
      join(damaged, "config.json"),
      JSON.stringify({ ...first.config, runId: "damaged", createdAt: "2999-01-01T00:00:00.000Z" }),
    );
    const warned: string[] = [];
    const found = await findLrFind(first.config.key, [root], (e) => warned.push(e.message));
    assert.equal(found!.id, first.id);
    assert.equal(warned.length, 1);
    assert.match(
      warned[0],
      new RegExp(`^learning-rate finder record ${damaged} is unreadable: .*result\\.json`),
    );
    await Deno.remove(damaged, { recursive: true });
    // training-record listings do not see it (no warning, no record)
    assert.deepEqual(await loadRuns(root), []);
    // publishing: full-profile records only, merged by key
    const dest = join(root, "records");
    await assert.rejects(
      publishLrFind(first.dir, dest),
      /quick-profile finder run; records\/ holds/,
    );
    const asFull = async (id: string) => {
      const dir = join(root, "made-elsewhere", id);
      await Deno.mkdir(dir, { recursive: true });
      for (const f of ["curve.csv", "result.json"]) {
        await Deno.copyFile(join(first.dir, f), join(dir, f));
      }
      const c = first.config;
      const config = {
        ...c,
        runId: id,
        keyParts: { ...c.keyParts, data: { ...c.keyParts.data, profile: "full" } },
      };
      await Deno.writeTextFile(join(dir, "config.json"), JSON.stringify(config));
      return dir;
    };
    const published = await publishRecord(await asFull("a"), dest);
    assert.equal(published, join(dest, LR_FIND_DIR, "a"));
    assert.deepEqual((await loadLrFind(published)).result, first.result);
    assert.equal(
      await publishRecord(await asFull("b"), dest),
      published,
      "same key: not copied again",
    );
    assert.deepEqual([...Deno.readDirSync(join(dest, LR_FIND_DIR))].map((e) => e.name), ["a"]);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

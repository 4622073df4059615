import assert from "node:assert/strict";
import { evidenceNote, evidenceRecords } from "../lib/study/evidence.ts";
import { evidenceRuns, NOTEBOOK_RUNS } from "../lib/study/notebooks.ts";
import { PROFILES } from "../lib/study/profile.ts";
import { STUDY_RECORDS } from "../lib/runs/runs.ts";
import { parseTrainArgs } from "../scripts/train.ts";
import { fakeSplit } from "./fixtures/mnist.ts";

const CPU_FAST = { name: "cpu-fast", device: "test", why: "test", precision: "float32" };
// the digits only by count: a run's key holds the data's size, not its pixels
const on = {
  profile: PROFILES.full,
  backend: CPU_FAST,
  train: fakeSplit(60_000, 1),
  test: fakeSplit(10_000, 2),
};

Deno.test("the baseline's evidence seeds are the committed records of seeds 1 and 2", async () => {
  const base = NOTEBOOK_RUNS["02_baseline_cnn"].baseline;
  const e = await evidenceRecords(evidenceRuns(base, PROFILES.full), on, [STUDY_RECORDS]);
  assert.deepEqual(e.records.map((r) => r.config.keyParts.seed), [1, 2]);
  assert.deepEqual(e.missing, []);
  assert.equal(evidenceNote(e), "");
  assert.deepEqual(evidenceRuns(base, PROFILES.quick), [], "the quick profile has none");
});

Deno.test("a missing evidence seed is named with the train command that makes its record", async () => {
  const empty = await Deno.makeTempDir();
  try {
    const vgg = NOTEBOOK_RUNS["03_vgg_small"].vggSmall;
    const e = await evidenceRecords(evidenceRuns(vgg, PROFILES.full), on, [empty]);
    assert.deepEqual(e.records, []);
    assert.deepEqual(e.missing, [
      "deno task train vgg_small --seed 1 --profile full --backend cpu-fast",
      "deno task train vgg_small --seed 2 --profile full --backend cpu-fast",
    ]);
    const o = parseTrainArgs(e.missing[0].split("deno task train ")[1].split(" "));
    assert.ok(!o.help && o.seed === 1 && o.profile === "full" && o.backend === "cpu-fast");
    const note = evidenceNote(e);
    assert.match(note, /^\*2 evidence seed runs are not recorded yet/);
    assert.ok(note.includes("```sh\n" + e.missing.join("\n") + "\n```"), note);
  } finally {
    await Deno.remove(empty, { recursive: true });
  }
});

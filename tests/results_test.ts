import assert from "node:assert/strict";
import { join } from "node:path";
import { REPO_ROOT } from "../lib/machine/env.ts";
import {
  currentResults,
  normalizeMarkdown,
  publishRecord,
  replaceResults,
  RESULTS_END,
  RESULTS_START,
  resultsBlock,
  resultsTable,
} from "../lib/runs/results.ts";
import { loadRun, loadRuns, STUDY_RECORDS } from "../lib/runs/runs.ts";
import { correctCount } from "../lib/report/stats.ts";
import { METHOD_NOTE } from "../lib/report/conclusions.ts";
import { atSeed } from "./fixtures/seeded_records.ts";

const FIXTURES = new URL("./fixtures/runs", import.meta.url).pathname;

Deno.test("README's results table is generated from the committed records", async () => {
  const readme = await Deno.readTextFile(join(REPO_ROOT, "README.md"));
  assert.equal(
    normalizeMarkdown(currentResults(readme)),
    normalizeMarkdown(await resultsBlock()),
    "README.md's results differ from records/: run `deno task results`",
  );
  // the study's best model, next to Keras's published figure (the same sentence as notebook 07)
  assert.match(
    normalizeMarkdown(currentResults(readme)),
    /The study's (best|highest-scoring) model: .+\*\*\d+\.\d\d%\*\* test accuracy.+95% interval .+Keras's own MNIST convnet example reports 99\.20%/s,
  );
  // and the conclusions with their uncertainty, generated from the same records
  const block = normalizeMarkdown(currentResults(readme));
  assert.ok(
    block.includes(normalizeMarkdown(METHOD_NOTE)),
    "the conclusions say how they are computed",
  );
  assert.match(block, /Each section's best model, ranked/);
});

Deno.test("every committed record is complete, readable and of the full profile", async () => {
  const names = [...Deno.readDirSync(STUDY_RECORDS)].filter((e) => e.isDirectory).map((e) =>
    e.name
  );
  const records = await loadRuns(STUDY_RECORDS);
  assert.equal(records.length, names.filter((n) => !n.startsWith(".")).length, "none skipped");
  for (const r of records) {
    assert.equal(r.config.profile.name, "full", r.id);
    // the intervals use the reported accuracy; the paired tests use the predictions: they agree
    assert.equal(
      correctCount(r.evaluation),
      Math.round(r.metrics.testAccuracy * r.metrics.testSamples),
      r.id,
    );
    assert.equal(r.evaluation.labels.length, r.metrics.testSamples, r.id);
    assert.equal(r.history.height, r.metrics.epochsRun, r.id);
    assert.equal(r.hasWeights, false, `${r.id}: weights are not committed`);
  }
});

Deno.test("resultsTable: one row per record with its number, record id and machine", async () => {
  const full = (await loadRuns(FIXTURES)).filter((r) => r.config.profile.name === "full");
  const table = resultsTable(full);
  const rows = table.split("\n").slice(2);
  assert.equal(rows.length, full.length);
  for (const r of full) {
    const row = rows.find((l) => l.includes(`\`${r.id}\``));
    assert.ok(row, r.id);
    assert.ok(row.includes(`**${(100 * r.metrics.testAccuracy).toFixed(2)}%**`), row);
    assert.ok(row.includes(r.config.machine.cpu), row);
  }
  assert.match(resultsTable([]), /No full-profile run record is committed yet/);
  const readme = `a\n${RESULTS_START}\nold\n${RESULTS_END}\nb`;
  assert.equal(replaceResults(readme, "NEW"), "a\nNEW\nb");
  assert.throws(() => replaceResults("no block", "x"), /no results block/);
  assert.equal(
    normalizeMarkdown("| a   | b |\n| ----- | --- |"),
    normalizeMarkdown("| a | b |\n| --- | --- |"),
  );
});

Deno.test("resultsTable: every accuracy with its Wilson interval, a variant's seeds together under their mean ± sd", async () => {
  const full = (await loadRuns(FIXTURES)).filter((r) => r.config.profile.name === "full");
  const small = full.find((r) => r.config.modelName === "vgg_small")!;
  // vgg_small at seeds 1, 2, 3: 98.90, 98.80, 97.90% — mean 98.53, sd 0.55
  const seeds = [atSeed(small, 3, 100), atSeed(small, 2, 10)];
  const rows = resultsTable([...full, ...seeds]).split("\n").slice(2);
  assert.equal(rows.length, full.length + 2);
  const smallRows = rows.map((l, i) => [l, i] as const).filter(([l]) =>
    l.includes("| vgg_small |")
  );
  assert.deepEqual(smallRows.map(([, i]) => i), [1, 2, 3], "one block, after 02's row");
  assert.deepEqual(smallRows.map(([l]) => l.split("|")[3].trim()), ["1", "2", "3"]);
  for (const [l] of smallRows) assert.ok(l.includes("| 98.53% ± 0.55 (3 seeds) |"), l);
  // 9,790 of 10,000: Wilson (python3, tests/stats_test.ts's formula) 0.97600–0.98163
  assert.ok(smallRows[2][0].includes("| **97.90%** | 97.60–98.16% |"), smallRows[2][0]);
  assert.equal(rows[0].split("|")[6].trim(), "–", "a variant at one seed has no spread");
});

Deno.test("publishRecord copies a full record without weights and refuses other profiles", async () => {
  const dest = await Deno.makeTempDir();
  try {
    const full = (await loadRuns(FIXTURES)).find((r) => r.config.profile.name === "full")!;
    const dir = await publishRecord(full.dir, dest);
    const copy = await loadRun(dir);
    assert.equal(copy.id, full.id);
    assert.equal(copy.metrics.testAccuracy, full.metrics.testAccuracy);
    assert.ok(![...Deno.readDirSync(dir)].some((e) => e.name === "weights.bin"));
    const quick = (await loadRuns(FIXTURES)).find((r) => r.config.profile.name === "quick")!;
    await assert.rejects(publishRecord(quick.dir, dest), /quick-profile run; records\/ holds/);
    assert.deepEqual([...Deno.readDirSync(dest)].map((e) => e.name), [full.id]);
  } finally {
    await Deno.remove(dest, { recursive: true });
  }
});

Deno.test("deno task results answers --help, and an unknown option with one line and the usage", async () => {
  const script = new URL("../scripts/results.ts", import.meta.url).pathname;
  const run = (args: string[]) =>
    new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", script, ...args],
      stdout: "piped",
      stderr: "piped",
    })
      .output();
  const help = await run(["--help"]);
  assert.equal(help.code, 0);
  assert.match(new TextDecoder().decode(help.stdout), /^deno task results \[--publish/);
  const bad = await run(["--bogus"]);
  assert.equal(bad.code, 2);
  const err = new TextDecoder().decode(bad.stderr);
  assert.match(err.split("\n")[0], /^results: .*bogus/);
  assert.match(err, /deno task results \[--publish/);
});

Deno.test("results --check: a damaged committed record is named in one line (and fails the check)", async () => {
  const { damagedLines } = await import("../scripts/results.ts");
  const root = await Deno.makeTempDir({ prefix: "records_damaged_" });
  try {
    const full = (await loadRuns(FIXTURES)).find((r) => r.config.profile.name === "full")!;
    const copy = await publishRecord(full.dir, root);
    assert.deepEqual(await damagedLines(root), [], "a readable record is not listed");
    await Deno.writeFile(join(copy, "test_probabilities.f32"), new Uint8Array(12));
    const lines = await damagedLines(root);
    assert.equal(lines.length, 1);
    assert.match(
      lines[0],
      new RegExp(
        `^run record ${copy} is unreadable: test_probabilities\\.f32: it holds 12 bytes, expected \\d+ — a committed record must read: restore it`,
      ),
    );
    assert.equal((await Deno.stat(join(copy, "test_probabilities.f32"))).size, 12, "untouched");
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("publishRecord merges by key: the same run made on a second machine is not copied again", async () => {
  const dest = await Deno.makeTempDir();
  const other = await Deno.makeTempDir();
  try {
    const full = (await loadRuns(FIXTURES)).find((r) => r.config.profile.name === "full")!;
    const first = await publishRecord(full.dir, dest);
    // the same key under another run id, as another machine names its folder
    const twin = join(other, `${full.id}_other`);
    await Deno.mkdir(twin);
    for (const e of Deno.readDirSync(full.dir)) {
      await Deno.copyFile(join(full.dir, e.name), join(twin, e.name));
    }
    const config = JSON.parse(await Deno.readTextFile(join(twin, "config.json")));
    await Deno.writeTextFile(
      join(twin, "config.json"),
      JSON.stringify({ ...config, runId: `${full.id}_other` }),
    );
    assert.equal(await publishRecord(twin, dest), first, "the record already there is the answer");
    assert.deepEqual([...Deno.readDirSync(dest)].map((e) => e.name), [full.id]);
    // republishing the same record replaces it (a fixed copy)
    assert.equal(await publishRecord(full.dir, dest), first);
  } finally {
    await Deno.remove(dest, { recursive: true });
    await Deno.remove(other, { recursive: true });
  }
});

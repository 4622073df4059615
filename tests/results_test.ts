import assert from "node:assert/strict";
import { join } from "node:path";
import { REPO_ROOT } from "../lib/env.ts";
import {
  currentResults,
  normalizeMarkdown,
  publishRecord,
  replaceResults,
  RESULTS_END,
  RESULTS_START,
  resultsBlock,
  resultsTable,
} from "../lib/results.ts";
import { loadRun, loadRuns, STUDY_RECORDS } from "../lib/runs.ts";

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
    currentResults(readme),
    /The study's best model: .+\*\*\d+\.\d\d%\*\* test accuracy.+Keras's own MNIST convnet example reports 99\.20%/s,
  );
});

Deno.test("every committed record is complete, readable and of the full profile", async () => {
  const names = [...Deno.readDirSync(STUDY_RECORDS)].filter((e) => e.isDirectory).map((e) =>
    e.name
  );
  const records = await loadRuns(STUDY_RECORDS);
  assert.equal(records.length, names.filter((n) => !n.startsWith(".")).length, "none skipped");
  for (const r of records) {
    assert.equal(r.config.profile.name, "full", r.id);
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

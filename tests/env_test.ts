/**
 * lib/machine/env.ts: the one table of environment variables (KNOBS) is the only place the project's code
 * reads the environment, lists nothing stale, and is the table the README shows.
 */
import assert from "node:assert/strict";
import { tsFiles } from "./fixtures/source_files.ts";
import { join } from "node:path";
import { envVar, KNOBS, knobsTable, REPO_ROOT } from "../lib/machine/env.ts";

const CODE = ["lib", "scripts", "bench"].flatMap((d) => tsFiles(join(REPO_ROOT, d)));
const ENV_TS = join(REPO_ROOT, "lib", "machine", "env.ts");

Deno.test("only lib/machine/env.ts reads the environment (lib/, scripts/, bench/)", () => {
  const readers = CODE.filter((f) => f !== ENV_TS)
    .filter((f) => /Deno\.env\.get\(|process\.env\b/.test(Deno.readTextFileSync(f)));
  assert.deepEqual(readers.map((f) => f.slice(REPO_ROOT.length)), []);
});

Deno.test("every knob in the table is read somewhere (no stale rows)", () => {
  const all = [...CODE, ...tsFiles(join(REPO_ROOT, "tests"))].filter((f) => f !== ENV_TS)
    .map((f) => Deno.readTextFileSync(f)).join("\n");
  const unread = Object.keys(KNOBS).filter((k) => !all.includes(`"${k}"`));
  assert.deepEqual(unread, []);
});

Deno.test("envVar reads a knob, and treats empty as unset", () => {
  const before = Deno.env.get("CPU_FAST_GEMM");
  try {
    Deno.env.set("CPU_FAST_GEMM", "js");
    assert.equal(envVar("CPU_FAST_GEMM"), "js");
    Deno.env.set("CPU_FAST_GEMM", "");
    assert.equal(envVar("CPU_FAST_GEMM"), undefined);
  } finally {
    if (before === undefined) Deno.env.delete("CPU_FAST_GEMM");
    else Deno.env.set("CPU_FAST_GEMM", before);
  }
});

Deno.test("README's knobs table is the one generated from KNOBS", async () => {
  const readme = await Deno.readTextFile(join(REPO_ROOT, "README.md"));
  const m = readme.match(/<!-- knobs:start[^>]*-->\n([\s\S]*?)\n<!-- knobs:end -->/);
  assert.ok(m, "README.md has no <!-- knobs:start --> … <!-- knobs:end --> block");
  const cells = (t: string) =>
    t.trim().split("\n").map((l) => l.split("|").map((c) => c.trim()).join("|"));
  // compared cell by cell, so `deno fmt`'s column padding does not matter
  assert.deepEqual(
    cells(m[1]).map((l) => l.replace(/-{3,}/g, "---")),
    cells(knobsTable()),
    "regenerate it: deno eval 'import {knobsTable} from \"./lib/machine/env.ts\"; console.log(knobsTable())'",
  );
});

Deno.test("bench/README.md names every knob of the kernels (cpu-fast and webgpu)", async () => {
  const bench = await Deno.readTextFile(join(REPO_ROOT, "bench", "README.md"));
  const kernelKnobs = Object.entries(KNOBS).filter(([, [group]]) =>
    group === "cpu-fast" || group === "webgpu"
  ).map(([name]) => name);
  assert.ok(kernelKnobs.length >= 10);
  assert.deepEqual(kernelKnobs.filter((k) => !new RegExp(`\\b${k}\\b`).test(bench)), []);
});

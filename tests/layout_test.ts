/**
 * The code's layout: no import cycles among the project's modules (type-only imports included:
 * a type that closes a circle lives in the wrong module), and lib/README.md's map of lib/ names
 * every module once and nothing else.
 */
import assert from "node:assert/strict";
import { tsFiles } from "./fixtures/source_files.ts";
import { dirname, join, relative, resolve } from "node:path";

const ROOT = resolve(dirname(new URL(import.meta.url).pathname), "..");
const SOURCES = ["lib", "scripts", "bench"];

/** The relative modules a source imports or re-exports statically (`import type` included). */
export function relativeImports(source: string): string[] {
  const code = source.replace(/\/\*[\s\S]*?\*\//g, "").replace(/^\s*\/\/.*$/gm, "");
  const specs: string[] = [];
  for (const m of code.matchAll(/(?:^|\n)\s*(?:import|export)\b[^"';]*?from\s*["']([^"']+)["']/g)) {
    specs.push(m[1]);
  }
  for (const m of code.matchAll(/(?:^|\n)\s*import\s*["']([^"']+)["']/g)) specs.push(m[1]);
  return specs.filter((s) => s.startsWith("."));
}

/** The import graph's cycles: strongly connected components of more than one module (Tarjan). */
export function importCycles(graph: Map<string, string[]>): string[][] {
  let counter = 0;
  const index = new Map<string, number>(), low = new Map<string, number>();
  const stack: string[] = [], onStack = new Set<string>(), cycles: string[][] = [];
  const visit = (v: string) => {
    index.set(v, counter);
    low.set(v, counter++);
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
    }
    if (low.get(v) === index.get(v)) {
      const scc: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        scc.push(w);
      } while (w !== v);
      if (scc.length > 1 || (graph.get(v) ?? []).includes(v)) cycles.push(scc.sort());
    }
  };
  for (const v of graph.keys()) if (!index.has(v)) visit(v);
  return cycles;
}

function projectGraph(): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  for (const file of SOURCES.flatMap((d) => tsFiles(join(ROOT, d)))) {
    const deps = relativeImports(Deno.readTextFileSync(file)).map((s) =>
      relative(ROOT, resolve(dirname(file), s))
    );
    graph.set(relative(ROOT, file), deps);
  }
  return graph;
}

Deno.test("the cycle finder finds a circle through a type import and none in a chain", () => {
  const src = `import type { A } from "./a.ts";\nexport { b } from "./b.ts";\n` +
    `// import { c } from "./c.ts";\nimport "./side.ts";\nimport * as tf from "@tensorflow/tfjs";`;
  assert.deepEqual(relativeImports(src), ["./a.ts", "./b.ts", "./side.ts"]);
  const chain = new Map([["a", ["b"]], ["b", ["c"]], ["c", []]]);
  assert.deepEqual(importCycles(chain), []);
  const circle = new Map([["a", ["b"]], ["b", ["c"]], ["c", ["a"]], ["d", ["a"]]]);
  assert.deepEqual(importCycles(circle), [["a", "b", "c"]]);
});

Deno.test("no import cycles in lib/, scripts/ and bench/ (type-only imports included)", () => {
  const cycles = importCycles(projectGraph());
  assert.deepEqual(
    cycles.map((c) => c.join(" ↔ ")),
    [],
    "move the type or function that closes each circle into the module that owns the concept",
  );
});

/**
 * The modules a map in lib/README.md's format lists: each "- `room/file.ts` — job" line, with the
 * folder of the "## room/ — …" or "### room/sub/ — …" heading it sits under.
 */
export function mapEntries(markdown: string): { path: string; heading: string | null }[] {
  const entries: { path: string; heading: string | null }[] = [];
  let heading: string | null = null;
  for (const line of markdown.split("\n")) {
    const h = line.match(/^#{2,}\s+(\S+)\/\s+—/);
    if (h) heading = h[1];
    const m = line.match(/^- `([^`]+)` — \S/);
    if (m) entries.push({ path: m[1], heading });
  }
  return entries;
}

Deno.test("the map parser reads entries and the room each sits under", () => {
  const md = "# lib/\n\n- `stray.ts` — before any room\n## data/ — MNIST\n\n" +
    "- `data/mnist.ts` — reads IDX\n- not an entry\n### kernels/js/ — kernels\n" +
    "- `kernels/js/pad.ts` — PadV2\n";
  assert.deepEqual(mapEntries(md), [
    { path: "stray.ts", heading: null },
    { path: "data/mnist.ts", heading: "data" },
    { path: "kernels/js/pad.ts", heading: "kernels/js" },
  ]);
});

Deno.test("lib/README.md maps every module of lib/ exactly once, each in its own room", () => {
  const lib = join(ROOT, "lib");
  const entries = mapEntries(Deno.readTextFileSync(join(lib, "README.md")));
  const listed = entries.map((e) => e.path);
  const modules = tsFiles(lib).map((f) => relative(lib, f)).sort();
  assert.deepEqual(
    modules.filter((m) => !listed.includes(m)),
    [],
    "modules missing from lib/README.md: add a line for each",
  );
  assert.deepEqual(
    listed.filter((p, i) => listed.indexOf(p) !== i),
    [],
    "listed more than once in lib/README.md",
  );
  assert.deepEqual(
    listed.filter((p) => !modules.includes(p)),
    [],
    "lib/README.md lists files that do not exist",
  );
  assert.deepEqual(
    entries.filter((e) => dirname(e.path) !== e.heading).map((e) => e.path),
    [],
    "listed under another room's heading in lib/README.md",
  );
});

/**
 * The code's layout: no import cycles among the project's modules (type-only imports included:
 * a type that closes a circle lives in the wrong module).
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

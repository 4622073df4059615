/**
 * `deno task results [--publish <record folder>…]`: copies finished full-profile run records
 * (without weights) into `records/`, then regenerates the README's results table from every
 * record there. `--check` only says whether the README's table is up to date.
 */
import { parseArgs } from "node:util";
import { REPO_ROOT } from "../lib/env.ts";
import {
  currentResults,
  normalizeMarkdown,
  publishRecord,
  replaceResults,
  resultsBlock,
} from "../lib/results.ts";
import { join } from "node:path";

const HELP = `deno task results [--publish <record folder>…] [--check]

Publishes the study's full-profile run records and regenerates README.md's results table.

  --publish DIR   copy this finished run record (without weights) into records/ (repeatable)
  --check         exit 1 if README.md's results table differs from records/ (nothing is written)
  -h, --help      this text`;

export function parseResultsArgs(args: string[]) {
  const { values } = parseArgs({
    args,
    options: {
      publish: { type: "string", multiple: true },
      check: { type: "boolean" },
      help: { type: "boolean", short: "h" },
    },
  });
  return {
    publish: values.publish ?? [],
    check: values.check ?? false,
    help: values.help ?? false,
  };
}

async function main(): Promise<void> {
  let opts: ReturnType<typeof parseResultsArgs>;
  try {
    opts = parseResultsArgs(Deno.args);
  } catch (e) {
    console.error(`results: ${(e as Error).message}\n\n${HELP}`);
    Deno.exit(2);
  }
  if (opts.help) {
    console.log(HELP);
    return;
  }
  for (const dir of opts.publish) console.log(`published ${await publishRecord(dir)}`);
  const path = join(REPO_ROOT, "README.md");
  const readme = await Deno.readTextFile(path);
  const block = await resultsBlock();
  if (opts.check) {
    if (normalizeMarkdown(currentResults(readme)) !== normalizeMarkdown(block)) {
      console.error("README.md's results table differs from records/: run `deno task results`");
      Deno.exit(1);
    }
    console.log("README.md's results table matches records/");
    return;
  }
  const updated = replaceResults(readme, block);
  if (updated !== readme) {
    await Deno.writeTextFile(path, updated);
    // Keep the README as `deno fmt` leaves it (the table aligned), so fmt stays clean.
    await new Deno.Command(Deno.execPath(), { args: ["fmt", path], stderr: "null" }).output();
  }
  console.log(
    updated === readme ? "README.md is up to date" : "README.md's results table rewritten",
  );
}

if (import.meta.main) await main();

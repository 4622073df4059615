/**
 * `deno task results [--publish <record folder>…]`: copies finished full-profile run records
 * (without weights) into `records/`, then regenerates the README's results table from every
 * record there. `--check` only says whether the README's table is up to date. A committed
 * record that cannot be read fails both: the table would silently lose its row.
 */
import { parseArgs } from "node:util";
import { REPO_ROOT, repoRelative } from "../lib/machine/env.ts";
import { runCommand } from "../lib/machine/cli_error.ts";
import { writeFileAtomic } from "../lib/machine/atomic_write.ts";
import { damagedRecords, STUDY_RECORDS } from "../lib/runs/runs.ts";
import {
  currentResults,
  normalizeMarkdown,
  publishRecord,
  replaceResults,
  resultsBlock,
} from "../lib/runs/results.ts";
import { basename, join } from "node:path";

const HELP = `deno task results [--publish <record folder>…] [--check]

Publishes the study's full-profile run records and regenerates README.md's results table.

  --publish DIR   copy this finished run record (without weights) into records/ (repeatable)
  --check         exit 1 if README.md's results table differs from records/, or a record there
                  is damaged (nothing is written)
  --debug         show the stack trace of an error (also MNIST_DEBUG=1)
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

/**
 * One line per committed record under `root` that cannot be read (what is wrong, and what to
 * do); empty when every record reads.
 */
export async function damagedLines(root = STUDY_RECORDS): Promise<string[]> {
  return (await damagedRecords([root])).map((e) =>
    `${e.message} — a committed record must read: restore it (git checkout -- ` +
    `${repoRelative(e.dir)}) or publish it again`
  );
}

async function main(args: string[]): Promise<number> {
  let opts: ReturnType<typeof parseResultsArgs>;
  try {
    opts = parseResultsArgs(args);
  } catch (e) {
    console.error(`results: ${(e as Error).message}\n\n${HELP}`);
    return 2;
  }
  if (opts.help) {
    console.log(HELP);
    return 0;
  }
  for (const dir of opts.publish) {
    const to = await publishRecord(dir);
    console.log(
      basename(to) === basename(dir)
        ? `published ${to}`
        : `not copied: ${to} is the same run (same key), already published`,
    );
  }
  const damaged = await damagedLines();
  if (damaged.length) {
    for (const line of damaged) console.error(`results: ${line}`);
    return 1;
  }
  const path = join(REPO_ROOT, "README.md");
  const readme = await Deno.readTextFile(path);
  const block = await resultsBlock();
  if (opts.check) {
    if (normalizeMarkdown(currentResults(readme)) !== normalizeMarkdown(block)) {
      console.error("README.md's results table differs from records/: run `deno task results`");
      return 1;
    }
    console.log("README.md's results table matches records/");
    return 0;
  }
  const updated = replaceResults(readme, block);
  if (updated !== readme) {
    await writeFileAtomic(path, updated);
    // Keep the README as `deno fmt` leaves it (the table aligned), so fmt stays clean.
    await new Deno.Command(Deno.execPath(), { args: ["fmt", path], stderr: "null" }).output();
  }
  console.log(
    updated === readme ? "README.md is up to date" : "README.md's results table rewritten",
  );
  return 0;
}

if (import.meta.main) await runCommand("results", main);

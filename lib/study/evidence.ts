/**
 * The evidence seeds as a notebook shows them: the records that exist, and for each one still
 * missing the `deno task train` command that makes it. A notebook does not train its evidence
 * seeds (hours of CPU each for VGG16, and a fresh clone renders the study from `records/` in
 * minutes); `deno task report --plan --commands` lists the same commands for a job runner.
 */
import type { MnistSplit } from "../data/mnist.ts";
import type { Profile } from "./profile.ts";
import { findRun, type RunRecord } from "../runs/runs.ts";
import { runKey } from "../runs/run_key.ts";
import { trainCommand } from "../runs/plan.ts";
import { requestKeyOptions, type RunRequest, trainArgs } from "./notebooks.ts";
import { studyKeyParts } from "./study_run.ts";

/** What the notebook has of its evidence seeds. */
export interface Evidence {
  /** The records found, in the requests' order. */
  records: RunRecord[];
  /** One command per missing record. */
  missing: string[];
}

/** The records of `requests` (evidence seeds) on this profile and backend, and what is missing. */
export async function evidenceRecords(
  requests: RunRequest[],
  on: {
    profile: Profile;
    backend: { name: string; device: string; why: string; precision: string };
    train: MnistSplit;
    test: MnistSplit;
  },
  roots?: string[],
): Promise<Evidence> {
  const out: Evidence = { records: [], missing: [] };
  for (const r of requests) {
    const key = await runKey(studyKeyParts(requestKeyOptions(r, on)));
    const found = await findRun(key, roots, () => {});
    if (found) out.records.push(found);
    else out.missing.push(trainCommand(trainArgs(r, on.profile), on));
  }
  return out;
}

/** A notebook's line on its missing evidence seeds (Markdown; empty when none is missing). */
export function evidenceNote(e: Evidence): string {
  if (!e.missing.length) return "";
  const n = e.missing.length;
  return `*${n} evidence seed run${n === 1 ? " is" : "s are"} not recorded yet, so the spread ` +
    `above leaves ${n === 1 ? "it" : "them"} out. Each is one command (or all of them: ` +
    "`deno task report --plan --commands`):*\n\n```sh\n" + e.missing.join("\n") + "\n```";
}

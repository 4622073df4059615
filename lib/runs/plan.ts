/**
 * What running the study will cost before it starts: every run each notebook asks for (by the
 * same keys the notebooks compute), whether its record exists, whether a backup will resume
 * it, and roughly how long the rest will take on the chosen backend — from the throughput of
 * earlier records made with the same backend line where there are some, else from rough
 * figures measured on a 2-core CPU.
 * `deno task report` prints it per notebook; a notebook started on the full profile on a CPU
 * prints its own line.
 */
import { backupPath, readBackup } from "./backup.ts";
import { formatDuration } from "../report/format.ts";
import type { BackendInfo } from "../machine/backend.ts";
import { envVar } from "../machine/env.ts";
import { RESNET152V2_HEAD, VGG16_HEAD } from "../models/heads.ts";
import { epochsFor, type Profile } from "../study/profile.ts";
import { retrainRequested } from "./run_cache.ts";
import {
  estimateSeconds,
  expectedThroughput,
  NOTEBOOK_OVERHEAD_S,
  ROUGH_CPU_THROUGHPUT,
  RUN_OVERHEAD_S,
  RUN_OVERHEAD_SHARE,
} from "./estimate.ts";
import { runKey, type RunKeyParts } from "./run_key.ts";
import {
  damagedLine,
  damagedRecords,
  findRun,
  recordRoots,
  type RunRecord,
  runsRoot,
} from "./runs.ts";
import {
  findLrFind,
  lrFindKey,
  type LrFindKeyParts,
  type LrFindRecord,
  studyFinderParts,
} from "../study/lr_find_run.ts";
import {
  STUDY_MODELS,
  TRANSFER_HEADS,
  type TransferName,
  type Variant,
} from "../study/settings.ts";
import {
  evidenceRuns,
  NOTEBOOK_RUNS,
  profileTrainCount,
  requestKeyOptions,
  type RunRequest,
  STUDY_SEED,
  trainArgs,
  TRANSFER_RUNS,
  transferCounts,
  VGG16_SEED_SWEEP,
  vgg16EvidenceRuns,
} from "../study/notebooks.ts";
import { pickTrainingSeed, runName, studyKeyParts } from "../study/study_run.ts";
import { transferKeyParts } from "../transfer/transfer.ts";
import { join } from "node:path";
import { KERAS_WEIGHTS, kerasCacheDirs, PROJECT_WEIGHTS_DIR } from "../transfer/weights.ts";

/** One run a notebook will ask for. */
export interface PlannedRun {
  notebook: string;
  name: string;
  parts: RunKeyParts;
  key: string;
  /**
   * The `deno task train` arguments that make this run's record (the same key as the
   * notebook's), or null where only its notebook makes it (the transfer heads, whose features
   * come from the notebook's frozen base).
   */
  train: string[] | null;
  /** The finished record that will be shown instead of training, if any. */
  record: RunRecord | LrFindRecord | null;
  /** An evidence seed (see `NotebookRun.evidence`). */
  evidence?: boolean;
  /** Finished epochs of an interrupted run's backup, if one will be resumed. */
  resumeFrom: number | null;
  /** What must exist before its command can be written (see `NotebookRun.pendingOn`). */
  pendingOn?: string;
  /**
   * Seconds left to train, with the run's overhead (0 when cached; null when nothing says how
   * fast this backend is).
   */
  seconds: number | null;
}

/** A run of `notebookRuns`: where it is asked for, its key parts, and how to make it alone. */
export interface NotebookRun {
  notebook: string;
  name: string;
  parts: RunKeyParts;
  /** `deno task train` arguments for it, or null (see `PlannedRun.train`). */
  train: string[] | null;
  /** What must exist before its command can be written (e.g. the sweep that picks its seed). */
  pendingOn?: string;
  /** The frozen base a transfer run extracts features with first. */
  base?: string;
  /**
   * An evidence seed (lib/study/notebooks.ts): its notebook shows its record where one exists and
   * names its command where not, but does not train it; it is not in the notebook's time.
   */
  evidence?: boolean;
  /**
   * A learning-rate finder run (lib/study/lr_find_run.ts): its own key; `parts` then describes its
   * sweep as a one-epoch run over its steps' samples, which is what its time is estimated from.
   */
  finder?: LrFindKeyParts;
}

/** The weights key a transfer notebook will get: the published md5 if the file is at hand, else random. */
async function expectedWeightsKey(name: TransferName): Promise<string> {
  const spec = KERAS_WEIGHTS[name];
  const dirs = [...kerasCacheDirs(envVar("KERAS_HOME")), PROJECT_WEIGHTS_DIR];
  for (const dir of dirs) {
    try {
      await Deno.stat(join(dir, spec.file));
      return spec.md5;
    } catch {
      // not here
    }
  }
  return `random:${STUDY_SEED}`;
}

/** Key parts of every run each training notebook asks for under `profile` on `backend`. */
export async function notebookRuns(
  profile: Profile,
  backend: Pick<BackendInfo, "name" | "device" | "why" | "precision">,
  roots = recordRoots(),
): Promise<NotebookRun[]> {
  const out: NotebookRun[] = [];
  const test = { count: profile.testSamples };
  // The declaration's requests, as the notebooks ask for them (lib/study/notebooks.ts).
  const request = (r: RunRequest, name?: string): NotebookRun => {
    const m = STUDY_MODELS[r.model];
    const count = profileTrainCount(r.model, profile);
    return {
      notebook: m.section,
      name: name ?? runName(m.kerasName, r.variant, r.loss),
      parts: studyKeyParts(
        requestKeyOptions(r, { profile, backend, train: { count }, test }),
      ),
      train: trainArgs(r, profile),
    };
  };
  const evidence = (r: RunRequest): NotebookRun => ({ ...seeded(r), evidence: true });
  const seeded = (r: RunRequest) =>
    request(r, `${runName(STUDY_MODELS[r.model].kerasName, r.variant, r.loss)} (seed ${r.seed})`);
  const nb04 = NOTEBOOK_RUNS["04_vgg16_scratch"];
  for (
    const r of [NOTEBOOK_RUNS["02_baseline_cnn"].baseline, NOTEBOOK_RUNS["03_vgg_small"].vggSmall]
  ) {
    out.push(request(r), ...evidenceRuns(r, profile).map(evidence));
  }
  out.push(request(nb04.study), request(nb04.clipped));
  for (const r of Object.values(nb04.fixes)) out.push(request(r));
  // Notebook 04's seed sweep, then the full run of the seed it picks (as the notebook picks it;
  // while sweep runs are missing, the first seed stands in: the time does not depend on it).
  const sweepRuns = [];
  for (const r of nb04.sweep) {
    const run = request(r, `vgg16_scratch (seed ${r.seed}, first steps)`);
    out.push(run);
    const found = await findRun(await runKey(run.parts), roots);
    sweepRuns.push({ seed: r.seed, testAccuracy: found ? found.metrics.testAccuracy : null });
  }
  const picked = pickTrainingSeed(sweepRuns, VGG16_SEED_SWEEP.trainedAbove);
  const pending = sweepRuns.some((r) => r.testAccuracy === null);
  if (picked !== null || pending) {
    const run = seeded(nb04.rerun(picked ?? VGG16_SEED_SWEEP.seeds[0]));
    // the seed is the sweep's verdict: no command until the sweep's records exist
    if (picked === null) {
      run.train = null;
      run.pendingOn = "the seed sweep's runs";
    }
    out.push(run);
  }
  // The evidence seeds of the study's run and its best fixes (one of them may be the rerun's).
  const listed = new Set(await Promise.all(out.map((r) => runKey(r.parts))));
  for (const r of vgg16EvidenceRuns(profile).map(evidence)) {
    const key = await runKey(r.parts);
    if (!listed.has(key)) out.push(r), listed.add(key);
  }
  // Notebook 04's learning-rate finder: one sweep per net (a fix that changes only the rate
  // shares its net's), from the study's initial weights.
  const nets = new Map<string, Variant>();
  for (const v of [{}, ...Object.values(nb04.fixes).map((r) => r.variant)] as Variant[]) {
    const net = { convActivation: v.convActivation, convInit: v.convInit, batchNorm: v.batchNorm };
    const id = [net.convActivation ?? "linear", net.convInit ?? "glorot", !!net.batchNorm];
    if (!nets.has(id.join())) nets.set(id.join(), net);
  }
  for (const variant of nets.values()) {
    const m = STUDY_MODELS.vgg16_scratch;
    const train = { count: profile.vggTrainSamples };
    const finder = studyFinderParts({
      model: "vgg16_scratch",
      variant,
      profile,
      backend,
      train,
      seed: STUDY_SEED,
    });
    const sweep = finder.finder;
    out.push({
      notebook: m.section,
      name: `${runName(m.kerasName, variant)} learning-rate finder`,
      finder,
      parts: studyKeyParts({
        model: "vgg16_scratch",
        variant,
        profile,
        backend,
        train: { count: sweep.steps * sweep.batchSize },
        test: { count: 0 },
        seed: STUDY_SEED,
        epochs: 1,
        batchSize: sweep.batchSize,
      }),
      train: [
        ...trainArgs({ model: "vgg16_scratch", seed: STUDY_SEED, variant }, profile),
        "--lr-find",
      ],
    });
  }
  for (const name of ["vgg16", "resnet152v2"] as const) {
    const s = TRANSFER_HEADS[name];
    const n = transferCounts(name, profile);
    const splits = { train: { count: n.train }, test: { count: n.test } };
    const weightsKey = await expectedWeightsKey(name);
    for (const mode of TRANSFER_RUNS[name].modes) {
      out.push({
        notebook: s.section,
        name: mode === "study" ? s.kerasName : `${s.kerasName}_${mode}`,
        base: `${name} base`,
        train: null,
        parts: transferKeyParts({
          name,
          head: name === "vgg16" ? VGG16_HEAD : RESNET152V2_HEAD,
          headName: s.kerasName,
          mode,
          profile,
          backend,
          seed: TRANSFER_RUNS[name].seed,
          epochs: epochsFor(profile, s.epochs),
          batchSize: s.batchSize,
          splits,
          base: { weightsKey },
        }),
      });
    }
  }
  return out;
}

/** The plan: each run with its record, backup and time left. */
export async function planStudy(
  profile: Profile,
  backend: Pick<BackendInfo, "name" | "device" | "why" | "precision">,
  opts: {
    notebook?: string;
    roots?: string[];
    root?: string;
    /** Where throughput is read from (default: `roots`); a test points it at a recorded report. */
    measuredFrom?: string[];
  } = {},
): Promise<PlannedRun[]> {
  const retrain = retrainRequested();
  const roots = opts.roots ?? recordRoots();
  const runs = (await notebookRuns(profile, backend, roots))
    .filter((r) => !opts.notebook || r.notebook === opts.notebook);
  const plan: PlannedRun[] = [];
  for (const r of runs) {
    const key = r.finder ? await lrFindKey(r.finder) : await runKey(r.parts);
    const record = retrain
      ? null
      : r.finder
      ? await findLrFind(key, roots)
      : await findRun(key, roots);
    let resumeFrom: number | null = null;
    if (!record) {
      const backup = await readBackup(backupPath(opts.root ?? runsRoot(), key)).catch(() => null);
      if (backup) {
        resumeFrom = backup.header.epoch;
        backup.model.concat(backup.optimizer).forEach((t) => t.tensor.dispose());
      }
    }
    let seconds: number | null = 0;
    if (!record) {
      const sps = await expectedThroughput(r.parts, backend, opts.measuredFrom ?? roots);
      const t = r.parts.training;
      const left = 1 - (resumeFrom ?? 0) / t.epochs;
      let work = sps === null ? null : estimateSeconds(r.parts, sps) * left;
      if (r.base && work !== null && sps !== null) {
        // The base's one pass over train + test images, unless its features are cached, at
        // the rough rate slowed as much as this set-up's head is against its rough figure.
        const rate = backend.name === "cpu-fast" ? ROUGH_CPU_THROUGHPUT[r.base] : undefined;
        const head = ROUGH_CPU_THROUGHPUT[r.parts.model.builder];
        const images = r.parts.data.trainSamples + r.parts.data.testSamples;
        work = rate && head ? work + images / rate * Math.max(1, head / sps) : null;
      }
      seconds = work === null
        ? null
        : work * (1 + RUN_OVERHEAD_SHARE) + (RUN_OVERHEAD_S[r.parts.model.builder] ?? 0);
    }
    plan.push({
      notebook: r.notebook,
      name: r.name,
      parts: r.parts,
      key,
      train: r.train,
      pendingOn: r.pendingOn,
      evidence: r.evidence,
      record,
      resumeFrom,
      seconds,
    });
  }
  return plan;
}

/**
 * Seconds each notebook of the plan will take: its runs left to train with their overheads,
 * plus the notebook's own (`NOTEBOOK_OVERHEAD_S`); null where a run's
 * time is unknown on this backend.
 */
export function notebookSeconds(plan: PlannedRun[]): Map<string, number | null> {
  const out = new Map<string, number | null>();
  for (const nb of new Set(plan.map((p) => p.notebook))) {
    const runs = plan.filter((p) => p.notebook === nb && !p.evidence);
    const time = totalSeconds(runs);
    out.set(nb, time === null ? null : time + NOTEBOOK_OVERHEAD_S);
  }
  return out;
}

/** One line per notebook: how many runs are cached, resume, or train, and about how long. */
export function planLines(plan: PlannedRun[]): string[] {
  const notebooks = [...new Set(plan.map((p) => p.notebook))];
  return notebooks.map((nb) => {
    const runs = plan.filter((p) => p.notebook === nb && !p.evidence);
    const seeds = plan.filter((p) => p.notebook === nb && p.evidence);
    const recorded = seeds.filter((p) => p.record).length;
    const evidence = seeds.length
      ? `; evidence seeds: ${recorded} of ${seeds.length} recorded` +
        (recorded < seeds.length ? " (not trained by the notebook: --plan --commands)" : "")
      : "";
    const cached = runs.filter((p) => p.record).length;
    const resume = runs.filter((p) => p.resumeFrom !== null);
    const fresh = runs.length - cached - resume.length;
    const parts = [
      cached ? `${cached} cached` : "",
      ...resume.map((p) =>
        `${p.name} resumes after epoch ${p.resumeFrom}/${p.parts.training.epochs}`
      ),
      fresh ? `${fresh} to train` : "",
    ].filter(Boolean);
    const time = notebookSeconds(runs).get(nb)!;
    const eta = runs.every((p) => p.record)
      ? ""
      : time === null
      ? " — time unknown on this backend (no earlier record to measure from)"
      : ` — about ${formatDuration(time)}`;
    return `${nb}: ${runs.length} run${runs.length === 1 ? "" : "s"}, ${
      parts.join(", ")
    }${eta}${evidence}`;
  });
}

/** Seconds of training the plan leaves, or null when any run's time is unknown. */
export function totalSeconds(plan: PlannedRun[]): number | null {
  let sum = 0;
  for (const p of plan) {
    if (p.seconds === null) return null;
    sum += p.seconds;
  }
  return sum;
}

/**
 * The warning a full-profile study on a CPU backend gets before hours of work: how long this
 * (part of the) study will take here, and how to choose a shorter profile. Empty otherwise.
 */
export function fullProfileWarning(
  plan: PlannedRun[],
  profile: Profile,
  backend: { name: string },
): string {
  if (profile.name !== "full" || backend.name === "webgpu") return "";
  const time = totalSeconds(plan.filter((p) => !p.evidence));
  if (time !== null && time < 15 * 60) return "";
  return `⚠ the full profile on ${backend.name} (no GPU): ${
    time === null ? "hours of training" : `about ${formatDuration(time)} of training`
  } here for the runs not yet recorded. For a shorter look choose MNIST_PROFILE=reduced ` +
    `(the study's epochs on a tenth of the data) or MNIST_PROFILE=quick (a few minutes); ` +
    `finished runs are kept, and an interrupted one resumes.`;
}

/** A word as a POSIX shell reads it back: bare when safe, else single-quoted. */
function shellWord(s: string): string {
  return /^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replaceAll("'", `'\\''`)}'`;
}

/**
 * One run's `deno task train` command line: its arguments (`trainArgs`), the profile, backend
 * and precision (all in its key), and `RUNS_DIR` where `runsDir` is given.
 */
export function trainCommand(
  train: string[],
  opts: { profile: Profile; backend: { name: string; precision: string }; runsDir?: string },
): string {
  const env = opts.runsDir ? `RUNS_DIR=${shellWord(opts.runsDir)} ` : "";
  const args = [
    ...train,
    "--profile",
    opts.profile.name,
    "--backend",
    opts.backend.name,
    ...(opts.backend.precision === "float32" ? [] : ["--precision", opts.backend.precision]),
  ];
  return `${env}deno task train ${args.map(shellWord).join(" ")}`;
}

/**
 * Every run the plan still has to make, each as one self-contained shell command (for GNU
 * parallel, a Slurm array job or any job runner): `deno task train …` with the run's model,
 * options and seed, the plan's profile, backend and precision (all part of the run's key, so the
 * record it writes is the one the notebook asks for) and `RUNS_DIR` where `runsDir` is given. A
 * run that only its notebook makes (the transfer heads) is one `deno task report --only NN`
 * per notebook. `notes` says what has no command yet (a run whose seed a sweep picks).
 */
export function planCommands(
  plan: PlannedRun[],
  opts: {
    profile: Profile;
    backend: { name: string; precision: string };
    runsDir?: string;
  },
): { commands: string[]; notes: string[] } {
  const env = opts.runsDir ? `RUNS_DIR=${shellWord(opts.runsDir)} ` : "";
  const commands: string[] = [], notes: string[] = [];
  const notebooks = new Set<string>();
  for (const p of plan.filter((p) => !p.record)) {
    if (p.pendingOn) {
      notes.push(`${p.notebook}: one more run once ${p.pendingOn} have records (plan again then)`);
    } else if (p.train) {
      commands.push(trainCommand(p.train, opts));
    } else if (!notebooks.has(p.notebook)) {
      notebooks.add(p.notebook);
      const prefix = p.notebook.split("_")[0];
      const pe = opts.backend.precision === "float32"
        ? ""
        : `MNIST_PRECISION=${opts.backend.precision} `;
      commands.push(
        `${env}MNIST_PROFILE=${opts.profile.name} MNIST_BACKEND=${opts.backend.name} ${pe}` +
          `deno task report --only ${prefix} --out "$(mktemp -d)"`,
      );
    }
  }
  return { commands, notes };
}

/**
 * One line per damaged record among `roots` (what is wrong with it): the plan passes over such
 * a record — its run trains again into a new folder — and leaves it as it is.
 */
export async function damagedRecordLines(roots = recordRoots()): Promise<string[]> {
  return (await damagedRecords(roots)).map(damagedLine);
}

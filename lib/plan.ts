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
import type { BackendInfo } from "./backend.ts";
import { envVar } from "./env.ts";
import { RESNET152V2_HEAD, VGG16_HEAD } from "./models/heads.ts";
import { epochsFor, type Profile } from "./profile.ts";
import {
  estimateSeconds,
  expectedThroughput,
  formatDuration,
  retrainRequested,
  ROUGH_CPU_THROUGHPUT,
} from "./run_cache.ts";
import { runKey, type RunKeyParts } from "./run_key.ts";
import { findRun, recordRoots, type RunRecord, runsRoot } from "./runs.ts";
import {
  STUDY_MODELS,
  STUDY_SEED,
  TRANSFER_HEADS,
  type TransferName,
  VGG16_FIXES,
  VGG16_SEED_SWEEP,
} from "./settings.ts";
import { type KeyOptions, pickTrainingSeed, runName, studyKeyParts } from "./study_run.ts";
import { transferKeyParts } from "./transfer.ts";
import { join } from "node:path";
import { KERAS_WEIGHTS, kerasCacheDirs, PROJECT_WEIGHTS_DIR } from "./weights.ts";

/** One run a notebook will ask for. */
export interface PlannedRun {
  notebook: string;
  name: string;
  parts: RunKeyParts;
  key: string;
  /** The finished record that will be shown instead of training, if any. */
  record: RunRecord | null;
  /** Finished epochs of an interrupted run's backup, if one will be resumed. */
  resumeFrom: number | null;
  /** Seconds left to train (0 when cached; null when nothing says how fast this backend is). */
  seconds: number | null;
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
): Promise<{ notebook: string; name: string; parts: RunKeyParts; base?: string }[]> {
  const out: { notebook: string; name: string; parts: RunKeyParts; base?: string }[] = [];
  const test = { count: profile.testSamples };
  const scratch = (o: Omit<KeyOptions, "profile" | "backend" | "test" | "train" | "seed">) => {
    const m = STUDY_MODELS[o.model];
    const train = { count: m.data === "vgg" ? profile.vggTrainSamples : profile.trainSamples };
    out.push({
      notebook: m.section,
      name: runName(m.kerasName, o.variant, o.loss),
      parts: studyKeyParts({ ...o, profile, backend, train, test, seed: STUDY_SEED }),
    });
  };
  scratch({ model: "baseline" });
  scratch({ model: "vgg_small" });
  scratch({ model: "vgg16_scratch", onDivergence: "warn" });
  scratch({ model: "vgg16_scratch", onDivergence: "warn", loss: "clipped" });
  for (const variant of Object.values(VGG16_FIXES)) scratch({ model: "vgg16_scratch", variant });
  // Notebook 04's seed sweep, then the full run of the seed it picks (as the notebook picks it;
  // while sweep runs are missing, the first seed stands in: the time does not depend on it).
  const sweep = VGG16_SEED_SWEEP;
  const sweepRuns = [];
  for (const seed of sweep.seeds) {
    const parts = studyKeyParts({
      model: "vgg16_scratch",
      profile,
      backend,
      train: { count: Math.min(sweep.trainSamples, profile.vggTrainSamples) },
      test,
      seed,
      epochs: epochsFor(profile, sweep.epochs),
      onDivergence: "warn",
    });
    out.push({
      notebook: "04_vgg16_scratch",
      name: `vgg16_scratch (seed ${seed}, first steps)`,
      parts,
    });
    const found = await findRun(await runKey(parts), roots);
    sweepRuns.push({ seed, testAccuracy: found ? found.metrics.testAccuracy : null });
  }
  const picked = pickTrainingSeed(sweepRuns, sweep.trainedAbove);
  const pending = sweepRuns.some((r) => r.testAccuracy === null);
  if (picked !== null || pending) {
    const seed = picked ?? sweep.seeds[0];
    const m = STUDY_MODELS.vgg16_scratch;
    out.push({
      notebook: m.section,
      name: `vgg16_scratch (seed ${seed})`,
      parts: studyKeyParts({
        model: "vgg16_scratch",
        profile,
        backend,
        train: { count: profile.vggTrainSamples },
        test,
        seed,
        onDivergence: "warn",
      }),
    });
  }
  for (const name of ["vgg16", "resnet152v2"] as const) {
    const s = TRANSFER_HEADS[name];
    const splits = profile.name === "quick"
      ? {
        train: { count: Math.min(s.quick.train, profile.trainSamples) },
        test: { count: Math.min(s.quick.test, profile.testSamples) },
      }
      : { train: { count: profile.trainSamples }, test };
    const weightsKey = await expectedWeightsKey(name);
    for (const mode of ["study", s.kerasPreprocessing] as const) {
      out.push({
        notebook: s.section,
        name: mode === "study" ? s.kerasName : `${s.kerasName}_${mode}`,
        base: `${name} base`,
        parts: transferKeyParts({
          name,
          head: name === "vgg16" ? VGG16_HEAD : RESNET152V2_HEAD,
          headName: s.kerasName,
          mode,
          profile,
          backend,
          seed: STUDY_SEED,
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
  opts: { notebook?: string; roots?: string[]; root?: string } = {},
): Promise<PlannedRun[]> {
  const retrain = retrainRequested();
  const runs = (await notebookRuns(profile, backend, opts.roots ?? recordRoots()))
    .filter((r) => !opts.notebook || r.notebook === opts.notebook);
  const plan: PlannedRun[] = [];
  for (const r of runs) {
    const key = await runKey(r.parts);
    const record = retrain ? null : await findRun(key, opts.roots ?? recordRoots());
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
      const sps = await expectedThroughput(r.parts, backend, opts.roots ?? recordRoots());
      const t = r.parts.training;
      const left = 1 - (resumeFrom ?? 0) / t.epochs;
      seconds = sps === null ? null : estimateSeconds(r.parts, sps) * left;
      if (r.base && seconds !== null) {
        // The base's one pass over train + test images, unless its features are cached.
        const rate = backend.name === "cpu-fast" ? ROUGH_CPU_THROUGHPUT[r.base] : undefined;
        const images = r.parts.data.trainSamples + r.parts.data.testSamples;
        seconds = rate ? seconds + images / rate : null;
      }
    }
    plan.push({
      notebook: r.notebook,
      name: r.name,
      parts: r.parts,
      key,
      record,
      resumeFrom,
      seconds,
    });
  }
  return plan;
}

/** One line per notebook: how many runs are cached, resume, or train, and about how long. */
export function planLines(plan: PlannedRun[]): string[] {
  const notebooks = [...new Set(plan.map((p) => p.notebook))];
  return notebooks.map((nb) => {
    const runs = plan.filter((p) => p.notebook === nb);
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
    const time = totalSeconds(runs);
    const eta = runs.every((p) => p.record)
      ? ""
      : time === null
      ? " — time unknown on this backend (no earlier record to measure from)"
      : ` — about ${formatDuration(time)}`;
    return `${nb}: ${runs.length} run${runs.length === 1 ? "" : "s"}, ${parts.join(", ")}${eta}`;
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
  const time = totalSeconds(plan);
  if (time !== null && time < 15 * 60) return "";
  return `⚠ the full profile on ${backend.name} (no GPU): ${
    time === null ? "hours of training" : `about ${formatDuration(time)} of training`
  } here for the runs not yet recorded. For a shorter look choose MNIST_PROFILE=reduced ` +
    `(the study's epochs on a tenth of the data) or MNIST_PROFILE=quick (a few minutes); ` +
    `finished runs are kept, and an interrupted one resumes.`;
}

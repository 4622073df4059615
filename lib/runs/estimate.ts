/**
 * How long a run will take, before it starts: its training throughput (measured from this
 * machine's earlier records with the same backend line, else rough figures from a 2-core CPU),
 * its epochs over its data, and what a run and a notebook cost besides their epochs. The plan
 * (lib/runs/plan.ts) sums these per notebook; a run about to train says its own estimate.
 */
import { machineInfo, recordRoots, recordSummaries } from "./runs.ts";
import { canonicalJson, type RunKeyParts } from "./run_key.ts";

/**
 * Model options that do not change a step's cost: the initializer only sets the starting
 * weights, and a ReLU after a convolution costs next to nothing beside it. A record that differs
 * only in these (or in anything outside the model: learning rate, schedule, seed) times a run as
 * well as one of the same options.
 */
const COST_FREE_OPTIONS = new Set(["convActivation", "convInit"]);

/** A model's options without the cost-free ones, as canonical text to compare. */
function costOptions(options: Record<string, unknown>): string {
  return canonicalJson(
    Object.fromEntries(Object.entries(options).filter(([k]) => !COST_FREE_OPTIONS.has(k))),
  );
}

type Summary = Awaited<ReturnType<typeof recordSummaries>>[number];

/**
 * Training throughput (samples/s) for a run like this one, from the records of the same model,
 * batch size, backend and precision (any profile, any seed) made with the same backend line
 * (`device`: the libraries, threads and kernels in use — a record trained before the kernels
 * changed, or on another set-up, says little about this one) and the same costly options
 * (BatchNorm, the head's layers; not the activation or initializer). Of those it takes the
 * newest, preferring first one made on the same CPU (`cpuId`: family and model, since one model
 * name can cover two chip generations), then one with exactly the same options. Null when none
 * exists.
 */
async function measuredThroughput(
  parts: RunKeyParts,
  device: string,
  roots: string[],
  cpuId: string | null,
): Promise<number | null> {
  const exact = canonicalJson(parts.model.options), costly = costOptions(parts.model.options);
  const alike = (await recordSummaries(roots).catch(() => [])).filter((r) => {
    const k = r.config.keyParts;
    return k.model.builder === parts.model.builder && costOptions(k.model.options) === costly &&
      k.training.batchSize === parts.training.batchSize && k.backend === parts.backend &&
      k.precision === parts.precision && r.config.backend.device === device &&
      r.metrics.samplesPerSecond > 0;
  });
  const sameCpu = (r: Summary) => cpuId !== null && r.config.machine.cpuId === cpuId;
  const sameOptions = (r: Summary) => canonicalJson(r.config.keyParts.model.options) === exact;
  for (
    const pick of [
      (r: Summary) => sameCpu(r) && sameOptions(r),
      sameCpu,
      sameOptions,
      () => true,
    ]
  ) {
    const newest = alike.filter(pick).at(-1);
    if (newest) return newest.metrics.samplesPerSecond;
  }
  return null;
}

/**
 * Rough training throughput (samples/s) of cpu-fast in fp32 on a 2-core development machine,
 * for estimates before any record of a model exists on this machine. Transfer entries: the
 * base's images/s (feature extraction, batch 256) and the head's samples/s. Measured 2026-11-29
 * on a 2-core Zen 5 AMD EPYC (`deno task train <model> --profile reduced --epochs 1`,
 * `bench/inference.ts`, the heads' `fitFeatures` on random features), rounded down. Other CPUs
 * differ; a machine's own records replace these as soon as it has some.
 */
export const ROUGH_CPU_THROUGHPUT: Record<string, number> = {
  baseline: 1500,
  vgg_small: 400,
  vgg16_scratch: 280,
  "vgg16_scratch+batchNorm": 220,
  vgg16_imagenet_head: 3500,
  resnet152v2_head: 100_000,
  "vgg16 base": 1200,
  "resnet152v2 base": 500,
};

/**
 * The samples/s to estimate a run with: measured on this backend (preferring records from this
 * machine's CPU, `cpuId`), else the rough CPU figure.
 */
export async function expectedThroughput(
  parts: RunKeyParts,
  backend: { name: string; device: string },
  roots = recordRoots(),
  cpuId: string | null = machineInfo().cpuId ?? null,
): Promise<number | null> {
  const measured = await measuredThroughput(parts, backend.device, roots, cpuId);
  if (measured) return measured;
  if (backend.name !== "cpu-fast") return null; // webgpu, wasm, cpu: no figure to guess from
  const bn = parts.model.options.batchNorm === true ? "+batchNorm" : "";
  return ROUGH_CPU_THROUGHPUT[parts.model.builder + bn] ?? null;
}

/**
 * Seconds a run will take at `samplesPerSecond`: its epochs over the training set, plus one
 * inference pass over the test set per epoch when it validates (inference ≈ 3× training speed).
 */
export function estimateSeconds(parts: RunKeyParts, samplesPerSecond: number): number {
  const t = parts.training, d = parts.data;
  const perEpoch = d.trainSamples / samplesPerSecond +
    (t.validation ? d.testSamples / (3 * samplesPerSecond) : 0);
  return t.epochs * perEpoch + d.testSamples / (3 * samplesPerSecond);
}

/**
 * What a run costs besides its epochs, in two parts: fixed seconds (building and compiling the
 * model, the backend's first-step kernel set-up, writing and reading back the record, the
 * notebook cells that draw it) and a share of its training time (the probe, the per-step
 * progress, the evaluation's batches beyond the throughput's). The fixed part is what a quick
 * run on an unloaded 2-core Zen 5 EPYC spends outside its epochs: notebook 04's 15 quick runs
 * took over 3 minutes there against ~35 s of training at the rough figures, ~10 s a run. The
 * plan's test checks the whole against a recorded quick report (tests/fixtures/quick_report/).
 */
export const RUN_OVERHEAD_S: Record<string, number> = {
  baseline: 4,
  vgg_small: 6,
  vgg16_scratch: 8,
  vgg16_imagenet_head: 4,
  resnet152v2_head: 4,
};
export const RUN_OVERHEAD_SHARE = 0.25;

/**
 * Seconds a notebook costs besides its runs: the kernel's start, the imports (tfjs, polars,
 * vega), the set-up (backend, MNIST), the charts and tables, and the HTML export — what a
 * notebook that trains nothing takes (the whole study rendered from its records: 7 notebooks in
 * ~2 minutes on the same machine).
 */
export const NOTEBOOK_OVERHEAD_S = 15;

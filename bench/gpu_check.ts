/**
 * The GPU check (bench/README.md, "GPU check"): on a machine with a real GPU, in one run,
 *
 * 1. the study's three models train on webgpu without stalls: one loss read per
 *    GPU_READ_EVERY steps and every kernel on the GPU (lib/kernels/webgpu/webgpu_audit.ts);
 * 2. their training throughput on webgpu beside the PyTorch peer on CUDA at the same batch sizes
 *    (`../shared/peer-bench/bench_torch.py --device cuda`, and `--bf16` for autocast), as a table;
 * 3. VGG16's step with each choice of convolution gradients (alternating);
 * 4. the full-profile baseline (notebook 02's run: 60,000 digits, 5 epochs, batch 32, seed 42) on
 *    webgpu, its test accuracy beside the committed cpu record's.
 *
 * `bench/gpu_check.sh` packs what it needs for a machine without network and runs this.
 * `--allow-software --batch 2 --steps 2 --warmup 1 --baseline-train 512 --epochs 1 --no-peer`
 * is a dry run on a software adapter (what the tests' machines have).
 */
import * as tf from "@tensorflow/tfjs";
import { parseArgs } from "node:util";
import { initBackend, probeGpu } from "../lib/machine/backend.ts";
import { auditWebGpu, kernelLine } from "../lib/kernels/webgpu/webgpu_audit.ts";
import { convGradChoice, useConvGrad } from "../lib/kernels/webgpu/webgpu_setup.ts";
import { trainStepOnDevice } from "../lib/train/loss.ts";
import { loadMnist, type MnistSplit } from "../lib/data/mnist.ts";
import { benchModels, STUDY_MODELS } from "../lib/study/settings.ts";
import { fit, fitSource, GPU_READ_EVERY } from "../lib/train/train.ts";
import { evaluate } from "../lib/train/evaluate.ts";
import { terminalProgress } from "../lib/train/progress.ts";
import { envVar, REPO_ROOT } from "../lib/machine/env.ts";
import { peerDir, peerPython } from "./peer.ts";

const USAGE = `deno run -A bench/gpu_check.ts [options]
  --models a,b        models to bench (default baseline,vgg_small,vgg16)
  --batch N           one batch size for every model (default: the study's, 32 / 100 / 100)
  --steps N           timed steps per model (default 30), read back once at the end
  --warmup N          warm-up steps (default 5)
  --no-peer           skip the PyTorch CUDA peer
  --no-conv-ab        skip VGG16 with each choice of convolution gradients
  --baseline-train N  training digits of the baseline run (default 60000; 0 skips it)
  --epochs N          its epochs (default the study's 5)
  --baseline-test N   test digits it is scored on (default 10000)
  --allow-software    run on a software adapter (a dry run: correctness, not speed)`;

const MODELS = benchModels();

/** Samples/s of `steps` training steps after `warmup`, read back once at the end. */
async function throughput(name: string, batch: number, steps: number, warmup: number) {
  const spec = MODELS[name];
  const model = spec.build();
  const x = tf.randomUniform([batch, ...spec.input], 0, 1, "float32", 1);
  const y = tf.tensor1d(Array.from({ length: batch }, (_, i) => (i * 7) % 10));
  const run = async (n: number) => {
    const outs = Array.from({ length: n }, () => trainStepOnDevice(model, x, y));
    const last = await outs.at(-1)!.loss.data();
    tf.dispose(outs.flatMap((o) => [o.loss, o.accuracy]));
    if (!Number.isFinite(last[0])) throw new Error(`${name}: the loss is ${last[0]}`);
  };
  try {
    await run(warmup);
    const t0 = performance.now();
    await run(steps);
    return (batch * steps) / ((performance.now() - t0) / 1000);
  } finally {
    tf.dispose([x, y]);
    model.dispose();
  }
}

/** GPU_READ_EVERY + 3 steps of `fit`'s loop: reads and where each kernel ran. */
async function auditModel(name: string, batch: number) {
  const spec = MODELS[name];
  const model = spec.build();
  const steps = GPU_READ_EVERY + 3;
  const source = {
    count: steps * batch,
    batch: (idx: Int32Array) => ({
      x: tf.randomUniform([idx.length, ...spec.input], 0, 1, "float32", idx[0]),
      y: tf.tensor1d(Array.from(idx, (i) => i % 10)),
    }),
  };
  try {
    const { audit } = await auditWebGpu(() =>
      fitSource(model, source, { epochs: 1, batchSize: batch, seed: 1, progress: false })
    );
    const host = [...audit.kernels].filter(([, r]) => r.host > 0).map(([k]) => k);
    const ok = audit.reads === 2 && host.length === 0;
    console.log(
      `${ok ? "ok  " : "FAIL"} ${name}: ${audit.reads} reads in ${steps} steps (expected 2); ` +
        kernelLine(audit),
    );
    return ok;
  } finally {
    model.dispose();
  }
}

interface PeerRow {
  samples_per_s: number;
  torch: string;
  device: string;
}

/** The PyTorch peer on CUDA for one model; null (and why, once) when it cannot run. */
async function peer(model: string, bf16: boolean): Promise<PeerRow | null> {
  const script = `${peerDir({ PEER_BENCH: envVar("PEER_BENCH") })}/bench_torch.py`;
  const args = [script, "--model", model, "--device", "cuda", ...(bf16 ? ["--bf16"] : [])];
  try {
    const out = await new Deno.Command(peerPython({ PEER_PYTHON: envVar("PEER_PYTHON") }), {
      args,
      stdout: "piped",
      stderr: "piped",
    }).output();
    const line = new TextDecoder().decode(out.stdout).split("\n").findLast((l) => l[0] === "{");
    if (out.success && line) return JSON.parse(line) as PeerRow;
    peerWhy ??= new TextDecoder().decode(out.stderr).trim().split("\n").at(-1) ?? "failed";
  } catch (e) {
    peerWhy ??= (e as Error).message;
  }
  return null;
}
let peerWhy: string | undefined;

const f0 = (v: number | undefined) => v === undefined ? "–" : v < 10 ? v.toFixed(2) : v.toFixed(0);
const ratio = (a: number, b: number | undefined) => (b ? `${(a / b).toFixed(2)}×` : "–");

/** The committed cpu record of notebook 02's full-profile baseline (records/). */
function baselineRecord(): { name: string; accuracy: number } | null {
  for (const e of [...Deno.readDirSync(`${REPO_ROOT}records`)].map((d) => d.name).sort()) {
    if (!/_baseline_cnn_full_/.test(e)) continue;
    const m = JSON.parse(Deno.readTextFileSync(`${REPO_ROOT}records/${e}/metrics.json`));
    return { name: e, accuracy: m.testAccuracy };
  }
  return null;
}

/** The first `n` samples of a split (a dry run's small baseline). */
function head(split: MnistSplit, n: number): MnistSplit {
  if (n >= split.count) return split;
  const size = split.rows * split.cols;
  return { ...split, count: n, images: split.images.subarray(0, n * size), labels: split.labels };
}

async function main() {
  const { values: o } = parseArgs({
    args: Deno.args,
    options: {
      models: { type: "string", default: "baseline,vgg_small,vgg16" },
      batch: { type: "string" },
      steps: { type: "string", default: "30" },
      warmup: { type: "string", default: "5" },
      "no-peer": { type: "boolean", default: false },
      "no-conv-ab": { type: "boolean", default: false },
      "baseline-train": { type: "string", default: "60000" },
      epochs: { type: "string", default: String(STUDY_MODELS.baseline.epochs) },
      "baseline-test": { type: "string", default: "10000" },
      "allow-software": { type: "boolean", default: false },
      help: { type: "boolean", default: false },
    },
  });
  if (o.help) return console.log(USAGE);
  const models = o.models!.split(",");
  for (const m of models) {
    if (!MODELS[m]) throw new Error(`--models: ${m} is not one of ${Object.keys(MODELS)}`);
  }
  const t0 = performance.now();
  const gpu = await probeGpu();
  if (!gpu) throw new Error("no WebGPU adapter: this check needs a GPU (and its Vulkan driver)");
  if (gpu.software && !o["allow-software"]) {
    throw new Error(
      `the only adapter is a software one (${gpu.description}): install the GPU's Vulkan ` +
        `driver, or pass --allow-software for a dry run`,
    );
  }
  await initBackend({ force: "webgpu" });
  const batchOf = (m: string) => Number(o.batch ?? MODELS[m].batch);

  console.log(`\n1. no stalls, all on the GPU (fit's loop, ${GPU_READ_EVERY + 3} steps)`);
  let failed = 0;
  for (const m of models) if (!(await auditModel(m, batchOf(m)))) failed++;

  console.log(`\n2. throughput: ${o.warmup} warm-up + ${o.steps} timed steps, one read at the end`);
  const rows = [];
  for (const m of models) {
    const ours = await throughput(m, batchOf(m), Number(o.steps), Number(o.warmup));
    const fp32 = o["no-peer"] ? null : await peer(m, false);
    const bf16 = o["no-peer"] ? null : await peer(m, true);
    rows.push({ m, batch: batchOf(m), ours, fp32, bf16 });
    console.log(`${m}: webgpu ${f0(ours)} samples/s, PyTorch CUDA ${f0(fp32?.samples_per_s)}`);
  }
  console.log(
    `\nGPU: ${gpu.description}; PyTorch ${rows.find((r) => r.fp32)?.fp32?.torch ?? "–"} on ` +
      `${rows.find((r) => r.fp32)?.fp32?.device ?? (peerWhy ? `– (${peerWhy})` : "–")}\n`,
  );
  console.log(
    "| model (batch) | ours webgpu fp32 | PyTorch CUDA fp32 | ours / PyTorch | " +
      "PyTorch CUDA bf16 autocast | ours / PyTorch bf16 |",
  );
  console.log("| --- | ---: | ---: | ---: | ---: | ---: |");
  for (const r of rows) {
    console.log(
      `| ${r.m} (${r.batch}) | ${f0(r.ours)} | ${f0(r.fp32?.samples_per_s)} | ` +
        `${ratio(r.ours, r.fp32?.samples_per_s)} | ${f0(r.bf16?.samples_per_s)} | ` +
        `${ratio(r.ours, r.bf16?.samples_per_s)} |`,
    );
  }

  if (!o["no-conv-ab"] && models.includes("vgg16")) {
    console.log(
      `\n3. VGG16's convolution gradients, alternating: "study" (GEMM filter gradient, tfjs's ` +
        `matmul input gradient), "gemm" (both GEMMs), "tfjs" (tfjs's defaults)`,
    );
    for (let round = 1; round <= 2; round++) {
      const rate: Record<string, number> = {};
      for (const which of ["study", "gemm", "tfjs"] as const) {
        useConvGrad(which);
        rate[which] = await throughput("vgg16", batchOf("vgg16"), Number(o.steps), 2);
      }
      useConvGrad(convGradChoice());
      console.log(
        `round ${round}: study ${f0(rate.study)}, gemm ${f0(rate.gemm)}, tfjs ${f0(rate.tfjs)} ` +
          `samples/s (study / tfjs ${ratio(rate.study, rate.tfjs)})`,
      );
    }
  }

  const n = Number(o["baseline-train"]);
  if (n > 0) {
    const s = STUDY_MODELS.baseline;
    const epochs = Number(o.epochs);
    console.log(
      `\n4. the baseline (02) on webgpu: ${n} digits, ${epochs} epochs, batch ${s.batchSize}`,
    );
    const mnist = await loadMnist();
    const model = s.build({ seed: 42 });
    const run = await fit(model, head(mnist.train, n), {
      epochs,
      batchSize: s.batchSize,
      format: s.format,
      seed: 42,
      progress: terminalProgress({ label: "baseline" }),
    });
    const test = await evaluate(model, head(mnist.test, Number(o["baseline-test"])), {
      format: s.format,
    });
    const record = baselineRecord();
    const full = n >= mnist.train.count && epochs === s.epochs &&
      Number(o["baseline-test"]) >= mnist.test.count;
    console.log(
      `webgpu: test accuracy ${(100 * test.accuracy).toFixed(2)}% (loss ${test.loss.toFixed(4)}) ` +
        `after ${run.epochsRun} epochs, ${run.samplesPerSecond.toFixed(0)} samples/s; ` +
        (record
          ? `cpu record ${record.name}: ${(100 * record.accuracy).toFixed(2)}%` +
            (full ? `, difference ${(100 * (test.accuracy - record.accuracy)).toFixed(2)} pp` : "")
          : "no committed cpu record"),
    );
    if (full && record && Math.abs(test.accuracy - record.accuracy) > 0.005) {
      console.log("FAIL: more than 0.5 pp from the cpu record (same seed, data and settings)");
      failed++;
    }
    model.dispose();
  }
  console.log(`\ngpu check done in ${((performance.now() - t0) / 1000).toFixed(0)} s`);
  if (failed) Deno.exit(1);
}

if (import.meta.main) {
  try {
    await main();
  } catch (e) {
    console.error(`gpu check: ${(e as Error).message}`);
    Deno.exit(2);
  }
}

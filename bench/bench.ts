/**
 * Training throughput of the study's CNNs on each available tfjs backend, on random data.
 *
 *   deno task bench [--model baseline|vgg_small|vgg16|all] [--steps 10] [--warmup 2]
 *                   [--backends cpu-fast,cpu,wasm,webgpu] [--optimizer fused|tfjs]
 *
 * Prints one table row per model × backend: batch, samples/s (median step), achieved GFLOPS
 * from the counted training FLOPs per sample (bench/flops.ts), and the largest process RSS
 * seen after a step of that row. Compare with the
 * PyTorch peer bench run in the same session (bench/README.md). `--optimizer fused` (default)
 * recompiles the models with `fusedAdam` (same math as the study's `tf.train.adam`, one fused
 * in-place pass per weight on cpu-fast); `tfjs` keeps the builders' own Adam.
 */
import * as tf from "@tensorflow/tfjs";
import { parseArgs } from "node:util";
import { buildBaseline } from "../lib/models/baseline.ts";
import { buildVggSmall } from "../lib/models/vgg_small.ts";
import { buildVgg16Scratch } from "../lib/models/vgg16_scratch.ts";
import { fallbackCounts, FAST_CPU, fusedAdam, registerFastCpuBackend } from "../lib/kernels/mod.ts";
import { trainFlopsPerSample } from "./flops.ts";

/** The study's models with their batch sizes and input shapes. */
const MODELS: Record<string, { build: () => tf.LayersModel; batch: number; input: number[] }> = {
  baseline: { build: () => buildBaseline({ seed: 1 }), batch: 32, input: [32, 32, 3] },
  vgg_small: { build: () => buildVggSmall({ seed: 1 }), batch: 100, input: [32, 32, 1] },
  vgg16: { build: () => buildVgg16Scratch({ seed: 1 }), batch: 100, input: [32, 32, 3] },
};

interface Row {
  model: string;
  backend: string;
  batch: number;
  steps: number;
  samplesPerS: number;
  gflops: number;
  peakRssMiB: number;
  note: string;
}

/** Trains `name` on `backend` for warmup + steps batches; returns the median-step rate. */
async function benchOne(
  name: string,
  backend: string,
  steps: number,
  warmup: number,
  optimizer: string,
): Promise<Row> {
  await tf.setBackend(backend);
  const spec = MODELS[name];
  const model = spec.build();
  if (optimizer === "fused") {
    // the study's compile (common.ts) with Adam's update fused; Keras defaults as there
    model.compile({
      optimizer: fusedAdam(0.001, 0.9, 0.999, 1e-7),
      loss: "sparseCategoricalCrossentropy",
      metrics: ["accuracy"],
    });
  }
  const flops = trainFlopsPerSample(model);
  const b = spec.batch;
  const xs = [0, 1].map(() => tf.randomUniform([b, ...spec.input], 0, 1, "float32", 1));
  const ys = [0, 1].map((i) =>
    tf.tensor(Array.from({ length: b }, (_, j) => (j * 7 + i) % 10), [b], "float32")
  );
  const times: number[] = [];
  let rss = 0;
  for (let s = 0; s < warmup + steps; s++) {
    const t0 = performance.now();
    const loss = await model.trainOnBatch(xs[s % 2], ys[s % 2]);
    const dt = (performance.now() - t0) / 1000;
    if (!Number.isFinite(Array.isArray(loss) ? loss[0] : loss)) {
      throw new Error(`${name}: loss is not finite`);
    }
    if (s >= warmup) times.push(dt);
    rss = Math.max(rss, Deno.memoryUsage().rss / 2 ** 20);
  }
  tf.dispose([...xs, ...ys]);
  model.dispose();
  times.sort((a, c) => a - c);
  const median = times[Math.floor(times.length / 2)];
  const rate = b / median;
  return {
    model: name,
    backend,
    batch: b,
    steps,
    samplesPerS: rate,
    gflops: (rate * flops) / 1e9,
    // sampled after each step of this row (the process's VmHWM would carry earlier rows)
    peakRssMiB: rss,
    note: `${optimizer === "fused" ? "fusedAdam" : "tf.train.adam"}; min ${
      (b / times[times.length - 1]).toFixed(1)
    }, max ${(b / times[0]).toFixed(1)}`,
  };
}

/** Backends worth timing here, with a reason for each one skipped. */
async function availableBackends(wanted: string[]): Promise<{ use: string[]; skipped: string[] }> {
  const use: string[] = [], skipped: string[] = [];
  for (const b of wanted) {
    if (b === FAST_CPU) {
      const r = await registerFastCpuBackend();
      console.log(`cpu-fast: ${r.why}`);
      (r.available ? use : skipped).push(r.available ? b : `cpu-fast (${r.why})`);
    } else if (b === "cpu") {
      use.push(b);
    } else if (b === "wasm") {
      await import("@tensorflow/tfjs-backend-wasm");
      // tfjs-backend-wasm 4.22 has no Conv2DBackpropFilter: it cannot train a CNN.
      if (tf.getKernel("Conv2DBackpropFilter", "wasm")) use.push(b);
      else skipped.push("wasm (no Conv2DBackpropFilter kernel: cannot train CNNs)");
    } else if (b === "webgpu") {
      const { probeGpu } = await import("../lib/backend.ts");
      const gpu = await probeGpu();
      if (gpu && !gpu.software) use.push(b);
      else {skipped.push(
          `webgpu (${gpu ? `software adapter ${gpu.description}` : "no GPU adapter"})`,
        );}
    } else {
      skipped.push(`${b} (unknown backend)`);
    }
  }
  return { use, skipped };
}

function table(rows: Row[]): string {
  const head =
    "| model | backend | batch | steps | samples/s | GFLOPS | RSS MiB (max after a step) | optimizer; step spread (samples/s) |";
  const sep = "|---|---|---:|---:|---:|---:|---:|---|";
  const body = rows.map((r) =>
    `| ${r.model} | ${r.backend} | ${r.batch} | ${r.steps} | ${r.samplesPerS.toFixed(1)} | ${
      r.gflops.toFixed(1)
    } | ${r.peakRssMiB.toFixed(0)} | ${r.note} |`
  );
  return [head, sep, ...body].join("\n");
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      model: { type: "string", default: "all" },
      steps: { type: "string", default: "10" },
      warmup: { type: "string", default: "2" },
      backends: { type: "string", default: "cpu-fast,cpu,wasm,webgpu" },
      json: { type: "boolean", default: false },
      optimizer: { type: "string", default: "fused" },
    },
  });
  tf.enableProdMode();
  const models = values.model === "all" ? Object.keys(MODELS) : values.model!.split(",");
  for (const m of models) if (!MODELS[m]) throw new Error(`unknown model ${m}`);
  const { use, skipped } = await availableBackends(values.backends!.split(","));
  const steps = Number(values.steps), warmup = Number(values.warmup);
  const rows: Row[] = [];
  for (const model of models) {
    for (const backend of use) {
      // tfjs's pure-JS cpu backend trains at well under 1 sample/s: baseline only, 2 steps.
      if (backend === "cpu" && model !== "baseline") continue;
      const [s, w] = backend === "cpu" ? [2, 0] : [steps, warmup];
      const row = await benchOne(model, backend, s, w, values.optimizer!);
      rows.push(row);
      if (values.json) console.log(JSON.stringify(row));
      else console.log(`${model} on ${backend}: ${row.samplesPerS.toFixed(1)} samples/s`);
    }
  }
  console.log(`\n${table(rows)}`);
  for (const s of skipped) console.log(`skipped: ${s}`);
  if (Object.keys(fallbackCounts).length) console.log(`fast kernels declined:`, fallbackCounts);
}

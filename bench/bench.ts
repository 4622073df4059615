/**
 * Training throughput of the study's CNNs on each available tfjs backend, on random data;
 * with `--peer`, side by side with the PyTorch peer bench. `deno task bench --help` for usage.
 *
 * Prints one table row per model × backend: precision (what the backend reports it ran),
 * batch, samples/s (median step), achieved GFLOPS from the counted training FLOPs per sample
 * (bench/flops.ts), and the largest process RSS seen after a step of that row. A step is the
 * study's (`trainStep`: the models' own compile, fusedAdam and Keras's loss from the logits);
 * `--optimizer tfjs` swaps in `tf.train.adam` to show what the fused update saves.
 *
 * `--peer` runs each model in a fresh child process of this script (precision passed through
 * `MNIST_PRECISION`), then the peer, alternating per model for `--rounds` rounds.
 */
import * as tf from "@tensorflow/tfjs";
import { fileURLToPath } from "node:url";
import { type BackendName, initBackend, probeGpu } from "../lib/machine/backend.ts";
import { fallbackCounts } from "../lib/kernels/mod.ts";
import { trainStep } from "../lib/train/loss.ts";
import { benchModels } from "../lib/study/settings.ts";
import {
  benchHelp,
  type BenchOptions,
  type Optimizer,
  type Pair,
  parseBenchArgs,
  type Row,
  rowsTable,
  runCli,
  sideBySideTable,
} from "./cli.ts";
import { cliArgs } from "../lib/machine/cli_error.ts";
import { trainFlopsPerSample } from "./flops.ts";
import { peerDir, peerMissing, peerPython, runPeer, threadEnv } from "./peer.ts";
import { envVar } from "../lib/machine/env.ts";

/** The study's models with their batch sizes and input shapes. */
/** The study's models with their batch sizes and input shapes (lib/study/settings.ts). */
const MODELS = benchModels();

/** Recompiles with tfjs's own `tf.train.adam` (Keras's other defaults; the loss stays the study's). */
function useTfjsAdam(model: tf.LayersModel): void {
  model.compile({
    optimizer: tf.train.adam(0.001, 0.9, 0.999, 1e-7),
    loss: "sparseCategoricalCrossentropy",
    metrics: ["accuracy"],
  });
}

/** Trains `name` on `backend` for warmup + steps batches; returns the median-step rate. */
async function benchOne(
  name: string,
  backend: BackendName,
  steps: number,
  warmup: number,
  optimizer: Optimizer,
): Promise<Row> {
  const info = await initBackend({ force: backend, quiet: true });
  const spec = MODELS[name];
  const model = spec.build(); // compiled as the study compiles (fusedAdam)
  if (optimizer === "tfjs") useTfjsAdam(model);
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
    const [loss] = await trainStep(model, xs[s % 2], ys[s % 2]);
    const dt = (performance.now() - t0) / 1000;
    if (!Number.isFinite(loss)) throw new Error(`${name}: loss is not finite`);
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
    precision: info.precision,
    batch: b,
    steps,
    samplesPerS: rate,
    flopsPerSample: flops,
    gflops: (rate * flops) / 1e9,
    // sampled after each step of this row (the process's VmHWM would carry earlier rows)
    peakRssMiB: rss,
    note: `${optimizer === "fused" ? "fusedAdam" : "tf.train.adam"}; min ${
      (b / times[times.length - 1]).toFixed(1)
    }, max ${(b / times[0]).toFixed(1)}`,
  };
}

/**
 * Backends worth timing here, each started once (its backend line printed), with a reason for
 * each one skipped.
 */
async function availableBackends(
  wanted: string[],
): Promise<{ use: BackendName[]; skipped: string[] }> {
  const use: BackendName[] = [], skipped: string[] = [];
  for (const b of wanted) {
    if (b === "wasm") {
      await import("@tensorflow/tfjs-backend-wasm");
      // tfjs-backend-wasm 4.22 has no Conv2DBackpropFilter: it cannot train a CNN.
      if (!tf.getKernel("Conv2DBackpropFilter", "wasm")) {
        skipped.push("wasm (no Conv2DBackpropFilter kernel: cannot train CNNs)");
        continue;
      }
    }
    if (b === "webgpu") {
      const gpu = await probeGpu();
      if (!gpu || gpu.software) {
        skipped.push(`webgpu (${gpu ? `software adapter ${gpu.description}` : "no GPU adapter"})`);
        continue;
      }
    }
    try {
      await initBackend({ force: b as BackendName });
      use.push(b as BackendName);
    } catch (e) {
      skipped.push(`${b} (${(e as Error).message})`);
    }
  }
  return { use, skipped };
}

/** The bench in this process: every model on every usable backend. */
async function benchHere(opts: BenchOptions): Promise<Row[]> {
  const { use, skipped } = await availableBackends(opts.backends);
  const rows: Row[] = [];
  for (const model of opts.models) {
    for (const backend of use) {
      // tfjs's pure-JS cpu backend trains at well under 1 sample/s: baseline only, 2 steps.
      if (backend === "cpu" && model !== "baseline") continue;
      const [s, w] = backend === "cpu" ? [2, 0] : [opts.steps, opts.warmup];
      const row = await benchOne(model, backend, s, w, opts.optimizer);
      rows.push(row);
      if (opts.json) console.log(JSON.stringify(row));
      else console.log(`${model} on ${backend}: ${row.samplesPerS.toFixed(1)} samples/s`);
    }
  }
  warnPrecision(rows, opts);
  console.log(`\n${rowsTable(rows)}`);
  for (const s of skipped) console.log(`skipped: ${s}`);
  if (Object.keys(fallbackCounts).length) console.log(`fast kernels declined:`, fallbackCounts);
  return rows;
}

/** Says where a backend ran another precision than the one asked for. */
function warnPrecision(rows: Row[], opts: BenchOptions): void {
  const other = [
    ...new Set(rows.filter((r) => r.precision !== opts.precision).map((r) => r.backend)),
  ];
  for (const b of other) {
    console.log(
      `note: asked for ${opts.precision}; ${b} ran ${rows.find((r) => r.backend === b)!.precision}`,
    );
  }
}

/** Runs this script on one model in a child process; returns its rows. */
async function benchChild(model: string, opts: BenchOptions, threads: number): Promise<Row[]> {
  const args = [
    "run",
    "-A",
    fileURLToPath(import.meta.url),
    "--json",
    "--model",
    model,
    "--backends",
    opts.backends.join(","),
    "--steps",
    String(opts.steps),
    "--warmup",
    String(opts.warmup),
    "--optimizer",
    opts.optimizer,
  ];
  const env = { ...threadEnv(threads), MNIST_PRECISION: opts.precision };
  const out = await new Deno.Command(Deno.execPath(), {
    args,
    env,
    stdout: "piped",
    stderr: "piped",
  })
    .output();
  const text = new TextDecoder().decode(out.stdout);
  if (!out.success) {
    throw new Error(
      `our bench failed on ${model} (exit ${out.code}):\n${text}${
        new TextDecoder().decode(out.stderr)
      }`,
    );
  }
  const lines = text.split("\n");
  // the child's backend line, once, so the table says what cpu-fast ran on
  for (const l of lines.filter((l) => l.startsWith("backend:") || l.startsWith("note:"))) {
    if (!printed.has(l)) console.log(l), printed.add(l);
  }
  return lines.filter((l) => l.startsWith("{")).map((l) => JSON.parse(l) as Row);
}
const printed = new Set<string>();

/** Ours and the peer, alternating per model, `rounds` times; prints the side-by-side table. */
async function benchWithPeer(opts: BenchOptions): Promise<void> {
  const dir = peerDir({ PEER_BENCH: envVar("PEER_BENCH") });
  const python = peerPython({ PEER_PYTHON: envVar("PEER_PYTHON") });
  const missing = await peerMissing(dir, python);
  if (missing) {
    console.error(missing);
    Deno.exit(1);
  }
  const threads = opts.threads ?? navigator.hardwareConcurrency;
  const bf16 = opts.precision === "mixed_bfloat16" ? " --bf16" : "";
  console.log(
    `ours: ${opts.backends[0]} in a fresh process per model, ${opts.warmup} warm-up + ` +
      `${opts.steps} timed steps (median step); peer: ${dir}/bench_torch.py${bf16} ` +
      `(median of timed windows); ${threads} threads each, alternating, ${opts.rounds} round(s)`,
  );
  const pairs: Pair[] = [];
  for (let round = 1; round <= opts.rounds; round++) {
    for (const model of opts.models) {
      const ours = (await benchChild(model, opts, threads))[0];
      const peer = await runPeer(model, opts.precision, threads, dir, python);
      pairs.push({ model, round, ours, peer });
      const line = `round ${round}, ${model}: ours ${ours?.samplesPerS.toFixed(1) ?? "–"}, ` +
        `PyTorch ${peer.torch} ${peer.samples_per_s.toFixed(1)} samples/s`;
      console.log(opts.json ? JSON.stringify({ round, model, ours, peer }) : line);
    }
  }
  console.log(`\n${sideBySideTable(pairs)}`);
}

if (import.meta.main) {
  const usage = benchHelp(MODELS);
  await runCli("bench", usage, async () => {
    const opts = parseBenchArgs(cliArgs(), Object.keys(MODELS), {
      MNIST_PRECISION: envVar("MNIST_PRECISION"),
    });
    if (opts.help) return console.log(usage);
    tf.enableProdMode();
    if (opts.peer) return await benchWithPeer(opts);
    // initBackend reads the precision from the environment, as every CLI's child does
    Deno.env.set("MNIST_PRECISION", opts.precision);
    await benchHere(opts);
  });
}

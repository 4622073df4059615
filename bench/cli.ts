/**
 * The bench's command line and tables, pure (no tfjs): argument parsing with one-line errors,
 * the per-row table and the side-by-side table against the PyTorch peer. bench/bench.ts runs
 * them; tests/bench_test.ts checks them with hand-made numbers.
 */
import { parseArgs } from "node:util";
import type { Precision } from "../lib/machine/backend.ts";
import { cliArgs, formatCliError } from "../lib/machine/cli_error.ts";

export const PRECISIONS: readonly Precision[] = ["float32", "mixed_bfloat16"];
export const BENCH_BACKENDS = ["cpu-fast", "cpu", "wasm", "webgpu"] as const;
export const OPTIMIZERS = ["fused", "tfjs"] as const;
export type Optimizer = typeof OPTIMIZERS[number];

/** A command-line mistake: the CLI prints its message in one line, then the usage. */
export class UsageError extends Error {
  override name = "UsageError";
}

/** The bench's usage; `models` names each model with its batch size. */
export function benchHelp(models: Record<string, { batch: number }>): string {
  const names = Object.entries(models).map(([m, s]) => `${m} (batch ${s.batch})`).join(", ");
  return `deno task bench [options]

Trains the study's models on random data for a few steps on each backend that can train here
and prints samples/s (median step after warm-up), GFLOPS, precision and peak RSS per row.

Options:
  --model M[,M…]      ${Object.keys(models).join(" | ")} | all (default all)
                      models: ${names}
  --steps N           timed steps per row (default 10)
  --warmup N          untimed steps before them (default 2)
  --backends LIST     comma-separated, of ${BENCH_BACKENDS.join(",")}
                      (default: all; cpu-fast only with --peer)
  --precision P       ${PRECISIONS.join(" | ")} (default: $MNIST_PRECISION, else float32);
                      the precision column shows what the backend reports it ran
  --optimizer O       fused (default: the study's compile, fusedAdam) | tfjs (tf.train.adam,
                      same math with ~14 element-wise passes per weight: the cost fusedAdam saves)
  --peer              alternate each model with the PyTorch peer bench (../shared/peer-bench,
                      needs python3-torch) and print the side-by-side table; mixed_bfloat16
                      runs the peer with --bf16 (torch.autocast bfloat16)
  --rounds N          with --peer: alternate ours and the peer N times per model (default 1)
  --threads N         with --peer: OMP/OpenBLAS threads of both sides (default: all cores)
  --json              also print each row as one JSON object
  --debug             show the stack trace of an error (also MNIST_DEBUG=1)
  -h, --help          this text

Environment: PEER_BENCH (the peer's folder), PEER_PYTHON (default /usr/bin/python3), and the
cpu-fast knobs in bench/README.md (CPU_FAST_CONV, CPU_FAST_GEMM, OPENBLAS_CORETYPE, …).

Examples:
  deno task bench --model baseline --steps 20
  deno task bench --peer --rounds 2
  deno task bench --peer --model vgg16 --precision mixed_bfloat16`;
}

export interface BenchOptions {
  models: string[];
  steps: number;
  warmup: number;
  backends: string[];
  precision: Precision;
  optimizer: Optimizer;
  peer: boolean;
  rounds: number;
  threads?: number;
  json: boolean;
}

/** Parses an integer option ≥ `min`; throws a UsageError naming it. */
function int(name: string, v: string | undefined, fallback: number, min: number): number {
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) {
    throw new UsageError(`--${name} must be an integer ≥ ${min}, got "${v}"`);
  }
  return n;
}

/** `parseArgs` in strict mode, its errors (unknown option, missing value) as UsageErrors. */
function parse(
  args: string[],
  options: Record<string, { type: "string" | "boolean"; short?: string }>,
): { values: Record<string, string | boolean | undefined> } {
  try {
    const { values } = parseArgs({ args, options, strict: true, allowPositionals: false });
    return { values: values as Record<string, string | boolean | undefined> };
  } catch (e) {
    // node's messages run on with advice about "--"; the first sentence is the point
    const first = (e as Error).message.split("\n")[0].split(". ")[0];
    throw new UsageError(first.replace(/^Error: /, "").replace(/\.$/, ""));
  }
}

/** A precision name, from the option or else `$MNIST_PRECISION`, checked. */
export function parsePrecision(option: string | undefined, env: string | undefined): Precision {
  const p = option ?? env ?? "float32";
  if (!(PRECISIONS as readonly string[]).includes(p)) {
    const from = option === undefined ? "MNIST_PRECISION" : "--precision";
    throw new UsageError(`${from} must be ${PRECISIONS.join(" or ")}, got "${p}"`);
  }
  return p as Precision;
}

/**
 * The bench's options, validated; `{ help: true }` for -h/--help. Throws a UsageError with a
 * one-line message on anything it does not understand.
 */
export function parseBenchArgs(
  args: string[],
  modelNames: string[],
  env: { MNIST_PRECISION?: string } = {},
): { help: true } | ({ help: false } & BenchOptions) {
  const { values } = parse(args, {
    model: { type: "string" },
    steps: { type: "string" },
    warmup: { type: "string" },
    backends: { type: "string" },
    precision: { type: "string" },
    optimizer: { type: "string" },
    peer: { type: "boolean" },
    rounds: { type: "string" },
    threads: { type: "string" },
    json: { type: "boolean" },
    help: { type: "boolean", short: "h" },
  });
  if (values.help) return { help: true };
  const model = (values.model as string | undefined) ?? "all";
  const models = model === "all" ? [...modelNames] : model.split(",");
  for (const m of models) {
    if (!modelNames.includes(m)) {
      throw new UsageError(`unknown model "${m}" (one of ${modelNames.join(", ")}, or all)`);
    }
  }
  const peer = Boolean(values.peer);
  const backends = ((values.backends as string | undefined) ??
    (peer ? "cpu-fast" : BENCH_BACKENDS.join(","))).split(",");
  for (const b of backends) {
    if (!(BENCH_BACKENDS as readonly string[]).includes(b)) {
      throw new UsageError(`unknown backend "${b}" (one of ${BENCH_BACKENDS.join(", ")})`);
    }
  }
  const optimizer = (values.optimizer as string | undefined) ?? "fused";
  if (!(OPTIMIZERS as readonly string[]).includes(optimizer)) {
    throw new UsageError(`--optimizer must be ${OPTIMIZERS.join(" or ")}, got "${optimizer}"`);
  }
  if (peer && backends.length !== 1) {
    throw new UsageError(`--peer compares one backend with PyTorch, got --backends ${backends}`);
  }
  if (!peer && (values.rounds !== undefined || values.threads !== undefined)) {
    throw new UsageError("--rounds and --threads go with --peer");
  }
  return {
    help: false,
    models,
    steps: int("steps", values.steps as string | undefined, 10, 1),
    warmup: int("warmup", values.warmup as string | undefined, 2, 0),
    backends,
    precision: parsePrecision(values.precision as string | undefined, env.MNIST_PRECISION),
    optimizer: optimizer as Optimizer,
    peer,
    rounds: int("rounds", values.rounds as string | undefined, 1, 1),
    threads: values.threads === undefined
      ? undefined
      : int("threads", values.threads as string, 1, 1),
    json: Boolean(values.json),
  };
}

/** The profiler's usage. */
export function profileHelp(models: string[]): string {
  return `deno run -A bench/profile.ts [options]

Where a training step's time goes on a backend: tfjs's kernel profiler over a few steps (after
one warm-up step), summed by kernel name (and input shapes with --shapes).

Options:
  --model M           ${models.join(" | ")} (default baseline)
  --backend B         ${BENCH_BACKENDS.join(" | ")} (default cpu-fast)
  --steps N           profiled steps (default 3)
  --shapes            one row per kernel and input shapes
  --precision P       ${PRECISIONS.join(" | ")} (default: $MNIST_PRECISION, else float32)
  --optimizer O       fused (default: the study's compile, fusedAdam) | tfjs (tf.train.adam)
  -h, --help          this text

Example: deno run -A bench/profile.ts --model vgg16 --shapes`;
}

export interface ProfileOptions {
  model: string;
  backend: string;
  steps: number;
  shapes: boolean;
  precision: Precision;
  optimizer: Optimizer;
}

/** The profiler's options, validated, or `{ help: true }`; throws a UsageError otherwise. */
export function parseProfileArgs(
  args: string[],
  modelNames: string[],
  env: { MNIST_PRECISION?: string } = {},
): { help: true } | ({ help: false } & ProfileOptions) {
  const { values } = parse(args, {
    model: { type: "string" },
    backend: { type: "string" },
    steps: { type: "string" },
    shapes: { type: "boolean" },
    precision: { type: "string" },
    optimizer: { type: "string" },
    help: { type: "boolean", short: "h" },
  });
  if (values.help) return { help: true };
  const model = (values.model as string | undefined) ?? "baseline";
  if (!modelNames.includes(model)) {
    throw new UsageError(`unknown model "${model}" (one of ${modelNames.join(", ")})`);
  }
  const backend = (values.backend as string | undefined) ?? "cpu-fast";
  if (!(BENCH_BACKENDS as readonly string[]).includes(backend)) {
    throw new UsageError(`unknown backend "${backend}" (one of ${BENCH_BACKENDS.join(", ")})`);
  }
  const optimizer = (values.optimizer as string | undefined) ?? "fused";
  if (!(OPTIMIZERS as readonly string[]).includes(optimizer)) {
    throw new UsageError(`--optimizer must be ${OPTIMIZERS.join(" or ")}, got "${optimizer}"`);
  }
  return {
    help: false,
    model,
    backend,
    steps: int("steps", values.steps as string | undefined, 3, 1),
    shapes: Boolean(values.shapes),
    precision: parsePrecision(values.precision as string | undefined, env.MNIST_PRECISION),
    optimizer: optimizer as Optimizer,
  };
}

/**
 * Runs `main`; a UsageError prints `<name>: <message>`, a blank line and the usage, exit 2; any
 * other error one or two lines (lib/machine/cli_error.ts: `--debug` or MNIST_DEBUG=1 adds the stack),
 * exit 1. `main` reads its arguments with `cliArgs()`, which leaves `--debug` out.
 */
export async function runCli(
  name: string,
  usage: string,
  main: () => Promise<void>,
): Promise<void> {
  cliArgs(); // sees --debug
  try {
    await main();
  } catch (e) {
    if (e instanceof UsageError) {
      console.error(`${name}: ${e.message}\n\n${usage}`);
      Deno.exit(2);
    }
    console.error(formatCliError(name, e));
    Deno.exit(1);
  }
}

/** One bench row: a model trained on one backend. */
export interface Row {
  model: string;
  backend: string;
  /** What the backend reports it ran (`BackendInfo.precision`). */
  precision: Precision;
  batch: number;
  steps: number;
  samplesPerS: number;
  /** Counted training FLOPs per sample (bench/flops.ts). */
  flopsPerSample: number;
  gflops: number;
  peakRssMiB: number;
  note: string;
}

/** The bench's table, one line per row (Markdown). */
export function rowsTable(rows: Row[]): string {
  const head = "| model | backend | precision | batch | steps | samples/s | GFLOPS | " +
    "RSS MiB (max after a step) | optimizer; step spread (samples/s) |";
  const sep = "|---|---|---|---:|---:|---:|---:|---:|---|";
  const body = rows.map((r) =>
    `| ${r.model} | ${r.backend} | ${r.precision} | ${r.batch} | ${r.steps} | ` +
    `${r.samplesPerS.toFixed(1)} | ${r.gflops.toFixed(1)} | ${
      r.peakRssMiB.toFixed(0)
    } | ${r.note} |`
  );
  return [head, sep, ...body].join("\n");
}

/** What the peer bench (bench_torch.py) prints, the fields we use. */
export interface PeerResult {
  model: string;
  samples_per_s: number;
  batch: number;
  threads: number;
  torch: string;
  precision: string;
}

/** One model in one round: our row next to the peer's result (either may be missing). */
export interface Pair {
  model: string;
  round: number;
  ours?: Row;
  peer?: PeerResult;
}

/**
 * The side-by-side table: samples/s of each, the ratio ours / peer, GFLOPS of each (the peer's
 * from the same FLOP count: flops.ts and flops.py agree) and each side's precision.
 */
export function sideBySideTable(pairs: Pair[], peerName = "PyTorch"): string {
  const head =
    `| model (batch) | round | ours samples/s | ${peerName} samples/s | ours / ${peerName} | ` +
    `ours GFLOPS | ${peerName} GFLOPS | precision (ours / ${peerName}) |`;
  const sep = "|---|---:|---:|---:|---:|---:|---:|---|";
  const f = (x: number | undefined) => x === undefined ? "–" : x.toFixed(1);
  const body = pairs.map(({ model, round, ours, peer }) => {
    const batch = ours?.batch ?? peer?.batch;
    const flops = ours?.flopsPerSample;
    const ratio = ours && peer ? `${(ours.samplesPerS / peer.samples_per_s).toFixed(2)}×` : "–";
    const peerGflops = peer && flops !== undefined ? peer.samples_per_s * flops / 1e9 : undefined;
    return `| ${model} (${batch ?? "?"}) | ${round} | ${f(ours?.samplesPerS)} | ` +
      `${f(peer?.samples_per_s)} | ${ratio} | ${f(ours?.gflops)} | ${f(peerGflops)} | ` +
      `${ours?.precision ?? "–"} / ${peer?.precision ?? "–"} |`;
  });
  return [head, sep, ...body].join("\n");
}

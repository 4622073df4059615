/**
 * The bench's command line (bench/cli.ts, bench/peer.ts) and its CLIs as a user runs them:
 * --help, an unknown option, --peer without PyTorch. Nothing here trains.
 */
import assert from "node:assert/strict";
import {
  type Pair,
  parseBenchArgs,
  parseProfileArgs,
  type Row,
  rowsTable,
  sideBySideTable,
  UsageError,
} from "../bench/cli.ts";
import { PEER_INSTALL, peerDir, peerMissing, threadEnv } from "../bench/peer.ts";
import { OPENBLAS_THREAD_TIMEOUT } from "../lib/kernels/blas/blas.ts";

const MODELS = ["baseline", "vgg_small", "vgg16"];

Deno.test("parseBenchArgs: defaults, all models on every backend in float32", () => {
  const o = parseBenchArgs([], MODELS);
  assert.ok(!o.help);
  assert.deepEqual(o.models, MODELS);
  assert.deepEqual(o.backends, ["cpu-fast", "cpu", "wasm", "webgpu"]);
  assert.equal(o.steps, 10);
  assert.equal(o.warmup, 2);
  assert.equal(o.precision, "float32");
  assert.equal(o.optimizer, "fused");
  assert.equal(o.peer, false);
  assert.equal(o.rounds, 1);
});

Deno.test("parseBenchArgs: --peer compares cpu-fast, --rounds, precision from option or env", () => {
  const o = parseBenchArgs(["--peer", "--rounds", "2", "--model", "vgg16,baseline"], MODELS);
  assert.ok(!o.help);
  assert.deepEqual(o.backends, ["cpu-fast"]);
  assert.deepEqual(o.models, ["vgg16", "baseline"]);
  assert.equal(o.rounds, 2);
  const env = { MNIST_PRECISION: "mixed_bfloat16" };
  assert.equal(
    (parseBenchArgs([], MODELS, env) as { precision: string }).precision,
    "mixed_bfloat16",
  );
  const forced = parseBenchArgs(["--precision", "float32"], MODELS, env);
  assert.equal((forced as { precision: string }).precision, "float32", "the option wins");
  assert.deepEqual(parseBenchArgs(["-h"], MODELS), { help: true });
});

Deno.test("parseBenchArgs: mistakes are one-line UsageErrors", () => {
  const cases: [string[], RegExp][] = [
    [["--bogus"], /^Unknown option '--bogus'$/],
    [["--model", "vgg19"], /unknown model "vgg19"/],
    [["--backends", "tpu"], /unknown backend "tpu"/],
    [["--steps", "0"], /--steps must be an integer ≥ 1, got "0"/],
    [["--warmup", "x"], /--warmup must be an integer ≥ 0/],
    [["--precision", "fp16"], /--precision must be float32 or mixed_bfloat16, got "fp16"/],
    [["--optimizer", "sgd"], /--optimizer must be fused or tfjs/],
    [["--rounds", "2"], /--rounds and --threads go with --peer/],
    [["--peer", "--backends", "cpu-fast,cpu"], /--peer compares one backend/],
    [["baseline"], /^Unexpected argument 'baseline'$/],
  ];
  for (const [args, message] of cases) {
    assert.throws(() => parseBenchArgs(args, MODELS), (e: Error) => {
      assert.ok(e instanceof UsageError, `${args}: ${e}`);
      assert.match(e.message, message);
      assert.ok(!e.message.includes("\n"), `one line: ${e.message}`);
      return true;
    });
  }
  assert.throws(
    () => parseBenchArgs([], MODELS, { MNIST_PRECISION: "bf16" }),
    /MNIST_PRECISION must be float32 or mixed_bfloat16, got "bf16"/,
  );
});

Deno.test("parseProfileArgs: defaults and mistakes", () => {
  const o = parseProfileArgs(["--model", "vgg16", "--shapes"], [...MODELS, "vgg16_head"]);
  assert.ok(!o.help);
  assert.equal(o.model, "vgg16");
  assert.equal(o.backend, "cpu-fast");
  assert.equal(o.steps, 3);
  assert.equal(o.shapes, true);
  assert.throws(() => parseProfileArgs(["--model", "x"], MODELS), /unknown model "x"/);
  assert.throws(() => parseProfileArgs(["--steps", "0"], MODELS), /--steps must be/);
  assert.throws(
    () => parseProfileArgs(["--steps", "-1"], MODELS),
    /^UsageError: Option '--steps' argument is ambiguous$/,
  );
  assert.throws(() => parseProfileArgs(["--peer"], MODELS), /Unknown option '--peer'/);
});

const row = (over: Partial<Row>): Row => ({
  model: "vgg16",
  backend: "cpu-fast",
  precision: "float32",
  batch: 100,
  steps: 10,
  samplesPerS: 125,
  flopsPerSample: 2e9,
  gflops: 250,
  peakRssMiB: 1234.4,
  note: "fusedAdam; min 120.0, max 130.0",
  ...over,
});

Deno.test("sideBySideTable: samples/s, ratio, GFLOPS of both from our FLOP count, precisions", () => {
  const peer = {
    model: "vgg16",
    samples_per_s: 100,
    batch: 100,
    threads: 2,
    torch: "1.13.1",
    precision: "float32",
  };
  const pairs: Pair[] = [
    { model: "vgg16", round: 1, ours: row({}), peer },
    {
      model: "vgg16",
      round: 2,
      ours: row({ samplesPerS: 80, gflops: 160, precision: "mixed_bfloat16" }),
      peer: { ...peer, samples_per_s: 160, precision: "mixed_bfloat16" },
    },
    { model: "baseline", round: 1, peer: { ...peer, model: "baseline", batch: 32 } },
  ];
  const lines = sideBySideTable(pairs).split("\n");
  assert.equal(lines.length, 5);
  assert.match(lines[0], /\| model \(batch\) \| round \| ours samples\/s \| PyTorch samples\/s \|/);
  assert.equal(
    lines[2],
    "| vgg16 (100) | 1 | 125.0 | 100.0 | 1.25× | 250.0 | 200.0 | float32 / float32 |",
  );
  assert.equal(
    lines[3],
    "| vgg16 (100) | 2 | 80.0 | 160.0 | 0.50× | 160.0 | 320.0 | mixed_bfloat16 / mixed_bfloat16 |",
  );
  assert.equal(lines[4], "| baseline (32) | 1 | – | 100.0 | – | – | – | – / float32 |");
});

Deno.test("rowsTable: one row per model and backend, with the precision the backend ran", () => {
  const lines = rowsTable([row({}), row({ model: "baseline", backend: "cpu", batch: 32 })])
    .split("\n");
  assert.equal(lines.length, 4);
  assert.match(lines[0], /\| model \| backend \| precision \| batch \|/);
  assert.equal(
    lines[2],
    "| vgg16 | cpu-fast | float32 | 100 | 10 | 125.0 | 250.0 | 1234 | fusedAdam; min 120.0, max 130.0 |",
  );
});

Deno.test("peerMissing: one line naming what is missing and how to get it", async () => {
  assert.match(peerDir(), /\/shared\/peer-bench$/);
  assert.equal(peerDir({ PEER_BENCH: "/x" }), "/x");
  const dir = await Deno.makeTempDir({ prefix: "peer-" });
  try {
    const noScript = await peerMissing(dir, "python3");
    assert.match(noScript!, /no bench_torch\.py in .*set PEER_BENCH/);
    await Deno.writeTextFile(`${dir}/bench_torch.py`, "");
    const noTorch = await peerMissing(dir, "/nonexistent/python3");
    assert.equal(
      noTorch,
      `--peer: PyTorch is not installed for /nonexistent/python3; install it with: ${PEER_INSTALL}`,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** Runs a bench/ script with `args`; returns its exit code and output. */
async function cli(script: string, args: string[], env: Record<string, string> = {}) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", new URL(`../bench/${script}`, import.meta.url).pathname, ...args],
    env: { NO_COLOR: "1", ...env },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

for (
  const [script, usage] of [["bench.ts", "deno task bench"], [
    "profile.ts",
    "deno run -A bench/profile.ts",
  ]]
) {
  Deno.test(`${script} --help prints its usage; an unknown option one line and the usage`, async () => {
    const help = await cli(script, ["--help"]);
    assert.equal(help.code, 0, help.stderr);
    assert.ok(help.stdout.startsWith(usage), help.stdout);
    assert.match(help.stdout, /-h, --help/);

    const bad = await cli(script, ["--no-such-option"]);
    assert.equal(bad.code, 2);
    const [first, blank, next] = bad.stderr.split("\n");
    assert.equal(first, `${script.replace(".ts", "")}: Unknown option '--no-such-option'`);
    assert.equal(blank, "");
    assert.ok(next.startsWith(usage), bad.stderr);
    assert.doesNotMatch(bad.stderr, /^\s+at /m, "no stack trace");
    assert.equal(bad.stdout, "");
  });
}

Deno.test("bench.ts --peer without PyTorch says so in one line with the install command", async () => {
  // a peer-bench folder of its own, so the check does not depend on ../shared being there
  const peer = await Deno.makeTempDir({ prefix: "peer_bench_" });
  await Deno.writeTextFile(`${peer}/bench_torch.py`, "");
  const r = await cli("bench.ts", ["--peer"], {
    PEER_PYTHON: "/nonexistent/python3",
    PEER_BENCH: peer,
  });
  await Deno.remove(peer, { recursive: true });
  assert.equal(r.code, 1);
  assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
  assert.match(r.stderr, /PyTorch is not installed .* apt-get install -y python3-torch/);
});

Deno.test("threadEnv: both sides get the thread counts and cpu-fast's OpenBLAS spin timeout", () => {
  const env = threadEnv(2);
  assert.equal(env.OMP_NUM_THREADS, "2");
  assert.equal(env.OPENBLAS_NUM_THREADS, "2");
  // cpu-fast sets it for itself when the user has not (lib/kernels/blas/blas.ts): the peer gets the same
  assert.equal(
    env.OPENBLAS_THREAD_TIMEOUT,
    Deno.env.get("OPENBLAS_THREAD_TIMEOUT") || OPENBLAS_THREAD_TIMEOUT,
  );
  assert.ok(Number(env.OPENBLAS_THREAD_TIMEOUT) >= 4);
});

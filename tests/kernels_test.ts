/**
 * Every kernel of the "cpu-fast" backend against tfjs's reference "cpu" backend on random
 * inputs, then a few training steps of a small CNN on both backends.
 */
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import {
  fallbackCounts,
  FAST_CPU,
  FAST_KERNELS,
  fusedAdam,
  registerFastCpuBackend,
} from "../lib/kernels/mod.ts";
import { getGemm, jsGemm, useJsGemm } from "../lib/kernels/blas/gemm.ts";
import { loadOpenBlas, OPENBLAS_THREAD_TIMEOUT, preferDnnlGemm } from "../lib/kernels/blas/blas.ts";
import { setConvChunkFloats, setConvEngine } from "../lib/kernels/js/conv.ts";
import { loadDnnl } from "../lib/kernels/onednn/dnnl.ts";
import { openDnnl } from "../lib/kernels/onednn/dnnl_load.ts";
import { type Inputs, rand, runOn } from "./fixtures/kernels.ts";
import { IN_CI, missingNative, skipWithout } from "./fixtures/native.ts";

/** Max |a - b| over two equal-length arrays. */
function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

/**
 * Asserts the fast kernel matches the reference: float32 rounding grows with the reduction
 * length `k` (inputs are in [-1, 1)), so the tolerance does too.
 */
async function check(name: string, inputs: Inputs, attrs: Record<string, unknown>, k: number) {
  const ref = await runOn("cpu", name, inputs, attrs);
  const got = await runOn(FAST_CPU, name, inputs, attrs);
  assert.deepEqual(got.shape, ref.shape, `${name} shape`);
  const err = maxAbsDiff(got.values, ref.values);
  const tol = 1e-6 * (4 + k);
  assert.ok(err <= tol, `${name} ${JSON.stringify(attrs)}: max abs error ${err} > ${tol}`);
}

const reg = await registerFastCpuBackend();

Deno.test("registerFastCpuBackend registers cpu-fast, idempotently", async () => {
  assert.equal(reg.name, "cpu-fast");
  assert.equal(reg.available, true, reg.why);
  assert.ok(tf.findBackendFactory(FAST_CPU));
  assert.deepEqual(await registerFastCpuBackend(), reg);
  const names = new Set(tf.getKernelsForBackend(FAST_CPU).map((k) => k.kernelName));
  for (const k of Object.keys(FAST_KERNELS)) assert.ok(names.has(k), k);
  // every cpu kernel is there too
  assert.equal(names.size, tf.getKernelsForBackend("cpu").length);
});

/** C = alpha·op(A)·op(B) + beta·C in float64 loops: the reference no GEMM under test shares. */
function refGemm(
  tA: boolean,
  tB: boolean,
  m: number,
  n: number,
  k: number,
  alpha: number,
  a: Float32Array,
  b: Float32Array,
  beta: number,
  c: Float32Array,
): Float64Array {
  const r = new Float64Array(m * n);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let p = 0; p < k; p++) {
        s += (tA ? a[p * m + i] : a[i * k + p]) * (tB ? b[j * k + p] : b[p * n + j]);
      }
      r[i * n + j] = alpha * s + beta * c[i * n + j];
    }
  }
  return r;
}

// every GEMM the backend may run (the chosen one, the pure-JS fallback, oneDNN's sgemm when
// libdnnl is there) against the float64 reference: with OpenBLAS absent the chosen one is the
// JS GEMM, so comparing it with jsGemm would prove nothing
const GEMMS: [string, typeof jsGemm][] = [["chosen", getGemm().gemm], ["js", jsGemm]];
const dnnlLib = openDnnl();
if (dnnlLib) GEMMS.push([`oneDNN ${dnnlLib.version}`, dnnlLib.sgemm]);
const openblas = loadOpenBlas();
if (openblas) GEMMS.push(["OpenBLAS", openblas.sgemm]);

Deno.test({
  name: "the CPU fast path's native libraries load (oneDNN 2.x and OpenBLAS; required in CI)",
  ignore: !IN_CI && missingNative() !== "",
  fn: () => assert.equal(missingNative(), "", "CI must test the native kernels, not skip them"),
});

Deno.test("oneDNN's sgemm takes the GEMMs only from an OpenBLAS without AVX-512 on an AVX-512 CPU", () => {
  assert.equal(preferDnnlGemm("", false, true), true); // e.g. OPENBLAS_CORETYPE=Haswell on Zen 5
  assert.equal(preferDnnlGemm("", true, true), false); // OpenBLAS's own AVX-512 kernels
  assert.equal(preferDnnlGemm("", false, false), false); // an AVX2 CPU: OpenBLAS fits it
  assert.equal(preferDnnlGemm("openblas", false, true), false);
  assert.equal(preferDnnlGemm("dnnl", true, false), true);
});

Deno.test({
  name: "loading OpenBLAS shortens its idle workers' spin to 2^4 cycles; a user's setting wins",
  // an OpenBLAS without openblas_thread_timeout (not Debian's) cannot be asked: skipped there
  ignore: skipWithout("OpenBLAS") ||
    (loadOpenBlas() !== null && openblas?.openblas?.threadTimeout === undefined),
  fn: async () => {
    // a fresh process each: OpenBLAS reads the variable once, when it loads
    const timeoutSeen = async (env: Record<string, string>) => {
      const code = `import { loadOpenBlas } from "${new URL(
        "../lib/kernels/blas/blas.ts",
        import.meta.url,
      )}";
        console.log(loadOpenBlas()?.openblas?.threadTimeout);`;
      const { stdout } = await new Deno.Command(Deno.execPath(), {
        args: ["eval", code],
        env: { ...Deno.env.toObject(), OPENBLAS_THREAD_TIMEOUT: "", ...env },
      }).output();
      return new TextDecoder().decode(stdout).trim();
    };
    assert.equal(await timeoutSeen({}), OPENBLAS_THREAD_TIMEOUT);
    assert.equal(await timeoutSeen({ OPENBLAS_THREAD_TIMEOUT: "7" }), "7");
  },
});

Deno.test("every sgemm matches a float64 reference: offsets, transposes, alpha, beta", () => {
  for (const [name, gemm] of GEMMS) {
    for (const [tA, tB] of [[false, false], [true, false], [false, true], [true, true]]) {
      for (const [m, n, k] of [[5, 7, 9], [33, 17, 64], [1, 1, 1]]) {
        const off = 3;
        const a = rand(off + m * k, 1).subarray(off), b = rand(off + k * n, 2).subarray(off);
        const c0 = rand(off + m * n, 3);
        const want = refGemm(tA, tB, m, n, k, 0.5, a, b, 0.25, c0.subarray(off));
        const got = c0.slice();
        gemm(tA, tB, m, n, k, 0.5, a, tA ? m : k, b, tB ? k : n, 0.25, got.subarray(off), n);
        let err = 0;
        for (let i = 0; i < want.length; i++) err = Math.max(err, Math.abs(got[off + i] - want[i]));
        assert.ok(err < 1e-6 * (4 + k), `${name} ${m}x${n}x${k} tA=${tA} tB=${tB}: ${err}`);
        assert.deepEqual(
          got.subarray(0, off),
          c0.subarray(0, off),
          `${name} wrote before the view`,
        );
      }
    }
  }
});

/** [batch, h, w, cin, fh, fw, cout, stride, pad] */
const CONV_CASES: [number, number, number, number, number, number, number, number, string][] = [
  [2, 7, 9, 3, 3, 3, 5, 1, "valid"],
  [2, 7, 9, 3, 3, 3, 5, 1, "same"],
  [2, 7, 9, 3, 3, 3, 5, 2, "valid"],
  [2, 7, 9, 3, 3, 3, 5, 2, "same"],
  [1, 8, 8, 4, 3, 2, 6, 2, "same"],
  [1, 5, 5, 7, 1, 1, 3, 1, "valid"],
  [3, 6, 5, 2, 5, 5, 4, 1, "same"],
  [1, 1, 1, 3, 3, 3, 2, 1, "same"],
  [4, 10, 10, 16, 3, 3, 32, 1, "same"],
];

const ENGINES: ["dnnl" | "im2col", number][] = [["im2col", 1 << 21], ["im2col", 50]];
if (loadDnnl()) ENGINES.unshift(["dnnl", 0]);

for (const [engine, chunk] of ENGINES) {
  const label = engine === "dnnl" ? "oneDNN" : `im2col, chunk ${chunk} floats`;
  Deno.test(`Conv2D, FusedConv2D and both gradients match cpu (${label})`, async () => {
    setConvEngine(engine);
    setConvChunkFloats(chunk || 1 << 21); // 50 floats forces one sample per GEMM call
    try {
      let seed = 10;
      for (const [n, h, w, c, fh, fw, f, s, pad] of CONV_CASES) {
        const x = { shape: [n, h, w, c], values: rand(n * h * w * c, seed++) };
        const filter = { shape: [fh, fw, c, f], values: rand(fh * fw * c * f, seed++) };
        const attrs = { strides: [s, s], pad, dataFormat: "NHWC", dilations: [1, 1] };
        const k = fh * fw * c;
        await check("Conv2D", { x, filter }, attrs, k);
        const bias = { shape: [f], values: rand(f, seed++) };
        for (const activation of ["linear", "relu", "relu6", "elu", "sigmoid", "leakyrelu"]) {
          await check("FusedConv2D", { x, filter, bias }, {
            ...attrs,
            activation,
            leakyreluAlpha: 0.1,
          }, k);
        }
        // without a bias: oneDNN applies the ReLU as a post-op on its own
        await check("FusedConv2D", { x, filter }, { ...attrs, activation: "relu" }, k);
        const prelu = { shape: [f], values: rand(f, seed++) };
        await check("FusedConv2D", { x, filter, bias, preluActivationWeights: prelu }, {
          ...attrs,
          activation: "prelu",
        }, k);
        const outShape = tf.backend_util.computeConv2DInfo(
          [n, h, w, c],
          [fh, fw, c, f],
          s,
          1,
          pad as "same",
        ).outShape;
        const dy = { shape: outShape, values: rand(tf.util.sizeFromShape(outShape), seed++) };
        await check(
          "Conv2DBackpropInput",
          { dy, filter },
          { ...attrs, inputShape: [n, h, w, c] },
          fh * fw * f,
        );
        const kf = n * outShape[1] * outShape[2];
        await check(
          "Conv2DBackpropFilter",
          { x, dy },
          { ...attrs, filterShape: [fh, fw, c, f] },
          kf,
        );
      }
      assert.deepEqual(fallbackCounts, {}, "no fast kernel declined");
    } finally {
      setConvChunkFloats(1 << 21);
      setConvEngine("dnnl");
    }
  });
}

Deno.test({
  name:
    "float32 Winograd convolutions (3×3, ≥ 64 channels, ≥ 4×4) match cpu, forward and both gradients",
  ignore: skipWithout("oneDNN"),
  fn: async () => {
    const d = loadDnnl()!;
    const before = d.winogradRuns;
    let seed = 300;
    // [batch, h, w, cin, cout, pad]: odd map sizes (partial 4×4 tiles), valid padding
    for (
      const [n, h, w, c, f, pad] of [
        [2, 8, 8, 64, 64, "same"],
        [1, 10, 10, 64, 128, "valid"],
        [1, 16, 16, 128, 64, "same"],
        [1, 9, 11, 64, 80, "same"],
        [5, 4, 4, 128, 64, "same"],
      ] as const
    ) {
      const x = { shape: [n, h, w, c], values: rand(n * h * w * c, seed++) };
      const filter = { shape: [3, 3, c, f], values: rand(9 * c * f, seed++) };
      const attrs = { strides: [1, 1], pad, dataFormat: "NHWC", dilations: [1, 1] };
      await check("Conv2D", { x, filter }, attrs, 9 * c);
      const bias = { shape: [f], values: rand(f, seed++) };
      for (const activation of ["linear", "relu"]) {
        await check("FusedConv2D", { x, filter, bias }, { ...attrs, activation }, 9 * c);
      }
      const o = pad === "same" ? [h, w] : [h - 2, w - 2];
      const dy = { shape: [n, o[0], o[1], f], values: rand(n * o[0] * o[1] * f, seed++) };
      await check(
        "Conv2DBackpropInput",
        { dy, filter },
        { ...attrs, inputShape: [n, h, w, c] },
        9 * f,
      );
      const filterShape = [3, 3, c, f];
      await check("Conv2DBackpropFilter", { x, dy }, { ...attrs, filterShape }, n * o[0] * o[1]);
    }
    // 5 per geometry: Conv2D, FusedConv2D ×2, both gradients
    assert.equal(d.winogradRuns - before, 25, "every one ran as Winograd");
  },
});

Deno.test("BatchMatMul and _FusedMatMul match cpu (transposes, batches, bias, activations)", async () => {
  let seed = 100;
  for (const [m, k, n] of [[1, 1, 1], [3, 17, 5], [32, 300, 10], [7, 64, 129]]) {
    for (const transposeA of [false, true]) {
      for (const transposeB of [false, true]) {
        const a = { shape: transposeA ? [k, m] : [m, k], values: rand(m * k, seed++) };
        const b = { shape: transposeB ? [n, k] : [k, n], values: rand(k * n, seed++) };
        await check("BatchMatMul", { a, b }, { transposeA, transposeB }, k);
        const a3 = { shape: [2, ...a.shape], values: rand(2 * m * k, seed++) };
        const b3 = { shape: [2, ...b.shape], values: rand(2 * k * n, seed++) };
        await check("BatchMatMul", { a: a3, b: b3 }, { transposeA, transposeB }, k);
        await check("BatchMatMul", { a: a3, b: { ...b, shape: [1, ...b.shape] } }, {
          transposeA,
          transposeB,
        }, k);
        const bias = { shape: [n], values: rand(n, seed++) };
        for (const activation of ["linear", "relu", "sigmoid", "elu", "relu6", "leakyrelu"]) {
          await check("_FusedMatMul", { a, b, bias }, {
            transposeA,
            transposeB,
            activation,
            leakyreluAlpha: 0.3,
          }, k);
        }
        await check("_FusedMatMul", { a, b }, { transposeA, transposeB, activation: "relu" }, k);
      }
    }
  }
  assert.deepEqual(fallbackCounts, {}, "no fast kernel declined");
  // a bias that is not row-wise falls back to tfjs's kernel and still agrees
  const a = { shape: [4, 3], values: rand(12, 1) }, b = { shape: [3, 4], values: rand(12, 2) };
  await check("_FusedMatMul", { a, b, bias: { shape: [4, 1], values: rand(4, 3) } }, {
    transposeA: false,
    transposeB: false,
    activation: "linear",
  }, 3);
  assert.equal(fallbackCounts._FusedMatMul, 1);
  delete fallbackCounts._FusedMatMul;
});

for (const engine of ENGINES.map(([e]) => e).filter((e, i, all) => all.indexOf(e) === i)) {
  Deno.test(`MaxPool and MaxPoolGrad match cpu (${engine}; valid/same, strides 1/2, odd sizes, ties)`, async () => {
    setConvEngine(engine);
    try {
      let seed = 200;
      for (
        const [n, h, w, c, f, s, pad] of [
          [1, 5, 7, 3, 2, 1, "valid"],
          [2, 5, 7, 3, 2, 2, "same"],
          [2, 6, 6, 4, 2, 2, "valid"],
          [1, 7, 5, 2, 3, 2, "same"],
          [3, 9, 9, 5, 3, 1, "same"],
        ] as [number, number, number, number, number, number, string][]
      ) {
        const xv = rand(n * h * w * c, seed++);
        // quantise some values so windows hold ties: the first maximum must win
        for (let i = 0; i < xv.length; i += 3) xv[i] = Math.round(xv[i] * 2) / 2;
        const x = { shape: [n, h, w, c], values: xv };
        const attrs = { filterSize: [f, f], strides: [s, s], pad };
        await check("MaxPool", { x }, attrs, 1);
        const y = await runOn("cpu", "MaxPool", { x }, attrs);
        const dy = { shape: y.shape, values: rand(y.values.length, seed++) };
        await check("MaxPoolGrad", { dy, input: x, output: y }, attrs, f * f);
      }
      assert.deepEqual(fallbackCounts, {}, "no fast kernel declined");
    } finally {
      setConvEngine("dnnl");
    }
  });
}

Deno.test("the pure-JS GEMM gives the same convolutions when OpenBLAS is absent", async () => {
  useJsGemm(true);
  setConvEngine("im2col");
  try {
    const x = { shape: [2, 6, 6, 3], values: rand(216, 7) };
    const filter = { shape: [3, 3, 3, 4], values: rand(108, 8) };
    const attrs = { strides: [1, 1], pad: "same", dataFormat: "NHWC", dilations: [1, 1] };
    await check("Conv2D", { x, filter }, attrs, 27);
    const dy = { shape: [2, 6, 6, 4], values: rand(288, 9) };
    await check("Conv2DBackpropFilter", { x, dy }, { ...attrs, filterShape: [3, 3, 3, 4] }, 72);
    await check("Conv2DBackpropInput", { dy, filter }, { ...attrs, inputShape: [2, 6, 6, 3] }, 36);
  } finally {
    useJsGemm(false);
    setConvEngine("dnnl");
  }
});

/** A small CNN with fixed weights, trained on fixed batches; returns the losses. */
async function trainLosses(
  backend: string,
  steps: number,
  optimizer: () => tf.Optimizer = () => tf.train.adam(0.01),
): Promise<{ losses: number[]; weights: Float32Array[] }> {
  await tf.setBackend(backend);
  let layer = 0;
  const init = () => tf.initializers.glorotUniform({ seed: 7 + layer++ });
  const model = tf.sequential();
  model.add(tf.layers.conv2d({
    inputShape: [12, 12, 2],
    filters: 6,
    kernelSize: 3,
    kernelInitializer: init(),
  }));
  model.add(tf.layers.maxPooling2d({ poolSize: 2, strides: 1 }));
  model.add(tf.layers.conv2d({
    filters: 8,
    kernelSize: 3,
    padding: "same",
    strides: 2,
    activation: "relu",
    kernelInitializer: init(),
  }));
  model.add(tf.layers.maxPooling2d({ poolSize: 2, strides: 2, padding: "same" }));
  model.add(tf.layers.flatten());
  model.add(tf.layers.dense({ units: 16, activation: "relu", kernelInitializer: init() }));
  model.add(tf.layers.dense({ units: 10, activation: "softmax", kernelInitializer: init() }));
  model.compile({ optimizer: optimizer(), loss: "sparseCategoricalCrossentropy" });
  const losses: number[] = [];
  for (let s = 0; s < steps; s++) {
    const x = tf.tensor(rand(8 * 12 * 12 * 2, 300 + s), [8, 12, 12, 2]);
    const y = tf.tensor(Array.from({ length: 8 }, (_, i) => (i * 3 + s) % 10), [8], "float32");
    const loss = await model.trainOnBatch(x, y);
    losses.push(Array.isArray(loss) ? loss[0] : loss);
    tf.dispose([x, y]);
  }
  const weights = await Promise.all(
    model.getWeights().map(async (w) => (await w.data()) as Float32Array),
  );
  model.dispose();
  return { losses, weights };
}

Deno.test("training steps give the same losses and weights on cpu-fast and cpu", async () => {
  const ref = await trainLosses("cpu", 4);
  assert.ok(ref.losses[3] !== ref.losses[0], "the model trained");
  for (const opt of [() => tf.train.adam(0.01), () => fusedAdam(0.01)]) {
    const got = await trainLosses(FAST_CPU, 4, opt);
    for (let i = 0; i < ref.losses.length; i++) {
      const [g, r] = [got.losses[i], ref.losses[i]];
      assert.ok(
        Math.abs(g - r) <= 1e-4 * Math.max(1, Math.abs(r)),
        `step ${i}: ${got.losses} vs ${ref.losses}`,
      );
    }
    got.weights.forEach((w, i) => assert.ok(maxAbsDiff(w, ref.weights[i]) < 1e-4, `weight ${i}`));
  }
  // on another backend the fused optimizer is tfjs's Adam
  const cpuFused = await trainLosses("cpu", 4, () => fusedAdam(0.01));
  assert.deepEqual(cpuFused.losses, ref.losses);
});

Deno.test("element-wise kernels and contiguous-axes Sum match cpu", async () => {
  const shapes: [number[], number[]][] = [
    [[5, 7], [5, 7]],
    [[5, 7], []],
    [[], [5, 7]],
    [[5, 7], [7]],
    [[7], [5, 7]],
    [[2, 3, 7], [1, 7]],
    [[5, 7], [1, 1]],
    [[5, 1], [1, 7]], // general broadcasting: declined, tfjs's kernel runs
  ];
  for (const k of Object.keys(fallbackCounts)) delete fallbackCounts[k];
  let seed = 400;
  for (const name of ["Add", "Sub", "Multiply", "RealDiv"]) {
    for (const [sa, sb] of shapes) {
      const a = { shape: sa, values: rand(tf.util.sizeFromShape(sa), seed++) };
      const b = { shape: sb, values: rand(tf.util.sizeFromShape(sb), seed++) };
      await check(name, { a, b }, {}, 1);
    }
  }
  assert.deepEqual(Object.keys(fallbackCounts).sort(), ["Add", "Multiply", "RealDiv", "Sub"]);
  for (const k of Object.keys(fallbackCounts)) delete fallbackCounts[k];
  const x = { shape: [4, 3, 5, 6], values: rand(360, 9) };
  for (const axis of [[0], [0, 1], [0, 1, 2], [1, 0], [-4, -3]]) {
    for (const keepDims of [false, true]) await check("Sum", { x }, { axis, keepDims }, 60);
  }
  await check("Sum", { x }, { axis: [1, 2], keepDims: false }, 60); // a middle run: ours too
  assert.equal(fallbackCounts.Sum, undefined);
  await check("Sum", { x }, { axis: [0, 2], keepDims: false }, 60); // declined: tfjs's kernel
  assert.equal(fallbackCounts.Sum, 1);
  delete fallbackCounts.Sum;
});

Deno.test("large Add and Multiply (on oneDNN when it loads) match cpu bit for bit, every layout", async () => {
  // 300 × 256 = 76,800 elements: past the size from which the op runs on oneDNN
  const special = [NaN, Infinity, -Infinity, 0, -0, 1e-30, -1e-30, 3.4e38, -3.4e38];
  const big = (seed: number) => {
    const v = rand(300 * 256, seed).map((x) => x * 10);
    special.forEach((s, i) => (v[i * 997] = s));
    return v;
  };
  const row = Float32Array.from([...special, ...rand(256 - special.length, 9)]);
  const cases: [number[], Float32Array, number[], Float32Array][] = [
    [[300, 256], big(1), [300, 256], big(2)], // same shape
    [[300, 256], big(3), [256], row], // a row over the last axis (a bias)
    [[256], row, [300, 256], big(4)], // the row first
    [[300, 256], big(5), [], Float32Array.of(-0.5)], // a scalar
    [[], Float32Array.of(NaN), [300, 256], big(6)], // a NaN scalar first
  ];
  for (const k of Object.keys(fallbackCounts)) delete fallbackCounts[k];
  for (const name of ["Add", "Multiply"]) {
    for (const [sa, va, sb, vb] of cases) {
      const inputs = { a: { shape: sa, values: va }, b: { shape: sb, values: vb } };
      const ref = await runOn("cpu", name, inputs, {});
      const got = await runOn(FAST_CPU, name, inputs, {});
      assert.deepEqual(got.shape, ref.shape);
      ref.values.forEach((r, i) => {
        if (!Object.is(got.values[i], r)) {
          assert.fail(`${name} ${sa}·${sb} [${i}]: ${got.values[i]} ≠ ${r}`);
        }
      });
    }
  }
  assert.deepEqual(fallbackCounts, {}, "no call declined");
});

Deno.test("Relu, Step, Floor, Square and Rsqrt match cpu exactly, NaN, infinities and signed zeros included", async () => {
  const special = [NaN, Infinity, -Infinity, 0, -0, 1e-30, -1e-30, 1e-45, -1e-45, 2.5, -2.5, 3, -3];
  const small = Float32Array.from([...special, NaN, ...rand(50, 77).map((v) => v * 10)]);
  // a NaN with the sign bit set (what x86 makes of 0·∞): ReLU and Step must keep it
  new Uint32Array(small.buffer)[special.length] = 0xffc00000;
  // 300 × 256 = 76,800: Relu and Step (alpha 0) run on oneDNN there when it loads
  const large = rand(300 * 256, 78).map((v) => v * 10);
  for (let i = 0; i < large.length; i += 601) large.set(small.subarray(0, special.length + 1), i);
  for (const k of Object.keys(fallbackCounts)) delete fallbackCounts[k];
  for (const values of [small, large]) {
    const x = { shape: [values.length], values };
    for (
      const [name, attrs] of [
        ["Relu", {}],
        ["Step", { alpha: 0 }],
        ["Step", { alpha: 0.3 }],
        ["Floor", {}],
        ["Square", {}],
        ["Rsqrt", {}],
      ] as const
    ) {
      const ref = await runOn("cpu", name, { x }, attrs);
      const got = await runOn(FAST_CPU, name, { x }, attrs);
      assert.deepEqual(got.shape, ref.shape);
      ref.values.forEach((r, i) =>
        assert.ok(
          Object.is(got.values[i], r),
          `${name} of ${values[i]} (${values.length}): ${got.values[i]} ≠ ${r}`,
        )
      );
    }
  }
  assert.deepEqual(fallbackCounts, {}, "no float32 call declined");
  // int32 input is declined and runs tfjs's kernel
  await tf.setBackend(FAST_CPU);
  const ints = tf.tensor1d([-2, 0, 3], "int32");
  assert.deepEqual(await tf.relu(ints).data(), Int32Array.from([0, 0, 3]));
  assert.equal(fallbackCounts.Relu, 1);
  delete fallbackCounts.Relu;
});

Deno.test("recycled output arrays never reach data that was read", async () => {
  await tf.setBackend(FAST_CPU);
  const n = 1 << 21; // above the pool's threshold
  const a = tf.fill([n], 1), b = tf.fill([n], 2);
  const kept = tf.add(a, b);
  const seen = (await kept.data()) as Float32Array; // handed out: must stay 3s
  kept.dispose();
  for (let i = 0; i < 3; i++) {
    const r = tf.mul(a, b); // same size: would reuse a freed array
    assert.equal(((await r.data()) as Float32Array)[n - 1], 2);
    r.dispose();
    const t = tf.sub(b, a);
    t.dispose(); // freed without being read: may be recycled
  }
  assert.ok(seen.every((v) => v === 3));
  tf.dispose([a, b]);
});

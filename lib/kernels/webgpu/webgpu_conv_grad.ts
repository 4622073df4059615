/**
 * Convolution gradients on WebGPU as tiled GEMMs over the implicit im2col matrix.
 *
 * tfjs-backend-webgpu 4.22 computes `Conv2DBackpropFilter` with one thread per filter element,
 * each looping over batch × output rows × output columns (VGG16's first layer: 1,728 threads
 * of 102,400 multiply-adds each), and `Conv2DBackpropInput` with one thread per input element
 * looping over the filter taps. Both are matrix products:
 *
 *   filter gradient  dW[(kh,kw,ci), co] = Σ_(b,oh,ow) x[b, oh·sh+kh−pt, ow·sw+kw−pl, ci] · dy[(b,oh,ow), co]
 *   input gradient   dx[(b,ih,iw), ci]  = Σ_(kh,kw,co) dy[b, (ih+pt−kh)/sh, (iw+pl−kw)/sw, co] · W[kh,kw,ci,co]
 *
 * Here each is one GEMM program whose operands are read straight from x, dy and W (no im2col
 * copy): a workgroup of 16×16 threads computes a 64×64 tile of the result, each thread 4×4,
 * stepping through the inner dimension 16 at a time through workgroup memory. When the result
 * has few tiles and the inner dimension is long (the filter gradient of early layers), the inner
 * dimension is split across workgroups and a second pass sums the parts ("split-K"), so even a
 * 27×64 filter gradient keeps ~100 workgroups busy. Work per dispatch is in `gemmPlan`.
 * Which of these the study runs (the filter gradient; the input gradient measured faster as
 * tfjs's own programs) is decided in webgpu_setup.ts.
 */
import * as tf from "@tensorflow/tfjs";
import { webgpu_util, type WebGPUBackend } from "@tensorflow/tfjs-backend-webgpu";

/** Tile of the result per workgroup (rows × columns) and the inner step through shared memory. */
const TILE = 64, STEP = 16, THREADS = 16;

/** Enough workgroups to fill a large GPU; split-K stops at this many. */
const TARGET_WORKGROUPS = 1024;

/** Shortest inner run one workgroup sums before split-K's extra pass stops paying. */
const MIN_CHUNK = 1024;

/** How one gradient GEMM is dispatched. */
export interface GemmPlan {
  /** Rows, columns and inner length of the product. */
  m: number;
  n: number;
  k: number;
  /** Parts the inner dimension is split into (1: no second pass). */
  splits: number;
  /** Inner elements per part (a multiple of the inner step). */
  chunk: number;
  /** Workgroups of the GEMM pass, and multiply-adds each one does (at most). */
  workgroups: number;
  macsPerWorkgroup: number;
}

/** Tiles and split-K for an m×n result with inner length k. */
export function gemmPlan(m: number, n: number, k: number): GemmPlan {
  const tiles = Math.ceil(m / TILE) * Math.ceil(n / TILE);
  const wanted = Math.ceil(TARGET_WORKGROUPS / tiles);
  const splits = Math.max(1, Math.min(wanted, Math.floor(k / MIN_CHUNK)));
  const chunk = Math.ceil(k / splits / STEP) * STEP;
  const parts = Math.ceil(k / chunk);
  return {
    m,
    n,
    k,
    splits: parts,
    chunk,
    workgroups: tiles * parts,
    macsPerWorkgroup: TILE * TILE * chunk,
  };
}

/** Which gradient a GEMM program computes: it decides how the operands are read. */
type Kind = "filter" | "input";

/**
 * The operand reads of each kind, in WGSL. `readA(m, k)` and `readB(k, n)` return 0 outside the
 * tensors (padding, stride gaps). `aKFast`/`bKFast`: whether consecutive threads should load
 * along k (the operand is contiguous in k) or along m/n, so that loads are coalesced.
 */
const READS: Record<Kind, { a: string; b: string; aKFast: boolean; bKFast: boolean }> = {
  // A = im2col(x)ᵀ: m = (kh, kw, ci), k = (b, oh, ow); B = dy as [(b, oh, ow), co].
  filter: {
    a: `
  fn readA(m : i32, k : i32) -> f32 {
    let ci = m % uniforms.inC;
    let tap = m / uniforms.inC;
    let kw = tap % uniforms.filterW;
    let kh = tap / uniforms.filterW;
    let ow = k % uniforms.outW;
    let rest = k / uniforms.outW;
    let oh = rest % uniforms.outH;
    let bi = rest / uniforms.outH;
    let ih = oh * uniforms.strides.x + kh - uniforms.pads.x;
    let iw = ow * uniforms.strides.y + kw - uniforms.pads.y;
    if (ih < 0 || ih >= uniforms.inH || iw < 0 || iw >= uniforms.inW) {
      return 0.0;
    }
    return a[((bi * uniforms.inH + ih) * uniforms.inW + iw) * uniforms.inC + ci];
  }`,
    b: `
  fn readB(k : i32, n : i32) -> f32 {
    return b[k * uniforms.dimN + n];
  }`,
    aKFast: false,
    bKFast: false,
  },
  // A = dy gathered per input pixel: m = (b, ih, iw), k = (kh, kw, co); B = W as [(kh, kw, co), ci].
  input: {
    a: `
  fn readA(m : i32, k : i32) -> f32 {
    let co = k % uniforms.outC;
    let tap = k / uniforms.outC;
    let kw = tap % uniforms.filterW;
    let kh = tap / uniforms.filterW;
    let iw = m % uniforms.inW;
    let rest = m / uniforms.inW;
    let ih = rest % uniforms.inH;
    let bi = rest / uniforms.inH;
    let hNum = ih + uniforms.pads.x - kh;
    let wNum = iw + uniforms.pads.y - kw;
    if (hNum < 0 || wNum < 0 || hNum % uniforms.strides.x != 0 || wNum % uniforms.strides.y != 0) {
      return 0.0;
    }
    let oh = hNum / uniforms.strides.x;
    let ow = wNum / uniforms.strides.y;
    if (oh >= uniforms.outH || ow >= uniforms.outW) {
      return 0.0;
    }
    return a[((bi * uniforms.outH + oh) * uniforms.outW + ow) * uniforms.outC + co];
  }`,
    b: `
  fn readB(k : i32, n : i32) -> f32 {
    let co = k % uniforms.outC;
    let tap = k / uniforms.outC;
    return b[(tap * uniforms.dimN + n) * uniforms.outC + co];
  }`,
    aKFast: true,
    bKFast: true,
  },
};

/** Loads one 16×64 operand tile into workgroup memory, 4 elements per thread. */
function tileLoad(op: "A" | "B", kFast: boolean): string {
  const outer = op === "A" ? "m" : "n";
  const dim = op === "A" ? "uniforms.dimM" : "uniforms.dimN";
  const base = op === "A" ? "m0" : "n0";
  const [kk, oo] = kFast ? [`e % ${STEP}`, `e / ${STEP}`] : [`e / ${TILE}`, `e % ${TILE}`];
  const read = op === "A" ? `readA(${outer}, k)` : `readB(k, ${outer})`;
  return `
    for (var i = 0; i < ${(TILE * STEP) / (THREADS * THREADS)}; i++) {
      let e = lid + i * ${THREADS * THREADS};
      let kk = ${kk};
      let oo = ${oo};
      let k = k0 + kk;
      let ${outer} = ${base} + oo;
      var v = 0.0;
      if (k < kEnd && ${outer} < ${dim}) {
        v = ${read};
      }
      tile${op}[kk][oo] = v;
    }`;
}

/** The GEMM program: result[s, m, n] = Σ over part s of the inner dimension of A(m,k)·B(k,n). */
class ConvGradGemmProgram {
  variableNames = ["a", "b"];
  uniforms = "dimM : i32, dimN : i32, dimK : i32, chunk : i32, inH : i32, inW : i32, inC : i32, " +
    "outH : i32, outW : i32, outC : i32, filterW : i32, strides : vec2<i32>, pads : vec2<i32>,";
  workgroupSize: [number, number, number] = [THREADS, THREADS, 1];
  outputShape: number[];
  shaderKey: string;
  dispatchLayout = { x: [1], y: [0], z: [2] };
  dispatch: [number, number, number];

  constructor(readonly kind: Kind, plan: GemmPlan, outputShape: number[]) {
    this.outputShape = outputShape;
    this.shaderKey = `mnistConvGradGemm_${kind}`;
    this.dispatch = [Math.ceil(plan.n / TILE), Math.ceil(plan.m / TILE), plan.splits];
  }

  getUserCode(): string {
    const r = READS[this.kind];
    const per = TILE / THREADS;
    return `
  var<workgroup> tileA : array<array<f32, ${TILE}>, ${STEP}>;
  var<workgroup> tileB : array<array<f32, ${TILE}>, ${STEP}>;
  ${r.a}
  ${r.b}
  fn main() {
    let tx = i32(localId.x);
    let ty = i32(localId.y);
    let lid = ty * ${THREADS} + tx;
    let n0 = i32(workgroupId.x) * ${TILE};
    let m0 = i32(workgroupId.y) * ${TILE};
    let s = i32(workgroupId.z);
    let kBegin = s * uniforms.chunk;
    let kEnd = min(kBegin + uniforms.chunk, uniforms.dimK);
    var acc : array<array<f32, ${per}>, ${per}>;
    for (var k0 = kBegin; k0 < kEnd; k0 += ${STEP}) {
      ${tileLoad("A", r.aKFast)}
      ${tileLoad("B", r.bKFast)}
      workgroupBarrier();
      for (var kk = 0; kk < ${STEP}; kk++) {
        var av : array<f32, ${per}>;
        var bv : array<f32, ${per}>;
        for (var i = 0; i < ${per}; i++) {
          av[i] = tileA[kk][ty * ${per} + i];
          bv[i] = tileB[kk][tx * ${per} + i];
        }
        for (var i = 0; i < ${per}; i++) {
          for (var j = 0; j < ${per}; j++) {
            acc[i][j] = fma(av[i], bv[j], acc[i][j]);
          }
        }
      }
      workgroupBarrier();
    }
    for (var i = 0; i < ${per}; i++) {
      let m = m0 + ty * ${per} + i;
      for (var j = 0; j < ${per}; j++) {
        let n = n0 + tx * ${per} + j;
        if (m < uniforms.dimM && n < uniforms.dimN) {
          result[(s * uniforms.dimM + m) * uniforms.dimN + n] = acc[i][j];
        }
      }
    }
  }`;
  }
}

/** Second pass of split-K: out[i] = Σ_s parts[s, i]. */
class SumPartsProgram {
  variableNames = ["parts"];
  uniforms = "splits : i32,";
  workgroupSize: [number, number, number] = [64, 1, 1];
  size = true;
  outputShape: number[];
  shaderKey = "mnistConvGradSumParts";
  dispatchLayout: { x: number[] };
  dispatch: [number, number, number];

  constructor(outputShape: number[]) {
    this.outputShape = outputShape;
    this.dispatchLayout = webgpu_util.flatDispatchLayout(outputShape);
    this.dispatch = webgpu_util.computeDispatch(this.dispatchLayout, outputShape, [64, 1, 1]);
  }

  getUserCode(): string {
    return `
  fn main(index : i32) {
    if (index < uniforms.size) {
      var sum = 0.0;
      for (var s = 0; s < uniforms.splits; s++) {
        sum = sum + parts[s * uniforms.size + index];
      }
      setOutputAtIndex(index, sum);
    }
  }`;
  }
}

type ConvInfo = ReturnType<typeof tf.backend_util.computeConv2DInfo>;

/** Runs one gradient GEMM (and the sum of its parts) into a tensor of `shape`. */
function runGemm(
  backend: WebGPUBackend,
  kind: Kind,
  a: tf.TensorInfo,
  b: tf.TensorInfo,
  info: ConvInfo,
  plan: GemmPlan,
  shape: number[],
): tf.TensorInfo {
  const uniforms = [
    { type: "int32", data: [plan.m] },
    { type: "int32", data: [plan.n] },
    { type: "int32", data: [plan.k] },
    { type: "int32", data: [plan.chunk] },
    { type: "int32", data: [info.inHeight] },
    { type: "int32", data: [info.inWidth] },
    { type: "int32", data: [info.inChannels] },
    { type: "int32", data: [info.outHeight] },
    { type: "int32", data: [info.outWidth] },
    { type: "int32", data: [info.outChannels] },
    { type: "int32", data: [info.filterWidth] },
    { type: "int32", data: [info.strideHeight, info.strideWidth] },
    { type: "int32", data: [info.padInfo.top, info.padInfo.left] },
  ];
  const single = plan.splits === 1;
  const gemm = new ConvGradGemmProgram(kind, plan, single ? shape : [plan.splits, plan.m * plan.n]);
  const run = backend.runWebGPUProgram.bind(backend) as unknown as (
    p: unknown,
    inputs: tf.TensorInfo[],
    dtype: tf.DataType,
    uniforms?: { type: string; data: number[] }[],
  ) => tf.TensorInfo;
  const parts = run(gemm, [a, b], "float32", uniforms);
  if (single) return parts;
  const out = run(new SumPartsProgram(shape), [parts], "float32", [
    { type: "int32", data: [plan.splits] },
  ]);
  backend.disposeData(parts.dataId);
  return out;
}

interface GradAttrs {
  strides: [number, number] | number;
  pad: "valid" | "same" | number | tf.backend_util.ExplicitPadding;
  dataFormat: "NHWC" | "NCHW";
  dimRoundingMode?: "floor" | "round" | "ceil";
}

/** The plan of the filter gradient of a convolution (exported for the bench and README figures). */
export function filterGradPlan(info: ConvInfo): GemmPlan {
  return gemmPlan(
    info.filterHeight * info.filterWidth * info.inChannels,
    info.outChannels,
    info.batchSize * info.outHeight * info.outWidth,
  );
}

/** The plan of the input gradient of a convolution. */
export function inputGradPlan(info: ConvInfo): GemmPlan {
  return gemmPlan(
    info.batchSize * info.inHeight * info.inWidth,
    info.inChannels,
    info.filterHeight * info.filterWidth * info.outChannels,
  );
}

/**
 * A result under 16 rows or columns fills a quarter of a 64×64 tile or less: tfjs's kernel is
 * faster there (the input gradient of a 3-channel first layer: 8× on the software adapter).
 */
function narrow(plan: GemmPlan): boolean {
  return plan.m < MIN_SIDE || plan.n < MIN_SIDE;
}
const MIN_SIDE = 16;

/**
 * Kernel configs for the webgpu backend; `fallback` runs tfjs's own kernel (NCHW, and results
 * too narrow for a GEMM tile).
 */
export function convGradKernels(
  fallback: { filter: tf.KernelFunc; input: tf.KernelFunc },
): tf.KernelConfig[] {
  return [
    {
      kernelName: tf.Conv2DBackpropFilter,
      backendName: "webgpu",
      kernelFunc: (args) => {
        const { x, dy } = args.inputs as { x: tf.TensorInfo; dy: tf.TensorInfo };
        const attrs = args.attrs as unknown as GradAttrs & { filterShape: number[] };
        if (attrs.dataFormat === "NCHW") return fallback.filter(args);
        const info = tf.backend_util.computeConv2DInfo(
          x.shape as [number, number, number, number],
          attrs.filterShape as [number, number, number, number],
          attrs.strides,
          1,
          attrs.pad,
          attrs.dimRoundingMode,
        );
        const plan = filterGradPlan(info);
        if (narrow(plan)) return fallback.filter(args);
        const backend = args.backend as WebGPUBackend;
        return runGemm(backend, "filter", x, dy, info, plan, info.filterShape);
      },
    },
    {
      kernelName: tf.Conv2DBackpropInput,
      backendName: "webgpu",
      kernelFunc: (args) => {
        const { dy, filter } = args.inputs as { dy: tf.TensorInfo; filter: tf.TensorInfo };
        const attrs = args.attrs as unknown as GradAttrs & { inputShape: number[] };
        if (attrs.dataFormat === "NCHW") return fallback.input(args);
        const info = tf.backend_util.computeConv2DInfo(
          attrs.inputShape as [number, number, number, number],
          filter.shape as [number, number, number, number],
          attrs.strides,
          1,
          attrs.pad,
          attrs.dimRoundingMode,
        );
        const plan = inputGradPlan(info);
        if (narrow(plan)) return fallback.input(args);
        const backend = args.backend as WebGPUBackend;
        return runGemm(backend, "input", dy, filter, info, plan, info.inShape);
      },
    },
  ];
}

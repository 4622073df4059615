/**
 * The kernels a tfjs-layers BatchNormalization spends its time in, as tight loops over
 * channels-last data. The layer's graph is left exactly as tfjs builds it (training:
 * `moments` = Mean, Sub, Square, Mean; then FusedBatchNorm; the moving averages as small
 * Sub/Mul updates; its gradient is tfjs-core's composed FusedBatchNorm gradient with Tile and
 * Sum, plus Mean's gradient), so semantics, moving-average updates included, stay tfjs's; only
 * the kernels under it get fast. Measured on vgg_small+BN (batch 100): tfjs-cpu's Mean
 * (cast, divide, transpose, sum) took 2.3 s and Tile 1.1 s of a 5.5 s step.
 */
import { util } from "@tensorflow/tfjs";
import { alloc } from "../pool_alloc.ts";
import { loadBlas } from "../blas/blas.ts";
import { getGemm } from "../blas/gemm.ts";
import { allF32, f32, type FastKernel, lastAxisSize, out } from "../util.ts";
import { biasActivation, epilogueSupported, type FusedActivation } from "./activation.ts";

/** The reduced axes, sorted and non-negative, or null when they are not one contiguous run. */
function contiguousAxes(axis: number | number[] | null, shape: number[]): number[] | null {
  // tfjs's own parsing: null means every axis, negatives count from the end
  const axes = util.parseAxisParam(axis as number[], shape).sort((p, q) => p - q);
  if (axes.length === 0 || axes.some((a, i) => i > 0 && a !== axes[i - 1] + 1)) return null;
  return axes;
}

/** Elements from which a whole-tensor column sum goes to the native BLAS. */
const NATIVE_SUM_MIN = 1 << 16;

/**
 * Sums `x` viewed as [outer, reduce, inner] over its middle axis: covers a bias or BatchNorm
 * reduction (over N,H,W: outer = 1) and global average pooling (over H,W). tfjs-cpu
 * transposes the whole tensor first for both. Large column sums (outer = 1) run as the
 * native BLAS's sgemv (float32 accumulation, as tfjs-cpu's own Sum); the rest in float64,
 * rounded once.
 */
function reduceMiddle(
  xv: Float32Array,
  outer: number,
  reduce: number,
  inner: number,
  scale: number,
): Float32Array {
  const r = new Float32Array(outer * inner);
  const blas = outer === 1 && reduce * inner >= NATIVE_SUM_MIN && getGemm().native
    ? loadBlas()
    : null;
  if (blas?.columnSums) {
    // measured 4× faster than this loop on a bias gradient over 100×32×32×64
    blas.columnSums(xv, reduce, inner, r);
    if (scale !== 1) { for (let j = 0; j < inner; j++) r[j] *= scale; }
    return r;
  }
  const acc = new Float64Array(inner);
  for (let o = 0; o < outer; o++) {
    acc.fill(0);
    const base = o * reduce * inner;
    for (let k = 0; k < reduce; k++) {
      const off = base + k * inner;
      for (let j = 0; j < inner; j++) acc[j] += xv[off + j];
    }
    for (let j = 0; j < inner; j++) r[o * inner + j] = acc[j] * scale;
  }
  return r;
}

/** Sum or Mean over one contiguous run of axes; other cases decline. */
function reduction(mean: boolean): FastKernel {
  return ({ inputs, backend, attrs }) => {
    const { x } = inputs;
    if (!allF32(x)) return null;
    const s = x.shape, rank = s.length;
    if (rank === 0) return null;
    const axes = contiguousAxes(attrs.axis, s);
    if (axes === null) return null;
    const first = axes[0], last = axes[axes.length - 1];
    const prod = (a: number, b: number) => s.slice(a, b).reduce((p, d) => p * d, 1);
    const outer = prod(0, first), reduce = prod(first, last + 1), inner = prod(last + 1, rank);
    if (reduce === 0) return null; // tfjs's own NaN / zero conventions
    const r = reduceMiddle(f32(backend, x), outer, reduce, inner, mean ? 1 / reduce : 1);
    const shape = attrs.keepDims
      ? s.map((d, i) => (i >= first && i <= last ? 1 : d))
      : s.filter((_, i) => i < first || i > last);
    return out(backend, shape, r);
  };
}

/** Sum over a contiguous run of axes (bias gradients, BatchNorm's gradient sums). */
const sum: FastKernel = reduction(false);
/** Mean over a contiguous run of axes (BatchNorm's moments, global average pooling). */
const mean: FastKernel = reduction(true);

/**
 * Tile of a tensor that only varies along its last axis (e.g. [1,1,1,C] → [N,H,W,C], what
 * tfjs's FusedBatchNorm gradient does with 1/sqrt(var+eps)) as row copies; tfjs-cpu goes
 * through an index computation per element. Other tilings decline.
 */
const tile: FastKernel = ({ inputs, backend, attrs }) => {
  const { x } = inputs;
  const reps: number[] = attrs.reps;
  const s = x.shape;
  if (!allF32(x) || s.length === 0 || reps.length !== s.length) return null;
  if (reps[reps.length - 1] !== 1 || s.slice(0, -1).some((d) => d !== 1)) return null;
  const xv = f32(backend, x);
  const rows = reps.reduce((p, d) => p * d, 1);
  const c = xv.length;
  const r = alloc(rows * c);
  if (c === 1) r.fill(xv[0]);
  else for (let o = 0; o < r.length; o += c) r.set(xv, o);
  return out(backend, s.map((d, i) => d * reps[i]), r);
};

/**
 * FusedBatchNorm (tfjs's batchNorm op, training and inference): y = offset + (x - mean) ·
 * scale / sqrt(variance + eps), each parameter per channel (length = last axis) or a scalar.
 * tfjs-cpu walks four modulo indices per element; here the per-channel factor is computed
 * once in float64. Parameters of any other length decline.
 */
const fusedBatchNorm: FastKernel = ({ inputs, backend, attrs }) => {
  const { x, mean, variance, offset, scale } = inputs;
  if (!allF32(x, mean, variance, offset, scale) || x.shape.length === 0) return null;
  const c = x.shape[x.shape.length - 1];
  const vals = [mean, variance, offset, scale].map((t) => t && f32(backend, t));
  if (vals.some((v) => v !== undefined && v.length !== 1 && v.length !== c)) return null;
  const eps = attrs?.varianceEpsilon ?? 0.001;
  const at = (v: Float32Array | undefined, i: number, dflt: number) =>
    v === undefined ? dflt : v.length === 1 ? v[0] : v[i];
  const [mv, vv, ov, sv] = vals;
  const m = new Float64Array(c), k = new Float64Array(c), o = new Float64Array(c);
  for (let j = 0; j < c; j++) {
    m[j] = at(mv, j, 0);
    k[j] = at(sv, j, 1) / Math.sqrt(at(vv, j, 0) + eps);
    o[j] = at(ov, j, 0);
  }
  const xv = f32(backend, x);
  const r = alloc(xv.length);
  for (let base = 0; base < xv.length; base += c) {
    for (let j = 0; j < c; j++) r[base + j] = o[j] + (xv[base + j] - m[j]) * k[j];
  }
  return out(backend, x.shape.slice(), r);
};

/**
 * FusedDepthwiseConv2D with a 1×1 filter, stride 1 and multiplier 1: y = act(x·k + b) per
 * channel, one pass over channels-last data. That is what an inference BatchNormalization (and
 * the ReLU after it) is once folded (lib/transfer/inference.ts: ResNet-v2's pre-activations); tfjs-cpu
 * runs it as a general depthwise convolution. Every other depthwise convolution declines.
 */
const fusedDepthwiseConv2D: FastKernel = ({ inputs, backend, attrs }) => {
  const { x, filter, bias, preluActivationWeights: prelu } = inputs;
  if (!allF32(x, filter, bias, prelu) || x.shape.length !== 4) return null;
  const [fh, fw, c, mult] = filter.shape;
  const ones = (v: unknown) => [v ?? 1].flat().every((d) => d === 1);
  if (fh !== 1 || fw !== 1 || mult !== 1 || c !== x.shape[3]) return null;
  if (!ones(attrs.strides) || !ones(attrs.dilations)) return null;
  if ((attrs.dataFormat ?? "NHWC") !== "NHWC" || typeof attrs.pad !== "string") return null;
  const act = (attrs.activation ?? "linear") as FusedActivation;
  if (!epilogueSupported(act, c, lastAxisSize(bias), lastAxisSize(prelu))) return null;
  const xv = f32(backend, x), k = f32(backend, filter);
  let b = bias ? f32(backend, bias) : null;
  const y = alloc(xv.length);
  if (b !== null && b.length === c) {
    for (let base = 0; base < xv.length; base += c) {
      for (let j = 0; j < c; j++) y[base + j] = xv[base + j] * k[j] + b[j];
    }
    b = null;
  } else {
    for (let base = 0; base < xv.length; base += c) {
      for (let j = 0; j < c; j++) y[base + j] = xv[base + j] * k[j];
    }
  }
  // the activation (and a scalar bias) as a second, branch-free pass: a ReLU branch on
  // random signs mispredicts half the time (measured 3× slower in one loop)
  biasActivation(
    y,
    xv.length / c,
    c,
    b,
    act,
    attrs.leakyreluAlpha,
    prelu ? f32(backend, prelu) : null,
  );
  return out(backend, x.shape.slice(), y);
};

/** The BatchNorm kernels, by tfjs kernel name. */
export const BATCHNORM_KERNELS: Record<string, FastKernel> = {
  Mean: mean,
  Sum: sum,
  Tile: tile,
  FusedBatchNorm: fusedBatchNorm,
  FusedDepthwiseConv2D: fusedDepthwiseConv2D,
};

/**
 * The 2-D convolution kernels (NHWC input, HWIO filter) and their two gradients, each on what
 * runs it fastest (`forwardDnnl`, `smallMapGemm`): oneDNN where it loads (onednn/dnnl.ts),
 * conv_small.ts's GEMMs over maps smaller than the kernel, else im2col + GEMM — the filter
 * gradient as colᵀ·dy, the input gradient as dy·Wᵀ scattered back by col2im. The batch is cut
 * into chunks so the column buffer stays a few MB (reused, in cache).
 */
import * as tf from "@tensorflow/tfjs";
import { biasActivation, epilogueSupported, type FusedActivation } from "./activation.ts";
import { type Gemm, getGemm } from "../blas/gemm.ts";
import { alloc } from "../pool_alloc.ts";
import { type Dnnl, type DnnlGeom, loadDnnl } from "../onednn/dnnl.ts";
import { dnnlFailure } from "../onednn/dnnl_load.ts";
import {
  smallMapBackwardData,
  smallMapBackwardFilter,
  smallMapConv,
  smallMapForward,
} from "./conv_small.ts";
import {
  allF32,
  cpuHasFlag,
  f32,
  type FastKernel,
  type KernelArgs,
  lastAxisSize,
  out,
  scratch,
} from "../util.ts";
import { envVar } from "../../machine/env.ts";

/** Geometry of one convolution (from tfjs's own `computeConv2DInfo`): the one oneDNN takes. */
type Geom = DnnlGeom;

let dnnlChoice: Dnnl | null | undefined;

/**
 * The oneDNN engine when convolutions and max-pooling run on it (libdnnl 2.x present and not disabled
 * with CPU_FAST_CONV=im2col), else null: im2col + GEMM.
 */
export function convDnnl(): Dnnl | null {
  if (dnnlChoice === undefined) {
    const mode = envVar("CPU_FAST_CONV") ?? "";
    dnnlChoice = mode === "im2col" ? null : loadDnnl();
  }
  return dnnlChoice;
}

/**
 * Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX-BF16): oneDNN emulates bf16
 * elsewhere, slower than float32, so mixed_bfloat16 is only offered where this holds.
 */
export function nativeBf16(): boolean {
  return cpuHasFlag("avx512_bf16") || cpuHasFlag("amx_bf16");
}

/**
 * mixed_bfloat16 for the convolutions (oneDNN bf16 primitives on blocked layouts, float32
 * accumulation; outputs and gradients rounded to bf16 as Keras's policy does, handed back as
 * float32). Returns whether it is on: it needs oneDNN and a CPU with native bf16. Every forward
 * then runs on oneDNN, small-output ones too; the gradients of maps smaller than the kernel run
 * as per-tap bf16 GEMMs (`smallMapGemm`).
 */
export function setConvBf16(on: boolean): boolean {
  const d = convDnnl();
  const active = on && d !== null && nativeBf16();
  if (d) d.bf16 = active;
  return active;
}

/** Test hook: "dnnl" (if it loads) or "im2col" for the convolutions. */
export function setConvEngine(engine: "dnnl" | "im2col"): void {
  dnnlChoice = engine === "im2col" ? null : loadDnnl();
}

/** One line on how convolutions run, for `registerFastCpuBackend().why`. */
export function describeConv(): string {
  const d = convDnnl();
  if (d) {
    const wino = d.winograd ? "; Winograd for float32 3×3 stride-1 on 64+ channels" : "";
    return `convolutions on oneDNN ${d.version} (direct JIT, NHWC${wino})`;
  }
  return `im2col convolutions${dnnlFailure() ? ` (oneDNN: ${dnnlFailure()})` : ""}`;
}

/** Floats of column buffer per GEMM call; ~8 MB keeps it in L2/L3-ish range yet GEMMs large. */
let chunkFloats = 2 * 1024 * 1024;

/** Tuning hook (bench, tests): the column-buffer size per GEMM call, in floats. */
export function setConvChunkFloats(n: number): void {
  chunkFloats = Math.max(1, n | 0);
}

/** The geometry oneDNN and the GEMM paths take, or null for NCHW or dilated convolutions. */
export function geom(info: tf.backend_util.Conv2DInfo): Geom | null {
  if (info.dataFormat !== "channelsLast" || info.dilationHeight !== 1 || info.dilationWidth !== 1) {
    return null;
  }
  return {
    batch: info.batchSize,
    inH: info.inHeight,
    inW: info.inWidth,
    inC: info.inChannels,
    outH: info.outHeight,
    outW: info.outWidth,
    outC: info.outChannels,
    fh: info.filterHeight,
    fw: info.filterWidth,
    sh: info.strideHeight,
    sw: info.strideWidth,
    padTop: info.padInfo.top,
    padLeft: info.padInfo.left,
  };
}

/** A 1×1, stride-1, unpadded convolution is a plain GEMM on the input: no columns needed. */
function isPointwise(g: Geom): boolean {
  return g.fh === 1 && g.fw === 1 && g.sh === 1 && g.sw === 1 && g.padTop === 0 &&
    g.padLeft === 0 && g.outH === g.inH && g.outW === g.inW;
}

/** Samples per chunk so that one chunk's columns fit in `chunkFloats`. */
function samplesPerChunk(g: Geom): number {
  const perSample = g.outH * g.outW * g.fh * g.fw * g.inC;
  return Math.max(1, Math.min(g.batch, Math.floor(chunkFloats / perSample)));
}

/**
 * Writes the columns of samples [b0, b0+nb): one row per output pixel, holding the
 * fh×fw×inC input patch in (ky, kx, c) order (zeros where the patch leaves the image).
 */
function im2col(x: Float32Array, g: Geom, b0: number, nb: number, col: Float32Array): void {
  const { inH, inW, inC, outH, outW, fh, fw, sh, sw, padTop, padLeft } = g;
  const rowLen = fw * inC;
  let d = 0;
  for (let b = b0; b < b0 + nb; b++) {
    const xb = b * inH * inW * inC;
    for (let oy = 0; oy < outH; oy++) {
      const iy0 = oy * sh - padTop;
      for (let ox = 0; ox < outW; ox++) {
        const ix0 = ox * sw - padLeft;
        const inside = ix0 >= 0 && ix0 + fw <= inW;
        for (let ky = 0; ky < fh; ky++) {
          const iy = iy0 + ky;
          if (iy < 0 || iy >= inH) {
            col.fill(0, d, d + rowLen);
            d += rowLen;
            continue;
          }
          const rowBase = xb + iy * inW * inC;
          if (inside) {
            // the fw patch pixels are adjacent in NHWC: one contiguous run
            let s = rowBase + ix0 * inC;
            if (rowLen >= 256) {
              col.set(x.subarray(s, s + rowLen), d);
              d += rowLen;
            } else {
              for (let i = 0; i < rowLen; i++) col[d++] = x[s++];
            }
            continue;
          }
          for (let kx = 0; kx < fw; kx++) {
            const ix = ix0 + kx;
            if (ix < 0 || ix >= inW) {
              col.fill(0, d, d + inC);
              d += inC;
            } else {
              let s = rowBase + ix * inC;
              for (let c = 0; c < inC; c++) col[d++] = x[s++];
            }
          }
        }
      }
    }
  }
}

/** Adds columns back into the input gradient `dx` of samples [b0, b0+nb): im2col's adjoint. */
function col2im(col: Float32Array, g: Geom, b0: number, nb: number, dx: Float32Array): void {
  const { inH, inW, inC, outH, outW, fh, fw, sh, sw, padTop, padLeft } = g;
  const rowLen = fw * inC;
  let d = 0;
  for (let b = b0; b < b0 + nb; b++) {
    const xb = b * inH * inW * inC;
    for (let oy = 0; oy < outH; oy++) {
      const iy0 = oy * sh - padTop;
      for (let ox = 0; ox < outW; ox++) {
        const ix0 = ox * sw - padLeft;
        const inside = ix0 >= 0 && ix0 + fw <= inW;
        for (let ky = 0; ky < fh; ky++) {
          const iy = iy0 + ky;
          if (iy < 0 || iy >= inH) {
            d += rowLen;
            continue;
          }
          const rowBase = xb + iy * inW * inC;
          if (inside) {
            let s = rowBase + ix0 * inC;
            for (let i = 0; i < rowLen; i++) dx[s++] += col[d++];
            continue;
          }
          for (let kx = 0; kx < fw; kx++) {
            const ix = ix0 + kx;
            if (ix < 0 || ix >= inW) {
              d += inC;
            } else {
              let s = rowBase + ix * inC;
              for (let c = 0; c < inC; c++) dx[s++] += col[d++];
            }
          }
        }
      }
    }
  }
}

/**
 * oneDNN for a forward convolution, or null for im2col + GEMM. oneDNN's direct kernels lose to
 * the GEMM where there is little spatial work to block over: ResNet152V2 at 32×32 (batch 256)
 * has 36 3×3 convolutions with a 2×2 output (oneDNN 11.3 ms each, 107 GFLOPS; im2col + OpenBLAS
 * ~2× faster) and ~100 1×1 ones on 2×2 and 1×1 maps, which are plain GEMMs. Measured over the
 * whole net: 1.02 s → 0.73 s of convolutions (Zen 5 EPYC, OpenBLAS core Cooperlake). Only
 * with an AVX-512 GEMM: OpenBLAS's AVX2 kernels run at half speed and oneDNN wins (1.13 s) —
 * though where OpenBLAS is held to AVX2 on an AVX-512 CPU, oneDNN's sgemm takes the GEMMs
 * (blas.ts), and the GEMM route wins again. CPU_FAST_CONV_SMALL=dnnl keeps oneDNN.
 */
function forwardDnnl(g: Geom): Dnnl | null {
  const d = convDnnl();
  if (d !== null && !d.bf16 && smallMapConv(g)) return null;
  if (d === null || d.bf16 || !smallConvsOnGemm()) return d;
  return isPointwise(g) || g.outH * g.outW <= 4 ? null : d;
}

/** Whether little-spatial-work convolutions go to the GEMM: it has AVX-512, and no one said otherwise. */
function smallConvsOnGemm(): boolean {
  return getGemm().avx512 && !smallOnDnnl;
}

const smallOnDnnl = envVar("CPU_FAST_CONV_SMALL") === "dnnl";

/** y = conv(x, w) into a new array, NHWC; the shared core of Conv2D and FusedConv2D. */
function convForward(
  x: Float32Array,
  w: Float32Array,
  g: Geom,
  bias: Float32Array | null = null,
  relu = false,
  xId: object | null = null,
): Float32Array {
  const d = forwardDnnl(g);
  if (d) return d.forward(g, x, w, bias, relu, xId);
  if (relu) throw new Error("convForward: a ReLU is fused on the oneDNN path only");
  const { gemm } = getGemm();
  const rows = g.outH * g.outW, K = g.fh * g.fw * g.inC, F = g.outC;
  if (smallMapConv(g)) return smallMapForward(x, w, g, gemm);
  const y = alloc(g.batch * rows * F); // every element is written by the GEMMs
  if (isPointwise(g)) {
    gemm(false, false, g.batch * rows, F, K, 1, x, K, w, F, 0, y, F);
    return y;
  }
  const per = samplesPerChunk(g);
  const col = scratch(per * rows * K);
  for (let b0 = 0; b0 < g.batch; b0 += per) {
    const nb = Math.min(per, g.batch - b0);
    im2col(x, g, b0, nb, col);
    gemm(false, false, nb * rows, F, K, 1, col, K, w, F, 0, y.subarray(b0 * rows * F), F);
  }
  return y;
}

function convInfo(
  xShape: number[],
  filterShape: number[],
  attrs: KernelArgs["attrs"],
): tf.backend_util.Conv2DInfo {
  return tf.backend_util.computeConv2DInfo(
    xShape as [number, number, number, number],
    filterShape as [number, number, number, number],
    attrs.strides,
    attrs.dilations ?? 1,
    attrs.pad,
    attrs.dimRoundingMode,
    false,
    tf.backend_util.convertConv2DDataFormat(attrs.dataFormat ?? "NHWC"),
  );
}

/** Conv2D: inputs {x, filter}. */
export const conv2D: FastKernel = ({ inputs, backend, attrs }) => {
  const { x, filter } = inputs;
  if (!allF32(x, filter)) return null;
  const info = convInfo(x.shape, filter.shape, attrs);
  const g = geom(info);
  if (!g) return null;
  const y = convForward(f32(backend, x), f32(backend, filter), g, null, false, x.dataId);
  return outTagged(backend, info.outShape, y);
};

/**
 * The output tensor of a convolution kernel, telling oneDNN which tensor its last blocked
 * result (bf16, or float32 Winograd) became, so that a convolution reading it next can take
 * the blocked copy (Dnnl.tagOutput). Only for arrays handed on as the convolution wrote them.
 */
function outTagged(backend: KernelArgs["backend"], shape: number[], values: Float32Array) {
  const t = out(backend, shape, values);
  convDnnl()?.tagOutput(values, t.dataId);
  return t;
}

/** FusedConv2D: conv + bias + activation, the epilogue done in place on the output. */
export const fusedConv2D: FastKernel = ({ inputs, backend, attrs }) => {
  const { x, filter, bias, preluActivationWeights: prelu } = inputs;
  if (!allF32(x, filter, bias, prelu)) return null;
  const info = convInfo(x.shape, filter.shape, attrs);
  const g = geom(info);
  if (!g) return null;
  const act = (attrs.activation ?? "linear") as FusedActivation;
  if (!epilogueSupported(act, g.outC, lastAxisSize(bias), lastAxisSize(prelu))) return null;
  let b = bias ? f32(backend, bias) : null;
  // oneDNN adds a per-channel bias inside the convolution, and a ReLU after it as a post-op;
  // a scalar bias and other activations go to the epilogue
  const dnnl = forwardDnnl(g) !== null;
  const inConv = dnnl && b !== null && b.length === g.outC;
  const reluInConv = dnnl && act === "relu" && (b === null || inConv);
  const y = convForward(
    f32(backend, x),
    f32(backend, filter),
    g,
    inConv ? b : null,
    reluInConv,
    x.dataId,
  );
  if (inConv) b = null;
  if (b === null && (act === "linear" || reluInConv)) return outTagged(backend, info.outShape, y);
  biasActivation(
    y,
    y.length / g.outC,
    g.outC,
    b,
    act,
    attrs.leakyreluAlpha,
    prelu ? f32(backend, prelu) : null,
  );
  return out(backend, info.outShape, y);
};

/**
 * The GEMM for conv_small.ts's per-tap gradients, or null where the convolution kernels take
 * them: maps smaller than the kernel (VGG16's block 5 at 32×32 input), as the float32 forward
 * does, on the chosen GEMM; under mixed_bfloat16 on bf16 GEMMs over once-rounded copies of the
 * arrays in `shared` — on block 5 (batch 100, 512 → 512, 2×2) oneDNN's bf16 kernels, with their
 * reorders, took 8.8–9.7 ms per layer for the weight gradient and 4.0–4.2 for the input
 * gradient, the per-tap bf16 GEMMs 2.4–4.2 and 2.2 (Zen 5 EPYC). The bf16 forward stays on
 * oneDNN.
 */
function smallMapGemm(d: Dnnl | null, g: Geom, shared: Float32Array[]): Gemm | null {
  if (!smallMapConv(g)) return null;
  return d?.bf16 ? d.bf16Gemm().over(shared) : getGemm().gemm;
}

/** Conv2DBackpropInput: dx = col2im(dy·Wᵀ); inputs {dy, filter}, attrs.inputShape. */
export const conv2DBackpropInput: FastKernel = ({ inputs, backend, attrs }) => {
  const { dy, filter } = inputs;
  if (!allF32(dy, filter)) return null;
  const info = convInfo(attrs.inputShape, filter.shape, attrs);
  const g = geom(info);
  if (!g) return null;
  const dyv = f32(backend, dy), w = f32(backend, filter);
  const d = convDnnl();
  const small = smallMapGemm(d, g, [dyv, w]);
  if (small) return out(backend, attrs.inputShape, smallMapBackwardData(dyv, w, g, small));
  const { gemm } = getGemm();
  if (d) return outTagged(backend, attrs.inputShape, d.backwardData(g, dyv, w, dy.dataId));
  const rows = g.outH * g.outW, K = g.fh * g.fw * g.inC, F = g.outC;
  const dx = alloc(g.batch * g.inH * g.inW * g.inC, true);
  if (isPointwise(g)) {
    gemm(false, true, g.batch * rows, K, F, 1, dyv, F, w, F, 0, dx, K);
  } else {
    const per = samplesPerChunk(g);
    const col = scratch(per * rows * K);
    for (let b0 = 0; b0 < g.batch; b0 += per) {
      const nb = Math.min(per, g.batch - b0);
      gemm(false, true, nb * rows, K, F, 1, dyv.subarray(b0 * rows * F), F, w, F, 0, col, K);
      col2im(col, g, b0, nb, dx);
    }
  }
  return out(backend, attrs.inputShape, dx);
};

/** Conv2DBackpropFilter: dW = Σ colᵀ·dy over the batch chunks; inputs {x, dy}. */
export const conv2DBackpropFilter: FastKernel = ({ inputs, backend, attrs }) => {
  const { x, dy } = inputs;
  if (!allF32(x, dy)) return null;
  const info = convInfo(x.shape, attrs.filterShape, attrs);
  const g = geom(info);
  if (!g) return null;
  const xv = f32(backend, x), dyv = f32(backend, dy);
  const d = convDnnl();
  const small = smallMapGemm(d, g, [xv, dyv]);
  if (small) return out(backend, attrs.filterShape, smallMapBackwardFilter(xv, dyv, g, small));
  const { gemm } = getGemm();
  if (d) return out(backend, attrs.filterShape, d.backwardWeights(g, xv, dyv, x.dataId, dy.dataId));
  const rows = g.outH * g.outW, K = g.fh * g.fw * g.inC, F = g.outC;
  const dw = alloc(K * F);
  if (isPointwise(g)) {
    gemm(true, false, K, F, g.batch * rows, 1, xv, K, dyv, F, 0, dw, F);
  } else {
    const per = samplesPerChunk(g);
    const col = scratch(per * rows * K);
    for (let b0 = 0; b0 < g.batch; b0 += per) {
      const nb = Math.min(per, g.batch - b0);
      im2col(xv, g, b0, nb, col);
      gemm(
        true,
        false,
        K,
        F,
        nb * rows,
        1,
        col,
        K,
        dyv.subarray(b0 * rows * F),
        F,
        b0 ? 1 : 0,
        dw,
        F,
      );
    }
  }
  return out(backend, attrs.filterShape, dw);
};

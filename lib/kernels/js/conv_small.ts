/**
 * A convolution over a map smaller than its kernel (a 3×3 on 2×2 or 1×1 maps: ResNet152V2's
 * 39 conv4/conv5 3×3 convolutions at 32×32 input) as one GEMM of the flattened input against
 * the unrolled kernel: y[n, (i,j,o)] = Σ x[n, (p,q,c)] · U[(p,q,c), (i,j,o)], U holding the tap
 * W[p − i·s + top, q − j·s + left] where it lands in the kernel and zero elsewhere. The GEMM
 * does inH·inW·outH·outW·C·F multiply-adds where im2col does outH·outW·fh·fw·C·F — 16 vs 36
 * per channel pair for a padded 3×3 on 2×2 — and has a large K instead of many small
 * convolution rows. U is rebuilt on every call (weights change under training); its cost is
 * about one GEMM row per input pixel, small beside a batch of rows.
 */
import type { DnnlGeom } from "../onednn/dnnl.ts";
import type { Gemm } from "../blas/gemm.ts";
import { alloc } from "../pool_alloc.ts";
import { scratch } from "../util.ts";

/** Largest unrolled kernel built, in floats (64 MB). */
const MAX_UNROLLED = 16 * 1024 * 1024;

/** Whether the unrolled-kernel GEMM does less work than im2col for this geometry and batch. */
export function smallMapConv(g: DnnlGeom): boolean {
  const inPix = g.inH * g.inW, outPix = g.outH * g.outW;
  return inPix < g.fh * g.fw && inPix * outPix * g.inC * g.outC <= MAX_UNROLLED &&
    // building U costs about inPix rows of the GEMM: worth it only over a batch of rows
    g.batch >= 4 * inPix;
}

/**
 * U for `w` (HWIO) as a row-major [inH·inW·inC, outH·outW·outC] matrix, in the shared scratch
 * buffer (valid until the next kernel uses it).
 */
function unrolledKernel(w: Float32Array, g: DnnlGeom): Float32Array {
  const { inH, inW, inC, outH, outW, outC, fh, fw, sh, sw, padTop, padLeft } = g;
  const cols = outH * outW * outC;
  const n = inH * inW * inC * cols;
  const u = scratch(n).subarray(0, n);
  u.fill(0);
  for (let p = 0; p < inH; p++) {
    for (let q = 0; q < inW; q++) {
      for (let i = 0; i < outH; i++) {
        const a = p - i * sh + padTop;
        if (a < 0 || a >= fh) continue;
        for (let j = 0; j < outW; j++) {
          const b = q - j * sw + padLeft;
          if (b < 0 || b >= fw) continue;
          const tap = (a * fw + b) * inC * outC;
          const row0 = (p * inW + q) * inC, col0 = (i * outW + j) * outC;
          for (let c = 0; c < inC; c++) {
            u.set(w.subarray(tap + c * outC, tap + (c + 1) * outC), (row0 + c) * cols + col0);
          }
        }
      }
    }
  }
  return u;
}

/** y = conv(x, w) for a `smallMapConv` geometry, NHWC in and out. */
export function smallMapForward(x: Float32Array, w: Float32Array, g: DnnlGeom, gemm: Gemm) {
  const K = g.inH * g.inW * g.inC, F = g.outH * g.outW * g.outC;
  const y = alloc(g.batch * F);
  gemm(false, false, g.batch, F, K, 1, x, K, unrolledKernel(w, g), F, 0, y, F);
  return y;
}

/**
 * Where each kernel tap connects an input pixel to an output pixel: [input pixel, output pixel,
 * tap], pixels and taps numbered row-major. A 3×3 "same" convolution on a 2×2 map has 16.
 */
function tapPairs(g: DnnlGeom): [number, number, number][] {
  const pairs: [number, number, number][] = [];
  for (let p = 0; p < g.inH; p++) {
    for (let q = 0; q < g.inW; q++) {
      for (let i = 0; i < g.outH; i++) {
        const a = p - i * g.sh + g.padTop;
        if (a < 0 || a >= g.fh) continue;
        for (let j = 0; j < g.outW; j++) {
          const b = q - j * g.sw + g.padLeft;
          if (b >= 0 && b < g.fw) pairs.push([p * g.inW + q, i * g.outW + j, a * g.fw + b]);
        }
      }
    }
  }
  return pairs;
}

/*
 * The gradients of a `smallMapConv` geometry, as one GEMM per tap pair instead of oneDNN's
 * direct kernels, which block over space and find almost none here: on VGG16's 2×2 block-5
 * maps (batch 100, 512 → 512) oneDNN took 8.5 ms for the input gradient and 13.1 ms for the
 * weight gradient, 16 GEMMs 4.6 and 3.5 ms (Zen 5 EPYC, OpenBLAS core Haswell). Each GEMM
 * reads one pixel's channels in place (the row stride skips the other pixels). The first
 * product into an output block overwrites it (beta 0) and later ones accumulate, so only the
 * blocks no tap reaches are zeroed (the output comes from the pool, not zeroed).
 */

/** dx = ∂L/∂x for a `smallMapConv` geometry: dx[:, pin, :] += dy[:, pout, :] · W[tap]ᵀ. */
export function smallMapBackwardData(
  dy: Float32Array,
  w: Float32Array,
  g: DnnlGeom,
  gemm: Gemm,
): Float32Array {
  const C = g.inC, O = g.outC, inPix = g.inH * g.inW, outPix = g.outH * g.outW;
  const dx = alloc(g.batch * inPix * C);
  const pairs = tapPairs(g);
  // a pixel's block is strided over the batch: when a stride leaves some pixel unreached, zero
  // everything up front and accumulate throughout
  const unreached = new Set(pairs.map(([pin]) => pin)).size < inPix;
  if (unreached) dx.fill(0);
  const written = new Uint8Array(inPix);
  for (const [pin, pout, tap] of pairs) {
    const beta = unreached ? 1 : written[pin];
    gemm(
      false,
      true,
      g.batch,
      C,
      O,
      1,
      dy.subarray(pout * O),
      outPix * O,
      w.subarray(tap * C * O),
      O,
      beta,
      dx.subarray(pin * C),
      inPix * C,
    );
    written[pin] = 1;
  }
  return dx;
}

/** dW = ∂L/∂W (HWIO) for a `smallMapConv` geometry: dW[tap] += x[:, pin, :]ᵀ · dy[:, pout, :]. */
export function smallMapBackwardFilter(
  x: Float32Array,
  dy: Float32Array,
  g: DnnlGeom,
  gemm: Gemm,
): Float32Array {
  const C = g.inC, O = g.outC, inPix = g.inH * g.inW, outPix = g.outH * g.outW;
  const taps = g.fh * g.fw, size = C * O;
  const dw = alloc(taps * size);
  const pairs = tapPairs(g);
  const written = new Uint8Array(taps);
  for (const [pin, pout, tap] of pairs) {
    gemm(
      true,
      false,
      C,
      O,
      g.batch,
      1,
      x.subarray(pin * C),
      inPix * C,
      dy.subarray(pout * O),
      outPix * O,
      written[tap],
      dw.subarray(tap * size),
      O,
    );
    written[tap] = 1;
  }
  // taps that touch no pixel of this map (e.g. the corners of a 3×3 on a 1×1 map) get zero
  written.forEach((w, t) => w || dw.fill(0, t * size, (t + 1) * size));
  return dw;
}

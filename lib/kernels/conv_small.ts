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
import type { DnnlGeom } from "./dnnl.ts";
import type { Gemm } from "./gemm.ts";
import { alloc } from "./pool_alloc.ts";
import { scratch } from "./util.ts";

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
export function unrolledKernel(w: Float32Array, g: DnnlGeom): Float32Array {
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

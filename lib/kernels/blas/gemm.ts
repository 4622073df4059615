/**
 * Single-precision GEMM for the kernels: the native BLAS when it loads, else a blocked
 * pure-JS loop (slow, but far faster than tfjs-cpu's direct convolution, and always there).
 */
import { blasFailure, loadBlas } from "./blas.ts";
import { envVar } from "../../machine/env.ts";
import type { Gemm } from "../util.ts";

export type { Gemm };

/** The GEMM the kernels use, with a line naming it. */
export interface ChosenGemm {
  gemm: Gemm;
  describe: string;
  /** A native library (not the JS loop). */
  native: boolean;
  /** It runs AVX-512 kernels (conv.ts then prefers it to oneDNN for tiny convolutions). */
  avx512: boolean;
}

let chosen: ChosenGemm | undefined;

/** The GEMM in use; set `CPU_FAST_GEMM=js` to force the pure-JS one (tests use it). */
export function getGemm(): ChosenGemm {
  if (chosen) return chosen;
  const force = envVar("CPU_FAST_GEMM") ?? "";
  const blas = force === "js" ? null : loadBlas();
  chosen = blas
    ? { gemm: blas.sgemm, describe: `${blas.describe} via FFI`, native: true, avx512: blas.avx512 }
    : {
      gemm: jsGemm,
      describe: `pure-JS GEMM (${force === "js" ? "CPU_FAST_GEMM=js" : blasFailure()})`,
      native: false,
      avx512: false,
    };
  return chosen;
}

/** Test hook: use the pure-JS GEMM (true) or the native one if it loads (false). */
export function useJsGemm(js: boolean): void {
  chosen = undefined;
  if (js) {
    chosen = { gemm: jsGemm, describe: "pure-JS GEMM (forced)", native: false, avx512: false };
  }
}

/** Copies the transpose of row-major `rows`×`cols` matrix `a` (leading dim `ld`). */
function transposed(a: Float32Array, rows: number, cols: number, ld: number): Float32Array {
  const t = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    const o = r * ld;
    for (let c = 0; c < cols; c++) t[c * rows + r] = a[o + c];
  }
  return t;
}

/**
 * Pure-JS GEMM: transposes are materialised so the inner loop always runs along a
 * contiguous row of B and of C (i-k-j order), blocked over k to keep B's rows in cache.
 */
export const jsGemm: Gemm = (transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc) => {
  if (transA) [a, lda] = [transposed(a, k, m, lda), k];
  if (transB) [b, ldb] = [transposed(b, n, k, ldb), n];
  for (let i = 0; i < m; i++) {
    const ci = i * ldc;
    if (beta === 0) c.fill(0, ci, ci + n);
    else if (beta !== 1) { for (let j = 0; j < n; j++) c[ci + j] *= beta; }
  }
  const KB = 256;
  for (let k0 = 0; k0 < k; k0 += KB) {
    const k1 = Math.min(k, k0 + KB);
    for (let i = 0; i < m; i++) {
      const ai = i * lda, ci = i * ldc;
      for (let p = k0; p < k1; p++) {
        const av = alpha * a[ai + p];
        const bp = p * ldb;
        for (let j = 0; j < n; j++) c[ci + j] += av * b[bp + j];
      }
    }
  }
};

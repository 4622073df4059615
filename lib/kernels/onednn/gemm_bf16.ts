/**
 * Matrix products under mixed_bfloat16 on oneDNN: the operands rounded to bf16 by reorders (to
 * nearest even, as the convolutions' inputs), the products accumulated and written in float32 by
 * `dnnl_gemm_bf16bf16f32` (AVX512-BF16 or AMX). The dense layers' matmuls use `gemm`, which
 * rounds both operands of each product; conv_small.ts's per-tap GEMMs, many products over views
 * of the same two arrays, use `over`, which rounds each of those arrays once.
 */
import type { Gemm } from "../blas/gemm.ts";
import {
  BF16,
  check,
  f32,
  gemmArgs,
  type Lib,
  md,
  type Prim,
  type Ptr,
  type Run,
  SLOT,
  stable,
} from "./dnnl_ffi.ts";

/** A float32 → bf16 reorder of a 1-D array and the buffer it writes (mds kept alive with it). */
interface Rounding {
  prim: Prim;
  buf: Float32Array;
  mds: Uint8Array[];
}

/** The floats op(X) spans in row-major storage: op(X) is rows × cols, X's leading dim `ld`. */
function span(trans: boolean, rows: number, cols: number, ld: number): number {
  return trans ? (cols - 1) * ld + rows : (rows - 1) * ld + cols;
}

export class Bf16Gemm {
  /** Roundings by operand slot and length, made once. */
  private roundings = new Map<string, Rounding>();

  constructor(
    private lib: Lib,
    private reorder: (from: Ptr, to: Ptr) => Prim,
    private run: Run,
  ) {}

  /** The first `len` floats of `a` rounded to bf16, in `slot`'s buffer for that length. */
  private round(a: Float32Array, len: number, slot: string): Uint16Array {
    const key = `${slot} ${len}`;
    let r = this.roundings.get(key);
    if (!r) {
      const mds = [md(this.lib, [len], [1]), md(this.lib, [len], [1], BF16)];
      const p = (m: Uint8Array) => Deno.UnsafePointer.of(m);
      r = { prim: this.reorder(p(mds[0]), p(mds[1])), buf: f32(Math.ceil(len / 2)), mds };
      this.roundings.set(key, r);
    }
    this.run(r.prim, [stable(a.subarray(0, len), SLOT.gemmOperand), r.buf]);
    return new Uint16Array(r.buf.buffer, r.buf.byteOffset, len);
  }

  /** Row-major C = alpha·op(A)·op(B) + beta·C on bf16 A and B (gemmArgs' order); k > 0. */
  private product(...args: Parameters<typeof gemmArgs>): void {
    check(this.lib.dnnl_gemm_bf16bf16f32(...gemmArgs(...args)), "bf16 gemm");
  }

  /** A Gemm that rounds both operands of every product (op(A) m×k, op(B) k×n; k > 0). */
  gemm: Gemm = (tA, tB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc) => {
    if (m === 0 || n === 0) return;
    const ab = this.round(a, span(tA, m, k, lda), "a");
    const bb = this.round(b, span(tB, k, n, ldb), "b");
    this.product(tA, tB, m, n, k, alpha, ab, lda, bb, ldb, beta, c, ldc);
  };

  /**
   * A Gemm for many products over views of the arrays `shared`: each is rounded once, now, and
   * an operand lying inside one of them reads that copy at the same offset; any other operand
   * is rounded per product. Use it at once: the next `over` reuses the buffers.
   */
  over(shared: Float32Array[]): Gemm {
    const copies = shared.map((s, i) => ({ s, bf: this.round(s, s.length, `shared ${i}`) }));
    const bf16 = (x: Float32Array, len: number, slot: string): Uint16Array => {
      for (const { s, bf } of copies) {
        const off = (x.byteOffset - s.byteOffset) / 4;
        if (x.buffer === s.buffer && off >= 0 && off + len <= s.length) {
          return bf.subarray(off, off + len);
        }
      }
      return this.round(x, len, slot);
    };
    return (tA, tB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc) => {
      if (m === 0 || n === 0) return;
      const ab = bf16(a, span(tA, m, k, lda), "a");
      const bb = bf16(b, span(tB, k, n, ldb), "b");
      this.product(tA, tB, m, n, k, alpha, ab, lda, bb, ldb, beta, c, ldc);
    };
  }
}

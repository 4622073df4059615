/**
 * Element-wise Add and Multiply of large float32 tensors as one oneDNN binary primitive
 * (multi-threaded, vectorised) instead of elementwise.ts's single-threaded JS loop: under a
 * gradient tfjs-core runs a ReLU convolution unfused (Conv2D, then Add for the bias) and ReLU's
 * gradient as Step then Multiply, and BatchNorm's gradient multiplies whole activations too —
 * ~1–2 ns per element in JS. A float32 sum or product is rounded once either way (the JS loop
 * computes in float64 and rounds to float32, exact for one operation), so the results are the
 * same bits, NaN and infinities included.
 */
import {
  ARG_DST,
  ARG_SRC,
  ARG_SRC_1,
  BINARY_ADD,
  BINARY_MUL,
  check,
  type Lib,
  type MakePrim,
  md,
  offHeap,
  OP_BYTES,
  type Prim,
  primitiveDesc,
  type Ptr,
} from "./dnnl_ffi.ts";

export { BINARY_ADD, BINARY_MUL };

/** How the second operand lines up with the first: same shape, one row broadcast, one value. */
export type Broadcast = "same" | "row" | "scalar";

/** r = a ∘ b for a [rows, cols] and b as `b` says; oneDNN's binary algorithm `alg`. */
export function binaryPrim(
  lib: Lib,
  engine: Ptr,
  make: MakePrim,
  alg: number,
  rows: number,
  cols: number,
  b: Broadcast,
): Prim {
  const a = md(lib, [rows, cols], [cols, 1]);
  const bCols = b === "scalar" ? 1 : cols;
  const bm = b === "same" ? a : md(lib, [1, bCols], [bCols, 1]);
  const desc = new Uint8Array(offHeap(OP_BYTES));
  check(lib.dnnl_binary_desc_init(desc, alg, a, bm, a), "binary desc");
  const pd = primitiveDesc(lib, engine, desc, null);
  const p = (m: Uint8Array) => Deno.UnsafePointer.of(m);
  return make(pd, [ARG_SRC, ARG_SRC_1, ARG_DST], [p(a), p(bm), p(a)]);
}

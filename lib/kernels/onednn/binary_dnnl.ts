/**
 * Element-wise Add and Multiply of large float32 tensors as one oneDNN binary primitive
 * (multi-threaded, vectorised) instead of elementwise.ts's single-threaded JS loop: under a
 * gradient tfjs-core runs a ReLU convolution unfused (Conv2D, then Add for the bias) and ReLU's
 * gradient as Step then Multiply, and BatchNorm's gradient multiplies whole activations too —
 * ~1–2 ns per element in JS. A float32 sum or product is rounded once either way (the JS loop
 * computes in float64 and rounds to float32, exact for one operation), so the results are the
 * same bits, NaN and infinities included. Also here: the post-op chains Adam's passes use
 * (adam_dnnl.ts) and large Relu and Step (`ReluPrims`).
 */
import {
  ARG_DST,
  ARG_SRC,
  ARG_SRC_1,
  BINARY_GT,
  BINARY_MAX,
  BINARY_NE,
  check,
  ELTWISE_LINEAR,
  ELTWISE_SQRT,
  f32,
  type Lib,
  type MakePrim,
  md,
  offHeap,
  OP_BYTES,
  type Prim,
  primitiveDesc,
  type Ptr,
  ptrOf,
  ptrOut,
  type Run,
} from "./dnnl_ffi.ts";

/** One post-op: eltwise (algorithm, alpha, beta), binary (algorithm, src1), or sum (scale). */
export type PostOp = ["eltwise", number, number, number] | ["binary", number, Uint8Array] | [
  "sum",
  number,
];

/**
 * A binary primitive src0 ∘ src1 → dst (dst laid out as src0) followed by the post-op chain
 * `ops`; `args` are its execution arguments with their descriptors, in the order it runs with.
 */
export function binaryWithPostOps(
  lib: Lib,
  engine: Ptr,
  make: MakePrim,
  alg: number,
  src0: Uint8Array,
  src1: Uint8Array,
  ops: PostOp[],
  args: [number, Uint8Array][],
): Prim {
  const list = ptrOut();
  check(lib.dnnl_post_ops_create(new Uint8Array(list.buffer)), "post-ops");
  for (const op of ops) {
    const status = op[0] === "eltwise"
      ? lib.dnnl_post_ops_append_eltwise(ptrOf(list), 1, op[1], op[2], op[3])
      : op[0] === "binary"
      ? lib.dnnl_post_ops_append_binary(ptrOf(list), op[1], op[2])
      : lib.dnnl_post_ops_append_sum(ptrOf(list), op[1]);
    check(status, `${op[0]} post-op`);
  }
  const attr = ptrOut();
  check(lib.dnnl_primitive_attr_create(new Uint8Array(attr.buffer)), "attr");
  check(lib.dnnl_primitive_attr_set_post_ops(ptrOf(attr), ptrOf(list)), "attr post-ops");
  const desc = new Uint8Array(offHeap(OP_BYTES));
  check(lib.dnnl_binary_desc_init(desc, alg, src0, src1, src0), "binary desc");
  const pd = primitiveDesc(lib, engine, desc, null, ptrOf(attr));
  return make(pd, args.map(([id]) => id), args.map(([, m]) => Deno.UnsafePointer.of(m)));
}

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
  return binaryWithPostOps(lib, engine, make, alg, a, bm, [], [
    [ARG_SRC, a],
    [ARG_SRC_1, bm],
    [ARG_DST, a],
  ]);
}

/**
 * ReLU and its gradient mask (Step with alpha 0) over n float32 values as binary primitives, with
 * tfjs-cpu's results for every input, NaN and signed zeros included (tested bit for bit; NaNs come
 * out quiet, as tfjs-cpu's float64 round trip leaves them):
 *
 *   relu(x) = max(0, x)·1 + 0   x86's max returns its second operand when either is NaN (so NaN
 *                               passes), and +0 for max(0, −0); "·1 + 0" turns −0 into +0
 *   step(x) = (x > 0) + sqrt(−(x ≠ x))   the second term is +0, or NaN exactly where x is NaN
 *
 * The zeros relu reads are an untouched allocation: the kernel maps its pages to the shared zero
 * page, so they cost no memory.
 */
export class ReluPrims {
  private relu: Prim;
  private nanTerm: Prim;
  private gt: Prim;
  private zeros: Float32Array;
  private zero = f32(1);

  constructor(lib: Lib, engine: Ptr, make: MakePrim, n: number) {
    const full = md(lib, [n], [1]), one = md(lib, [1], [1]);
    const binary = (alg: number, src1: Uint8Array, ops: PostOp[], sum = false) =>
      binaryWithPostOps(lib, engine, make, alg, full, src1, sum ? [...ops, ["sum", 1]] : ops, [
        [ARG_SRC, full],
        [ARG_SRC_1, src1],
        [ARG_DST, full],
      ]);
    this.zeros = f32(n);
    this.relu = binary(BINARY_MAX, full, [["eltwise", ELTWISE_LINEAR, 1, 0]]);
    this.nanTerm = binary(BINARY_NE, full, [
      ["eltwise", ELTWISE_LINEAR, -1, 0],
      ["eltwise", ELTWISE_SQRT, 0, 0],
    ]);
    this.gt = binary(BINARY_GT, one, [], true);
  }

  /** r = relu(x). */
  reluInto(run: Run, x: Float32Array, r: Float32Array): void {
    run(this.relu, [this.zeros, x, r]);
  }

  /** r = step(x): 1 where x > 0, 0 elsewhere, NaN where x is NaN. */
  stepInto(run: Run, x: Float32Array, r: Float32Array): void {
    run(this.nanTerm, [x, x, r]);
    run(this.gt, [x, this.zero, r]);
  }
}

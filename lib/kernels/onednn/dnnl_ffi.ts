/**
 * The oneDNN 2.x C API as dnnl.ts and its primitive builders bind it through Deno FFI: the
 * symbols, the constants of dnnl_types.h 2.x, and the helpers that keep what FFI reads or
 * writes in memory V8 never moves.
 */

// The numbers below are dnnl_types.h's (oneDNN 2.x), grouped by the enum they come from, each
// with its C name (ARG_X is DNNL_ARG_X where no other is given).

// dnnl_data_type_t, dnnl_format_tag_t, dnnl_engine_kind_t
export const F32 = 3; // dnnl_f32
export const BF16 = 2; // dnnl_bf16
const FORMAT_ANY = 1; // dnnl_format_tag_any: the primitive picks the layout
export const CPU = 1; // dnnl_cpu

// dnnl_prop_kind_t
export const FWD_TRAINING = 64; // dnnl_forward_training
export const BACKWARD = 128; // dnnl_backward: gradients of the data and of the parameters

// dnnl_alg_kind_t
export const CONV_DIRECT = 1; // dnnl_convolution_direct
export const CONV_WINOGRAD = 2; // dnnl_convolution_winograd
const ELTWISE_RELU = 0x1f; // dnnl_eltwise_relu
export const ELTWISE_SQRT = 0x6f; // dnnl_eltwise_sqrt
export const ELTWISE_LINEAR = 0x7f; // dnnl_eltwise_linear: alpha·x + beta
export const ELTWISE_POW = 0x20; // dnnl_eltwise_pow: alpha·x^beta
export const POOL_MAX = 0x1ff; // dnnl_pooling_max
export const BINARY_ADD = 0x1fff0; // dnnl_binary_add
export const BINARY_MUL = 0x1fff1; // dnnl_binary_mul
export const BINARY_MAX = 0x1fff2; // dnnl_binary_max
export const BINARY_GT = 0x1fff7; // dnnl_binary_gt
export const BINARY_NE = 0x1fffb; // dnnl_binary_ne

// dnnl_normalization_flags_t: separate per-channel gamma and beta (oneDNN ≥ 2.3)
export const USE_SCALE = 0x8; // dnnl_use_scale
export const USE_SHIFT = 0x10; // dnnl_use_shift

// dnnl_query_t: which memory descriptor of a primitive descriptor `dnnl_primitive_desc_query_md`
// returns
export const Q_SRC = 129; // dnnl_query_src_md
export const Q_DIFF_SRC = 130; // dnnl_query_diff_src_md
export const Q_WEIGHTS = 131; // dnnl_query_weights_md
export const Q_DIFF_WEIGHTS = 132; // dnnl_query_diff_weights_md
export const Q_DST = 133; // dnnl_query_dst_md
export const Q_DIFF_DST = 134; // dnnl_query_diff_dst_md
export const Q_WORKSPACE = 135; // dnnl_query_workspace_md

// DNNL_ARG_*: the execution-argument id of each memory a primitive runs on (the `arg` of each
// dnnl_exec_arg_t that dnnl.ts's `primitive` writes)
export const ARG_SRC = 1; // DNNL_ARG_SRC (= DNNL_ARG_SRC_0)
export const ARG_SRC_1 = 2; // a binary primitive's second source
export const ARG_DST = 17; // DNNL_ARG_DST (= DNNL_ARG_DST_0)
export const ARG_WEIGHTS = 33; // DNNL_ARG_WEIGHTS (= DNNL_ARG_WEIGHTS_0)
export const ARG_BIAS = 41;
export const ARG_MEAN = 49;
export const ARG_VARIANCE = 50;
export const ARG_SCALE = 51;
export const ARG_SHIFT = 52;
export const ARG_WORKSPACE = 64;
export const ARG_DIFF_SRC = 129; // DNNL_ARG_DIFF_SRC (= DNNL_ARG_DIFF_SRC_0)
export const ARG_DIFF_DST = 145; // DNNL_ARG_DIFF_DST (= DNNL_ARG_DIFF_DST_0)
export const ARG_DIFF_WEIGHTS = 161; // DNNL_ARG_DIFF_WEIGHTS (= DNNL_ARG_DIFF_WEIGHTS_0)
export const ARG_DIFF_SCALE = 255;
export const ARG_DIFF_SHIFT = 256;
const ARG_ATTR_MULTIPLE_POST_OP_BASE = 16384;

/** The execution argument of post-op `i`'s second operand (DNNL_ARG_ATTR_MULTIPLE_POST_OP(i)). */
export const postOpArg = (i: number) => (ARG_ATTR_MULTIPLE_POST_OP_BASE * (i + 1)) | ARG_SRC_1;

/** sizeof(dnnl_memory_desc_t) is ~700 bytes in 2.x; op descriptors hold 8 of them. */
export const MD_BYTES = 2048, OP_BYTES = 32768;

/**
 * oneDNN's BLAS-like GEMMs (`dnnl_sgemm`, `dnnl_gemm_bf16bf16f32`, the same in 2.x and 3.x):
 * transA, transB ('N' / 'T'), M, N, K, alpha, A, lda, B, ldb, beta, C, ldc — row-major.
 */
export const GEMM_PARAMETERS = [
  "u8",
  "u8",
  "i64",
  "i64",
  "i64",
  "f32",
  "buffer",
  "i64",
  "buffer",
  "i64",
  "f32",
  "buffer",
  "i64",
] as const;

/** A row-major GEMM's arguments in GEMM_PARAMETERS' order and types. */
export function gemmArgs(
  transA: boolean,
  transB: boolean,
  m: number,
  n: number,
  k: number,
  alpha: number,
  a: Float32Array | Uint16Array,
  lda: number,
  b: Float32Array | Uint16Array,
  ldb: number,
  beta: number,
  c: Float32Array,
  ldc: number,
) {
  const N = 78, T = 84; // 'N', 'T'
  const I = BigInt;
  return [
    transA ? T : N,
    transB ? T : N,
    I(m),
    I(n),
    I(k),
    alpha,
    a,
    I(lda),
    b,
    I(ldb),
    beta,
    c,
    I(ldc),
  ] as const;
}

export const SYMBOLS = {
  dnnl_version: { parameters: [], result: "pointer" },
  dnnl_engine_create: { parameters: ["buffer", "i32", "usize"], result: "i32" },
  dnnl_stream_create: { parameters: ["buffer", "pointer", "u32"], result: "i32" },
  dnnl_memory_desc_init_by_strides: {
    parameters: ["buffer", "i32", "buffer", "i32", "buffer"],
    result: "i32",
  },
  dnnl_memory_desc_init_by_tag: {
    parameters: ["buffer", "i32", "buffer", "i32", "i32"],
    result: "i32",
  },
  dnnl_convolution_forward_desc_init: {
    parameters: [
      "buffer",
      "i32",
      "i32",
      "buffer",
      "buffer",
      "buffer",
      "buffer",
      "buffer",
      "buffer",
      "buffer",
    ],
    result: "i32",
  },
  dnnl_convolution_backward_data_desc_init: {
    parameters: ["buffer", "i32", "buffer", "buffer", "buffer", "buffer", "buffer", "buffer"],
    result: "i32",
  },
  dnnl_convolution_backward_weights_desc_init: {
    parameters: [
      "buffer",
      "i32",
      "buffer",
      "buffer",
      "buffer",
      "buffer",
      "buffer",
      "buffer",
      "buffer",
    ],
    result: "i32",
  },
  dnnl_pooling_forward_desc_init: {
    parameters: [
      "buffer",
      "i32",
      "i32",
      "buffer",
      "buffer",
      "buffer",
      "buffer",
      "buffer",
      "buffer",
    ],
    result: "i32",
  },
  dnnl_pooling_backward_desc_init: {
    parameters: ["buffer", "i32", "buffer", "buffer", "buffer", "buffer", "buffer", "buffer"],
    result: "i32",
  },
  dnnl_binary_desc_init: {
    parameters: ["buffer", "i32", "buffer", "buffer", "buffer"],
    result: "i32",
  },
  dnnl_batch_normalization_forward_desc_init: {
    parameters: ["buffer", "i32", "buffer", "f32", "u32"],
    result: "i32",
  },
  dnnl_batch_normalization_backward_desc_init: {
    parameters: ["buffer", "i32", "buffer", "buffer", "f32", "u32"],
    result: "i32",
  },
  dnnl_post_ops_append_binary: { parameters: ["pointer", "i32", "buffer"], result: "i32" },
  dnnl_post_ops_append_sum: { parameters: ["pointer", "f32"], result: "i32" },
  dnnl_post_ops_create: { parameters: ["buffer"], result: "i32" },
  dnnl_post_ops_append_eltwise: {
    parameters: ["pointer", "f32", "i32", "f32", "f32"],
    result: "i32",
  },
  dnnl_primitive_attr_create: { parameters: ["buffer"], result: "i32" },
  dnnl_primitive_attr_set_post_ops: { parameters: ["pointer", "pointer"], result: "i32" },
  dnnl_primitive_desc_create: {
    parameters: ["buffer", "buffer", "pointer", "pointer", "pointer"],
    result: "i32",
  },
  dnnl_primitive_desc_query_md: { parameters: ["pointer", "i32", "i32"], result: "pointer" },
  dnnl_primitive_desc_query: { parameters: ["pointer", "i32", "i32", "buffer"], result: "i32" },
  dnnl_reorder_primitive_desc_create: {
    parameters: ["buffer", "pointer", "pointer", "pointer", "pointer", "pointer"],
    result: "i32",
  },
  dnnl_primitive_create: { parameters: ["buffer", "pointer"], result: "i32" },
  dnnl_memory_create: { parameters: ["buffer", "pointer", "pointer", "pointer"], result: "i32" },
  dnnl_memory_set_data_handle: { parameters: ["pointer", "pointer"], result: "i32" },
  dnnl_memory_desc_get_size: { parameters: ["pointer"], result: "usize" },
  dnnl_memory_desc_equal: { parameters: ["pointer", "pointer"], result: "i32" },
  dnnl_primitive_execute: { parameters: ["pointer", "pointer", "i32", "buffer"], result: "i32" },
  dnnl_stream_wait: { parameters: ["pointer"], result: "i32" },
  // row-major C = alpha·op(A)·op(B) + beta·C, A and B bf16, C float32
  dnnl_gemm_bf16bf16f32: { parameters: GEMM_PARAMETERS, result: "i32" },
} as const;

/** The bound symbols. */
export type Lib = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];
export type Ptr = Deno.PointerValue;

export function check(status: number, what: string): void {
  if (status !== 0) throw new Error(`oneDNN ${what} failed (status ${status})`);
}

/**
 * Everything FFI reads or writes lives in an explicit ArrayBuffer: V8 keeps typed arrays of
 * 64 bytes or less inside its moving heap, but an ArrayBuffer's store never moves.
 */
export function offHeap(bytes: number): ArrayBuffer {
  return new ArrayBuffer(Math.max(bytes, 8));
}

export function dims(...v: number[]): BigInt64Array {
  const d = new BigInt64Array(offHeap(8 * v.length));
  v.forEach((x, i) => (d[i] = BigInt(x)));
  return d;
}

export function ptrOut(): BigUint64Array {
  return new BigUint64Array(offHeap(8));
}

/**
 * A new zeroed float32 array FFI may write into (oneDNN's own buffers), starting on a 64-byte
 * boundary: a large ArrayBuffer starts 16 bytes past one, and oneDNN 2.6's Winograd weight
 * gradient uses aligned AVX-512 accesses — on such a buffer it crashed the process (SIGSEGV).
 */
export function f32(n: number): Float32Array {
  const a = new Float32Array(offHeap(4 * n + 64));
  const start = (64 - Number(Deno.UnsafePointer.value(Deno.UnsafePointer.of(a))) % 64) % 64 / 4;
  return a.subarray(start, start + n);
}

export function ptrOf(out: BigUint64Array): Ptr {
  return Deno.UnsafePointer.create(out[0]);
}

/** A memory descriptor over caller-owned bytes (kept alive with the primitive). */
export function md(lib: Lib, d: number[], strides: number[] | null, type = F32): Uint8Array {
  const m = new Uint8Array(offHeap(MD_BYTES));
  if (strides) {
    check(
      lib.dnnl_memory_desc_init_by_strides(m, d.length, dims(...d), type, dims(...strides)),
      "md",
    );
  } else {check(
      lib.dnnl_memory_desc_init_by_tag(m, d.length, dims(...d), type, FORMAT_ANY),
      "md any",
    );}
  return m;
}

/** A primitive descriptor for an initialised op descriptor (attr: post-ops, or null). */
export function primitiveDesc(
  lib: Lib,
  engine: Ptr,
  op: Uint8Array,
  hint: Ptr,
  attr: Ptr = null,
): Ptr {
  const out = ptrOut();
  check(lib.dnnl_primitive_desc_create(new Uint8Array(out.buffer), op, attr, engine, hint), "pd");
  return ptrOf(out);
}

const reluAttrs = new WeakMap<Lib, Ptr>();

/**
 * Primitive attributes with a ReLU post-op: the convolution applies max(y, 0) to its float32
 * accumulator before writing y, instead of a second pass over y (a ~0.9 ns/element JS loop:
 * ~23 ms of a VGG16 step). NaN stays NaN, as in tfjs's ReLU.
 */
export function reluAttr(lib: Lib): Ptr {
  let attr = reluAttrs.get(lib);
  if (attr === undefined) {
    const ops = ptrOut();
    check(lib.dnnl_post_ops_create(new Uint8Array(ops.buffer)), "post-ops");
    // 2.x: (post_ops, scale, alg, alpha, beta); alpha 0 = plain ReLU
    check(lib.dnnl_post_ops_append_eltwise(ptrOf(ops), 1, ELTWISE_RELU, 0, 0), "relu post-op");
    const a = ptrOut();
    check(lib.dnnl_primitive_attr_create(new Uint8Array(a.buffer)), "attr");
    check(lib.dnnl_primitive_attr_set_post_ops(ptrOf(a), ptrOf(ops)), "attr post-ops");
    attr = ptrOf(a);
    reluAttrs.set(lib, attr);
  }
  return attr;
}

/** A primitive and the memories it executes on (handles set per call). */
export interface Prim {
  prim: Ptr;
  args: Uint8Array;
  mems: Ptr[];
}

/** Floats in each region of SMALL: more than any array `stable` copies (under 64 floats). */
const REGION = 4096;

/**
 * Byte-stable home for small arrays: V8 may keep arrays under 64 bytes inside its movable
 * heap, so those are copied into one off-heap buffer before FFI reads them. Only inputs go
 * through it: what oneDNN writes is made with its own ArrayBuffer (`alloc`, `f32`).
 */
const SMALL = new Float32Array(new ArrayBuffer(8 * REGION * 4));

/**
 * The region of SMALL each kind of input is copied into. The inputs of one primitive call must
 * not share a region: a convolution's weights, copied before its x and bias, are still read by
 * the same call (`ConvPrims.convert` hands the copy itself to the primitive). Regions 2 and 7
 * are free.
 */
export const SLOT = {
  /** x: a convolution's, pooling's or BatchNorm's source (`stable`'s default). */
  src: 0,
  /** A convolution's bias. */
  bias: 1,
  /** A convolution's weights (reordered from there, or read there as they are). */
  weights: 3,
  /** dy: the gradient flowing back into a convolution, pooling or BatchNorm. */
  diffDst: 4,
  /** A GEMM operand before the reorder that rounds it to bf16 (gemm_bf16.ts). */
  gemmOperand: 5,
  /** A binary primitive's second operand (a row or one value). */
  src1: 6,
} as const;

/** `a`, or its copy in SMALL's region `slot` when V8 might move it (see SMALL). */
export function stable(a: Float32Array, slot: number = SLOT.src): Float32Array {
  if (a.byteLength >= 256) return a;
  const s = SMALL.subarray(slot * REGION, slot * REGION + a.length);
  s.set(a);
  return s;
}

export type MakePrim = (pd: Ptr, ids: number[], mds: Ptr[]) => Prim;
export type Run = (p: Prim, arrays: (Float32Array | null)[]) => void;

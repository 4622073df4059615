/**
 * The oneDNN 2.x C API as dnnl.ts and its primitive builders bind it through Deno FFI: the
 * symbols, the constants of dnnl_types.h 2.x, and the helpers that keep what FFI reads or
 * writes in memory V8 never moves.
 */
export const F32 = 3, BF16 = 2, FORMAT_ANY = 1, CPU = 1;
export const FWD_TRAINING = 64, CONV_DIRECT = 1, CONV_WINOGRAD = 2;
export const Q_SRC = 129, Q_DIFF_SRC = 130, Q_WEIGHTS = 131, Q_DIFF_WEIGHTS = 132, Q_DST = 133;
export const Q_DIFF_DST = 134, Q_WORKSPACE = 135;
export const POOL_MAX = 511, ARG_WORKSPACE = 64, ELTWISE_RELU = 0x1f;
export const ARG_SRC = 1, ARG_DST = 17, ARG_WEIGHTS = 33, ARG_BIAS = 41;
/** A binary primitive's second source (its first is ARG_SRC); binary algorithms. */
export const ARG_SRC_1 = 2, BINARY_ADD = 0x1fff0, BINARY_MUL = 0x1fff1;
export const ARG_DIFF_SRC = 129, ARG_DIFF_DST = 145, ARG_DIFF_WEIGHTS = 161;
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

/**
 * Byte-stable home for small arrays: V8 may keep arrays under 64 bytes inside its movable
 * heap, so those are copied into (and back out of) one off-heap buffer before FFI sees them.
 */
const SMALL = new Float32Array(new ArrayBuffer(8 * 4096 * 4));

/** Copies arrays V8 might move into the off-heap SMALL buffer (slot picks a 16 KB region). */
export function stable(a: Float32Array, slot = 0): Float32Array {
  if (a.byteLength >= 256) return a;
  const s = SMALL.subarray(slot * 4096, slot * 4096 + a.length);
  s.set(a);
  return s;
}

export type MakePrim = (pd: Ptr, ids: number[], mds: Ptr[]) => Prim;
export type Run = (p: Prim, arrays: (Float32Array | null)[]) => void;

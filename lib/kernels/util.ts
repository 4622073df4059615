/** Small helpers every fast kernel uses to read inputs and make outputs on the CPU backend. */
import type * as tf from "@tensorflow/tfjs";
import type { MathBackendCPU } from "@tensorflow/tfjs-backend-cpu";

/**
 * A row-major single-precision GEMM: C = alpha·op(A)·op(B) + beta·C, where op(A) is m×k, op(B) is
 * k×n and C is m×n. The arrays may be subarrays: FFI passes the view's own start.
 */
export type Gemm = (
  transA: boolean,
  transB: boolean,
  m: number,
  n: number,
  k: number,
  alpha: number,
  a: Float32Array,
  lda: number,
  b: Float32Array,
  ldb: number,
  beta: number,
  c: Float32Array,
  ldc: number,
) => void;

/** A kernel's arguments, as tfjs passes them. */
export interface KernelArgs {
  // Optional inputs (bias, preluActivationWeights) are absent at run time when unused.
  inputs: { [name: string]: tf.TensorInfo };
  backend: MathBackendCPU;
  // deno-lint-ignore no-explicit-any
  attrs?: any;
}

/**
 * A fast kernel returns its result, or null when the call is outside what it handles
 * (other dtype, layout or dilation); the caller then runs tfjs's own cpu kernel.
 */
export type FastKernel = (args: KernelArgs) => tf.TensorInfo | tf.TensorInfo[] | null;

/** The float32 values behind a tensor, read the way tfjs-backend-cpu's kernels read them. */
export function f32(backend: MathBackendCPU, t: tf.TensorInfo): Float32Array {
  return backend.data.get(t.dataId).values as Float32Array;
}

/** Wraps `values` as a new float32 tensor owned by `backend`. */
export function out(backend: MathBackendCPU, shape: number[], values: Float32Array): tf.TensorInfo {
  return backend.makeTensorInfo(shape, "float32", values);
}

/** Whether every tensor given is float32 (the fast kernels handle nothing else). */
export function allF32(...ts: (tf.TensorInfo | undefined)[]): boolean {
  return ts.every((t) => t === undefined || t.dtype === "float32");
}

/**
 * Size of a tensor that only varies along its last axis (e.g. [F] or [1,1,F]), -1 when it
 * has any other non-unit axis, null when there is no tensor (an absent optional input). Such
 * tensors broadcast row-wise onto a [rows, F] result.
 */
export function lastAxisSize(t: tf.TensorInfo | undefined): number | null {
  if (t === undefined) return null;
  const s = t.shape;
  for (let i = 0; i < s.length - 1; i++) if (s[i] !== 1) return -1;
  return s.length === 0 ? 1 : s[s.length - 1];
}

let scratchBuf = new Float32Array(0);

/**
 * A reusable work buffer of at least `n` floats (contents undefined). One per process: kernels
 * run one at a time, and reusing it spares a large zero-filled allocation per call.
 */
export function scratch(n: number): Float32Array {
  if (scratchBuf.length < n) {
    scratchBuf = new Float32Array(Math.max(n, Math.ceil(scratchBuf.length * 1.5)));
  }
  return scratchBuf;
}

let flags: string | undefined;
/** Whether /proc/cpuinfo lists `flag` (e.g. "avx512f"); false where there is no such file. */
export function cpuHasFlag(flag: string): boolean {
  if (flags === undefined) {
    try {
      flags = Deno.readTextFileSync("/proc/cpuinfo").match(/^flags\s*:(.*)$/m)?.[1] ?? "";
    } catch {
      flags = "";
    }
  }
  return flags.split(/\s+/).includes(flag);
}

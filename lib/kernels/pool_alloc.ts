/**
 * Recycles the large output arrays of our kernels. A fresh 100 MB Float32Array costs more than
 * the GEMM that fills it (every page faults on first touch, measured 2× slower dense-layer
 * gradients), and training makes the same shapes every step. PyTorch's caching allocator
 * does the same job.
 *
 * Safety: only arrays `alloc` made are recycled, only when the backend frees their tensor,
 * and never once tfjs has handed them out (`read`/`readSync` return the stored array itself,
 * so such an array may live on in user code).
 */
import { MathBackendCPU } from "@tensorflow/tfjs-backend-cpu";
import { envVar, type Knob } from "../machine/env.ts";

/**
 * Arrays smaller than this (in floats; env CPU_FAST_POOL_MIN for experiments) are not pooled.
 * 64K floats = 256 KB, above which malloc maps fresh pages that fault in on first touch:
 * pooling from there (VGG16's 4×4 and 2×2 maps, its dense activations) instead of from 4 MB
 * trained VGG16 2–6% faster in float32 and 0.5–5% in mixed_bfloat16 (2-core Zen 5, three
 * alternating rounds each).
 */
export const MIN_FLOATS = Number(envOr("CPU_FAST_POOL_MIN", String(1 << 16)));
/** Upper bound on bytes parked in the pool. */
const MAX_POOLED_BYTES = 1536 * 2 ** 20;
/** Arrays kept per length (env CPU_FAST_POOL_PER_SIZE for experiments). */
const MAX_PER_SIZE = Number(envOr("CPU_FAST_POOL_PER_SIZE", "4"));

function envOr(name: Knob, dflt: string): string {
  return envVar(name) ?? dflt;
}

const owned = new WeakSet<Float32Array>();
const pool = new Map<number, Float32Array[]>();
let pooledBytes = 0;

/**
 * A float32 array of length n backed by its own ArrayBuffer (so FFI may write into it). Its
 * contents are undefined when recycled: callers must overwrite every element, or pass
 * `zero` to get zeros.
 */
export function alloc(n: number, zero = false): Float32Array {
  if (n >= MIN_FLOATS) {
    const a = pool.get(n)?.pop();
    if (a) {
      pooledBytes -= a.byteLength;
      if (zero) a.fill(0);
      return a;
    }
  }
  const a = new Float32Array(new ArrayBuffer(4 * Math.max(n, 2)), 0, n);
  if (n >= MIN_FLOATS) owned.add(a);
  return a;
}

function recycle(values: unknown): void {
  if (!(values instanceof Float32Array) || !owned.has(values)) return;
  if (pooledBytes + values.byteLength > MAX_POOLED_BYTES) return;
  const list = pool.get(values.length) ?? [];
  if (list.length >= MAX_PER_SIZE) return;
  list.push(values);
  pool.set(values.length, list);
  pooledBytes += values.byteLength;
}

/** Drops every pooled array (memory goes back to the garbage collector). */
export function clearPool(): void {
  pool.clear();
  pooledBytes = 0;
}

/** tfjs's CPU backend, returning freed kernel outputs to the pool. */
export class PooledCpuBackend extends MathBackendCPU {
  override disposeData(dataId: object, force = false): boolean {
    const entry = this.data.has(dataId) ? this.data.get(dataId) : undefined;
    const freed = super.disposeData(dataId, force);
    if (freed && entry && !this.data.has(dataId)) recycle(entry.values);
    return freed;
  }

  override readSync(dataId: object): ReturnType<MathBackendCPU["readSync"]> {
    // handed out: user code may keep it (or a view of its buffer), so it is never reused
    const stored = this.data.has(dataId) ? this.data.get(dataId).values : undefined;
    if (stored instanceof Float32Array) owned.delete(stored);
    return super.readSync(dataId);
  }

  override dispose(): void {
    clearPool();
    super.dispose();
  }
}

/**
 * The kernels' output pool (lib/kernels/pool_alloc.ts): an array comes back only after the
 * backend frees its tensor, never once tfjs has handed it out, and only from the pooled sizes.
 */
import assert from "node:assert/strict";
import { alloc, clearPool, MIN_FLOATS, PooledCpuBackend } from "../lib/kernels/pool_alloc.ts";

/** An array from `alloc` stored as a tensor of `backend`, as a kernel's output is. */
function output(backend: PooledCpuBackend, n: number) {
  const values = alloc(n);
  values.fill(7);
  const { dataId } = backend.makeTensorInfo([n], "float32", values);
  return { values, dataId };
}

Deno.test("a freed kernel output of a pooled size is handed out again, zeroed when asked", () => {
  const backend = new PooledCpuBackend();
  try {
    const n = MIN_FLOATS;
    const a = output(backend, n);
    backend.disposeData(a.dataId);
    const again = alloc(n, true);
    assert.equal(again, a.values, "the freed array was not reused");
    assert.ok(again.every((v) => v === 0), "zero was asked for");
    // another length does not take it
    const b = output(backend, n + 16);
    backend.disposeData(b.dataId);
    assert.notEqual(alloc(n), b.values);
  } finally {
    backend.dispose();
  }
});

Deno.test("an output tfjs has handed out (readSync) is never reused; small ones are not pooled", () => {
  const backend = new PooledCpuBackend();
  try {
    const read = output(backend, MIN_FLOATS);
    const seen = backend.readSync(read.dataId);
    backend.disposeData(read.dataId);
    const next = alloc(MIN_FLOATS);
    assert.notEqual(next, read.values, "an array user code may hold was reused");
    assert.equal((seen as Float32Array)[0], 7);
    const small = output(backend, MIN_FLOATS - 1);
    backend.disposeData(small.dataId);
    assert.notEqual(alloc(MIN_FLOATS - 1), small.values);
  } finally {
    clearPool();
    backend.dispose();
  }
});

/**
 * Watches the webgpu backend while code runs: how many times data is read back from the GPU,
 * and, per kernel, whether its outputs were computed on the GPU or on the host (tfjs's CPU
 * forwarding, or a kernel that reads its inputs back and computes in JavaScript). The tests
 * and bench/gpu_check.ts use it to show that a training step stays on the GPU.
 */
import * as tf from "@tensorflow/tfjs";

/** What `auditWebGpu` saw. */
export interface WebGpuAudit {
  /** Reads of tensor data from the GPU (`read`, `readSync`, `readToGPU` excluded: it stays). */
  reads: number;
  /** Buffer downloads (`getBufferData`): one per read of data that lived on the GPU. */
  downloads: number;
  /** Kernel name → calls whose outputs were computed on the GPU / on the host. */
  kernels: Map<string, { gpu: number; host: number }>;
}

interface TensorEntry {
  resource: unknown;
  values: unknown;
}

interface WatchedBackend {
  tensorMap: { get(id: object): TensorEntry | undefined };
  read(id: object): Promise<unknown>;
  readSync(id: object): unknown;
  getBufferData(buffer: unknown): Promise<unknown>;
}

/**
 * Runs `fn` with the current webgpu backend watched; returns what `fn` returned and the audit.
 * Kernels are wrapped for the call only and put back afterwards.
 */
export async function auditWebGpu<T>(
  fn: () => Promise<T>,
): Promise<{ result: T; audit: WebGpuAudit }> {
  if (tf.getBackend() !== "webgpu") throw new Error("auditWebGpu needs the webgpu backend");
  const backend = tf.backend() as unknown as WatchedBackend;
  const audit: WebGpuAudit = { reads: 0, downloads: 0, kernels: new Map() };
  const own = { read: backend.read, readSync: backend.readSync, get: backend.getBufferData };
  backend.read = function (id) {
    audit.reads++;
    return own.read.call(this, id);
  };
  backend.readSync = function (id) {
    audit.reads++;
    return own.readSync.call(this, id);
  };
  backend.getBufferData = function (buffer) {
    audit.downloads++;
    return own.get.call(this, buffer);
  };
  const originals = tf.getKernelsForBackend("webgpu");
  for (const k of originals) {
    tf.unregisterKernel(k.kernelName, "webgpu");
    tf.registerKernel({ ...k, kernelFunc: (args) => watch(k, args, backend, audit) });
  }
  try {
    return { result: await fn(), audit };
  } finally {
    for (const k of originals) {
      tf.unregisterKernel(k.kernelName, "webgpu");
      tf.registerKernel(k);
    }
    backend.read = own.read;
    backend.readSync = own.readSync;
    backend.getBufferData = own.get;
  }
}

/**
 * Runs one kernel and records where its new outputs live: a GPU buffer, or host values only
 * (computed on the host). Outputs that share an input's data (Reshape, Identity) are views,
 * not computations, and are not counted.
 */
function watch(
  k: tf.KernelConfig,
  args: Parameters<tf.KernelFunc>[0],
  backend: WatchedBackend,
  audit: WebGpuAudit,
): ReturnType<tf.KernelFunc> {
  const out = k.kernelFunc(args);
  const given = Object.values(args.inputs) as (tf.TensorInfo | undefined | null)[];
  const inputs = new Set(given.filter((t) => t != null).map((t) => t!.dataId));
  const outs = (Array.isArray(out) ? out : [out]).filter((t) => !inputs.has(t.dataId));
  if (outs.length === 0) return out;
  const onHost = outs.some((t) => {
    const e = backend.tensorMap.get(t.dataId);
    return e !== undefined && e.resource == null && e.values != null;
  });
  const row = audit.kernels.get(k.kernelName) ?? { gpu: 0, host: 0 };
  if (onHost) row.host++;
  else row.gpu++;
  audit.kernels.set(k.kernelName, row);
  return out;
}

/** "Add 12 · Conv2D 3 · … ; on the host: Cast 2" — the audit's kernels in one line. */
export function kernelLine(audit: WebGpuAudit): string {
  const rows = [...audit.kernels].sort((a, b) => a[0].localeCompare(b[0]));
  const gpu = rows.filter(([, r]) => r.gpu).map(([n, r]) => `${n} ${r.gpu}`).join(" · ");
  const host = rows.filter(([, r]) => r.host).map(([n, r]) => `${n} ${r.host}`).join(" · ");
  return `on the GPU: ${gpu || "none"}; on the host: ${host || "none"}`;
}

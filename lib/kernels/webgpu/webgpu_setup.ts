/**
 * Puts tfjs's webgpu backend in shape for training (lib/machine/backend.ts calls `setupWebGpu` when it
 * starts webgpu):
 *
 * - no CPU forwarding (`WEBGPU_CPU_FORWARD` false): tfjs runs small ops whose inputs are still
 *   on the host on the CPU; in a training step that splits the step between two devices, so
 *   every kernel of a step runs on the GPU instead;
 * - faster convolution gradients than tfjs's one-thread-per-output loops: the filter gradient
 *   as a tiled GEMM (webgpu_conv_grad.ts), the input gradient as tfjs's matmul-based program on
 *   large maps (`ConvGradChoice`; `WEBGPU_CONV_GRAD=tfjs` keeps tfjs's defaults);
 * - a buffer pool that forgets sizes no longer used: tfjs keeps every freed GPU buffer, by size,
 *   for ever, so each new shape (a partial last batch, an evaluation batch, another model in the
 *   same notebook) adds buffers that stay allocated. `trimGpuPool` (called by `fit` after every
 *   epoch) frees the pooled buffers of sizes not asked for since the last trim.
 */
import * as tf from "@tensorflow/tfjs";
import type { WebGPUBackend } from "@tensorflow/tfjs-backend-webgpu";
import { envVar } from "../../machine/env.ts";
import { convGradKernels } from "./webgpu_conv_grad.ts";

/**
 * Which convolution gradients run: "study" (the default) our GEMM for the filter gradient and
 * tfjs's input gradient, its matmul program on maps of 16×16 and more, its direct one below
 * (each the fastest there on the software adapter: bench/README.md); "gemm" ours for both;
 * "tfjs" tfjs's defaults (one thread per output for both). `WEBGPU_CONV_GRAD` picks one.
 */
export type ConvGradChoice = "study" | "gemm" | "tfjs";
const CONV_GRAD_CHOICES: readonly ConvGradChoice[] = ["study", "gemm", "tfjs"];

/** What `setupWebGpu` put in place, for the backend line and tests. */
export interface WebGpuSetup {
  convGrad: ConvGradChoice;
  cpuForward: boolean;
}

/** The choice `WEBGPU_CONV_GRAD` asks for (default "study"); checked. */
export function convGradChoice(value = envVar("WEBGPU_CONV_GRAD")): ConvGradChoice {
  const v = value ?? "study";
  if (!(CONV_GRAD_CHOICES as readonly string[]).includes(v)) {
    throw new Error(
      `WEBGPU_CONV_GRAD=${v} is not one of ${CONV_GRAD_CHOICES.join(", ")}: set one or unset it`,
    );
  }
  return v as ConvGradChoice;
}

/** tfjs's buffer pool, as far as trimming needs it. */
interface BufferPool {
  freeBuffers: Map<string, GPUBuffer[]>;
  numFreeBuffers: number;
  numBytesAllocated: number;
  acquireBuffer(size: number, usage: number, mapped?: boolean, reuse?: boolean): GPUBuffer;
}

/** tfjs's own convolution-gradient kernels, kept to run NCHW and for WEBGPU_CONV_GRAD=tfjs. */
let tfjsKernels: { filter: tf.KernelConfig; input: tf.KernelConfig } | null = null;

/** Pool keys asked for since the last trim, per pool. */
const asked = new WeakMap<BufferPool, Set<string>>();

/** Configures the started webgpu backend (see the module's comment); safe to call again. */
export function setupWebGpu(convGrad: ConvGradChoice = convGradChoice()): WebGpuSetup {
  tf.env().set("WEBGPU_CPU_FORWARD", false);
  useConvGrad(convGrad);
  const backend = tf.findBackend("webgpu") as unknown as WebGPUBackend | null;
  if (backend) trackPool(backend);
  return { convGrad, cpuForward: false };
}

/** Puts the chosen convolution-gradient kernels in place (see `ConvGradChoice`). */
export function useConvGrad(which: ConvGradChoice): void {
  tfjsKernels ??= {
    filter: tf.getKernel(tf.Conv2DBackpropFilter, "webgpu")!,
    input: tf.getKernel(tf.Conv2DBackpropInput, "webgpu")!,
  };
  const [filter, input] = convGradKernels({
    filter: tfjsKernels.filter.kernelFunc,
    input: tfjsKernels.input.kernelFunc,
  });
  const kernels = which === "gemm"
    ? [filter, input]
    : which === "study"
    ? [filter, bySize(tfjsKernels.input)]
    : [tfjsKernels.filter, tfjsKernels.input];
  tf.env().set("WEBGPU_USE_NAIVE_CONV2D_TRANSPOSE", which === "tfjs");
  for (const k of kernels) {
    if (tf.getKernel(k.kernelName, "webgpu")) tf.unregisterKernel(k.kernelName, "webgpu");
    tf.registerKernel(k);
  }
}

/** Input maps from this many pixels on take tfjs's matmul input gradient ("study"). */
const MATMUL_MIN_PIXELS = 16 * 16;

/**
 * tfjs's input gradient with its matmul program on maps of at least 16×16 and its direct one
 * (one thread per input element) below, where the matmul's tiles are mostly empty: each was the
 * faster there on the software adapter (VGG16's layers, bench/README.md). tfjs reads the flag
 * at each call.
 */
function bySize(k: tf.KernelConfig): tf.KernelConfig {
  return {
    ...k,
    kernelFunc: (args) => {
      const { inputShape, dataFormat } = args.attrs as { inputShape: number[]; dataFormat: string };
      const pixels = dataFormat === "NCHW" ? 0 : inputShape[1] * inputShape[2];
      tf.env().set("WEBGPU_USE_NAIVE_CONV2D_TRANSPOSE", pixels < MATMUL_MIN_PIXELS);
      return k.kernelFunc(args);
    },
  };
}

/** Starts recording which buffer sizes the backend's pool is asked for. */
function trackPool(backend: WebGPUBackend): void {
  const pool = (backend as unknown as { bufferManager: BufferPool }).bufferManager;
  if (asked.has(pool)) return;
  const keys = new Set<string>();
  asked.set(pool, keys);
  const acquire = pool.acquireBuffer.bind(pool);
  pool.acquireBuffer = (size, usage, mapped, reuse) => {
    keys.add(`${size}_${usage}`); // tfjs's pool key
    return acquire(size, usage, mapped, reuse);
  };
}

/**
 * Frees the webgpu backend's pooled (unused) buffers of every size not asked for since the last
 * trim; returns the bytes freed. Does nothing on other backends.
 */
export function trimGpuPool(): number {
  if (tf.getBackend() !== "webgpu") return 0;
  const backend = tf.backend() as unknown as Encoder & { bufferManager: BufferPool };
  const pool = backend.bufferManager;
  const keys = asked.get(pool);
  if (!keys) return 0;
  // Submit what is recorded first: a freed buffer is then used by submitted work at most,
  // which WebGPU lets finish before the memory goes.
  if (backend.commandEncoder) {
    backend.endComputePassEncoder();
    backend.submitQueue();
  }
  let freed = 0;
  for (const [key, buffers] of pool.freeBuffers) {
    if (keys.has(key)) continue;
    for (const b of buffers) {
      freed += b.size;
      b.destroy();
    }
    pool.numBytesAllocated -= buffers.reduce((s, b) => s + b.size, 0);
    pool.numFreeBuffers -= buffers.length;
    // The key stays (empty): tfjs's pool stops taking buffers back once it has no keys at all.
    buffers.length = 0;
  }
  keys.clear();
  return freed;
}

/** The backend's command recording, as far as `trimGpuPool` needs it. */
interface Encoder {
  commandEncoder: GPUCommandEncoder | null;
  endComputePassEncoder(): void;
  submitQueue(): void;
}

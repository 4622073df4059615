/**
 * The CPU fast path: a tfjs backend "cpu-fast" that is tfjs's own cpu backend with the
 * training-heavy kernels replaced, all through Deno FFI to libraries found at run time:
 * convolutions and max-pooling on oneDNN (libdnnl 2.x, what PyTorch's CPU convolutions use)
 * or else im2col + GEMM; matmuls on OpenBLAS's sgemm (oneDNN's where OpenBLAS runs without
 * AVX-512 on an AVX-512 CPU; else a pure-JS GEMM); element-wise ops as tight JS loops (large
 * Add, Multiply, Relu and Step on oneDNN), large bias sums as sgemv; the Adam update
 * (`fusedAdam`) in place, on oneDNN for large weights; training-mode BatchNorm as oneDNN's
 * primitives; under mixed_bfloat16, convolutions and matmuls in bf16. lib/README.md maps the
 * modules that do each part.
 *
 * ```ts
 * const { available, why } = await registerFastCpuBackend();
 * if (available) await tf.setBackend("cpu-fast");
 * ```
 */
import * as tf from "@tensorflow/tfjs";
import {
  conv2D,
  conv2DBackpropFilter,
  conv2DBackpropInput,
  convDnnl,
  describeConv,
  fusedConv2D,
  nativeBf16,
  setConvBf16,
} from "./js/conv.ts";
import { getGemm } from "./blas/gemm.ts";
import { batchMatMulKernel, fusedMatMulKernel, setMatmulBf16 } from "./js/matmul.ts";
import { maxPool, maxPoolGrad } from "./js/pool.ts";
import { PooledCpuBackend } from "./pool_alloc.ts";
import { BINARY_KERNELS, UNARY_KERNELS } from "./js/elementwise.ts";
import { BATCHNORM_KERNELS } from "./js/batchnorm.ts";
import { installFusedBatchNorm } from "./js/batchnorm_layer.ts";
import { installFusedConvLayer } from "./js/conv_layer.ts";
import { padV2 } from "./js/pad.ts";
import type { FastKernel, KernelArgs } from "./util.ts";

/** The backend's registered name. */
export const FAST_CPU = "cpu-fast";

/** Our kernels by tfjs kernel name; everything else is tfjs-cpu's own. */
export const FAST_KERNELS: Record<string, FastKernel> = {
  Conv2D: conv2D,
  FusedConv2D: fusedConv2D,
  Conv2DBackpropInput: conv2DBackpropInput,
  Conv2DBackpropFilter: conv2DBackpropFilter,
  BatchMatMul: batchMatMulKernel,
  _FusedMatMul: fusedMatMulKernel,
  MaxPool: maxPool,
  MaxPoolGrad: maxPoolGrad,
  PadV2: padV2,
  ...BATCHNORM_KERNELS,
  ...BINARY_KERNELS,
  ...UNARY_KERNELS,
};

let result: { name: string; available: boolean; why: string } | undefined;

/**
 * Registers the "cpu-fast" backend (idempotent) and says what it runs on. It is available
 * whenever tfjs-backend-cpu is: without OpenBLAS its GEMM is pure JS (slower, still correct),
 * and `why` says so. Registration does not switch backends; call `tf.setBackend("cpu-fast")`.
 */
export function registerFastCpuBackend(): Promise<
  { name: string; available: boolean; why: string }
> {
  if (result) return Promise.resolve(result);
  try {
    const base = tf.getKernelsForBackend("cpu");
    if (base.length === 0) throw new Error("tfjs-backend-cpu registered no kernels");
    // Priority 0: registering must not change which backend tfjs picks by default.
    tf.registerBackend(FAST_CPU, () => new PooledCpuBackend(), 0);
    for (const config of base) {
      const fast = FAST_KERNELS[config.kernelName];
      const kernelFunc = fast === undefined
        ? config.kernelFunc
        : withFallback(config.kernelName, fast, config.kernelFunc);
      tf.registerKernel({ ...config, backendName: FAST_CPU, kernelFunc });
    }
    installFusedBatchNorm(() => tf.getBackend() === FAST_CPU);
    installFusedConvLayer(() => tf.getBackend() === FAST_CPU);
    const gemm = getGemm();
    result = {
      name: FAST_CPU,
      available: true,
      why: `${gemm.describe}; ${describeConv()}; ${
        Object.keys(FAST_KERNELS).length
      } kernels replaced`,
    };
  } catch (e) {
    result = { name: FAST_CPU, available: false, why: `cannot register: ${(e as Error).message}` };
  }
  return Promise.resolve(result);
}

/** How often each fast kernel declined a call and tfjs-cpu's ran instead (for tests, bench). */
export const fallbackCounts: Record<string, number> = {};

/** Runs the fast kernel, or tfjs-cpu's kernel for the cases the fast one declines. */
function withFallback(name: string, fast: FastKernel, reference: tf.KernelFunc): tf.KernelFunc {
  return (args) => {
    const r = fast(args as unknown as KernelArgs);
    if (r !== null) return r;
    fallbackCounts[name] = (fallbackCounts[name] ?? 0) + 1;
    return reference(args);
  };
}

/**
 * Switches cpu-fast between float32 and mixed_bfloat16 (Keras's policy: bf16 compute, float32
 * weights, optimizer state and loss). Returns the precision now in force and, when it is not
 * the one asked for or is partial, why. Convolutions and matmuls compute in bf16 (float32
 * accumulation); element-wise ops, pooling, the loss and the optimizer stay float32.
 */
export function setFastPrecision(
  wanted: "float32" | "mixed_bfloat16",
): { precision: "float32" | "mixed_bfloat16"; note: string } {
  if (wanted === "float32") {
    setConvBf16(false);
    setMatmulBf16(null);
    return { precision: "float32", note: "" };
  }
  if (!nativeBf16()) {
    return {
      precision: "float32",
      note: "mixed_bfloat16 asked, but this CPU has no native bf16 (avx512_bf16 / amx_bf16): " +
        "training in float32",
    };
  }
  const d = convDnnl();
  if (d === null || !setConvBf16(true)) {
    return { precision: "float32", note: "mixed_bfloat16 needs oneDNN 2.x: training in float32" };
  }
  setMatmulBf16(d.bf16Gemm().gemm);
  return { precision: "mixed_bfloat16", note: "bf16 convolutions and matmuls (oneDNN)" };
}

export { fusedAdam } from "./js/adam.ts";

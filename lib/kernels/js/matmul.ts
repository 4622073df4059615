/** BatchMatMul and _FusedMatMul (dense layers and their gradients) on the GEMM. */
import * as tf from "@tensorflow/tfjs";
import { biasActivation, epilogueSupported, type FusedActivation } from "./activation.ts";
import { type Gemm, getGemm } from "../blas/gemm.ts";
import { alloc } from "../pool_alloc.ts";
import { allF32, f32, type KernelArgs, lastAxisSize, out } from "../util.ts";

/** mixed_bfloat16's GEMM (bf16 inputs, float32 accumulation and output); null in float32. */
let bf16Gemm: Gemm | null = null;

/** Sets (or, with null, clears) the GEMM matmuls use under mixed_bfloat16 (see mod.ts). */
export function setMatmulBf16(gemm: Gemm | null): void {
  bf16Gemm = gemm;
}

/**
 * Runs op(a)·op(b) for every batch entry and returns [values, outShape, rows, cols], or null
 * for batch broadcasting beyond "equal, or one side has a single matrix".
 */
function batchMatMul(
  { inputs, backend, attrs }: KernelArgs,
): [Float32Array, number[], number, number] | null {
  const { a, b } = inputs;
  if (!allF32(a, b) || a.shape.length < 2 || b.shape.length < 2) return null;
  const tA = !!attrs.transposeA, tB = !!attrs.transposeB;
  const ra = a.shape.length, rb = b.shape.length;
  const [aR, aC] = a.shape.slice(ra - 2), [bR, bC] = b.shape.slice(rb - 2);
  const m = tA ? aC : aR, k = tA ? aR : aC, n = tB ? bR : bC;
  if ((tB ? bC : bR) !== k) return null; // let tfjs raise its own error
  const batchA = a.shape.slice(0, ra - 2), batchB = b.shape.slice(0, rb - 2);
  const nA = tf.util.sizeFromShape(batchA), nB = tf.util.sizeFromShape(batchB);
  if (nA !== nB && nA !== 1 && nB !== 1) return null;
  let batchShape: number[];
  try {
    batchShape = tf.backend_util.assertAndGetBroadcastShape(batchA, batchB);
  } catch {
    return null;
  }
  const nOut = tf.util.sizeFromShape(batchShape);
  if (nOut !== Math.max(nA, nB)) return null;
  const av = f32(backend, a), bv = f32(backend, b);
  const c = alloc(nOut * m * n); // beta = 0: the GEMM writes every element
  const gemm = (k > 0 && bf16Gemm) || getGemm().gemm;
  for (let i = 0; i < nOut; i++) {
    gemm(
      tA,
      tB,
      m,
      n,
      k,
      1,
      nA === 1 ? av : av.subarray(i * m * k),
      aC,
      nB === 1 ? bv : bv.subarray(i * k * n),
      bC,
      0,
      c.subarray(i * m * n),
      n,
    );
  }
  return [c, [...batchShape, m, n], nOut * m, n];
}

/** BatchMatMul: inputs {a, b}, attrs {transposeA, transposeB}. */
export function batchMatMulKernel(args: KernelArgs): tf.TensorInfo | null {
  const r = batchMatMul(args);
  return r && out(args.backend, r[1], r[0]);
}

/** _FusedMatMul: matmul + bias + activation (Dense layers), epilogue in place. */
export function fusedMatMulKernel(args: KernelArgs): tf.TensorInfo | null {
  const { bias, preluActivationWeights: prelu } = args.inputs;
  const act = (args.attrs.activation ?? "linear") as FusedActivation;
  if (!allF32(bias, prelu)) return null;
  const b = args.inputs.b;
  const n = args.attrs.transposeB ? b.shape[b.shape.length - 2] : b.shape[b.shape.length - 1];
  if (!epilogueSupported(act, n, lastAxisSize(bias), lastAxisSize(prelu))) return null;
  const r = batchMatMul(args);
  if (!r) return null;
  const [c, shape, rows, cols] = r;
  const bk = args.backend;
  biasActivation(
    c,
    rows,
    cols,
    bias ? f32(bk, bias) : null,
    act,
    args.attrs.leakyreluAlpha,
    prelu ? f32(bk, prelu) : null,
  );
  return out(bk, shape, c);
}

/**
 * Bias + activation epilogue shared by the fused convolution and the fused matmul, done in
 * one pass over the output while it is still warm in cache (tfjs's cpu backend makes two
 * extra tensors for it).
 */
import { reluBits } from "./elementwise.ts";

/** The activations tfjs fuses into conv/matmul kernels. */
export type FusedActivation =
  | "linear"
  | "relu"
  | "relu6"
  | "elu"
  | "leakyrelu"
  | "prelu"
  | "sigmoid";

/**
 * Adds `bias` (length 1 or `cols`) to every row of the row-major `rows`×`cols` matrix `out`,
 * then applies `activation` in place. `alpha` is the leaky-ReLU slope; `prelu` holds the
 * PReLU slopes (length 1 or `cols`). Semantics follow tfjs-backend-cpu's kernels exactly.
 */
export function biasActivation(
  out: Float32Array,
  rows: number,
  cols: number,
  bias: Float32Array | null,
  activation: FusedActivation,
  alpha = 0.2,
  prelu: Float32Array | null = null,
): void {
  if (bias !== null) {
    if (bias.length === 1) {
      const b = bias[0];
      for (let i = 0; i < out.length; i++) out[i] += b;
    } else {
      for (let r = 0, o = 0; r < rows; r++, o += cols) {
        for (let c = 0; c < cols; c++) out[o + c] += bias[c];
      }
    }
  }
  const n = rows * cols;
  switch (activation) {
    case "linear":
      return;
    case "relu":
      reluBits(out.subarray(0, n), out.subarray(0, n)); // branch-free, in place
      return;
    case "relu6":
      for (let i = 0; i < n; i++) out[i] = Math.min(Math.max(out[i], 0), 6);
      return;
    case "elu":
      for (let i = 0; i < n; i++) if (!(out[i] >= 0)) out[i] = Math.exp(out[i]) - 1;
      return;
    case "leakyrelu":
      for (let i = 0; i < n; i++) if (out[i] < 0) out[i] *= alpha;
      return;
    case "sigmoid":
      for (let i = 0; i < n; i++) out[i] = 1 / (1 + Math.exp(-out[i]));
      return;
    case "prelu": {
      const p = prelu!;
      if (p.length === 1) {
        const a = p[0];
        for (let i = 0; i < n; i++) if (out[i] < 0) out[i] *= a;
      } else {
        for (let r = 0, o = 0; r < rows; r++, o += cols) {
          for (let c = 0; c < cols; c++) if (out[o + c] < 0) out[o + c] *= p[c];
        }
      }
      return;
    }
  }
}

/**
 * Whether `biasActivation` can serve a fused kernel call: known activation, and bias/PReLU
 * weights that broadcast along the last axis only. Anything else goes to tfjs's own kernel.
 */
export function epilogueSupported(
  activation: string | undefined,
  cols: number,
  biasSize: number | null,
  preluSize: number | null,
): boolean {
  const act = activation ?? "linear";
  if (!["linear", "relu", "relu6", "elu", "leakyrelu", "prelu", "sigmoid"].includes(act)) {
    return false;
  }
  if (biasSize !== null && biasSize !== 1 && biasSize !== cols) return false;
  if (act === "prelu" && (preluSize === null || (preluSize !== 1 && preluSize !== cols))) {
    return false;
  }
  return true;
}

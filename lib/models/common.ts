/** What every study model shares: Keras's default initialiser (seedable) and compile settings. */
import * as tf from "@tensorflow/tfjs";
import { fusedAdam } from "../kernels/js/adam.ts";
import { type LossKind, setLoss } from "../train/loss.ts";
export type Initializer = ReturnType<typeof tf.initializers.glorotUniform>;

export interface BuildOptions {
  /**
   * Fixes the initial weights so a run repeats; omit for fresh randomness. (Dropout masks are
   * made repeatable by `fit`'s seed; a seed on the layer would repeat one mask every step.)
   */
  seed?: number;
  /** Adam learning rate; Keras's default is 0.001. */
  learningRate?: number;
  /** Skip compiling (for frozen bases that only run forward). */
  compile?: boolean;
  /**
   * The cross-entropy to train with: "logits" (default; Keras 2.x's, from the softmax's
   * logits) or "clipped" (tfjs's, from clipped probabilities) — see lib/train/loss.ts.
   */
  loss?: LossKind;
}

/**
 * Returns a factory of Glorot-uniform initialisers (Keras's default kernel initialiser).
 * With a seed, each layer gets its own derived seed so layers differ but runs repeat.
 */
export function glorot(seed?: number): () => Initializer {
  let layer = 0;
  return () =>
    tf.initializers.glorotUniform(seed === undefined ? {} : { seed: seed * 1000 + layer++ });
}

/**
 * Adam with Keras's defaults (and Keras's placement of ε, see `AdamForm`), sparse categorical
 * cross-entropy, accuracy — the study's compile.
 * The cross-entropy is taken from the logits behind the final softmax, as Keras 2.x does, unless
 * `loss: "clipped"` asks for tfjs's form (the compiled loss, which `trainOnBatch` then uses).
 * `fusedAdam` is tfjs's Adam (same state) with a one-pass in-place update on the CPU
 * fast path, where tfjs's ~14 element-wise passes per weight cost more than the convolutions.
 */
export function compileStudy<M extends tf.LayersModel>(model: M, opts: BuildOptions = {}): M {
  if (opts.compile === false) return model;
  model.compile({
    optimizer: fusedAdam(opts.learningRate ?? 0.001, 0.9, 0.999, 1e-7, "keras"),
    loss: "sparseCategoricalCrossentropy",
    metrics: ["accuracy"],
  });
  setLoss(model, opts.loss ?? "logits");
  return model;
}

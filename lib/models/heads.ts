/**
 * The dense heads the transfer notebooks put on a frozen ImageNet base, as the study declares them,
 * built on the base's feature shape so they train on cached features (lib/transfer/transfer.ts).
 */
import * as tf from "@tensorflow/tfjs";
import { compileStudy, glorot } from "./common.ts";

/** Head layers after Flatten, as the study declares them. */
export type HeadLayer =
  | { dense: number; activation: "relu" | "softmax" }
  | { dropout: number };

/** The study's VGG16 head: Flatten → Dense(4096, relu) → Dropout(0.2) → Dense(1000, relu) → Dense(10, softmax). */
export const VGG16_HEAD: HeadLayer[] = [
  { dense: 4096, activation: "relu" },
  { dropout: 0.2 },
  { dense: 1000, activation: "relu" },
  { dense: 10, activation: "softmax" },
];

/** The study's ResNet152V2 head: Flatten → Dense(10, softmax). */
export const RESNET152V2_HEAD: HeadLayer[] = [{ dense: 10, activation: "softmax" }];

/**
 * A head that takes the base's feature shape (e.g. 1×1×512): Flatten then `layers`, with Keras's
 * default names (flatten, dense, dense_1, …) and initialisers, compiled as the study compiles
 * (Adam, sparse categorical cross-entropy, accuracy).
 */
export function buildHead(
  featureShape: number[],
  layers: HeadLayer[],
  opts: { seed?: number; learningRate?: number; name?: string } = {},
): tf.LayersModel {
  const init = glorot(opts.seed);
  const input = tf.input({ shape: featureShape, name: "features" });
  let x = tf.layers.flatten({ name: "flatten" }).apply(input) as tf.SymbolicTensor;
  let dense = 0, dropout = 0;
  const suffix = (n: number) => (n === 0 ? "" : `_${n}`);
  for (const l of layers) {
    const layer = "dense" in l
      ? tf.layers.dense({
        units: l.dense,
        activation: l.activation,
        kernelInitializer: init(),
        name: `dense${suffix(dense++)}`,
      })
      : tf.layers.dropout({ rate: l.dropout, name: `dropout${suffix(dropout++)}` });
    x = layer.apply(x) as tf.SymbolicTensor;
  }
  return compileStudy(tf.model({ inputs: input, outputs: x, name: opts.name ?? "head" }), opts);
}

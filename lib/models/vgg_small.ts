/** The study's hand-built VGG-style net (section 3), with its single-channel input. */
import * as tf from "@tensorflow/tfjs";
import { type BuildOptions, compileStudy, glorot, type Initializer } from "./common.ts";

export interface VggOptions extends BuildOptions {
  /** Activation of the convolutions. The study wrote none ("linear"); "relu" is the fix. */
  convActivation?: "linear" | "relu";
  /** Insert BatchNormalization after every convolution (an experiment, not the study). */
  batchNorm?: boolean;
  /** Kernel initialiser of the convolutions; Keras's default is Glorot uniform. */
  convInit?: "glorot" | "he";
}

/** Adds a 3×3 "same" convolution (optionally followed by BN + activation) with the given name. */
export function addConv(
  model: tf.Sequential,
  filters: number,
  name: string,
  opts: VggOptions,
  init: () => Initializer,
  inputShape?: number[],
): void {
  const activation = opts.convActivation ?? "linear";
  const kernelInitializer = opts.convInit === "he"
    ? tf.initializers.heNormal(opts.seed === undefined ? {} : { seed: opts.seed + filters })
    : init();
  model.add(tf.layers.conv2d({
    ...(inputShape ? { inputShape } : {}),
    filters,
    kernelSize: 3,
    padding: "same",
    activation: opts.batchNorm ? "linear" : activation,
    name,
    kernelInitializer,
  }));
  if (opts.batchNorm) {
    model.add(tf.layers.batchNormalization({ name: `${name}_bn` }));
    if (activation !== "linear") {
      model.add(tf.layers.activation({ activation, name: `${name}_act` }));
    }
  }
}

/** Flatten → Dense(4096, relu) → Dropout(rate) → Dense(1000, relu) → Dense(10, softmax). */
export function addVggHead(
  model: tf.Sequential,
  init: () => Initializer,
  dropout: number,
): void {
  model.add(tf.layers.flatten({ name: "flatten" }));
  model.add(
    tf.layers.dense({ units: 4096, activation: "relu", name: "dense", kernelInitializer: init() }),
  );
  model.add(tf.layers.dropout({ rate: dropout, name: "dropout" }));
  model.add(
    tf.layers.dense({
      units: 1000,
      activation: "relu",
      name: "dense_1",
      kernelInitializer: init(),
    }),
  );
  model.add(
    tf.layers.dense({
      units: 10,
      activation: "softmax",
      name: "dense_2",
      kernelInitializer: init(),
    }),
  );
}

/**
 * Input 32×32×1 → Conv(64)×2 → MaxPool(2, 2, same) → Conv(128)×2 → MaxPool(2, 2, same) →
 * Flatten → Dense(4096, relu) → Dropout(0.5) → Dense(1000, relu) → Dense(10, softmax).
 * Keras counts 37,924,546 parameters.
 */
export function buildVggSmall(opts: VggOptions = {}): tf.LayersModel {
  const init = glorot(opts.seed);
  const model = tf.sequential({ name: "vgg_small" });
  addConv(model, 64, "conv2d", opts, init, [32, 32, 1]);
  addConv(model, 64, "conv2d_1", opts, init);
  model.add(
    tf.layers.maxPooling2d({ poolSize: 2, strides: 2, padding: "same", name: "max_pooling2d" }),
  );
  addConv(model, 128, "conv2d_2", opts, init);
  addConv(model, 128, "conv2d_3", opts, init);
  model.add(
    tf.layers.maxPooling2d({ poolSize: 2, strides: 2, padding: "same", name: "max_pooling2d_1" }),
  );
  addVggHead(model, init, 0.5);
  return compileStudy(model, opts);
}

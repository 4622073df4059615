/** The study's baseline CNN, layer for layer as its Keras code builds it. */
import * as tf from "@tensorflow/tfjs";
import { type BuildOptions, compileStudy, glorot } from "./common.ts";

/**
 * Input 32×32×3 → Conv(64, 3×3, valid) → MaxPool(2, strides 1) → Conv(32, 3×3, valid) →
 * MaxPool(2, strides 1) → Flatten → Dense(64, relu) → Dropout(0.2) → Dense(32, relu) →
 * Dropout(0.2) → Dense(10, softmax). The convolutions have no activation, as in the study.
 * Keras counts 1,407,178 parameters.
 */
export function buildBaseline(opts: BuildOptions = {}): tf.LayersModel {
  const init = glorot(opts.seed);
  const model = tf.sequential({ name: "baseline_cnn" });
  model.add(tf.layers.conv2d({
    inputShape: [32, 32, 3],
    filters: 64,
    kernelSize: 3,
    name: "conv2d",
    kernelInitializer: init(),
  }));
  model.add(tf.layers.maxPooling2d({ poolSize: 2, strides: 1, name: "max_pooling2d" }));
  model.add(
    tf.layers.conv2d({ filters: 32, kernelSize: 3, name: "conv2d_1", kernelInitializer: init() }),
  );
  model.add(tf.layers.maxPooling2d({ poolSize: 2, strides: 1, name: "max_pooling2d_1" }));
  model.add(tf.layers.flatten({ name: "flatten" }));
  model.add(
    tf.layers.dense({ units: 64, activation: "relu", name: "dense", kernelInitializer: init() }),
  );
  model.add(tf.layers.dropout({ rate: 0.2, name: "dropout" }));
  model.add(
    tf.layers.dense({ units: 32, activation: "relu", name: "dense_1", kernelInitializer: init() }),
  );
  model.add(tf.layers.dropout({ rate: 0.2, name: "dropout_1" }));
  model.add(
    tf.layers.dense({
      units: 10,
      activation: "softmax",
      name: "dense_2",
      kernelInitializer: init(),
    }),
  );
  return compileStudy(model, opts);
}

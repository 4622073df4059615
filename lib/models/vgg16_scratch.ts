/** VGG16 built from scratch as the study built it (section 4): no activations in the conv stack. */
import * as tf from "@tensorflow/tfjs";
import { compileStudy, glorot } from "./common.ts";
import { addConv, addVggHead, type VggOptions } from "./vgg_small.ts";
import { VGG16_BLOCKS } from "./vgg16_imagenet.ts";

/**
 * Input 32×32×3 → the VGG16 conv stack (3×3 same, each block ending in MaxPool 2×2/2 same) →
 * Flatten → Dense(4096, relu) → Dropout(0.5) → Dense(1000, relu) → Dense(10, softmax).
 * With the study's settings the convolutions are linear. Keras counts 20,922,946 parameters.
 */
export function buildVgg16Scratch(opts: VggOptions = {}): tf.LayersModel {
  const init = glorot(opts.seed);
  const model = tf.sequential({ name: "vgg16_scratch" });
  VGG16_BLOCKS.forEach((filters, b) => {
    filters.forEach((f, c) => {
      const first = b === 0 && c === 0;
      addConv(model, f, `block${b + 1}_conv${c + 1}`, opts, init, first ? [32, 32, 3] : undefined);
    });
    model.add(tf.layers.maxPooling2d({
      poolSize: 2,
      strides: 2,
      padding: "same",
      name: `block${b + 1}_pool`,
    }));
  });
  addVggHead(model, init, 0.5);
  return compileStudy(model, opts);
}

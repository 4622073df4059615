/**
 * Keras's `VGG16(include_top=False)`: the convolutional base that ImageNet weights load into.
 * Layer names, order and defaults follow keras.applications so the `.h5` file loads by name.
 */
import * as tf from "@tensorflow/tfjs";
import { glorot } from "./common.ts";

/** Options shared by the ImageNet bases. */
export interface ImagenetBaseOptions {
  /** Seeds the Glorot-uniform kernels (Keras's default) so a random base repeats; omit for fresh randomness. */
  seed?: number;
  /** `false` freezes the base (Keras's `base.trainable = False`); default `true`, as in Keras. */
  trainable?: boolean;
  /** Height, width, channels; default 32×32×3, the smallest input Keras accepts for these bases. */
  inputShape?: [number, number, number];
}

/** Filters of each VGG16 block's 3×3 convolutions (the ImageNet base and section 4's from-scratch net). */
export const VGG16_BLOCKS: readonly (readonly number[])[] = [
  [64, 64],
  [128, 128],
  [256, 256, 256],
  [512, 512, 512],
  [512, 512, 512],
];

/** The preprocessing Keras's VGG16 weights expect (`imagenet_utils.preprocess_input`, mode "caffe"). */
export const VGG16_PREPROCESSING = "caffe" as const;

/**
 * `block1_conv1` … `block5_pool`: 13 ReLU 3×3 "same" convolutions, a 2×2/2 max-pool after each
 * block. 14,714,688 parameters; on 32×32×3 the output is 1×1×512.
 */
export function buildVgg16Base(opts: ImagenetBaseOptions = {}): tf.LayersModel {
  const init = glorot(opts.seed);
  const trainable = opts.trainable ?? true;
  const input = tf.input({ shape: opts.inputShape ?? [32, 32, 3], name: "input_1" });
  let x = input as tf.SymbolicTensor;
  VGG16_BLOCKS.forEach((filters, b) => {
    filters.forEach((f, c) => {
      x = tf.layers.conv2d({
        filters: f,
        kernelSize: 3,
        padding: "same",
        activation: "relu",
        name: `block${b + 1}_conv${c + 1}`,
        kernelInitializer: init(),
        trainable,
      }).apply(x) as tf.SymbolicTensor;
    });
    x = tf.layers.maxPooling2d({ poolSize: 2, strides: 2, name: `block${b + 1}_pool`, trainable })
      .apply(x) as tf.SymbolicTensor;
  });
  const model = tf.model({ inputs: input, outputs: x, name: "vgg16" });
  model.trainable = trainable;
  return model;
}

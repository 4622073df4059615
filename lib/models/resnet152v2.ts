/**
 * Keras's `ResNet152V2(include_top=False)`: the pre-activation ResNet base that ImageNet weights
 * load into, with keras.applications' layer names (`conv1_conv`, `conv2_block1_preact_bn`, …,
 * `post_relu`) so the `.h5` file loads by name. The block code is shared with smaller ResNet-v2
 * shapes (`buildResNetV2Base`), which the tests use to check the same code on tiny inputs.
 */
import * as tf from "@tensorflow/tfjs";
import { glorot } from "./common.ts";
import type { ImagenetBaseOptions } from "./vgg16_imagenet.ts";

/** One stack of bottleneck blocks (Keras `stack2`). */
export interface ResNetV2Stack {
  /** Bottleneck width; blocks output 4× this many channels. */
  filters: number;
  blocks: number;
  /** Stride of the stack's last block (2 in conv2–conv4, 1 in conv5). */
  stride: number;
}

/** Keras's `ResNet152V2` stacks: conv2 (3 blocks), conv3 (8), conv4 (36), conv5 (3). */
export const RESNET152V2_STACKS: ResNetV2Stack[] = [
  { filters: 64, blocks: 3, stride: 2 },
  { filters: 128, blocks: 8, stride: 2 },
  { filters: 256, blocks: 36, stride: 2 },
  { filters: 512, blocks: 3, stride: 1 },
];

/** The preprocessing Keras's ResNetV2 weights expect (`preprocess_input`, mode "tf": x/127.5 − 1). */
export const RESNET152V2_PREPROCESSING = "tf" as const;

/** Keras's BatchNormalization epsilon in keras.applications ResNets (tfjs defaults to 1e-3). */
const BN_EPSILON = 1.001e-5;

export interface ResNetV2Options extends ImagenetBaseOptions {
  /** Stacks after the stem; default ResNet152V2's. */
  stacks?: ResNetV2Stack[];
  /** Filters of the 7×7/2 stem convolution; default 64. */
  stemFilters?: number;
  /** Model name; default "resnet152v2". */
  name?: string;
}

type Sym = tf.SymbolicTensor;

/**
 * Stem (`conv1_pad`, `conv1_conv` 7×7/2 with bias, `pool1_pad`, `pool1_pool` 3×3/2), the stacks of
 * pre-activation bottleneck blocks, then `post_bn` and `post_relu`. Default: ResNet152V2, 58,331,648
 * parameters (143,744 of them BN moving statistics); on 32×32×3 the output is 1×1×2048.
 */
export function buildResNetV2Base(opts: ResNetV2Options = {}): tf.LayersModel {
  const init = glorot(opts.seed);
  const trainable = opts.trainable ?? true;
  const conv = (
    x: Sym,
    filters: number,
    kernelSize: number,
    name: string,
    strides = 1,
    useBias = true,
  ) =>
    tf.layers.conv2d({
      filters,
      kernelSize,
      strides,
      useBias,
      name,
      kernelInitializer: init(),
      trainable,
    })
      .apply(x) as Sym;
  const bn = (x: Sym, name: string) =>
    tf.layers.batchNormalization({ axis: -1, epsilon: BN_EPSILON, name, trainable }).apply(
      x,
    ) as Sym;
  const relu = (x: Sym, name: string) =>
    tf.layers.activation({ activation: "relu", name, trainable }).apply(x) as Sym;
  const pad = (x: Sym, p: number, name: string) =>
    tf.layers.zeroPadding2d({ padding: [[p, p], [p, p]], name, trainable }).apply(x) as Sym;
  // Keras leaves the strided identity shortcut unnamed; a fresh Keras session calls these
  // max_pooling2d, max_pooling2d_1, … — the same names here keep summaries comparable.
  let pools = 0;
  const shortcutPool = (x: Sym, stride: number) =>
    tf.layers.maxPooling2d({
      poolSize: 1,
      strides: stride,
      name: pools++ === 0 ? "max_pooling2d" : `max_pooling2d_${pools - 1}`,
      trainable,
    }).apply(x) as Sym;

  // Keras `block2`: BN-ReLU first, shortcut from the pre-activation (conv) or the raw input (identity).
  const block = (
    x: Sym,
    filters: number,
    name: string,
    stride: number,
    convShortcut: boolean,
  ): Sym => {
    const preact = relu(bn(x, `${name}_preact_bn`), `${name}_preact_relu`);
    const shortcut = convShortcut
      ? conv(preact, 4 * filters, 1, `${name}_0_conv`, stride)
      : stride > 1
      ? shortcutPool(x, stride)
      : x;
    let y = conv(preact, filters, 1, `${name}_1_conv`, 1, false);
    y = relu(bn(y, `${name}_1_bn`), `${name}_1_relu`);
    y = pad(y, 1, `${name}_2_pad`);
    y = conv(y, filters, 3, `${name}_2_conv`, stride, false);
    y = relu(bn(y, `${name}_2_bn`), `${name}_2_relu`);
    y = conv(y, 4 * filters, 1, `${name}_3_conv`);
    return tf.layers.add({ name: `${name}_out`, trainable }).apply([shortcut, y]) as Sym;
  };

  const input = tf.input({ shape: opts.inputShape ?? [32, 32, 3], name: "input_1" });
  let x = pad(input, 3, "conv1_pad");
  x = conv(x, opts.stemFilters ?? 64, 7, "conv1_conv", 2);
  x = pad(x, 1, "pool1_pad");
  x = tf.layers.maxPooling2d({ poolSize: 3, strides: 2, name: "pool1_pool", trainable }).apply(
    x,
  ) as Sym;
  (opts.stacks ?? RESNET152V2_STACKS).forEach((s, i) => {
    const stack = `conv${i + 2}`;
    // Keras's stack2 builds block1, the middle blocks, then a last block with the stack's stride.
    if (s.blocks < 2) throw new Error(`${stack}: a ResNet-v2 stack needs at least 2 blocks`);
    x = block(x, s.filters, `${stack}_block1`, 1, true);
    for (let b = 2; b < s.blocks; b++) x = block(x, s.filters, `${stack}_block${b}`, 1, false);
    x = block(x, s.filters, `${stack}_block${s.blocks}`, s.stride, false);
  });
  x = relu(bn(x, "post_bn"), "post_relu");
  const model = tf.model({ inputs: input, outputs: x, name: opts.name ?? "resnet152v2" });
  model.trainable = trainable;
  return model;
}

/** Keras's `ResNet152V2(include_top=False)` base; see `buildResNetV2Base`. */
export function buildResNet152V2Base(opts: ImagenetBaseOptions = {}): tf.LayersModel {
  return buildResNetV2Base({ ...opts, stacks: RESNET152V2_STACKS, name: "resnet152v2" });
}

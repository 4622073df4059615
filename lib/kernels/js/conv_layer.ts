/**
 * A Conv2D layer as one FusedConv2D kernel with a lazy gradient, on cpu-fast.
 *
 * tfjs-layers runs a Conv2D layer through tfjs-core's fused convolution, which under a gradient
 * (a) fuses only a linear activation — a ReLU layer becomes Conv2D, then Add for the bias, then
 * Relu, each a pass over the activation — and (b) wraps the kernel in `customGrad`, whose
 * gradient function computes the input, kernel and bias gradients all at once. So a network's
 * first convolution computed the gradient with respect to its input images on every training
 * step (~6 ms of a VGG16 step at batch 100), though nothing reads it.
 *
 * Here a linear or ReLU Conv2D layer runs the registered FusedConv2D kernel directly (on oneDNN:
 * bias and ReLU applied to the accumulator), and FusedConv2D gets a registered gradient — the
 * math of tfjs-core's own fused-convolution gradient: dy·step(y) for a ReLU, then
 * Conv2DBackpropInput, Conv2DBackpropFilter and the bias sum — whose three parts are separate
 * closures. tfjs's backprop evaluates only the closures of inputs on the path to the variables
 * being differentiated, so the images' gradient is skipped while training and still computed
 * when it is asked for (a saliency map differentiates with respect to the input).
 *
 * It replaces tfjs-layers' `Conv.prototype.call` only while the backend is cpu-fast, for 2-D
 * convolutions with a linear or ReLU activation, channels-last data, dilation 1 and a float32
 * input of rank 4; every other call (other backends, activations, layouts) is tfjs's own.
 * Outside these layers FusedConv2D runs under a gradient only inside tfjs-core's `customGrad`,
 * which records its own gradient, so the registration changes nothing else.
 */
import * as tf from "@tensorflow/tfjs";
import { envVar } from "../../machine/env.ts";

/** The fields of tfjs-layers' Conv that this path reads. */
interface ConvLayer {
  rank: number;
  strides: number[];
  padding: string;
  dataFormat: string;
  dilationRate: number | number[];
  activation: { getClassName(): string };
  kernel: { read(): tf.Tensor };
  bias: { read(): tf.Tensor } | null;
}

type Call = (
  this: ConvLayer,
  inputs: tf.Tensor | tf.Tensor[],
  kwargs: tf.NamedAttrMap,
) => tf.Tensor;

/** The activations the gradient below knows (tfjs-layers' class names = fused kernel names). */
const ACTIVATIONS = new Set(["linear", "relu"]);

/** Whether this layer call is one the fused path takes. */
function handles(layer: ConvLayer, x: tf.Tensor): boolean {
  const dil = [layer.dilationRate].flat();
  return layer.rank === 2 && ACTIVATIONS.has(layer.activation?.getClassName()) &&
    layer.dataFormat === "channelsLast" && dil.every((d) => d === 1) && x.rank === 4 &&
    x.dtype === "float32";
}

/** The attributes of the FusedConv2D calls made here. */
interface FusedAttrs {
  strides: [number, number];
  pad: "same" | "valid";
  dataFormat: "NHWC";
  dilations: [number, number];
  activation: string;
}

/**
 * FusedConv2D's gradient for the calls made here (linear or ReLU, no PReLU weights): each
 * input's gradient is computed only when backprop asks for it.
 */
const fusedConvGradient: tf.GradConfig = {
  kernelName: "FusedConv2D",
  inputsToSave: ["x", "filter"],
  outputsToSave: [true],
  gradFunc: (dy, saved, attrs) => {
    const [x, filter, y] = saved;
    const { activation, ...conv } = attrs as unknown as FusedAttrs;
    if (!ACTIVATIONS.has(activation)) {
      throw new Error(`FusedConv2D's registered gradient has no '${activation}' activation`);
    }
    // step(y) is step(x) for y = relu(x), NaN included
    const g = activation === "relu" ? tf.mul(dy as tf.Tensor, tf.step(y)) : dy as tf.Tensor;
    const engine = tf.engine();
    return {
      x: () =>
        engine.runKernel("Conv2DBackpropInput", { dy: g, filter }, {
          ...conv,
          inputShape: x.shape,
        }) as tf.Tensor,
      filter: () =>
        engine.runKernel("Conv2DBackpropFilter", { x, dy: g }, {
          ...conv,
          filterShape: filter.shape,
        }) as tf.Tensor,
      bias: () => tf.sum(g, [0, 1, 2]),
    };
  },
};

/** y = act(conv(x, w) + b) as one registered kernel, so the tape holds its lazy gradient. */
function fusedConv(layer: ConvLayer, x: tf.Tensor4D): tf.Tensor {
  const w = layer.kernel.read();
  const b = layer.bias?.read();
  const attrs: FusedAttrs = {
    strides: layer.strides as [number, number],
    pad: layer.padding === "same" ? "same" : "valid",
    dataFormat: "NHWC",
    dilations: [1, 1],
    activation: layer.activation.getClassName(),
  };
  const inputs: tf.NamedTensorMap = b ? { x, filter: w, bias: b } : { x, filter: w };
  return tf.engine().runKernel(
    "FusedConv2D",
    inputs,
    attrs as unknown as tf.NamedAttrMap,
  ) as tf.Tensor;
}

let installed = false;

/**
 * Routes linear and ReLU Conv2D layer calls through `fusedConv` while `isActive()` (the
 * backend is cpu-fast); idempotent. Set CPU_FAST_CONV_LAYER=0 to keep tfjs's graph.
 */
export function installFusedConvLayer(isActive: () => boolean): void {
  if (installed) return;
  installed = true;
  if (envVar("CPU_FAST_CONV_LAYER") === "0") return;
  // Conv2D → Conv (which defines call) → Layer
  const conv2d = tf.layers.conv2d({ filters: 1, kernelSize: 1 });
  const proto = Object.getPrototypeOf(Object.getPrototypeOf(conv2d)) as { call: Call };
  if (!Object.hasOwn(proto, "call")) return; // another tfjs-layers layout: keep its own path
  // another library's FusedConv2D gradient would be replaced by ours: keep tfjs's path then
  if (tf.getGradient("FusedConv2D") != null) return;
  tf.registerGradient(fusedConvGradient);
  const original = proto.call;
  proto.call = function (this: ConvLayer, inputs, kwargs) {
    if (isActive()) {
      const x = Array.isArray(inputs) ? (inputs.length === 1 ? inputs[0] : null) : inputs;
      if (x && handles(this, x)) return tf.tidy(() => fusedConv(this, x as tf.Tensor4D));
    }
    return original.call(this, inputs, kwargs);
  };
}

/**
 * A ReLU Conv2D layer as one fused convolution under a gradient too, on cpu-fast.
 *
 * tfjs-core fuses a convolution's bias and activation into one FusedConv2D kernel only when no
 * gradient is being recorded; while training it runs Conv2D, then Add for the bias, then Relu,
 * each a pass over the activation (with large Add and Relu on oneDNN still ~40 ms of a
 * ReLU-conv VGG16 step at batch 100). Here the layer's forward is FusedConv2D with the ReLU
 * (on oneDNN: bias and ReLU applied to the accumulator), and its gradient is the one tfjs-core
 * gives its own fused convolution: dy·step(y) through Conv2DBackpropInput,
 * Conv2DBackpropFilter and the bias sum — the same math as the unfused graph (step(y) is
 * step(x) for y = relu(x), NaN included).
 *
 * It replaces tfjs-layers' `Conv.prototype.call` only while the backend is cpu-fast, for 2-D
 * convolutions with a ReLU activation, channels-last data, dilation 1 and a float32 input of
 * rank 4; every other call (other backends, activations, layouts) is tfjs's own.
 */
import * as tf from "@tensorflow/tfjs";
import { envVar } from "../env.ts";

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

/** Whether this layer call is one the fused path takes. */
function handles(layer: ConvLayer, x: tf.Tensor): boolean {
  const dil = [layer.dilationRate].flat();
  return layer.rank === 2 && layer.activation?.getClassName() === "relu" &&
    layer.dataFormat === "channelsLast" && dil.every((d) => d === 1) && x.rank === 4 &&
    x.dtype === "float32";
}

/** y = relu(conv(x, w) + b) as one kernel, with tfjs-core's fused-convolution gradient. */
function reluConv(layer: ConvLayer, x: tf.Tensor4D): tf.Tensor {
  const engine = tf.engine();
  const strides = layer.strides as [number, number];
  const pad = layer.padding === "same" ? "same" : "valid";
  const conv = { strides, pad, dataFormat: "NHWC", dilations: [1, 1] };
  const w = layer.kernel.read() as tf.Tensor4D;
  const b = layer.bias?.read() ?? null;
  const gradient = (dy: tf.Tensor, xx: tf.Tensor, ww: tf.Tensor, y: tf.Tensor) => {
    const dyAct = tf.mul(dy, tf.step(y));
    const dx = engine.runKernel("Conv2DBackpropInput", { dy: dyAct, filter: ww }, {
      ...conv,
      inputShape: xx.shape,
    }) as tf.Tensor;
    const dw = engine.runKernel("Conv2DBackpropFilter", { x: xx, dy: dyAct }, {
      ...conv,
      filterShape: ww.shape,
    }) as tf.Tensor;
    return { dx, dw, db: tf.sum(dyAct, [0, 1, 2]) };
  };
  const forward = (xx: tf.Tensor, ww: tf.Tensor, bb: tf.Tensor | null) =>
    engine.runKernel("FusedConv2D", bb ? { x: xx, filter: ww, bias: bb } : { x: xx, filter: ww }, {
      ...conv,
      activation: "relu",
    }) as tf.Tensor;
  if (b) {
    return tf.customGrad((xx, ww, bb, save) => {
      const y = forward(xx as tf.Tensor, ww as tf.Tensor, bb as tf.Tensor);
      (save as tf.GradSaveFunc)([xx as tf.Tensor, ww as tf.Tensor, y]);
      return {
        value: y,
        gradFunc: (dy: tf.Tensor | tf.Tensor[], [sx, sw, sy]: tf.Tensor[]) => {
          const g = gradient(dy as tf.Tensor, sx, sw, sy);
          return [g.dx, g.dw, g.db];
        },
      };
    })(x, w, b);
  }
  return tf.customGrad((xx, ww, save) => {
    const y = forward(xx as tf.Tensor, ww as tf.Tensor, null);
    (save as tf.GradSaveFunc)([xx as tf.Tensor, ww as tf.Tensor, y]);
    return {
      value: y,
      gradFunc: (dy: tf.Tensor | tf.Tensor[], [sx, sw, sy]: tf.Tensor[]) => {
        const g = gradient(dy as tf.Tensor, sx, sw, sy);
        return [g.dx, g.dw];
      },
    };
  })(x, w);
}

let installed = false;

/**
 * Routes ReLU Conv2D layer calls through `reluConv` while `isActive()` (the backend is
 * cpu-fast); idempotent. Set CPU_FAST_CONV_RELU=0 to keep tfjs's graph.
 */
export function installFusedReluConv(isActive: () => boolean): void {
  if (installed) return;
  installed = true;
  if (envVar("CPU_FAST_CONV_RELU") === "0") return;
  // Conv2D → Conv (which defines call) → Layer
  const conv2d = tf.layers.conv2d({ filters: 1, kernelSize: 1 });
  const proto = Object.getPrototypeOf(Object.getPrototypeOf(conv2d)) as { call: Call };
  if (!Object.hasOwn(proto, "call")) return; // another tfjs-layers layout: keep its own path
  const original = proto.call;
  proto.call = function (this: ConvLayer, inputs, kwargs) {
    if (isActive()) {
      const x = Array.isArray(inputs) ? (inputs.length === 1 ? inputs[0] : null) : inputs;
      if (x && handles(this, x)) return tf.tidy(() => reluConv(this, x as tf.Tensor4D));
    }
    return original.call(this, inputs, kwargs);
  };
}

/**
 * BatchNormalization in training mode as one forward and one backward kernel on cpu-fast.
 *
 * tfjs-layers builds a training-mode BN from ~10 ops (moments, batchNorm, moving averages)
 * and its gradient from ~25 more (tfjs-core's FusedBatchNorm gradient plus the gradients of
 * Mean, Square and Sub through the batch statistics): about 35 passes over the activation
 * per layer per step, even with every one of those kernels fast (batchnorm.ts). Measured on
 * vgg_small+BN (batch 100): a step cost 1.7× the plain net's. Here the same math is one
 * statistics pass, one normalising pass, and a backward of one reduction pass and one dx
 * pass (the textbook gradient through the batch statistics, which is what tfjs's composed
 * gradient computes). Those passes run as oneDNN's batch-normalization primitives where
 * oneDNN loads (batchnorm_dnnl.ts: multi-threaded, float32 accumulation), else as the JS loops
 * below (one core, float64 per-channel sums); CPU_FAST_BN=js forces the loops.
 *
 * It replaces `BatchNormalization.prototype.call` only while the backend is cpu-fast, the
 * layer is in training mode, normalises the last axis, has gamma and beta, and the input is
 * float32; every other call (inference, other backends, other axes) is tfjs's own. The
 * moving averages are updated with tfjs's exact ops and order (`doMovingAverage`).
 */
import * as tf from "@tensorflow/tfjs";
import type { MathBackendCPU } from "@tensorflow/tfjs-backend-cpu";
import { alloc } from "../pool_alloc.ts";
import { envVar } from "../../machine/env.ts";
import { loadDnnl } from "../onednn/dnnl.ts";

/** The fields of tfjs-layers' BatchNormalization that the training path reads. */
interface BnLayer {
  axis: number;
  momentum: number;
  epsilon: number;
  center: boolean;
  scale: boolean;
  gamma: { read(): tf.Tensor };
  beta: { read(): tf.Tensor };
  movingMean: { read(): tf.Tensor; write(t: tf.Tensor): void };
  movingVariance: { read(): tf.Tensor; write(t: tf.Tensor): void };
}

type Call = (this: BnLayer, inputs: tf.Tensor | tf.Tensor[], kwargs: tf.NamedAttrMap) => tf.Tensor;

function values(t: tf.Tensor): Float32Array {
  // the backend's own array: `dataSync` would mark it as handed out (see pool_alloc.ts)
  return (tf.backend() as MathBackendCPU).data.get(t.dataId).values as Float32Array;
}

/** Per-channel mean and biased variance (what tf.moments gives), two passes in float64. */
function batchMoments(
  x: Float32Array,
  c: number,
): { mean: Float64Array; variance: Float64Array } {
  const n = x.length / c;
  const mean = new Float64Array(c), variance = new Float64Array(c);
  for (let o = 0; o < x.length; o += c) for (let j = 0; j < c; j++) mean[j] += x[o + j];
  for (let j = 0; j < c; j++) mean[j] /= n;
  for (let o = 0; o < x.length; o += c) {
    for (let j = 0; j < c; j++) {
      const d = x[o + j] - mean[j];
      variance[j] += d * d;
    }
  }
  for (let j = 0; j < c; j++) variance[j] /= n;
  return { mean, variance };
}

/**
 * Gradients of y = beta + gamma·(x − mean)·inv, inv = 1/sqrt(var + eps), with mean and var
 * the batch's own: dbeta = Σdy, dgamma = inv·Σdy(x − mean),
 * dx = gamma·inv·(dy − Σdy/n − (x − mean)·inv²·Σdy(x − mean)/n).
 */
function batchNormBackward(
  x: Float32Array,
  dy: Float32Array,
  c: number,
  mean: Float64Array,
  inv: Float64Array,
  gamma: Float32Array,
): { dx: Float32Array; dgamma: Float32Array; dbeta: Float32Array } {
  const n = x.length / c;
  const sdy = new Float64Array(c), sdyx = new Float64Array(c);
  for (let o = 0; o < x.length; o += c) {
    for (let j = 0; j < c; j++) {
      const g = dy[o + j];
      sdy[j] += g;
      sdyx[j] += g * (x[o + j] - mean[j]);
    }
  }
  const k = new Float64Array(c), a = new Float64Array(c), b = new Float64Array(c);
  const dgamma = new Float32Array(c), dbeta = new Float32Array(c);
  for (let j = 0; j < c; j++) {
    k[j] = gamma[j] * inv[j];
    a[j] = sdy[j] / n;
    b[j] = inv[j] * inv[j] * sdyx[j] / n;
    dgamma[j] = sdyx[j] * inv[j];
    dbeta[j] = sdy[j];
  }
  const dx = alloc(x.length);
  for (let o = 0; o < x.length; o += c) {
    for (let j = 0; j < c; j++) {
      dx[o + j] = k[j] * (dy[o + j] - a[j] - (x[o + j] - mean[j]) * b[j]);
    }
  }
  return { dx, dgamma, dbeta };
}

/** Whether training-mode BN runs on oneDNN where it loads (CPU_FAST_BN=js: the JS loops). */
let native = envVar("CPU_FAST_BN") !== "js";

/** Chooses oneDNN (where it loads) or the JS loops for training-mode BN; tests run both. */
export function setNativeBatchNorm(on: boolean): void {
  native = on;
}

/** Training-mode BN calls per engine since start (tests check which one ran). */
export const batchNormRuns = { dnnl: 0, js: 0 };

/** One BN's forward: y and the batch statistics, and the gradient that goes with them. */
interface BnPass {
  y: Float32Array;
  mean: ArrayLike<number>;
  variance: ArrayLike<number>;
  backward(
    x: Float32Array,
    dy: Float32Array,
    gamma: Float32Array,
  ): { dx: Float32Array; dgamma: Float32Array; dbeta: Float32Array };
}

/** The forward on oneDNN (batchnorm_dnnl.ts); null where it is not loaded or cannot. */
function dnnlPass(
  shape: number[],
  eps: number,
  xv: Float32Array,
  g: Float32Array,
  bt: Float32Array,
): BnPass | null {
  const bn = native ? loadDnnl()?.batchNorm(shape, eps) : null;
  if (!bn) return null;
  batchNormRuns.dnnl++;
  const y = alloc(xv.length);
  const stats = bn.forward(xv, g, bt, y);
  return {
    y,
    ...stats,
    backward(x, dy, gamma) {
      const dx = alloc(x.length);
      return { dx, ...bn.backward(x, stats, dy, gamma, dx) };
    },
  };
}

/** The forward as JS loops with float64 per-channel sums. */
function jsPass(
  c: number,
  eps: number,
  xv: Float32Array,
  g: Float32Array,
  bt: Float32Array,
): BnPass {
  batchNormRuns.js++;
  const { mean, variance } = batchMoments(xv, c);
  const inv = variance.map((v) => 1 / Math.sqrt(v + eps));
  const k = new Float64Array(c);
  for (let j = 0; j < c; j++) k[j] = g[j] * inv[j];
  const y = alloc(xv.length);
  for (let o = 0; o < xv.length; o += c) {
    for (let j = 0; j < c; j++) y[o + j] = bt[j] + (xv[o + j] - mean[j]) * k[j];
  }
  return {
    y,
    mean,
    variance,
    backward: (x, dy, gamma) => batchNormBackward(x, dy, c, mean, inv, gamma),
  };
}

/** Training-mode BN of one layer; null when the call is outside what this path handles. */
function trainingCall(layer: BnLayer, x: tf.Tensor): tf.Tensor | null {
  const rank = x.shape.length;
  const axis = layer.axis >= 0 ? layer.axis : layer.axis + rank;
  if (rank < 2 || axis !== rank - 1 || x.dtype !== "float32" || !layer.center || !layer.scale) {
    return null;
  }
  const c = x.shape[rank - 1];
  if (c === 0 || x.size === 0) return null;
  const gammaT = layer.gamma.read(), betaT = layer.beta.read();
  const eps = layer.epsilon;
  const xv = values(x), g = values(gammaT), bt = values(betaT);
  const p = dnnlPass(x.shape, eps, xv, g, bt) ?? jsPass(c, eps, xv, g, bt);
  const norm = tf.customGrad((xx, gamma, _beta, save) => {
    (save as tf.GradSaveFunc)([xx as tf.Tensor, gamma as tf.Tensor]);
    return {
      value: tf.tensor(p.y, x.shape, "float32"),
      gradFunc: (dy: tf.Tensor | tf.Tensor[], saved: tf.Tensor[]) => {
        const [sx, sg] = saved;
        const r = p.backward(values(sx), values(dy as tf.Tensor), values(sg));
        return [tf.tensor(r.dx, x.shape, "float32"), tf.tensor1d(r.dgamma), tf.tensor1d(r.dbeta)];
      },
    };
  });
  const y = norm(x, gammaT, betaT);
  // tfjs-layers' doMovingAverage, op for op
  const meanT = tf.tensor1d(Float32Array.from(p.mean));
  const varT = tf.tensor1d(Float32Array.from(p.variance));
  for (
    const [variable, value] of [[layer.movingMean, meanT], [layer.movingVariance, varT]] as const
  ) {
    tf.tidy(() => {
      const decay = 1 - layer.momentum;
      const orig = variable.read();
      variable.write(tf.sub(orig, tf.mul(tf.sub(orig, value), decay)));
    });
  }
  return y;
}

let installed = false;

/**
 * Routes training-mode BatchNormalization calls through `trainingCall` while `isActive()`
 * (the backend is cpu-fast); idempotent. Set CPU_FAST_BN=0 to keep tfjs's composed graph.
 */
export function installFusedBatchNorm(isActive: () => boolean): void {
  if (installed) return;
  installed = true;
  if (envVar("CPU_FAST_BN") === "0") return;
  const proto = Object.getPrototypeOf(tf.layers.batchNormalization({})) as { call: Call };
  const original = proto.call;
  proto.call = function (this: BnLayer, inputs, kwargs) {
    const training = kwargs?.["training"] ?? false;
    if (training && isActive()) {
      const x = Array.isArray(inputs) ? (inputs.length === 1 ? inputs[0] : null) : inputs;
      if (x) {
        const y = tf.tidy(() => trainingCall(this, x) ?? []);
        if (!Array.isArray(y)) return y as tf.Tensor;
      }
    }
    return original.call(this, inputs, kwargs);
  };
}

/**
 * MaxPool and MaxPoolGrad on NHWC, looping channels innermost (contiguous) instead of
 * tfjs-cpu's channel-outer loops through TensorBuffer.get. Same tie rule as tfjs: the first
 * maximum in (row, column) window order wins, and NaN never wins.
 */
import * as tf from "@tensorflow/tfjs";
import { alloc } from "../pool_alloc.ts";
import { allF32, f32, type FastKernel, type KernelArgs, out } from "../util.ts";
import { type PoolGeom } from "../onednn/dnnl.ts";
import { convDnnl } from "./conv.ts";

function poolInfo(xShape: number[], attrs: KernelArgs["attrs"]): tf.backend_util.Conv2DInfo | null {
  const info = tf.backend_util.computePool2DInfo(
    xShape as [number, number, number, number],
    attrs.filterSize,
    attrs.strides,
    1,
    attrs.pad,
    attrs.dimRoundingMode,
  );
  return info.dilationHeight === 1 && info.dilationWidth === 1 ? info : null;
}

function poolGeom(info: tf.backend_util.Conv2DInfo): PoolGeom {
  return {
    batch: info.batchSize,
    inH: info.inHeight,
    inW: info.inWidth,
    c: info.inChannels,
    outH: info.outHeight,
    outW: info.outWidth,
    fh: info.filterHeight,
    fw: info.filterWidth,
    sh: info.strideHeight,
    sw: info.strideWidth,
    padTop: info.padInfo.top,
    padLeft: info.padInfo.left,
  };
}

/** MaxPool: inputs {x}, attrs {filterSize, strides, pad, dimRoundingMode}. */
export const maxPool: FastKernel = ({ inputs, backend, attrs }) => {
  const { x } = inputs;
  if (!allF32(x) || x.shape.length !== 4) return null;
  const info = poolInfo(x.shape, attrs);
  if (!info) return null;
  const xv = f32(backend, x);
  const d = convDnnl();
  if (d) return out(backend, info.outShape, d.maxPool(poolGeom(info), xv));
  const { batchSize, inHeight: H, inWidth: W, inChannels: C, outHeight: OH, outWidth: OW } = info;
  const fh = info.filterHeight, fw = info.filterWidth;
  const sh = info.strideHeight, sw = info.strideWidth;
  const pt = info.padInfo.top, pl = info.padInfo.left;
  const y = alloc(batchSize * OH * OW * C).fill(-Infinity);
  let o = 0;
  for (let b = 0; b < batchSize; b++) {
    const xb = b * H * W * C;
    for (let oy = 0; oy < OH; oy++) {
      const y0 = Math.max(0, oy * sh - pt), y1 = Math.min(H, oy * sh - pt + fh);
      for (let ox = 0; ox < OW; ox++, o += C) {
        const x0 = Math.max(0, ox * sw - pl), x1 = Math.min(W, ox * sw - pl + fw);
        for (let iy = y0; iy < y1; iy++) {
          for (let ix = x0; ix < x1; ix++) {
            const s = xb + (iy * W + ix) * C;
            for (let c = 0; c < C; c++) {
              // a select, not a branch: on random data the branch mispredicts half the time
              const v = xv[s + c], u = y[o + c];
              y[o + c] = v > u ? v : u;
            }
          }
        }
      }
    }
  }
  return out(backend, info.outShape, y);
};

/**
 * MaxPoolGrad: inputs {dy, input, output}. Recomputes each window's arg-max from the input
 * and adds dy there — what tfjs's position-matching loop computes, in one pass.
 */
export const maxPoolGrad: FastKernel = ({ inputs, backend, attrs }) => {
  const { dy, input: x } = inputs;
  if (!allF32(dy, x) || x.shape.length !== 4) return null;
  const info = poolInfo(x.shape, attrs);
  if (!info) return null;
  const xv = f32(backend, x), dyv = f32(backend, dy);
  const d = convDnnl();
  if (d) return out(backend, x.shape, d.maxPoolGrad(poolGeom(info), xv, dyv));
  const { batchSize, inHeight: H, inWidth: W, inChannels: C, outHeight: OH, outWidth: OW } = info;
  const fh = info.filterHeight, fw = info.filterWidth;
  const sh = info.strideHeight, sw = info.strideWidth;
  const pt = info.padInfo.top, pl = info.padInfo.left;
  const dx = alloc(xv.length, true);
  const best = new Float32Array(C), at = new Int32Array(C);
  let o = 0;
  for (let b = 0; b < batchSize; b++) {
    const xb = b * H * W * C;
    for (let oy = 0; oy < OH; oy++) {
      const y0 = Math.max(0, oy * sh - pt), y1 = Math.min(H, oy * sh - pt + fh);
      for (let ox = 0; ox < OW; ox++, o += C) {
        const x0 = Math.max(0, ox * sw - pl), x1 = Math.min(W, ox * sw - pl + fw);
        best.fill(-Infinity);
        at.fill(-1);
        for (let iy = y0; iy < y1; iy++) {
          for (let ix = x0; ix < x1; ix++) {
            const s = xb + (iy * W + ix) * C;
            for (let c = 0; c < C; c++) {
              const v = xv[s + c];
              if (v > best[c]) {
                best[c] = v;
                at[c] = s + c;
              }
            }
          }
        }
        for (let c = 0; c < C; c++) if (at[c] >= 0) dx[at[c]] += dyv[o + c];
      }
    }
  }
  return out(backend, x.shape, dx);
};

/**
 * PadV2 (tf.pad, Keras's ZeroPadding2D) as row copies. tfjs-cpu computes every output
 * element's coordinates through generic index arithmetic: ResNet152V2's ~50 padding layers
 * took about as long as its ~155 convolutions (1.0 s per 256 images at 32×32).
 */
import { alloc } from "../pool_alloc.ts";
import { allF32, f32, type FastKernel, out } from "../util.ts";

export const padV2: FastKernel = ({ inputs, backend, attrs }) => {
  const { x } = inputs;
  const paddings: [number, number][] = attrs.paddings;
  const value: number = attrs.constantValue ?? 0;
  const s = x.shape, rank = s.length;
  if (!allF32(x) || rank === 0 || paddings.length !== rank) return null;
  if (paddings.some(([b, a]) => b < 0 || a < 0)) return null;
  const os = s.map((d, i) => d + paddings[i][0] + paddings[i][1]);
  const xv = f32(backend, x);
  const r = alloc(os.reduce((p, d) => p * d, 1));
  r.fill(value);
  if (xv.length === 0) return out(backend, os, r);
  // strides of the output; the innermost axis is copied as one contiguous row
  const ostr = new Array<number>(rank);
  ostr[rank - 1] = 1;
  for (let i = rank - 2; i >= 0; i--) ostr[i] = ostr[i + 1] * os[i + 1];
  const row = s[rank - 1];
  const rows = xv.length / row;
  const idx = new Array<number>(rank - 1).fill(0);
  let base = 0;
  for (let i = 0; i < rank; i++) base += paddings[i][0] * ostr[i];
  for (let k = 0; k < rows; k++) {
    let o = base;
    for (let i = 0; i < rank - 1; i++) o += idx[i] * ostr[i];
    r.set(xv.subarray(k * row, (k + 1) * row), o);
    for (let i = rank - 2; i >= 0; i--) {
      if (++idx[i] < s[i]) break;
      idx[i] = 0;
    }
  }
  return out(backend, os, r);
};

/**
 * Training FLOPs per sample of a tfjs model, counted from its layers with the peer bench's
 * convention (`flops.py` in `../shared/peer-bench/`, the PyTorch peer bench beside this
 * repository): forward multiply-adds of conv and dense layers ×2 for FLOPs ×3 for training
 * (forward, input gradient, weight gradient). Pooling, activations, dropout, loss and the
 * optimizer are not counted.
 */
import type * as tf from "@tensorflow/tfjs";

/** Forward multiply-adds per sample of each Conv2D and Dense layer, by layer name. */
export function layerMacs(model: tf.LayersModel): { name: string; macs: number }[] {
  const rows: { name: string; macs: number }[] = [];
  for (const layer of model.layers) {
    const cls = layer.getClassName();
    const outShape = layer.outputShape as number[];
    if (cls === "Conv2D") {
      const [kh, kw, cin, f] = layer.getWeights()[0].shape;
      rows.push({ name: layer.name, macs: outShape[1] * outShape[2] * f * kh * kw * cin });
    } else if (cls === "Dense") {
      const [inp, units] = layer.getWeights()[0].shape;
      rows.push({ name: layer.name, macs: inp * units });
    }
  }
  return rows;
}

/** Training FLOPs per sample: 3 × 2 × forward multiply-adds. */
export function trainFlopsPerSample(model: tf.LayersModel): number {
  return 6 * layerMacs(model).reduce((s, r) => s + r.macs, 0);
}

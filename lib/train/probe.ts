/**
 * Looking inside a training run: per-layer weight and gradient norms, dead ReLU units, the size
 * of the conv stack's output, and what the model predicts. `TrainingProbe` records them during
 * `fit` (its data goes into the run record as `probe.json`); notebook 04 uses them to explain why
 * VGG16 without activations collapses (the charts are in report/diagnostics_charts.ts, the prose
 * in report/vgg16_story.ts).
 */
import * as tf from "@tensorflow/tfjs";
import type { EpochLogs } from "./train.ts";
import type { MnistSplit } from "../data/mnist.ts";
import { type InputFormat, makeBatch, range } from "../data/preprocess.ts";
import { batchLoss } from "./loss.ts";

/** L2 norm of each layer's kernel (layers without a kernel are skipped), in layer order. */
export async function weightNorms(model: tf.LayersModel): Promise<Map<string, number>> {
  const names: string[] = [], norms: tf.Scalar[] = [];
  for (const layer of model.layers) {
    const kernel = layer.getWeights()[0];
    if (!kernel || layer.getWeights().length === 0 || kernel.rank < 2) continue;
    names.push(layer.name);
    norms.push(tf.norm(kernel) as tf.Scalar);
  }
  const values = await readScalars(norms);
  return new Map(names.map((n, i) => [n, values[i]]));
}

/** Reads scalars back in one read (on a GPU, one wait instead of one per value) and frees them. */
async function readScalars(scalars: tf.Scalar[]): Promise<number[]> {
  if (scalars.length === 0) return [];
  const packed = tf.stack(scalars);
  tf.dispose(scalars);
  const values = await packed.data();
  packed.dispose();
  return Array.from(values);
}

/**
 * L2 norm of the loss gradient with respect to each layer's kernel, on one batch, in training
 * mode (as `fit` computes it). Weights are not changed.
 */
export async function gradientNorms(
  model: tf.LayersModel,
  x: tf.Tensor,
  y: tf.Tensor,
): Promise<Map<string, number>> {
  const kernels = new Map<string, tf.LayerVariable>();
  for (const layer of model.layers) {
    const w = layer.trainableWeights[0];
    if (w && w.shape.length >= 2) kernels.set(layer.name, w);
  }
  const vars = [...kernels.values()].map((w) => w.read() as tf.Variable);
  // The loss the model trains with (from logits, or tfjs's clipped form): the gradient `fit` sees.
  const { grads, value } = tf.variableGrads(() => batchLoss(model, x, y, true), vars);
  const names = [...kernels.keys()];
  const norms = names.map((_, i) => {
    const g = grads[vars[i].name];
    return (g ? tf.norm(g) : tf.scalar(0)) as tf.Scalar;
  });
  tf.dispose([value, ...Object.values(grads)]);
  const values = await readScalars(norms);
  return new Map(names.map((n, i) => [n, values[i]]));
}

/** The output of one inner layer on `x` (inference mode). */
function layerOutput(model: tf.LayersModel, layerName: string, x: tf.Tensor): tf.Tensor {
  const output = model.getLayer(layerName).output as tf.SymbolicTensor;
  return tf.model({ inputs: model.inputs, outputs: output }).predict(x) as tf.Tensor;
}

/** Reduces a tensor to one number on the host and frees both. */
async function scalarOf(t: tf.Tensor, reduce: (t: tf.Tensor) => tf.Tensor): Promise<number> {
  const r = tf.tidy(() => reduce(t));
  const v = (await r.data())[0];
  tf.dispose([t, r]);
  return v;
}

/** Fraction of a ReLU layer's units that output zero for every sample of `x` (dead units). */
export async function deadFraction(
  model: tf.LayersModel,
  layerName: string,
  x: tf.Tensor,
): Promise<number> {
  const act = layerOutput(model, layerName, x);
  const units = act.shape[1]!;
  const alive = await scalarOf(act, (a) => tf.sum(tf.cast(tf.greater(tf.max(a, 0), 0), "float32")));
  return 1 - alive / units;
}

/** Largest absolute activation of a layer on `x`: how big the signal has grown. */
export function maxActivation(
  model: tf.LayersModel,
  layerName: string,
  x: tf.Tensor,
): Promise<number> {
  return scalarOf(layerOutput(model, layerName, x), (a) => tf.max(tf.abs(a)));
}

/** One epoch's look inside the network (plain JSON: it goes into run records). */
export interface EpochProbe {
  epoch: number;
  loss: number;
  accuracy: number;
  /** Kernel L2 norm per layer, in layer order. */
  weightNorms: Record<string, number>;
  /** Loss-gradient L2 norm per layer's kernel on the probe batch, in layer order. */
  gradientNorms: Record<string, number>;
  /** Fraction of dead units per ReLU Dense layer. */
  dead: Record<string, number>;
  convOutputMax: number;
}

/** Everything a probe saw: what notebook 04 shows, stored in the run record as `probe.json`. */
export interface ProbeData {
  /** The layer whose output size is tracked (the conv stack's last), and how many convolutions feed it. */
  convOutputLayer: string;
  convLayers: number;
  /** The Dense layers with a ReLU, whose dead units are counted. */
  reluDense: { name: string; units: number }[];
  batchLosses: { step: number; epoch: number; loss: number }[];
  epochs: EpochProbe[];
}

interface LayerLike {
  name: string;
  getClassName(): string;
  getConfig(): Record<string, unknown>;
}

/** The model's structure as the probe needs it: its convolutions and its ReLU Dense layers. */
function probeLayers(model: tf.LayersModel, convOutputLayer: string) {
  const layers = model.layers as unknown as LayerLike[];
  const upTo = layers.findIndex((l) => l.name === convOutputLayer);
  if (upTo < 0) throw new Error(`${model.name} has no layer "${convOutputLayer}" to probe`);
  return {
    convLayers: layers.slice(0, upTo + 1).filter((l) => l.getClassName() === "Conv2D").length,
    reluDense: layers.filter((l) =>
      l.getClassName() === "Dense" && l.getConfig().activation === "relu"
    )
      .map((l) => ({ name: l.name, units: l.getConfig().units as number })),
  };
}

/**
 * Records batch losses and, after every epoch, weight/gradient norms, dead units of the
 * model's ReLU Dense layers and the size of the conv stack's output, on a fixed probe batch.
 * Pass `onBatchEnd` and `onEpochEnd` to `fit`, and the probe itself as a stateful callback
 * (`stateful: [probe]`) so a resumed run keeps what it saw before.
 */
export class TrainingProbe {
  #data: ProbeData;
  #x: tf.Tensor4D;
  #y: tf.Tensor1D;

  constructor(
    probeSplit: MnistSplit,
    format: InputFormat,
    convOutputLayer: string,
    size = 64,
  ) {
    const batch = makeBatch(probeSplit, range(0, Math.min(size, probeSplit.count)), format);
    this.#x = batch.x;
    this.#y = batch.y;
    this.#data = { convOutputLayer, convLayers: 0, reluDense: [], batchLosses: [], epochs: [] };
  }

  /** What the probe has seen so far. */
  get data(): ProbeData {
    return this.#data;
  }

  onBatchEnd = (epoch: number, _batch: number, loss: number): void => {
    const b = this.#data.batchLosses;
    b.push({ step: b.length + 1, epoch: epoch + 1, loss });
  };

  onEpochEnd = async (logs: EpochLogs, model: tf.LayersModel): Promise<void> => {
    Object.assign(this.#data, probeLayers(model, this.#data.convOutputLayer));
    const dead: Record<string, number> = {};
    for (const l of this.#data.reluDense) dead[l.name] = await deadFraction(model, l.name, this.#x);
    this.#data.epochs.push({
      epoch: logs.epoch,
      loss: logs.loss,
      accuracy: logs.accuracy,
      weightNorms: Object.fromEntries(await weightNorms(model)),
      gradientNorms: Object.fromEntries(await gradientNorms(model, this.#x, this.#y)),
      dead,
      convOutputMax: await maxActivation(model, this.#data.convOutputLayer, this.#x),
    });
  };

  saveState(): unknown {
    return this.#data;
  }

  restoreState(state: unknown): void {
    this.#data = state as ProbeData;
  }

  dispose(): void {
    tf.dispose([this.#x, this.#y]);
  }
}

/** The digit a model predicts most often on the test set, and how often. */
export function dominantPrediction(predicted: Uint8Array): { digit: number; share: number } {
  const counts = new Array(10).fill(0);
  for (const p of predicted) counts[p]++;
  const digit = counts.indexOf(Math.max(...counts));
  return { digit, share: counts[digit] / predicted.length };
}

/**
 * A frozen base's forward pass for feature extraction, with the rewrites a graph compiler
 * (TensorFlow's Grappler, oneDNN's graph mode) applies to an inference graph and tfjs-layers
 * does not: a convolution whose only consumer is an inference-mode BatchNormalization takes the
 * normalisation into its kernel and bias, a ReLU after it becomes the convolution's fused
 * activation, and a ZeroPadding2D whose only consumer is a "valid" convolution becomes that
 * convolution's own padding (so the kernels see the real, smaller image and skip the zeros).
 * A BatchNormalization left over (ResNet-v2's pre-activations) runs as one per-channel affine
 * pass with its ReLU (a 1×1 depthwise convolution with bias: one fused op on every backend).
 * ResNet152V2: 100 convolution + BatchNormalization + ReLU runs, 51 paddings, 51 affine passes.
 * Every other layer runs as tfjs-layers runs it (`layer.apply`, inference mode). The outputs
 * equal `model.predict`'s up to float32 rounding (tests/inference_test.ts).
 */
import * as tf from "@tensorflow/tfjs";

type Layer = tf.layers.Layer;

/** A convolution with what was folded into it. */
interface FoldedConv {
  kind: "conv";
  /** The layer whose output this step produces (the last folded one). */
  name: string;
  input: string;
  kernel: tf.Tensor4D;
  bias: tf.Tensor1D | null;
  strides: [number, number];
  pad: "valid" | "same" | [[number, number], [number, number], [number, number], [number, number]];
  activation: "linear" | "relu";
}

/** An inference BatchNormalization (and the ReLU after it) as y = act(x·k + shift). */
interface Affine {
  kind: "affine";
  name: string;
  input: string;
  /** k as a 1×1 depthwise filter [1, 1, C, 1]. */
  scale: tf.Tensor4D;
  shift: tf.Tensor1D;
  activation: "linear" | "relu";
}

/** A layer run as it is. */
interface Plain {
  kind: "layer";
  name: string;
  inputs: string[];
  layer: Layer;
}

type Step = FoldedConv | Affine | Plain;

/** What the rewrite did, for the line a notebook prints. */
export interface InferenceFolds {
  /** BatchNormalizations folded into the convolution before them. */
  batchNorms: number;
  /** ReLUs fused into the convolution or BatchNormalization before them. */
  relus: number;
  /** ZeroPadding2Ds that became their convolution's padding. */
  paddings: number;
  /** BatchNormalizations left on their own, run as one per-channel affine pass. */
  affines: number;
}

/** A model's inference pass after the rewrites; `dispose` frees the folded weights. */
export interface InferenceGraph {
  run(x: tf.Tensor): tf.Tensor;
  folds: InferenceFolds;
  dispose(): void;
}

// deno-lint-ignore no-explicit-any
type Config = Record<string, any>;

function className(l: Layer): string {
  return l.getClassName();
}

function inboundNames(l: Layer): string[] {
  return l.inboundNodes[0]?.inboundLayers.map((p) => p.name) ?? [];
}

/** Convolutions this rewrite can express with `tf.fused.conv2d`. */
function foldableConv(l: Layer): boolean {
  if (className(l) !== "Conv2D") return false;
  const c = l.getConfig() as Config;
  const dil = [c.dilationRate ?? 1].flat();
  return c.dataFormat === "channelsLast" && dil.every((d) => d === 1) &&
    ["linear", "relu"].includes(c.activation ?? "linear");
}

function isRelu(l: Layer | undefined): boolean {
  return l !== undefined && className(l) === "Activation" &&
    (l.getConfig() as Config).activation === "relu";
}

/** An inference-mode BatchNormalization over the last axis. */
function isChannelBatchNorm(l: Layer | undefined): boolean {
  if (l === undefined || className(l) !== "BatchNormalization") return false;
  const axis = (l.getConfig() as Config).axis;
  return axis === -1 || axis === 3;
}

/**
 * The inference pass of `model` with the folds above. Models whose layers are used more than
 * once (shared layers) or have several inputs or outputs are run by `model.predict` unchanged.
 */
export async function inferenceGraph(model: tf.LayersModel): Promise<InferenceGraph> {
  const folds: InferenceFolds = { batchNorms: 0, relus: 0, paddings: 0, affines: 0 };
  const shared = model.layers.some((l) => l.inboundNodes.length > 1);
  if (shared || model.inputs.length !== 1 || model.outputs.length !== 1) {
    return { run: (x) => model.predict(x) as tf.Tensor, folds, dispose() {} };
  }
  const byName = new Map(model.layers.map((l) => [l.name, l]));
  const consumers = new Map<string, string[]>();
  for (const l of model.layers) {
    for (const i of inboundNames(l)) consumers.set(i, [...(consumers.get(i) ?? []), l.name]);
  }
  const outputName = model.outputLayers[0].name;
  /** The single consumer of `name`, unless it is the model's output. */
  const onlyConsumer = (name: string): Layer | undefined => {
    const c = consumers.get(name) ?? [];
    return c.length === 1 && name !== outputName ? byName.get(c[0]) : undefined;
  };

  const absorbed = new Set<string>();
  const steps: Step[] = [];
  for (const l of model.layers) {
    if (className(l) === "InputLayer" || absorbed.has(l.name)) continue;
    const inputs = inboundNames(l);
    if (
      className(l) === "ZeroPadding2D" && (l.getConfig() as Config).dataFormat === "channelsLast"
    ) {
      const next = onlyConsumer(l.name);
      if (next && foldableConv(next) && (next.getConfig() as Config).padding === "valid") {
        absorbed.add(l.name);
        folds.paddings++;
        continue; // the convolution takes the padding (below)
      }
    }
    if (isChannelBatchNorm(l)) {
      steps.push(await affineStep(l, inputs[0], absorbed, onlyConsumer, folds));
      continue;
    }
    if (!foldableConv(l)) {
      steps.push({ kind: "layer", name: l.name, inputs, layer: l });
      continue;
    }
    steps.push(await foldConv(l, inputs[0], byName, absorbed, onlyConsumer, folds));
  }

  // how many steps still read each output, so intermediates are freed after their last use
  const uses = new Map<string, number>();
  const inputsOf = (s: Step) => s.kind === "layer" ? s.inputs : [s.input];
  for (const s of steps) for (const i of inputsOf(s)) uses.set(i, (uses.get(i) ?? 0) + 1);
  const inputName = model.inputLayers[0].name;
  const last = steps[steps.length - 1].name;

  return {
    folds,
    run(x: tf.Tensor): tf.Tensor {
      const live = new Map<string, tf.Tensor>([[inputName, x]]);
      const left = new Map(uses);
      const read = (name: string): tf.Tensor => {
        const t = live.get(name);
        if (!t) throw new Error(`inferenceGraph: ${name} was not computed`);
        return t;
      };
      const release = (name: string) => {
        const n = left.get(name)! - 1;
        left.set(name, n);
        if (n === 0 && name !== inputName) {
          live.get(name)!.dispose();
          live.delete(name);
        }
      };
      for (const s of steps) {
        const y = s.kind === "conv"
          ? tf.fused.conv2d({
            x: read(s.input) as tf.Tensor4D,
            filter: s.kernel,
            strides: s.strides,
            pad: s.pad,
            bias: s.bias ?? undefined,
            activation: s.activation,
          })
          : s.kind === "affine"
          ? tf.fused.depthwiseConv2d({
            x: read(s.input) as tf.Tensor4D,
            filter: s.scale,
            strides: 1,
            pad: "valid",
            bias: s.shift,
            activation: s.activation,
          })
          : tf.tidy(() => {
            const ins = s.inputs.map(read);
            return s.layer.apply(ins.length === 1 ? ins[0] : ins) as tf.Tensor;
          });
        live.set(s.name, y);
        for (const i of inputsOf(s)) release(i);
      }
      return read(last);
    },
    dispose() {
      for (const s of steps) {
        if (s.kind === "conv") tf.dispose([s.kernel, s.bias ?? []].flat());
        if (s.kind === "affine") tf.dispose([s.scale, s.shift]);
      }
    },
  };
}

/** One convolution with its absorbed padding before it and BatchNormalization/ReLU after it. */
async function foldConv(
  conv: Layer,
  input: string,
  byName: Map<string, Layer>,
  absorbed: Set<string>,
  onlyConsumer: (name: string) => Layer | undefined,
  folds: InferenceFolds,
): Promise<FoldedConv> {
  const c = conv.getConfig() as Config;
  const strides = [c.strides].flat() as number[];
  let pad: FoldedConv["pad"] = c.padding;
  const before = byName.get(input);
  if (before && absorbed.has(before.name) && className(before) === "ZeroPadding2D") {
    const [[t, b], [l, r]] = (before.getConfig() as Config).padding as number[][];
    pad = [[0, 0], [t, b], [l, r], [0, 0]];
    input = inboundNames(before)[0];
  }
  const [w, b] = conv.getWeights();
  let kernel = w.clone() as tf.Tensor4D;
  let bias = c.useBias ? b.clone() as tf.Tensor1D : null;
  let activation: FoldedConv["activation"] = c.activation ?? "linear";
  let name = conv.name;

  const bn = activation === "linear" ? onlyConsumer(name) : undefined;
  if (isChannelBatchNorm(bn)) {
    [kernel, bias] = await foldBatchNorm(kernel, bias, bn!);
    absorbed.add(bn!.name);
    folds.batchNorms++;
    name = bn!.name;
  }
  const relu = activation === "linear" ? absorbRelu(name, absorbed, onlyConsumer, folds) : null;
  if (relu) [activation, name] = ["relu", relu];
  return {
    kind: "conv",
    name,
    input,
    kernel,
    bias,
    strides: [strides[0], strides[1] ?? strides[0]],
    pad,
    activation,
  };
}

/** Takes the ReLU that is `name`'s only consumer into the step before it; its name, or null. */
function absorbRelu(
  name: string,
  absorbed: Set<string>,
  onlyConsumer: (name: string) => Layer | undefined,
  folds: InferenceFolds,
): string | null {
  const act = onlyConsumer(name);
  if (!isRelu(act)) return null;
  absorbed.add(act!.name);
  folds.relus++;
  return act!.name;
}

/** An inference BatchNormalization as y = x·k + shift per channel, in float64. */
async function bnAffine(bn: Layer): Promise<{ k: Float64Array; shift: Float64Array }> {
  const cfg = bn.getConfig() as Config;
  // read asynchronously: synchronous reads fail on WebGPU in Deno
  const ws = await Promise.all(bn.getWeights().map(async (t) => (await t.data()) as Float32Array));
  // tfjs-layers' weight order: gamma (scale), beta (center), moving mean, moving variance
  let i = 0;
  const gamma = cfg.scale === false ? null : ws[i++];
  const beta = cfg.center === false ? null : ws[i++];
  const mean = ws[i++], variance = ws[i++];
  const eps = cfg.epsilon as number;
  const k = new Float64Array(mean.length), shift = new Float64Array(mean.length);
  for (let o = 0; o < mean.length; o++) {
    k[o] = (gamma ? gamma[o] : 1) / Math.sqrt(variance[o] + eps);
    shift[o] = (beta ? beta[o] : 0) - mean[o] * k[o];
  }
  return { k, shift };
}

/**
 * y = γ·(conv(x, W) + b − μ)/√(σ² + ε) + β as one convolution: W·k and b·k + β − μ·k with
 * k = γ/√(σ² + ε) per output channel, computed in float64 and rounded once.
 */
async function foldBatchNorm(
  kernel: tf.Tensor4D,
  bias: tf.Tensor1D | null,
  bn: Layer,
): Promise<[tf.Tensor4D, tf.Tensor1D]> {
  const { k, shift } = await bnAffine(bn);
  const outC = kernel.shape[3];
  const b0 = bias ? await bias.data() : new Float32Array(outC);
  const b = new Float32Array(outC);
  for (let o = 0; o < outC; o++) b[o] = b0[o] * k[o] + shift[o];
  const w = (await kernel.data()) as Float32Array;
  const scaled = new Float32Array(w.length);
  for (let j = 0; j < w.length; j++) scaled[j] = w[j] * k[j % outC];
  const shape = kernel.shape;
  tf.dispose([kernel, bias ?? []].flat());
  return [tf.tensor4d(scaled, shape), tf.tensor1d(b)];
}

/** A BatchNormalization not after a convolution, with the ReLU after it when it is its only consumer. */
async function affineStep(
  bn: Layer,
  input: string,
  absorbed: Set<string>,
  onlyConsumer: (name: string) => Layer | undefined,
  folds: InferenceFolds,
): Promise<Affine> {
  const { k, shift } = await bnAffine(bn);
  folds.affines++;
  const relu = absorbRelu(bn.name, absorbed, onlyConsumer, folds);
  return {
    kind: "affine",
    name: relu ?? bn.name,
    input,
    scale: tf.tensor4d(Float32Array.from(k), [1, 1, k.length, 1]),
    shift: tf.tensor1d(Float32Array.from(shift)),
    activation: relu ? "relu" : "linear",
  };
}

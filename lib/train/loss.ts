/**
 * The training loss, as the study's Keras 2.x computes it. A model that ends in
 * `Dense(10, activation="softmax")` compiled with `sparse_categorical_crossentropy` is trained
 * by Keras from the softmax's logits (it keeps them on the output tensor, `_keras_logits`):
 * a numerically stable log-softmax whose gradient, softmax − one-hot, never vanishes.
 * tfjs instead takes the log of the probabilities clipped to [ε, 1 − ε]; once the softmax
 * saturates on a wrong class the clip passes back a gradient of exactly zero. Both are here:
 * "logits" (Keras's, the default) and "clipped" (tfjs's, kept as a finding worth showing).
 *
 * The models keep Keras's structure (the last layer is still Dense with softmax); the logits
 * are the last layer's pre-activation, computed from its own kernel and bias.
 */
import * as tf from "@tensorflow/tfjs";

/** Which cross-entropy a model trains and is evaluated with. */
export type LossKind = "logits" | "clipped";

export const LOSS_KINDS: readonly LossKind[] = ["logits", "clipped"];

/** Keras's and tfjs's ε for clipping probabilities. */
export const EPSILON = 1e-7;

const kinds = new WeakMap<tf.LayersModel, LossKind>();

/** Sets the loss a model trains with (compileStudy does this). */
export function setLoss(model: tf.LayersModel, kind: LossKind): void {
  if (kind === "logits" && !softmaxHead(model)) {
    throw new Error(
      `${model.name}: the "logits" loss needs a last layer Dense(…, activation="softmax")`,
    );
  }
  kinds.set(model, kind);
}

/** The loss a model trains with: what `setLoss` said, else "logits" where the model allows it. */
export function lossOf(model: tf.LayersModel): LossKind {
  return kinds.get(model) ?? (softmaxHead(model) ? "logits" : "clipped");
}

interface DenseLike {
  kernel?: tf.LayerVariable;
  bias?: tf.LayerVariable;
  useBias?: boolean;
  activation?: { getClassName(): string };
  getClassName(): string;
}

/** The last layer when it is Dense with a softmax activation, else null. */
function softmaxHead(model: tf.LayersModel): DenseLike | null {
  const last = model.layers.at(-1) as unknown as DenseLike | undefined;
  if (!last || last.getClassName() !== "Dense") return null;
  return last.activation?.getClassName().toLowerCase() === "softmax" ? last : null;
}

const trunks = new WeakMap<tf.LayersModel, tf.LayersModel | null>();

/** Everything before the last layer, sharing its weights (null when the last layer is the input's). */
function trunkOf(model: tf.LayersModel): tf.LayersModel | null {
  if (!trunks.has(model)) {
    const before = model.layers.at(-2);
    trunks.set(
      model,
      before
        ? tf.model({ inputs: model.inputs, outputs: before.output as tf.SymbolicTensor })
        : null,
    );
  }
  return trunks.get(model)!;
}

/**
 * The pre-softmax outputs of a model whose last layer is Dense(softmax): the same network
 * and weights, the last activation left out. `training` runs dropout (and batch statistics)
 * as `fit` does.
 */
export function logits(model: tf.LayersModel, x: tf.Tensor, training = false): tf.Tensor2D {
  const head = softmaxHead(model);
  if (!head?.kernel) {
    throw new Error(`${model.name}: no Dense(softmax) last layer to take logits of`);
  }
  return tf.tidy(() => {
    const trunk = trunkOf(model);
    const h = trunk ? trunk.apply(x, { training }) as tf.Tensor : x;
    const flat = h.rank === 2 ? h as tf.Tensor2D : h.reshape([h.shape[0], -1]) as tf.Tensor2D;
    const z = tf.matMul(flat, head.kernel!.read() as tf.Tensor2D);
    return (head.useBias !== false && head.bias ? tf.add(z, head.bias.read()) : z) as tf.Tensor2D;
  });
}

/** Mean sparse cross-entropy from logits: log-sum-exp(z) − z[label], gradient softmax − one-hot. */
export function crossEntropyFromLogits(labels: tf.Tensor, z: tf.Tensor2D): tf.Scalar {
  return tf.tidy(() => {
    const oneHot = tf.oneHot(tf.cast(labels, "int32"), z.shape[1]);
    return tf.losses.softmaxCrossEntropy(oneHot, z, undefined, 0, tf.Reduction.MEAN) as tf.Scalar;
  });
}

/** Mean sparse cross-entropy of probabilities clipped to [ε, 1 − ε] (tfjs's and our old form). */
export function crossEntropyClipped(labels: tf.Tensor, probs: tf.Tensor2D): tf.Scalar {
  return tf.tidy(() => {
    const picked = tf.sum(tf.mul(tf.oneHot(tf.cast(labels, "int32"), probs.shape[1]), probs), 1);
    return tf.neg(tf.mean(tf.log(tf.clipByValue(picked, EPSILON, 1 - EPSILON)))) as tf.Scalar;
  });
}

/** The model's training loss on one batch (a scalar tensor), as `fit` computes it. */
export function batchLoss(
  model: tf.LayersModel,
  x: tf.Tensor,
  y: tf.Tensor,
  training = true,
): tf.Scalar {
  return lossOf(model) === "logits"
    ? tf.tidy(() => crossEntropyFromLogits(y, logits(model, x, training)))
    : tf.tidy(() => crossEntropyClipped(y, model.apply(x, { training }) as tf.Tensor2D));
}

/** Fraction of rows whose largest output is the label. */
function batchAccuracy(labels: tf.Tensor, outputs: tf.Tensor2D): tf.Scalar {
  return tf.tidy(() =>
    tf.mean(tf.cast(tf.equal(tf.argMax(outputs, 1), tf.cast(labels, "int32")), "float32"))
  );
}

/**
 * One optimizer step on a batch with the model's loss; returns [loss, accuracy] as Keras's
 * `train_on_batch` does (both measured before the update). The "clipped" loss is tfjs's own
 * `trainOnBatch` with the model's compiled loss.
 */
export async function trainStep(
  model: tf.LayersModel,
  x: tf.Tensor,
  y: tf.Tensor,
): Promise<[number, number]> {
  if (lossOf(model) === "clipped") return await model.trainOnBatch(x, y) as [number, number];
  const { loss, accuracy } = trainStepOnDevice(model, x, y);
  const [l, a] = await Promise.all([loss.data(), accuracy.data()]);
  tf.dispose([loss, accuracy]);
  return [l[0], a[0]];
}

/**
 * `trainStep` that reads nothing back: loss and accuracy stay on the backend as scalars (the
 * caller reads and disposes them), so a GPU is not waited on. The "clipped" loss is the model's
 * compiled tfjs loss, as `trainOnBatch` computes it, without `trainOnBatch`'s per-step read.
 */
export function trainStepOnDevice(
  model: tf.LayersModel,
  x: tf.Tensor,
  y: tf.Tensor,
): { loss: tf.Scalar; accuracy: tf.Scalar } {
  const variables = model.trainableWeights.map((w) => w.read() as tf.Variable);
  const clipped = lossOf(model) === "clipped";
  let accuracy: tf.Scalar | undefined;
  const loss = model.optimizer.minimize(
    () => {
      if (clipped) {
        const p = model.apply(x, { training: true }) as tf.Tensor2D;
        accuracy = tf.keep(batchAccuracy(y, p));
        return tf.mean(compiledLoss(model)(y, p)) as tf.Scalar;
      }
      const z = logits(model, x, true);
      accuracy = tf.keep(batchAccuracy(y, z));
      return crossEntropyFromLogits(y, z);
    },
    true,
    variables,
  )!;
  return { loss, accuracy: accuracy! };
}

/** A compiled tfjs-layers loss: per-sample values from labels and outputs. */
type CompiledLoss = (yTrue: tf.Tensor, yPred: tf.Tensor) => tf.Tensor;

/** The loss `model` was compiled with (a Sequential keeps it on its inner model). */
function compiledLoss(model: tf.LayersModel): CompiledLoss {
  type Compiled = { lossFunctions?: CompiledLoss[]; model?: Compiled };
  const m = model as unknown as Compiled;
  const fn = (m.lossFunctions ?? m.model?.lossFunctions)?.[0];
  if (!fn) throw new Error(`${model.name}: compile the model before training it`);
  return fn;
}

/** Outputs for scoring: logits for a "logits" model, softmax probabilities for a "clipped" one. */
export function scoringOutputs(model: tf.LayersModel, x: tf.Tensor): tf.Tensor2D {
  return lossOf(model) === "logits" ? logits(model, x, false) : model.predict(x) as tf.Tensor2D;
}

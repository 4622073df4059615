/**
 * An optimizer's whole state, read and put back exactly — for the per-epoch backup
 * (lib/runs/backup.ts) and for the learning-rate finder, which must leave a model as it found it
 * (lib/train/lr_finder.ts). tfjs's `getWeights` hands out the moments and a step count; Adam's
 * running β powers (β₁ᵗ and β₂ᵗ, kept as running products) are not among them, and `setWeights`
 * would recompute them with pow(), which differs in the last bits. So they travel as two more
 * named tensors, `__accBeta1` and `__accBeta2`.
 */
import * as tf from "@tensorflow/tfjs";

/** A tensor with its name, as optimizers hand out their state. */
export interface NamedTensor {
  name: string;
  tensor: tf.Tensor;
}

/** One state tensor's values, copied to the host. */
export interface StateValues {
  name: string;
  shape: number[];
  dtype: tf.DataType;
  data: tf.TypedArray;
}

/** The tfjs optimizer internals these functions use (not in its public types). */
interface OptimizerWithState {
  getWeights(): Promise<NamedTensor[]>;
  setWeights(w: NamedTensor[]): Promise<void>;
  accBeta1?: tf.Variable;
  accBeta2?: tf.Variable;
}

const BETA1 = "__accBeta1", BETA2 = "__accBeta2";

function optimizerOf(model: tf.LayersModel): OptimizerWithState {
  const opt = model.optimizer as unknown as OptimizerWithState | undefined;
  if (!opt) throw new Error(`${model.name}: compile the model before reading its optimizer`);
  return opt;
}

/**
 * The optimizer's state as host copies, Adam's running β powers last. Copies, not views: the
 * fused Adam kernels update their buffers in place.
 */
export async function readOptimizerState(model: tf.LayersModel): Promise<StateValues[]> {
  const opt = optimizerOf(model);
  const state = await opt.getWeights();
  // getWeights makes a fresh scalar for the step count (the rest are the optimizer's own):
  // kept, it would be one tensor more at every read
  const fresh = state.filter((n) => n.name === "iter").map((n) => n.tensor);
  if (opt.accBeta1 && opt.accBeta2) {
    state.push({ name: BETA1, tensor: opt.accBeta1 }, { name: BETA2, tensor: opt.accBeta2 });
  }
  try {
    return await Promise.all(state.map(async ({ name, tensor }) => ({
      name,
      shape: tensor.shape,
      dtype: tensor.dtype,
      data: await tensor.data(),
    })));
  } finally {
    tf.dispose(fresh);
  }
}

/**
 * Puts back a state `readOptimizerState` read (as tensors). The state it replaces is disposed, and
 * so are the given tensors once the optimizer holds its own references: each buffer is then
 * singly owned, which the in-place Adam update relies on.
 */
export async function writeOptimizerState(
  model: tf.LayersModel,
  state: NamedTensor[],
): Promise<void> {
  const opt = optimizerOf(model);
  const replaced = (await opt.getWeights()).map((n) => n.tensor);
  await opt.setWeights(state.filter((n) => n.name !== BETA1 && n.name !== BETA2));
  for (const b of state) {
    if (b.name === BETA1) opt.accBeta1?.assign(b.tensor);
    if (b.name === BETA2) opt.accBeta2?.assign(b.tensor);
  }
  tf.dispose([...replaced, ...state.map((n) => n.tensor)]);
}

/**
 * Every training default the study relied on, Keras 2.x (TensorFlow 2.x, early 2023) against
 * this project: what Keras does, what we do, and whether they are the same. Each row is checked
 * against the implementation in tests/keras_defaults_test.ts; notebook 04 shows the table.
 */
import pl from "nodejs-polars";

export interface DefaultRow {
  setting: string;
  keras: string;
  ours: string;
  /** "same", or "differs → what we do about it". */
  verdict: string;
}

export const KERAS_DEFAULTS: DefaultRow[] = [
  {
    setting: "loss behind Dense(10, softmax)",
    keras: "sparse_categorical_crossentropy from the softmax's logits (`_keras_logits`): " +
      "log-sum-exp(z) − z[label], gradient softmax − one-hot",
    ours:
      "the same, from the last layer's pre-activation (lib/train/loss.ts), in training and evaluation",
    verdict: "differed (tfjs clips probabilities to [1e-7, 1 − 1e-7]) → we use Keras's form; " +
      'tfjs\'s stays available as loss "clipped"',
  },
  {
    setting: "Adam β1, β2, ε",
    keras: "β1 0.9, β2 0.999, ε 1e-7, learning rate 0.001",
    ours: "β1 0.9, β2 0.999, ε 1e-7, learning rate 0.001",
    verdict: "same",
  },
  {
    setting: "Adam bias correction and ε placement",
    keras: "w −= lr·√(1−β2ᵗ)/(1−β1ᵗ) · m / (√v + ε)",
    ours: "w −= lr·√(1−β2ᵗ)/(1−β1ᵗ) · m / (√v + ε)",
    verdict: "differed (tfjs: lr·m̂/(√v̂ + ε), ε after the correction) → we use Keras's form",
  },
  {
    setting: "kernel and bias initialisers",
    keras: "Glorot uniform kernels, zero biases (Dense and Conv2D)",
    ours: "Glorot uniform kernels (seeded per layer), zero biases",
    verdict: "same",
  },
  {
    setting: "Dropout",
    keras: "inverted dropout: active in fit only, kept units scaled by 1/(1 − rate)",
    ours: "tfjs's Dropout: active in training steps only, kept units scaled by 1/(1 − rate)",
    verdict: "same",
  },
  {
    setting: "shuffling",
    keras:
      "fit(shuffle=True): a new permutation of the training set every epoch, last batch partial",
    ours: "a new seeded permutation every epoch, last batch partial",
    verdict: "same",
  },
  {
    setting: "epoch loss and accuracy",
    keras:
      "the mean over the epoch's batches weighted by batch size (metrics measured before each update)",
    ours: "the mean over the epoch's batches weighted by batch size (measured before each update)",
    verdict: "same",
  },
  {
    setting: "EarlyStopping(monitor='loss', patience=3)",
    keras: "counts epochs without improvement (min_delta 0), never stops after the first epoch",
    ours: "the same state machine (lib/train/train.ts EarlyStopping)",
    verdict: "same",
  },
  {
    setting: "BatchNormalization (the BN fix)",
    keras: "momentum 0.99, ε 1e-3; batch statistics in training, moving averages in inference",
    ours: "tfjs's BatchNormalization: momentum 0.99, ε 1e-3, the same two modes",
    verdict: "same",
  },
];

/** The table for a notebook. */
export function kerasDefaultsFrame(): pl.DataFrame {
  return pl.DataFrame(KERAS_DEFAULTS);
}

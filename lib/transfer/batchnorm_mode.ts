/**
 * Why the transfer notebooks cache a frozen base's features: tfjs's `fit` runs every layer in
 * training mode, so a frozen base's BatchNorm normalises with batch statistics, while Keras (and the
 * feature cache) run it in inference mode with its moving statistics. This measures the difference.
 */
import * as tf from "@tensorflow/tfjs";

/**
 * How far the base's output moves when its BatchNorm layers run in training mode (batch
 * statistics, what tfjs's `fit` does even in a frozen base) instead of inference mode (moving
 * statistics, what Keras does for a frozen base and what the feature cache uses): ‖train − infer‖ / ‖infer‖.
 */
export async function batchNormModeGap(base: tf.LayersModel, x: tf.Tensor4D): Promise<number> {
  const ratio = tf.tidy(() => {
    const infer = base.predict(x) as tf.Tensor;
    const train = base.apply(x, { training: true }) as tf.Tensor;
    return tf.div(tf.norm(tf.sub(train, infer)), tf.maximum(tf.norm(infer), 1e-12));
  });
  const [value] = await ratio.data();
  ratio.dispose();
  return value;
}

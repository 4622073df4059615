import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import {
  batchLoss,
  crossEntropyClipped,
  crossEntropyFromLogits,
  logits,
  lossOf,
  setLoss,
  trainStep,
} from "../lib/train/loss.ts";
import { scoreLogits } from "../lib/train/evaluate.ts";
import { buildBaseline } from "../lib/models/baseline.ts";

await tf.setBackend("cpu");

/** log-sum-exp(z) − z[label] in float64: the independent reference for the loss value. */
function lse64(z: number[], label: number): number {
  const m = Math.max(...z);
  return m + Math.log(z.reduce((s, v) => s + Math.exp(v - m), 0)) - z[label];
}

function softmax64(z: number[]): number[] {
  const m = Math.max(...z);
  const e = z.map((v) => Math.exp(v - m));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / s);
}

/** A one-layer net Dense(3, softmax) on 2 inputs with given weights, plain SGD. */
function tinyNet(kernel: number[][], bias: number[], lr: number): tf.Sequential {
  const m = tf.sequential();
  m.add(tf.layers.dense({ inputShape: [2], units: 3, activation: "softmax", name: "out" }));
  m.setWeights([tf.tensor2d(kernel), tf.tensor1d(bias)]);
  m.compile({
    optimizer: tf.train.sgd(lr),
    loss: "sparseCategoricalCrossentropy",
    metrics: ["accuracy"],
  });
  return m;
}

Deno.test("from logits: the loss value is log-sum-exp(z) − z[label] computed in float64", async () => {
  const z = [[2.5, -1, 0.3, 7.1], [-40, 60, 3, 0], [0.1, 0.2, 0.3, 0.4]];
  const labels = [0, 0, 3];
  const loss = crossEntropyFromLogits(tf.tensor1d(labels), tf.tensor2d(z));
  const want = labels.reduce((s, l, i) => s + lse64(z[i], l), 0) / labels.length;
  assert.ok(
    Math.abs((await loss.data())[0] - want) < 1e-5 * want,
    `${await loss.data()} vs ${want}`,
  );
  // The host-side scorer (evaluate's) agrees to float64 precision.
  const scored = scoreLogits(Float32Array.from(z.flat()), Uint8Array.from(labels), 4);
  assert.ok(Math.abs(scored.loss - want) < 1e-9 * want);
  assert.deepEqual([...scored.predicted], [3, 1, 3]);
  assert.ok(Math.abs(scored.probabilities[3] - softmax64(z[0])[3]) < 1e-6);
});

Deno.test("saturated softmax: the logits loss passes back softmax − one-hot, the clipped one zero", async () => {
  // The softmax is saturated on class 1 (p ≈ 1) while the label is 0 (p ≈ e^-100 ≈ 0).
  const z = tf.tensor2d([[0, 100, -20]]);
  const y = tf.tensor1d([0]);
  const gLogits = tf.grad((zz: tf.Tensor) => crossEntropyFromLogits(y, zz as tf.Tensor2D))(z);
  const want = softmax64([0, 100, -20]).map((p, c) => p - (c === 0 ? 1 : 0));
  const got = [...await gLogits.data()];
  got.forEach((g, c) => assert.ok(Math.abs(g - want[c]) < 1e-6, `class ${c}: ${g} vs ${want[c]}`));
  assert.ok(Math.abs(got[0] + 1) < 1e-6, "the label's logit is pushed up with gradient −1");
  // tfjs's form: the probabilities are clipped to [ε, 1−ε]; in the clipped region the gradient is 0.
  const gClipped = tf.grad((zz: tf.Tensor) =>
    crossEntropyClipped(y, tf.softmax(zz) as tf.Tensor2D)
  )(z);
  assert.deepEqual([...await gClipped.data()].map((g) => Math.abs(g)), [0, 0, 0]);
});

Deno.test("training steps move the weights as hand-derived: W −= lr·xᵀ(softmax − onehot)/n", async () => {
  const kernel = [[0.5, -0.2, 0.1], [0.3, 0.8, -0.6]];
  const bias = [0.05, -0.1, 0];
  const x = [[1, 2], [-0.5, 0.25]];
  const labels = [2, 0];
  const lr = 0.5;
  // Reference in float64: two SGD steps of the from-logits cross-entropy.
  let W = kernel.map((r) => [...r]), b = [...bias];
  for (let step = 0; step < 2; step++) {
    const gW = W.map((r) => r.map(() => 0)), gb = b.map(() => 0);
    x.forEach((xi, i) => {
      const z = [0, 1, 2].map((c) => xi[0] * W[0][c] + xi[1] * W[1][c] + b[c]);
      const d = softmax64(z).map((p, c) => (p - (c === labels[i] ? 1 : 0)) / x.length);
      d.forEach((dc, c) => {
        gW[0][c] += xi[0] * dc;
        gW[1][c] += xi[1] * dc;
        gb[c] += dc;
      });
    });
    W = W.map((r, i) => r.map((w, c) => w - lr * gW[i][c]));
    b = b.map((v, c) => v - lr * gb[c]);
  }
  const net = tinyNet(kernel, bias, lr);
  setLoss(net, "logits");
  for (let step = 0; step < 2; step++) await trainStep(net, tf.tensor2d(x), tf.tensor1d(labels));
  const [gotW, gotB] = await Promise.all(net.getWeights().map((t) => t.data()));
  W.flat().forEach((w, i) => assert.ok(Math.abs(gotW[i] - w) < 1e-5, `W[${i}] ${gotW[i]} vs ${w}`));
  b.forEach((v, i) => assert.ok(Math.abs(gotB[i] - v) < 1e-5, `b[${i}] ${gotB[i]} vs ${v}`));

  // A saturated net: the logits loss still moves the weights; tfjs's clipped loss cannot.
  const sat = [[50, -50, 0], [0, 0, 0]];
  const xs = tf.tensor2d([[2, 0]]), ys = tf.tensor1d([1]); // label 1, softmax ≈ one-hot on 0
  const clipped = tinyNet(sat, [0, 0, 0], lr);
  setLoss(clipped, "clipped");
  await trainStep(clipped, xs, ys);
  assert.deepEqual([...await clipped.getWeights()[0].data()], sat.flat(), "clipped: no change");
  const faithful = tinyNet(sat, [0, 0, 0], lr);
  setLoss(faithful, "logits");
  await trainStep(faithful, xs, ys);
  const moved = await faithful.getWeights()[0].data();
  // ∂L/∂W[0][0] = x0·(p0 − 0) ≈ 2, ∂L/∂W[0][1] = x0·(p1 − 1) ≈ −2: each moves by lr·2 = 1.
  assert.ok(Math.abs(moved[0] - 49) < 1e-4 && Math.abs(moved[1] + 49) < 1e-4, `${moved}`);
});

Deno.test("the study's models train from logits by default and keep Dense(10, softmax) last", async () => {
  const model = buildBaseline({ seed: 1 });
  assert.equal(lossOf(model), "logits");
  const last = model.layers.at(-1)!.getConfig();
  assert.equal(last.activation, "softmax");
  assert.equal(model.countParams(), 1_407_178);
  // The logits are the pre-softmax outputs: softmax(logits) equals predict() (inference mode).
  const x = tf.randomUniform([3, 32, 32, 3], 0, 1, "float32", 7);
  const [p, z] = [model.predict(x) as tf.Tensor, logits(model, x)];
  const diff = await tf.max(tf.abs(tf.sub(tf.softmax(z), p))).data();
  assert.ok(diff[0] < 1e-6, `softmax(logits) vs predict: ${diff[0]}`);
  assert.equal(lossOf(buildBaseline({ seed: 1, loss: "clipped" })), "clipped");
  // batchLoss in inference mode equals the float64 cross-entropy of those logits.
  const y = tf.tensor1d([3, 1, 4]);
  const zs = [...await z.data()];
  const want = [3, 1, 4].reduce((s, l, i) => s + lse64(zs.slice(i * 10, i * 10 + 10), l), 0) / 3;
  const got = (await batchLoss(model, x, y, false).data())[0];
  assert.ok(Math.abs(got - want) < 1e-4 * Math.max(1, want), `${got} vs ${want}`);
});

Deno.test("setLoss refuses the logits loss for a model without a softmax Dense head", () => {
  const m = tf.sequential();
  m.add(tf.layers.dense({ inputShape: [2], units: 3, activation: "relu" }));
  assert.throws(() => setLoss(m, "logits"), /Dense\(…, activation="softmax"\)/);
  assert.equal(lossOf(m), "clipped");
});

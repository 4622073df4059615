import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import {
  FASTAI_LR_FIND,
  floorEnd,
  lrFind,
  type LrFindPoint,
  type LrFindSettings,
  smoothLosses,
  steepestRate,
  sweepRate,
} from "../lib/train/lr_finder.ts";
import type { BatchSource } from "../lib/train/evaluate.ts";

await tf.setBackend("cpu");

// Least squares y ≈ Xw with tfjs's mean squared error L(w) = ¼·|Xw − y|² over these four rows.
// By hand: XᵀX = [[6, 4], [4, 6]], so the Hessian 2/4·XᵀX = [[3, 2], [2, 3]] has eigenvalues
// 5 (along (1, 1)) and 1 (along (1, −1)). Plain gradient descent on a quadratic multiplies the
// error along an eigenvector of eigenvalue λ by (1 − lr·λ) per step, so it diverges exactly
// when lr > 2/λmax = 0.4.
const X = [[2, 1], [1, 2], [0, 1], [1, 0]];
const LAMBDA_MAX_BY_HAND = 5;

/** λmax of 2/n·XᵀX by power iteration in plain JS (independent of tfjs). */
function lambdaMax(x: number[][]): number {
  const n = x.length, d = x[0].length;
  const h = Array.from(
    { length: d },
    (_, i) => Array.from({ length: d }, (_, j) => (2 / n) * x.reduce((s, r) => s + r[i] * r[j], 0)),
  );
  let v = Array.from({ length: d }, (_, i) => 1 + i);
  let lambda = 0;
  for (let it = 0; it < 200; it++) {
    const hv = h.map((row) => row.reduce((s, hij, j) => s + hij * v[j], 0));
    const norm = Math.hypot(...hv);
    lambda = hv.reduce((s, y, i) => s + y * v[i], 0) / v.reduce((s, y) => s + y * y, 0);
    v = hv.map((y) => y / norm);
  }
  return lambda;
}

/** A linear model y = x·w (no bias) at weights `w0`, compiled with `optimizer` and MSE. */
function linearModel(w0: number[], optimizer: tf.Optimizer): tf.LayersModel {
  const model = tf.sequential({
    layers: [tf.layers.dense({ units: 1, useBias: false, inputShape: [w0.length] })],
  });
  model.compile({ optimizer, loss: "meanSquaredError" });
  model.setWeights([tf.tensor2d(w0, [w0.length, 1])]);
  return model;
}

/** Every row in one batch (full-batch gradient descent), targets `y`. */
function source(x: number[][], y: number[]): BatchSource {
  return {
    count: x.length,
    batch: (idx) => ({
      x: tf.tensor2d([...idx].map((i) => x[i])),
      y: tf.tensor2d([...idx].map((i) => [y[i]])),
    }),
  };
}

// 97 steps from 1e-3 to 10: a grid of ratio 10^(4/96) ≈ 1.10 between neighbouring rates.
const GRID: LrFindSettings = {
  startLr: 1e-3,
  endLr: 10,
  steps: 97,
  batchSize: 4,
  smoothing: 0,
  stopFactor: 4,
};
const RATIO = 10 ** (4 / 96);
const scaled = (s: number) => X.map((r) => r.map((v) => v * s));

Deno.test("λmax of the fixture: by hand and by power iteration", () => {
  assert.ok(Math.abs(lambdaMax(X) - LAMBDA_MAX_BY_HAND) < 1e-9);
  assert.ok(Math.abs(lambdaMax(scaled(3)) - 9 * LAMBDA_MAX_BY_HAND) < 1e-9);
});

Deno.test("SGD on least squares: the finder's divergence rate is the first grid rate above 2/λmax", async () => {
  for (const s of [1, 3]) {
    const x = scaled(s);
    const edge = 2 / lambdaMax(x);
    // Start with the error along the top eigenvector (targets 0, weights on (1, 1)), so the
    // loss follows the unstable direction alone and turns up at the first rate past the edge.
    const model = linearModel([0.5, 0.5], tf.train.sgd(0.01));
    const r = await lrFind(model, source(x, [0, 0, 0, 0]), GRID);
    assert.equal(r.ended, "diverged");
    assert.ok(
      r.divergenceLr! > edge && r.divergenceLr! <= edge * RATIO,
      `scale ${s}: divergence at lr ${r.divergenceLr}, 2/λmax = ${edge}`,
    );
    // every rate below the edge made the loss fall, the first one past it made it rise
    const k = r.points.findIndex((p) => p.lr === r.divergenceLr);
    assert.ok(r.points.slice(1, k + 1).every((p, i) => p.loss < r.points[i].loss));
    assert.ok(r.points[k + 1].loss > r.points[k].loss);
    model.dispose();
  }
});

Deno.test("SGD from any start never reports a divergence rate below 2/λmax (fastai's smoothing)", async () => {
  // Below 2/λmax every step of gradient descent on a quadratic lowers the loss, and fastai's
  // debiased average of a falling sequence falls, so its lowest point cannot come earlier.
  const edge = 2 / LAMBDA_MAX_BY_HAND;
  const model = linearModel([0.3, -0.7], tf.train.sgd(0.01));
  const r = await lrFind(model, source(X, [1, -2, 0.5, 3]), { ...GRID, smoothing: 0.98 });
  assert.equal(r.ended, "diverged");
  assert.ok(r.divergenceLr! > edge, `divergence at ${r.divergenceLr}, edge ${edge}`);
  assert.ok(r.steepestLr! < r.divergenceLr!);
  model.dispose();
});

Deno.test("the range test leaves the weights and the optimizer exactly as they were", async () => {
  const makers: [number, (lr: number) => tf.Optimizer][] = [
    [0.05, (lr) => tf.train.sgd(lr)],
    [0.002, (lr) => tf.train.adam(lr)],
  ];
  for (const [lr, optimizer] of makers) {
    const make = () => optimizer(lr);
    const model = linearModel([0.5, -0.25], make());
    const data = source(X, [1, -2, 0.5, 3]);
    // one ordinary step first, so the optimizer has state (Adam's moments and step count)
    const b = data.batch(Int32Array.from([0, 1, 2, 3]));
    await model.trainOnBatch(b.x, b.y);
    const weightsBefore = await model.getWeights()[0].data();
    const opt = model.optimizer as unknown as {
      learningRate: number;
      getWeights(): Promise<{ name: string; tensor: tf.Tensor }[]>;
    };
    const stateOf = async () =>
      await Promise.all((await opt.getWeights()).map(async (w) => [...await w.tensor.data()]));
    const stateBefore = await stateOf();
    const r = await lrFind(model, data, { ...GRID, steps: 60 });
    assert.ok(r.points.length > 10);
    assert.deepEqual(await model.getWeights()[0].data(), weightsBefore);
    assert.deepEqual(await stateOf(), stateBefore);
    assert.equal(opt.learningRate, lr);
    // and training continues exactly as a twin that never saw the finder
    const twin = linearModel([0.5, -0.25], make());
    await twin.trainOnBatch(b.x, b.y);
    await model.trainOnBatch(b.x, b.y);
    await twin.trainOnBatch(b.x, b.y);
    assert.deepEqual(await model.getWeights()[0].data(), await twin.getWeights()[0].data());
    tf.dispose([b.x, b.y]);
    model.dispose();
    twin.dispose();
  }
});

Deno.test("Adam: the divergence rate ignores the curvature and follows the distance to the minimum", async () => {
  // Adam divides each step by the gradient's running RMS, so its step is ~lr per weight
  // whatever the Hessian: scaling X by 3 (λmax ×9) moves SGD's edge 9× lower but leaves
  // Adam's curve a scaled copy, diverging at the same rate. What sets Adam's rate is how far
  // the weights are from the minimum: ten times farther, about ten times the rate.
  const adamAt = async (x: number[][], w: number) => {
    const model = linearModel([w, w], tf.train.adam(0.001));
    const r = await lrFind(model, source(x, [0, 0, 0, 0]), GRID);
    model.dispose();
    return r;
  };
  const near = await adamAt(X, 0.05), steep = await adamAt(scaled(3), 0.05);
  const far = await adamAt(X, 0.5);
  assert.equal(near.ended, "diverged");
  assert.equal(steep.divergenceLr, near.divergenceLr, "curvature ×9: same rate");
  const ratio = far.divergenceLr! / near.divergenceLr!;
  assert.ok(ratio > 10 / RATIO ** 3 && ratio < 10 * RATIO ** 3, `distance ×10: rate ×${ratio}`);
  // and it is nowhere near 2/λmax: SGD's edge for X is 0.4
  assert.ok(near.divergenceLr! < 0.4 / RATIO ** 10, `Adam diverges at ${near.divergenceLr}`);
});

Deno.test("the sweep, fastai's smoothing and the steepest rate on hand-made curves", () => {
  const rate = sweepRate({ startLr: 1e-4, endLr: 1, steps: 5 });
  assert.deepEqual([0, 1, 2, 3, 4].map((i) => +rate(i).toPrecision(12)), [
    1e-4,
    1e-3,
    1e-2,
    1e-1,
    1,
  ]);
  assert.throws(() => sweepRate({ startLr: 1, endLr: 0.1, steps: 10 }), /startLr < endLr/);
  // β = 0.5 by hand: v = 0.5·2 = 1 → 1/(1−0.5) = 2; v = 0.5 + 0.5·4 = 2.5 → 2.5/0.75 = 10/3
  const s = smoothLosses([2, 4], 0.5);
  assert.equal(s[0], 2);
  assert.ok(Math.abs(s[1] - 10 / 3) < 1e-12);
  assert.deepEqual(smoothLosses([3, 1], 0), [3, 1]);
  // a curve falling slowly, then fast between lr 1e-2 and 1e-1, then rising
  const lrs = [1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1, 10, 100, 1000, 1e4, 1e5];
  const losses = [2.3, 2.29, 2.28, 2.2, 1.0, 0.8, 0.7, 0.9, 3, 9, 20];
  const points: LrFindPoint[] = lrs.map((lr, i) => ({
    step: i,
    lr,
    loss: losses[i],
    smoothed: losses[i],
  }));
  assert.equal(steepestRate(points), 1e-2);
  assert.equal(floorEnd(points), 6, "0.7 is the lowest; 0.9 is more than 5% above it");
  // a plateau (a net that barely learns at small rates): its noise puts the lowest point first,
  // but the loss leaves the floor where the plateau ends
  const flat = [2.301, 2.3, 2.303, 2.302, 2.31, 2.35, 3.5, 12].map((v, i) => ({
    step: i,
    lr: 10 ** (i - 6),
    loss: v,
    smoothed: v,
  }));
  assert.equal(floorEnd(flat), 5);
  assert.equal(FASTAI_LR_FIND.smoothing, 0.98);
});

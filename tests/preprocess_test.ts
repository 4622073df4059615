import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import {
  batches,
  GRAY32,
  makeBatch,
  range,
  RGB32,
  rng,
  shuffled,
  studyTransform,
} from "../lib/data/preprocess.ts";
import type { MnistSplit } from "../lib/data/mnist.ts";

await tf.setBackend("cpu");

Deno.test("studyTransform pads 28→32 with zeros, scales by 255, repeats to 3 channels", async () => {
  const raw = tf.fill([1, 28, 28, 1], 255) as tf.Tensor4D;
  const x = studyTransform(raw, RGB32);
  assert.deepEqual(x.shape, [1, 32, 32, 3]);
  const v = await x.data();
  const at = (r: number, c: number, ch: number) => v[(r * 32 + c) * 3 + ch];
  for (const [r, c] of [[0, 0], [1, 31], [31, 2], [2, 1], [30, 30]]) {
    assert.equal(at(r, c, 0), 0, `(${r},${c}) is padding`);
  }
  for (const ch of [0, 1, 2]) assert.equal(at(2, 2, ch), 1);
  assert.equal(at(29, 29, 1), 1);
  tf.dispose([raw, x]);
});

Deno.test("studyTransform keeps one channel for the VGG-style net and scales exactly", async () => {
  const raw = tf.tensor4d(Float32Array.from({ length: 28 * 28 }, (_, i) => i % 256), [
    1,
    28,
    28,
    1,
  ]);
  const x = studyTransform(raw, GRAY32);
  assert.deepEqual(x.shape, [1, 32, 32, 1]);
  const v = await x.data();
  assert.equal(v[2 * 32 + 2], 0); // pixel (0,0) of the digit
  assert.ok(Math.abs(v[2 * 32 + 3] - 1 / 255) < 1e-7);
  assert.ok(Math.abs(v[(2 + 9) * 32 + 2 + 3] - ((9 * 28 + 3) % 256) / 255) < 1e-7);
  tf.dispose([raw, x]);
});

Deno.test("makeBatch gathers the chosen samples and labels", async () => {
  const split: MnistSplit = {
    images: Uint8Array.from({ length: 3 * 784 }, (_, i) => Math.floor(i / 784) * 100),
    labels: Uint8Array.of(4, 5, 6),
    count: 3,
    rows: 28,
    cols: 28,
  };
  const { x, y } = makeBatch(split, [2, 0], RGB32);
  assert.deepEqual(x.shape, [2, 32, 32, 3]);
  assert.deepEqual(Array.from(await y.data()), [6, 4]);
  const v = await x.data();
  assert.ok(Math.abs(v[(10 * 32 + 10) * 3] - 200 / 255) < 1e-6);
  assert.equal(v[32 * 32 * 3 + (10 * 32 + 10) * 3], 0);
  tf.dispose([x, y]);
});

Deno.test("seeded shuffles repeat, cover every index, and batch like Keras", () => {
  const a = shuffled(100, rng(7));
  assert.deepEqual(a, shuffled(100, rng(7)));
  assert.notDeepEqual(a, shuffled(100, rng(8)));
  assert.deepEqual(Array.from(a).sort((p, q) => p - q), Array.from(range(0, 100)));
  const b = batches(range(0, 10), 4);
  assert.deepEqual(b.map((x) => x.length), [4, 4, 2]);
});

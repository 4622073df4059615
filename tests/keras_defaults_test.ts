/** One test per row of the Keras-defaults table (lib/train/keras_defaults.ts), against the code. */
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { KERAS_DEFAULTS, kerasDefaultsFrame } from "../lib/train/keras_defaults.ts";
import { FAST_CPU, registerFastCpuBackend } from "../lib/kernels/mod.ts";
import { fusedAdam } from "../lib/kernels/js/adam.ts";
import { lossOf } from "../lib/train/loss.ts";
import { buildBaseline } from "../lib/models/baseline.ts";
import { compileStudy } from "../lib/models/common.ts";
import { buildVgg16Scratch } from "../lib/models/vgg16_scratch.ts";
import { EarlyStopping, fitSource } from "../lib/train/train.ts";
import { evaluateSource } from "../lib/train/evaluate.ts";

await tf.setBackend("cpu");
const fast = await registerFastCpuBackend();

const row = (setting: string) => {
  const r = KERAS_DEFAULTS.find((d) => d.setting.startsWith(setting));
  assert.ok(r, `no row "${setting}"`);
  return r;
};

Deno.test("the table: every row has a verdict, and the frame shows them all", () => {
  assert.ok(KERAS_DEFAULTS.length >= 9);
  for (const r of KERAS_DEFAULTS) assert.match(r.verdict, /^(same|differed .* → .+)$/);
  assert.equal(kerasDefaultsFrame().height, KERAS_DEFAULTS.length);
});

Deno.test("row: the loss behind the softmax is Keras's from-logits form, in training and evaluation", async () => {
  assert.match(row("loss").verdict, /we use Keras's form/);
  const model = tf.sequential();
  model.add(tf.layers.dense({ inputShape: [2], units: 10, activation: "softmax" }));
  compileStudy(model);
  assert.equal(lossOf(model), "logits");
  const source = {
    count: 4,
    batch: (i: Int32Array) => ({ x: tf.ones([i.length, 2]), y: tf.zeros([i.length]) }),
  };
  const e = await evaluateSource(model, source, new Uint8Array(4));
  assert.equal(e.lossKind, "logits");
});

Deno.test("row: Adam's β1, β2, ε and learning rate are Keras's", () => {
  assert.equal(row("Adam β1").verdict, "same");
  const opt = buildBaseline({ seed: 1 }).optimizer as unknown as Record<string, number>;
  assert.equal(opt.learningRate, 0.001);
  assert.equal(opt.beta1, 0.9);
  assert.equal(opt.beta2, 0.999);
  assert.equal(opt.epsilon, 1e-7);
});

/** One Adam step of a single weight 1.0 with gradient g, in float64, Keras's form. */
function kerasStep(g: number, lr = 0.001, b1 = 0.9, b2 = 0.999, eps = 1e-7): number {
  const m = (1 - b1) * g, v = (1 - b2) * g * g;
  return 1 - lr * Math.sqrt(1 - b2) / (1 - b1) * m / (Math.sqrt(v) + eps);
}

Deno.test("row: Adam places ε as Keras does (w −= lr·√(1−β2ᵗ)/(1−β1ᵗ)·m/(√v+ε)) on every backend", async () => {
  // A gradient small enough that ε matters: Keras's step is 0.24 lr, tfjs's would be 0.91 lr.
  const g = 1e-6;
  const want = kerasStep(g);
  const tfjsForm = 1 - 0.001 * g / (g + 1e-7);
  assert.ok(Math.abs(want - tfjsForm) > 5e-4, "the two forms are far apart here");
  for (const backend of fast.available ? ["cpu", FAST_CPU] : ["cpu"]) {
    await tf.setBackend(backend);
    const w = tf.variable(tf.tensor1d([1]));
    const opt = buildBaseline({ seed: 1 }).optimizer;
    opt.applyGradients([{ name: w.name, tensor: tf.tensor1d([g]) }]);
    const got = (await w.data())[0];
    assert.ok(Math.abs(got - want) < 2e-7, `${backend}: ${got} vs Keras ${want}`);
    w.dispose();
  }
  await tf.setBackend("cpu");
  // tfjs's own form stays what it was for anyone who asks for it.
  const w = tf.variable(tf.tensor1d([1]));
  fusedAdam(0.001, 0.9, 0.999, 1e-7).applyGradients([{ name: w.name, tensor: tf.tensor1d([g]) }]);
  assert.ok(Math.abs((await w.data())[0] - tfjsForm) < 2e-7);
});

Deno.test("row: Glorot-uniform kernels and zero biases in every Dense and Conv2D", () => {
  assert.equal(row("kernel and bias").verdict, "same");
  for (const model of [buildBaseline({ seed: 1 }), buildVgg16Scratch({ seed: 1 })]) {
    for (const layer of model.layers) {
      const c = layer.getConfig() as Record<
        string,
        { className?: string; config?: Record<string, unknown> } | undefined
      >;
      if (!c.kernelInitializer) continue;
      // Glorot uniform is VarianceScaling(scale 1, fan_avg, uniform), which tfjs serialises.
      assert.equal(c.kernelInitializer.className, "VarianceScaling", layer.name);
      const { scale, mode, distribution } = c.kernelInitializer.config!;
      assert.deepEqual({ scale, mode, distribution }, {
        scale: 1,
        mode: "fanAvg",
        distribution: "uniform",
      }, layer.name);
      assert.equal(c.biasInitializer?.className, "Zeros", layer.name);
    }
  }
});

Deno.test("row: Dropout is inverted dropout, active in training only", async () => {
  assert.equal(row("Dropout").verdict, "same");
  const layer = tf.layers.dropout({ rate: 0.5 });
  const x = tf.ones([1000]);
  const train = [...await (layer.apply(x, { training: true }) as tf.Tensor).data()];
  assert.ok(train.every((v) => v === 0 || v === 2), "kept units scaled by 1/(1 − 0.5)");
  const kept = train.filter((v) => v === 2).length;
  assert.ok(kept > 400 && kept < 600, `${kept} kept`);
  assert.deepEqual([...await (layer.apply(x, { training: false }) as tf.Tensor).data()], [
    ...await x.data(),
  ]);
});

Deno.test("rows: shuffling every epoch, last batch partial; epoch means weighted by batch size", async () => {
  assert.equal(row("shuffling").verdict, "same");
  assert.equal(row("epoch loss").verdict, "same");
  const model = tf.sequential();
  model.add(tf.layers.dense({ inputShape: [1], units: 10, activation: "softmax" }));
  compileStudy(model);
  const seen: number[][] = [];
  const source = {
    count: 25,
    batch: (idx: Int32Array) => {
      seen.push([...idx]);
      return {
        x: tf.tensor2d(Array.from(idx, (i) => [i / 25])),
        y: tf.tensor1d(Array.from(idx, (i) => i % 10)),
      };
    },
  };
  const losses: number[] = [];
  const r = await fitSource(model, source, {
    epochs: 2,
    batchSize: 10,
    seed: 3,
    progress: false,
    onBatchEnd: (_e, _b, loss) => void losses.push(loss),
  });
  assert.deepEqual(seen.map((b) => b.length), [10, 10, 5, 10, 10, 5]);
  const epoch1 = seen.slice(0, 3).flat(), epoch2 = seen.slice(3).flat();
  assert.deepEqual([...epoch1].sort((a, b) => a - b), [...Array(25).keys()], "a permutation");
  assert.notDeepEqual(epoch1, epoch2, "a new order every epoch");
  const mean = (10 * losses[0] + 10 * losses[1] + 5 * losses[2]) / 25;
  const logged = r.history.getColumn("loss").toArray()[0] as number;
  assert.ok(Math.abs(logged - mean) < 1e-9, `${logged} vs ${mean}`);
});

Deno.test("row: EarlyStopping(monitor='loss', patience=3) as Keras counts it", () => {
  assert.equal(row("EarlyStopping").verdict, "same");
  const es = new EarlyStopping("loss", 3);
  assert.deepEqual([1, 0.9, 0.95, 0.96, 0.97].map((v, e) => es.update(e, v)), [
    false,
    false,
    false,
    false,
    true,
  ]);
});

Deno.test("row: BatchNormalization has Keras's momentum 0.99 and ε 1e-3", () => {
  assert.equal(row("BatchNormalization").verdict, "same");
  const model = buildVgg16Scratch({ seed: 1, batchNorm: true, convActivation: "relu" });
  const bn = model.layers.filter((l) => l.getClassName() === "BatchNormalization");
  assert.equal(bn.length, 13);
  for (const l of bn) {
    const c = l.getConfig();
    assert.equal(c.momentum, 0.99);
    assert.equal(c.epsilon, 0.001);
  }
});

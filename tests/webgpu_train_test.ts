/**
 * Training on webgpu (the software adapter here; the same holds on any GPU): a step reads
 * nothing back but one loss read every GPU_READ_EVERY steps, every kernel of the step runs on
 * the GPU, and tensors and GPU bytes stay flat from the second epoch on.
 */
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import "@tensorflow/tfjs-backend-webgpu";
import { probeGpu } from "../lib/machine/backend.ts";
import { auditWebGpu, kernelLine } from "../lib/kernels/webgpu/webgpu_audit.ts";
import {
  convGradChoice,
  setupWebGpu,
  trimGpuPool,
  useConvGrad,
} from "../lib/kernels/webgpu/webgpu_setup.ts";
import { compileStudy } from "../lib/models/common.ts";
import { setLoss, trainStep, trainStepOnDevice } from "../lib/train/loss.ts";
import { fitSource, GPU_READ_EVERY, readEvery } from "../lib/train/train.ts";
import { type BatchSource, evaluateSource } from "../lib/train/evaluate.ts";

const gpu = await probeGpu();

/**
 * The study's layer types at toy size (the study's models take ~10 s a step on the software
 * adapter): "same" and "valid" 3×3 convolutions, linear and ReLU, BatchNorm, both poolings of
 * the study, Flatten, ReLU Dense, Dropout and the Dense softmax head, compiled as the study
 * compiles (fusedAdam, Keras's loss from the logits).
 */
function toyStudyModel(seed: number, batchNorm: boolean): tf.LayersModel {
  const init = (i: number) => tf.initializers.glorotUniform({ seed: seed * 10 + i });
  const m = tf.sequential();
  m.add(tf.layers.conv2d({
    inputShape: [8, 8, 3],
    filters: 4,
    kernelSize: 3,
    padding: "same",
    kernelInitializer: init(1),
  }));
  if (batchNorm) m.add(tf.layers.batchNormalization());
  m.add(tf.layers.conv2d({
    filters: 6,
    kernelSize: 3,
    activation: "relu",
    kernelInitializer: init(2),
  }));
  m.add(tf.layers.maxPooling2d({ poolSize: 2, strides: 1 }));
  m.add(tf.layers.maxPooling2d({ poolSize: 2, strides: 2 }));
  m.add(tf.layers.flatten());
  m.add(tf.layers.dense({ units: 12, activation: "relu", kernelInitializer: init(3) }));
  m.add(tf.layers.dropout({ rate: 0.2 }));
  m.add(tf.layers.dense({ units: 10, activation: "softmax", kernelInitializer: init(4) }));
  return compileStudy(m);
}

/** `count` fixed random 8×8×3 images with labels, batched from host arrays as MNIST is. */
function toySource(count: number): BatchSource {
  const images = Float32Array.from({ length: count * 192 }, (_, i) => Math.abs(Math.sin(i)));
  const labels = Float32Array.from({ length: count }, (_, i) => (i * 7) % 10);
  return {
    count,
    batch(idx) {
      const x = new Float32Array(idx.length * 192);
      idx.forEach((j, r) => x.set(images.subarray(j * 192, (j + 1) * 192), r * 192));
      return {
        x: tf.tensor4d(x, [idx.length, 8, 8, 3]),
        y: tf.tensor1d(Array.from(idx, (j) => labels[j])),
      };
    },
  };
}

async function onWebGpu<T>(fn: () => Promise<T>): Promise<T> {
  await tf.setBackend("webgpu");
  setupWebGpu();
  try {
    return await fn();
  } finally {
    useConvGrad("tfjs");
    tf.env().set("WEBGPU_CPU_FORWARD", true);
    await tf.setBackend("cpu");
  }
}

Deno.test({
  name: "webgpu training: one loss read per GPU_READ_EVERY steps, every kernel on the GPU",
  ignore: !gpu,
  async fn() {
    await onWebGpu(async () => {
      assert.equal(readEvery(), GPU_READ_EVERY);
      for (
        const [what, batchNorm, loss] of [
          ["logits loss, dropout", false, "logits"],
          ["BatchNorm, tfjs's clipped loss", true, "clipped"],
        ] as const
      ) {
        const model = toyStudyModel(1, batchNorm);
        setLoss(model, loss);
        // N + 3 steps: the read started after step N, and the epoch's last read of 3 steps
        const steps = GPU_READ_EVERY + 3;
        const losses: number[] = [];
        const { audit } = await auditWebGpu(() =>
          fitSource(model, toySource(steps * 2), {
            epochs: 1,
            batchSize: 2,
            seed: 1,
            progress: false,
            onBatchEnd: (_e, _b, l) => void losses.push(l),
          })
        );
        console.log(`${what}: ${audit.reads} reads in ${steps} steps; ${kernelLine(audit)}`);
        assert.equal(audit.reads, 2, `${what}: reads`);
        assert.equal(audit.downloads, 2, `${what}: buffer downloads`);
        assert.equal(losses.length, steps, "every step's loss reaches onBatchEnd, in arrears");
        assert.ok(losses.every(Number.isFinite));
        const host = [...audit.kernels].filter(([, r]) => r.host > 0).map(([n]) => n);
        assert.deepEqual(host, [], `${what}: kernels computed on the host`);
        for (const k of ["Conv2DBackpropFilter", "Conv2DBackpropInput", "FusedConv2D", "MaxPool"]) {
          if (!audit.kernels.has(k) && !(k === "FusedConv2D" && audit.kernels.has("Conv2D"))) {
            assert.fail(`${what}: ${k} did not run`);
          }
        }
        model.dispose();
      }
    });
  },
});

Deno.test({
  name: "webgpu training: tensors and GPU bytes flat from the second epoch (partial batches)",
  ignore: !gpu,
  async fn() {
    await onWebGpu(async () => {
      const model = toyStudyModel(2, true);
      const train = toySource(23); // batches of 8, 8 and 7
      const val = toySource(13); // evaluated in batches of 5, 5 and 3
      const labels = Uint8Array.from({ length: 13 }, (_, i) => (i * 7) % 10);
      const seen: { tensors: number; used: number; allocated: number }[] = [];
      await fitSource(model, train, {
        epochs: 4,
        batchSize: 8,
        seed: 2,
        progress: false,
        validate: () => evaluateSource(model, val, labels, 5),
        onEpochEnd: () => {
          const m = tf.memory() as tf.MemoryInfo & {
            numBytesInGPU: number;
            numBytesAllocatedInGPU: number;
          };
          seen.push({
            tensors: m.numTensors,
            used: m.numBytesInGPU,
            allocated: m.numBytesAllocatedInGPU,
          });
        },
      });
      console.log(seen.map((s) => JSON.stringify(s)).join("\n"));
      for (let e = 2; e < seen.length; e++) {
        assert.deepEqual(seen[e], seen[1], `epoch ${e + 1} against epoch 2`);
      }
      model.dispose();
    });
  },
});

Deno.test({
  name: "trimGpuPool frees pooled buffers of sizes not asked for since the last trim",
  ignore: !gpu,
  async fn() {
    await onWebGpu(async () => {
      const allocated = () =>
        (tf.memory() as tf.MemoryInfo & { numBytesAllocatedInGPU: number }).numBytesAllocatedInGPU;
      trimGpuPool();
      trimGpuPool(); // nothing asked for since the first: the pool is empty now
      const before = allocated();
      const t = tf.tidy(() => tf.add(tf.ones([1237]), 1)); // a size no other test uses
      await t.data();
      tf.dispose(t);
      const grown = allocated() - before;
      assert.ok(grown >= 1237 * 4, `the pool grew by ${grown} bytes`);
      trimGpuPool(); // asked for since the last trim: kept
      assert.equal(allocated(), before + grown);
      assert.ok(trimGpuPool() >= 1237 * 4, "freed on the next trim");
      assert.equal(allocated(), before);
    });
  },
});

Deno.test("the readback-free step is trainStep's (cpu, both losses): same loss, same weights", async () => {
  await tf.setBackend("cpu");
  for (const loss of ["logits", "clipped"] as const) {
    const a = toyStudyModel(3, false), b = toyStudyModel(3, false);
    setLoss(a, loss);
    setLoss(b, loss);
    const { x, y } = toySource(4).batch(Int32Array.from([0, 1, 2, 3]));
    // dropout draws from Math.random: the same draws for both models
    const draws = Array.from({ length: 1000 }, (_, i) => (Math.sin(i) + 1) / 2);
    let i = 0;
    const random = Math.random;
    Math.random = () => draws[i++ % draws.length];
    let want: [number, number], got: { loss: tf.Scalar; accuracy: tf.Scalar };
    try {
      want = await trainStep(a, x, y);
      i = 0;
      got = trainStepOnDevice(b, x, y);
    } finally {
      Math.random = random;
    }
    assert.deepEqual([(await got.loss.data())[0], (await got.accuracy.data())[0]], want, loss);
    const wa = a.getWeights(), wb = b.getWeights();
    for (let k = 0; k < wa.length; k++) {
      assert.deepEqual(await wb[k].data(), await wa[k].data(), `${loss}: weight ${k}`);
    }
    tf.dispose([x, y, got.loss, got.accuracy]);
    a.dispose();
    b.dispose();
  }
});

Deno.test("WEBGPU_CONV_GRAD: the three choices, and a clear error for anything else", () => {
  assert.equal(convGradChoice(undefined), "study");
  for (const c of ["study", "gemm", "tfjs"]) assert.equal(convGradChoice(c), c);
  assert.throws(
    () => convGradChoice("fast"),
    /WEBGPU_CONV_GRAD=fast is not one of study, gemm, tfjs/,
  );
});

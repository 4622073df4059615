/**
 * Frozen-base feature extraction throughput (notebooks 05 and 06): images/s of the ImageNet
 * base over a batch of 32×32×3 images, run as tfjs-layers runs it (`model.predict`) and as
 * feature extraction runs it (`inferenceGraph`, lib/transfer/inference.ts: BatchNorm, ReLU and padding
 * folded), alternating, median of the rounds; `--kernels` adds where the time goes.
 *
 *   deno run -A bench/inference.ts [--model resnet152v2|vgg16] [--batch 256] [--rounds 3]
 *                                  [--backend cpu-fast] [--kernels]
 */
import { parseArgs } from "node:util";
import * as tf from "@tensorflow/tfjs";
import { type BackendName, initBackend } from "../lib/machine/backend.ts";
import { inferenceGraph } from "../lib/transfer/inference.ts";
import { buildResNet152V2Base } from "../lib/models/resnet152v2.ts";
import { buildVgg16Base } from "../lib/models/vgg16_imagenet.ts";

const BASES: Record<string, () => tf.LayersModel> = {
  resnet152v2: () => buildResNet152V2Base({ seed: 1 }),
  vgg16: () => buildVgg16Base({ seed: 1 }),
};

const { values } = parseArgs({
  args: Deno.args,
  options: {
    model: { type: "string", default: "resnet152v2" },
    batch: { type: "string", default: "256" },
    rounds: { type: "string", default: "3" },
    backend: { type: "string", default: "cpu-fast" },
    kernels: { type: "boolean", default: false },
    help: { type: "boolean", short: "h", default: false },
  },
});
if (values.help) {
  console.log(
    "deno run -A bench/inference.ts [--model resnet152v2|vgg16] [--batch 256] [--rounds 3] " +
      "[--backend cpu-fast] [--kernels]",
  );
  Deno.exit(0);
}
const build = BASES[values.model];
if (!build) {
  console.error(`--model must be one of ${Object.keys(BASES).join(", ")}, got "${values.model}"`);
  Deno.exit(2);
}
tf.enableProdMode();
await initBackend({ force: values.backend as BackendName });
const batch = Number(values.batch), rounds = Number(values.rounds);
const model = build(); // random weights: the timing does not depend on them
const graph = await inferenceGraph(model);
const f = graph.folds;
console.log(
  `${values.model}, batch ${batch}: folded ${f.batchNorms} BatchNorms and ${f.relus} ReLUs, ` +
    `${f.paddings} paddings, ${f.affines} BatchNorms as affine passes`,
);
const x = tf.randomUniform([batch, 32, 32, 3]);
const ways: Record<string, () => tf.Tensor> = {
  "model.predict": () => model.predict(x, { batchSize: batch }) as tf.Tensor,
  "inferenceGraph": () => graph.run(x),
};
const times: Record<string, number[]> = {};
const kernels: Record<string, Map<string, number>> = {};
for (const [name, run] of Object.entries(ways)) {
  const y = run(); // warm-up: oneDNN primitives, pooled buffers
  y.dataSync();
  y.dispose();
  times[name] = [];
  kernels[name] = new Map();
}
for (let r = 0; r < rounds; r++) {
  for (const [name, run] of Object.entries(ways)) {
    const t0 = performance.now();
    const info = await tf.profile(() => {
      const y = run();
      y.dataSync();
      y.dispose();
    });
    times[name].push(performance.now() - t0);
    for (const k of info.kernels) {
      kernels[name].set(k.name, (kernels[name].get(k.name) ?? 0) + (k.kernelTimeMs as number));
    }
  }
}
const median = (a: number[]) => [...a].sort((p, q) => p - q)[Math.floor(a.length / 2)];
for (const [name, ts] of Object.entries(times)) {
  const ms = median(ts);
  console.log(
    `${name.padEnd(15)} ${(batch / (ms / 1000)).toFixed(1).padStart(7)} images/s ` +
      `(${ms.toFixed(0)} ms per batch, median of ${rounds})`,
  );
  if (!values.kernels) continue;
  const rows = [...kernels[name]].sort((a, b) => b[1] - a[1]).slice(0, 8);
  for (const [k, t] of rows) console.log(`  ${(t / rounds).toFixed(1).padStart(8)} ms  ${k}`);
}

/**
 * Where a training step's time goes on a backend: tfjs's kernel profiler over a few
 * study training steps (`trainStep`), summed by kernel name (and shapes with --shapes).
 *
 *   deno run -A bench/profile.ts [--model baseline|vgg_small|vgg16|vgg16_head] [--backend cpu-fast]
 *                                [--steps 3] [--shapes] [--precision P] [--optimizer fused|tfjs]
 *
 * `--help` for the options.
 */
import * as tf from "@tensorflow/tfjs";
import { type BackendName, initBackend } from "../lib/machine/backend.ts";
import { trainStep } from "../lib/train/loss.ts";
import { benchModels } from "../lib/study/settings.ts";
import { parseProfileArgs, profileHelp, runCli } from "./cli.ts";
import { envVar } from "../lib/machine/env.ts";

/** The study's models and notebook 05's head, with batch sizes and inputs (lib/study/settings.ts). */
const MODELS = benchModels({ heads: true });

async function main(): Promise<void> {
  const usage = profileHelp(Object.keys(MODELS));
  const values = parseProfileArgs(Deno.args, Object.keys(MODELS), {
    MNIST_PRECISION: envVar("MNIST_PRECISION"),
  });
  if (values.help) return console.log(usage);
  tf.enableProdMode();
  Deno.env.set("MNIST_PRECISION", values.precision); // initBackend reads it
  const info = await initBackend({ force: values.backend as BackendName });
  const { build, batch, input } = MODELS[values.model];
  const model = build(); // compiled as the study compiles (fusedAdam)
  if (values.optimizer === "tfjs") {
    model.compile({
      optimizer: tf.train.adam(0.001, 0.9, 0.999, 1e-7),
      loss: "sparseCategoricalCrossentropy",
      metrics: ["accuracy"],
    });
  }
  const x = tf.randomUniform([batch, ...input]);
  const y = tf.tensor(Array.from({ length: batch }, (_, i) => i % 10), [batch], "float32");
  await trainStep(model, x, y); // warm-up
  const steps = Number(values.steps);
  const by = new Map<string, { ms: number; n: number; min: number }>();
  let wall = 0;
  let minWall = Infinity;
  for (let s = 0; s < steps; s++) {
    const t0 = performance.now();
    const info = await tf.profile(async () => {
      await trainStep(model, x, y);
    });
    const dt = performance.now() - t0;
    wall += dt;
    minWall = Math.min(minWall, dt);
    const step = new Map<string, number>();
    for (const k of info.kernels) {
      const key = values.shapes ? `${k.name} ${JSON.stringify(k.inputShapes)}` : k.name;
      const e = by.get(key) ?? { ms: 0, n: 0, min: 0 };
      e.ms += k.kernelTimeMs as number;
      e.n++;
      by.set(key, e);
      step.set(key, (step.get(key) ?? 0) + (k.kernelTimeMs as number));
    }
    // the least time a kernel took in any one step: robust to a neighbour's burst
    for (const [key, ms] of step) {
      const e = by.get(key)!;
      e.min = s === 0 ? ms : Math.min(e.min, ms);
    }
  }
  const rows = [...by.entries()].sort((a, b) => b[1].ms - a[1].ms);
  const total = rows.reduce((s, [, e]) => s + e.ms, 0);
  console.log(
    `${values.model} on ${values.backend} (${info.precision}): ${
      (wall / steps).toFixed(1)
    } ms/step wall (best ` +
      `${minWall.toFixed(1)}), ${(total / steps).toFixed(1)} ms/step in kernels ` +
      `(op-level "__op" entries include their kernel)`,
  );
  console.log("  mean ms    best ms  calls  kernel");
  for (const [k, e] of rows.slice(0, 40)) {
    const calls = String(e.n / steps).padStart(4);
    console.log(
      `${(e.ms / steps).toFixed(2).padStart(9)} ${e.min.toFixed(2).padStart(9)}  ${calls}×  ${k}`,
    );
  }
}

if (import.meta.main) await runCli("profile", profileHelp(Object.keys(MODELS)), main);

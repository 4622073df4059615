/**
 * `deno task train <model>`: trains one of the study's from-scratch models with its study
 * settings outside a notebook, shows a single updating progress line, and writes the same run
 * record as the notebooks (outputs/runs/<run-id>/). Run with --help for the options.
 */
import { parseArgs } from "node:util";
import type * as tf from "@tensorflow/tfjs";
import { type BackendName, initBackend } from "../lib/backend.ts";
import { loadMnist } from "../lib/mnist.ts";
import { buildBaseline } from "../lib/models/baseline.ts";
import { buildVgg16Scratch } from "../lib/models/vgg16_scratch.ts";
import { buildVggSmall, type VggOptions } from "../lib/models/vgg_small.ts";
import { GRAY32, type InputFormat, RGB32 } from "../lib/preprocess.ts";
import { currentProfile, describeProfile, epochsFor, profileSplits } from "../lib/profile.ts";
import { runsRoot, saveRun } from "../lib/runs.ts";
import { type EpochLogs, evaluate, fit, type FitOptions } from "../lib/train.ts";

/** The study's settings per model: builder, input format, batch size, epochs, early stopping. */
interface ModelSpec {
  build: (opts: VggOptions) => tf.LayersModel;
  format: InputFormat;
  formatName: string;
  batchSize: number;
  epochs: number;
  /** EarlyStopping(loss, patience 3) with the test set as validation, as the study's VGG runs. */
  vggSettings: boolean;
  section: string;
}

export const MODELS: Record<string, ModelSpec> = {
  baseline: {
    build: buildBaseline,
    format: RGB32,
    formatName: "RGB32",
    batchSize: 32,
    epochs: 5,
    vggSettings: false,
    section: "02_baseline_cnn",
  },
  vgg_small: {
    build: buildVggSmall,
    format: GRAY32,
    formatName: "GRAY32",
    batchSize: 100,
    epochs: 10,
    vggSettings: true,
    section: "03_vgg_small",
  },
  vgg16_scratch: {
    build: buildVgg16Scratch,
    format: RGB32,
    formatName: "RGB32",
    batchSize: 100,
    epochs: 10,
    vggSettings: true,
    section: "04_vgg16_scratch",
  },
};

const HELP = `deno task train <model> [options]

Trains a model with the study's settings and writes a run record to outputs/runs/<run-id>/
(or $RUNS_DIR): config.json, history.csv, metrics.json, model.json + weights.bin.

Models:
  baseline        baseline CNN, RGB 32×32, batch 32, 5 epochs
  vgg_small       VGG-style net, grey 32×32, batch 100, 10 epochs, EarlyStopping(loss, 3)
  vgg16_scratch   VGG16 from scratch, RGB 32×32, batch 100, 10 epochs, EarlyStopping(loss, 3)
  (the VGG models validate on the test set each epoch, as the study did)

Options:
  --epochs N          epochs (default: the study's; the quick profile caps it at 1)
  --batch-size N      batch size (default: the study's)
  --seed N            seed of initial weights, shuffles and dropout (default: random, recorded)
  --profile P         quick | reduced | full (default: $MNIST_PROFILE, else full)
  --backend B         webgpu | cpu-fast | wasm | cpu (default: $MNIST_BACKEND, else the best available)
  --on-divergence A   stop (default) | warn: what to do when the loss explodes or becomes NaN
  --learning-rate X   Adam's learning rate (default 0.001, Keras's)
  VGG models only, the experiments of notebook 04 (the study: linear convs, Glorot, no BN):
  --conv-activation A linear (default) | relu
  --conv-init I       glorot (default) | he
  --batch-norm        BatchNormalization after every convolution
  -h, --help          this text

Example: deno task train baseline --profile quick --seed 1`;

/** The options after validation; throws with a one-line message on bad input. */
export function parseTrainArgs(args: string[]) {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      epochs: { type: "string" },
      "batch-size": { type: "string" },
      seed: { type: "string" },
      profile: { type: "string" },
      backend: { type: "string" },
      "on-divergence": { type: "string" },
      "learning-rate": { type: "string" },
      "conv-activation": { type: "string" },
      "conv-init": { type: "string" },
      "batch-norm": { type: "boolean" },
      help: { type: "boolean", short: "h" },
    },
  });
  const int = (name: string, v: string | undefined, min: number) => {
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isInteger(n) || n < min) {
      throw new Error(`--${name} must be an integer ≥ ${min}, got "${v}"`);
    }
    return n;
  };
  if (values.help) return { help: true as const };
  if (positionals.length !== 1) {
    throw new Error(
      `expected one model (${Object.keys(MODELS).join(", ")}), got ${positionals.length}`,
    );
  }
  const model = positionals[0];
  if (!MODELS[model]) {
    throw new Error(`unknown model "${model}"; choose one of ${Object.keys(MODELS).join(", ")}`);
  }
  const backend = values.backend as BackendName | undefined;
  if (backend && !["webgpu", "cpu-fast", "wasm", "cpu"].includes(backend)) {
    throw new Error(`--backend ${backend} is not one of webgpu, cpu-fast, wasm, cpu`);
  }
  const onDivergence = values["on-divergence"] ?? "stop";
  if (onDivergence !== "stop" && onDivergence !== "warn") {
    throw new Error(`--on-divergence must be stop or warn, got "${onDivergence}"`);
  }
  const learningRate = values["learning-rate"] === undefined
    ? undefined
    : Number(values["learning-rate"]);
  if (learningRate !== undefined && !(learningRate > 0)) {
    throw new Error(`--learning-rate must be a positive number, got "${values["learning-rate"]}"`);
  }
  const convActivation = values["conv-activation"];
  if (convActivation !== undefined && convActivation !== "linear" && convActivation !== "relu") {
    throw new Error(`--conv-activation must be linear or relu, got "${convActivation}"`);
  }
  const convInit = values["conv-init"];
  if (convInit !== undefined && convInit !== "glorot" && convInit !== "he") {
    throw new Error(`--conv-init must be glorot or he, got "${convInit}"`);
  }
  const variant = { convActivation, convInit, batchNorm: values["batch-norm"] || undefined };
  if (model === "baseline" && Object.values(variant).some((v) => v !== undefined)) {
    throw new Error("--conv-activation, --conv-init and --batch-norm apply to the VGG models only");
  }
  return {
    help: false as const,
    model,
    learningRate,
    variant: variant as VggOptions,
    epochs: int("epochs", values.epochs, 1),
    batchSize: int("batch-size", values["batch-size"], 1),
    seed: int("seed", values.seed, 0),
    profile: values.profile,
    backend,
    onDivergence: onDivergence as "stop" | "warn",
  };
}

/** The run's model name, with any departure from the study's settings, e.g. "vgg16_scratch (relu, lr 0.0001)". */
function variantName(name: string, learningRate: number, v: VggOptions): string {
  const parts = [
    v.convActivation && v.convActivation !== "linear" ? `${v.convActivation} convs` : "",
    v.convInit === "he" ? "He init" : "",
    v.batchNorm ? "BatchNorm" : "",
    learningRate !== 0.001 ? `lr ${learningRate}` : "",
  ].filter(Boolean);
  return parts.length ? `${name} (${parts.join(", ")})` : name;
}

/**
 * A terminal progress line: rewritten in place with `\r` on a terminal, one line per epoch
 * when the output is a file or pipe (CI logs would otherwise fill with carriage returns).
 */
class ProgressLine {
  #enc = new TextEncoder();
  #tty = Deno.stdout.isTerminal();
  #last = 0;
  #width = 0;

  batch(text: string): void {
    if (!this.#tty) return;
    const now = performance.now();
    if (now - this.#last < 100) return; // ~10 updates a second is plenty
    this.#last = now;
    this.#write(`\r${text.padEnd(this.#width)}`);
    this.#width = text.length;
  }

  done(text: string): void {
    this.#write(this.#tty ? `\r${text.padEnd(this.#width)}\n` : `${text}\n`);
    this.#width = 0;
  }

  #write(s: string): void {
    Deno.stdout.writeSync(this.#enc.encode(s));
  }
}

function bar(fraction: number, width = 20): string {
  const full = Math.round(Math.min(1, fraction) * width);
  return "█".repeat(full) + "░".repeat(width - full);
}

async function main(): Promise<void> {
  let opts: ReturnType<typeof parseTrainArgs>;
  try {
    opts = parseTrainArgs(Deno.args);
  } catch (e) {
    console.error(`train: ${(e as Error).message}\n\n${HELP}`);
    Deno.exit(2);
  }
  if (opts.help) {
    console.log(HELP);
    return;
  }
  const spec = MODELS[opts.model];
  const profile = currentProfile(opts.profile);
  console.log(describeProfile(profile));
  const backend = await initBackend({ force: opts.backend });
  const mnist = await loadMnist();
  const { train, test } = profileSplits(
    mnist,
    profile,
    opts.model === "baseline" ? "default" : "vgg",
  );
  // Without --seed, draw one and record it, so that any run can be repeated.
  const seed = opts.seed ?? Math.floor(Math.random() * 2 ** 31);
  const epochs = epochsFor(profile, opts.epochs ?? spec.epochs);
  const batchSize = opts.batchSize ?? spec.batchSize;
  const learningRate = opts.learningRate ?? 0.001;
  const model = spec.build({ seed, learningRate, ...opts.variant });
  console.log(
    `model: ${model.name} (${
      model.countParams().toLocaleString("en-US")
    } parameters), ${spec.formatName} input, ` +
      `batch ${batchSize}, ${epochs} epoch(s), seed ${seed}; data: ${train.count} train / ${test.count} test`,
  );

  const line = new ProgressLine();
  const batches = Math.ceil(train.count / batchSize);
  let lossSum = 0, seen = 0, e0 = performance.now();
  const fitOpts: FitOptions = {
    epochs,
    batchSize,
    format: spec.format,
    seed,
    progress: false,
    divergence: opts.onDivergence,
    ...(spec.vggSettings
      ? { validation: test, earlyStopping: { monitor: "loss" as const, patience: 3 } }
      : {}),
    onBatchEnd: (epoch, batch, loss) => {
      if (batch === 0) {
        lossSum = 0;
        seen = 0;
        e0 = performance.now();
      }
      const n = Math.min(batchSize, train.count - batch * batchSize);
      lossSum += loss * n;
      seen += n;
      const rate = seen / Math.max((performance.now() - e0) / 1000, 1e-9);
      line.batch(
        `epoch ${epoch + 1}/${epochs} ${bar((batch + 1) / batches)} ${seen}/${train.count} ` +
          `loss ${(lossSum / seen).toFixed(4)}  ${rate.toFixed(0)} samples/s  ` +
          `ETA ${((train.count - seen) / rate).toFixed(0)} s`,
      );
    },
    onEpochEnd: (logs: EpochLogs) => {
      const val = logs.val_loss === undefined
        ? ""
        : `  val_loss ${logs.val_loss.toFixed(4)}  val_acc ${logs.val_accuracy!.toFixed(4)}`;
      line.done(
        `epoch ${logs.epoch}/${epochs} ${bar(1)} loss ${logs.loss.toFixed(4)}  acc ${
          logs.accuracy.toFixed(4)
        }` +
          `${val}  ${logs.seconds.toFixed(1)} s`,
      );
    },
  };
  const result = await fit(model, train, fitOpts);
  if (result.stoppedEarly) console.log(`early stopping after epoch ${result.epochsRun}`);
  const evaluation = await evaluate(model, test, { format: spec.format });
  console.log(
    `test loss ${evaluation.loss.toFixed(4)} · test accuracy ${
      (100 * evaluation.accuracy).toFixed(2)
    }% ` +
      `(${test.count} digits) · ${result.seconds.toFixed(1)} s, ${
        result.samplesPerSecond.toFixed(0)
      } samples/s`,
  );
  const dir = await saveRun({
    model,
    modelName: variantName(model.name, learningRate, opts.variant),
    section: `${spec.section} (scripts/train.ts)`,
    config: {
      epochs,
      batchSize,
      input: spec.formatName,
      trainSamples: train.count,
      optimizer: "adam",
      learningRate,
      ...Object.fromEntries(Object.entries(opts.variant).filter(([, v]) => v !== undefined)),
      ...(spec.vggSettings
        ? { earlyStopping: { monitor: "loss", patience: 3 }, validation: "test" }
        : {}),
      onDivergence: opts.onDivergence,
    },
    fit: result,
    evaluation,
    backend,
    profile,
    seed,
    weightsSource: "random init (glorot uniform)",
  });
  console.log(`run record: ${dir}`);
  if (!dir.startsWith(runsRoot())) console.log(`(runs root ${runsRoot()})`);
}

if (import.meta.main) await main();

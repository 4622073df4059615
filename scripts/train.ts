/**
 * `deno task train <model>`: trains one of the study's from-scratch models with its study
 * settings outside a notebook and writes the same run record the notebooks read — the same
 * run asked for here or in a notebook has one key, so a long run made here (e.g. in the
 * background: `nohup deno task train … > log 2>&1 &`) is what the notebook then shows.
 * A killed run resumes from its last finished epoch when the same command runs again.
 * Run with --help for the options.
 */
import { parseArgs } from "node:util";
import {
  BACKEND_NAMES,
  type BackendName,
  initBackend,
  type Precision,
} from "../lib/machine/backend.ts";
import { LOSS_KINDS, type LossKind } from "../lib/train/loss.ts";
import { loadMnist, takeFirst } from "../lib/data/mnist.ts";
import { LR_SCHEDULES, type LrScheduleName } from "../lib/train/lr_schedule.ts";
import { currentProfile, describeProfile, profileSplits } from "../lib/study/profile.ts";
import { terminalProgress } from "../lib/train/progress.ts";
import { runsRoot } from "../lib/runs/runs.ts";
import { type ModelName, STUDY_MODELS, studyModel } from "../lib/study/settings.ts";
import { testLine } from "../lib/study/study.ts";
import { studyRun } from "../lib/study/study_run.ts";
import { type RunRequest, STUDY_SEED } from "../lib/study/notebooks.ts";
import { studyLrFind } from "../lib/study/lr_find_run.ts";
import type { Variant } from "../lib/study/settings.ts";
import { formatDuration } from "../lib/report/format.ts";
import { runCommand, UserError } from "../lib/machine/cli_error.ts";
import { stopAlsoOn } from "../lib/machine/signals.ts";

const HELP = `deno task train <model> [options]

Trains a model with the study's settings and writes a run record to outputs/runs/<run-id>/
(or $RUNS_DIR): config.json, history.csv, metrics.json, the test predictions, model.json +
weights.bin. A run whose record exists is not trained again (the record is shown); a run
that was killed resumes from its last finished epoch when the same command is run again.

Models:
${
  Object.values(STUDY_MODELS).map((m) =>
    `  ${m.name.padEnd(15)} ${m.title}, ${m.input}, batch ${m.batchSize}, ${m.epochs} epochs` +
    (m.earlyStopping
      ? `, EarlyStopping(${m.earlyStopping.monitor}, ${m.earlyStopping.patience})`
      : "")
  ).join("\n")
}
  (the VGG models validate on the test set each epoch, as the study did)

Options:
  --epochs N          epochs (default: the study's; the quick profile caps the default at 1)
  --batch-size N      batch size (default: the study's)
  --seed N            seed of initial weights, shuffles and dropout (default ${STUDY_SEED}, the notebooks')
  --profile P         quick | reduced | full (default: $MNIST_PROFILE, else full)
  --train-samples N   train on the profile's first N digits only (default: all of the profile's)
  --backend B         ${
  BACKEND_NAMES.join(" | ")
} (default: $MNIST_BACKEND, else the best available)
  --on-divergence A   stop (default) | warn | off: what to do when the loss explodes or becomes NaN
  --learning-rate X   Adam's learning rate (default 0.001, Keras's)
  --lr-schedule S     constant (default) | cosine: Keras's CosineDecay from the learning rate to 0
                      over the run's steps
  --loss L            logits (default: Keras 2.x's cross-entropy from the softmax's logits) |
                      clipped (tfjs's, from probabilities clipped to [1e-7, 1 − 1e-7])
  --precision P       float32 (default, the study's) | mixed_bfloat16: convolutions in bf16 with
                      fp32 accumulation, on CPUs with native bf16 (also MNIST_PRECISION)
  --retrain           train even when a record of this run exists (also MNIST_RETRAIN=1)
  --debug             show the stack trace of an error (also MNIST_DEBUG=1)
  VGG models only, the experiments of notebook 04 (the study: linear convs, Glorot, no BN):
  --conv-activation A linear (default) | relu
  --conv-init I       glorot (default) | he
  --batch-norm        BatchNormalization after every convolution
  --lr-find           run notebook 04's learning-rate finder on this net instead of training it
                      (Adam's rate swept from 1e-6 to 1; its record under .lr-find/)
  -h, --help          this text

Example: deno task train baseline --profile quick --seed 1
Long run: nohup deno task train vgg16_scratch --profile full --on-divergence warn > vgg16.log 2>&1 &
          (progress lines go to the log at least every minute; run the same command to resume)`;

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
      "lr-schedule": { type: "string" },
      loss: { type: "string" },
      precision: { type: "string" },
      retrain: { type: "boolean" },
      "train-samples": { type: "string" },
      "conv-activation": { type: "string" },
      "conv-init": { type: "string" },
      "batch-norm": { type: "boolean" },
      "lr-find": { type: "boolean" },
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
      `expected one model (${Object.keys(STUDY_MODELS).join(", ")}), got ${positionals.length}`,
    );
  }
  const model = studyModel(positionals[0]).name;
  const backend = values.backend as BackendName | undefined;
  if (backend && !(BACKEND_NAMES as readonly string[]).includes(backend)) {
    throw new Error(`--backend ${backend} is not one of ${BACKEND_NAMES.join(", ")}`);
  }
  const onDivergence = values["on-divergence"] ?? "stop";
  if (onDivergence !== "stop" && onDivergence !== "warn" && onDivergence !== "off") {
    throw new Error(`--on-divergence must be stop, warn or off, got "${onDivergence}"`);
  }
  const precision = values.precision as Precision | undefined;
  if (precision !== undefined && precision !== "float32" && precision !== "mixed_bfloat16") {
    throw new Error(`--precision must be float32 or mixed_bfloat16, got "${precision}"`);
  }
  const loss = values.loss ?? "logits";
  if (!(LOSS_KINDS as readonly string[]).includes(loss)) {
    throw new Error(`--loss must be ${LOSS_KINDS.join(" or ")}, got "${loss}"`);
  }
  const learningRate = values["learning-rate"] === undefined
    ? undefined
    : Number(values["learning-rate"]);
  if (learningRate !== undefined && !(learningRate > 0)) {
    throw new Error(`--learning-rate must be a positive number, got "${values["learning-rate"]}"`);
  }
  const lrSchedule = values["lr-schedule"] as LrScheduleName | undefined;
  if (lrSchedule !== undefined && !LR_SCHEDULES.includes(lrSchedule)) {
    throw new Error(
      `--lr-schedule must be ${LR_SCHEDULES.join(" or ")}, got "${values["lr-schedule"]}"`,
    );
  }
  const convActivation = values["conv-activation"];
  if (convActivation !== undefined && convActivation !== "linear" && convActivation !== "relu") {
    throw new Error(`--conv-activation must be linear or relu, got "${convActivation}"`);
  }
  const convInit = values["conv-init"];
  if (convInit !== undefined && convInit !== "glorot" && convInit !== "he") {
    throw new Error(`--conv-init must be glorot or he, got "${convInit}"`);
  }
  const variant: Variant = {
    convActivation,
    convInit,
    batchNorm: values["batch-norm"] || undefined,
    learningRate,
    lrSchedule,
  };
  if (
    model === "baseline" &&
    [variant.convActivation, variant.convInit, variant.batchNorm].some((v) => v !== undefined)
  ) {
    throw new Error("--conv-activation, --conv-init and --batch-norm apply to the VGG models only");
  }
  return {
    help: false as const,
    model: model as ModelName,
    variant,
    epochs: int("epochs", values.epochs, 1),
    batchSize: int("batch-size", values["batch-size"], 1),
    seed: int("seed", values.seed, 0),
    trainSamples: int("train-samples", values["train-samples"], 1),
    profile: values.profile,
    backend,
    onDivergence: onDivergence as "stop" | "warn" | "off",
    loss: loss as LossKind,
    precision,
    retrain: values.retrain ?? false,
    lrFind: values["lr-find"] ?? false,
  };
}

/** `fn()`, its error turned into a UserError saying what it was about (and what to do). */
function asUserError<T>(what: string, fn: () => T, todo?: string): T {
  const wrap = (e: unknown) =>
    new UserError(`${what}: ${(e as Error).message}${todo ? ` — ${todo}` : ""}`, { cause: e });
  try {
    const out = fn();
    return (out instanceof Promise ? out.catch((e) => Promise.reject(wrap(e))) : out) as T;
  } catch (e) {
    throw wrap(e);
  }
}

async function main(args: string[]): Promise<number> {
  let opts: ReturnType<typeof parseTrainArgs>;
  try {
    opts = parseTrainArgs(args);
  } catch (e) {
    console.error(`train: ${(e as Error).message}\n\n${HELP}`);
    return 2;
  }
  if (opts.help) {
    console.log(HELP);
    return 0;
  }
  // Ctrl-C, like SIGTERM and SIGHUP, releases the run's lock and says where the run stopped.
  stopAlsoOn("SIGINT");
  const spec = studyModel(opts.model);
  const profile = asUserError("--profile", () => currentProfile(opts.profile));
  console.log(describeProfile(profile));
  // A backend that cannot start (a missing library, no GPU adapter) is the user's to fix.
  const backend = await asUserError(
    "backend",
    () => initBackend({ force: opts.backend, precision: opts.precision }),
    "choose another with --backend, or run `deno task setup` to see what is missing",
  );
  const mnist = await loadMnist();
  const splits = profileSplits(mnist, profile, spec.data);
  const train = opts.trainSamples === undefined
    ? splits.train
    : takeFirst(splits.train, Math.min(opts.trainSamples, splits.train.count));
  const test = splits.test;
  const seed = opts.seed ?? STUDY_SEED;
  console.log(
    `model: ${spec.title}, ${spec.input} input, seed ${seed}; data: ${train.count} train / ` +
      `${test.count} test digits`,
  );
  if (opts.lrFind) {
    const found = await studyLrFind({
      model: opts.model,
      variant: opts.variant,
      profile,
      backend,
      train,
      seed,
      loss: opts.loss,
    }, { retrain: opts.retrain || undefined });
    const r = found.result;
    console.log(
      `divergence point ${r.divergenceLr ?? "none (reached the sweep's end)"}, steepest descent ` +
        `${r.steepestLr ?? "–"} · ${r.points.length} steps · finder record: ${found.dir}`,
    );
    return 0;
  }
  // The run as a notebook declares it (lib/study/notebooks.ts), with the command line's data.
  const request: RunRequest = {
    model: opts.model,
    seed,
    variant: opts.variant,
    loss: opts.loss,
    onDivergence: opts.onDivergence,
  };
  const { record, cached } = await studyRun({
    ...request,
    profile,
    backend,
    train,
    test,
    epochs: opts.epochs,
    batchSize: opts.batchSize,
    retrain: opts.retrain || undefined,
    progress: terminalProgress(),
  });
  const m = record.metrics;
  if (!cached && m.stoppedEarly) console.log(`early stopping after epoch ${m.epochsRun}`);
  console.log(
    `${testLine(record.evaluation)} · ${formatDuration(m.trainSeconds)}, ` +
      `${m.samplesPerSecond.toFixed(0)} samples/s`,
  );
  console.log(`run record: ${record.dir}`);
  if (!record.dir.startsWith(runsRoot())) console.log(`(runs root ${runsRoot()})`);
  return 0;
}

if (import.meta.main) await runCommand("train", main);

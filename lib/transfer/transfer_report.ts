/**
 * What the transfer notebooks show about the pipeline of lib/transfer/transfer.ts: the notice when the
 * ImageNet weights are missing, the random-features label, the cache's cost table, feature
 * statistics, and the preprocessing comparison as a table and curves. Nothing here trains.
 */
import pl from "nodejs-polars";
import { type Chart, metricCurvesChart } from "../report/charts.ts";
import { type Displayable, markdown, publicText } from "../report/display.ts";
import type { CacheCost } from "./transfer.ts";
import type { RunRecord, TransferFacts } from "../runs/runs.ts";
import { type ImagenetBase, type ImagenetName, KERAS_WEIGHTS, weightsUrl } from "./weights.ts";
import { accuracyInterval, compareContenders, formatInterval, seedsOf } from "../report/stats.ts";

/** The label every table, chart and run record carries when the base is random. */
export const RANDOM_FEATURES_LABEL = "random features (ImageNet weights unavailable)";

/** Where to put the weight files so the notebook finds them, by base name. */
function weightsHelp(base: ImagenetBase, name: ImagenetName): string {
  const spec = KERAS_WEIGHTS[name];
  return [
    `> **⚠ ImageNet weights unavailable** — this notebook runs the same pipeline on a **randomly`,
    `> initialised, frozen ${name} base** (seed-fixed). Every table, chart and run record below is`,
    `> labelled *${RANDOM_FEATURES_LABEL}*; none of it is an ImageNet result.`,
    `>`,
    `> To get the real thing, make \`${spec.file}\` (${
      (spec.size / 1e6).toFixed(1)
    } MB, md5 \`${spec.md5}\`) available in one of these ways, then rerun:`,
    `> - Keras's cache: \`~/.keras/models/${spec.file}\` (where \`keras.applications.${
      name === "vgg16" ? "VGG16" : "ResNet152V2"
    }(weights="imagenet")\` leaves it; \`$KERAS_HOME/models/\` if set);`,
    `> - the project cache: \`data/weights/${spec.file}\`;`,
    `> - a network connection: the notebook downloads it from \`${
      weightsUrl(spec)
    }\` and checks the md5.`,
    `>`,
    `> Why it failed here: ${
      base.error?.attempts.map((a) => `\`${publicText(a)}\``).join("; ") ?? "unknown"
    }`,
  ].join("\n");
}

/** The notebook's first output: a warning box when the base is random, else one line on its weights. */
export function weightsNotice(base: ImagenetBase, name: ImagenetName): Displayable {
  return base.weights === null ? markdown(weightsHelp(base, name)) : markdown(`✓ ${base.note}`);
}

/** "ImageNet features" or the random-features label, for tables, titles and run records. */
export function featuresLabel(base: ImagenetBase): string {
  return base.weights === null ? RANDOM_FEATURES_LABEL : "ImageNet features";
}

/**
 * The feature cache's saving as a table: per feature set, the base's one pass, a cache hit, and the
 * estimated cost of running the frozen base's forward pass every epoch instead (Keras's frozen-base
 * `fit`: `epochs` forward passes over the training images; the test set once either way).
 */
export function cacheSavingsFrame(rows: CacheCost[], epochs: number): pl.DataFrame {
  const perEpoch = rows.map((r) => (r.features.includes("train") ? epochs : 1));
  return pl.DataFrame([
    pl.Series("features", rows.map((r) => r.features), pl.Utf8),
    pl.Series("images", rows.map((r) => r.images), pl.Int64),
    pl.Series("base once (s)", rows.map((r) => r.extractSeconds), pl.Float64),
    pl.Series("cache hit (s)", rows.map((r) => r.hitSeconds), pl.Float64),
    pl.Series(
      "base every epoch, est. (s)",
      rows.map((r, i) => r.extractSeconds * perEpoch[i]),
      pl.Float64,
    ),
    pl.Series("passes saved", perEpoch.map((p) => p - 1), pl.Int32),
  ]);
}

/** The feature cache's costs of each run's splits, for `cacheSavingsFrame`, from the records. */
export function cacheCosts(records: RunRecord[]): CacheCost[] {
  return records.flatMap((r) =>
    transferOf(r).splits.map((s) => ({
      features: `${s.split} (${transferOf(r).preprocessing})`,
      images: s.images,
      extractSeconds: s.extractSeconds,
      hitSeconds: s.readSeconds,
    }))
  );
}

/** Feature statistics of each run's training features, as a table (from the records). */
export function featureStatsFrame(records: RunRecord[]): pl.DataFrame {
  return pl.DataFrame(records.map((r) => transferOf(r).featureStats));
}

/** A transfer record's facts; an error names a record that is not a transfer run. */
function transferOf(r: RunRecord): TransferFacts {
  if (!r.config.transfer) throw new Error(`run record ${r.id} is not a transfer run`);
  return r.config.transfer;
}

/** The preprocessing comparison: one row per run (mode), test metrics and what each step cost. */
export function preprocessingFrame(records: RunRecord[], label: string): pl.DataFrame {
  const described: Record<string, string> = {
    study: "study: x/255 in [0, 1] (what the study fed)",
    caffe: "caffe: BGR, ×255 minus ImageNet means (Keras VGG16)",
    tf: "tf: x/127.5 − 1 in [−1, 1] (Keras ResNetV2)",
  };
  const mode = (r: RunRecord) => transferOf(r).preprocessing;
  return pl.DataFrame([
    pl.Series("preprocessing", records.map((r) => described[mode(r)] ?? mode(r)), pl.Utf8),
    pl.Series("features", records.map(() => label), pl.Utf8),
    pl.Series("test_accuracy", records.map((r) => r.metrics.testAccuracy), pl.Float64),
    pl.Series(
      "95% interval (Wilson)",
      records.map((r) => formatInterval(accuracyInterval(r))),
      pl.Utf8,
    ),
    pl.Series("test_loss", records.map((r) => r.metrics.testLoss ?? NaN), pl.Float64),
    pl.Series("final_train_loss", records.map((r) => lastOf(r.history, "loss")), pl.Float64),
    pl.Series("epochs", records.map((r) => r.metrics.epochsRun), pl.Int32),
    pl.Series("extract_s", records.map((r) => transferOf(r).extractSeconds), pl.Float64),
    pl.Series("head_train_s", records.map((r) => r.metrics.trainSeconds), pl.Float64),
  ]);
}

function lastOf(df: pl.DataFrame, column: string): number {
  const values = df.getColumn(column).toArray() as number[];
  return values[values.length - 1] ?? NaN;
}

/** Loss and accuracy per epoch of each run's head, one line per preprocessing. */
export function preprocessingCurves(records: RunRecord[], title: string): Promise<Chart> {
  const values = records.flatMap((r) =>
    (r.history.toRecords() as Record<string, number>[]).flatMap((row) =>
      ["loss", "accuracy"].map((metric) => ({
        epoch: row.epoch,
        metric,
        preprocessing: transferOf(r).preprocessing,
        value: row[metric],
      }))
    )
  );
  return metricCurvesChart(values, title, { color: "preprocessing" });
}

/** A transfer run (its variant at every seed in `pool`) as a contender for lib/report/stats.ts. */
function contender(r: RunRecord, pool: RunRecord[], name: string) {
  return { name, runs: seedsOf(r, pool).runs };
}

/**
 * Whether Keras's preprocessing beat the study's on this base: the paired sentence (exact
 * McNemar on the same test digits, over the seeds `pool` holds) between a notebook's two runs.
 */
export function preprocessingVerdict(records: RunRecord[], pool: RunRecord[] = []): string {
  const study = records.find((r) => transferOf(r).preprocessing === "study");
  const keras = records.find((r) => transferOf(r).preprocessing !== "study");
  if (!study || !keras) return "*Only one preprocessing has a run record: nothing to compare.*";
  return compareContenders(
    contender(keras, pool, `Keras's preprocessing (${transferOf(keras).preprocessing})`),
    contender(study, pool, "the study's [0, 1] inputs"),
  ).sentence;
}

/**
 * This notebook's head on the study's preprocessing against the other transfer notebook's (05
 * against 06, the study's claim that the deeper ResNet152V2 did worse), where a record of it with
 * the same profile and precision is in `pool`.
 */
export function againstOtherBase(records: RunRecord[], pool: RunRecord[]): string {
  const own = records.find((r) => transferOf(r).preprocessing === "study");
  if (!own) return "*No run with the study's preprocessing here: nothing to compare.*";
  const builder = own.config.keyParts.model.builder;
  const other = pool.filter((r) =>
    r.config.transfer?.preprocessing === "study" &&
    r.config.keyParts.model.builder !== builder &&
    r.config.profile.name === own.config.profile.name &&
    r.config.backend.precision === own.config.backend.precision
  ).sort((a, b) => b.config.createdAt.localeCompare(a.config.createdAt))[0];
  if (!other) {
    return `*No ${own.config.profile.name}-profile run record of the other transfer notebook ` +
      `yet: run it, then this comparison appears.*`;
  }
  return compareContenders(
    contender(own, pool, `${own.config.modelName} (this notebook)`),
    contender(other, pool, `${other.config.modelName} (${other.config.section})`),
  ).sentence;
}

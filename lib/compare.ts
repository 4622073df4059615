/**
 * The comparison across run records (notebook 07 and the report's index page): one table row
 * per run, accuracy against size and time, and the learning curves overlaid. Everything here
 * reads `RunRecord`s only, never a live model, so the comparison can be rebuilt at any time.
 */
import pl from "nodejs-polars";
import { type Chart, renderChart } from "./charts.ts";
import type { RunRecord } from "./runs.ts";

/** Records of one profile ("full" or "quick"): quick runs are smoke tests, not results. */
export function runsOfProfile(records: RunRecord[], profile: string): RunRecord[] {
  return records.filter((r) => r.config.profile.name === profile);
}

/** What the weights column says: the source, plus the record's caveat label if it has one. */
function weightsText(r: RunRecord): string {
  return r.metrics.label
    ? `${r.config.weightsSource} — ${r.metrics.label}`
    : r.config.weightsSource;
}

/** Short name of a run in charts: the model, and the time stamp when a model was run twice. */
function runName(r: RunRecord, records: RunRecord[]): string {
  const twice = records.filter((o) => o.config.modelName === r.config.modelName).length > 1;
  return twice
    ? `${r.config.modelName} (${r.config.createdAt.slice(0, 16).replace("T", " ")})`
    : r.config.modelName;
}

/**
 * One row per run: model, section, profile, parameters, epochs run, wall time, samples/s,
 * backend, test accuracy, weights source/label, and the run id to find the folder.
 */
export function runsTable(records: RunRecord[]): pl.DataFrame {
  const col = <T>(f: (r: RunRecord) => T) => records.map(f);
  return pl.DataFrame([
    pl.Series("model", col((r) => r.config.modelName), pl.Utf8),
    pl.Series("section", col((r) => r.config.section), pl.Utf8),
    pl.Series("profile", col((r) => r.config.profile.name), pl.Utf8),
    pl.Series("parameters", col((r) => r.metrics.parameters), pl.Int64),
    pl.Series("epochs", col((r) => r.metrics.epochsRun), pl.Int32),
    pl.Series(
      "stopped",
      col((r) => r.metrics.diverged ? "diverged" : r.metrics.stoppedEarly ? "early" : ""),
      pl.Utf8,
    ),
    pl.Series("wall_s", col((r) => r.metrics.trainSeconds), pl.Float64),
    pl.Series("samples_per_s", col((r) => r.metrics.samplesPerSecond), pl.Float64),
    pl.Series(
      "backend",
      col((r) => `${r.config.backend.name} (${r.config.backend.device})`),
      pl.Utf8,
    ),
    pl.Series("test_accuracy", col((r) => r.metrics.testAccuracy), pl.Float64),
    pl.Series("weights", col(weightsText), pl.Utf8),
    pl.Series("run", col((r) => r.id), pl.Utf8),
  ]);
}

function pointValues(records: RunRecord[]) {
  return records.map((r) => ({
    run: runName(r, records),
    model: r.config.modelName,
    parameters: r.metrics.parameters,
    seconds: r.metrics.trainSeconds,
    accuracy: r.metrics.testAccuracy,
    label: r.metrics.label ?? "",
  }));
}

function scatter(
  records: RunRecord[],
  x: { field: string; title: string },
  title: string,
): Promise<Chart> {
  return renderChart({
    title,
    width: 420,
    height: 260,
    data: { values: pointValues(records) },
    encoding: {
      x: { field: x.field, type: "quantitative", title: x.title, scale: { type: "log" } },
      y: {
        field: "accuracy",
        type: "quantitative",
        title: "test accuracy",
        scale: { domain: [0, 1] },
      },
    },
    layer: [
      {
        mark: { type: "point", filled: true, size: 80, tooltip: true },
        encoding: { color: { field: "model" } },
      },
      {
        mark: { type: "text", dx: 6, align: "left", fontSize: 10 },
        encoding: { text: { field: "run" } },
      },
    ],
  }, title);
}

/** Test accuracy against parameter count (log scale): does size buy accuracy? */
export function accuracyVsParamsChart(
  records: RunRecord[],
  title = "test accuracy vs parameters",
): Promise<Chart> {
  return scatter(records, { field: "parameters", title: "parameters (log scale)" }, title);
}

/** Test accuracy against training wall time (log scale): what each point of accuracy costs. */
export function accuracyVsTimeChart(
  records: RunRecord[],
  title = "test accuracy vs training time",
): Promise<Chart> {
  return scatter(records, { field: "seconds", title: "training wall time, s (log scale)" }, title);
}

/**
 * Every run's learning curves in one chart: loss and accuracy per epoch, one colour per run,
 * solid for train and dashed for validation (when the run had a validation split).
 */
export function learningCurvesChart(
  records: RunRecord[],
  title = "learning curves, all runs",
): Promise<Chart> {
  const values: { run: string; epoch: number; metric: string; split: string; value: number }[] = [];
  for (const r of records) {
    const run = runName(r, records);
    for (const row of r.history.toRecords() as Record<string, number | null>[]) {
      for (const metric of ["loss", "accuracy"]) {
        for (const [split, key] of [["train", metric], ["validation", `val_${metric}`]]) {
          const v = row[key];
          if (typeof v === "number" && Number.isFinite(v)) {
            values.push({ run, epoch: row.epoch as number, metric, split, value: v });
          }
        }
      }
    }
  }
  return renderChart({
    title,
    data: { values },
    facet: {
      column: { field: "metric", type: "nominal", title: null, sort: ["loss", "accuracy"] },
    },
    resolve: { scale: { y: "independent" } },
    spec: {
      width: 300,
      height: 200,
      mark: { type: "line", point: true, tooltip: true },
      encoding: {
        x: { field: "epoch", type: "quantitative", axis: { tickMinStep: 1, format: "d" } },
        y: { field: "value", type: "quantitative", scale: { zero: false } },
        color: { field: "run", type: "nominal" },
        strokeDash: { field: "split", type: "nominal" },
        detail: { field: "split" },
      },
    },
  }, title);
}

/**
 * The comparison across run records (notebook 07 and the report's index page): one table row
 * per run, accuracy against size and time, and the learning curves overlaid. Everything here
 * reads `RunRecord`s only, never a live model, so the comparison can be rebuilt at any time.
 */
import pl from "nodejs-polars";
import { type Chart, metricCurvesChart, renderChart } from "./charts.ts";
import { DISPLAY, type Displayable, markdown, show, table } from "./display.ts";
import type { RunRecord } from "./runs.ts";
import { repoRelative } from "./env.ts";

/** Records of one profile ("full" or "quick"): quick runs are smoke tests, not results. */
export function runsOfProfile(
  records: RunRecord[],
  profile: string,
  precision = "float32",
): RunRecord[] {
  // One table never mixes precisions: mixed_bfloat16 runs are compared among themselves.
  return records.filter((r) =>
    r.config.profile.name === profile && (r.config.backend.precision ?? "float32") === precision
  );
}

/** Keras's own MNIST convnet example (keras.io, "Simple MNIST convnet"): its published test accuracy. */
export const KERAS_MNIST_CONVNET_ACCURACY = 0.992;

/**
 * The study's best model among `records` (the full profile's, in practice): which run, its test
 * accuracy and where it came from, next to Keras's published mnist_convnet figure.
 */
export function bestOfStudy(records: RunRecord[]): string {
  // Runs on part of the training set (notebook 04's seed sweep) are not candidates.
  const whole = records.filter((r) =>
    r.config.keyParts.data.trainSamples >= r.config.profile.trainSamples
  );
  if (whole.length === 0) return "*No full-profile records yet: no best model to name.*";
  const best = whole.reduce((a, b) => (b.metrics.testAccuracy > a.metrics.testAccuracy ? b : a));
  const c = best.config;
  const pct = (x: number) => `${(100 * x).toFixed(2)}%`;
  return `**The study's best model: ${c.modelName}** (${c.section}; best of the ${whole.length} ` +
    `full-data run${whole.length === 1 ? "" : "s"} recorded so far) — **${
      pct(best.metrics.testAccuracy)
    }** test accuracy on ${best.metrics.testSamples.toLocaleString("en-US")} digits (run record ` +
    `${best.id}, trained ${
      c.createdAt.slice(0, 10)
    } on ${c.backend.name}, ${c.backend.precision}, ` +
    `${c.machine.cpu}${best.metrics.label ? `; ${best.metrics.label}` : ""}). For reference, ` +
    `Keras's own MNIST convnet example reports ${pct(KERAS_MNIST_CONVNET_ACCURACY)}.`;
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

/** The device's first phrase, e.g. "OpenBLAS 0.3.21" — the full string can run to a paragraph. */
export function shortDevice(device: string, max = 28): string {
  const first = device.split(/[;(,]| NO_| MAX_/)[0].trim();
  return first.length > max ? `${first.slice(0, max - 1)}…` : first;
}

/**
 * The frozen base behind a transfer run (the record's `transfer` facts), or zeros. Its record's own counts cover only the head that trained on
 * cached features; comparing those against whole models would show ResNet152V2 as a
 * 20,490-parameter, 75-second model.
 */
function frozenBase(r: RunRecord): { parameters: number; seconds: number } {
  const t = r.config.transfer;
  return t
    ? { parameters: t.baseParameters, seconds: t.extractSeconds }
    : { parameters: 0, seconds: 0 };
}

/** Every parameter the model's predictions go through: a transfer run's frozen base and head. */
function totalParameters(r: RunRecord): number {
  return r.metrics.parameters + frozenBase(r).parameters;
}

/** Time to the trained model: training, plus a transfer run's one pass of the frozen base. */
function totalSeconds(r: RunRecord): number {
  return r.metrics.trainSeconds + frozenBase(r).seconds;
}

/**
 * One row per run: model, section, profile, parameters (all, and those trained), epochs run,
 * wall time (with a transfer run's feature extraction, also shown alone), samples/s, backend,
 * test accuracy, weights source/label, and the run id to find the folder.
 */
export function runsTable(records: RunRecord[]): pl.DataFrame {
  const col = <T>(f: (r: RunRecord) => T) => records.map(f);
  return pl.DataFrame([
    pl.Series("model", col((r) => r.config.modelName), pl.Utf8),
    pl.Series("section", col((r) => r.config.section), pl.Utf8),
    pl.Series("profile", col((r) => r.config.profile.name), pl.Utf8),
    pl.Series("parameters", col(totalParameters), pl.Int64),
    pl.Series("trained", col((r) => r.metrics.parameters), pl.Int64),
    pl.Series("epochs", col((r) => r.metrics.epochsRun), pl.Int32),
    pl.Series(
      "stopped",
      col((r) => r.metrics.diverged ? "diverged" : r.metrics.stoppedEarly ? "early" : ""),
      pl.Utf8,
    ),
    pl.Series("wall_s", col(totalSeconds), pl.Float64),
    pl.Series("extract_s", col((r) => frozenBase(r).seconds), pl.Float64),
    pl.Series("samples_per_s", col((r) => r.metrics.samplesPerSecond), pl.Float64),
    pl.Series(
      "backend",
      col((r) => `${r.config.backend.name} (${shortDevice(r.config.backend.device)})`),
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
    parameters: totalParameters(r),
    seconds: totalSeconds(r),
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

/** Test accuracy against parameter count (log scale, frozen bases included): does size buy accuracy? */
export function accuracyVsParamsChart(
  records: RunRecord[],
  title = "test accuracy vs parameters",
): Promise<Chart> {
  return scatter(records, { field: "parameters", title: "parameters (log scale)" }, title);
}

/**
 * Test accuracy against wall time to the trained model (log scale; a transfer run's feature
 * extraction included): what each point of accuracy costs.
 */
export function accuracyVsTimeChart(
  records: RunRecord[],
  title = "test accuracy vs training time",
): Promise<Chart> {
  return scatter(
    records,
    { field: "seconds", title: "training wall time incl. feature extraction, s (log scale)" },
    title,
  );
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
  return metricCurvesChart(values, title, { color: "run", dash: "split", width: 300, height: 200 });
}

/** The table of runs, or a notice saying there are none (a fresh checkout has no records). */
export function runsOverview(records: RunRecord[], caption: string): Displayable {
  if (records.length === 0) {
    return markdown(`*${caption}: no run records yet.*`);
  }
  return table(runsTable(records), caption);
}

/** Accuracy vs parameters, accuracy vs time and the overlaid learning curves; none without runs. */
export async function comparisonCharts(records: RunRecord[], what = ""): Promise<Chart[]> {
  if (records.length === 0) return [];
  const suffix = what ? ` (${what})` : "";
  return [
    await accuracyVsParamsChart(records, `test accuracy vs parameters${suffix}`),
    await accuracyVsTimeChart(records, `test accuracy vs training time${suffix}`),
    await learningCurvesChart(records, `learning curves${suffix}`),
  ];
}

/** Displays several outputs from one cell (a cell shows only its last expression by itself). */
export async function showAll(items: Displayable[]): Promise<void> {
  for (const item of items) await show(item[DISPLAY]());
}

/** One line on where the records came from and how many of each profile there are. */
export function recordsSummary(records: RunRecord[], roots: string | string[]): string {
  const where = (Array.isArray(roots) ? roots : [roots]).map((r) => `\`${repoRelative(r)}\``)
    .join(" and ");
  if (records.length === 0) {
    return `No run records in ${where} yet. Run notebooks 02–06, or e.g. \`deno task train baseline\`, ` +
      `then re-run this notebook.`;
  }
  const full = runsOfProfile(records, "full").length;
  const quick = runsOfProfile(records, "quick").length;
  const other = records.length - full - quick;
  return `${records.length} run record${
    records.length === 1 ? "" : "s"
  } in ${where}: ${full} full-profile, ` +
    `${quick} quick-profile${other ? `, ${other} other` : ""}.`;
}

/**
 * What the records say, one bullet per model (its best run): accuracy, and whether it
 * collapsed (diverged, or no better than guessing the most common digit).
 */
export function findings(records: RunRecord[]): string {
  if (records.length === 0) return "*No runs of this profile to summarise.*";
  const best = new Map<string, RunRecord>();
  for (const r of records) {
    const seen = best.get(r.config.modelName);
    if (!seen || r.metrics.testAccuracy > seen.metrics.testAccuracy) {
      best.set(r.config.modelName, r);
    }
  }
  const lines = [...best.values()].map((r) => {
    const m = r.metrics;
    const acc = `${(m.testAccuracy * 100).toFixed(2)}%`;
    const collapsed = m.diverged || m.testAccuracy < 0.2;
    const base = frozenBase(r);
    const en = (n: number) => n.toLocaleString("en-US");
    const notes = [
      `${en(totalParameters(r))} parameters${
        base.parameters ? ` (${en(m.parameters)} trained, the rest a frozen base)` : ""
      }`,
      `${m.epochsRun} epoch${m.epochsRun === 1 ? "" : "s"}${
        m.stoppedEarly ? " (stopped early)" : ""
      }`,
      `${totalSeconds(r).toFixed(0)} s on ${r.config.backend.name}${
        base.seconds ? ` (${base.seconds.toFixed(0)} s of it the base's one pass)` : ""
      }`,
      ...(m.label ? [m.label] : []),
    ];
    const verdict = collapsed
      ? ` — **collapsed**${m.divergence ? `: ${m.divergence.reason}` : " to chance level"}`
      : "";
    return `- **${r.config.modelName}**: ${acc} test accuracy${verdict} (${notes.join(", ")})`;
  });
  return lines.join("\n");
}

/**
 * Named runs side by side, best test accuracy first: notebook 04's study run, its loss
 * experiment and the fixes. Every cell is read from the run's record.
 */
export function variantFrame(rows: { variant: string; record: RunRecord }[]): pl.DataFrame {
  const col = <T>(f: (r: RunRecord) => T) => rows.map((x) => f(x.record));
  return pl.DataFrame([
    pl.Series("variant", rows.map((x) => x.variant), pl.Utf8),
    pl.Series("test accuracy", col((r) => r.metrics.testAccuracy), pl.Float64),
    pl.Series("test loss", col((r) => r.metrics.testLoss ?? NaN), pl.Float64),
    pl.Series(
      "final train loss",
      col((r) => r.history.getColumn("loss").toArray().at(-1) as number),
      pl.Float64,
    ),
    pl.Series("epochs", col((r) => r.metrics.epochsRun), pl.Int32),
    pl.Series(
      "diverged",
      col((r) => r.metrics.divergence ? r.metrics.divergence.reason : "no"),
      pl.Utf8,
    ),
    pl.Series("train seconds", col((r) => r.metrics.trainSeconds), pl.Float64),
    pl.Series("run record", col((r) => r.id), pl.Utf8),
  ]).sort("test accuracy", true);
}

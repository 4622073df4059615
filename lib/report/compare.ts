/**
 * The comparison across run records (notebook 07 and the report's index page): one table row
 * per run, accuracy against size and time, and the learning curves overlaid. Everything here
 * reads `RunRecord`s only, never a live model, so the comparison can be rebuilt at any time.
 */
import pl from "nodejs-polars";
import { type Chart, metricCurvesChart, renderChart } from "./charts.ts";
import { DISPLAY, type Displayable, displayable, markdown, publicPath, show } from "./display.ts";
import { type RunRow, RUNS_TABLE_CSS, runsTableHtml } from "./runs_html.ts";
import type { RunRecord } from "../runs/runs.ts";
import {
  accuracyInterval,
  formatInterval,
  formatSeeds,
  pct,
  ranking,
  seedGroups,
  seedsOf,
} from "./stats.ts";

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
const KERAS_MNIST_CONVNET_ACCURACY = 0.992;

/**
 * The study's best model among `records` (the full profile's, in practice): the variant with the
 * highest mean test accuracy over its seeds, its 95% interval, and whether it is better than the
 * runner-up by the study's rule (lib/report/stats.ts: every run of it beats every run of the other by an
 * exact McNemar test) — "best" only where that holds, "highest-scoring" where it does not — next
 * to Keras's published mnist_convnet figure.
 */
export function bestOfStudy(records: RunRecord[]): string {
  // Runs on part of the training set (notebook 04's seed sweep) are not candidates.
  const whole = records.filter((r) =>
    r.config.keyParts.data.trainSamples >= r.config.profile.trainSamples
  );
  if (whole.length === 0) return "*No full-profile records yet: no best model to name.*";
  const contenders = variantContenders(whole);
  const { order, verdicts } = ranking(contenders);
  const top = order[0], verdict = verdicts[0];
  // The record named is the notebooks' seed when it is there, else the best of the seeds.
  const shown = top.runs.find((r) => r.config.keyParts.seed === 42) ??
    top.runs.reduce((a, b) => (b.metrics.testAccuracy > a.metrics.testAccuracy ? b : a));
  const c = shown.config, m = shown.metrics;
  const interval = accuracyInterval(shown);
  const claimed = verdict === undefined || verdict.better;
  const seeds = top.runs.length > 1
    ? ` Across seeds: **${formatSeeds(seedsOf(shown, top.runs))}** (mean ± sd).`
    : "";
  const keras = KERAS_MNIST_CONVNET_ACCURACY;
  const where = keras < interval.low ? "below" : keras > interval.high ? "above" : "inside";
  return `**The study's ${
    claimed ? "best" : "highest-scoring"
  } model: ${top.name}** (${c.section}; ` +
    `highest mean test accuracy of the ${contenders.length} full-data variant${
      contenders.length === 1 ? "" : "s"
    } recorded so far) — **${pct(m.testAccuracy)}** test accuracy on ${
      m.testSamples.toLocaleString("en-US")
    } digits, 95% interval ${
      formatInterval(interval)
    } (Wilson) (run record ${shown.id}, seed ${c.keyParts.seed}, trained ${
      c.createdAt.slice(0, 10)
    } on ${c.backend.name}, ${c.backend.precision}, ` +
    `${c.machine.cpu}${m.label ? `; ${m.label}` : ""}).${seeds}` +
    (verdict
      ? ` Against the runner-up: ${verdict.sentence}${
        claimed ? "" : " So no single best model is claimed."
      }`
      : "") +
    ` For reference, Keras's own MNIST convnet example reports ${
      pct(keras)
    }, ${where} this run's interval.`;
}

/**
 * Records as contenders, one per variant (its runs at every seed), named by the model; a name
 * two variants share gets its section and run key's settings apart by the record id's tail.
 */
export function variantContenders(records: RunRecord[]): { name: string; runs: RunRecord[] }[] {
  const groups = seedGroups(records);
  const name = (g: (typeof groups)[number]) => g.runs[0].config.modelName;
  return groups.map((g) => {
    const twice = groups.filter((o) => name(o) === name(g)).length > 1;
    return { name: twice ? `${name(g)} [${g.runs[0].id.slice(-4)}]` : name(g), runs: g.runs };
  });
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
 * test accuracy with its 95% interval (Wilson) and, where the same variant ran at several seeds
 * among `records`, its mean ± sd over them; weights source/label, and the run id.
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
    // 95% Wilson interval over the test digits, and the run's variant over seeds (where several)
    pl.Series("ci95_wilson", col((r) => formatInterval(accuracyInterval(r))), pl.Utf8),
    pl.Series("over_seeds", col((r) => overSeeds(r, records)), pl.Utf8),
    pl.Series("weights", col(weightsText), pl.Utf8),
    pl.Series("run", col((r) => r.id), pl.Utf8),
  ]);
}

/** "99.61% ± 0.03, 3 seeds" where the run's variant has several seeds in `records`, else "". */
function overSeeds(r: RunRecord, records: RunRecord[]): string {
  const g = seedsOf(r, records);
  return g.runs.length > 1
    ? `${pct(g.mean)} ± ${(100 * g.sd).toFixed(2)}, ${g.runs.length} seeds`
    : "";
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
function accuracyVsParamsChart(
  records: RunRecord[],
  title = "test accuracy vs parameters",
): Promise<Chart> {
  return scatter(records, { field: "parameters", title: "parameters (log scale)" }, title);
}

/**
 * Test accuracy against wall time to the trained model (log scale; a transfer run's feature
 * extraction included): what each point of accuracy costs.
 */
function accuracyVsTimeChart(
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

/**
 * The table of runs (grouped by section, best first, fits a 1280-px page: lib/report/runs_html.ts), or
 * a notice saying there are none (a fresh checkout has no records).
 */
export function runsOverview(records: RunRecord[], caption: string): Displayable {
  if (records.length === 0) {
    return markdown(`*${caption}: no run records yet.*`);
  }
  const df = runsTable(records);
  return displayable({ df }, () => ({
    "text/html": `<style>${RUNS_TABLE_CSS}</style>` +
      runsTableHtml(df.toRecords() as RunRow[], records, caption),
    "text/plain": `${caption}\n${df.toString()}`,
  }));
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
  const where = (Array.isArray(roots) ? roots : [roots]).map((r) => `\`${publicPath(r)}\``)
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
  // A model's first-steps runs (notebook 04's seed sweep) stand for it only when it has no other.
  const whole = (r: RunRecord) =>
    r.config.keyParts.data.trainSamples >= r.config.profile.trainSamples;
  for (const r of [...records.filter(whole), ...records.filter((r) => !whole(r))]) {
    if (!whole(r) && best.has(r.config.modelName)) continue;
    const seen = best.get(r.config.modelName);
    if (!seen || r.metrics.testAccuracy > seen.metrics.testAccuracy) {
      best.set(r.config.modelName, r);
    }
  }
  const lines = [...best.values()].map((r) => {
    const m = r.metrics;
    const seeds = seedsOf(r, records);
    const acc = `${pct(m.testAccuracy)} (95% interval ${formatInterval(accuracyInterval(r))}${
      seeds.runs.length > 1 ? `; ${formatSeeds(seeds)}` : ""
    })`;
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
 * Named runs side by side, best first: notebook 04's study run, its loss experiment and the
 * fixes. Every cell is read from the run's record: its test accuracy with the 95% interval
 * (Wilson), and — where `pool` holds the same variant at other seeds — the mean ± sd over them
 * with each seed's value; rows are ordered by that mean (the run's own accuracy with one seed).
 */
export function variantFrame(
  rows: { variant: string; record: RunRecord }[],
  pool: RunRecord[] = [],
): pl.DataFrame {
  const seeds = new Map(rows.map((x) => [x.record.id, seedsOf(x.record, pool)]));
  const mean = (x: { record: RunRecord }) => seeds.get(x.record.id)!.mean;
  rows = [...rows].sort((a, b) =>
    mean(b) - mean(a) || b.record.metrics.testAccuracy - a.record.metrics.testAccuracy
  );
  const col = <T>(f: (r: RunRecord) => T) => rows.map((x) => f(x.record));
  return pl.DataFrame([
    pl.Series("variant", rows.map((x) => x.variant), pl.Utf8),
    pl.Series("test accuracy", col((r) => r.metrics.testAccuracy), pl.Float64),
    pl.Series(
      "95% interval (Wilson)",
      col((r) => formatInterval(accuracyInterval(r))),
      pl.Utf8,
    ),
    pl.Series("over seeds", col((r) => formatSeeds(seeds.get(r.id)!)), pl.Utf8),
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
  ]);
}

/**
 * Notebook 04's verdict on its fixes, from the records: the top one with its interval (and its
 * seeds, where `pool` has several), the `reference` run's score, then every fix against the next
 * one down by the study's rule (lib/report/stats.ts) — so "best" is written only where the top fix beats
 * the runner-up at every pairing of their seeds, and the text says when it rests on one seed.
 */
export function variantRanking(
  rows: { variant: string; record: RunRecord }[],
  reference: { variant: string; record: RunRecord } | null,
  pool: RunRecord[] = [],
): string {
  if (rows.length === 0) return "*No variants to rank.*";
  const contenders = rows.map((x) => ({ name: x.variant, runs: seedsOf(x.record, pool).runs }));
  const { order, verdicts, headline } = ranking(contenders);
  const score = (name: string) => {
    const r = rows.find((x) => x.variant === name)!.record;
    const g = seedsOf(r, pool);
    return g.runs.length > 1
      ? formatSeeds(g)
      : `${pct(r.metrics.testAccuracy)} (95% interval ${formatInterval(accuracyInterval(r))})`;
  };
  const oneSeed = order.every((c) => c.runs.length === 1);
  return [
    (verdicts.length === 0 || verdicts[0].better
      ? `${headline} — ${score(order[0].name)} test accuracy.`
      : `**Highest: ${order[0].name}** — ${score(order[0].name)} test accuracy, but not shown ` +
        `better than ${order[1].name} (below), so no single best is claimed.`) +
    (reference
      ? ` ${reference.variant} scored ${pct(reference.record.metrics.testAccuracy)} (95% ` +
        `interval ${formatInterval(accuracyInterval(reference.record))}).`
      : ""),
    "",
    `Ranked by ${
      oneSeed ? "test accuracy" : "mean test accuracy over seeds"
    }, each against the next (exact McNemar test on the same test digits, α = 0.05${
      oneSeed ? "" : "; with several seeds, at every pairing of their runs"
    }):`,
    "",
    ...verdicts.map((v) => `- ${v.sentence}`),
    ...(oneSeed
      ? [
        "",
        `Every variant here ran at one seed (${
          [...new Set(order.map((c) => c.runs[0].config.keyParts.seed))].join(", ")
        }): the ranking holds for that start; other seeds' records join it when they exist.`,
      ]
      : []),
  ].join("\n");
}

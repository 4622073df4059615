/**
 * What notebook 04 shows of the learning-rate finder: each net's curve (smoothed loss against
 * the rate, log x) with the rates the study and its fixes train at, and sentences written from
 * the records — where each training rate sits against its net's divergence point.
 */
import { type Chart, renderChart } from "./charts.ts";
import type { LrFindRecord } from "../study/lr_find_run.ts";

/** A training run's rate set against the finder record of its net. */
export interface RateAgainstFinder {
  /** The run, e.g. "the study (linear convs, Adam 1e-3)". */
  label: string;
  /** The rate it trains at (a decaying schedule: the rate it starts from). */
  lr: number;
  finder: LrFindRecord;
}

/** A rate in the notebooks' style: 0.001 → "1e-3", 0.00032 → "3.2e-4". */
export function formatRate(lr: number): string {
  const [m, e] = lr.toExponential(1).split("e");
  return `${m.replace(/\.0$/, "")}e${Number(e)}`;
}

/** How `lr` sits against a divergence rate, e.g. "3.1× above" or "4.6× below". */
function against(lr: number, divergence: number): string {
  const ratio = lr / divergence;
  if (Math.abs(Math.log(ratio)) < Math.log(1.05)) return "at";
  return ratio > 1 ? `${ratio.toFixed(1)}× above` : `${(1 / ratio).toFixed(1)}× below`;
}

/** One sentence per run: its rate, its net's divergence and steepest-descent rates. */
export function finderSentences(rows: RateAgainstFinder[]): string[] {
  return rows.map(({ label, lr, finder }) => {
    const r = finder.result;
    const s = finder.config.keyParts.finder;
    const steep = r.steepestLr === null ? "" : `, steepest descent at ${formatRate(r.steepestLr)}`;
    if (r.divergenceLr === null) {
      return `**${label}** trains at ${formatRate(lr)}; the loss of its net, ` +
        `${finder.config.modelName}, did not run away up to ` +
        `${formatRate(s.endLr)}, the end of the sweep${steep}.`;
    }
    const where = against(lr, r.divergenceLr);
    const verdict = lr >= r.divergenceLr
      ? "past the point where the finder saw this net's loss turn up for good"
      : lr > r.divergenceLr / 2
      ? "within a factor of 2 of it: at the edge of what this net takes at its start"
      : "inside the range where the loss still fell";
    return `**${label}** trains at ${formatRate(lr)}: ${where} the divergence point of its ` +
      `net, ${finder.config.modelName} (${formatRate(r.divergenceLr)}${steep}) — ${verdict}.`;
  });
}

/**
 * The finder's curves, one line per net (smoothed loss against the rate, log x), with a dashed
 * rule at each training rate in `rows` and a point at each net's divergence rate. The y axis
 * stops at 1.5× the highest starting loss: past the divergence point the loss runs off to
 * huge values that would flatten the rest.
 */
export function finderChart(rows: RateAgainstFinder[], title: string): Promise<Chart> {
  const nets = [...new Map(rows.map((r) => [r.finder.id, r.finder])).values()];
  const curve = nets.flatMap((f) =>
    f.result.points.filter((p) => Number.isFinite(p.smoothed)).map((p) => ({
      net: f.config.modelName,
      lr: p.lr,
      loss: p.smoothed,
    }))
  );
  const top = 1.5 * Math.max(...nets.map((f) => f.result.points[0]?.smoothed ?? 0));
  const divergence = nets.filter((f) => f.result.divergenceLr !== null).map((f) => ({
    net: f.config.modelName,
    lr: f.result.divergenceLr,
    loss: Math.min(f.result.points.find((p) => p.lr === f.result.divergenceLr)!.smoothed, top),
  }));
  const rates = [...new Set(rows.map((r) => r.lr))].map((lr) => ({
    lr,
    rate: `trained at ${formatRate(lr)}`,
  }));
  const x = {
    field: "lr",
    type: "quantitative",
    scale: { type: "log" },
    axis: { format: ".0e" },
    title: "learning rate (log)",
  };
  return renderChart({
    title,
    width: 520,
    height: 260,
    layer: [
      {
        data: { values: curve },
        mark: { type: "line", clip: true, tooltip: true },
        encoding: {
          x,
          y: {
            field: "loss",
            type: "quantitative",
            scale: { domain: [0, top] },
            title: "smoothed training loss",
          },
          color: { field: "net", type: "nominal", legend: { labelLimit: 360 } },
        },
      },
      {
        data: { values: divergence },
        mark: { type: "point", filled: true, size: 80, shape: "diamond", tooltip: true },
        encoding: { x, y: { field: "loss", type: "quantitative" }, color: { field: "net" } },
      },
      {
        data: { values: rates },
        mark: { type: "rule", strokeDash: [4, 3], color: "black", tooltip: true },
        encoding: { x, detail: { field: "rate" } },
      },
    ],
  }, title);
}

/**
 * The diagnostics' charts (Vega-Lite, rendered to SVG): batch loss per step, per-layer norms
 * across epochs, and the share of each digit among the model's answers — what notebook 04 draws
 * from a run's probe data (lib/train/probe.ts) and evaluation.
 */
import type { EpochProbe } from "../train/probe.ts";
import { type Chart, renderChart } from "./charts.ts";

/** Loss after every batch (log scale): shows the exact step where a run breaks. */
export function batchLossChart(
  points: { step: number; epoch: number; loss: number }[],
  title: string,
): Promise<Chart> {
  // Keep the SVG small on long runs: at most ~1,500 points.
  const every = Math.max(1, Math.ceil(points.length / 1500));
  const values = points.filter((_, i) => i % every === 0).map((p) => ({
    ...p,
    loss: Math.max(p.loss, 1e-4),
  }));
  return renderChart({
    title,
    width: 560,
    height: 200,
    data: { values },
    mark: { type: "line", strokeWidth: 1 },
    encoding: {
      x: { field: "step", type: "quantitative", title: "training step (batch)" },
      y: { field: "loss", type: "quantitative", scale: { type: "log" }, title: "batch loss (log)" },
      color: { field: "epoch", type: "ordinal" },
    },
  }, title);
}

/** Heat map of a per-layer quantity (weight or gradient norm) across epochs, log colour. */
export function layerHeatmap(
  probes: EpochProbe[],
  which: "weightNorms" | "gradientNorms",
  title: string,
): Promise<Chart> {
  const values: { epoch: number; layer: string; value: number; order: number }[] = [];
  for (const p of probes) {
    Object.entries(p[which]).forEach(([layer, value], order) =>
      values.push({ epoch: p.epoch, layer, value: Math.max(value, 1e-12), order })
    );
  }
  return renderChart({
    title,
    data: { values },
    mark: { type: "rect", tooltip: true },
    encoding: {
      x: { field: "epoch", type: "ordinal" },
      y: { field: "layer", type: "nominal", sort: { field: "order" } },
      color: {
        field: "value",
        type: "quantitative",
        scale: { type: "log", scheme: "viridis" },
        title: which,
      },
    },
  }, title);
}

/** How often the model predicts each digit on the test set, next to how often each digit occurs. */
export function predictionShareChart(
  predicted: Uint8Array,
  labels: Uint8Array,
  title: string,
): Promise<Chart> {
  const values: { digit: number; share: number; of: string }[] = [];
  for (let d = 0; d < 10; d++) {
    values.push({
      digit: d,
      of: "predicted",
      share: predicted.filter((p) => p === d).length / predicted.length,
    });
    values.push({
      digit: d,
      of: "true labels",
      share: labels.filter((p) => p === d).length / labels.length,
    });
  }
  return renderChart({
    title,
    width: 360,
    height: 180,
    data: { values },
    mark: { type: "bar", tooltip: true },
    encoding: {
      x: { field: "digit", type: "ordinal" },
      xOffset: { field: "of" },
      y: { field: "share", type: "quantitative", axis: { format: ".0%" } },
      color: { field: "of", type: "nominal" },
    },
  }, title);
}

/**
 * Vega-Lite charts, compiled and rendered to SVG here so that a notebook shows the live chart
 * (JupyterLab's renderer) and the HTML export keeps the SVG. No `text/html` in the bundle:
 * JupyterLab would prefer it over the live chart.
 */
import "../machine/node_warnings.ts"; // before vega: its node-fetch dependency triggers DEP0040 at import
import * as vega from "vega";
import * as vl from "vega-lite";
import pl from "nodejs-polars";
import { DISPLAY, type MimeBundle } from "./display.ts";

export const VEGALITE_MIME = "application/vnd.vegalite.v5+json";
const SCHEMA = "https://vega.github.io/schema/vega-lite/v5.json";

// deno-lint-ignore no-explicit-any
export type Spec = Record<string, any>;

/** A rendered chart: its Vega-Lite spec, its SVG, and a one-line description. */
export interface Chart {
  spec: Spec;
  svg: string;
  title: string;
  [DISPLAY](): MimeBundle;
}

/** Compiles a Vega-Lite spec and renders it to SVG (no browser, no network). */
export async function renderChart(
  spec: Spec,
  title = String(spec.title ?? "chart"),
): Promise<Chart> {
  const full = { $schema: SCHEMA, ...spec };
  const view = new vega.View(vega.parse(vl.compile(full as vl.TopLevelSpec).spec), {
    renderer: "none",
  });
  const svg = compactSvg(await view.toSVG());
  view.finalize();
  return {
    spec: full,
    svg,
    title,
    [DISPLAY]: () => ({
      [VEGALITE_MIME]: full,
      "image/svg+xml": svg,
      "text/plain": `[chart] ${title}`,
    }),
  };
}

/** The SVG attributes that place and shape marks (not the labels, values or colours). */
const GEOMETRY = /\b(d|transform|x|y|x1|x2|y1|y2|cx|cy|r|width|height|points|viewBox)="([^"]*)"/g;

/**
 * Vega's SVG, lighter: coordinates rounded to hundredths of a pixel (vega writes them with up to
 * 17 digits, `266.66666666666663`, about a sixth of a notebook page's chart bytes, for a
 * difference no screen shows), and no `opacity="1"` (the default: opacity multiplies down the
 * tree, so a 1 changes nothing; vega writes it on most marks). Text, labels and data are left as
 * they are.
 */
export function compactSvg(svg: string): string {
  return svg.replace(/ (?:fill-|stroke-)?opacity="1"(?=[\s/>])/g, "").replace(
    GEOMETRY,
    (_, name, value: string) =>
      `${name}="${
        value.replace(/-?\d*\.\d{3,}(?:e-?\d+)?/g, (n) => String(Number(Number(n).toFixed(2))))
      }"`,
  );
}

/** Bar chart of how many samples each digit has. */
export function classCountChart(counts: number[], title: string): Promise<Chart> {
  return renderChart({
    title,
    width: 360,
    height: 180,
    data: { values: counts.map((count, digit) => ({ digit, count })) },
    mark: { type: "bar", tooltip: true },
    encoding: {
      x: { field: "digit", type: "ordinal" },
      y: { field: "count", type: "quantitative" },
    },
  });
}

/**
 * Grid of digits drawn as grey pixels (only the non-zero ones, to keep the SVG small), each
 * with a caption underneath. `images` holds n row-major digits of rows×cols uint8 pixels.
 */
export function digitGrid(
  images: Uint8Array,
  opts: {
    rows: number;
    cols: number;
    captions: string[];
    columns: number;
    title?: string;
    cell?: number;
  },
): Promise<Chart> {
  const px = opts.rows * opts.cols;
  const values: { d: number; r: number; c: number; v: number }[] = [];
  opts.captions.forEach((_, d) => {
    for (let p = 0; p < px; p++) {
      const v = images[d * px + p];
      if (v > 0) values.push({ d, r: Math.floor(p / opts.cols), c: p % opts.cols, v });
    }
  });
  const size = (opts.cell ?? 3) * opts.cols;
  return renderChart({
    title: opts.title ?? "digits",
    data: { values },
    transform: [{
      lookup: "d",
      from: {
        data: { values: opts.captions.map((caption, d) => ({ d, caption })) },
        key: "d",
        fields: ["caption"],
      },
    }],
    facet: { field: "d", type: "ordinal", header: { labels: false, title: null } },
    columns: opts.columns,
    spacing: 8,
    spec: {
      width: size,
      height: size,
      layer: [
        {
          mark: { type: "rect" },
          encoding: {
            x: {
              field: "c",
              type: "ordinal",
              scale: { domain: [...Array(opts.cols).keys()] },
              axis: null,
            },
            y: {
              field: "r",
              type: "ordinal",
              scale: { domain: [...Array(opts.rows).keys()] },
              axis: null,
            },
            color: {
              field: "v",
              type: "quantitative",
              scale: { domain: [0, 255], range: ["#ffffff", "#000000"] },
              legend: null,
            },
            // hovering a digit says which it is (its caption) and the pixel's value
            tooltip: [
              { field: "caption", type: "nominal", title: "digit" },
              { field: "v", type: "quantitative", title: "pixel (0–255)" },
            ],
          },
        },
        {
          mark: { type: "text", y: size + 9, x: size / 2, fontSize: 10 },
          encoding: { text: { field: "caption", type: "nominal" } },
          transform: [{
            aggregate: [{ op: "min", field: "caption", as: "caption" }],
            groupby: ["d"],
          }],
        },
      ],
    },
    config: { view: { stroke: "#ddd" } },
  }, opts.title ?? "digits");
}

/**
 * Learning curves per epoch: loss and accuracy side by side, train and (when present)
 * validation as separate lines. `history` has columns epoch, loss, accuracy[, val_loss, val_accuracy].
 */
export function historyChart(history: pl.DataFrame, title = "learning curves"): Promise<Chart> {
  const rows = history.toRecords() as Record<string, number>[];
  const values: { epoch: number; metric: string; split: string; value: number }[] = [];
  for (const r of rows) {
    for (const metric of ["loss", "accuracy"]) {
      if (Number.isFinite(r[metric])) {
        values.push({ epoch: r.epoch, metric, split: "train", value: r[metric] });
      }
      const v = r[`val_${metric}`];
      if (v !== undefined && v !== null && Number.isFinite(v)) {
        values.push({ epoch: r.epoch, metric, split: "validation", value: v });
      }
    }
  }
  return metricCurvesChart(values, title, { color: "split" });
}

/** Where the series of a learning-curve chart come from: colour field, optional dash field. */
export interface CurveSeries {
  color: string;
  dash?: string;
  width?: number;
  height?: number;
  /** Fractional epochs on x (a live chart's points within an epoch): ticks say "0.5". */
  fractionalEpochs?: boolean;
}

/**
 * Loss and accuracy per epoch side by side (independent y scales), one line per series.
 * `values` rows hold `epoch`, `metric` ("loss" | "accuracy"), `value` and the series fields.
 */
export function metricCurvesChart(
  values: Record<string, unknown>[],
  title: string,
  series: CurveSeries,
): Promise<Chart> {
  const encoding: Spec = {
    x: {
      field: "epoch",
      type: "quantitative",
      axis: series.fractionalEpochs ? { format: ".1~f" } : { tickMinStep: 1, format: "d" },
    },
    y: { field: "value", type: "quantitative", scale: { zero: false } },
    color: { field: series.color, type: "nominal" },
  };
  if (series.dash) {
    encoding.strokeDash = { field: series.dash, type: "nominal" };
    encoding.detail = { field: series.dash };
  }
  // what a hover shows: the series, the epoch and the value, rounded as a reader reads them
  encoding.tooltip = [
    { field: series.color, type: "nominal" },
    ...(series.dash ? [{ field: series.dash, type: "nominal" }] : []),
    { field: "metric", type: "nominal" },
    { field: "epoch", type: "quantitative", format: series.fractionalEpochs ? ".2~f" : "d" },
    { field: "value", type: "quantitative", format: ".4~f" },
  ];
  return renderChart({
    title,
    data: { values },
    facet: {
      column: { field: "metric", type: "nominal", title: null, sort: ["loss", "accuracy"] },
    },
    resolve: { scale: { y: "independent" } },
    spec: {
      width: series.width ?? 260,
      height: series.height ?? 180,
      // each point's label for screen readers costs ~190 bytes of SVG; a chart of many runs (07's
      // all-runs curves: ~900 points, 300 kB) hides its points from them — a list that long is
      // not listened through — and keeps the lines', axes' and title's labels
      mark: {
        type: "line",
        point: values.length > LABELLED_POINTS ? { aria: false } : true,
        tooltip: true,
      },
      encoding,
    },
  }, title);
}

/** Above this many points a learning-curve chart's points carry no screen-reader label. */
export const LABELLED_POINTS = 200;

import assert from "node:assert/strict";
import pl from "nodejs-polars";
import {
  classCountChart,
  compactSvg,
  digitGrid,
  historyChart,
  LABELLED_POINTS,
  metricCurvesChart,
  VEGALITE_MIME,
} from "../lib/report/charts.ts";
import { DISPLAY } from "../lib/report/display.ts";

/** A three-epoch history with train and validation loss and accuracy. */
function threeEpochs(): pl.DataFrame {
  return pl.DataFrame({
    epoch: [1, 2, 3],
    loss: [0.9, 0.5, 0.3],
    accuracy: [0.7, 0.85, 0.9],
    val_loss: [0.8, 0.6, 0.55],
    val_accuracy: [0.75, 0.8, 0.82],
  });
}

Deno.test("learning-curve chart: one line per split and metric, with a point per epoch", async () => {
  const chart = await historyChart(threeEpochs(), "curves");
  // 2 panels × 2 splits = 4 line paths; 3 epochs × 4 series = 12 points.
  assert.equal((chart.svg.match(/<path[^>]*aria-roledescription="line mark"/g) ?? []).length, 4);
  assert.equal((chart.svg.match(/aria-roledescription="point"/g) ?? []).length, 12);
  assert.match(chart.svg, />validation</);
  assert.match(chart.svg, />accuracy</);
});

Deno.test("class-count chart: ten bars; the bundle has exactly the three MIME types", async () => {
  const chart = await classCountChart([5, 6, 7, 8, 9, 10, 11, 12, 13, 14], "counts");
  assert.equal((chart.svg.match(/aria-roledescription="bar"/g) ?? []).length, 10);
  const bundle = chart[DISPLAY]();
  assert.deepEqual(Object.keys(bundle).sort(), [
    "application/vnd.vegalite.v5+json",
    "image/svg+xml",
    "text/plain",
  ]);
  assert.equal(
    (bundle[VEGALITE_MIME] as { $schema: string }).$schema.includes("vega-lite/v5"),
    true,
  );
  assert.ok(
    !("text/html" in bundle),
    "no text/html: JupyterLab would prefer it over the live chart",
  );
});

Deno.test("digit grid: one rect per non-zero pixel and a caption per digit", async () => {
  const images = new Uint8Array(2 * 4);
  images.set([0, 255, 0, 128], 0);
  images.set([9, 0, 0, 0], 4);
  const chart = await digitGrid(images, { rows: 2, cols: 2, captions: ["a:7", "b:1"], columns: 2 });
  assert.equal((chart.svg.match(/aria-roledescription="rect mark"/g) ?? []).length, 3);
  assert.match(chart.svg, />a:7</);
  assert.match(chart.svg, />b:1</);
});

Deno.test("chart SVG: coordinates rounded to hundredths of a pixel, default opacities dropped; text, labels and data kept", async () => {
  // hand-written: what vega writes, and what it becomes
  assert.equal(
    compactSvg(
      `<svg width="634" height="377" viewBox="0 0 634.123456 377">` +
        `<path d="M33.33333333333333,0L266.66666666666663,-0.0001h1.5e-7Z" stroke-width="1.25"/>` +
        `<g transform="translate(66.66666666666666,0.5)"><text x="2.999">0.3333333333</text></g>` +
        `<g aria-label="accuracy: 0.99634; epoch: 3" fill="#4c78a8" opacity="0.7"/>` +
        `<line x2="0" opacity="1" stroke-opacity="1"/><rect fill-opacity="10" opacity="1"/></svg>`,
    ),
    `<svg width="634" height="377" viewBox="0 0 634.12 377">` +
      `<path d="M33.33,0L266.67,0h1.5e-7Z" stroke-width="1.25"/>` +
      `<g transform="translate(66.67,0.5)"><text x="3">0.3333333333</text></g>` +
      `<g aria-label="accuracy: 0.99634; epoch: 3" fill="#4c78a8" opacity="0.7"/>` +
      `<line x2="0"/><rect fill-opacity="10"/></svg>`,
  );
  // a rendered chart: the same marks, no coordinate with more than two decimals
  const { svg } = await historyChart(threeEpochs(), "curves");
  assert.doesNotMatch(svg, /\b(?:d|transform|x|y)="[^"]*\d\.\d{3}/);
  assert.equal((svg.match(/aria-roledescription="point"/g) ?? []).length, 12);
});

Deno.test("learning curves of many runs: the points lose their screen-reader labels, the lines keep theirs", async () => {
  const curves = (runs: number) =>
    Array.from(
      { length: runs },
      (_, r) =>
        Array.from({ length: 10 }, (_, e) =>
          ["loss", "accuracy"].map((metric) => ({
            run: `run ${r}`,
            epoch: e + 1,
            metric,
            value: metric === "loss" ? 1 / (e + 1 + r) : 1 - 1 / (e + 2 + r),
          }))).flat(),
    ).flat();
  const few = await metricCurvesChart(curves(10), "few", { color: "run" });
  const many = await metricCurvesChart(curves(11), "many", { color: "run" });
  assert.equal(curves(10).length, LABELLED_POINTS);
  assert.equal((few.svg.match(/aria-roledescription="point"/g) ?? []).length, 200);
  assert.equal((many.svg.match(/aria-roledescription="point"/g) ?? []).length, 0);
  // the 220 points are still drawn, and every line keeps its label
  assert.equal(
    (many.svg.match(/<path transform="translate\([^"]*\)" d="M2\.74,0A/g) ?? []).length,
    220,
  );
  assert.equal((many.svg.match(/aria-roledescription="line mark"/g) ?? []).length, 22);
  assert.ok(many.svg.length < few.svg.length, `${many.svg.length} < ${few.svg.length}`);
});

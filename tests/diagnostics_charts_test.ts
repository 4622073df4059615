import assert from "node:assert/strict";
import { predictionShareChart } from "../lib/report/diagnostics_charts.ts";

Deno.test("the prediction-share chart draws a bar per digit for answers and labels", async () => {
  const predicted = Uint8Array.of(1, 1, 1, 7);
  const chart = await predictionShareChart(predicted, Uint8Array.of(1, 2, 3, 7), "shares");
  assert.equal((chart.svg.match(/aria-roledescription="bar"/g) ?? []).length, 20);
});

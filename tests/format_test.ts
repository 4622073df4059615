/** lib/report/format.ts: durations and byte counts as a reader takes them in. */
import assert from "node:assert/strict";
import { formatBytes, formatDuration } from "../lib/report/format.ts";

Deno.test("byte counts and durations as a reader takes them in", () => {
  assert.equal(formatBytes(16_888_404), "17 MB");
  assert.equal(formatBytes(5_700_000), "6 MB");
  assert.equal(formatBytes(70_001), "71 kB");
  assert.equal(formatBytes(2.5e9), "2.5 GB");
  assert.equal(formatDuration(40), "40 s");
  assert.equal(formatDuration(12 * 60), "12 min");
  assert.equal(formatDuration(3900), "1 h 05 min");
  assert.equal(formatDuration(3 * 3600 + 5 * 60), "3 h 05 min");
  assert.equal(formatDuration(NaN), "unknown");
});

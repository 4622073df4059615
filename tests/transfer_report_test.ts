import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import pl from "nodejs-polars";
import type { HeadResult } from "../lib/transfer.ts";
import {
  cacheSavingsFrame,
  featuresLabel,
  featureStats,
  preprocessingFrame,
  RANDOM_FEATURES_LABEL,
  weightsNotice,
} from "../lib/transfer_report.ts";
import { type ImagenetBase, WeightsUnavailableError } from "../lib/weights.ts";

await tf.setBackend("cpu");

const MARKDOWN = "text/markdown";

/** The MIME bundle a display object shows. */
function bundle(d: unknown): Record<string, string> {
  const show = (d as Record<symbol, () => Record<string, string>>)[Symbol.for("Jupyter.display")];
  return show.call(d);
}

Deno.test("cacheSavingsFrame: train features would be recomputed every epoch, test once", () => {
  const df = cacheSavingsFrame([
    { features: "train (study)", images: 100, extractSeconds: 2, hitSeconds: 0.01 },
    { features: "test (study)", images: 50, extractSeconds: 1, hitSeconds: 0.005 },
  ], 40);
  const rows = df.toRecords() as Record<string, number>[];
  assert.equal(rows[0]["base every epoch, est. (s)"], 80);
  assert.equal(rows[0]["passes saved"], 39);
  assert.equal(rows[1]["base every epoch, est. (s)"], 1);
  assert.equal(rows[1]["passes saved"], 0);
  assert.equal(rows[0]["cache hit (s)"], 0.01);
});

Deno.test("featureStats: zero fraction, mean, spread and maximum", () => {
  const s = featureStats({ features: Float32Array.from([0, 0, 2, 2]), mode: "study", split: "x" });
  assert.deepEqual(s, { mode: "study", split: "x", mean: 1, std: 1, zeroFraction: 0.5, max: 2 });
});

Deno.test("weightsNotice and featuresLabel: a random base is labelled and told how to get the weights", () => {
  const random = {
    weights: null,
    note: "RANDOM base",
    error: new WeightsUnavailableError("no weights", ["keras cache: not found"]),
  } as unknown as ImagenetBase;
  assert.equal(featuresLabel(random), RANDOM_FEATURES_LABEL);
  const text = bundle(weightsNotice(random, "vgg16"))[MARKDOWN];
  assert.match(text, /ImageNet weights unavailable/);
  assert.match(text, /vgg16_weights_tf_dim_ordering_tf_kernels_notop\.h5/);
  assert.match(text, /`keras cache: not found`/);
  const loaded = { weights: { source: "path" }, note: "loaded x.h5" } as unknown as ImagenetBase;
  assert.equal(featuresLabel(loaded), "ImageNet features");
  assert.equal(bundle(weightsNotice(loaded, "resnet152v2"))[MARKDOWN], "✓ loaded x.h5");
});

Deno.test("preprocessingFrame: one row per mode with its test metrics and costs", () => {
  const result = (mode: "study" | "tf", accuracy: number): HeadResult =>
    ({
      mode,
      fit: {
        history: pl.DataFrame({ epoch: [1, 2], loss: [0.9, 0.4], accuracy: [0.5, 0.8] }),
        epochsRun: 2,
        seconds: 3,
      },
      evaluation: { accuracy, loss: 0.5 },
      extractSeconds: 7,
    }) as unknown as HeadResult;
  const rows = preprocessingFrame([result("study", 0.9), result("tf", 0.8)], "label")
    .toRecords() as Record<string, unknown>[];
  assert.equal(rows.length, 2);
  assert.match(rows[1].preprocessing as string, /^tf: /);
  assert.equal(rows[0].test_accuracy, 0.9);
  assert.equal(rows[0].final_train_loss, 0.4);
  assert.equal(rows[0].extract_s, 7);
  assert.equal(rows[0].features, "label");
});

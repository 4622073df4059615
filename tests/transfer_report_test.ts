import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import pl from "nodejs-polars";
import type { RunRecord, TransferFacts } from "../lib/runs.ts";
import {
  cacheCosts,
  cacheSavingsFrame,
  featuresLabel,
  featureStatsFrame,
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

/** A transfer run's record as the report helpers read it. */
function record(mode: string, accuracy: number): RunRecord {
  const transfer: TransferFacts = {
    baseParameters: 100,
    extractSeconds: 7,
    cacheReadSeconds: 0,
    features: "extracted",
    preprocessing: mode,
    featureShape: [1, 1, 4],
    splits: [
      { split: "train", images: 100, extractSeconds: 5, readSeconds: 0.02 },
      { split: "test", images: 20, extractSeconds: 2, readSeconds: 0.01 },
    ],
    featureStats: { mode, split: "train", mean: 1, std: 1, zeroFraction: 0.5, max: 2 },
  };
  return {
    id: `run-${mode}`,
    config: { transfer },
    history: pl.DataFrame({ epoch: [1, 2], loss: [0.9, 0.4], accuracy: [0.5, 0.8] }),
    metrics: { testAccuracy: accuracy, testLoss: 0.5, epochsRun: 2, trainSeconds: 3 },
  } as unknown as RunRecord;
}

Deno.test("preprocessingFrame, cacheCosts and featureStatsFrame read transfer records", () => {
  const records = [record("study", 0.9), record("tf", 0.8)];
  const rows = preprocessingFrame(records, "label").toRecords() as Record<string, unknown>[];
  assert.equal(rows.length, 2);
  assert.match(rows[1].preprocessing as string, /^tf: /);
  assert.equal(rows[0].test_accuracy, 0.9);
  assert.equal(rows[0].final_train_loss, 0.4);
  assert.equal(rows[0].extract_s, 7);
  assert.equal(rows[0].head_train_s, 3);
  assert.equal(rows[0].features, "label");
  assert.deepEqual(cacheCosts(records).map((c) => [c.features, c.images, c.hitSeconds]), [
    ["train (study)", 100, 0.02],
    ["test (study)", 20, 0.01],
    ["train (tf)", 100, 0.02],
    ["test (tf)", 20, 0.01],
  ]);
  assert.deepEqual(featureStatsFrame(records).getColumn("mode").toArray(), ["study", "tf"]);
  assert.throws(
    () =>
      preprocessingFrame(
        [{ ...records[0], config: { transfer: null } } as unknown as RunRecord],
        "",
      ),
    /is not a transfer run/,
  );
});

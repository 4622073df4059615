import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import pl from "nodejs-polars";
import type { RunRecord, TransferFacts } from "../lib/runs/runs.ts";
import {
  againstOtherBase,
  cacheCosts,
  cacheSavingsFrame,
  featuresLabel,
  featureStatsFrame,
  preprocessingFrame,
  preprocessingVerdict,
  RANDOM_FEATURES_LABEL,
  weightsNotice,
} from "../lib/transfer/transfer_report.ts";
import { type ImagenetBase, WeightsUnavailableError } from "../lib/transfer/weights.ts";

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

/**
 * A transfer run's record as the report helpers read it: on `n` test digits (labels 0–9 in turn),
 * right on the first `accuracy`·n of them.
 */
function record(
  mode: string,
  accuracy: number,
  n = 20,
  builder = "vgg16_imagenet_head",
): RunRecord {
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
  const labels = Uint8Array.from({ length: n }, (_, i) => i % 10);
  const right = Math.round(accuracy * n);
  const predicted = labels.map((l, i) => (i < right ? l : (l + 1) % 10));
  return {
    id: `run-${builder}-${mode}-${n}`,
    config: {
      transfer,
      modelName: `${builder}_${mode}`,
      section: builder.startsWith("vgg16") ? "05_transfer_vgg16" : "06_transfer_resnet152v2",
      createdAt: "2026-01-01T00:00:00Z",
      profile: { name: "quick" },
      backend: { precision: "float32" },
      keyParts: { model: { builder, options: {} }, data: { input: mode }, seed: 42 },
    },
    history: pl.DataFrame({ epoch: [1, 2], loss: [0.9, 0.4], accuracy: [0.5, 0.8] }),
    metrics: { testAccuracy: accuracy, testLoss: 0.5, epochsRun: 2, trainSeconds: 3 },
    evaluation: { labels, predicted, accuracy },
  } as unknown as RunRecord;
}

Deno.test("preprocessingFrame, cacheCosts and featureStatsFrame read transfer records", () => {
  const records = [record("study", 0.9), record("tf", 0.8)];
  const rows = preprocessingFrame(records, "label").toRecords() as Record<string, unknown>[];
  assert.equal(rows.length, 2);
  assert.match(rows[1].preprocessing as string, /^tf: /);
  assert.equal(rows[0].test_accuracy, 0.9);
  // 18 of 20: python3's Wilson formula (tests/stats_test.ts) gives 0.69898–0.97213
  assert.equal(rows[0]["95% interval (Wilson)"], "69.90–97.21%");
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

Deno.test("preprocessingVerdict: Keras's preprocessing against the study's, by the paired test", () => {
  // 1,000 digits: the study's run is right on 100 the tf run gets wrong, never the reverse
  assert.match(
    preprocessingVerdict([record("study", 0.9, 1000), record("tf", 0.8, 1000)]),
    /^\*\*the study's \[0, 1\] inputs at 90\.00% is better than Keras's preprocessing \(tf\) at 80\.00%\*\* \(McNemar exact p = 1\.6·10⁻³⁰;/,
  );
  // 20 digits, 2 discordant: p = 0.5
  assert.match(
    preprocessingVerdict([record("study", 0.9), record("tf", 0.8)]),
    /are \*\*not distinguishable\*\* on these 20 digits \(McNemar exact p = 0\.50 ≥ 0\.05\)/,
  );
  assert.match(preprocessingVerdict([record("study", 0.9)]), /Only one preprocessing/);
});

Deno.test("againstOtherBase: 05 against 06 on the study's preprocessing, when the other's record exists", () => {
  const vgg = [record("study", 0.95, 1000), record("caffe", 0.9, 1000)];
  const resnet = record("study", 0.86, 1000, "resnet152v2_head");
  assert.match(
    againstOtherBase(vgg, [...vgg, resnet]),
    /^\*\*vgg16_imagenet_head_study \(this notebook\) at 95\.00% is better than resnet152v2_head_study \(06_transfer_resnet152v2\) at 86\.00%\*\*/,
  );
  assert.match(
    againstOtherBase(vgg, vgg),
    /No quick-profile run record of the other transfer notebook/,
  );
  // the quick profile gives 05 and 06 different test subsets: said, not tested
  const short = record("study", 0.86, 800, "resnet152v2_head");
  assert.match(
    againstOtherBase(vgg, [...vgg, short]),
    /cannot be compared by a paired test: they were tested on 1,000 and 800 digits\./,
  );
});

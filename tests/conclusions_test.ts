import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { METHOD_NOTE, precisionComparisons, studyConclusions } from "../lib/report/conclusions.ts";
import { runsOfProfile } from "../lib/report/compare.ts";
import { loadRuns, type RunRecord } from "../lib/runs/runs.ts";
import { atSeed } from "./fixtures/seeded_records.ts";

const FIXTURES = fileURLToPath(new URL("./fixtures/runs", import.meta.url));

async function fullFixtures(): Promise<RunRecord[]> {
  return runsOfProfile(await loadRuns(FIXTURES), "full");
}

function byModel(records: RunRecord[], name: string): RunRecord {
  return records.find((r) => r.config.modelName === name)!;
}

Deno.test("studyConclusions ranks each section's best model and tests each against the next", async () => {
  const full = await fullFixtures();
  const text = studyConclusions(full);
  const ranked = text.split("\n").filter((l) => /^ {2}\d\. /.test(l));
  assert.deepEqual(
    ranked.map((l) => l.match(/: (\S+) —/)![1]),
    ["vgg_small", "baseline_cnn", "vgg16_imagenet_head", "resnet152v2_head", "vgg16_scratch"],
  );
  assert.match(ranked[0], /98\.90% \(95% interval 98\.68–99\.09%, seed 1\)$/);
  // the fixtures' vgg_small is right on 40 digits baseline_cnn gets wrong, never the reverse
  assert.match(
    text,
    /\*\*fixture: 03_vgg_small: vgg_small at 98\.90% is better than fixture: 02_baseline: baseline_cnn at 98\.50%\*\* \(McNemar exact p = 1\.8·10⁻¹²/,
  );
  assert.match(
    text,
    /- vgg16_scratch \(fixture: 04_vgg16_scratch\): 1 of 1 seed \(seed 1\) collapsed or diverged, ending at 11\.35% — one seed only/,
  );
  // 05 against 06, both with the study's preprocessing, and the random-features caveat
  assert.match(
    text,
    /\*\*Transfer learning \(05 against 06\)\*\* — _random features \(ImageNet weights unavailable\)_.*\n {2}- As the study ran them .*vgg16_imagenet_head at 95\.00% is better than resnet152v2_head at 86\.00%/,
  );
  assert.match(
    text,
    /\*\*bf16 against fp32\*\*: no run of these records exists in both precisions/,
  );
  assert.ok(text.endsWith(`_${METHOD_NOTE}_`));
  assert.match(studyConclusions([]), /No run records of this profile yet/);
});

Deno.test("studyConclusions over seeds: mean ± sd with the per-seed values, and a claim that does not hold", async () => {
  const full = await fullFixtures();
  const small = byModel(full, "vgg_small"), base = byModel(full, "baseline_cnn");
  const scratch = byModel(full, "vgg16_scratch");
  const text = studyConclusions([
    ...full,
    atSeed(small, 2, 60), // 98.30%: below baseline_cnn's 98.50%
    atSeed(base, 2, 0),
    atSeed(scratch, 2, 0),
    atSeed(byModel(full, "vgg16_imagenet_head"), 7, 8000), // 15.00%, no divergence flagged
  ]);
  assert.match(
    text,
    /1\. fixture: 03_vgg_small: vgg_small — 98\.60% ± 0\.42 over 2 seeds \(1: 98\.90, 2: 98\.30\)/,
  );
  assert.match(
    text,
    /2\. fixture: 02_baseline: baseline_cnn — 98\.50% ± 0\.00 over 2 seeds \(1: 98\.50, 2: 98\.50\)/,
  );
  // vgg_small's seed 2 does not beat baseline_cnn's runs: higher on average, not claimed
  assert.match(
    text,
    /vgg_small at 98\.60% ± 0\.42 \(2 seeds\) scores higher than fixture: 02_baseline: baseline_cnn at 98\.50% ± 0\.00 \(2 seeds\) on average, but \*\*not at every seed\*\*: 2 of the 4 pairings/,
  );
  assert.match(
    text,
    /vgg16_scratch \(fixture: 04_vgg16_scratch\): 2 of 2 seeds \(seeds 1, 2\) .* — at every seed run/,
  );
  assert.match(
    text,
    /- vgg16_imagenet_head \(fixture: 05_transfer_vgg16\): 1 of 2 seeds \(seed 7\) collapsed or diverged, ending at 15\.00% — not at every seed/,
  );
});

Deno.test("precisionComparisons: bf16 against fp32 for the same runs, paired", async () => {
  const full = await fullFixtures();
  const base = byModel(full, "baseline_cnn");
  const flipped = atSeed(base, 1, 30);
  const bf16: RunRecord = {
    ...flipped,
    id: `${base.id}-bf16`,
    config: {
      ...flipped.config,
      key: `${base.config.key}-bf16`,
      keyParts: { ...base.config.keyParts, precision: "mixed_bfloat16" },
      backend: { ...base.config.backend, precision: "mixed_bfloat16" },
    },
  };
  const lines = precisionComparisons([...full, bf16]);
  assert.equal(lines.length, 2);
  // 30 digits fp32 gets right and bf16 not, none the other way: p = 2·2⁻³⁰ = 1.9·10⁻⁹
  assert.match(
    lines[1],
    /\*\*baseline_cnn in fp32 at 98\.50% is better than baseline_cnn in bf16 at 98\.20%\*\* \(McNemar exact p = 1\.9·10⁻⁹/,
  );
  const same = precisionComparisons([...full, {
    ...bf16,
    evaluation: base.evaluation,
    metrics: base.metrics,
  }]);
  assert.match(
    same[1],
    /are \*\*not distinguishable\*\* on these 10,000 digits \(McNemar exact p = 1 ≥ 0\.05\)/,
  );
});

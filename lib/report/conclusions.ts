/**
 * The study's conclusions, written from the run records for notebook 07 and the README: each
 * section's best model ranked against the next, the runs that collapsed and at how many seeds,
 * VGG16 against ResNet152V2 as frozen bases (05 against 06), each base's preprocessing, and bf16
 * against fp32. Every "better" is lib/report/stats.ts's rule (exact McNemar on the same test digits, at
 * every pairing of seeds); every accuracy carries its interval or its spread over seeds.
 */
import type { RunRecord } from "../runs/runs.ts";
import { canonicalJson } from "../runs/run_key.ts";
import {
  accuracyInterval,
  ALPHA,
  compareContenders,
  type Contender,
  formatInterval,
  meanSd,
  pct,
  ranking,
} from "./stats.ts";
import { variantContenders } from "./compare.ts";

/** How the study's statistics are computed, in one sentence for a reader of the conclusions. */
export const METHOD_NOTE =
  `Accuracies carry a 95% Wilson score interval over the test digits, or their mean ± sample ` +
  `sd over seeds. "Better" means an exact McNemar test (two-sided binomial on the digits only ` +
  `one of the two models gets right) at α = ${ALPHA} on the same test digits — with several ` +
  `seeds, for every pairing of their runs, so that the worst seed of the winner still beats the ` +
  `best seed of the other; a claim resting on one seed says so.`;

/** Trained on the profile's whole training set (not notebook 04's first-steps sweep). */
function wholeData(r: RunRecord): boolean {
  return r.config.keyParts.data.trainSamples >= r.config.profile.trainSamples;
}

function precision(r: RunRecord): string {
  return r.config.backend.precision ?? "float32";
}

/** "99.63% (99.49–99.73%)" for one run, "99.61% ± 0.03 over 3 seeds (…)" for several. */
function accuracyText(c: Contender): string {
  if (c.runs.length === 1) {
    return `${pct(c.runs[0].metrics.testAccuracy)} (95% interval ${
      formatInterval(accuracyInterval(c.runs[0]))
    }, seed ${c.runs[0].config.keyParts.seed})`;
  }
  const { mean, sd } = meanSd(c.runs.map((r) => r.metrics.testAccuracy));
  return `${pct(mean)} ± ${(100 * sd).toFixed(2)} over ${c.runs.length} seeds (${
    c.runs.map((r) => `${r.config.keyParts.seed}: ${(100 * r.metrics.testAccuracy).toFixed(2)}`)
      .join(", ")
  })`;
}

/** Each section's best variant (highest mean over seeds), ranked, each against the next. */
function sectionRanking(records: RunRecord[]): string[] {
  const sections = [...new Set(records.map((r) => r.config.section))].sort();
  const best = sections.map((s) => {
    const { order } = ranking(variantContenders(records.filter((r) => r.config.section === s)));
    return { ...order[0], name: `${s}: ${order[0].name}` };
  });
  if (best.length < 2) return [];
  const { order, verdicts } = ranking(best);
  return [
    `- **Each section's best model, ranked** (the highest mean test accuracy in each notebook):`,
    ...order.map((c, i) => `  ${i + 1}. ${c.name} — ${accuracyText(c)}`),
    ...verdicts.map((v) => `  - ${v.sentence}`),
  ];
}

/** Variants with a run at chance level or stopped by the divergence guard, at how many seeds. */
function collapses(records: RunRecord[]): string[] {
  const broken = (r: RunRecord) => r.metrics.diverged || r.metrics.testAccuracy < 0.2;
  const lines = variantContenders(records).filter((c) => c.runs.some(broken)).map((c) => {
    const bad = c.runs.filter(broken);
    const seeds = bad.map((r) => r.config.keyParts.seed).join(", ");
    const ended = bad.map((r) => pct(r.metrics.testAccuracy));
    return `  - ${c.name} (${c.runs[0].config.section}): ${bad.length} of ${c.runs.length} ` +
      `seed${c.runs.length === 1 ? "" : "s"} (seed${bad.length === 1 ? "" : "s"} ${seeds}) ` +
      `collapsed or diverged, ending at ${[...new Set(ended)].join(", ")} — ${
        bad.length === c.runs.length
          ? c.runs.length === 1 ? "one seed only" : "at every seed run"
          : "not at every seed"
      }`;
  });
  return lines.length
    ? [
      `- **Runs that collapsed** (test accuracy below 20% — one digit for every input scores ` +
      `about 10% — or stopped by the divergence guard):`,
      ...lines,
    ]
    : [];
}

/** The transfer head on one base (its builder) with one preprocessing, as a contender. */
function transferContender(
  records: RunRecord[],
  builder: string,
  mode: string,
): Contender | null {
  const runs = records.filter((r) =>
    r.config.keyParts.model.builder === builder && r.config.transfer?.preprocessing === mode
  );
  if (runs.length === 0) return null;
  const [c] = variantContenders(runs);
  return c;
}

/** The heads' builders in the run key (notebooks 05 and 06). */
const VGG16_HEAD = "vgg16_imagenet_head", RESNET_HEAD = "resnet152v2_head";

/** 05 against 06 with the study's preprocessing (the study's claim), and each base's own. */
function transfer(records: RunRecord[]): string[] {
  const vgg = transferContender(records, VGG16_HEAD, "study");
  const resnet = transferContender(records, RESNET_HEAD, "study");
  const lines: string[] = [];
  if (vgg && resnet) {
    lines.push(
      `  - As the study ran them ([0, 1] inputs; it found ResNet152V2 worse): ${
        compareContenders(vgg, resnet).sentence
      }`,
    );
  }
  for (
    const [builder, mode, base] of [[VGG16_HEAD, "caffe", "VGG16"], [
      RESNET_HEAD,
      "tf",
      "ResNet152V2",
    ]]
  ) {
    const own = transferContender(records, builder, mode);
    const study = transferContender(records, builder, "study");
    if (own && study) {
      lines.push(
        `  - ${base}, Keras's preprocessing (${mode}) against the study's: ${
          compareContenders(own, study).sentence
        }`,
      );
    }
  }
  if (lines.length === 0) return [];
  const label = records.find((r) => r.config.transfer && r.metrics.label)?.metrics.label;
  return [
    `- **Transfer learning (05 against 06)**${
      label ? ` — _${label}_: these measure the pipeline, not ImageNet features` : ""
    }:`,
    ...lines,
  ];
}

/** bf16 against fp32 wherever the same runs exist in both precisions. */
export function precisionComparisons(records: RunRecord[]): string[] {
  const groups = new Map<string, RunRecord[]>();
  for (const r of records) {
    const { seed: _s, precision: _p, ...rest } = r.config.keyParts;
    const k = canonicalJson(rest);
    groups.set(k, [...(groups.get(k) ?? []), r]);
  }
  const lines: string[] = [];
  for (const runs of groups.values()) {
    const bf16 = runs.filter((r) => precision(r) === "mixed_bfloat16");
    const fp32 = runs.filter((r) => precision(r) === "float32");
    if (bf16.length === 0 || fp32.length === 0) continue;
    const name = runs[0].config.modelName;
    const [a] = variantContenders(bf16), [b] = variantContenders(fp32);
    lines.push(
      `  - ${
        compareContenders({ ...a, name: `${name} in bf16` }, { ...b, name: `${name} in fp32` })
          .sentence
      }`,
    );
  }
  return lines.length
    ? [`- **bf16 against fp32** (the same runs in mixed_bfloat16 and float32):`, ...lines]
    : [
      `- **bf16 against fp32**: no run of these records exists in both precisions yet ` +
      `(\`MNIST_PRECISION=mixed_bfloat16\`).`,
    ];
}

/**
 * The study's conclusions from `records` (one profile's, both precisions): Markdown bullets,
 * then how they were computed. The float32 runs on the whole training set carry the claims.
 */
export function studyConclusions(records: RunRecord[]): string {
  const fp32 = records.filter((r) => precision(r) === "float32");
  const whole = fp32.filter(wholeData);
  if (whole.length === 0) return "*No run records of this profile yet: no conclusions to draw.*";
  return [
    ...sectionRanking(whole),
    ...collapses(whole),
    ...transfer(whole),
    ...precisionComparisons(records.filter(wholeData)),
    "",
    `_${METHOD_NOTE}_`,
  ].join("\n");
}

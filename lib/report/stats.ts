/**
 * Statistics over run records: the 95% interval of a test accuracy (Wilson score), the exact
 * McNemar test between two records' predictions for the same test digits, mean ± sample sd over
 * seeds, and the sentences every "better" in the notebooks and the README is written with.
 *
 * The rule behind "better": model A is better than model B when each of A's runs beats each of
 * B's runs by an exact McNemar test at α = 0.05 on the same test digits. With one seed each that
 * is one test; with several it asks that even A's worst seed beats B's best — a claim that holds
 * across seeds, not on average. Requiring every test to reject (an intersection–union test) keeps
 * the whole claim at level α without a correction for the number of pairings.
 */
import type { RunRecord } from "../runs/runs.ts";
import { canonicalJson } from "../runs/run_key.ts";

/** The significance level of every "better" the study states. */
export const ALPHA = 0.05;

/** The standard normal's 97.5% quantile (python3: statistics.NormalDist().inv_cdf(0.975)). */
const Z95 = 1.959963984540054;

/** A closed interval of proportions, e.g. [0.9949, 0.9973]. */
export interface Interval {
  low: number;
  high: number;
}

/**
 * The Wilson score interval for a proportion of `correct` out of `n` (95% by default): unlike the
 * normal approximation p ± z·√(p(1−p)/n) it stays inside [0, 1] and keeps its coverage near 0 and
 * 1, where the study's accuracies sit (11.35% collapsed, 99.6% fixed).
 */
export function wilsonInterval(correct: number, n: number, z = Z95): Interval {
  if (!Number.isInteger(correct) || !Number.isInteger(n) || n <= 0 || correct < 0 || correct > n) {
    throw new Error(
      `wilsonInterval: need whole counts 0 ≤ correct ≤ n, n > 0; got ${correct}/${n}`,
    );
  }
  const p = correct / n, z2 = z * z;
  const centre = (p + z2 / (2 * n)) / (1 + z2 / n);
  const half = (z / (1 + z2 / n)) * Math.sqrt(p * (1 - p) / n + z2 / (4 * n * n));
  // At p = 0 or 1 that bound is exactly 0 or 1; rounding must not move it a hair.
  return {
    low: correct === 0 ? 0 : Math.max(0, centre - half),
    high: correct === n ? 1 : Math.min(1, centre + half),
  };
}

/** Test predictions and their labels, as a record's `evaluation` holds them. */
export interface Predictions {
  predicted: Uint8Array;
  labels: Uint8Array;
}

/** How many predictions are right. */
export function correctCount(e: Predictions): number {
  let k = 0;
  for (let i = 0; i < e.labels.length; i++) if (e.predicted[i] === e.labels[i]) k++;
  return k;
}

/**
 * The 95% Wilson interval of a record's test accuracy over its test digits: the count of right
 * answers is the accuracy the record reports (the one shown beside the interval) times the digits
 * it was tested on; for a record its stored predictions agree with (tests/results_test.ts checks
 * the committed ones), that is the count of right predictions.
 */
export function accuracyInterval(r: Pick<RunRecord, "evaluation" | "metrics">): Interval {
  const n = r.evaluation.labels.length;
  return wilsonInterval(Math.round(r.metrics.testAccuracy * n), n);
}

function logAddExp(a: number, b: number): number {
  if (a === -Infinity) return b;
  const m = Math.max(a, b);
  return m + Math.log(Math.exp(a - m) + Math.exp(b - m));
}

/**
 * log₁₀ P(X ≤ k) for X ~ Binomial(n, ½), summed in log space: with thousands of discordant
 * digits (a collapsed model against a working one) the probability is far below 1e-300.
 */
export function log10BinomialHalfTail(n: number, k: number): number {
  if (k < 0) return -Infinity;
  if (k >= n) return 0;
  let logC = 0, acc = -Infinity;
  for (let i = 0; i <= k; i++) {
    if (i > 0) logC += Math.log((n - i + 1) / i);
    acc = logAddExp(acc, logC);
  }
  return Math.min(0, (acc - n * Math.LN2) / Math.LN10);
}

/** An exact McNemar test's result; b and c are the discordant digits. */
export interface McNemar {
  /** Test digits compared. */
  n: number;
  /** Digits only the first model gets right. */
  b: number;
  /** Digits only the second model gets right. */
  c: number;
  /** Two-sided p-value (0 when it underflows a double; `log10P` keeps its size). */
  p: number;
  log10P: number;
}

/**
 * The exact McNemar test on the discordant counts: under "both models are equally good", each of
 * the b + c digits exactly one model gets right is the first model's with probability ½, so the
 * two-sided p-value is min(1, 2·P(X ≤ min(b, c))), X ~ Binomial(b + c, ½).
 */
export function mcnemarExact(b: number, c: number, n = b + c): McNemar {
  const log10P = Math.min(0, Math.LOG10E * Math.LN2 + log10BinomialHalfTail(b + c, Math.min(b, c)));
  return { n, b, c, p: 10 ** log10P, log10P };
}

/** Raised when two records cannot be paired: they were not tested on the same digits. */
export class PairingError extends Error {
  override name = "PairingError";
  /** The reason in a few words, for a sentence: "they were tested on 500 and 10,000 digits". */
  constructor(message: string, readonly reason: string) {
    super(message);
  }
}

/**
 * The exact McNemar test between two sets of predictions for the same test digits. The labels
 * must be the same, digit for digit — a record stores its test labels, so two records made on
 * different test sets (another profile, another subset) are refused with a PairingError.
 */
export function pairedTest(
  a: Predictions,
  b: Predictions,
  names: [string, string] = ["the first", "the second"],
): McNemar {
  const [na, nb] = names;
  if (a.labels.length !== b.labels.length) {
    throw new PairingError(
      `${na} was tested on ${a.labels.length} digits and ${nb} on ${b.labels.length}: a paired ` +
        `test needs both models' predictions for the same test digits (same profile and subset)`,
      `they were tested on ${a.labels.length.toLocaleString("en-US")} and ${
        b.labels.length.toLocaleString("en-US")
      } digits`,
    );
  }
  const differ = a.labels.findIndex((l, i) => l !== b.labels[i]);
  if (differ >= 0) {
    throw new PairingError(
      `${na} and ${nb} were tested on different digits (labels differ first at test digit ` +
        `${differ}): a paired test needs the same test digits in the same order`,
      "they were tested on different digits",
    );
  }
  let onlyA = 0, onlyB = 0;
  for (let i = 0; i < a.labels.length; i++) {
    const ra = a.predicted[i] === a.labels[i], rb = b.predicted[i] === b.labels[i];
    if (ra && !rb) onlyA++;
    else if (rb && !ra) onlyB++;
  }
  return mcnemarExact(onlyA, onlyB, a.labels.length);
}

/** Mean and sample standard deviation (n − 1); the sd is NaN for a single value. */
export function meanSd(values: number[]): { mean: number; sd: number; n: number } {
  const n = values.length;
  if (n === 0) throw new Error("meanSd: no values");
  const mean = values.reduce((s, v) => s + v, 0) / n;
  const ss = values.reduce((s, v) => s + (v - mean) ** 2, 0);
  return { mean, sd: n > 1 ? Math.sqrt(ss / (n - 1)) : NaN, n };
}

const SUPERSCRIPT = "⁰¹²³⁴⁵⁶⁷⁸⁹";

/** A p-value as text: "p = 0.0036", "p = 1", or from 10⁻³ down "p = 3.6·10⁻⁹⁰³" (never 0). */
export function formatP(t: Pick<McNemar, "log10P">): string {
  if (t.log10P >= -3) {
    const p = 10 ** t.log10P;
    return `p = ${p >= 0.995 ? "1" : p.toPrecision(2)}`;
  }
  let e = Math.floor(t.log10P), m = Number((10 ** (t.log10P - e)).toFixed(1));
  if (m >= 10) (m = 1, e += 1);
  const sup = `⁻${[...String(-e)].map((d) => SUPERSCRIPT[Number(d)]).join("")}`;
  return `p = ${m}·10${sup}`;
}

/** An accuracy as a percentage with two decimals, e.g. "99.63%". */
export function pct(x: number): string {
  return `${(100 * x).toFixed(2)}%`;
}

/** An interval as percentages, e.g. "99.49–99.73%". */
export function formatInterval(i: Interval): string {
  return `${(100 * i.low).toFixed(2)}–${(100 * i.high).toFixed(2)}%`;
}

/**
 * What makes runs the same experiment but for the seed: the run key's parts without the seed.
 * Records sharing it are one variant at several seeds.
 */
export function variantKey(r: Pick<RunRecord, "config">): string {
  const { seed: _seed, ...rest } = r.config.keyParts;
  return canonicalJson(rest);
}

/** One variant's runs, one per seed (the newest record of each key), seeds ascending. */
export interface SeedGroup {
  key: string;
  runs: RunRecord[];
  seeds: number[];
  accuracies: number[];
  mean: number;
  /** Sample sd over seeds; NaN with one seed. */
  sd: number;
}

/** A group from runs of one variant (a record asked for twice is counted once, the newest). */
function groupOf(key: string, records: RunRecord[]): SeedGroup {
  const bySeed = new Map<number, RunRecord>();
  for (const r of records) {
    const seen = bySeed.get(r.config.keyParts.seed);
    if (!seen || r.config.createdAt > seen.config.createdAt) bySeed.set(r.config.keyParts.seed, r);
  }
  const runs = [...bySeed.values()].sort((a, b) => a.config.keyParts.seed - b.config.keyParts.seed);
  const accuracies = runs.map((r) => r.metrics.testAccuracy);
  const { mean, sd } = meanSd(accuracies);
  return { key, runs, seeds: runs.map((r) => r.config.keyParts.seed), accuracies, mean, sd };
}

/** Records grouped by variant (all but the seed), in the order each variant first appears. */
export function seedGroups(records: RunRecord[]): SeedGroup[] {
  const byKey = new Map<string, RunRecord[]>();
  for (const r of records) {
    const k = variantKey(r);
    byKey.set(k, [...(byKey.get(k) ?? []), r]);
  }
  return [...byKey].map(([k, rs]) => groupOf(k, rs));
}

/** The record's variant at every seed found in `pool` (the record itself always included). */
export function seedsOf(record: RunRecord, pool: RunRecord[]): SeedGroup {
  const key = variantKey(record);
  const others = pool.filter((r) =>
    variantKey(r) === key && r.config.keyParts.seed !== record.config.keyParts.seed
  );
  return groupOf(key, [record, ...others]);
}

/**
 * "99.63% (seed 42)" for one seed; "99.61% ± 0.03 over 3 seeds (1: 99.60, 2: 99.58, 42: 99.63)"
 * for several (mean ± sample sd, then each seed's value).
 */
export function formatSeeds(g: SeedGroup): string {
  if (g.runs.length === 1) return `${pct(g.mean)} (seed ${g.seeds[0]})`;
  const per = g.runs.map((r, i) => `${g.seeds[i]}: ${(100 * r.metrics.testAccuracy).toFixed(2)}`);
  return `${pct(g.mean)} ± ${(100 * g.sd).toFixed(2)} over ${g.runs.length} seeds (${
    per.join(", ")
  })`;
}

/** A named model for a comparison: one run, or its runs at several seeds. */
export interface Contender {
  name: string;
  runs: RunRecord[];
}

/** The outcome of comparing two contenders under the study's rule (see the module's comment). */
export interface Verdict {
  /** The contender with the higher mean accuracy, and the other. */
  first: Contender;
  second: Contender;
  /** Whether `first` is better than `second` at every pairing of their runs. */
  better: boolean;
  /** Every pairing's test (first's run, second's run); empty when they cannot be paired. */
  tests: McNemar[];
  /** The generated sentence (Markdown). */
  sentence: string;
}

function meanOf(c: Contender): number {
  return meanSd(c.runs.map((r) => r.metrics.testAccuracy)).mean;
}

function describe(c: Contender): string {
  if (c.runs.length === 1) return `${c.name} at ${pct(c.runs[0].metrics.testAccuracy)}`;
  const { mean, sd } = meanSd(c.runs.map((r) => r.metrics.testAccuracy));
  return `${c.name} at ${pct(mean)} ± ${(100 * sd).toFixed(2)} (${c.runs.length} seeds)`;
}

/** "seed 42", "seeds 1, 2 and 42". */
function seedWords(c: Contender): string {
  const s = [...new Set(c.runs.map((r) => r.config.keyParts.seed))].sort((a, b) => a - b);
  return s.length === 1 ? `seed ${s[0]}` : `seeds ${s.slice(0, -1).join(", ")} and ${s.at(-1)}`;
}

/**
 * Compares two contenders by the study's rule and writes the sentence: "A is better than B
 * (McNemar exact p = …)", or "A and B are not distinguishable on these 10,000 digits (p = …)",
 * with how many seeds the claim rests on. Contenders tested on different digits get a sentence
 * saying so instead of a test.
 */
export function compareContenders(a: Contender, b: Contender, alpha = ALPHA): Verdict {
  if (a.runs.length === 0 || b.runs.length === 0) {
    throw new Error(`compareContenders: ${a.runs.length ? b.name : a.name} has no runs`);
  }
  const [first, second] = meanOf(b) > meanOf(a) ? [b, a] : [a, b];
  const tests: McNemar[] = [];
  try {
    for (const ra of first.runs) {
      for (const rb of second.runs) {
        tests.push(
          pairedTest(ra.evaluation, rb.evaluation, [
            `${first.name} (${ra.id})`,
            `${second.name} (${rb.id})`,
          ]),
        );
      }
    }
  } catch (e) {
    if (!(e instanceof PairingError)) throw e;
    return {
      first,
      second,
      better: false,
      tests: [],
      sentence: `${describe(first)} and ${
        describe(second)
      } cannot be compared by a paired test: ${e.reason}.`,
    };
  }
  const n = tests[0].n.toLocaleString("en-US");
  const wins = tests.filter((t) => t.b > t.c && t.p < alpha).length;
  const losses = tests.filter((t) => t.c > t.b && t.p < alpha).length;
  // The weakest of the pairings: the largest p (with every pairing significant, the claim's p).
  const worst = tests.reduce((w, t) => (t.log10P > w.log10P ? t : w));
  const better = wins === tests.length;
  const single = tests.length === 1;
  const oneSeed = first.runs.length === 1 && second.runs.length === 1;
  const seedNote = oneSeed
    ? ` — one seed each (${seedWords(first)}${
      seedWords(first) === seedWords(second) ? "" : `, ${seedWords(second)}`
    }), not yet shown across seeds`
    : "";
  let sentence: string;
  if (better && single) {
    sentence =
      `**${describe(first)} is better than ${describe(second)}** (McNemar exact ${
        formatP(tests[0])
      }; ${tests[0].b} of ${n} digits only the first gets right, ${tests[0].c} only the second)` +
      seedNote + ".";
  } else if (better) {
    sentence = `**${describe(first)} is better than ${
      describe(second)
    } at every seed**: each of the ${tests.length} pairings of their runs, McNemar exact ${
      formatP(worst).replace("=", "≤")
    }.`;
  } else if (single) {
    sentence = `${describe(first)} and ${
      describe(second)
    } are **not distinguishable** on these ${n} digits (McNemar exact ${
      formatP(tests[0])
    } ≥ ${alpha})${seedNote}.`;
  } else {
    sentence =
      `${describe(first)} scores higher than ${
        describe(second)
      } on average, but **not at every seed**: ${wins} of the ${tests.length} pairings of their ` +
      `runs favour it at α = ${alpha}${losses ? `, ${losses} favour the other` : ""} (largest ${
        formatP(worst)
      }) — not claimed as better.`;
  }
  return { first, second, better, tests, sentence };
}

/**
 * Contenders ranked by mean test accuracy, each compared with the next one down; the headline
 * claims a best only when the top one is better than the runner-up by the rule above.
 */
export function ranking(contenders: Contender[], alpha = ALPHA): {
  order: Contender[];
  verdicts: Verdict[];
  headline: string;
} {
  const order = [...contenders].sort((a, b) => meanOf(b) - meanOf(a));
  const verdicts = order.slice(1).map((c, i) => compareContenders(order[i], c, alpha));
  const top = order[0];
  const headline = !top
    ? "nothing to rank"
    : verdicts.length === 0
    ? `${describe(top)} is the only one`
    : verdicts[0].better
    ? `**Best: ${top.name}**${
      top.runs.length === 1 && order[1].runs.length === 1 ? ` (on ${seedWords(top)} alone)` : ""
    }`
    : `**Highest: ${top.name}** — not distinguishable from ${order[1].name} by the rule, so no ` +
      `single best is claimed`;
  return { order, verdicts, headline };
}

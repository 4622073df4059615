import assert from "node:assert/strict";
import {
  accuracyInterval,
  compareContenders,
  formatP,
  formatSeeds,
  log10BinomialHalfTail,
  mcnemarExact,
  meanSd,
  pairedTest,
  PairingError,
  ranking,
  seedGroups,
  seedsOf,
  variantKey,
  wilsonInterval,
} from "../lib/report/stats.ts";
import type { RunRecord } from "../lib/runs/runs.ts";

const close = (a: number, b: number, tol: number, what = "") =>
  assert.ok(Math.abs(a - b) <= tol, `${what} ${a} vs ${b} (±${tol})`);

Deno.test("wilsonInterval matches Newcombe (1998)'s published score intervals", () => {
  // Newcombe, "Two-sided confidence intervals for the single proportion: comparison of seven
  // methods", Statistics in Medicine 17:857–872, Table II, method 3 (score, no continuity
  // correction), to the 4 decimals printed there.
  for (
    const [k, n, low, high] of [
      [81, 263, 0.2553, 0.3662],
      [15, 148, 0.0624, 0.1605],
      [0, 20, 0, 0.1611],
      [1, 29, 0.0061, 0.1718],
    ]
  ) {
    const i = wilsonInterval(k, n);
    close(i.low, low, 5e-5, `${k}/${n} low`);
    close(i.high, high, 5e-5, `${k}/${n} high`);
  }
  // 9,963 of 10,000 (the study's best run): the formula worked in python3 with
  // statistics.NormalDist().inv_cdf(0.975) → (0.9949044912550173, 0.9973143519622489).
  const best = wilsonInterval(9963, 10_000);
  close(best.low, 0.9949044912550173, 1e-12);
  close(best.high, 0.9973143519622489, 1e-12);
  assert.equal(wilsonInterval(10, 10).high, 1);
  assert.throws(() => wilsonInterval(11, 10), /0 ≤ correct ≤ n/);
});

Deno.test("exact McNemar p-values equal exact binomial tails computed independently", () => {
  // By hand: b = 2, c = 8 → 2·P(X ≤ 2 | 10, ½) = 2·(1 + 10 + 45)/1024 = 0.109375;
  // b = 0, c = 5 → 2·(1/32) = 0.0625; b = c → 1.
  close(mcnemarExact(2, 8).p, 0.109375, 1e-14);
  close(mcnemarExact(8, 2).p, 0.109375, 1e-14);
  close(mcnemarExact(0, 5).p, 0.0625, 1e-14);
  assert.equal(mcnemarExact(5, 5).p, 1);
  assert.equal(mcnemarExact(0, 0).p, 1);
  assert.equal(mcnemarExact(1, 0).p, 1);
  // python3: from fractions import Fraction; from math import comb;
  // min(1, 2*Fraction(sum(comb(b+c, i) for i in range(min(b, c)+1)), 2**(b+c)))
  close(mcnemarExact(12, 30).p, 2175905291 / 274877906944, 1e-15); // = 0.007915897334896727
  close(mcnemarExact(27, 54).p, 0.0035963477188240634, 1e-15);
  close(mcnemarExact(100, 150).p, 0.001883300935076157, 1e-15);
  // far below a double: log10 of the same Fraction (log10(numerator) - log10(denominator))
  close(mcnemarExact(3000, 0).log10P, -902.7889569962797, 1e-9);
  close(mcnemarExact(8800, 3).log10P, -2638.6102809511517, 1e-8);
  close(log10BinomialHalfTail(10, 2), Math.log10(56 / 1024), 1e-14);
  assert.equal(log10BinomialHalfTail(10, 10), 0);
});

Deno.test("formatP writes small p-values as powers of ten, never as 0", () => {
  assert.equal(formatP(mcnemarExact(2, 8)), "p = 0.11");
  assert.equal(formatP(mcnemarExact(27, 54)), "p = 0.0036");
  assert.equal(formatP(mcnemarExact(5, 5)), "p = 1");
  assert.equal(formatP(mcnemarExact(3000, 0)), "p = 1.6·10⁻⁹⁰³");
  assert.equal(formatP({ log10P: -4.00001 }), "p = 1·10⁻⁴");
});

Deno.test("meanSd: mean and sample standard deviation", () => {
  const s = meanSd([1, 2, 3, 4]);
  assert.equal(s.mean, 2.5);
  close(s.sd, Math.sqrt(5 / 3), 1e-15); // Σ(x−2.5)² = 5, over n − 1 = 3
  assert.ok(Number.isNaN(meanSd([0.99]).sd));
  assert.throws(() => meanSd([]), /no values/);
});

/** Labels 0…9 repeated; `right[i]` says whether the prediction for digit i is correct. */
function predictions(right: boolean[], labelsOffset = 0) {
  const labels = Uint8Array.from(right, (_, i) => (i + labelsOffset) % 10);
  const predicted = Uint8Array.from(right, (r, i) => (r ? labels[i] : (labels[i] + 1) % 10));
  return { labels, predicted };
}

/** Two models' correctness on 20 digits as a 2×2 table: both 7, only A 2, only B 8, neither 3. */
function twoByTwo(): [boolean[], boolean[]] {
  const cells: [boolean, boolean, number][] = [[true, true, 7], [true, false, 2], [
    false,
    true,
    8,
  ], [false, false, 3]];
  const a: boolean[] = [], b: boolean[] = [];
  for (const [ra, rb, count] of cells) {
    for (let i = 0; i < count; i++) (a.push(ra), b.push(rb));
  }
  return [a, b];
}

Deno.test("pairedTest counts the discordant digits of a hand-made 2×2 table", () => {
  const [a, b] = twoByTwo();
  const t = pairedTest(predictions(a), predictions(b));
  assert.deepEqual([t.n, t.b, t.c], [20, 2, 8]);
  close(t.p, 0.109375, 1e-14);
  assert.throws(
    () => pairedTest(predictions(a), predictions(b.slice(1)), ["A", "B"]),
    (e) => e instanceof PairingError && /A was tested on 20 digits and B on 19/.test(e.message),
  );
  assert.throws(
    () => pairedTest(predictions(a), predictions(b, 1), ["A", "B"]),
    /A and B were tested on different digits \(labels differ first at test digit 0\)/,
  );
});

/** A synthetic record: its variant, seed, and correctness per test digit. */
function record(
  variant: string,
  seed: number,
  right: boolean[],
  createdAt = `2026-01-01T00:00:${String(seed % 60).padStart(2, "0")}Z`,
): RunRecord {
  const { labels, predicted } = predictions(right);
  const accuracy = right.filter(Boolean).length / right.length;
  return {
    id: `${variant}-${seed}-${createdAt}`,
    config: {
      createdAt,
      keyParts: { model: { builder: variant, options: {} }, seed } as unknown,
    },
    metrics: { testAccuracy: accuracy, testSamples: right.length },
    evaluation: { labels, predicted, accuracy },
  } as unknown as RunRecord;
}

/** `k` right answers out of `n`, the wrong ones at positions `from`…. */
function rightExcept(n: number, wrong: number, from = 0): boolean[] {
  return Array.from({ length: n }, (_, i) => !(i >= from && i < from + wrong));
}

Deno.test("accuracyInterval: the record's accuracy over its test digits", () => {
  const r = record("m", 42, [...rightExcept(263, 263 - 81)]);
  const i = accuracyInterval(r);
  close(i.low, 0.2553, 5e-5);
  close(i.high, 0.3662, 5e-5);
});

Deno.test("seedGroups: one group per variant, one run per seed (the newest), seeds ascending", () => {
  const n = 100;
  const old = record("a", 42, rightExcept(n, 10), "2026-01-01T00:00:00Z");
  const newer = record("a", 42, rightExcept(n, 5), "2026-01-02T00:00:00Z");
  const a1 = record("a", 1, rightExcept(n, 7));
  const b42 = record("b", 42, rightExcept(n, 20));
  const groups = seedGroups([old, b42, a1, newer]);
  assert.equal(groups.length, 2);
  const [a, b] = groups;
  assert.deepEqual(a.seeds, [1, 42]);
  assert.deepEqual(a.runs.map((r) => r.id), [a1.id, newer.id]);
  close(a.mean, 0.94, 1e-12);
  close(a.sd, Math.sqrt(2) * 0.01, 1e-12); // (0.93, 0.95): deviations ±0.01, over n − 1 = 1
  assert.deepEqual(b.seeds, [42]);
  assert.equal(variantKey(a1), variantKey(newer));
  assert.notEqual(variantKey(a1), variantKey(b42));
  assert.deepEqual(seedsOf(b42, [old, a1, newer]).seeds, [42]);
  assert.deepEqual(seedsOf(a1, [old, b42, newer]).runs.map((r) => r.id), [a1.id, newer.id]);
  assert.equal(formatSeeds(a), "94.00% ± 1.41 over 2 seeds (1: 93.00, 42: 95.00)");
  assert.equal(formatSeeds(b), "80.00% (seed 42)");
});

Deno.test("compareContenders: better, not distinguishable, and a claim that fails across seeds", () => {
  const n = 1000;
  // A misses 10 digits, B misses the same 10 and 30 more: b = 0, c = 30 → p = 2⁻²⁹.
  const a42 = record("a", 42, rightExcept(n, 10));
  const b42 = record("b", 42, rightExcept(n, 40));
  const v = compareContenders({ name: "B", runs: [b42] }, { name: "A", runs: [a42] });
  assert.equal(v.first.name, "A", "the higher accuracy comes first");
  assert.ok(v.better);
  assert.deepEqual([v.tests[0].b, v.tests[0].c], [30, 0]);
  close(v.tests[0].p, 2 ** -29, 1e-22);
  assert.match(
    v.sentence,
    /^\*\*A at 99\.00% is better than B at 96\.00%\*\* \(McNemar exact p = 1\.9·10⁻⁹; 30 of 1,000 digits .* one seed each \(seed 42\), not yet shown across seeds\.$/,
  );
  // C misses 12 digits, 10 of them A's too: b = 2, c = 0 → p = 0.5, not distinguishable.
  const c42 = record("c", 42, rightExcept(n, 12));
  const same = compareContenders({ name: "A", runs: [a42] }, { name: "C", runs: [c42] });
  assert.equal(same.better, false);
  assert.match(
    same.sentence,
    /are \*\*not distinguishable\*\* on these 1,000 digits \(McNemar exact p = 0\.50 ≥ 0\.05\)/,
  );
  // Across seeds: A's seed 1 is as bad as B's runs, so not every pairing favours A.
  const a1 = record("a", 1, rightExcept(n, 40, 500));
  const b1 = record("b", 1, rightExcept(n, 41, 600));
  const mixed = compareContenders({ name: "A", runs: [a42, a1] }, { name: "B", runs: [b42, b1] });
  assert.equal(mixed.tests.length, 4);
  assert.equal(mixed.better, false);
  assert.match(
    mixed.sentence,
    /scores higher than .* on average, but \*\*not at every seed\*\*: 2 of the 4 pairings/,
  );
  // Every run of A beats every run of B: claimed at every seed, with the largest p.
  const a2 = record("a", 2, rightExcept(n, 12, 0));
  const strong = compareContenders({ name: "A", runs: [a42, a2] }, { name: "B", runs: [b42, b1] });
  assert.ok(strong.better);
  assert.match(
    strong.sentence,
    /is better than B at 95\.95% ± 0\.07 \(2 seeds\) at every seed\*\*: each of the 4 pairings of their runs, McNemar exact p ≤ /,
  );
  // Different test sets: no test, a sentence that says why.
  const short = record("d", 42, rightExcept(500, 1));
  const apart = compareContenders({ name: "A", runs: [a42] }, { name: "D", runs: [short] });
  assert.equal(apart.tests.length, 0);
  assert.match(
    apart.sentence,
    /cannot be compared by a paired test: they were tested on 500 and 1,000 digits\.$/,
  );
});

Deno.test("ranking claims a best only when the top beats the runner-up", () => {
  const n = 1000;
  const a = { name: "A", runs: [record("a", 42, rightExcept(n, 10))] };
  const b = { name: "B", runs: [record("b", 42, rightExcept(n, 40))] };
  const c = { name: "C", runs: [record("c", 42, rightExcept(n, 12))] };
  const r = ranking([b, c, a]);
  assert.deepEqual(r.order.map((x) => x.name), ["A", "C", "B"]);
  assert.equal(r.verdicts.length, 2);
  assert.match(r.headline, /\*\*Highest: A\*\* — not distinguishable from C/);
  assert.match(ranking([a, b]).headline, /^\*\*Best: A\*\* \(on seed 42 alone\)$/);
  const a1 = record("a", 1, rightExcept(n, 10, 100));
  const b1 = record("b", 1, rightExcept(n, 40, 100));
  assert.equal(
    ranking([{ ...a, runs: [...a.runs, a1] }, { ...b, runs: [...b.runs, b1] }]).headline,
    "**Best: A**",
  );
});

/**
 * Interpretation in fastai's manner: the confusion matrix, the most-confused pairs and the
 * worst mistakes shown as pictures. The computations are pure functions on host arrays (so
 * they are testable on hand-made predictions); the charts go through lib/report/charts.ts.
 */
import pl from "nodejs-polars";
import { type Chart, digitGrid, renderChart } from "./charts.ts";
import { DISPLAY, type Displayable, show, table } from "./display.ts";
import type { MnistSplit } from "../data/mnist.ts";
import type { Evaluation } from "../train/evaluate.ts";

/** `matrix[t][p]` = how many samples of true class t were predicted as p. */
export function confusionMatrix(
  labels: ArrayLike<number>,
  predicted: ArrayLike<number>,
  classes = 10,
): number[][] {
  if (labels.length !== predicted.length) {
    throw new Error(`confusionMatrix: ${labels.length} labels but ${predicted.length} predictions`);
  }
  const m = Array.from({ length: classes }, () => new Array<number>(classes).fill(0));
  for (let i = 0; i < labels.length; i++) {
    const t = labels[i], p = predicted[i];
    if (!(t >= 0 && t < classes && p >= 0 && p < classes)) {
      throw new Error(
        `confusionMatrix: sample ${i} has class ${t} → ${p}, outside 0…${classes - 1}`,
      );
    }
    m[t][p]++;
  }
  return m;
}

/** Accuracy of each true class (row's diagonal over row sum); NaN for a class with no samples. */
export function perClassAccuracy(matrix: number[][]): number[] {
  return matrix.map((row, t) => {
    const n = row.reduce((a, b) => a + b, 0);
    return n === 0 ? NaN : row[t] / n;
  });
}

/**
 * The `k` off-diagonal cells with the highest counts, as a DataFrame (true, predicted, count),
 * largest first; ties keep (true, predicted) order so the result is deterministic. Zero cells
 * are left out, so a near-perfect model may return fewer than `k` rows.
 */
export function mostConfused(matrix: number[][], k = 5): pl.DataFrame {
  const cells: { true: number; predicted: number; count: number }[] = [];
  matrix.forEach((row, t) =>
    row.forEach((count, p) => {
      if (t !== p && count > 0) cells.push({ true: t, predicted: p, count });
    })
  );
  cells.sort((a, b) => b.count - a.count || a.true - b.true || a.predicted - b.predicted);
  const top = cells.slice(0, k);
  return pl.DataFrame([
    pl.Series("true", top.map((c) => c.true), pl.Int32),
    pl.Series("predicted", top.map((c) => c.predicted), pl.Int32),
    pl.Series("count", top.map((c) => c.count), pl.Int32),
  ]);
}

/** One misclassified test digit: its index in the split, and how sure the model was. */
export interface Mistake {
  index: number;
  true: number;
  predicted: number;
  /** Probability the model gave its (wrong) prediction. */
  confidence: number;
  /** Cross-entropy of the true class, −log p(true): what ranks the mistakes. */
  loss: number;
}

/**
 * The `k` misclassified samples with the highest loss (the model was most sure and wrong),
 * worst first. Indices refer to the split the evaluation was computed on.
 */
export function worstMistakes(evaluation: Evaluation, k = 12, classes = 10): Mistake[] {
  const { probabilities, predicted, labels } = evaluation;
  const out: Mistake[] = [];
  for (let i = 0; i < labels.length; i++) {
    if (predicted[i] === labels[i]) continue;
    const pTrue = Math.max(probabilities[i * classes + labels[i]], 1e-7);
    out.push({
      index: i,
      true: labels[i],
      predicted: predicted[i],
      confidence: probabilities[i * classes + predicted[i]],
      loss: -Math.log(pTrue),
    });
  }
  out.sort((a, b) => b.loss - a.loss || a.index - b.index);
  return out.slice(0, k);
}

/** Heat map of the confusion matrix with the count written in every non-empty cell. */
export function confusionChart(matrix: number[][], title = "confusion matrix"): Promise<Chart> {
  const values = matrix.flatMap((row, t) =>
    row.map((count, p) => ({ true: t, predicted: p, count }))
  );
  const max = Math.max(1, ...values.map((v) => v.count));
  return renderChart({
    title,
    width: 300,
    height: 300,
    data: { values },
    encoding: {
      x: { field: "predicted", type: "ordinal", axis: { labelAngle: 0 } },
      y: { field: "true", type: "ordinal" },
    },
    layer: [
      {
        mark: { type: "rect", tooltip: true },
        encoding: {
          // sqrt: the diagonal holds ~1000 per class, the mistakes a handful; a linear scale
          // would paint every mistake white.
          color: { field: "count", type: "quantitative", scale: { type: "sqrt", scheme: "blues" } },
        },
      },
      {
        mark: { type: "text", fontSize: 9 },
        transform: [{ filter: "datum.count > 0" }],
        encoding: {
          text: { field: "count", type: "quantitative" },
          color: {
            condition: { test: `datum.count > ${max / 3}`, value: "white" },
            value: "black",
          },
        },
      },
    ],
  }, title);
}

/** The 28×28 pixels of the given samples, back to back (a copy). */
function pixelsOf(split: MnistSplit, indices: number[]): Uint8Array {
  const px = split.rows * split.cols;
  const out = new Uint8Array(indices.length * px);
  indices.forEach((idx, i) => out.set(split.images.subarray(idx * px, (idx + 1) * px), i * px));
  return out;
}

/** Caption of one mistake, e.g. "true 4 → 9 (0.97)". */
export function mistakeCaption(m: Mistake): string {
  return `true ${m.true} → ${m.predicted} (${m.confidence.toFixed(2)})`;
}

/** The worst mistakes as a grid of digits captioned "true 4 → 9 (0.97)". */
function mistakesChart(
  mistakes: Mistake[],
  split: MnistSplit,
  title = "worst mistakes (highest loss)",
): Promise<Chart> {
  return digitGrid(pixelsOf(split, mistakes.map((m) => m.index)), {
    rows: split.rows,
    cols: split.cols,
    captions: mistakes.map(mistakeCaption),
    columns: 6,
    cell: 3,
    title,
  });
}

/**
 * Everything to look at after evaluating a model: confusion-matrix heat map, most-confused
 * pairs table, worst-mistakes grid. `test` must be the split `evaluation` was computed on.
 */
export async function interpretation(
  evaluation: Evaluation,
  test: MnistSplit,
  opts: { confused?: number; mistakes?: number; title?: string } = {},
): Promise<Displayable[]> {
  if (evaluation.labels.length > test.count) {
    throw new Error(
      `interpretation: the evaluation has ${evaluation.labels.length} samples but the split only ` +
        `${test.count}; pass the split the model was evaluated on`,
    );
  }
  const prefix = opts.title ? `${opts.title}: ` : "";
  const matrix = confusionMatrix(evaluation.labels, evaluation.predicted);
  const out: Displayable[] = [
    await confusionChart(matrix, `${prefix}confusion matrix`),
    table(mostConfused(matrix, opts.confused ?? 5), `${prefix}most-confused pairs`),
  ];
  const mistakes = worstMistakes(evaluation, opts.mistakes ?? 12);
  if (mistakes.length > 0) {
    out.push(await mistakesChart(mistakes, test, `${prefix}worst mistakes (highest loss)`));
  }
  return out;
}

/** One notebook line: `await showInterpretation(evaluation, test)` displays all of it. */
export async function showInterpretation(
  evaluation: Evaluation,
  test: MnistSplit,
  opts: { confused?: number; mistakes?: number; title?: string } = {},
): Promise<void> {
  for (const d of await interpretation(evaluation, test, opts)) await show(d[DISPLAY]());
}

/**
 * How training shows where it is: one reporter interface, two places to show it. In a
 * notebook a live line updates in place, each finished epoch keeps its line, and a live chart
 * of loss and accuracy redraws in place; in a
 * terminal the line is rewritten with `\r`, and when the output is a file (a background run
 * writing a log) a plain line is printed at least every minute or every 10% of an epoch, so
 * `tail` shows where a multi-hour run is.
 */
import { DISPLAY, type DisplaySend, LiveOutput, LiveText } from "../report/display.ts";

/** Where an epoch is, handed to the reporter after every batch. */
export interface BatchProgress {
  /** 0-based epoch. */
  epoch: number;
  epochs: number;
  /** Samples of this epoch done, and the epoch's total. */
  seen: number;
  count: number;
  /** Running means over this epoch. */
  loss: number;
  accuracy: number;
  samplesPerSecond: number;
}

/** What an epoch ended with. */
export interface EpochLine {
  epoch: number;
  epochs: number;
  count: number;
  loss: number;
  accuracy: number;
  val_loss?: number;
  val_accuracy?: number;
  seconds: number;
}

/** Receives training's progress; `fit` calls it, and the caller picks where it shows. */
export interface ProgressReporter {
  batch(p: BatchProgress): void | Promise<void>;
  epoch(e: EpochLine): void | Promise<void>;
  /** A line of its own, e.g. "resuming …". */
  note(text: string): void | Promise<void>;
}

/** A text progress bar, e.g. "████░░░░". */
export function progressBar(fraction: number, width = 24): string {
  const full = Math.round(Math.min(1, Math.max(0, fraction)) * width);
  return "█".repeat(full) + "░".repeat(width - full);
}

/** "epoch 2/10 ████░░ 3000/60000  loss 0.1234  acc 0.9612  512 samples/s  ETA 111 s". */
function batchText(label: string, p: BatchProgress): string {
  const eta = (p.count - p.seen) / Math.max(p.samplesPerSecond, 1e-9);
  return `${label}epoch ${p.epoch + 1}/${p.epochs} ${progressBar(p.seen / p.count)} ` +
    `${p.seen}/${p.count}  loss ${p.loss.toFixed(4)}  acc ${p.accuracy.toFixed(4)}  ` +
    `${p.samplesPerSecond.toFixed(0)} samples/s  ETA ${eta.toFixed(0)} s`;
}

/** The finished epoch's line, as Keras prints it (validation when present). */
function epochText(label: string, e: EpochLine): string {
  const val = e.val_loss === undefined
    ? ""
    : `  val_loss ${e.val_loss.toFixed(4)}  val_acc ${e.val_accuracy!.toFixed(4)}`;
  return `${label}epoch ${e.epoch}/${e.epochs} ${progressBar(1)} ${e.count}/${e.count}  ` +
    `loss ${e.loss.toFixed(4)}  acc ${e.accuracy.toFixed(4)}${val}  ${e.seconds.toFixed(1)} s`;
}

/** Options of `notebookProgress`; the defaults suit a notebook in a kernel. */
export interface NotebookOptions {
  /** Draw the live loss/accuracy chart too (default true). */
  chart?: boolean;
  /** Points per epoch on the chart's training curves (one every count/this samples). */
  pointsPerEpoch?: number;
  /** Redraw the chart at most this often between epochs (ms); every epoch end redraws. */
  chartEveryMs?: number;
  /** Where the displays go (default: the kernel; nothing outside one). Tests pass a fake. */
  send?: DisplaySend;
  now?: () => number;
}

/**
 * The notebook's reporter: a live line (at most one update a second), one line kept per epoch,
 * and a live chart of loss and accuracy that redraws in place as training goes (fastai's live
 * plot). The chart is drawn from the same running means as the line — no extra reads from the
 * backend — and the saved notebook keeps its last state, the whole run's curves.
 */
export function notebookProgress(label = "", opts: NotebookOptions = {}): ProgressReporter {
  const prefix = label ? `${label} ` : "";
  const now = opts.now ?? (() => performance.now());
  const live = new LiveText(false, opts.send);
  const chart = opts.chart ?? true ? new LiveCurves(label, opts) : null;
  let last = -Infinity;
  return {
    async batch(p) {
      await chart?.batch(p);
      const t = now();
      if (t - last < 1000 || p.seen >= p.count) return;
      last = t;
      await live.update(batchText(prefix, p));
    },
    async epoch(e) {
      await live.update(epochText(prefix, e));
      live.detach();
      await chart?.epoch(e);
    },
    async note(text) {
      const line = new LiveText(false, opts.send);
      await line.update(text);
    },
  };
}

/** One point of the live chart: `epoch` is fractional (1.5 = half-way through epoch 2). */
export interface CurvePoint {
  epoch: number;
  metric: "loss" | "accuracy";
  split: "train" | "validation";
  value: number;
}

/**
 * The live chart's data and its redraws: a training point every 1/pointsPerEpoch of an epoch,
 * training and validation points at each epoch's end; redrawn at most every chartEveryMs, and
 * at every epoch's end. Outside a kernel (no sender) it keeps nothing and draws nothing.
 */
export class LiveCurves {
  readonly points: CurvePoint[] = [];
  #out: LiveOutput;
  #perEpoch: number;
  #everyMs: number;
  #now: () => number;
  #lastDraw = -Infinity;
  #lastStep = -1;
  #epoch = -1;
  #title: string;
  /** How many times the chart was drawn. */
  draws = 0;

  constructor(label: string, opts: NotebookOptions = {}) {
    // undefined → the kernel's sender (LiveOutput's default)
    this.#out = new LiveOutput(opts.send);
    this.#perEpoch = opts.pointsPerEpoch ?? 20;
    this.#everyMs = opts.chartEveryMs ?? 2000;
    this.#now = opts.now ?? (() => performance.now());
    this.#title = `${label ? `${label}: ` : ""}training, live`;
  }

  async batch(p: BatchProgress): Promise<void> {
    if (!this.#out.active || p.seen >= p.count) return;
    if (p.epoch !== this.#epoch) [this.#epoch, this.#lastStep] = [p.epoch, -1];
    const step = Math.floor((p.seen / p.count) * this.#perEpoch);
    if (step <= this.#lastStep) return;
    this.#lastStep = step;
    const x = p.epoch + p.seen / p.count;
    this.#add(x, "train", p.loss, p.accuracy);
    if (this.#now() - this.#lastDraw >= this.#everyMs) await this.draw();
  }

  async epoch(e: EpochLine): Promise<void> {
    if (!this.#out.active) return;
    this.#add(e.epoch, "train", e.loss, e.accuracy);
    if (e.val_loss !== undefined && e.val_accuracy !== undefined) {
      this.#add(e.epoch, "validation", e.val_loss, e.val_accuracy);
    }
    await this.draw();
  }

  #add(epoch: number, split: CurvePoint["split"], loss: number, accuracy: number): void {
    if (Number.isFinite(loss)) this.points.push({ epoch, metric: "loss", split, value: loss });
    if (Number.isFinite(accuracy)) {
      this.points.push({ epoch, metric: "accuracy", split, value: accuracy });
    }
  }

  /** Redraws the chart in its slot now. */
  async draw(): Promise<void> {
    this.#lastDraw = this.#now();
    // loaded on first draw: vega is heavy, and a terminal run never draws
    const { metricCurvesChart } = await import("../report/charts.ts");
    const chart = await metricCurvesChart(
      this.points as unknown as Record<string, unknown>[],
      this.#title,
      { color: "split", fractionalEpochs: true },
    );
    await this.#out.update(chart[DISPLAY]());
    this.draws++;
  }
}

/** Options of `terminalProgress`; the defaults suit a person or a log file. */
export interface TerminalOptions {
  label?: string;
  /** Rewrite one line in place (a terminal) or print plain lines (a file or pipe). */
  tty?: boolean;
  /** Plain mode: print at least this often (ms)… */
  everyMs?: number;
  /** …and at every this fraction of an epoch. */
  everyFraction?: number;
  write?: (s: string) => void;
  now?: () => number;
}

/** The terminal's reporter (the train CLI): `\r` on a terminal, periodic plain lines in a log. */
export function terminalProgress(opts: TerminalOptions = {}): ProgressReporter {
  const prefix = opts.label ? `${opts.label} ` : "";
  const tty = opts.tty ?? Deno.stdout.isTerminal();
  const everyMs = opts.everyMs ?? 60_000;
  const everyFraction = opts.everyFraction ?? 0.1;
  const enc = new TextEncoder();
  const write = opts.write ?? ((s: string) => Deno.stdout.writeSync(enc.encode(s)));
  const now = opts.now ?? (() => performance.now());
  let lastShown = now(), lastStep = -1, width = 0;
  return {
    batch(p) {
      const t = now();
      const text = batchText(prefix, p);
      if (tty) {
        if (t - lastShown < 100) return; // ~10 updates a second is plenty
        lastShown = t;
        write(`\r${text.padEnd(width)}`);
        width = text.length;
        return;
      }
      const step = Math.floor(p.seen / p.count / everyFraction);
      if (p.seen < p.count && (t - lastShown >= everyMs || (step > lastStep && step > 0))) {
        lastShown = t;
        lastStep = step;
        write(`${text}\n`);
      }
    },
    epoch(e) {
      const text = epochText(prefix, e);
      write(tty ? `\r${text.padEnd(width)}\n` : `${text}\n`);
      width = 0;
      lastStep = -1;
      lastShown = now();
    },
    note(text) {
      write(tty && width ? `\n${text}\n` : `${text}\n`);
      width = 0;
    },
  };
}

/** A reporter that shows nothing (tests, `progress: false`). */
const silentProgress: ProgressReporter = {
  batch() {},
  epoch() {},
  note() {},
};

/** The reporter for a `progress` option: a reporter as given, `true`/unset the notebook's, `false` none. */
export function reporterFor(
  progress: boolean | ProgressReporter | undefined,
  label = "",
): ProgressReporter {
  if (progress === false) return silentProgress;
  if (progress === true || progress === undefined) return notebookProgress(label);
  return progress;
}

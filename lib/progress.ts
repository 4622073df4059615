/**
 * How training shows where it is: one reporter interface, two places to show it. In a
 * notebook a live line updates in place and each finished epoch keeps its line; in a
 * terminal the line is rewritten with `\r`, and when the output is a file (a background run
 * writing a log) a plain line is printed at least every minute or every 10% of an epoch, so
 * `tail` shows where a multi-hour run is.
 */
import { LiveText } from "./display.ts";

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
export function batchText(label: string, p: BatchProgress): string {
  const eta = (p.count - p.seen) / Math.max(p.samplesPerSecond, 1e-9);
  return `${label}epoch ${p.epoch + 1}/${p.epochs} ${progressBar(p.seen / p.count)} ` +
    `${p.seen}/${p.count}  loss ${p.loss.toFixed(4)}  acc ${p.accuracy.toFixed(4)}  ` +
    `${p.samplesPerSecond.toFixed(0)} samples/s  ETA ${eta.toFixed(0)} s`;
}

/** The finished epoch's line, as Keras prints it (validation when present). */
export function epochText(label: string, e: EpochLine): string {
  const val = e.val_loss === undefined
    ? ""
    : `  val_loss ${e.val_loss.toFixed(4)}  val_acc ${e.val_accuracy!.toFixed(4)}`;
  return `${label}epoch ${e.epoch}/${e.epochs} ${progressBar(1)} ${e.count}/${e.count}  ` +
    `loss ${e.loss.toFixed(4)}  acc ${e.accuracy.toFixed(4)}${val}  ${e.seconds.toFixed(1)} s`;
}

/** The notebook's reporter: a live line (at most one update a second), one line kept per epoch. */
export function notebookProgress(label = ""): ProgressReporter {
  const prefix = label ? `${label} ` : "";
  const live = new LiveText();
  let last = 0;
  return {
    async batch(p) {
      const now = performance.now();
      if (now - last < 1000 || p.seen >= p.count) return;
      last = now;
      await live.update(batchText(prefix, p));
    },
    async epoch(e) {
      await live.update(epochText(prefix, e));
      live.detach();
    },
    async note(text) {
      const line = new LiveText();
      await line.update(text);
    },
  };
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
export const silentProgress: ProgressReporter = {
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

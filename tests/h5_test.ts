import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import h5wasm from "h5wasm";
import { H5FormatError, h5Fs, memPath, openKerasH5, withKerasH5 } from "../lib/transfer/h5.ts";
import { tinyVgg, vggFixture, writeKerasH5 } from "./fixtures/keras_h5.ts";

await tf.setBackend("cpu");

Deno.test("legacy VGG16 layout: fixed-length names, W/b datasets in the layer group, round trip", async () => {
  const model = tinyVgg();
  const fixture = vggFixture(model);
  const bytes = await writeKerasH5(fixture);
  const file = await openKerasH5(bytes);
  try {
    assert.deepEqual(file.layerNames, [
      "block1_conv1",
      "block1_pool",
      "block2_conv1",
      "block2_pool",
    ]);
    assert.equal(file.kerasVersion, undefined);
    assert.deepEqual(file.info("block1_conv1"), {
      name: "block1_conv1",
      weightNames: ["block1_conv1_W_1:0", "block1_conv1_b_1:0"],
      shapes: [[3, 3, 3, 4], [4]],
    });
    assert.deepEqual(file.info("block1_pool").weightNames, []);
  } finally {
    file.close();
  }
  // Every layer with weights, read through withKerasH5 (the loader's entry point).
  const read = await withKerasH5(
    bytes,
    (f) => new Map(f.layerNames.map((l) => [l, f.read(l)] as const).filter(([, w]) => w.length)),
  );
  assert.deepEqual([...read.keys()], ["block1_conv1", "block2_conv1"]);
  for (const layer of fixture.filter((l) => l.weights.length)) {
    const got = read.get(layer.name)!;
    layer.weights.forEach((w, i) => {
      assert.equal(got[i].name, w.name);
      assert.deepEqual(got[i].shape, w.shape);
      assert.deepEqual(got[i].data, w.data); // exact float32 values
    });
  }
});

Deno.test("not HDF5 and truncated files get clear errors", async () => {
  await assert.rejects(() => openKerasH5(new Uint8Array(100), "junk.h5"), (e: unknown) => {
    assert.ok(e instanceof H5FormatError);
    assert.match(e.message, /junk\.h5 is not an HDF5 file/);
    return true;
  });
  const bytes = await writeKerasH5(vggFixture(tinyVgg()));
  await assert.rejects(
    () => openKerasH5(bytes.slice(0, bytes.length - 100), "cut.h5"),
    (e: unknown) => {
      assert.ok(e instanceof H5FormatError);
      assert.match(
        e.message,
        new RegExp(`cut\\.h5 is truncated: it has ${bytes.length - 100} bytes`),
      );
      return true;
    },
  );
  await assert.rejects(() => openKerasH5(bytes.slice(0, 20), "tiny.h5"), H5FormatError);
  // A valid HDF5 file that is not a Keras weight file.
  const fs = await h5Fs();
  const path = memPath("other");
  const f = new h5wasm.File(path, "w");
  f.create_group("data");
  f.close();
  const other = fs.readFile(path);
  fs.unlink(path);
  await assert.rejects(
    () => openKerasH5(other, "other.h5"),
    /other\.h5 has no layer_names attribute/,
  );
});

// ---- locating and downloading -------------------------------------------------------------

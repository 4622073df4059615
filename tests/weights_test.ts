import assert from "node:assert/strict";
import { join } from "node:path";
import * as tf from "@tensorflow/tfjs";
import h5wasm from "h5wasm";
import { h5Fs, memPath, openKerasH5 } from "../lib/transfer/h5.ts";
import {
  checkFile,
  imagenetBase,
  type KerasWeightsSpec,
  loadKerasWeights,
  locateWeights,
  logProgress,
  md5File,
  weightRole,
  WeightsChecksumError,
  WeightsMismatchError,
  WeightsUnavailableError,
  weightsUrl,
} from "../lib/transfer/weights.ts";
import {
  fixtureFromModel,
  type FixtureLayer,
  randomFloats,
  tempDir,
  tinyVgg,
  vggFixture,
  writeKerasH5,
} from "./fixtures/keras_h5.ts";
import { createHash } from "node:crypto";

await tf.setBackend("cpu");

/** The tiny net computed from the arrays with tf ops, independent of tfjs layers. */
function tinyVggReference(x: tf.Tensor4D, w: FixtureLayer[]): tf.Tensor {
  return tf.tidy(() => {
    const get = (layer: string, i: number) => {
      const e = w.find((l) => l.name === layer)!.weights[i];
      return tf.tensor(e.data, e.shape);
    };
    let y: tf.Tensor4D = x;
    for (const b of ["block1", "block2"]) {
      y = tf.relu(
        tf.add(tf.conv2d(y, get(`${b}_conv1`, 0) as tf.Tensor4D, 1, "same"), get(`${b}_conv1`, 1)),
      );
      y = tf.maxPool(y, 2, 2, "valid");
    }
    return y;
  });
}

async function assertClose(a: tf.Tensor, b: tf.Tensor, tol = 1e-5) {
  assert.deepEqual(a.shape, b.shape);
  const [da, db] = [await a.data(), await b.data()];
  let worst = 0;
  for (let i = 0; i < da.length; i++) worst = Math.max(worst, Math.abs(da[i] - db[i]));
  assert.ok(worst <= tol, `max difference ${worst} > ${tol}`);
}

Deno.test("loadKerasWeights: legacy file → same output as tf ops on the same arrays, no leaks", async () => {
  const model = tinyVgg();
  const fixture = vggFixture(model);
  const bytes = await writeKerasH5(fixture);
  const before = tf.memory().numTensors;
  const report = await loadKerasWeights(model, bytes);
  assert.equal(tf.memory().numTensors, before, "loading leaked tensors");
  assert.deepEqual(report, { layers: 2, tensors: 4, params: model.countParams() });
  const x = tf.tensor4d(randomFloats(2 * 8 * 8 * 3, 11, 1), [2, 8, 8, 3]);
  const y = model.predict(x) as tf.Tensor;
  const ref = tinyVggReference(x, fixture);
  await assertClose(y, ref);
  tf.dispose([x, y, ref]);
});

Deno.test("TF2 layout: nested layer/layer/kernel:0, BatchNorm order, chunked layer_names and weight_names", async () => {
  const input = tf.input({ shape: [4, 4, 2], name: "input_1" });
  let x = tf.layers.conv2d({ filters: 3, kernelSize: 1, name: "c_conv" }).apply(
    input,
  ) as tf.SymbolicTensor;
  x = tf.layers.batchNormalization({ epsilon: 1.001e-5, name: "c_bn" }).apply(
    x,
  ) as tf.SymbolicTensor;
  x = tf.layers.activation({ activation: "relu", name: "c_relu" }).apply(x) as tf.SymbolicTensor;
  const model = tf.model({ inputs: input, outputs: x });
  const fixture = fixtureFromModel(model, "tf2", 5);
  const bytes = await writeKerasH5(fixture, {
    layerNameChunks: 2,
    weightNameChunks: 2,
    kerasVersion: "2.9.0",
    backend: "tensorflow",
  });
  const file = await openKerasH5(bytes);
  try {
    assert.deepEqual(file.layerNames, ["input_1", "c_conv", "c_bn", "c_relu"]);
    assert.equal(file.kerasVersion, "2.9.0");
    assert.equal(file.backend, "tensorflow");
    assert.deepEqual(file.info("c_bn").weightNames, [
      "c_bn/gamma:0",
      "c_bn/beta:0",
      "c_bn/moving_mean:0",
      "c_bn/moving_variance:0",
    ]);
  } finally {
    file.close();
  }
  await loadKerasWeights(model, bytes);
  const got = model.getLayer("c_bn").getWeights();
  const want = fixture.find((l) => l.name === "c_bn")!.weights;
  for (let i = 0; i < 4; i++) assert.deepEqual(await got[i].data(), want[i].data);
});

Deno.test("loadKerasWeights reports every missing, unexpected and misshapen layer, assigns nothing", async () => {
  const model = tinyVgg();
  const fixture = vggFixture(model);
  const kept = (await model.getLayer("block2_conv1").getWeights()[1].data()).slice();
  // block2_conv1 missing, an extra layer, and a wrong bias shape in block1_conv1.
  const bad: FixtureLayer[] = [
    {
      name: "block1_conv1",
      weights: [fixture[0].weights[0], {
        name: "block1_conv1_b_1:0",
        shape: [5],
        data: new Float32Array(5),
      }],
    },
    fixture[1],
    {
      name: "block9_conv1",
      weights: [{ name: "block9_conv1_W_1:0", shape: [1], data: new Float32Array(1) }],
    },
  ];
  const badBytes = await writeKerasH5(bad);
  const before = tf.memory().numTensors;
  await assert.rejects(
    () => loadKerasWeights(model, badBytes),
    (e: unknown) => {
      assert.ok(e instanceof WeightsMismatchError);
      assert.deepEqual(e.missing, ["block2_conv1"]);
      assert.deepEqual(e.unexpected, ["block9_conv1"]);
      assert.match(
        e.message,
        /block1_conv1: block1_conv1_b_1:0 has shape \[5\], model expects \[4\]/,
      );
      assert.match(e.message, /missing from the file: block2_conv1/);
      assert.match(e.message, /not in the model: block9_conv1/);
      return true;
    },
  );
  assert.equal(tf.memory().numTensors, before);
  assert.deepEqual(await model.getLayer("block2_conv1").getWeights()[1].data(), kept);
  // Weight count and role mismatches are named too.
  const swapped = vggFixture(model).map((l) =>
    l.name === "block1_conv1"
      ? { ...l, weights: [l.weights[0]] }
      : l.name === "block2_conv1"
      ? { ...l, weights: [{ ...l.weights[1], name: "block2_conv1_b_1:0" }, l.weights[0]] }
      : l
  );
  const err = await loadKerasWeights(model, await writeKerasH5(swapped)).catch((e) => e);
  assert.ok(err instanceof WeightsMismatchError);
  assert.match(err.message, /block1_conv1: file has 1 weights \(block1_conv1_W_1:0\), model has 2/);
  assert.match(err.message, /block2_conv1: weight 0 is block2_conv1_b_1:0 in the file but kernel/);
});

Deno.test("weightRole understands legacy and TF2 names", () => {
  assert.equal(weightRole("block1_conv1_W_1:0", "block1_conv1"), "kernel");
  assert.equal(weightRole("block1_conv1_b_1:0", "block1_conv1"), "bias");
  assert.equal(weightRole("conv1_conv/kernel:0", "conv1_conv"), "kernel");
  assert.equal(weightRole("post_bn/moving_variance:0", "post_bn"), "moving_variance");
  assert.equal(weightRole("c_bn/gamma_1", "c_bn"), "gamma"); // tfjs's uniquified variable name
  assert.equal(weightRole("something_else:0", "x"), undefined);
});

const md5 = (b: Uint8Array) => createHash("md5").update(b).digest("hex");

/** A local server for the download tests: serves `files` (URL path → bytes), optionally failing mid-stream. */
function serve(files: Record<string, Uint8Array<ArrayBuffer>>, opts: { breakAfter?: number } = {}) {
  const ac = new AbortController();
  const server = Deno.serve({
    hostname: "127.0.0.1",
    port: 0,
    signal: ac.signal,
    onListen: () => {},
  }, (req) => {
    const body = files[new URL(req.url).pathname];
    if (!body) return new Response("not found", { status: 404 });
    if (opts.breakAfter === undefined) return new Response(body);
    const stream = new ReadableStream<Uint8Array<ArrayBuffer>>({
      start(c) {
        c.enqueue(body.slice(0, opts.breakAfter));
      },
      // Pulled once the first part was read: drop the connection then.
      async pull(c) {
        await new Promise((r) => setTimeout(r, 20));
        c.error(new Error("connection dropped (on purpose)"));
      },
    });
    return new Response(stream, { headers: { "content-length": String(body.length) } });
  });
  return {
    url: `http://127.0.0.1:${server.addr.port}`,
    async [Symbol.asyncDispose]() {
      ac.abort();
      await server.finished;
    },
  };
}

async function listDir(dir: string): Promise<string[]> {
  try {
    return (await Array.fromAsync(Deno.readDir(dir))).map((e) => e.name).sort();
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return [];
    throw e;
  }
}

async function fakeWeights() {
  const bytes = await writeKerasH5(vggFixture(tinyVgg()));
  const spec: KerasWeightsSpec = {
    file: "tiny_notop.h5",
    subdir: "tiny",
    size: bytes.length,
    md5: md5(bytes),
  };
  return { bytes, spec };
}

Deno.test("locateWeights: explicit path, Keras cache (KERAS_HOME too), project cache, in that order", async () => {
  await using tmp = await tempDir();
  const { bytes, spec } = await fakeWeights();
  const kerasHome = join(tmp.path, "keras");
  const project = join(tmp.path, "project");
  const offline = { kerasHome, projectCache: project, download: false } as const;

  await assert.rejects(() => locateWeights(spec, offline), (e: unknown) => {
    assert.ok(e instanceof WeightsUnavailableError);
    assert.match(e.message, /tiny_notop\.h5 is not cached and downloads are off/);
    assert.equal(e.attempts.length, 2);
    return true;
  });

  await Deno.mkdir(project, { recursive: true });
  await Deno.writeFile(join(project, spec.file), bytes);
  assert.deepEqual(await locateWeights(spec, offline), {
    path: join(project, spec.file),
    source: "project-cache",
    md5: spec.md5,
    verified: true,
  });

  await Deno.mkdir(join(kerasHome, "models"), { recursive: true });
  await Deno.writeFile(join(kerasHome, "models", spec.file), bytes);
  assert.equal((await locateWeights(spec, offline)).source, "keras-cache");
  Deno.env.set("KERAS_HOME", kerasHome);
  try {
    const found = await locateWeights(spec, { projectCache: project, download: false });
    assert.equal(found.path, join(kerasHome, "models", spec.file));
  } finally {
    Deno.env.delete("KERAS_HOME");
  }

  const own = join(tmp.path, "mine.h5");
  await Deno.writeFile(own, bytes.slice(0, 10));
  const given = await locateWeights(spec, { ...offline, path: own });
  assert.equal(given.source, "path");
  assert.equal(given.verified, false); // reported, not enforced: it is the user's own file
  await assert.rejects(
    () => locateWeights(spec, { ...offline, path: join(tmp.path, "nope.h5") }),
    WeightsUnavailableError,
  );
});

Deno.test("locateWeights: a corrupt cached file is detected; Keras's is skipped, ours is replaced", async () => {
  await using tmp = await tempDir();
  const { bytes, spec } = await fakeWeights();
  const kerasHome = join(tmp.path, "keras");
  const project = join(tmp.path, "project");
  await Deno.mkdir(join(kerasHome, "models"), { recursive: true });
  await Deno.mkdir(project, { recursive: true });
  const flipped = bytes.slice();
  flipped[bytes.length - 1] ^= 1; // same size, wrong md5
  await Deno.writeFile(join(kerasHome, "models", spec.file), flipped);
  await Deno.writeFile(join(project, spec.file), bytes.slice(0, 100)); // truncated
  assert.match(
    (await checkFile(join(project, spec.file), spec) as { reason: string }).reason,
    /100 bytes, expected/,
  );

  await using server = serve({ [`/tiny/${spec.file}`]: bytes });
  const found = await locateWeights(spec, {
    kerasHome,
    projectCache: project,
    baseUrl: server.url,
  });
  assert.equal(found.source, "download");
  assert.equal(found.md5, spec.md5);
  assert.deepEqual(await Deno.readFile(join(project, spec.file)), bytes);
  assert.deepEqual(
    await Deno.readFile(join(kerasHome, "models", spec.file)),
    flipped,
    "Keras's cache untouched",
  );
});

Deno.test("download through a local server lands in the project cache, with progress", async () => {
  await using tmp = await tempDir();
  const { bytes, spec } = await fakeWeights();
  await using server = serve({ [`/tiny/${spec.file}`]: bytes });
  const progress: [number, number | undefined][] = [];
  Deno.env.set("KERAS_WEIGHTS_BASE_URL", `${server.url}/`);
  let found;
  try {
    assert.equal(weightsUrl(spec), `${server.url}/tiny/${spec.file}`);
    found = await locateWeights(spec, {
      kerasHome: join(tmp.path, "keras"),
      projectCache: join(tmp.path, "cache"),
      onProgress: (b, t) => progress.push([b, t]),
    });
  } finally {
    Deno.env.delete("KERAS_WEIGHTS_BASE_URL");
  }
  assert.deepEqual(found, {
    path: join(tmp.path, "cache", spec.file),
    source: "download",
    md5: spec.md5,
    verified: true,
  });
  assert.deepEqual(progress.at(-1), [bytes.length, bytes.length]);
  assert.equal(await md5File(found.path), spec.md5);
  assert.deepEqual(await listDir(join(tmp.path, "cache")), [spec.file]);
  // The downloaded file loads.
  const report = await loadKerasWeights(tinyVgg(), found.path);
  assert.equal(report.layers, 2);
});

Deno.test("download failures: md5 mismatch, dropped connection, 404, no server — clear errors, no file left", async () => {
  await using tmp = await tempDir();
  const { bytes, spec } = await fakeWeights();
  const cache = join(tmp.path, "cache");
  const opts = { kerasHome: join(tmp.path, "keras"), projectCache: cache };

  // Keras's real VGG16 spec with a fake file: the md5 check must fail and name both hashes.
  await using good = serve({ [`/vgg16/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5`]: bytes });
  await assert.rejects(
    () =>
      locateWeights({
        ...spec,
        file: "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
        subdir: "vgg16",
        md5: "6d6bbae143d832006294945121d1f1fc",
      }, { ...opts, baseUrl: good.url }),
    (e: unknown) => {
      assert.ok(e instanceof WeightsUnavailableError);
      assert.ok(e.cause instanceof WeightsChecksumError);
      assert.equal(e.cause.expected, "6d6bbae143d832006294945121d1f1fc");
      assert.equal(e.cause.actual, spec.md5);
      assert.match(
        e.message,
        new RegExp(`expected 6d6bbae143d832006294945121d1f1fc, got ${spec.md5}`),
      );
      return true;
    },
  );
  assert.deepEqual(await listDir(cache), []);

  await using broken = serve({ [`/tiny/${spec.file}`]: bytes }, { breakAfter: 1000 });
  const progress: number[] = [];
  await assert.rejects(
    () =>
      locateWeights(spec, { ...opts, baseUrl: broken.url, onProgress: (b) => progress.push(b) }),
    WeightsUnavailableError,
  );
  assert.ok(
    progress.length > 0 && progress.at(-1)! < bytes.length,
    "the stream started, then broke",
  );
  assert.deepEqual(await listDir(cache), []);

  await assert.rejects(
    () => locateWeights(spec, { ...opts, baseUrl: `${good.url}/missing` }),
    /HTTP 404/,
  );
  assert.deepEqual(await listDir(cache), []);

  // Nothing listening (the notebook's offline case).
  const ac = new AbortController();
  const s = Deno.serve(
    { hostname: "127.0.0.1", port: 0, signal: ac.signal, onListen: () => {} },
    () => new Response(),
  );
  const deadUrl = `http://127.0.0.1:${s.addr.port}`;
  ac.abort();
  await s.finished;
  await assert.rejects(() => locateWeights(spec, { ...opts, baseUrl: deadUrl }), (e: unknown) => {
    assert.ok(e instanceof WeightsUnavailableError);
    assert.match(e.message, /could not obtain tiny_notop\.h5/);
    return true;
  });
  assert.deepEqual(await listDir(cache), []);
});

Deno.test("imagenetBase falls back to a seeded random base and says so when weights are unavailable", async () => {
  await using tmp = await tempDir();
  const r = await imagenetBase("vgg16", {
    seed: 7,
    trainable: false,
    kerasHome: join(tmp.path, "k"),
    projectCache: join(tmp.path, "p"),
    download: false,
  });
  assert.equal(r.weights, null);
  assert.equal(r.weightsKey, "random:7");
  assert.equal(r.preprocessing, "caffe");
  assert.match(r.note, /RANDOM base \(seed 7\)/);
  assert.ok(r.error instanceof WeightsUnavailableError);
  assert.equal(r.model.trainableWeights.length, 0);
  r.model.dispose();
});

Deno.test("lib never reads tensors synchronously", async () => {
  for (
    const f of [
      "transfer/h5.ts",
      "transfer/weights.ts",
      "transfer/features.ts",
      "models/vgg16_imagenet.ts",
      "models/resnet152v2.ts",
    ]
  ) {
    const src = await Deno.readTextFile(new URL(`../lib/${f}`, import.meta.url));
    assert.doesNotMatch(src, /\.(dataSync|arraySync|print)\(/, f);
    assert.doesNotMatch(src, /Deno\.test/, f);
  }
});

Deno.test("a layer listed without its group, or a weight name without its dataset, is named", async () => {
  const fs = await h5Fs();
  const write = (build: (f: InstanceType<typeof h5wasm.File>) => void) => {
    const path = memPath("broken");
    const f = new h5wasm.File(path, "w");
    build(f);
    f.close();
    const bytes = fs.readFile(path);
    fs.unlink(path);
    return bytes;
  };
  const noGroup = write((f) => f.create_attribute("layer_names", ["block1_conv1"], [1], "A12"));
  await assert.rejects(
    () => loadKerasWeights(tinyVgg(), noGroup),
    /lists layer "block1_conv1" but has no group for it/,
  );
  const noData = write((f) => {
    f.create_attribute("layer_names", ["block1_conv1"], [1], "A12");
    f.create_group("block1_conv1").create_attribute(
      "weight_names",
      ["block1_conv1/kernel:0"],
      [1],
      "A21",
    );
  });
  await assert.rejects(
    () => loadKerasWeights(tinyVgg(), noData),
    /layer "block1_conv1" has no dataset "block1_conv1\/kernel:0"/,
  );
});

Deno.test("logProgress logs about every tenth of the download", () => {
  const lines: string[] = [];
  const log = console.log;
  console.log = (s: string) => lines.push(s);
  try {
    const p = logProgress("vgg16");
    for (let b = 0; b <= 10e6; b += 70_000) p(b, 10e6);
    p(10e6, 10e6);
  } finally {
    console.log = log;
  }
  assert.equal(lines.length, 10);
  assert.equal(lines.at(-1), "vgg16: 10.0 of 10.0 MB");
});

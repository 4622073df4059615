import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import * as tf from "@tensorflow/tfjs";
import { gpuVersusCpu, initBackend, machineKey, probeGpu } from "../lib/machine/backend.ts";

/**
 * A small model of the study's layer types; weights come from `weights` so runs can match. The
 * initialisers are seeded so the reference run (and "it learns") is the same every time.
 */
function smallCnn(): tf.LayersModel {
  const init = (seed: number) => tf.initializers.glorotUniform({ seed });
  const m = tf.sequential();
  m.add(
    tf.layers.conv2d({
      inputShape: [12, 12, 3],
      filters: 4,
      kernelSize: 3,
      kernelInitializer: init(1),
    }),
  );
  m.add(tf.layers.maxPooling2d({ poolSize: 2, strides: 1 }));
  m.add(
    tf.layers.conv2d({
      filters: 3,
      kernelSize: 3,
      padding: "same",
      strides: 2,
      kernelInitializer: init(2),
    }),
  );
  m.add(tf.layers.flatten());
  m.add(tf.layers.dense({ units: 8, activation: "relu", kernelInitializer: init(3) }));
  m.add(tf.layers.dense({ units: 10, activation: "softmax", kernelInitializer: init(4) }));
  m.compile({
    optimizer: tf.train.adam(0.01),
    loss: "sparseCategoricalCrossentropy",
    metrics: ["accuracy"],
  });
  return m;
}

/**
 * Trains a fresh smallCnn from the given weights on one fixed batch, 4 steps (so the loss must
 * fall); returns every step's loss.
 */
async function lossesOn(
  backend: string,
  weights: Float32Array[],
  shapes: number[][],
): Promise<number[]> {
  assert.ok(await tf.setBackend(backend), `${backend} starts`);
  const m = smallCnn();
  m.setWeights(weights.map((w, i) => tf.tensor(w, shapes[i])));
  const losses: number[] = [];
  for (let step = 0; step < 4; step++) {
    const x = tf.tensor4d(
      Float32Array.from({ length: 8 * 12 * 12 * 3 }, (_, i) => Math.sin(i * 0.37)),
      [
        8,
        12,
        12,
        3,
      ],
    );
    const y = tf.tensor1d(Float32Array.from({ length: 8 }, (_, i) => (i * 3) % 10));
    const [loss] = await m.trainOnBatch(x, y) as number[];
    losses.push(loss);
    tf.dispose([x, y]);
  }
  m.dispose();
  return losses;
}

Deno.test("WebGPU training matches the cpu backend (same weights, same batches)", async () => {
  await import("@tensorflow/tfjs-backend-webgpu");
  const gpu = await probeGpu();
  if (!gpu) {
    // CI installs mesa-vulkan-drivers, so it always has (software) WebGPU: never skip there.
    assert.ok(!Deno.env.get("CI"), "CI must have a WebGPU adapter (mesa-vulkan-drivers)");
    console.log("skipped: no WebGPU adapter on this machine");
    return;
  }
  await tf.setBackend("cpu");
  const init = smallCnn();
  const weights = await Promise.all(
    init.getWeights().map(async (w) => await w.data() as Float32Array),
  );
  const shapes = init.getWeights().map((w) => w.shape);
  init.dispose();
  const cpu = await lossesOn("cpu", weights, shapes);
  const webgpu = await lossesOn("webgpu", weights, shapes);
  await tf.setBackend("cpu");
  console.log(
    `adapter ${gpu.description}; cpu ${cpu.map((l) => l.toFixed(6))}; webgpu ${
      webgpu.map((l) => l.toFixed(6))
    }`,
  );
  assert.ok(cpu[3] < cpu[0], "the run learns");
  for (let i = 0; i < cpu.length; i++) {
    assert.ok(
      Math.abs(cpu[i] - webgpu[i]) < 1e-4 * Math.max(1, cpu[i]),
      `step ${i}: cpu ${cpu[i]} webgpu ${webgpu[i]}`,
    );
  }
});

Deno.test("initBackend rejects an unknown MNIST_BACKEND with the valid names", async () => {
  await assert.rejects(
    initBackend({ force: "tpu" as "cpu", quiet: true }),
    /not one of webgpu, cpu-fast, wasm, cpu/,
  );
});

Deno.test("a software WebGPU adapter is recognised as such", async () => {
  const gpu = await probeGpu();
  if (gpu && /llvmpipe|lavapipe/i.test(gpu.description)) assert.equal(gpu.software, true);
});

/** Runs `code` as a module in a fresh Deno from the repository, with only `env` set. */
async function freshDeno(code: string, env: Record<string, string> = {}) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["eval", code],
    cwd: new URL("../", import.meta.url).pathname,
    clearEnv: true,
    env: {
      PATH: Deno.env.get("PATH") ?? "",
      HOME: Deno.env.get("HOME") ?? "",
      NO_COLOR: "1",
      ...env,
    },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout).trim(), stderr: dec.decode(out.stderr) };
}

Deno.test("a clean start: the GPU probe and the chart library print nothing on stderr", async () => {
  // Without XDG_RUNTIME_DIR, Mesa's device-select layer made libwayland print an "error:" line
  // twice per adapter request; vega's node-fetch printed a punycode deprecation (DEP0040).
  const run = await freshDeno(`
    import { initBackend, probeGpu } from "./lib/machine/backend.ts";
    import "./lib/report/charts.ts";
    await probeGpu();
    await initBackend({ quiet: true });
    console.log(Deno.env.get("XDG_RUNTIME_DIR"));
  `);
  assert.equal(run.code, 0, run.stderr);
  assert.equal(run.stderr, "", "stderr of a clean start");
  if (Deno.build.os === "linux") {
    const st = Deno.statSync(run.stdout);
    assert.ok(st.isDirectory && (st.mode! & 0o077) === 0, `${run.stdout}: a private folder`);
  }
});

Deno.test({
  name: "ensureRuntimeDir keeps a valid XDG_RUNTIME_DIR and replaces a relative one",
  ignore: Deno.build.os !== "linux",
  async fn() {
    const code =
      `import { ensureRuntimeDir } from "./lib/machine/backend.ts"; console.log(ensureRuntimeDir());`;
    const own = await Deno.makeTempDir();
    try {
      assert.equal((await freshDeno(code, { XDG_RUNTIME_DIR: own })).stdout, own);
      const replaced = (await freshDeno(code, { XDG_RUNTIME_DIR: "run/user" })).stdout;
      assert.match(replaced, /^\/.*mnist-study-runtime-/);
    } finally {
      await Deno.remove(own);
    }
  },
});

Deno.test("other warnings still print: only DEP0040 is silenced", async () => {
  const run = await freshDeno(`
    import "./lib/machine/node_warnings.ts";
    import process from "node:process";
    process.emitWarning("punycode", "DeprecationWarning", "DEP0040");
    process.emitWarning("old API", { type: "DeprecationWarning", code: "DEP0999" });
  `);
  assert.doesNotMatch(run.stderr, /DEP0040/);
  assert.match(run.stderr, /\[DEP0999\] DeprecationWarning: old API/);
});

Deno.test("the GPU-versus-CPU probe is measured once per machine, then remembered", async () => {
  const dir = await Deno.makeTempDir({ prefix: "webgpu-probe-" });
  const path = `${dir}/mnist-study/backend-probe.json`;
  try {
    const measured: string[] = [];
    const measure = (rates: Record<string, number>) => (b: "webgpu" | "cpu-fast") => {
      measured.push(b);
      return Promise.resolve(rates[b]);
    };
    const first = await gpuVersusCpu("Fake GPU A", measure({ webgpu: 900, "cpu-fast": 300 }), path);
    assert.deepEqual([first.webgpu, first.cpuFast], [900, 300]);
    assert.deepEqual(measured, ["webgpu", "cpu-fast"]);
    const again = await gpuVersusCpu("Fake GPU A", measure({ webgpu: 1, "cpu-fast": 2 }), path);
    assert.deepEqual(again, first, "read back from the file, not measured");
    assert.equal(measured.length, 2);
    // another adapter on the same CPU is another machine; both stay in the file
    const other = await gpuVersusCpu("Fake GPU B", measure({ webgpu: 100, "cpu-fast": 300 }), path);
    assert.equal(other.webgpu, 100);
    const file = JSON.parse(await Deno.readTextFile(path));
    assert.deepEqual(Object.keys(file).sort(), [
      machineKey("Fake GPU A"),
      machineKey("Fake GPU B"),
    ]);
    assert.match(machineKey("Fake GPU A"), /^Fake GPU A \| .+ × \d+$/);
    // an unwritable cache is no error: it measures again next time
    const blocked = `${dir}/file`;
    await Deno.writeTextFile(blocked, "");
    const p = await gpuVersusCpu(
      "Fake GPU C",
      measure({ webgpu: 5, "cpu-fast": 6 }),
      `${blocked}/x.json`,
    );
    assert.equal(p.cpuFast, 6);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("on a software adapter the study keeps cpu-fast and measures nothing", async () => {
  const gpu = await probeGpu();
  if (!gpu?.software) return; // a real GPU here: the probe decides (tested above)
  const dir = await Deno.makeTempDir({ prefix: "webgpu-probe-" });
  try {
    const run = await freshDeno(
      `import { initBackend } from "./lib/machine/backend.ts"; console.log((await initBackend()).name);`,
      { XDG_CACHE_HOME: dir },
    );
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /the only GPU adapter is a software one .*\ncpu-fast$/s);
    assert.ok(!existsSync(`${dir}/mnist-study`), "no probe file");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

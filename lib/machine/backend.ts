/**
 * Picks and starts the tfjs backend, and says which and why in one line:
 * WebGPU on a real GPU adapter where it trains the study's models faster than the CPU fast path
 * (a short probe at first use, remembered per machine: `gpuVersusCpu`); else the CPU fast path
 * ("cpu-fast"); else tfjs's pure-JS `cpu`. A software adapter is never chosen.
 * `MNIST_BACKEND=webgpu|cpu-fast|wasm|cpu` forces one. Deno's WebGPU quirks are handled here only.
 */
import * as tf from "@tensorflow/tfjs";
import "@tensorflow/tfjs-backend-webgpu";
import { envVar } from "./env.ts";
import { writeFileAtomic } from "./atomic_write.ts";
import { setupWebGpu } from "../kernels/webgpu/webgpu_setup.ts";

/** Every backend the study can run on, in order of preference. */
export const BACKEND_NAMES = ["webgpu", "cpu-fast", "wasm", "cpu"] as const;
export type BackendName = typeof BACKEND_NAMES[number];

/**
 * Numeric precision of training, named as Keras's mixed-precision policies: "float32" (the
 * study's), or "mixed_bfloat16" (convolutions and matmuls in bf16 with fp32 accumulation).
 */
export type Precision = "float32" | "mixed_bfloat16";

export interface BackendInfo {
  name: BackendName;
  /** The precision training runs in (part of every run's key and record). */
  precision: Precision;
  /** The GPU adapter or CPU library in use, e.g. "NVIDIA H100" or "OpenBLAS via FFI". */
  device: string;
  /** Why this backend was chosen, in words. */
  why: string;
}

/** Software rasterisers that expose WebGPU but are far slower than the CPU path. */
const SOFTWARE_ADAPTER = /llvmpipe|lavapipe|swiftshader|software|warp/i;

interface AdapterSummary {
  description: string;
  software: boolean;
}

/**
 * Mesa's Vulkan device-select layer asks Wayland for the desktop's GPU at every adapter request,
 * and libwayland, finding no XDG_RUNTIME_DIR, prints "error: XDG_RUNTIME_DIR is invalid or not
 * set in the environment." twice per request: on every headless start (servers, containers, CI),
 * though nothing is wrong. A login session sets the variable; without one we point it at a
 * private folder (mode 0700, as the XDG spec asks), where the layer finds no compositor and goes
 * on quietly. A valid variable is left alone; errors of the probe itself still print.
 */
export function ensureRuntimeDir(): string | null {
  if (Deno.build.os !== "linux") return null;
  try {
    const current = envVar("XDG_RUNTIME_DIR");
    if (current && isRuntimeDir(current)) return current;
    const dir = privateRuntimeDir();
    Deno.env.set("XDG_RUNTIME_DIR", dir);
    return dir;
  } catch {
    return null; // no --allow-env or --allow-write: the probe only prints the harmless line
  }
}

/** libwayland wants an absolute path; we also want it to exist. */
function isRuntimeDir(path: string): boolean {
  if (!path.startsWith("/")) return false;
  try {
    return Deno.statSync(path).isDirectory;
  } catch {
    return false;
  }
}

/** One folder per user under the temp dir, reused across starts; a fresh one if it is not ours. */
function privateRuntimeDir(): string {
  const uid = Deno.uid();
  const dir = `${envVar("TMPDIR") ?? "/tmp"}/mnist-study-runtime-${uid ?? "user"}`;
  try {
    Deno.mkdirSync(dir, { mode: 0o700 });
  } catch (e) {
    if (!(e instanceof Deno.errors.AlreadyExists)) throw e;
  }
  const st = Deno.lstatSync(dir);
  const ours = st.isDirectory && st.uid === uid && ((st.mode ?? 0) & 0o077) === 0;
  return ours ? dir : Deno.makeTempDirSync({ prefix: "mnist-study-runtime-" });
}

/** Asks Deno for a WebGPU adapter; null when there is none. */
export async function probeGpu(): Promise<AdapterSummary | null> {
  ensureRuntimeDir();
  const gpu =
    (navigator as unknown as { gpu?: { requestAdapter(o?: object): Promise<unknown> } }).gpu;
  if (!gpu) return null;
  const adapter = await gpu.requestAdapter({ powerPreference: "high-performance" }) as
    | {
      info?: { description?: string; vendor?: string; device?: string };
      isFallbackAdapter?: boolean;
    }
    | null;
  if (!adapter) return null;
  const info = adapter.info ?? {};
  const description = info.description || [info.vendor, info.device].filter(Boolean).join(" ") ||
    "unknown GPU";
  const fallback = Boolean(
    adapter.isFallbackAdapter ?? (info as { isFallbackAdapter?: boolean }).isFallbackAdapter,
  );
  return { description, software: fallback || SOFTWARE_ADAPTER.test(description) };
}

async function startWasm(): Promise<void> {
  await import("@tensorflow/tfjs-backend-wasm");
  if (!(await tf.setBackend("wasm"))) throw new Error("the wasm backend failed to start");
}

async function start(name: BackendName): Promise<string> {
  if (name === "webgpu") {
    const gpu = await probeGpu();
    if (!gpu) throw new Error("MNIST_BACKEND=webgpu but Deno found no WebGPU adapter");
    if (!(await tf.setBackend("webgpu"))) {
      throw new Error(`the webgpu backend failed to start on ${gpu.description}`);
    }
    const setup = setupWebGpu();
    const grads = {
      study: "filter gradients as tiled GEMMs",
      gemm: "convolution gradients as tiled GEMMs",
      tfjs: "tfjs's convolution gradients",
    }[setup.convGrad];
    return `${gpu.description}; ${grads}; no CPU forwarding`;
  }
  if (name === "cpu-fast") {
    const fast = await registerFastCpu();
    if (!fast.available) throw new Error(`the CPU fast path is unavailable: ${fast.why}`);
    if (!(await tf.setBackend(fast.name))) throw new Error("the cpu-fast backend failed to start");
    return fast.why;
  }
  if (name === "wasm") {
    await startWasm();
    return "XNNPACK (wasm)";
  }
  if (!(await tf.setBackend("cpu"))) throw new Error("the cpu backend failed to start");
  return "pure JavaScript";
}

// Production mode skips tfjs's debug checks and its "install tfjs-node" banner, which does not
// apply to Deno.
tf.enableProdMode();

/** Loads the CPU fast path only when it is wanted: a CPU run, or the GPU-versus-CPU probe. */
async function registerFastCpu(): Promise<{ name: string; available: boolean; why: string }> {
  const { registerFastCpuBackend } = await import("../kernels/mod.ts");
  return await registerFastCpuBackend();
}

let current: BackendInfo | null = null;
let currentWanted: Precision = "float32";

/** The precision asked for: `opts.precision`, else MNIST_PRECISION, else float32; checked. */
function wantedPrecision(option?: Precision): Precision {
  const p = option ?? envVar("MNIST_PRECISION") ?? "float32";
  if (p !== "float32" && p !== "mixed_bfloat16") {
    throw new Error(
      `MNIST_PRECISION=${p} is not float32 or mixed_bfloat16: set one of these or unset it`,
    );
  }
  return p;
}

/**
 * Puts the wanted precision in force on a started backend. mixed_bfloat16 runs on cpu-fast
 * where the CPU computes bf16 natively; elsewhere training stays float32 and `why` says so.
 */
async function applyPrecision(info: BackendInfo, wanted: Precision): Promise<BackendInfo> {
  if (info.name === "cpu-fast") {
    const { setFastPrecision } = await import("../kernels/mod.ts");
    const { precision, note } = setFastPrecision(wanted);
    return { ...info, precision, why: note ? `${info.why}; ${note}` : info.why };
  }
  if (wanted === "float32") return { ...info, precision: "float32" };
  return {
    ...info,
    precision: "float32",
    why: `${info.why}; mixed_bfloat16 is implemented on cpu-fast only: training in float32`,
  };
}

/**
 * Chooses and starts the backend once per process; later calls return the same choice.
 * Prints one line naming it, its precision and the reason (unless `quiet`).
 */
export async function initBackend(
  opts: { force?: BackendName; quiet?: boolean; precision?: Precision } = {},
): Promise<BackendInfo> {
  const forced = opts.force ?? (envVar("MNIST_BACKEND") as BackendName | undefined);
  const wanted = wantedPrecision(opts.precision);
  if (current && (!forced || forced === current.name) && wanted === currentWanted) return current;
  let info: BackendInfo;
  if (forced) {
    if (!(BACKEND_NAMES as readonly string[]).includes(forced)) {
      throw new Error(
        `MNIST_BACKEND=${forced} is not one of ${BACKEND_NAMES.join(", ")}: set one of these ` +
          `or unset it to let the study choose`,
      );
    }
    info = {
      name: forced,
      precision: "float32",
      device: await start(forced),
      why: opts.force ? "chosen explicitly" : "forced by MNIST_BACKEND",
    };
  } else {
    const gpu = await probeGpu();
    const fast = gpu && !gpu.software ? await registerFastCpu() : null;
    const probe = gpu && fast?.available
      ? await gpuVersusCpu(gpu.description, measureTraining)
      : null;
    if (gpu && !gpu.software && (!probe || probe.webgpu > probe.cpuFast)) {
      info = {
        name: "webgpu",
        precision: "float32",
        device: await start("webgpu"),
        why: `GPU adapter ${gpu.description}` +
          (probe ? `: ${probeWords(probe)}` : "; CPU fast path unavailable"),
      };
    } else if (gpu && probe) {
      info = {
        name: "cpu-fast",
        precision: "float32",
        device: await start("cpu-fast"),
        why: `GPU adapter ${gpu.description} trains slower than the CPU: ${probeWords(probe)}`,
      };
    } else {
      const why = gpu
        ? `the only GPU adapter is a software one (${gpu.description})`
        : "no GPU adapter";
      const fast = await registerFastCpu();
      info = fast.available
        ? {
          name: "cpu-fast",
          precision: "float32",
          device: await start("cpu-fast"),
          why: `${why}; CPU fast path`,
        }
        : {
          name: "cpu",
          precision: "float32",
          device: await start("cpu"),
          why: `${why}; CPU fast path unavailable (${fast.why})`,
        };
    }
  }
  info = await applyPrecision(info, wanted);
  current = info;
  currentWanted = wanted;
  if (!opts.quiet) {
    console.log(`backend: ${info.name}, ${info.precision} (${info.device}) — ${info.why}`);
  }
  return info;
}

/** What the GPU-versus-CPU probe measured on this machine (remembered in `probeCachePath`). */
export interface BackendProbe {
  /** Training throughput, samples/s, of the probe's model on each backend. */
  webgpu: number;
  cpuFast: number;
  /** The probe's workload, e.g. "vgg16_scratch (batch 100)". */
  workload: string;
  /** When it was measured (ISO date). */
  measured: string;
}

/** The probe's workload: the study's heaviest model at its batch size, a few timed steps. */
const PROBE = { model: "vgg16_scratch", batch: 100, warmup: 2, steps: 3 };

/**
 * The file where probes are remembered, one entry per machine: `$XDG_CACHE_HOME` (else
 * `~/.cache`) `/mnist-study/backend-probe.json`; null without a home folder.
 */
function probeCachePath(): string | null {
  const base = envVar("XDG_CACHE_HOME") ?? (envVar("HOME") ? `${envVar("HOME")}/.cache` : null);
  return base ? `${base}/mnist-study/backend-probe.json` : null;
}

/** This machine as the probe's cache knows it: the GPU adapter, the CPU model and its cores. */
export function machineKey(adapter: string): string {
  let cpu = "unknown CPU";
  try {
    cpu = Deno.readTextFileSync("/proc/cpuinfo").match(/^model name\s*:\s*(.+)$/m)?.[1] ?? cpu;
  } catch { /* not Linux, or no read permission: the core count still tells machines apart */ }
  return `${adapter} | ${cpu.trim()} × ${navigator.hardwareConcurrency}`;
}

/** "trains vgg16_scratch (batch 100) at 2400 samples/s, cpu-fast at 290 (probe of 2026-12-02)". */
function probeWords(p: BackendProbe): string {
  return `trains ${p.workload} at ${p.webgpu.toFixed(0)} samples/s, cpu-fast at ${
    p.cpuFast.toFixed(0)
  } (probe of ${p.measured.slice(0, 10)}; delete ${
    probeCachePath() ?? "its cache"
  } to measure again)`;
}

/**
 * Training throughput on webgpu and on cpu-fast for this machine: remembered from an earlier
 * probe, else measured now with `measure` (then the current backend is whichever ran last) and
 * remembered. A cache that cannot be read or written only means measuring again next time.
 */
export async function gpuVersusCpu(
  adapter: string,
  measure: (backend: "webgpu" | "cpu-fast") => Promise<number>,
  path = probeCachePath(),
): Promise<BackendProbe> {
  const key = machineKey(adapter);
  let known: Record<string, BackendProbe> = {};
  try {
    if (path) known = JSON.parse(await Deno.readTextFile(path));
  } catch { /* no probe yet, or an unreadable file: measure */ }
  if (known[key]) return known[key];
  console.log(
    `measuring whether ${adapter} trains faster than the CPU (once per machine, ~a minute)…`,
  );
  const probe: BackendProbe = {
    webgpu: await measure("webgpu"),
    cpuFast: await measure("cpu-fast"),
    workload: `${PROBE.model} (batch ${PROBE.batch})`,
    measured: new Date().toISOString(),
  };
  if (path) {
    try {
      await writeFileAtomic(path, JSON.stringify({ ...known, [key]: probe }, null, 1) + "\n");
    } catch { /* read-only home: the probe runs again next time */ }
  }
  return probe;
}

/**
 * Samples/s of `PROBE`'s training steps on `backend`: warm-up steps (shaders, buffers), then
 * timed steps read back once at the end, as `fit` reads a GPU.
 */
async function measureTraining(backend: "webgpu" | "cpu-fast"): Promise<number> {
  await start(backend);
  // Loaded here, not at the top: the backend module sits below the models and the loss.
  const { buildVgg16Scratch } = await import("../models/vgg16_scratch.ts");
  const { trainStepOnDevice } = await import("../train/loss.ts");
  const model = buildVgg16Scratch({ seed: 1 });
  const x = tf.randomUniform([PROBE.batch, 32, 32, 3], 0, 1, "float32", 1);
  const y = tf.tensor1d(Array.from({ length: PROBE.batch }, (_, i) => i % 10));
  const run = async (steps: number) => {
    const outs = Array.from({ length: steps }, () => trainStepOnDevice(model, x, y));
    await outs.at(-1)!.loss.data();
    tf.dispose(outs.flatMap((o) => [o.loss, o.accuracy]));
  };
  try {
    await run(PROBE.warmup);
    const t0 = performance.now();
    await run(PROBE.steps);
    return (PROBE.batch * PROBE.steps) / ((performance.now() - t0) / 1000);
  } finally {
    tf.dispose([x, y]);
    model.dispose();
  }
}

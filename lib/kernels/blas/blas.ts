/**
 * The one binding to a native BLAS: OpenBLAS's `cblas_sgemm` (and `cblas_sgemv` for column
 * sums) through Deno FFI.
 *
 * Loaded lazily and at most once. Everything else in lib/kernels asks `loadBlas()` and falls
 * back to pure JS when it returns `null` (no library, no `--allow-ffi`, not Deno).
 */
import { openDnnl } from "../onednn/dnnl_load.ts";
import { envVar } from "../../machine/env.ts";
import { cpuHasFlag, type Gemm } from "../util.ts";

/** Where Debian/Ubuntu and common distributions put OpenBLAS; the pthread build first. */
const CANDIDATES = [
  "/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0",
  "/usr/lib/x86_64-linux-gnu/libopenblas.so.0",
  "/usr/lib/aarch64-linux-gnu/openblas-pthread/libopenblas.so.0",
  "/usr/lib/aarch64-linux-gnu/libopenblas.so.0",
  "/usr/lib64/libopenblas.so.0",
  "/usr/lib/libopenblas.so.0",
  "/usr/local/lib/libopenblas.so.0",
  "/opt/homebrew/opt/openblas/lib/libopenblas.dylib",
  "/usr/local/opt/openblas/lib/libopenblas.dylib",
  "libopenblas.so.0",
];

const SYMBOLS = {
  cblas_sgemm: {
    parameters: [
      "i32", // order
      "i32", // transA
      "i32", // transB
      "i32", // M
      "i32", // N
      "i32", // K
      "f32", // alpha
      "buffer", // A
      "i32", // lda
      "buffer", // B
      "i32", // ldb
      "f32", // beta
      "buffer", // C
      "i32", // ldc
    ],
    result: "void",
  },
  cblas_sgemv: {
    // order, trans, M, N, alpha, A, lda, x, incx, beta, y, incy
    parameters: [
      "i32",
      "i32",
      "i32",
      "i32",
      "f32",
      "buffer",
      "i32",
      "buffer",
      "i32",
      "f32",
      "buffer",
      "i32",
    ],
    result: "void",
  },
  openblas_get_config: { parameters: [], result: "pointer" },
  openblas_get_corename: { parameters: [], result: "pointer" },
  openblas_get_num_threads: { parameters: [], result: "i32" },
  openblas_set_num_threads: { parameters: ["i32"], result: "void" },
  // the spin timeout OpenBLAS read at load (exponent n of 2^n cycles); not in every build
  openblas_thread_timeout: { parameters: [], result: "i32", optional: true },
} as const;

/** A loaded BLAS: a row-major sgemm plus a line describing it. */
export interface Blas {
  /** The library's sgemm, row-major. */
  sgemm: Gemm;
  /**
   * out[j] = Σ_i a[i·cols + j] for a row-major rows×cols `a` (a bias gradient: dy summed over
   * N·H·W), as one multi-threaded sgemv against a vector of ones; absent where the library
   * has none (oneDNN).
   */
  columnSums?(a: Float32Array, rows: number, cols: number, out: Float32Array): void;
  /** e.g. "OpenBLAS 0.3.21 DYNAMIC_ARCH NO_AFFINITY SkylakeX MAX_THREADS=64, core SkylakeX, 2 threads". */
  describe: string;
  /** Its sgemm runs AVX-512 kernels. */
  avx512: boolean;
  /** OpenBLAS only: its name and version ("OpenBLAS 0.3.21") and the kernel core it chose. */
  openblas?: {
    name: string;
    core: string;
    /** Its idle workers' spin before sleeping, 2^n cycles (see OPENBLAS_THREAD_TIMEOUT). */
    threadTimeout?: number;
  };
  /** Library path that was opened. */
  path: string;
}

let cached: Blas | null | undefined;
let failure = "";
/** The vector of ones `columnSums` multiplies by (grown, never shrunk). */
let ones = new Float32Array(0);

/** Why `loadBlas()` returned null (empty when it did not). */
export function blasFailure(): string {
  return failure;
}

function cString(ptr: Deno.PointerValue): string {
  return ptr === null ? "" : new Deno.UnsafePointerView(ptr).getCString();
}

/** oneDNN's row-major sgemm (any version dnnl_load.ts's `openDnnl` finds) as a Blas. */
function dnnlBlas(): Blas | null {
  const found = openDnnl();
  return found && {
    path: found.path,
    describe: `oneDNN ${found.version} sgemm`,
    sgemm: found.sgemm,
    // oneDNN dispatches on the CPU it runs on
    avx512: cpuHasFlag("avx512f"),
  };
}

const AVX512_CORES = /^(SkylakeX|Cooperlake|SapphireRapids)$/;

/**
 * Whether oneDNN's sgemm should take the GEMMs from OpenBLAS. OpenBLAS picks its kernels from
 * the CPU at load time; OPENBLAS_CORETYPE (read only then) overrides it, and some images set it
 * to an AVX2 core (Haswell) on AVX-512 CPUs because older OpenBLAS builds misbehave there. On
 * such a CPU oneDNN's sgemm (its own JIT, AVX-512) ran the study's dense layers and convolution
 * GEMMs 1.2–2.6× faster than OpenBLAS and no shape slower (Zen 5 EPYC, OPENBLAS_CORETYPE=
 * Haswell; VGG16 training +6–13%). With AVX-512 kernels OpenBLAS stays: there oneDNN's A·Bᵀ
 * measured 1.7× slower than OpenBLAS's. CPU_FAST_BLAS=dnnl or =openblas forces the choice.
 */
export function preferDnnlGemm(
  want: string,
  openblasAvx512: boolean,
  cpuAvx512: boolean,
): boolean {
  if (want === "dnnl" || want === "openblas") return want === "dnnl";
  return !openblasAvx512 && cpuAvx512;
}

let openblasCached: Blas | null | undefined;

/**
 * How long (2^n cycles) OpenBLAS's idle worker threads spin on sched_yield after a call before
 * they sleep. Its default, 2^28 (~0.1 s), keeps a worker busy on a core that oneDNN's
 * convolution threads need next: on a 2-core Zen 5 EPYC ~10% of a VGG16 step's CPU time went
 * to that spinning after the small OpenBLAS calls (bias column sums), and 2^4, OpenBLAS's
 * minimum, trained VGG16 7–12% and vgg_small 8–14% faster (baseline unchanged; alternating
 * A/B, three rounds). OpenBLAS reads OPENBLAS_THREAD_TIMEOUT once, when it loads; a user's
 * setting wins.
 */
export const OPENBLAS_THREAD_TIMEOUT = "4";

/** The spin timeout OpenBLAS runs with: the user's OPENBLAS_THREAD_TIMEOUT, else ours. */
export function openBlasThreadTimeout(): string {
  return envVar("OPENBLAS_THREAD_TIMEOUT") || OPENBLAS_THREAD_TIMEOUT;
}

function shortenOpenBlasSpin(): void {
  try {
    Deno.env.set("OPENBLAS_THREAD_TIMEOUT", openBlasThreadTimeout());
  } catch {
    // no env permission: keep OpenBLAS's default
  }
}

/** OpenBLAS as found (once), or null with the reason in `blasFailure()`. */
export function loadOpenBlas(): Blas | null {
  if (openblasCached !== undefined) return openblasCached;
  openblasCached = null;
  if (typeof Deno === "undefined" || typeof Deno.dlopen !== "function") {
    failure = "not running in Deno";
    return null;
  }
  shortenOpenBlasSpin();
  const errors: string[] = [];
  for (const path of CANDIDATES) {
    let lib;
    try {
      lib = Deno.dlopen(path, SYMBOLS);
    } catch (e) {
      errors.push(`${path}: ${(e as Error).message.split("\n")[0]}`);
      if (e instanceof Deno.errors.NotCapable || e instanceof Deno.errors.PermissionDenied) break;
      continue;
    }
    const s = lib.symbols;
    const config = cString(s.openblas_get_config());
    const core = cString(s.openblas_get_corename());
    const threads = s.openblas_get_num_threads();
    openblasCached = {
      path,
      describe: `${config.trim()}, core ${core}, ${threads} thread${threads === 1 ? "" : "s"}`,
      avx512: AVX512_CORES.test(core),
      openblas: {
        name: config.trim().split(" ").slice(0, 2).join(" "),
        core,
        threadTimeout: s.openblas_thread_timeout?.(),
      },
      sgemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc) {
        if (m === 0 || n === 0) return;
        // 101 = CblasRowMajor, 111 = NoTrans, 112 = Trans
        s.cblas_sgemm(
          101,
          transA ? 112 : 111,
          transB ? 112 : 111,
          m,
          n,
          k,
          alpha,
          a,
          lda,
          b,
          ldb,
          beta,
          c,
          ldc,
        );
      },
      columnSums(a, rows, cols, out) {
        if (ones.length < rows) ones = new Float32Array(rows).fill(1);
        // 101 = CblasRowMajor, 112 = Trans: out = aᵀ·1
        s.cblas_sgemv(101, 112, rows, cols, 1, a, cols, ones, 1, 0, out, 1);
      },
    };
    return openblasCached;
  }
  failure = errors.length ? errors.join("; ") : "no OpenBLAS found";
  return null;
}

/**
 * The native GEMM the kernels use (once): OpenBLAS, or oneDNN's sgemm where `preferDnnlGemm`
 * says so (OpenBLAS then keeps the column sums: oneDNN has no sgemv); null when neither loads.
 */
export function loadBlas(): Blas | null {
  if (cached !== undefined) return cached;
  const openblas = loadOpenBlas();
  const want = envVar("CPU_FAST_BLAS") ?? "";
  const dnnl = preferDnnlGemm(want, openblas?.avx512 ?? false, cpuHasFlag("avx512f"))
    ? dnnlBlas()
    : null;
  cached = openblas;
  if (dnnl && openblas?.openblas) {
    const { name, core } = openblas.openblas;
    cached = {
      ...dnnl,
      describe: want === "dnnl"
        ? `${dnnl.describe} (CPU_FAST_BLAS=dnnl)`
        : `${dnnl.describe} (${name}'s core ${core} has no AVX-512 kernels)`,
      columnSums: openblas.columnSums,
    };
  } else if (dnnl) cached = dnnl;
  return cached;
}

/**
 * The one place libdnnl is opened (any major version): its path, version and row-major sgemm,
 * and why it could not be opened. Its own module so that blas.ts (oneDNN's sgemm as a BLAS)
 * does not import the convolution binding (dnnl.ts), which imports the GEMMs.
 */
import { GEMM_PARAMETERS, gemmArgs } from "./dnnl_ffi.ts";
import type { Gemm } from "../util.ts";

/** Where libdnnl is looked for: 2.x first (its convolution API), then 3.x (sgemm only). */
const CANDIDATES = [
  "/usr/lib/x86_64-linux-gnu/libdnnl.so.2",
  "libdnnl.so.2",
  "/usr/lib/x86_64-linux-gnu/libdnnl.so.3",
  "libdnnl.so.3",
];

/** The part of oneDNN's C API that is the same in 2.x and 3.x. */
const STABLE_SYMBOLS = {
  dnnl_version: { parameters: [], result: "pointer" },
  dnnl_sgemm: { parameters: GEMM_PARAMETERS, result: "i32" },
} as const;

/** libdnnl as found: its path, version and row-major sgemm (any major version). */
export interface DnnlLibrary {
  path: string;
  version: string;
  /** oneDNN's `dnnl_sgemm`, row-major. */
  sgemm: Gemm;
}

let library: DnnlLibrary | null | undefined;
let why = "";

/** Why `openDnnl()` or `loadDnnl()` returned null. */
export function dnnlFailure(): string {
  return why;
}

/** Records why dnnl.ts's `loadDnnl()` could not bind the library it found. */
export function noteDnnlFailure(reason: string): void {
  why = reason;
}

/**
 * The one place libdnnl is opened: the first candidate that loads, whatever its major
 * version; null (and `dnnlFailure()` says why) when none does. The convolution binding
 * (`loadDnnl`) then asks for 2.x; `CPU_FAST_BLAS=dnnl` (blas.ts) uses the sgemm of any.
 */
export function openDnnl(): DnnlLibrary | null {
  if (library !== undefined) return library;
  library = null;
  // libgomp's default wait policy stays: its threads spin briefly (GOMP_SPINCOUNT, 300,000)
  // between oneDNN's primitives before they sleep. OMP_WAIT_POLICY=passive (no spinning) was
  // set here while OpenBLAS's idle threads spun for ~0.1 s on the same cores (vgg_small ~15%
  // slower without it then); since blas.ts shortens that spin, passive measured 5–7% slower
  // on VGG16 in mixed_bfloat16 (many short primitives, each waking the threads), the baseline
  // 5% slower, VGG16 float32 and vgg_small unchanged (2-core Zen 5, alternating).
  const errors: string[] = [];
  for (const path of CANDIDATES) {
    try {
      const s = Deno.dlopen(path, STABLE_SYMBOLS).symbols;
      const v = new Deno.UnsafePointerView(s.dnnl_version()!);
      library = {
        path,
        version: `${v.getInt32(0)}.${v.getInt32(4)}.${v.getInt32(8)}`,
        sgemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc) {
          if (m === 0 || n === 0) return;
          const st = s.dnnl_sgemm(
            ...gemmArgs(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc),
          );
          if (st !== 0) throw new Error(`dnnl_sgemm failed with status ${st}`);
        },
      };
      return library;
    } catch (e) {
      errors.push(`${path}: ${(e as Error).message.split("\n")[0]}`);
      if (e instanceof Deno.errors.NotCapable || e instanceof Deno.errors.PermissionDenied) break;
    }
  }
  why = errors.join("; ");
  return null;
}

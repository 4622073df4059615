/**
 * Float32 Add, Sub, Multiply, RealDiv for the shapes training produces:
 * equal shapes, a scalar on either side, or a row vector broadcast over the last axis (bias).
 * tfjs-cpu's generic broadcasting loop costs ~30 ns per element here, and the Adam update
 * alone runs a dozen of these over every weight each step. Large Add, Multiply, Relu and
 * Step run on oneDNN (binary_dnnl.ts) with the same results. Also the unary kernels below.
 */
import { alloc } from "../pool_alloc.ts";
import { BINARY_ADD, BINARY_MUL } from "../onednn/dnnl_ffi.ts";
import { loadDnnl } from "../onednn/dnnl.ts";
import { allF32, f32, type FastKernel, lastAxisSize, out } from "../util.ts";

/** How `b` lines up against `a`; null when the shapes need general broadcasting. */
function layout(
  aShape: number[],
  bShape: number[],
): "same" | "aScalar" | "bScalar" | "bRow" | "aRow" | null {
  const na = aShape.reduce((p, d) => p * d, 1), nb = bShape.reduce((p, d) => p * d, 1);
  const eq = aShape.length === bShape.length && aShape.every((d, i) => d === bShape[i]);
  if (eq) return "same";
  // a scalar broadcasts without changing the other's shape only when its rank is not larger
  if (nb === 1 && bShape.length <= aShape.length) return "bScalar";
  if (na === 1 && aShape.length <= bShape.length) return "aScalar";
  const last = (s: number[]) => s[s.length - 1];
  if (bShape.length <= aShape.length && lastAxisSize({ shape: bShape } as never) === last(aShape)) {
    return "bRow";
  }
  if (aShape.length <= bShape.length && lastAxisSize({ shape: aShape } as never) === last(bShape)) {
    return "aRow";
  }
  return null;
}

type Loop = (a: Float32Array, b: Float32Array, r: Float32Array) => void;

/**
 * Compiles the five loops of one op from its expression in `$a` and `$b`. Generated source,
 * not a shared loop taking `op` as a callback: V8 shares type feedback between closures of
 * one function literal, so a callback loop serving six ops stops inlining and runs ~20×
 * slower (measured: 37 ms vs 2 ms for 1.4M products).
 */
function loops(expr: string): Record<"same" | "bScalar" | "aScalar" | "bRow" | "aRow", Loop> {
  const make = (setup: string, body: string, binds: Record<string, string>): Loop => {
    let e = expr;
    for (const [k, v] of Object.entries(binds)) e = e.replaceAll(`$${k}`, v);
    return new Function("A", "B", "R", `"use strict"; ${setup} ${body.replace("EXPR", e)}`) as Loop;
  };
  const flat = "for (let i = 0; i < R.length; i++) R[i] = EXPR;";
  const rows = "for (let o = 0; o < R.length; o += n) for (let j = 0; j < n; j++) R[o + j] = EXPR;";
  return {
    same: make("", flat, { a: "A[i]", b: "B[i]" }),
    bScalar: make("const s = B[0];", flat, { a: "A[i]", b: "s" }),
    aScalar: make("const s = A[0];", flat, { a: "s", b: "B[i]" }),
    bRow: make("const n = B.length;", rows, { a: "A[o + j]", b: "B[j]" }),
    aRow: make("const n = A.length;", rows, { a: "A[j]", b: "B[o + j]" }),
  };
}

/**
 * From this many elements a commutative op runs on oneDNN (binary_dnnl.ts: all cores, the same
 * bits); below it the FFI call and the thread wake-up cost more than the JS loop.
 */
const NATIVE_MIN = 1 << 16;

/**
 * Makes one binary kernel from its expression, e.g. "$a * $b"; `alg`, for a commutative op,
 * the oneDNN binary algorithm that computes it on large tensors.
 */
function binary(expr: string, alg?: number): FastKernel {
  const loop = loops(expr);
  return ({ inputs, backend }) => {
    const { a, b } = inputs;
    if (!allF32(a, b)) return null;
    const how = layout(a.shape, b.shape);
    if (how === null) return null;
    const av = f32(backend, a), bv = f32(backend, b);
    const big = how === "aScalar" || how === "aRow" ? b : a;
    const r = alloc(big === a ? av.length : bv.length);
    const d = alg !== undefined ? onDnnl(r) : null;
    if (d) {
      // commutative: the large operand first, the broadcast one second
      const [x, y] = big === a ? [av, bv] : [bv, av];
      const bc = how === "same"
        ? "same"
        : how === "aScalar" || how === "bScalar"
        ? "scalar"
        : "row";
      d.binary(alg!, x, y, r, bc === "row" ? y.length : x.length, bc);
    } else loop[how](av, bv, r);
    return out(backend, big.shape.slice(), r);
  };
}

/** The binary kernels replaced, by tfjs kernel name. */
export const BINARY_KERNELS: Record<string, FastKernel> = {
  Add: binary("$a + $b", BINARY_ADD),
  Sub: binary("$a - $b"),
  Multiply: binary("$a * $b", BINARY_MUL),
  RealDiv: binary("$a / $b"),
};

/**
 * A unary float32 kernel from its expression in `$x` (and `$alpha`, the kernel's attribute).
 * tfjs-cpu calls a closure per element (~10 ns each); a dense head's ReLU, its gradient (Step)
 * and dropout's mask (Floor) then cost more than its matmuls' epilogues.
 */
function unary(expr: string): FastKernel {
  const loop = new Function(
    "X",
    "R",
    "alpha",
    `"use strict"; for (let i = 0; i < R.length; i++) { const x = X[i]; R[i] = ${
      expr.replaceAll("$x", "x").replaceAll("$alpha", "alpha")
    }; }`,
  ) as (x: Float32Array, r: Float32Array, alpha: number) => void;
  return ({ inputs, backend, attrs }) => {
    const { x } = inputs;
    if (!allF32(x)) return null;
    const xv = f32(backend, x);
    const r = alloc(xv.length);
    loop(xv, r, attrs?.alpha ?? 0);
    return out(backend, x.shape.slice(), r);
  };
}

/** NaN test on float32 bits (either sign). */
const IS_NAN = "(v & 0x7fffffff) > 0x7f800000";

/**
 * ReLU on the float32 bit patterns: a negative number (sign bit set, -0 and -Infinity
 * included) becomes +0 by masking, NaNs pass. `Math.max(0, x)` or `x > 0 ? x : 0` branch on
 * the sign, and activations are half negative at random: measured 5.6 ns vs 0.8 ns per element.
 */
export function reluBits(x: Float32Array, r: Float32Array): void {
  const X = new Int32Array(x.buffer, x.byteOffset, x.length);
  const R = new Int32Array(r.buffer, r.byteOffset, r.length);
  reluLoop(X, R);
}
const reluLoop = new Function(
  "X",
  "R",
  `"use strict"; const n = R.length;
  for (let i = 0; i < n; i++) { const v = X[i]; R[i] = ${IS_NAN} ? v : v & ~(v >> 31); }`,
) as (x: Int32Array, r: Int32Array) => void;

/** Step (ReLU's gradient mask): 1 where x > 0, alpha elsewhere, NaN kept; branch-free like reluBits. */
const stepLoop = new Function(
  "X",
  "R",
  "T",
  `"use strict"; const n = R.length;
  for (let i = 0; i < n; i++) {
    const v = X[i];
    // 1 exactly when the bits are a positive non-zero number (-0 is 0x80000000: masked out)
    R[i] = ${IS_NAN} ? NaN : T[((-v) >> 31) & ~(v >> 31) & 1];
  }`,
) as (x: Int32Array, r: Float32Array, t: Float64Array) => void;

/**
 * Step with alpha 0 (what ReLU's gradient uses) straight to float32 bits: 1.0f is 0x3f800000,
 * so the mask times it is the answer; no table load, no double-to-float store (the table form
 * measured ~5 ns per element, 138 ms of a ReLU-conv VGG16 step).
 */
const stepZeroLoop = new Function(
  "X",
  "R",
  `"use strict"; const n = R.length;
  for (let i = 0; i < n; i++) {
    const v = X[i];
    R[i] = ${IS_NAN} ? 0x7fc00000 : (-(((-v) >> 31) & ~(v >> 31) & 1)) & 0x3f800000;
  }`,
) as (x: Int32Array, r: Int32Array) => void;

function bitsKernel(run: (x: Float32Array, r: Float32Array, alpha: number) => void): FastKernel {
  return ({ inputs, backend, attrs }) => {
    const { x } = inputs;
    if (!allF32(x)) return null;
    const xv = f32(backend, x);
    const r = alloc(xv.length);
    run(xv, r, attrs?.alpha ?? 0);
    return out(backend, x.shape.slice(), r);
  };
}

/**
 * oneDNN for an op over this many elements (`NATIVE_MIN` or more), else null: large Add and
 * Multiply, and ReLU and its gradient mask (binary_dnnl.ts's ReluPrims, the same results:
 * multi-threaded passes where the JS loops took 40 + 55 ms of a ReLU-conv VGG16 step).
 */
function onDnnl(x: Float32Array) {
  return x.length >= NATIVE_MIN ? loadDnnl() : null;
}

/** The unary kernels replaced, by tfjs kernel name, with tfjs-cpu's exact semantics (NaN kept). */
export const UNARY_KERNELS: Record<string, FastKernel> = {
  Relu: bitsKernel((x, r) => {
    if (!onDnnl(x)?.relu(x, r)) reluBits(x, r);
  }),
  Step: bitsKernel((x, r, alpha) => {
    if (alpha === 0 && onDnnl(x)?.step(x, r)) return;
    const X = new Int32Array(x.buffer, x.byteOffset, x.length);
    if (alpha === 0) stepZeroLoop(X, new Int32Array(r.buffer, r.byteOffset, r.length));
    else stepLoop(X, r, Float64Array.of(alpha, 1));
  }),
  Floor: unary("Math.floor($x)"),
  // BatchNorm's moments and its gradient (tfjs-cpu: a closure call per element)
  Square: unary("$x * $x"),
  Rsqrt: unary("1 / Math.sqrt($x)"),
};

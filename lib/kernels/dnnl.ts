/**
 * oneDNN (libdnnl 2.x, the library PyTorch's CPU convolutions run on) through Deno FFI:
 * direct JIT convolutions on NHWC data, forward, backward-data and backward-weights.
 *
 * Optional like OpenBLAS: `loadDnnl()` returns null when the library is missing or is not
 * 2.x (its C API changed in 3.0), and conv.ts then uses im2col + GEMM. `openDnnl()` is the
 * one loader of libdnnl (any version; blas.ts takes its sgemm from there).
 * Constants are those of dnnl_types.h 2.x. Outputs (every element written by oneDNN) come
 * from the recycling allocator.
 */
import { alloc } from "./pool_alloc.ts";
import { AdamPrims } from "./adam_dnnl.ts";

const F32 = 3, BF16 = 2, FORMAT_ANY = 1, CPU = 1;
const FWD_TRAINING = 64, CONV_DIRECT = 1;
const Q_SRC = 129, Q_DIFF_SRC = 130, Q_WEIGHTS = 131, Q_DIFF_WEIGHTS = 132, Q_DST = 133;
const Q_DIFF_DST = 134, Q_WORKSPACE = 135;
const POOL_MAX = 511, ARG_WORKSPACE = 64, ELTWISE_RELU = 0x1f;
const ARG_SRC = 1, ARG_DST = 17, ARG_WEIGHTS = 33, ARG_BIAS = 41;
const ARG_DIFF_SRC = 129, ARG_DIFF_DST = 145, ARG_DIFF_WEIGHTS = 161;
/** sizeof(dnnl_memory_desc_t) is ~700 bytes in 2.x; op descriptors hold 8 of them. */
const MD_BYTES = 2048, OP_BYTES = 32768;

const SYMBOLS = {
  dnnl_version: { parameters: [], result: "pointer" },
  dnnl_engine_create: { parameters: ["buffer", "i32", "usize"], result: "i32" },
  dnnl_stream_create: { parameters: ["buffer", "pointer", "u32"], result: "i32" },
  dnnl_memory_desc_init_by_strides: {
    parameters: ["buffer", "i32", "buffer", "i32", "buffer"],
    result: "i32",
  },
  dnnl_memory_desc_init_by_tag: {
    parameters: ["buffer", "i32", "buffer", "i32", "i32"],
    result: "i32",
  },
  dnnl_convolution_forward_desc_init: {
    parameters: [
      "buffer",
      "i32",
      "i32",
      "buffer",
      "buffer",
      "buffer",
      "buffer",
      "buffer",
      "buffer",
      "buffer",
    ],
    result: "i32",
  },
  dnnl_convolution_backward_data_desc_init: {
    parameters: ["buffer", "i32", "buffer", "buffer", "buffer", "buffer", "buffer", "buffer"],
    result: "i32",
  },
  dnnl_convolution_backward_weights_desc_init: {
    parameters: [
      "buffer",
      "i32",
      "buffer",
      "buffer",
      "buffer",
      "buffer",
      "buffer",
      "buffer",
      "buffer",
    ],
    result: "i32",
  },
  dnnl_pooling_forward_desc_init: {
    parameters: [
      "buffer",
      "i32",
      "i32",
      "buffer",
      "buffer",
      "buffer",
      "buffer",
      "buffer",
      "buffer",
    ],
    result: "i32",
  },
  dnnl_pooling_backward_desc_init: {
    parameters: ["buffer", "i32", "buffer", "buffer", "buffer", "buffer", "buffer", "buffer"],
    result: "i32",
  },
  dnnl_binary_desc_init: {
    parameters: ["buffer", "i32", "buffer", "buffer", "buffer"],
    result: "i32",
  },
  dnnl_post_ops_append_binary: { parameters: ["pointer", "i32", "buffer"], result: "i32" },
  dnnl_post_ops_append_sum: { parameters: ["pointer", "f32"], result: "i32" },
  dnnl_post_ops_create: { parameters: ["buffer"], result: "i32" },
  dnnl_post_ops_append_eltwise: {
    parameters: ["pointer", "f32", "i32", "f32", "f32"],
    result: "i32",
  },
  dnnl_primitive_attr_create: { parameters: ["buffer"], result: "i32" },
  dnnl_primitive_attr_set_post_ops: { parameters: ["pointer", "pointer"], result: "i32" },
  dnnl_primitive_desc_create: {
    parameters: ["buffer", "buffer", "pointer", "pointer", "pointer"],
    result: "i32",
  },
  dnnl_primitive_desc_query_md: { parameters: ["pointer", "i32", "i32"], result: "pointer" },
  dnnl_primitive_desc_query: { parameters: ["pointer", "i32", "i32", "buffer"], result: "i32" },
  dnnl_reorder_primitive_desc_create: {
    parameters: ["buffer", "pointer", "pointer", "pointer", "pointer", "pointer"],
    result: "i32",
  },
  dnnl_primitive_create: { parameters: ["buffer", "pointer"], result: "i32" },
  dnnl_memory_create: { parameters: ["buffer", "pointer", "pointer", "pointer"], result: "i32" },
  dnnl_memory_set_data_handle: { parameters: ["pointer", "pointer"], result: "i32" },
  dnnl_memory_desc_get_size: { parameters: ["pointer"], result: "usize" },
  dnnl_memory_desc_equal: { parameters: ["pointer", "pointer"], result: "i32" },
  dnnl_primitive_execute: { parameters: ["pointer", "pointer", "i32", "buffer"], result: "i32" },
  dnnl_stream_wait: { parameters: ["pointer"], result: "i32" },
} as const;

/** The bound symbols (adam_dnnl.ts builds its primitives on them too). */
export type Lib = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];
type Ptr = Deno.PointerValue;

/** Geometry of one NHWC convolution with an HWIO filter. */
export interface DnnlGeom {
  batch: number;
  inH: number;
  inW: number;
  inC: number;
  outH: number;
  outW: number;
  outC: number;
  fh: number;
  fw: number;
  sh: number;
  sw: number;
  padTop: number;
  padLeft: number;
}

export function check(status: number, what: string): void {
  if (status !== 0) throw new Error(`oneDNN ${what} failed (status ${status})`);
}

/**
 * Everything FFI reads or writes lives in an explicit ArrayBuffer: V8 keeps typed arrays of
 * 64 bytes or less inside its moving heap, but an ArrayBuffer's store never moves.
 */
export function offHeap(bytes: number): ArrayBuffer {
  return new ArrayBuffer(Math.max(bytes, 8));
}

function dims(...v: number[]): BigInt64Array {
  const d = new BigInt64Array(offHeap(8 * v.length));
  v.forEach((x, i) => (d[i] = BigInt(x)));
  return d;
}

export function ptrOut(): BigUint64Array {
  return new BigUint64Array(offHeap(8));
}

/** A new zeroed float32 array FFI may write into (oneDNN's own buffers). */
function f32(n: number): Float32Array {
  return new Float32Array(offHeap(4 * n), 0, n);
}

export function ptrOf(out: BigUint64Array): Ptr {
  return Deno.UnsafePointer.create(out[0]);
}

/** A memory descriptor over caller-owned bytes (kept alive with the primitive). */
export function md(lib: Lib, d: number[], strides: number[] | null, type = F32): Uint8Array {
  const m = new Uint8Array(offHeap(MD_BYTES));
  if (strides) {
    check(
      lib.dnnl_memory_desc_init_by_strides(m, d.length, dims(...d), type, dims(...strides)),
      "md",
    );
  } else {check(
      lib.dnnl_memory_desc_init_by_tag(m, d.length, dims(...d), type, FORMAT_ANY),
      "md any",
    );}
  return m;
}

/** A primitive descriptor for an initialised op descriptor (attr: post-ops, or null). */
export function primitiveDesc(
  lib: Lib,
  engine: Ptr,
  op: Uint8Array,
  hint: Ptr,
  attr: Ptr = null,
): Ptr {
  const out = ptrOut();
  check(lib.dnnl_primitive_desc_create(new Uint8Array(out.buffer), op, attr, engine, hint), "pd");
  return ptrOf(out);
}

const reluAttrs = new WeakMap<Lib, Ptr>();

/**
 * Primitive attributes with a ReLU post-op: the convolution applies max(y, 0) to its float32
 * accumulator before writing y, instead of a second pass over y (a ~0.9 ns/element JS loop:
 * ~23 ms of a VGG16 step). NaN stays NaN, as in tfjs's ReLU.
 */
function reluAttr(lib: Lib): Ptr {
  let attr = reluAttrs.get(lib);
  if (attr === undefined) {
    const ops = ptrOut();
    check(lib.dnnl_post_ops_create(new Uint8Array(ops.buffer)), "post-ops");
    // 2.x: (post_ops, scale, alg, alpha, beta); alpha 0 = plain ReLU
    check(lib.dnnl_post_ops_append_eltwise(ptrOf(ops), 1, ELTWISE_RELU, 0, 0), "relu post-op");
    const a = ptrOut();
    check(lib.dnnl_primitive_attr_create(new Uint8Array(a.buffer)), "attr");
    check(lib.dnnl_primitive_attr_set_post_ops(ptrOf(a), ptrOf(ops)), "attr post-ops");
    attr = ptrOf(a);
    reluAttrs.set(lib, attr);
  }
  return attr;
}

/** A primitive and the memories it executes on (handles set per call). */
export interface Prim {
  prim: Ptr;
  args: Uint8Array;
  mems: Ptr[];
}

/**
 * Byte-stable home for small arrays: V8 may keep arrays under 64 bytes inside its movable
 * heap, so those are copied into (and back out of) one off-heap buffer before FFI sees them.
 */
const SMALL = new Float32Array(new ArrayBuffer(8 * 4096 * 4));

/** The oneDNN engine, stream and per-geometry primitives. */
export class Dnnl {
  readonly version: string;
  private engine: Ptr;
  private stream: Ptr;
  private cache = new Map<string, ConvPrims>();
  private bf16Cache = new Map<string, Bf16ConvPrims>();

  constructor(private lib: Lib) {
    const v = new Deno.UnsafePointerView(lib.dnnl_version()!);
    this.version = `${v.getInt32(0)}.${v.getInt32(4)}.${v.getInt32(8)}`;
    const e = ptrOut();
    check(lib.dnnl_engine_create(new Uint8Array(e.buffer), CPU, 0n), "engine");
    this.engine = ptrOf(e);
    const s = ptrOut();
    check(lib.dnnl_stream_create(new Uint8Array(s.buffer), this.engine, 1), "stream");
    this.stream = ptrOf(s);
  }

  private primitive(pd: Ptr, argIds: number[], mds: Ptr[]): Prim {
    const p = ptrOut();
    check(this.lib.dnnl_primitive_create(new Uint8Array(p.buffer), pd), "primitive");
    const mems = mds.map((m) => {
      const o = ptrOut();
      check(this.lib.dnnl_memory_create(new Uint8Array(o.buffer), m, this.engine, null), "memory");
      return ptrOf(o);
    });
    // dnnl_exec_arg_t is { int arg; dnnl_memory_t memory; }: 16 bytes with padding
    const args = new Uint8Array(offHeap(16 * argIds.length));
    const view = new DataView(args.buffer);
    argIds.forEach((id, i) => {
      view.setInt32(16 * i, id, true);
      view.setBigUint64(16 * i + 8, BigInt(Deno.UnsafePointer.value(mems[i])), true);
    });
    return { prim: ptrOf(p), args, mems };
  }

  private reorder(from: Ptr, to: Ptr): Prim {
    const pd = ptrOut();
    check(
      this.lib.dnnl_reorder_primitive_desc_create(
        new Uint8Array(pd.buffer),
        from,
        this.engine,
        to,
        this.engine,
        null,
      ),
      "reorder pd",
    );
    return this.primitive(ptrOf(pd), [ARG_SRC, ARG_DST], [from, to]);
  }

  private run(p: Prim, arrays: (Float32Array | null)[]): void {
    arrays.forEach((a, i) => {
      check(
        this.lib.dnnl_memory_set_data_handle(
          p.mems[i],
          a === null ? null : Deno.UnsafePointer.of(a),
        ),
        "handle",
      );
    });
    check(this.lib.dnnl_primitive_execute(p.prim, this.stream, p.mems.length, p.args), "execute");
    check(this.lib.dnnl_stream_wait(this.stream), "wait");
  }

  /**
   * Convolutions in bfloat16 with float32 accumulation (mixed_bfloat16), on oneDNN's blocked
   * layouts (see Bf16ConvPrims). Set by `setConvBf16`.
   */
  bf16 = false;

  /** The primitives of one geometry (fp32 NHWC or bf16 blocked), made once and kept. */
  private prims<T>(
    cache: Map<string, T>,
    Kind: new (...a: ConstructorParameters<typeof ConvPrims>) => T,
    g: DnnlGeom,
    bias: boolean,
    relu = false,
  ): T {
    const key = JSON.stringify([g, bias, relu]);
    let c = cache.get(key);
    if (!c) {
      c = new Kind(
        this.lib,
        g,
        bias,
        this.engine,
        (pd, ids, mds) => this.primitive(pd, ids, mds),
        (a, b) => this.reorder(a, b),
        relu,
      );
      cache.set(key, c);
    }
    return c;
  }

  /**
   * y = conv(x, w) (+ bias) (then ReLU), NHWC/HWIO; returns the new output array. `xId` (the
   * tensor's dataId) lets the weight gradient reuse the bf16 copy of x (see Bf16ConvPrims).
   */
  forward(
    g: DnnlGeom,
    x: Float32Array,
    w: Float32Array,
    bias: Float32Array | null,
    relu = false,
    xId: object | null = null,
  ): Float32Array {
    const y = alloc(g.batch * g.outH * g.outW * g.outC);
    const run: Run = (p, a) => this.run(p, a);
    if (this.bf16) {
      this.prims(this.bf16Cache, Bf16ConvPrims, g, bias !== null, relu)
        .forward(run, x, w, bias, y, xId);
      return y;
    }
    const c = this.prims(this.cache, ConvPrims, g, bias !== null, relu);
    const wk = c.fwdWeights(w, run);
    this.run(c.fwd, bias ? [stable(x), wk, stable(bias, 1), y] : [stable(x), wk, y]);
    return y;
  }

  private adams = new Map<string, AdamPrims>();

  /**
   * One Adam step over a weight in place (see adam_dnnl.ts): m, v and w updated by three
   * multi-threaded passes; `alpha` and `epsilon` are this step's (bias corrections folded in).
   */
  adam(
    w: Float32Array,
    m: Float32Array,
    v: Float32Array,
    g: Float32Array,
    b1: number,
    b2: number,
    alpha: number,
    epsilon: number,
  ): void {
    const key = `${g.length} ${b1} ${b2}`;
    let a = this.adams.get(key);
    if (!a) {
      a = new AdamPrims(
        this.lib,
        this.engine,
        (pd, ids, mds) => this.primitive(pd, ids, mds),
        g.length,
        b1,
        b2,
      );
      this.adams.set(key, a);
    }
    a.update((p, arrays) => this.run(p, arrays), w, m, v, g, alpha, epsilon);
  }

  /** The bf16 copy of tensor `xId` a forward primitive of this geometry still holds, if any. */
  private heldX(g: DnnlGeom, xId: object | null): { buf: Float32Array; md: Ptr } | null {
    if (xId === null) return null;
    for (const bias of [true, false]) {
      for (const relu of [false, true]) {
        const p = this.bf16Cache.get(JSON.stringify([g, bias, relu]));
        const buf = p?.heldX(xId);
        if (p && buf) return { buf, md: p.srcMd() };
      }
    }
    return null;
  }

  private pools = new Map<string, PoolPrims>();

  private pool(g: PoolGeom): PoolPrims {
    const key = JSON.stringify(g);
    let p = this.pools.get(key);
    if (!p) {
      p = new PoolPrims(this.lib, g, this.engine, (pd, ids, mds) => this.primitive(pd, ids, mds));
      this.pools.set(key, p);
    }
    return p;
  }

  /** Max-pooling forward, NHWC. */
  maxPool(g: PoolGeom, x: Float32Array): Float32Array {
    const p = this.pool(g);
    const y = alloc(g.batch * g.outH * g.outW * g.c);
    this.run(p.fwd, [stable(x), y, p.ws]);
    return y;
  }

  /**
   * Max-pooling gradient: reruns the forward to get oneDNN's arg-max workspace (tfjs hands
   * the gradient kernel x, y and dy, not indices), then scatters dy.
   */
  maxPoolGrad(g: PoolGeom, x: Float32Array, dy: Float32Array): Float32Array {
    const p = this.pool(g);
    this.run(p.fwd, [stable(x), p.yTmp, p.ws]);
    const dx = alloc(g.batch * g.inH * g.inW * g.c);
    this.run(p.bwd(), [stable(dy, 4), p.ws, dx]);
    return dx;
  }

  /** dx for dy, NHWC (`dyId`: dy's dataId, for the weight gradient's reuse of its bf16 copy). */
  backwardData(
    g: DnnlGeom,
    dy: Float32Array,
    w: Float32Array,
    dyId: object | null = null,
  ): Float32Array {
    const dx = alloc(g.batch * g.inH * g.inW * g.inC);
    const run: Run = (p, a) => this.run(p, a);
    if (this.bf16) {
      this.prims(this.bf16Cache, Bf16ConvPrims, g, false).backwardData(run, dy, w, dx, dyId);
      return dx;
    }
    const c = this.prims(this.cache, ConvPrims, g, false);
    const wk = c.bwdDataWeights(w, run);
    this.run(c.bwdData(), [dx, wk, stable(dy, 4)]);
    return dx;
  }

  /** dW (HWIO) for x and dy (`xId`, `dyId`: their dataIds, to reuse bf16 copies). */
  backwardWeights(
    g: DnnlGeom,
    x: Float32Array,
    dy: Float32Array,
    xId: object | null = null,
    dyId: object | null = null,
  ): Float32Array {
    const dw = alloc(g.fh * g.fw * g.inC * g.outC);
    if (this.bf16) {
      this.prims(this.bf16Cache, Bf16ConvPrims, g, false).backwardWeights(
        (p, a) => this.run(p, a),
        x,
        dy,
        dw,
        dyId,
        this.heldX(g, xId),
      );
      return dw;
    }
    const c = this.prims(this.cache, ConvPrims, g, false);
    const b = c.bwdWeights();
    const tmp = c.diffWeightsTmp();
    this.run(b.prim, [stable(x), tmp ?? dw, stable(dy, 4)]);
    if (tmp) this.run(b.back!, [tmp, dw]);
    return dw;
  }
}

/** Copies arrays V8 might move into the off-heap SMALL buffer (slot picks a 16 KB region). */
function stable(a: Float32Array, slot = 0): Float32Array {
  if (a.byteLength >= 256) return a;
  const s = SMALL.subarray(slot * 4096, slot * 4096 + a.length);
  s.set(a);
  return s;
}

export type MakePrim = (pd: Ptr, ids: number[], mds: Ptr[]) => Prim;
export type Run = (p: Prim, arrays: (Float32Array | null)[]) => void;

/** The primitives of one convolution geometry, created lazily and kept. */
class ConvPrims {
  private srcMd: Uint8Array;
  private dstMd: Uint8Array;
  private userW: Uint8Array;
  private anyW: Uint8Array;
  private biasMd: Uint8Array | null;
  private fwdPd: Ptr;
  fwd: Prim;
  private fwdW: { reorder: Prim | null; buf: Float32Array | null };
  private bd?: { prim: Prim; reorder: Prim | null; buf: Float32Array | null };
  private bw?: { prim: Prim; back: Prim | null; tmp: Float32Array | null };
  private strides: BigInt64Array;
  private padL: BigInt64Array;
  private padR: BigInt64Array;

  constructor(
    private lib: Lib,
    private g: DnnlGeom,
    bias: boolean,
    private engine: Ptr,
    private make: MakePrim,
    private reorder: (a: Ptr, b: Ptr) => Prim,
    /** A ReLU post-op on the forward's output (see reluAttr). */
    relu = false,
  ) {
    const u = userMds(lib, g, bias);
    this.srcMd = u.src;
    this.dstMd = u.dst;
    this.userW = u.w;
    this.biasMd = u.bias;
    this.anyW = md(lib, [g.outC, g.inC, g.fh, g.fw], null);
    [this.strides, this.padL, this.padR] = convParams(g);
    const op = new Uint8Array(offHeap(OP_BYTES));
    check(
      lib.dnnl_convolution_forward_desc_init(
        op,
        FWD_TRAINING,
        CONV_DIRECT,
        this.srcMd,
        this.anyW,
        this.biasMd ?? new Uint8Array(offHeap(MD_BYTES)),
        this.dstMd,
        this.strides,
        this.padL,
        this.padR,
      ),
      "conv fwd desc",
    );
    this.fwdPd = primitiveDesc(lib, engine, op, null, relu ? reluAttr(lib) : null);
    const wMd = lib.dnnl_primitive_desc_query_md(this.fwdPd, Q_WEIGHTS, 0);
    const ids = bias ? [ARG_SRC, ARG_WEIGHTS, ARG_BIAS, ARG_DST] : [ARG_SRC, ARG_WEIGHTS, ARG_DST];
    const mds = bias
      ? [this.p(this.srcMd), wMd, this.p(this.biasMd!), this.p(this.dstMd)]
      : [this.p(this.srcMd), wMd, this.p(this.dstMd)];
    this.fwd = make(this.fwdPd, ids, mds);
    this.fwdW = this.weightsIn(wMd);
  }

  private p(m: Uint8Array): Ptr {
    return Deno.UnsafePointer.of(m);
  }

  /** A reorder from the user's HWIO weights into `want`, unless they already match. */
  private weightsIn(want: Ptr): { reorder: Prim | null; buf: Float32Array | null } {
    if (this.lib.dnnl_memory_desc_equal(want, this.p(this.userW)) === 1) {
      return { reorder: null, buf: null };
    }
    const bytes = Number(this.lib.dnnl_memory_desc_get_size(want));
    return { reorder: this.reorder(this.p(this.userW), want), buf: f32(Math.ceil(bytes / 4)) };
  }

  private convert(
    w: Float32Array,
    how: { reorder: Prim | null; buf: Float32Array | null },
    run: Run,
  ): Float32Array {
    if (!how.reorder) return stable(w, 3);
    run(how.reorder, [stable(w, 3), how.buf]);
    return how.buf!;
  }

  fwdWeights(w: Float32Array, run: Run): Float32Array {
    return this.convert(w, this.fwdW, run);
  }

  private bwdDataPrims() {
    if (!this.bd) {
      const op = new Uint8Array(offHeap(OP_BYTES));
      check(
        this.lib.dnnl_convolution_backward_data_desc_init(
          op,
          CONV_DIRECT,
          this.srcMd,
          this.anyW,
          this.dstMd,
          this.strides,
          this.padL,
          this.padR,
        ),
        "conv bwd data desc",
      );
      const pd = primitiveDesc(this.lib, this.engine, op, this.fwdPd);
      const wMd = this.lib.dnnl_primitive_desc_query_md(pd, Q_WEIGHTS, 0);
      const diffSrc = this.lib.dnnl_primitive_desc_query_md(pd, Q_DIFF_SRC, 0);
      if (this.lib.dnnl_memory_desc_equal(diffSrc, this.p(this.srcMd)) !== 1) {
        throw new Error("oneDNN chose another diff_src layout");
      }
      const prim = this.make(pd, [ARG_DIFF_SRC, ARG_WEIGHTS, ARG_DIFF_DST], [
        this.p(this.srcMd),
        wMd,
        this.p(this.dstMd),
      ]);
      this.bd = { prim, ...this.weightsIn(wMd) };
    }
    return this.bd;
  }

  bwdData(): Prim {
    return this.bwdDataPrims().prim;
  }

  bwdDataWeights(w: Float32Array, run: Run): Float32Array {
    return this.convert(w, this.bwdDataPrims(), run);
  }

  bwdWeights(): { prim: Prim; back: Prim | null } {
    if (!this.bw) {
      const op = new Uint8Array(offHeap(OP_BYTES));
      check(
        this.lib.dnnl_convolution_backward_weights_desc_init(
          op,
          CONV_DIRECT,
          this.srcMd,
          this.anyW,
          new Uint8Array(offHeap(MD_BYTES)),
          this.dstMd,
          this.strides,
          this.padL,
          this.padR,
        ),
        "conv bwd weights desc",
      );
      const pd = primitiveDesc(this.lib, this.engine, op, this.fwdPd);
      const dwMd = this.lib.dnnl_primitive_desc_query_md(pd, Q_DIFF_WEIGHTS, 0);
      const src = this.lib.dnnl_primitive_desc_query_md(pd, Q_SRC, 0);
      if (this.lib.dnnl_memory_desc_equal(src, this.p(this.srcMd)) !== 1) {
        throw new Error("oneDNN chose another src layout");
      }
      const prim = this.make(pd, [ARG_SRC, ARG_DIFF_WEIGHTS, ARG_DIFF_DST], [
        this.p(this.srcMd),
        dwMd,
        this.p(this.dstMd),
      ]);
      const same = this.lib.dnnl_memory_desc_equal(dwMd, this.p(this.userW)) === 1;
      this.bw = same ? { prim, back: null, tmp: null } : {
        prim,
        back: this.reorder(dwMd, this.p(this.userW)),
        tmp: f32(Math.ceil(Number(this.lib.dnnl_memory_desc_get_size(dwMd)) / 4)),
      };
    }
    return this.bw;
  }

  diffWeightsTmp(): Float32Array | null {
    return this.bwdWeights() && this.bw!.tmp;
  }
}

/** The caller's float32 descriptors: NHWC x and y, HWIO weights, bias. */
interface UserMds {
  src: Uint8Array;
  dst: Uint8Array;
  w: Uint8Array;
  bias: Uint8Array | null;
}

function userMds(lib: Lib, g: DnnlGeom, bias: boolean): UserMds {
  const { batch: N, inH, inW, inC, outH, outW, outC, fh, fw } = g;
  return {
    src: md(lib, [N, inC, inH, inW], [inH * inW * inC, 1, inW * inC, inC]),
    dst: md(lib, [N, outC, outH, outW], [outH * outW * outC, 1, outW * outC, outC]),
    w: md(lib, [outC, inC, fh, fw], [1, outC, fw * inC * outC, inC * outC]),
    bias: bias ? md(lib, [outC], [1]) : null,
  };
}

/** Strides, top/left padding and bottom/right padding of one geometry. */
function convParams(g: DnnlGeom): [BigInt64Array, BigInt64Array, BigInt64Array] {
  return [
    dims(g.sh, g.sw),
    dims(g.padTop, g.padLeft),
    // oneDNN wants the bottom/right padding that makes the output size come out exactly
    dims(
      (g.outH - 1) * g.sh + g.fh - g.inH - g.padTop,
      (g.outW - 1) * g.sw + g.fw - g.inW - g.padLeft,
    ),
  ];
}

/** A reorder between the caller's layout and a primitive's, with the primitive-side buffer. */
interface Stage {
  prim: Prim;
  buf: Float32Array;
}

/**
 * One convolution geometry under mixed_bfloat16, run as PyTorch's autocast runs it on the same
 * oneDNN: x, weights and dy rounded to bf16 in the layouts oneDNN picks for them (blocked,
 * e.g. nChw16c), float32 accumulation, y and dx written in bf16 and handed back as float32
 * NHWC, the weight gradient written in float32. Reorders do the rounding and the relayout in
 * one pass. On plain NHWC bf16 data oneDNN 2.6 picks slower kernels: its weight gradient
 * measured 8× slower than float32's on a Zen 5 EPYC, hence the blocked layouts.
 */
class Bf16ConvPrims {
  private u: UserMds;
  private params: [BigInt64Array, BigInt64Array, BigInt64Array];
  private fwdPd: Ptr;
  private fwd: { prim: Prim; x: Stage; w: Stage; y: Stage };
  private bd?: { prim: Prim; dy: Stage; w: Stage; dx: Stage; dyMd: Ptr };
  private bw?: {
    prim: Prim;
    x: Stage;
    dy: Stage;
    dw: Stage;
    /** The layouts this primitive reads x and dy in (a held copy is used only in the same). */
    xMd: Ptr;
    dyMd: Ptr;
  };
  /**
   * The tensors (tfjs dataIds: one per tensor, never reused, its data immutable) whose bf16
   * copies the forward's x stage and the input gradient's dy stage hold now. The weight
   * gradient that follows uses those copies instead of converting the same data again.
   */
  private xHeld: object | null = null;
  private dyHeld: object | null = null;

  constructor(
    private lib: Lib,
    private g: DnnlGeom,
    bias: boolean,
    private engine: Ptr,
    private make: MakePrim,
    private reorder: (a: Ptr, b: Ptr) => Prim,
    /** A ReLU post-op on the forward's output (see reluAttr). */
    relu = false,
  ) {
    this.u = userMds(lib, g, bias);
    this.params = convParams(g);
    const op = new Uint8Array(offHeap(OP_BYTES));
    check(
      lib.dnnl_convolution_forward_desc_init(
        op,
        FWD_TRAINING,
        CONV_DIRECT,
        this.any(this.srcDims()),
        this.any(this.wDims()),
        this.u.bias ?? new Uint8Array(offHeap(MD_BYTES)),
        this.any(this.dstDims()),
        ...this.params,
      ),
      "bf16 conv fwd desc",
    );
    this.fwdPd = primitiveDesc(lib, engine, op, null, relu ? reluAttr(lib) : null);
    const q = (what: number) => lib.dnnl_primitive_desc_query_md(this.fwdPd, what, 0);
    const ids = bias ? [ARG_SRC, ARG_WEIGHTS, ARG_BIAS, ARG_DST] : [ARG_SRC, ARG_WEIGHTS, ARG_DST];
    const mds = [q(Q_SRC), q(Q_WEIGHTS), ...(bias ? [this.p(this.u.bias!)] : []), q(Q_DST)];
    this.fwd = {
      prim: make(this.fwdPd, ids, mds),
      x: this.stage(this.p(this.u.src), q(Q_SRC), q(Q_SRC)),
      w: this.stage(this.p(this.u.w), q(Q_WEIGHTS), q(Q_WEIGHTS)),
      y: this.stage(q(Q_DST), this.p(this.u.dst), q(Q_DST)),
    };
  }

  private srcDims() {
    return [this.g.batch, this.g.inC, this.g.inH, this.g.inW];
  }
  private dstDims() {
    return [this.g.batch, this.g.outC, this.g.outH, this.g.outW];
  }
  private wDims() {
    return [this.g.outC, this.g.inC, this.g.fh, this.g.fw];
  }
  private any(d: number[], type = BF16): Uint8Array {
    return md(this.lib, d, null, type);
  }
  private p(m: Uint8Array): Ptr {
    return Deno.UnsafePointer.of(m);
  }

  /** A reorder from → to, and a buffer the size of `bufMd` (the primitive's side). */
  private stage(from: Ptr, to: Ptr, bufMd: Ptr): Stage {
    const bytes = Number(this.lib.dnnl_memory_desc_get_size(bufMd));
    return { prim: this.reorder(from, to), buf: f32(Math.ceil(bytes / 4)) };
  }

  /** The caller's array `a` in the primitive's layout (the stage's buffer). */
  private static into(s: Stage, a: Float32Array, run: Run, slot: number): Float32Array {
    run(s.prim, [stable(a, slot), s.buf]);
    return s.buf;
  }

  forward(
    run: Run,
    x: Float32Array,
    w: Float32Array,
    bias: Float32Array | null,
    y: Float32Array,
    xId: object | null = null,
  ) {
    const f = this.fwd;
    const xs = Bf16ConvPrims.into(f.x, x, run, 0);
    this.xHeld = xId;
    const ws = Bf16ConvPrims.into(f.w, w, run, 3);
    run(f.prim, bias ? [xs, ws, stable(bias, 1), f.y.buf] : [xs, ws, f.y.buf]);
    run(f.y.prim, [f.y.buf, y]);
  }

  /** A backward primitive from its op descriptor, with oneDNN's layouts for its arguments. */
  private backward(init: (op: Uint8Array) => number, what: string, args: [number, number][]) {
    const op = new Uint8Array(offHeap(OP_BYTES));
    check(init(op), what);
    const pd = primitiveDesc(this.lib, this.engine, op, this.fwdPd);
    const q = (query: number) => this.lib.dnnl_primitive_desc_query_md(pd, query, 0);
    return { prim: this.make(pd, args.map(([id]) => id), args.map(([, query]) => q(query))), q };
  }

  backwardData(
    run: Run,
    dy: Float32Array,
    w: Float32Array,
    dx: Float32Array,
    dyId: object | null = null,
  ) {
    if (!this.bd) {
      const { prim, q } = this.backward(
        (op) =>
          this.lib.dnnl_convolution_backward_data_desc_init(
            op,
            CONV_DIRECT,
            this.any(this.srcDims()),
            this.any(this.wDims()),
            this.any(this.dstDims()),
            ...this.params,
          ),
        "bf16 conv bwd data desc",
        [[ARG_DIFF_SRC, Q_DIFF_SRC], [ARG_WEIGHTS, Q_WEIGHTS], [ARG_DIFF_DST, Q_DIFF_DST]],
      );
      this.bd = {
        prim,
        dy: this.stage(this.p(this.u.dst), q(Q_DIFF_DST), q(Q_DIFF_DST)),
        w: this.stage(this.p(this.u.w), q(Q_WEIGHTS), q(Q_WEIGHTS)),
        dx: this.stage(q(Q_DIFF_SRC), this.p(this.u.src), q(Q_DIFF_SRC)),
        dyMd: q(Q_DIFF_DST),
      };
    }
    const b = this.bd;
    const dys = Bf16ConvPrims.into(b.dy, dy, run, 4);
    this.dyHeld = dyId;
    const ws = Bf16ConvPrims.into(b.w, w, run, 3);
    run(b.prim, [b.dx.buf, ws, dys]);
    run(b.dx.prim, [b.dx.buf, dx]);
  }

  /** The bf16 copy of x the forward holds, when it holds tensor `xId` (see `xHeld`). */
  heldX(xId: object | null): Float32Array | null {
    return xId !== null && this.xHeld === xId ? this.fwd.x.buf : null;
  }

  /** The forward's x layout (to check that a held copy fits another primitive). */
  srcMd(): Ptr {
    return this.lib.dnnl_primitive_desc_query_md(this.fwdPd, Q_SRC, 0);
  }

  /**
   * dW for x and dy; `heldX` is the forward's bf16 copy of this x when it still holds it (from
   * the forward primitive of this geometry, with or without bias), with its layout.
   */
  backwardWeights(
    run: Run,
    x: Float32Array,
    dy: Float32Array,
    dw: Float32Array,
    dyId: object | null = null,
    heldX: { buf: Float32Array; md: Ptr } | null = null,
  ) {
    if (!this.bw) {
      const { prim, q } = this.backward(
        (op) =>
          this.lib.dnnl_convolution_backward_weights_desc_init(
            op,
            CONV_DIRECT,
            this.any(this.srcDims()),
            this.any(this.wDims()),
            new Uint8Array(offHeap(MD_BYTES)),
            this.any(this.dstDims()),
            ...this.params,
          ),
        "bf16 conv bwd weights desc",
        [[ARG_SRC, Q_SRC], [ARG_DIFF_WEIGHTS, Q_DIFF_WEIGHTS], [ARG_DIFF_DST, Q_DIFF_DST]],
      );
      this.bw = {
        prim,
        x: this.stage(this.p(this.u.src), q(Q_SRC), q(Q_SRC)),
        dy: this.stage(this.p(this.u.dst), q(Q_DIFF_DST), q(Q_DIFF_DST)),
        dw: this.stage(q(Q_DIFF_WEIGHTS), this.p(this.u.w), q(Q_DIFF_WEIGHTS)),
        xMd: q(Q_SRC),
        dyMd: q(Q_DIFF_DST),
      };
    }
    const b = this.bw;
    const same = (a: Ptr, c: Ptr) => this.lib.dnnl_memory_desc_equal(a, c) === 1;
    const xs = heldX && same(heldX.md, b.xMd) ? heldX.buf : Bf16ConvPrims.into(b.x, x, run, 0);
    const dys = dyId !== null && this.dyHeld === dyId && this.bd && same(this.bd.dyMd, b.dyMd)
      ? this.bd.dy.buf
      : Bf16ConvPrims.into(b.dy, dy, run, 4);
    this.dyHeld = null;
    run(b.prim, [xs, b.dw.buf, dys]);
    run(b.dw.prim, [b.dw.buf, dw]);
  }
}

/** Geometry of one NHWC max-pooling. */
export interface PoolGeom {
  batch: number;
  inH: number;
  inW: number;
  c: number;
  outH: number;
  outW: number;
  fh: number;
  fw: number;
  sh: number;
  sw: number;
  padTop: number;
  padLeft: number;
}

/** Forward (training, with arg-max workspace) and backward max-pooling of one geometry. */
class PoolPrims {
  fwd: Prim;
  ws: Float32Array;
  yTmp: Float32Array;
  private fwdPd: Ptr;
  private bwdPrim?: Prim;
  private srcMd: Uint8Array;
  private dstMd: Uint8Array;
  private wsMd: Ptr;
  private params: BigInt64Array[];

  constructor(private lib: Lib, g: PoolGeom, private engine: Ptr, private make: MakePrim) {
    const { batch: N, inH, inW, c, outH, outW } = g;
    this.srcMd = md(lib, [N, c, inH, inW], [inH * inW * c, 1, inW * c, c]);
    this.dstMd = md(lib, [N, c, outH, outW], [outH * outW * c, 1, outW * c, c]);
    this.params = [
      dims(g.sh, g.sw),
      dims(g.fh, g.fw),
      dims(g.padTop, g.padLeft),
      dims((outH - 1) * g.sh + g.fh - inH - g.padTop, (outW - 1) * g.sw + g.fw - inW - g.padLeft),
    ];
    const op = new Uint8Array(offHeap(OP_BYTES));
    const [st, k, pl, pr] = this.params;
    check(
      lib.dnnl_pooling_forward_desc_init(
        op,
        FWD_TRAINING,
        POOL_MAX,
        this.srcMd,
        this.dstMd,
        st,
        k,
        pl,
        pr,
      ),
      "pool fwd desc",
    );
    this.fwdPd = primitiveDesc(lib, engine, op, null);
    this.wsMd = lib.dnnl_primitive_desc_query_md(this.fwdPd, Q_WORKSPACE, 0);
    this.ws = f32(Math.ceil(Number(lib.dnnl_memory_desc_get_size(this.wsMd)) / 4));
    this.yTmp = f32(N * outH * outW * c);
    this.fwd = make(this.fwdPd, [ARG_SRC, ARG_DST, ARG_WORKSPACE], [
      Deno.UnsafePointer.of(this.srcMd),
      Deno.UnsafePointer.of(this.dstMd),
      this.wsMd,
    ]);
  }

  bwd(): Prim {
    if (!this.bwdPrim) {
      const op = new Uint8Array(offHeap(OP_BYTES));
      const [st, k, pl, pr] = this.params;
      check(
        this.lib.dnnl_pooling_backward_desc_init(
          op,
          POOL_MAX,
          this.srcMd,
          this.dstMd,
          st,
          k,
          pl,
          pr,
        ),
        "pool bwd desc",
      );
      const pd = primitiveDesc(this.lib, this.engine, op, this.fwdPd);
      this.bwdPrim = this.make(pd, [ARG_DIFF_DST, ARG_WORKSPACE, ARG_DIFF_SRC], [
        Deno.UnsafePointer.of(this.dstMd),
        this.wsMd,
        Deno.UnsafePointer.of(this.srcMd),
      ]);
    }
    return this.bwdPrim;
  }
}

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
  dnnl_sgemm: {
    parameters: [
      "u8",
      "u8",
      "i64",
      "i64",
      "i64",
      "f32",
      "buffer",
      "i64",
      "buffer",
      "i64",
      "f32",
      "buffer",
      "i64",
    ],
    result: "i32",
  },
} as const;

/** libdnnl as found: its path, version and row-major sgemm (any major version). */
export interface DnnlLibrary {
  path: string;
  version: string;
  /** C = alpha·op(A)·op(B) + beta·C, row-major (oneDNN's `dnnl_sgemm`). */
  sgemm(
    transA: boolean,
    transB: boolean,
    m: number,
    n: number,
    k: number,
    alpha: number,
    a: Float32Array,
    lda: number,
    b: Float32Array,
    ldb: number,
    beta: number,
    c: Float32Array,
    ldc: number,
  ): void;
}

let library: DnnlLibrary | null | undefined;
let why = "";

/**
 * The one place libdnnl is opened: the first candidate that loads, whatever its major
 * version; null (and `dnnlFailure()` says why) when none does. The convolution binding
 * (`loadDnnl`) then asks for 2.x; `CPU_FAST_BLAS=dnnl` (blas.ts) uses the sgemm of any.
 */
export function openDnnl(): DnnlLibrary | null {
  if (library !== undefined) return library;
  library = null;
  try {
    // oneDNN's OpenMP threads otherwise spin after every primitive, fighting OpenBLAS's own
    // threads (dense layers) for the same cores: measured ~15% slower vgg_small steps.
    // libgomp reads this once, when it loads with libdnnl; a user's setting wins.
    if (!Deno.env.get("OMP_WAIT_POLICY")) Deno.env.set("OMP_WAIT_POLICY", "passive");
  } catch {
    // no env permission: keep libgomp's default
  }
  const errors: string[] = [];
  for (const path of CANDIDATES) {
    try {
      const s = Deno.dlopen(path, STABLE_SYMBOLS).symbols;
      const v = new Deno.UnsafePointerView(s.dnnl_version()!);
      const N = 78, T = 84; // 'N', 'T'
      library = {
        path,
        version: `${v.getInt32(0)}.${v.getInt32(4)}.${v.getInt32(8)}`,
        sgemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc) {
          if (m === 0 || n === 0) return;
          const B = BigInt;
          const st = s.dnnl_sgemm(
            transA ? T : N,
            transB ? T : N,
            B(m),
            B(n),
            B(k),
            alpha,
            a,
            B(lda),
            b,
            B(ldb),
            beta,
            c,
            B(ldc),
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

let cached: Dnnl | null | undefined;

/** Why `openDnnl()` or `loadDnnl()` returned null. */
export function dnnlFailure(): string {
  return why;
}

/**
 * The convolution and pooling binding: needs oneDNN 2.x (3.0 changed the primitive-descriptor
 * API); null when libdnnl is absent, another major version, or FFI is not allowed.
 */
export function loadDnnl(): Dnnl | null {
  if (cached !== undefined) return cached;
  cached = null;
  const found = openDnnl();
  if (!found) return null;
  if (!found.version.startsWith("2.")) {
    why = `oneDNN ${found.version} is not 2.x (its convolution API)`;
    return null;
  }
  try {
    cached = new Dnnl(Deno.dlopen(found.path, SYMBOLS).symbols);
  } catch (e) {
    why = `${found.path}: ${(e as Error).message.split("\n")[0]}`;
  }
  return cached;
}

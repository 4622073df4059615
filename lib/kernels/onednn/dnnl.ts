/**
 * oneDNN (libdnnl 2.x, the library PyTorch's CPU convolutions run on) through Deno FFI:
 * direct JIT convolutions on NHWC data, forward, backward-data and backward-weights; float32
 * Winograd for the 3×3 convolutions it suits and mixed_bfloat16, both on oneDNN's blocked
 * layouts (BlockedConvPrims).
 *
 * Optional like OpenBLAS: `loadDnnl()` returns null when the library is missing or is not
 * 2.x (its C API changed in 3.0), and conv.ts then uses im2col + GEMM. `openDnnl()` is in
 * dnnl_load.ts, the one loader of libdnnl (any version; blas.ts takes its sgemm from there).
 * Outputs (every element written by oneDNN) come from the recycling allocator.
 *
 * This module: the engine and stream, the per-geometry primitive caches, pooling, and the 2.x
 * binding (`loadDnnl`); the primitives themselves are built in the other onednn/ modules
 * (lib/README.md maps them).
 */
import { alloc } from "../pool_alloc.ts";
import { envVar } from "../../machine/env.ts";
import { AdamPrims } from "./adam_dnnl.ts";
import {
  ARG_DIFF_DST,
  ARG_DIFF_SRC,
  ARG_DST,
  ARG_SRC,
  ARG_WORKSPACE,
  check,
  CPU,
  dims,
  f32,
  FWD_TRAINING,
  type Lib,
  type MakePrim,
  md,
  offHeap,
  OP_BYTES,
  POOL_MAX,
  type Prim,
  primitiveDesc,
  type Ptr,
  ptrOf,
  ptrOut,
  Q_WORKSPACE,
  type Run,
  SLOT,
  stable,
  SYMBOLS,
} from "./dnnl_ffi.ts";
import {
  BF16_DIRECT,
  BlockedConvPrims,
  type BlockedMode,
  ConvPrims,
  type DnnlGeom,
  F32_WINOGRAD,
  type HeldCopy,
  winogradConv,
} from "./dnnl_conv.ts";
import { Bf16Gemm } from "./gemm_bf16.ts";
import { binaryPrim, type Broadcast, ReluPrims } from "./binary_dnnl.ts";
import { BatchNormPrims } from "./batchnorm_dnnl.ts";
import { noteDnnlFailure, openDnnl } from "./dnnl_load.ts";

export type { DnnlGeom };

/** The key of one geometry's convolution primitives in the caches. */
function primsKey(g: DnnlGeom, bias: boolean, relu: boolean): string {
  return JSON.stringify([g, bias, relu]);
}

/** The oneDNN engine, stream and per-geometry primitives. */
export class Dnnl {
  readonly version: string;
  private engine: Ptr;
  private stream: Ptr;
  private cache = new Map<string, ConvPrims>();
  private bf16Cache = new Map<string, BlockedConvPrims>();
  private winoCache = new Map<string, BlockedConvPrims>();

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

  /** `primitive` and `run` as the builders in the other files take them. */
  private make: MakePrim = (pd, ids, mds) => this.primitive(pd, ids, mds);
  private runner: Run = (p, a) => this.run(p, a);

  /** The primitives cached under `key`, made once; null (kept) where oneDNN cannot make them. */
  private once<K, T>(cache: Map<K, T | null>, key: K, make: () => T): T | null {
    let v = cache.get(key);
    if (v === undefined) {
      try {
        v = make();
      } catch {
        v = null;
      }
      cache.set(key, v);
    }
    return v;
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
   * layouts (see BlockedConvPrims). Set by `setConvBf16`.
   */
  bf16 = false;

  /**
   * On blocked layouts (bf16, or float32 Winograd), whether a convolution that reads the tensor
   * the previous one has just written (VGG's conv → conv in a block: the next forward's x;
   * backwards, the previous convolution's dy when no activation sits between) takes that one's
   * blocked copy instead of converting the float32 tensor again. The same bits either way (a
   * relayout is exact, and a bf16 value converts to float32 and back exactly); off only to
   * test that.
   */
  chainBlocked = true;
  /** How many blocked inputs were taken that way (for tests and profiling). */
  chained = 0;

  /**
   * The newest blocked result: the float32 array handed back, the tfjs tensor (dataId) it became
   * once the kernel says so (`tagOutput`), and the blocked copy. Any later blocked forward or input
   * gradient replaces it, so the copy it names is never one that has since been overwritten;
   * the dataId (one per tensor, its data immutable) makes sure it is taken only for that data.
   */
  private last: { values: Float32Array; id: object | null; held: HeldCopy | null } | null = null;

  /** Says which tensor the array the last blocked convolution returned became (see `last`). */
  tagOutput(values: Float32Array, id: object): void {
    if (this.last?.values === values && this.last.id === null) this.last.id = id;
  }

  /** The held blocked copy of tensor `id`, if the newest result is that tensor; clears `last`. */
  private takeLast(id: object | null): HeldCopy | null {
    const l = this.last;
    this.last = null;
    return this.chainBlocked && id !== null && l?.id === id ? l.held : null;
  }

  /** The primitives of one geometry (fp32 NHWC, or blocked in `mode`), made once and kept. */
  private prims(g: DnnlGeom, bias: boolean, relu?: boolean): ConvPrims;
  private prims(
    g: DnnlGeom,
    bias: boolean,
    relu: boolean,
    blocked: { cache: Map<string, BlockedConvPrims>; mode: BlockedMode },
  ): BlockedConvPrims;
  private prims(
    g: DnnlGeom,
    bias: boolean,
    relu = false,
    blocked?: { cache: Map<string, BlockedConvPrims>; mode: BlockedMode },
  ): ConvPrims | BlockedConvPrims {
    const key = primsKey(g, bias, relu);
    const cache: Map<string, ConvPrims | BlockedConvPrims> = blocked?.cache ?? this.cache;
    let c = cache.get(key);
    if (!c) {
      const reorder = (a: Ptr, b: Ptr) => this.reorder(a, b);
      c = blocked
        ? new BlockedConvPrims(
          this.lib,
          g,
          bias,
          this.engine,
          this.make,
          reorder,
          relu,
          blocked.mode,
        )
        : new ConvPrims(this.lib, g, bias, this.engine, this.make, reorder, relu);
      cache.set(key, c);
    }
    return c;
  }

  /**
   * Float32 convolutions that run as Winograd (see `winogradConv`); CPU_FAST_CONV_ALG=direct
   * keeps every one direct.
   */
  winograd = envVar("CPU_FAST_CONV_ALG") !== "direct";
  /** How many convolutions ran as Winograd (for tests and profiling). */
  winogradRuns = 0;

  /** Winograd primitives oneDNN could not make (by primsKey): those run direct. */
  private winoFailed = new Set<string>();

  /**
   * Runs `f` on geometry `g`'s blocked primitives: bf16 under mixed_bfloat16, Winograd for the
   * float32 3×3 convolutions it suits; undefined where `g` runs direct on NHWC (including a
   * Winograd convolution oneDNN declines to make, remembered).
   */
  private viaBlocked<T>(
    g: DnnlGeom,
    bias: boolean,
    relu: boolean,
    f: (p: BlockedConvPrims, cache: Map<string, BlockedConvPrims>) => T,
  ): T | undefined {
    if (this.bf16) {
      const blocked = { cache: this.bf16Cache, mode: BF16_DIRECT };
      return f(this.prims(g, bias, relu, blocked), blocked.cache);
    }
    const key = primsKey(g, bias, relu);
    if (!this.winograd || !winogradConv(g) || this.winoFailed.has(key)) return undefined;
    const blocked = { cache: this.winoCache, mode: F32_WINOGRAD };
    try {
      const r = f(this.prims(g, bias, relu, blocked), blocked.cache);
      this.winogradRuns++;
      return r;
    } catch {
      // not made (its backward primitives are made on first use): direct from now on
      this.winoFailed.add(key);
      this.winoCache.delete(key);
      return undefined;
    }
  }

  /**
   * y = conv(x, w) (+ bias) (then ReLU), NHWC/HWIO; returns the new output array. `xId` (the
   * tensor's dataId) lets the weight gradient reuse the blocked copy of x (see BlockedConvPrims).
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
    const run = this.runner;
    const done = this.viaBlocked(g, bias !== null, relu, (p) => {
      if (p.forward(run, x, w, bias, y, xId, this.takeLast(xId))) this.chained++;
      this.last = { values: y, id: null, held: p.heldY() };
      return y;
    });
    if (done) return done;
    this.last = null; // an output of the NHWC path has no blocked copy to take
    const c = this.prims(g, bias !== null, relu);
    const wk = c.fwdWeights(w, run);
    this.run(c.fwd, bias ? [stable(x), wk, stable(bias, SLOT.bias), y] : [stable(x), wk, y]);
    return y;
  }

  private bf16GemmOnce?: Bf16Gemm;

  /** Matrix products in bf16 with float32 accumulation (mixed_bfloat16's matmuls). */
  bf16Gemm(): Bf16Gemm {
    return this.bf16GemmOnce ??= new Bf16Gemm(
      this.lib,
      (a, b) => this.reorder(a, b),
      this.runner,
    );
  }

  /** Binary primitives per algorithm, shape and broadcast, made once. */
  private binaries = new Map<string, Prim>();

  /**
   * r = a ∘ b (`alg`: BINARY_ADD or BINARY_MUL) over a's `a.length / cols` rows of `cols`; b is
   * a's shape, one row of `cols`, or one value (see binary_dnnl.ts).
   */
  binary(
    alg: number,
    a: Float32Array,
    b: Float32Array,
    r: Float32Array,
    cols: number,
    broadcast: Broadcast,
  ): void {
    const rows = a.length / cols;
    const key = `${alg} ${rows} ${cols} ${broadcast}`;
    let p = this.binaries.get(key);
    if (!p) {
      p = binaryPrim(this.lib, this.engine, this.make, alg, rows, cols, broadcast);
      this.binaries.set(key, p);
    }
    this.run(p, [a, stable(b, SLOT.src1), r]);
  }

  /** ReLU and Step primitives per element count; null where oneDNN could not make them. */
  private relus = new Map<number, ReluPrims | null>();

  private reluPrims(n: number): ReluPrims | null {
    // null: the JS loops run
    return this.once(this.relus, n, () => new ReluPrims(this.lib, this.engine, this.make, n));
  }

  /** r = relu(x) with tfjs-cpu's results (see ReluPrims); false, nothing written, if it can't. */
  relu(x: Float32Array, r: Float32Array): boolean {
    const p = this.reluPrims(x.length);
    p?.reluInto(this.runner, x, r);
    return p !== null;
  }

  /** r = Step(x) with alpha 0 (ReLU's gradient mask); false, nothing written, if it can't. */
  step(x: Float32Array, r: Float32Array): boolean {
    const p = this.reluPrims(x.length);
    p?.stepInto(this.runner, x, r);
    return p !== null;
  }

  /** Batch-normalization primitives per shape and epsilon; null where oneDNN could not. */
  private bns = new Map<string, BatchNormPrims | null>();

  /**
   * Training-mode BatchNorm over the last axis of `shape` (see batchnorm_dnnl.ts): its forward
   * writes y and returns the batch's mean and biased variance, its backward dx, dgamma and
   * dbeta. null (e.g. a oneDNN before 2.3, without separate scale and shift): the JS loops run.
   */
  batchNorm(shape: number[], eps: number): BatchNormPrims | null {
    return this.once(
      this.bns,
      `${shape} ${eps}`,
      () => new BatchNormPrims(this.lib, this.engine, this.make, this.runner, shape, eps),
    );
  }

  /** Adam's primitives per weight size and β1/β2; null where oneDNN could not make them. */
  private adams = new Map<string, AdamPrims | null>();

  /**
   * One Adam step over a weight in place (see adam_dnnl.ts): m, v and w updated by three
   * multi-threaded passes; `alpha` and `epsilon` are this step's (bias corrections folded in).
   * Returns false, having changed nothing, where this oneDNN cannot build those primitives:
   * the caller then runs its own loop.
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
  ): boolean {
    // null (e.g. a build without these post-ops): adam.ts's JS loop does the step
    const a = this.once(
      this.adams,
      `${g.length} ${b1} ${b2}`,
      () => new AdamPrims(this.lib, this.engine, this.make, g.length, b1, b2),
    );
    if (a === null) return false;
    a.update(this.runner, w, m, v, g, alpha, epsilon);
    return true;
  }

  /** The blocked copy of tensor `xId` a forward primitive of this geometry still holds, if any. */
  private heldX(
    cache: Map<string, BlockedConvPrims>,
    g: DnnlGeom,
    xId: object | null,
  ): { buf: Float32Array; md: Ptr } | null {
    if (xId === null) return null;
    for (const bias of [true, false]) {
      for (const relu of [false, true]) {
        const p = cache.get(primsKey(g, bias, relu));
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
      p = new PoolPrims(this.lib, g, this.engine, this.make);
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
    this.run(p.bwd(), [stable(dy, SLOT.diffDst), p.ws, dx]);
    return dx;
  }

  /** dx for dy, NHWC (`dyId`: dy's dataId, for the weight gradient's reuse of its blocked copy). */
  backwardData(
    g: DnnlGeom,
    dy: Float32Array,
    w: Float32Array,
    dyId: object | null = null,
  ): Float32Array {
    const dx = alloc(g.batch * g.inH * g.inW * g.inC);
    const run = this.runner;
    const done = this.viaBlocked(g, false, false, (p) => {
      if (p.backwardData(run, dy, w, dx, dyId, this.takeLast(dyId))) this.chained++;
      this.last = { values: dx, id: null, held: p.heldDx() };
      return dx;
    });
    if (done) return done;
    this.last = null;
    const c = this.prims(g, false);
    const wk = c.bwdDataWeights(w, run);
    this.run(c.bwdData(), [dx, wk, stable(dy, SLOT.diffDst)]);
    return dx;
  }

  /** dW (HWIO) for x and dy (`xId`, `dyId`: their dataIds, to reuse their blocked copies). */
  backwardWeights(
    g: DnnlGeom,
    x: Float32Array,
    dy: Float32Array,
    xId: object | null = null,
    dyId: object | null = null,
  ): Float32Array {
    const dw = alloc(g.fh * g.fw * g.inC * g.outC);
    const done = this.viaBlocked(g, false, false, (p, cache) => {
      p.backwardWeights(this.runner, x, dy, dw, dyId, this.heldX(cache, g, xId));
      return dw;
    });
    if (done) return done;
    const c = this.prims(g, false);
    const b = c.bwdWeights();
    const tmp = c.diffWeightsTmp();
    this.run(b.prim, [stable(x), tmp ?? dw, stable(dy, SLOT.diffDst)]);
    if (tmp) this.run(b.back!, [tmp, dw]);
    return dw;
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

let cached: Dnnl | null | undefined;

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
    noteDnnlFailure(`oneDNN ${found.version} is not 2.x (its convolution API)`);
    return null;
  }
  try {
    cached = new Dnnl(Deno.dlopen(found.path, SYMBOLS).symbols);
  } catch (e) {
    noteDnnlFailure(`${found.path}: ${(e as Error).message.split("\n")[0]}`);
  }
  return cached;
}

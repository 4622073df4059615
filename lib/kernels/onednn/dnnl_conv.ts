/**
 * The primitives of one convolution geometry on oneDNN: float32 direct on NHWC data
 * (ConvPrims), and mixed_bfloat16 or float32 Winograd on oneDNN's blocked layouts
 * (BlockedConvPrims). dnnl.ts makes them once per geometry and runs them.
 */
import {
  ARG_BIAS,
  ARG_DIFF_DST,
  ARG_DIFF_SRC,
  ARG_DIFF_WEIGHTS,
  ARG_DST,
  ARG_SRC,
  ARG_WEIGHTS,
  BF16,
  check,
  CONV_DIRECT,
  CONV_WINOGRAD,
  dims,
  F32,
  f32,
  FWD_TRAINING,
  type Lib,
  type MakePrim,
  md,
  MD_BYTES,
  offHeap,
  OP_BYTES,
  type Prim,
  primitiveDesc,
  type Ptr,
  Q_DIFF_DST,
  Q_DIFF_SRC,
  Q_DIFF_WEIGHTS,
  Q_DST,
  Q_SRC,
  Q_WEIGHTS,
  reluAttr,
  type Run,
  SLOT,
  stable,
} from "./dnnl_ffi.ts";

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

/** The primitives of one convolution geometry, created lazily and kept. */
export class ConvPrims {
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
    if (!how.reorder) return stable(w, SLOT.weights);
    run(how.reorder, [stable(w, SLOT.weights), how.buf]);
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
 * The blocked copy a primitive has just written of its result (a forward's y, an input gradient's
 * dx) before handing it back as float32: `stage.buf` in layout `md`. A convolution that reads
 * that same tensor next can take it instead of converting the float32 copy back (see `take`).
 */
export interface HeldCopy {
  stage: Stage;
  md: Ptr;
}

/**
 * Whether a float32 convolution runs as oneDNN's Winograd F(4×4, 3×3) (jit_wino_4x3): 3×3,
 * stride 1, at least 64 channels in and out in multiples of 16, an output of at least 4×4.
 * Measured alone (batch 100, Zen 5 EPYC), forward / input gradient / weight gradient against
 * the direct NHWC kernels: 64→64 at 32×32 9.9 / 8.4 / 13.3 ms vs 16.6 / 20.8 / 18.0; 256→256
 * at 8×8 6.9 / 6.6 / 7.6 vs 13.5 / 17.1 / 16.2; 512→512 at 4×4 7.2 / 7.6 / 8.7 vs 26.7 / 17.8 /
 * 16.0. Left direct: 3 input channels (Winograd 3× slower) and 2×2 maps (slower too). Winograd
 * rounds differently from a direct sum (transforms of inputs and weights): outputs differ from
 * tfjs-cpu's by ~3e-6 relative, as cuDNN's Winograd kernels do under Keras.
 */
export function winogradConv(g: DnnlGeom): boolean {
  return g.fh === 3 && g.fw === 3 && g.sh === 1 && g.sw === 1 && g.inC >= 64 &&
    g.outC >= 64 && g.inC % 16 === 0 && g.outC % 16 === 0 && g.outH >= 4 && g.outW >= 4;
}

/** What a BlockedConvPrims computes in: the data type of its copies and oneDNN's algorithm. */
export interface BlockedMode {
  type: number;
  alg: number;
}

/** mixed_bfloat16: bf16 copies, direct convolution (float32 accumulation). */
export const BF16_DIRECT: BlockedMode = { type: BF16, alg: CONV_DIRECT };
/** float32 copies, Winograd F(4×4, 3×3) (see `winogradConv`). */
export const F32_WINOGRAD: BlockedMode = { type: F32, alg: CONV_WINOGRAD };

/**
 * One convolution geometry on oneDNN's blocked layouts (e.g. nChw16c), with x, weights and dy
 * reordered in and y, dx and dW out (float32 NHWC / HWIO for tfjs), in one of two modes:
 *
 * - mixed_bfloat16 (BF16_DIRECT), run as PyTorch's autocast runs it on the same oneDNN: the
 *   copies rounded to bf16, float32 accumulation, y, dx and the weight gradient written in bf16
 *   (as Keras's policy computes the gradient of its bf16 kernel copy). On plain NHWC bf16 data
 *   oneDNN 2.6 picks slower kernels: its weight gradient measured 8× slower than float32's on a
 *   Zen 5 EPYC, hence the blocked layouts.
 * - float32 Winograd (F32_WINOGRAD), which oneDNN runs on blocked layouts only.
 *
 * Reorders do the rounding and the relayout in one pass.
 */
export class BlockedConvPrims {
  private u: UserMds;
  private params: [BigInt64Array, BigInt64Array, BigInt64Array];
  private fwdPd: Ptr;
  private fwd: { prim: Prim; x: Stage; w: Stage; y: Stage; xMd: Ptr; yMd: Ptr };
  private bd?: { prim: Prim; dy: Stage; w: Stage; dx: Stage; dyMd: Ptr; dxMd: Ptr };
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
   * The tensors (tfjs dataIds: one per tensor, never reused, its data immutable) whose blocked
   * copies the forward's x stage and the input gradient's dy stage hold now. The weight
   * gradient that follows uses those copies instead of converting the same data again.
   */
  private xHeld: object | null = null;
  private dyHeld: object | null = null;
  private bias: Float32Array;

  constructor(
    private lib: Lib,
    private g: DnnlGeom,
    bias: boolean,
    private engine: Ptr,
    private make: MakePrim,
    private reorder: (a: Ptr, b: Ptr) => Prim,
    /** A ReLU post-op on the forward's output (see reluAttr). */
    relu = false,
    private mode: BlockedMode = BF16_DIRECT,
  ) {
    this.bias = f32(bias ? g.outC : 0);
    this.u = userMds(lib, g, bias);
    this.params = convParams(g);
    const op = new Uint8Array(offHeap(OP_BYTES));
    check(
      lib.dnnl_convolution_forward_desc_init(
        op,
        FWD_TRAINING,
        mode.alg,
        this.any(this.srcDims()),
        this.any(this.wDims()),
        this.u.bias ?? new Uint8Array(offHeap(MD_BYTES)),
        this.any(this.dstDims()),
        ...this.params,
      ),
      "blocked conv fwd desc",
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
      xMd: q(Q_SRC),
      yMd: q(Q_DST),
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
  private any(d: number[]): Uint8Array {
    return md(this.lib, d, null, this.mode.type);
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

  /**
   * Stage `s`'s input from `from`, a blocked copy of the same tensor another primitive (or this
   * one) has just written, when it is in the layout `md` this primitive reads: the two stages
   * swap buffers (same layout, same size), so each buffer stays owned by one stage and the
   * next write to either cannot clobber the other. False (nothing changed) otherwise.
   */
  private take(s: Stage, from: HeldCopy | null, md: Ptr): boolean {
    if (!from || this.lib.dnnl_memory_desc_equal(from.md, md) !== 1) return false;
    [s.buf, from.stage.buf] = [from.stage.buf, s.buf];
    return true;
  }

  /** The blocked copy of the last forward's y (valid until this geometry's next forward). */
  heldY(): HeldCopy {
    return { stage: this.fwd.y, md: this.fwd.yMd };
  }

  /** The blocked copy of the last input gradient's dx (valid until its next input gradient). */
  heldDx(): HeldCopy | null {
    return this.bd ? { stage: this.bd.dx, md: this.bd.dxMd } : null;
  }

  forward(
    run: Run,
    x: Float32Array,
    w: Float32Array,
    bias: Float32Array | null,
    y: Float32Array,
    xId: object | null = null,
    /** The blocked copy of x a directly connected convolution has just written, if it has. */
    from: HeldCopy | null = null,
  ): boolean {
    const f = this.fwd;
    const took = this.take(f.x, from, f.xMd);
    const xs = took ? f.x.buf : BlockedConvPrims.into(f.x, x, run, SLOT.src);
    this.xHeld = xId;
    const ws = BlockedConvPrims.into(f.w, w, run, SLOT.weights);
    if (bias) this.bias.set(bias); // into a 64-byte-aligned buffer (see f32)
    run(f.prim, bias ? [xs, ws, this.bias, f.y.buf] : [xs, ws, f.y.buf]);
    run(f.y.prim, [f.y.buf, y]);
    return took;
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
    /** The blocked copy of dy the next convolution's input gradient has just written, if it has. */
    from: HeldCopy | null = null,
  ): boolean {
    if (!this.bd) {
      const { prim, q } = this.backward(
        (op) =>
          this.lib.dnnl_convolution_backward_data_desc_init(
            op,
            this.mode.alg,
            this.any(this.srcDims()),
            this.any(this.wDims()),
            this.any(this.dstDims()),
            ...this.params,
          ),
        "blocked conv bwd data desc",
        [[ARG_DIFF_SRC, Q_DIFF_SRC], [ARG_WEIGHTS, Q_WEIGHTS], [ARG_DIFF_DST, Q_DIFF_DST]],
      );
      this.bd = {
        prim,
        dy: this.stage(this.p(this.u.dst), q(Q_DIFF_DST), q(Q_DIFF_DST)),
        w: this.stage(this.p(this.u.w), q(Q_WEIGHTS), q(Q_WEIGHTS)),
        dx: this.stage(q(Q_DIFF_SRC), this.p(this.u.src), q(Q_DIFF_SRC)),
        dyMd: q(Q_DIFF_DST),
        dxMd: q(Q_DIFF_SRC),
      };
    }
    const b = this.bd;
    const took = this.take(b.dy, from, b.dyMd);
    const dys = took ? b.dy.buf : BlockedConvPrims.into(b.dy, dy, run, SLOT.diffDst);
    this.dyHeld = dyId;
    const ws = BlockedConvPrims.into(b.w, w, run, SLOT.weights);
    run(b.prim, [b.dx.buf, ws, dys]);
    run(b.dx.prim, [b.dx.buf, dx]);
    return took;
  }

  /** The blocked copy of x the forward holds, when it holds tensor `xId` (see `xHeld`). */
  heldX(xId: object | null): Float32Array | null {
    return xId !== null && this.xHeld === xId ? this.fwd.x.buf : null;
  }

  /** The forward's x layout (to check that a held copy fits another primitive). */
  srcMd(): Ptr {
    return this.fwd.xMd;
  }

  /**
   * dW for x and dy; `heldX` is the forward's blocked copy of this x when it still holds it (from
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
            this.mode.alg,
            this.any(this.srcDims()),
            this.any(this.wDims()),
            new Uint8Array(offHeap(MD_BYTES)),
            this.any(this.dstDims()),
            ...this.params,
          ),
        "blocked conv bwd weights desc",
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
    const xs = heldX && same(heldX.md, b.xMd)
      ? heldX.buf
      : BlockedConvPrims.into(b.x, x, run, SLOT.src);
    const dys = dyId !== null && this.dyHeld === dyId && this.bd && same(this.bd.dyMd, b.dyMd)
      ? this.bd.dy.buf
      : BlockedConvPrims.into(b.dy, dy, run, SLOT.diffDst);
    this.dyHeld = null;
    run(b.prim, [xs, b.dw.buf, dys]);
    run(b.dw.prim, [b.dw.buf, dw]);
  }
}

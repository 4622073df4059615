/**
 * Training-mode batch normalization as oneDNN's batch-normalization primitives, forward
 * (statistics computed from the batch) and backward (dx, dgamma, dbeta): multi-threaded,
 * vectorised passes over channels-last data where batchnorm_layer.ts's JS loops run on one
 * core (~200 ms of a VGG16+BN step at batch 100 on a 2-core Zen 5, most of the cost BatchNorm
 * adds to a plain step). The math is batchnorm_layer.ts's: biased batch variance (what
 * tf.moments gives), y = beta + gamma·(x − mean)/sqrt(var + eps), and the textbook gradient
 * through the batch statistics; oneDNN accumulates in float32.
 */
import {
  ARG_DIFF_DST,
  ARG_DIFF_SCALE,
  ARG_DIFF_SHIFT,
  ARG_DIFF_SRC,
  ARG_DST,
  ARG_MEAN,
  ARG_SCALE,
  ARG_SHIFT,
  ARG_SRC,
  ARG_VARIANCE,
  BACKWARD,
  check,
  f32,
  FWD_TRAINING,
  type Lib,
  type MakePrim,
  md,
  offHeap,
  OP_BYTES,
  type Prim,
  primitiveDesc,
  type Ptr,
  type Run,
  SLOT,
  stable,
  USE_SCALE,
  USE_SHIFT,
} from "./dnnl_ffi.ts";

/** Separate per-channel gamma and beta (oneDNN ≥ 2.3). */
const SCALE_AND_SHIFT = USE_SCALE | USE_SHIFT;

/** The batch statistics a forward computed, which its backward reads. */
interface BatchStats {
  mean: Float32Array;
  variance: Float32Array;
}

/** `a`, or an off-heap array of its length for oneDNN to write when V8 might move `a`. */
function offHeapOut(a: Float32Array): Float32Array {
  return a.byteLength >= 256 ? a : f32(a.length);
}

/**
 * Forward and backward primitives for one shape ([..., C], channels last) and epsilon. Unlike
 * dnnl.ts's other primitive sets it gets its runner when made, because dnnl.ts hands it out:
 * batchnorm_layer.ts runs a forward and later its gradient on the same object.
 */
export class BatchNormPrims {
  private fwd: Prim;
  private bwd: Prim;
  // oneDNN reads the descriptors' bytes when it makes memories; kept with the primitives
  private mds: Uint8Array[];
  private gamma: Float32Array;
  private beta: Float32Array;

  constructor(
    lib: Lib,
    engine: Ptr,
    make: MakePrim,
    private run: Run,
    shape: number[],
    eps: number,
  ) {
    const c = shape[shape.length - 1];
    // a 4-D tensor as oneDNN's NHWC (its vectorised "nspc" kernels); any other rank as [rows, C]
    const data = shape.length === 4
      ? md(lib, [shape[0], c, shape[1], shape[2]], [shape[1] * shape[2] * c, 1, shape[2] * c, c])
      : md(lib, [shape.slice(0, -1).reduce((p, d) => p * d, 1), c], [c, 1]);
    const vec = md(lib, [c], [1]);
    this.mds = [data, vec];
    this.gamma = f32(c);
    this.beta = f32(c);
    const p = (m: Uint8Array) => Deno.UnsafePointer.of(m);

    const fd = new Uint8Array(offHeap(OP_BYTES));
    check(
      lib.dnnl_batch_normalization_forward_desc_init(fd, FWD_TRAINING, data, eps, SCALE_AND_SHIFT),
      "batch-norm forward desc",
    );
    const fpd = primitiveDesc(lib, engine, fd, null);
    this.fwd = make(
      fpd,
      [ARG_SRC, ARG_SCALE, ARG_SHIFT, ARG_DST, ARG_MEAN, ARG_VARIANCE],
      [p(data), p(vec), p(vec), p(data), p(vec), p(vec)],
    );

    const bd = new Uint8Array(offHeap(OP_BYTES));
    check(
      lib.dnnl_batch_normalization_backward_desc_init(
        bd,
        BACKWARD,
        data,
        data,
        eps,
        SCALE_AND_SHIFT,
      ),
      "batch-norm backward desc",
    );
    const bpd = primitiveDesc(lib, engine, bd, fpd);
    this.bwd = make(
      bpd,
      [
        ARG_SRC,
        ARG_MEAN,
        ARG_VARIANCE,
        ARG_DIFF_DST,
        ARG_SCALE,
        ARG_SHIFT, // not read, but oneDNN 2.x counts it among the backward's inputs
        ARG_DIFF_SRC,
        ARG_DIFF_SCALE,
        ARG_DIFF_SHIFT,
      ],
      [p(data), p(vec), p(vec), p(data), p(vec), p(vec), p(data), p(vec), p(vec)],
    );
  }

  /** y = beta + gamma·(x − mean)/sqrt(var + eps) with the batch's mean and variance. */
  forward(
    x: Float32Array,
    gamma: Float32Array,
    beta: Float32Array,
    y: Float32Array,
  ): BatchStats {
    const c = this.gamma.length;
    // per-channel vectors off V8's heap (a tensor's small array may move under FFI)
    this.gamma.set(gamma);
    this.beta.set(beta);
    const stats = { mean: f32(c), variance: f32(c) };
    const yOut = offHeapOut(y);
    this.run(this.fwd, [stable(x), this.gamma, this.beta, yOut, stats.mean, stats.variance]);
    if (yOut !== y) y.set(yOut);
    return stats;
  }

  /** dx, dgamma and dbeta for upstream gradient dy, given the forward's x, gamma and stats. */
  backward(
    x: Float32Array,
    stats: BatchStats,
    dy: Float32Array,
    gamma: Float32Array,
    dx: Float32Array,
  ): { dgamma: Float32Array; dbeta: Float32Array } {
    const c = this.gamma.length;
    this.gamma.set(gamma);
    const dgamma = f32(c), dbeta = f32(c);
    const dxOut = offHeapOut(dx);
    this.run(this.bwd, [
      stable(x),
      stats.mean,
      stats.variance,
      stable(dy, SLOT.diffDst),
      this.gamma,
      this.beta,
      dxOut,
      dgamma,
      dbeta,
    ]);
    if (dxOut !== dx) dx.set(dxOut);
    return { dgamma, dbeta };
  }
}

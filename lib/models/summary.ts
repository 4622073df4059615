/**
 * Keras-style model summaries as tables: layer, type, output shape, parameters; and a base's
 * stages with their spatial size, read from the model's static shapes.
 */
import type * as tf from "@tensorflow/tfjs";
import pl from "nodejs-polars";

type Shape = (number | null)[];

/** Keras prints the batch axis as None; multi-output layers list their first output. */
function shapeText(shape: Shape | Shape[]): string {
  const s = (Array.isArray(shape[0]) ? shape[0] : shape) as Shape;
  return "(" + s.map((d) => (d === null ? "None" : String(d))).join(", ") + ")";
}

/** One row per layer, as Keras's `model.summary()` prints it (shapes with None for the batch). */
export function summaryFrame(model: tf.LayersModel): pl.DataFrame {
  const layers = model.layers;
  return pl.DataFrame([
    pl.Series("layer", layers.map((l) => l.name)),
    pl.Series("type", layers.map((l) => l.getClassName())),
    pl.Series("output shape", layers.map((l) => shapeText(l.outputShape))),
    pl.Series("params", layers.map((l) => l.countParams()), pl.Int64),
  ]);
}

/** Total, trainable and non-trainable parameter counts, as Keras's summary footer. */
function paramCounts(
  model: tf.LayersModel,
): { total: number; trainable: number; nonTrainable: number } {
  const count = (ws: tf.LayerVariable[]) =>
    ws.reduce((s, w) => s + w.shape.reduce((a: number, b) => a * (b ?? 1), 1), 0);
  const trainable = count(model.trainableWeights);
  const nonTrainable = count(model.nonTrainableWeights);
  return { total: trainable + nonTrainable, trainable, nonTrainable };
}

/** The footer line: "Total params: 1,407,178 (trainable 1,407,178, non-trainable 0)". */
export function paramLine(model: tf.LayersModel): string {
  const p = paramCounts(model);
  const f = (n: number) => n.toLocaleString("en-US");
  return `Total params: ${f(p.total)} (trainable ${f(p.trainable)}, non-trainable ${
    f(p.nonTrainable)
  })`;
}

/**
 * Spatial size through a base: for each named stage (layers whose name starts with a prefix), the
 * output shape of its last layer and how many layers run at that size. Read from the model's
 * static shapes; nothing runs.
 */
export function stageShapes(model: tf.LayersModel, prefixes: string[]): pl.DataFrame {
  const rows = prefixes.map((p) => {
    const layers = model.layers.filter((l) => l.name.startsWith(p));
    const weighted = layers.filter((l) => l.countParams() > 0);
    const last = layers[layers.length - 1];
    const shape = (last?.outputShape ?? []) as (number | null)[];
    const first = layers[0]?.input;
    const inShape = (Array.isArray(first) ? first[0] : first)?.shape ?? [];
    return {
      stage: p,
      layers: layers.length,
      convolutions: weighted.filter((l) => l.getClassName() === "Conv2D").length,
      in: inShape.slice(1, 3).join("×"),
      out: shape.slice(1, 3).join("×"),
      channels: shape[3] ?? 0,
      parameters: weighted.reduce((s, l) => s + l.countParams(), 0),
    };
  });
  const col = <K extends keyof (typeof rows)[number]>(k: K) => rows.map((r) => r[k]);
  return pl.DataFrame([
    pl.Series("stage", col("stage"), pl.Utf8),
    pl.Series("layers", col("layers"), pl.Int32),
    pl.Series("convolutions", col("convolutions"), pl.Int32),
    pl.Series("spatial in", col("in"), pl.Utf8),
    pl.Series("spatial out", col("out"), pl.Utf8),
    pl.Series("channels", col("channels"), pl.Int32),
    pl.Series("parameters", col("parameters"), pl.Int64),
  ]);
}

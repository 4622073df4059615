/**
 * Reads Keras HDF5 weight files (the legacy `save_weights` layout) with h5wasm.
 *
 * Layout (keras `legacy_h5_format.py`): the root attribute `layer_names` lists every layer (split into
 * `layer_names0`, `layer_names1`, … when it outgrows an object header); each layer has a group of the
 * same name whose attribute `weight_names` lists its weights in Keras order, and each weight is the
 * dataset `group[weight_name]`. Old files name weights `block1_conv1_W_1:0` (dataset directly in the
 * group); TF2-era files name them `conv1_conv/kernel:0`, which h5py stores in a nested group.
 *
 * h5wasm's ESM build (what `import h5wasm from "h5wasm"` resolves to in Deno) keeps files in an
 * in-memory Emscripten FS, so the bytes are copied in, read, and unlinked on close. That serves both
 * paths and bytes the same way and needs no Node-only raw FS.
 */
import h5wasm from "h5wasm";

/** One weight tensor as stored in the file. */
export interface H5Weight {
  /** The stored weight name, e.g. `conv1_conv/kernel:0` or `block1_conv1_W_1:0`. */
  name: string;
  shape: number[];
  data: Float32Array;
}

/** A layer's entry in the file, without reading its data. */
export interface H5LayerInfo {
  name: string;
  weightNames: string[];
  shapes: number[][];
}

/** Thrown when a file is not a readable Keras HDF5 weight file (not HDF5, truncated, malformed). */
export class H5FormatError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "H5FormatError";
  }
}

// h5wasm's module exposes FS only after `ready`; typed loosely because its d.ts types FS as a union.
interface MemFs {
  writeFile(path: string, data: Uint8Array, opts?: { canOwn?: boolean }): void;
  readFile(path: string): Uint8Array<ArrayBuffer>;
  unlink(path: string): void;
}

let fsPromise: Promise<MemFs> | undefined;

/** The h5wasm module's in-memory file system, once the wasm module is ready. */
export function h5Fs(): Promise<MemFs> {
  fsPromise ??= h5wasm.ready.then((m) => (m as unknown as { FS: MemFs }).FS);
  return fsPromise;
}

let fileCounter = 0;

/** A fresh path in h5wasm's in-memory FS, so concurrent opens never collide. */
export function memPath(label = "file"): string {
  return `/keras_${Date.now()}_${fileCounter++}_${label.replace(/[^\w.-]/g, "_")}.h5`;
}

const SIGNATURE = [0x89, 0x48, 0x44, 0x46, 0x0d, 0x0a, 0x1a, 0x0a];

/**
 * Checks the HDF5 signature and that the file is as long as its superblock's end-of-file address,
 * so a non-HDF5 or truncated file gets a clear message instead of an HDF5 library trace.
 */
function checkHdf5Bytes(bytes: Uint8Array, label: string): void {
  // The superblock sits at 0, 512, 1024, … (a user block may precede it).
  let base = -1;
  for (let at = 0; at + 8 <= bytes.length; at = at === 0 ? 512 : at * 2) {
    if (SIGNATURE.every((b, i) => bytes[at + i] === b)) {
      base = at;
      break;
    }
  }
  if (base < 0) throw new H5FormatError(`${label} is not an HDF5 file (no HDF5 signature)`);
  const version = bytes[base + 8];
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let offsetSize: number, eofAt: number;
  if (version === 0 || version === 1) {
    offsetSize = bytes[base + 13];
    // signature 8, versions/sizes 8, group K 4, flags 4, (v1: indexed K 2 + reserved 2), base, free-space
    eofAt = base + 24 + (version === 1 ? 4 : 0) + 2 * offsetSize;
  } else if (version === 2 || version === 3) {
    offsetSize = bytes[base + 9];
    eofAt = base + 12 + 2 * offsetSize; // signature 8, version/sizes/flags 4, base, extension
  } else {
    return; // unknown superblock version: let the library judge
  }
  if (offsetSize !== 8 || eofAt + 8 > bytes.length) {
    if (eofAt + 8 > bytes.length) {
      throw new H5FormatError(
        `${label} is truncated: ${bytes.length} bytes, too short for its header`,
      );
    }
    return;
  }
  const eof = Number(view.getBigUint64(eofAt, true)) + base;
  if (bytes.length < eof) {
    throw new H5FormatError(
      `${label} is truncated: it has ${bytes.length} bytes but its HDF5 superblock says ${eof}`,
    );
  }
}

type H5File = InstanceType<typeof h5wasm.File>;
type H5Group = InstanceType<typeof h5wasm.Group>;
type H5Dataset = InstanceType<typeof h5wasm.Dataset>;

/** Reads a list-of-strings attribute, also in its chunked form `name0`, `name1`, … (Keras splits long lists). */
function readStringList(obj: H5Group, name: string): string[] | undefined {
  const attrs = obj.attrs;
  if (name in attrs) return toStrings(attrs[name].value, name);
  if (!(`${name}0` in attrs)) return undefined;
  const out: string[] = [];
  for (let i = 0; `${name}${i}` in attrs; i++) {
    out.push(...toStrings(attrs[`${name}${i}`].value, name));
  }
  return out;
}

function toStrings(value: unknown, name: string): string[] {
  if (value === null || value === undefined) return []; // h5py writes [] as an empty (or null) attribute
  if (typeof value === "string") return [value];
  if (Array.isArray(value) && value.every((v) => typeof v === "string")) return value as string[];
  if (ArrayBuffer.isView(value) && (value as Uint8Array).length === 0) return []; // np.asarray([]) → float64[0]
  throw new H5FormatError(`attribute ${name} is not a list of strings`);
}

/** An open Keras weight file; call `close()` when done (it frees the in-memory copy). */
export class KerasH5File {
  /** Layer names in the file's order (Keras's `model.layers` order when it was saved). */
  readonly layerNames: string[];
  /** Root attributes Keras may set (`keras_version`, `backend`); absent in the VGG16 file. */
  readonly kerasVersion?: string;
  readonly backend?: string;
  #file: H5File | undefined;
  #path: string;
  #label: string;
  #fs: MemFs;

  constructor(file: H5File, fs: MemFs, path: string, label: string) {
    this.#file = file;
    this.#fs = fs;
    this.#path = path;
    this.#label = label;
    const names = readStringList(file, "layer_names");
    if (names === undefined) {
      throw new H5FormatError(`${label} has no layer_names attribute: not a Keras weight file`);
    }
    this.layerNames = names;
    const version = readStringList(file, "keras_version");
    if (version?.length) this.kerasVersion = version[0];
    const backend = readStringList(file, "backend");
    if (backend?.length) this.backend = backend[0];
  }

  #open(): H5File {
    if (!this.#file) throw new Error(`${this.#label} is closed`);
    return this.#file;
  }

  #group(layer: string): H5Group {
    const g = this.#open().get(layer);
    if (!(g instanceof h5wasm.Group)) {
      throw new H5FormatError(`${this.#label} lists layer "${layer}" but has no group for it`);
    }
    return g;
  }

  #dataset(layer: string, group: H5Group, weight: string): H5Dataset {
    const d = group.get(weight);
    if (!(d instanceof h5wasm.Dataset)) {
      throw new H5FormatError(`${this.#label}: layer "${layer}" has no dataset "${weight}"`);
    }
    return d;
  }

  /** Weight names and shapes of one layer, read from metadata only. */
  info(layer: string): H5LayerInfo {
    const group = this.#group(layer);
    const weightNames = readStringList(group, "weight_names") ?? [];
    const shapes = weightNames.map((w) => [...(this.#dataset(layer, group, w).shape ?? [])]);
    return { name: layer, weightNames, shapes };
  }

  /** All layers' metadata, in file order. */
  infos(): H5LayerInfo[] {
    return this.layerNames.map((l) => this.info(l));
  }

  /** Reads one layer's weights in the file's (Keras's) order, as float32. */
  read(layer: string): H5Weight[] {
    const group = this.#group(layer);
    const weightNames = readStringList(group, "weight_names") ?? [];
    return weightNames.map((name) => {
      const d = this.#dataset(layer, group, name);
      const shape = [...(d.shape ?? [])];
      const value = d.value;
      let data: Float32Array;
      if (value instanceof Float32Array) data = value;
      else if (value instanceof Float64Array) data = Float32Array.from(value);
      else {
        throw new H5FormatError(
          `${this.#label}: ${layer}/${name} has dtype ${String(d.dtype)}, expected float32`,
        );
      }
      const size = shape.reduce((a, b) => a * b, 1);
      if (data.length !== size) {
        throw new H5FormatError(
          `${this.#label}: ${layer}/${name} holds ${data.length} values, shape says ${size}`,
        );
      }
      return { name, shape, data };
    });
  }

  /** Closes the file and removes its in-memory copy. */
  close(): void {
    if (!this.#file) return;
    this.#file.close();
    this.#file = undefined;
    try {
      this.#fs.unlink(this.#path);
    } catch { /* already gone */ }
  }
}

/**
 * Opens a Keras weight file from a path or its bytes. The whole file is copied into h5wasm's
 * in-memory FS (234 MB for ResNet152V2): simple, and the copy is freed by `close()`.
 */
export async function openKerasH5(src: string | Uint8Array, label?: string): Promise<KerasH5File> {
  const name = label ?? (typeof src === "string" ? src : "weight bytes");
  const bytes = typeof src === "string" ? await Deno.readFile(src) : src;
  checkHdf5Bytes(bytes, name);
  const fs = await h5Fs();
  const path = memPath(typeof src === "string" ? src.split("/").pop() : "bytes");
  // canOwn only for bytes we read ourselves: the caller's array must not be taken over.
  fs.writeFile(path, bytes, { canOwn: typeof src === "string" });
  let file: H5File | undefined;
  try {
    file = new h5wasm.File(path, "r");
    if (file.file_id < 0n) throw new H5FormatError(`${name} could not be opened as HDF5`);
    return new KerasH5File(file, fs, path, name);
  } catch (e) {
    if (file && file.file_id >= 0n) file.close();
    try {
      fs.unlink(path);
    } catch { /* not created */ }
    if (e instanceof H5FormatError) throw e;
    throw new H5FormatError(`${name} could not be read as HDF5 (${(e as Error).message ?? e})`);
  }
}

/** Runs `fn` on an open weight file and always closes it. */
export async function withKerasH5<T>(
  src: string | Uint8Array,
  fn: (file: KerasH5File) => T | Promise<T>,
  label?: string,
): Promise<T> {
  const file = await openKerasH5(src, label);
  try {
    return await fn(file);
  } finally {
    file.close();
  }
}

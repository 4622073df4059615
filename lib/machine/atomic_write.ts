/**
 * Atomic writes, one way for the whole project: a file or a folder is written under a temporary
 * name beside its target and renamed into place only once complete, so a reader — or the next
 * start after a process was killed mid-write — sees the old content or the new, never half of it.
 *
 * The temporary name is `.tmp-<target's name>-<pid>-<random>`, in the target's own folder:
 * - the same folder, so the rename stays on one file system (a rename across two is a copy);
 * - a leading dot, so listings that skip dot-names (run records, finder records) skip it;
 * - a tail after the name, so readers that pick files by their ending (`*.backup`, `*.features`,
 *   `*.lock`) skip it too;
 * - the process id says whose it is, the random part keeps two writers in one process apart.
 *
 * On a failure the temporary file or folder is removed and the error rethrown unchanged, so each
 * caller's own messages (a full disk, no permission) stay the caller's.
 */
import { basename, dirname, join } from "node:path";

/** How every temporary name starts. */
export const TEMP_PREFIX = ".tmp-";

/** A fresh temporary path for `target`, beside it: `<folder>/.tmp-<name>-<pid>-<random>`. */
export function tempPathFor(target: string): string {
  const random = crypto.randomUUID().slice(0, 8);
  return join(dirname(target), `${TEMP_PREFIX}${basename(target)}-${Deno.pid}-${random}`);
}

/** Whether `name` (a folder entry's name) is a temporary of `target`, made by `tempPathFor`. */
export function isTempOf(name: string, target: string): boolean {
  const prefix = `${TEMP_PREFIX}${basename(target)}-`;
  return name.startsWith(prefix) && /^\d+-[0-9a-f]{8}$/.test(name.slice(prefix.length));
}

/** Writes `data` to `path` atomically (its folder is created if missing). */
export function writeFileAtomic(path: string, data: string | Uint8Array): Promise<void>;
/**
 * Lets `write` fill a temporary file (the path it is given; `write` creates it), then renames it
 * to `path`; `write`'s result is returned. Throwing from `write` — a failed check, say — leaves
 * `path` as it was. `write` must have closed the file when it returns.
 */
export function writeFileAtomic<T>(
  path: string,
  write: (tmpPath: string) => Promise<T>,
): Promise<T>;
export async function writeFileAtomic<T>(
  path: string,
  data: string | Uint8Array | ((tmpPath: string) => Promise<T>),
): Promise<T | void> {
  await Deno.mkdir(dirname(path), { recursive: true });
  const tmp = tempPathFor(path);
  try {
    let result: T | undefined;
    if (typeof data === "string") await Deno.writeTextFile(tmp, data, { createNew: true });
    else if (data instanceof Uint8Array) await Deno.writeFile(tmp, data, { createNew: true });
    else result = await data(tmp);
    // A rename over an existing file replaces it in one step.
    await Deno.rename(tmp, path);
    return result;
  } catch (e) {
    await Deno.remove(tmp).catch(() => {});
    throw e;
  }
}

/** Options of `writeDirAtomic`. */
export interface WriteDirOptions {
  /** Replace a folder already at the target (else the rename fails on a non-empty one). */
  replace?: boolean;
}

/**
 * Lets `fill` write a temporary folder (created, with any missing parents, before `fill` runs),
 * then renames it to `dir`; `fill`'s result is returned. An error creating the folder comes before
 * `fill` runs, so a caller can tell "the folder is unwritable" from "the writing failed".
 */
export async function writeDirAtomic<T>(
  dir: string,
  fill: (tmpDir: string) => Promise<T>,
  opts: WriteDirOptions = {},
): Promise<T> {
  const tmp = tempPathFor(dir);
  await Deno.mkdir(tmp, { recursive: true });
  try {
    const result = await fill(tmp);
    if (opts.replace) await renameOver(tmp, dir);
    else await Deno.rename(tmp, dir);
    return result;
  } catch (e) {
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
    throw e;
  }
}

/**
 * Renames folder `tmp` to `dir`, replacing a folder there: a folder cannot be renamed over a
 * non-empty one, so the old one is first renamed aside (to a temporary name, which readers skip)
 * and removed after — a reader finds the old folder, then briefly none, then the new, never a
 * half-removed one. If the last rename fails the old folder is put back.
 */
async function renameOver(tmp: string, dir: string): Promise<void> {
  let aside: string | null = tempPathFor(dir);
  try {
    await Deno.rename(dir, aside);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
    aside = null;
  }
  try {
    await Deno.rename(tmp, dir);
  } catch (e) {
    if (aside) await Deno.rename(aside, dir).catch(() => {});
    throw e;
  }
  if (aside) await Deno.remove(aside, { recursive: true }).catch(() => {});
}

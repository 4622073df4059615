import assert from "node:assert/strict";
import { basename, dirname, join } from "node:path";
import {
  isTempOf,
  TEMP_PREFIX,
  tempPathFor,
  writeDirAtomic,
  writeFileAtomic,
} from "../lib/machine/atomic_write.ts";

const names = (dir: string) => [...Deno.readDirSync(dir)].map((e) => e.name).sort();

async function inTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "atomic_write_" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("a temporary name sits beside its target, hidden, saying whose it is", () => {
  const target = "/runs/.backups/k1.backup";
  const tmp = tempPathFor(target);
  assert.equal(dirname(tmp), dirname(target), "same folder: the rename stays on one file system");
  assert.ok(basename(tmp).startsWith(`${TEMP_PREFIX}k1.backup-${Deno.pid}-`), tmp);
  assert.ok(!tmp.endsWith(".backup"), "readers picking `*.backup` skip it");
  assert.notEqual(tempPathFor(target), tmp, "two writers get two names");
  assert.ok(isTempOf(basename(tmp), target));
  assert.ok(!isTempOf("k1.backup", target), "the target is not its own temporary");
  assert.ok(!isTempOf(basename(tempPathFor("/runs/.backups/k2.backup")), target));
  assert.ok(!isTempOf(basename(tempPathFor("/runs/.backups/k1.backup-x")), target));
});

Deno.test("writeFileAtomic writes text and bytes, makes the folder, and replaces a file there", async () => {
  await inTempDir(async (dir) => {
    const path = join(dir, "sub", "probe.json");
    await writeFileAtomic(path, "first\n");
    assert.equal(await Deno.readTextFile(path), "first\n");
    await writeFileAtomic(path, new Uint8Array([1, 2, 3]));
    assert.deepEqual(await Deno.readFile(path), new Uint8Array([1, 2, 3]), "replaced");
    assert.deepEqual(names(join(dir, "sub")), ["probe.json"], "no temporary left");
  });
});

Deno.test("writeFileAtomic: the target is never seen half-written, and the writer's result comes back", async () => {
  await inTempDir(async (dir) => {
    const path = join(dir, "weights.h5");
    await Deno.writeTextFile(path, "old");
    const seen: string[] = [];
    const result = await writeFileAtomic(path, async (tmp) => {
      assert.equal(dirname(tmp), dir);
      using file = await Deno.open(tmp, { write: true, createNew: true });
      for (const part of ["new ", "in ", "parts"]) {
        await file.write(new TextEncoder().encode(part));
        seen.push(await Deno.readTextFile(path));
      }
      return 42;
    });
    assert.equal(result, 42);
    assert.deepEqual(seen, ["old", "old", "old"], "the old content until the rename");
    assert.equal(await Deno.readTextFile(path), "new in parts");
    assert.deepEqual(names(dir), ["weights.h5"]);
  });
});

Deno.test("writeFileAtomic: a failing writer leaves the target as it was, no temporary, and its error", async () => {
  await inTempDir(async (dir) => {
    const path = join(dir, "k1.backup");
    await Deno.writeTextFile(path, "previous");
    const full = new Error("No space left on device (os error 28)");
    await assert.rejects(
      writeFileAtomic(path, async (tmp) => {
        await Deno.writeTextFile(tmp, "half");
        throw full;
      }),
      (e) => e === full,
    );
    assert.equal(await Deno.readTextFile(path), "previous");
    assert.deepEqual(names(dir), ["k1.backup"]);

    // No earlier file: none afterwards either.
    await assert.rejects(
      writeFileAtomic(join(dir, "new.features"), () => Promise.reject(full)),
      (e) => e === full,
    );
    assert.deepEqual(names(dir), ["k1.backup"]);
  });
});

Deno.test("writeFileAtomic: a rename that fails (a folder in the way) removes the temporary", async () => {
  await inTempDir(async (dir) => {
    const path = join(dir, "taken");
    await Deno.mkdir(join(path, "inside"), { recursive: true });
    await assert.rejects(writeFileAtomic(path, "x"));
    assert.deepEqual(names(dir), ["taken"]);
  });
});

Deno.test("writeDirAtomic: the folder appears complete or not at all", async () => {
  await inTempDir(async (dir) => {
    const final = join(dir, "runs", "2026-01-01T00-00-00_tiny_cnn_quick_0001");
    const result = await writeDirAtomic(final, async (tmp) => {
      assert.equal(dirname(tmp), dirname(final));
      assert.ok(basename(tmp).startsWith(TEMP_PREFIX), "hidden from record listings");
      await Deno.writeTextFile(join(tmp, "config.json"), "{}");
      await assert.rejects(Deno.stat(final), Deno.errors.NotFound, "nothing there while writing");
      await Deno.writeTextFile(join(tmp, "metrics.json"), "{}");
      return "done";
    });
    assert.equal(result, "done");
    assert.deepEqual(names(final), ["config.json", "metrics.json"]);
    assert.deepEqual(names(join(dir, "runs")), [basename(final)], "no temporary left");
  });
});

Deno.test("writeDirAtomic: a failing fill leaves no folder, no temporary, and its error", async () => {
  await inTempDir(async (dir) => {
    const final = join(dir, "record");
    const full = new Error("No space left on device (os error 28): writefile 'weights.bin'");
    let tmpSeen = "";
    await assert.rejects(
      writeDirAtomic(final, async (tmp) => {
        tmpSeen = tmp;
        await Deno.writeTextFile(join(tmp, "config.json"), "{}");
        throw full;
      }),
      (e) => e === full,
    );
    assert.ok(tmpSeen);
    assert.deepEqual(names(dir), []);
  });
});

Deno.test("writeDirAtomic: an unwritable place fails before the fill runs", async () => {
  await inTempDir(async (dir) => {
    await Deno.writeTextFile(join(dir, "file"), "");
    let filled = false;
    await assert.rejects(
      writeDirAtomic(join(dir, "file", "record"), () => Promise.resolve(void (filled = true))),
    );
    assert.equal(filled, false, "the caller can tell an unwritable root from a failed write");
    assert.deepEqual(names(dir), ["file"]);
  });
});

Deno.test("writeDirAtomic: an existing folder is replaced only when asked", async () => {
  await inTempDir(async (dir) => {
    const final = join(dir, "record");
    await Deno.mkdir(final);
    await Deno.writeTextFile(join(final, "old.json"), "old");
    const fill = (name: string) => async (tmp: string) => {
      await Deno.writeTextFile(join(tmp, name), name);
    };
    await assert.rejects(writeDirAtomic(final, fill("a.json")), "not replaced unasked");
    assert.deepEqual(names(final), ["old.json"]);
    assert.deepEqual(names(dir), ["record"], "the temporary is gone");

    await writeDirAtomic(final, fill("new.json"), { replace: true });
    assert.deepEqual(names(final), ["new.json"], "replaced as a whole");
    assert.deepEqual(names(dir), ["record"], "the old folder is gone, no temporary left");

    await writeDirAtomic(join(dir, "fresh"), fill("x.json"), { replace: true });
    assert.deepEqual(names(join(dir, "fresh")), ["x.json"], "replace with nothing there");
  });
});

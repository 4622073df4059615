/**
 * The per-key run lock: one holder at a time, a waiter that says so once and ends with the
 * holder's result, stale locks (a dead PID, a reused PID, a crash while writing) taken over by
 * exactly one process, another host's lock respected. The end-to-end cases with real processes
 * (two train commands, a holder killed with SIGKILL) are in tests/train_cli_test.ts.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  acquireRunLock,
  type LockOwner,
  lockPath,
  ownerAlive,
  ownerHere,
  processStart,
  readLock,
} from "../lib/runs/run_lock.ts";

async function withRoot(fn: (root: string) => Promise<void>): Promise<void> {
  const root = await Deno.makeTempDir({ prefix: "run_lock_test_" });
  try {
    await fn(root);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
}

/** The PID of a process that has ended (and been reaped). */
async function deadPid(): Promise<number> {
  const child = new Deno.Command("true").spawn();
  await child.status;
  return child.pid;
}

async function writeLock(path: string, owner: LockOwner | string): Promise<void> {
  await Deno.mkdir(join(path, ".."), { recursive: true });
  await Deno.writeTextFile(path, typeof owner === "string" ? owner : JSON.stringify(owner));
}

Deno.test("a lock is taken atomically with its owner; a second asker waits once and gets the holder's result", async () => {
  await withRoot(async (root) => {
    const path = lockPath(root, "k1");
    const lines: string[] = [];
    const first = await acquireRunLock(path, { describe: "run A", log: (l) => void lines.push(l) });
    assert.ok(first.lock);
    const held = await readLock(path);
    assert.ok(held && held !== "unreadable");
    assert.equal(held.pid, Deno.pid);
    assert.equal(held.describe, "run A");
    assert.equal(ownerAlive(held), true, "our own process is alive");

    let finished = false;
    const second = acquireRunLock(path, {
      describe: "run A",
      log: (l) => void lines.push(l),
      pollMs: 20,
      done: () => Promise.resolve(finished ? "the record" : null),
    });
    await new Promise((r) => setTimeout(r, 150));
    assert.equal(lines.length, 1, `one waiting line, not one per poll: ${lines}`);
    assert.match(lines[0], new RegExp(`waiting for run A: being trained by PID ${Deno.pid} on `));
    finished = true;
    await first.lock.release();
    assert.equal((await second).result, "the record");
    assert.equal(await readLock(path), null, "released");
  });
});

Deno.test("a lock whose process is gone is taken over with a line; one of many askers gets it", async () => {
  await withRoot(async (root) => {
    const path = lockPath(root, "k2");
    const pid = await deadPid();
    await writeLock(path, { ...ownerHere("run B"), pid, procStart: null });
    const lines: string[] = [];
    let stop = false;
    // Five askers at once: exactly one takes the stale lock, the others wait for it.
    const askers = Array.from({ length: 5 }, () =>
      acquireRunLock(path, {
        describe: "run B",
        log: (l) => void lines.push(l),
        pollMs: 20,
        done: () => Promise.resolve(stop ? "the record" : null),
      }));
    const first = await Promise.race(askers);
    assert.ok(first.lock);
    await new Promise((r) => setTimeout(r, 100));
    const takeovers = lines.filter((l) => l.startsWith("taking over run B"));
    assert.equal(takeovers.length, 1, lines.join("\n"));
    assert.match(takeovers[0], new RegExp(`PID ${pid} on .* is gone; resuming from its backup`));
    assert.equal(
      lines.filter((l) => l.startsWith("waiting for run B")).length,
      4,
      lines.join("\n"),
    );
    stop = true;
    await first.lock.release();
    const all = await Promise.all(askers);
    assert.equal(all.filter((r) => r.lock).length, 1, "one holder");
    assert.equal(all.filter((r) => r.result === "the record").length, 4, "four saw its result");
  });
});

Deno.test("a reused PID does not keep a lock alive; another host's lock is respected with its age", async () => {
  await withRoot(async (root) => {
    const here = ownerHere("run C");
    assert.equal(ownerAlive(here), true);
    if (processStart(Deno.pid) !== null) {
      // Same PID, another start time: the process that took the lock has ended.
      assert.equal(ownerAlive({ ...here, procStart: "1" }), false);
      assert.equal(ownerAlive({ ...here, bootId: "another-boot" }), false, "machine restarted");
    }
    const path = lockPath(root, "k3");
    const startedAt = new Date(Date.now() - 3 * 3600_000).toISOString();
    await writeLock(path, { ...here, host: "gpu-box-7", startedAt, pid: 4242 });
    assert.equal(ownerAlive({ ...here, host: "gpu-box-7" }), null, "cannot be checked from here");
    const lines: string[] = [];
    let polls = 0;
    const got = await acquireRunLock(path, {
      describe: "run C",
      log: (l) => void lines.push(l),
      pollMs: 10,
      done: () => Promise.resolve(++polls >= 5 ? "gave up" : null),
    });
    assert.equal(got.result, "gave up", "never taken over");
    assert.equal(lines.length, 1);
    assert.match(lines[0], /being trained by PID 4242 on gpu-box-7 since .* \(3 h 00 min ago\)/);
    assert.ok(lines[0].includes(`delete ${path}`), lines[0]);
    assert.ok(await readLock(path), "the foreign lock is left alone");
  });
});

Deno.test("an unreadable lock is waited on while young and taken over when old", async () => {
  await withRoot(async (root) => {
    const path = lockPath(root, "k4");
    await writeLock(path, '{"pid": 12');
    const lines: string[] = [];
    let polls = 0;
    const young = await acquireRunLock(path, {
      describe: "run D",
      log: (l) => void lines.push(l),
      pollMs: 10,
      done: () => Promise.resolve(++polls >= 3 ? "waited" : null),
    });
    assert.equal(young.result, "waited");
    const old = new Date(Date.now() - 120_000);
    await Deno.utime(path, old, old);
    const taken = await acquireRunLock(path, { describe: "run D", log: (l) => void lines.push(l) });
    assert.ok(taken.lock);
    assert.ok(lines.some((l) => l.includes("is unreadable (left by a crash)")), lines.join("\n"));
    await taken.lock.release();
  });
});

Deno.test("release removes only this process's lock", async () => {
  await withRoot(async (root) => {
    const path = lockPath(root, "k5");
    const got = await acquireRunLock(path, { describe: "run E", log: () => {} });
    // Someone judged it stale and took it over: it is theirs now.
    const theirs = { ...ownerHere("run E"), pid: 999_999, startedAt: "2026-01-01T00:00:00Z" };
    await Deno.writeTextFile(path, JSON.stringify(theirs));
    await got.lock!.release();
    assert.deepEqual(await readLock(path), theirs);
  });
});

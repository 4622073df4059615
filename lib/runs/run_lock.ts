/**
 * One process trains a run at a time. Before training, a process takes the run's lock: a file
 * `<runs root>/.locks/<key>.lock` holding who took it (PID, host, start time, what it trains),
 * created atomically — written under a private name, then hard-linked to the lock's name, which
 * fails when the lock exists — so a reader never sees half a lock, and of two processes asking at
 * once exactly one gets it. The other says once that it waits, and waits (polling) until the lock
 * is gone; then the record the first one wrote is shown.
 *
 * A lock whose process is gone is stale: a process killed with SIGKILL, or a machine that
 * stopped, cannot remove its lock. On the same host a lock's process is checked through
 * /proc/<pid> (Linux): the PID must exist and have the start time the lock recorded (a PID reused
 * by another process does not keep a lock alive), and the machine must not have restarted since
 * (its boot id). Probing with a signal (`kill -0`) is the fallback elsewhere; SIGCONT is not used,
 * since it would wake a run the user paused. A stale lock is taken over with a line saying so and
 * the run resumes from its backup. A lock from another host cannot be checked from here: it is
 * respected, with its age and how to clear it. The lock is released when the run ends, also on
 * SIGTERM and SIGHUP (lib/machine/signals.ts).
 */
import { dirname, join } from "node:path";
import { formatDuration } from "../report/format.ts";
import { onStop } from "../machine/signals.ts";
import { tempPathFor } from "../machine/atomic_write.ts";

/** Who holds a lock: what the lock file holds. */
export interface LockOwner {
  pid: number;
  host: string;
  /** When the lock was taken (ISO time). */
  startedAt: string;
  /** The machine's boot id (Linux), so a lock from before a restart is known to be stale. */
  bootId: string | null;
  /** The process's start time in clock ticks since boot (Linux), so a reused PID is not it. */
  procStart: string | null;
  /** What it trains, in words. */
  describe: string;
}

/** Where a run's lock lives: `<runs root>/.locks/<key>.lock` (hidden from record listings). */
export function lockPath(root: string, key: string): string {
  return join(root, ".locks", `${key}.lock`);
}

function readText(path: string): string | null {
  try {
    return Deno.readTextFileSync(path);
  } catch {
    return null;
  }
}

/** This machine's name (a lock from another name cannot be checked from here). */
function hostName(): string {
  try {
    return Deno.hostname();
  } catch {
    return "unknown-host"; // no --allow-sys: every lock then looks local, which is the safe side
  }
}

/** A process's start time (field 22 of /proc/<pid>/stat), or null where there is no /proc. */
export function processStart(pid: number): string | null {
  const stat = readText(`/proc/${pid}/stat`);
  if (stat === null) return null;
  return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19] ?? null;
}

function bootId(): string | null {
  return readText("/proc/sys/kernel/random/boot_id")?.trim() ?? null;
}

/** The owner a lock taken now by this process records. */
export function ownerHere(describe: string, now = new Date()): LockOwner {
  return {
    pid: Deno.pid,
    host: hostName(),
    startedAt: now.toISOString(),
    bootId: bootId(),
    procStart: processStart(Deno.pid),
    describe,
  };
}

/**
 * Whether a lock's process still runs: true or false on this host, null for another host's
 * (which this machine cannot see).
 */
export function ownerAlive(owner: LockOwner): boolean | null {
  if (owner.host !== hostName()) return null;
  const boot = bootId();
  if (owner.bootId && boot && owner.bootId !== boot) return false; // the machine restarted since
  if (Deno.build.os === "linux") {
    const start = processStart(owner.pid);
    if (start === null) return false;
    return owner.procStart === null || owner.procStart === start;
  }
  try {
    return new Deno.Command("kill", { args: ["-0", String(owner.pid)], stderr: "null" })
      .outputSync().success;
  } catch {
    return true; // cannot tell: keep respecting it
  }
}

function sameOwner(a: LockOwner, b: LockOwner): boolean {
  return a.pid === b.pid && a.host === b.host && a.startedAt === b.startedAt;
}

/** The lock's owner; null when there is no lock; "unreadable" for a lock being written or damaged. */
export async function readLock(path: string): Promise<LockOwner | null | "unreadable"> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw e;
  }
  try {
    const o = JSON.parse(text) as LockOwner;
    return typeof o.pid === "number" && typeof o.host === "string" ? o : "unreadable";
  } catch {
    return "unreadable";
  }
}

/** A lock this process holds. */
export class RunLock {
  #unregister: () => void;
  #released = false;
  constructor(readonly path: string, readonly owner: LockOwner, whereStopped?: StopLine) {
    this.#unregister = onStop((signal) => {
      this.releaseSync();
      return whereStopped?.(signal);
    });
  }

  /** Removes the lock if it is still this process's (a taken-over lock is not ours to remove). */
  async release(): Promise<void> {
    if (this.#released) return;
    this.#released = true;
    this.#unregister();
    const now = await readLock(this.path).catch(() => null);
    if (now && now !== "unreadable" && sameOwner(now, this.owner)) {
      await Deno.remove(this.path).catch(() => {});
    }
  }

  /** `release` for a signal handler, which cannot wait. */
  releaseSync(): void {
    if (this.#released) return;
    this.#released = true;
    this.#unregister();
    try {
      const now = JSON.parse(Deno.readTextFileSync(this.path)) as LockOwner;
      if (sameOwner(now, this.owner)) Deno.removeSync(this.path);
    } catch {
      // gone already, or not ours
    }
  }
}

/** The line printed when a signal stops the holder (where the run stopped), if any. */
export type StopLine = (signal: Deno.Signal) => string | void;

/** Creates the lock atomically with `owner` in it; null when it exists already. */
async function create(path: string, owner: LockOwner): Promise<boolean> {
  await Deno.mkdir(dirname(path), { recursive: true });
  const text = JSON.stringify(owner, null, 1) + "\n";
  const tmp = tempPathFor(path);
  await Deno.writeTextFile(tmp, text);
  try {
    await Deno.link(tmp, path);
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.AlreadyExists) return false;
    // A file system without hard links: O_EXCL creation, written right after.
    try {
      await Deno.writeTextFile(path, text, { createNew: true });
      return true;
    } catch (e2) {
      if (e2 instanceof Deno.errors.AlreadyExists) return false;
      throw e2;
    }
  } finally {
    await Deno.remove(tmp).catch(() => {});
  }
}

/**
 * Removes a stale lock if it still holds `stale` — under an OS lock on `<lock>.takeover`, so of
 * several processes finding the same stale lock only one removes it (the others then find the new
 * holder's lock and wait).
 */
async function removeStale(path: string, stale: LockOwner | "unreadable"): Promise<boolean> {
  const guard = await Deno.open(`${path}.takeover`, { create: true, write: true });
  try {
    await guard.lock(true);
    const now = await readLock(path);
    const same = now === "unreadable"
      ? stale === "unreadable"
      : now !== null && stale !== "unreadable" && sameOwner(now, stale);
    if (!same) return false;
    await Deno.remove(path);
    return true;
  } finally {
    await guard.unlock().catch(() => {});
    guard.close();
  }
}

/** "2026-12-02 21:50 UTC (12 min ago)". */
function since(iso: string, now = Date.now()): string {
  const t = Date.parse(iso);
  const when = `${iso.slice(0, 16).replace("T", " ")} UTC`;
  return Number.isFinite(t) ? `${when} (${formatDuration((now - t) / 1000)} ago)` : when;
}

/** Options of `acquireRunLock`. */
export interface AcquireOptions<T> {
  /** The run in words, for the lines and the lock. */
  describe: string;
  /** Where the one-line messages go. */
  log: (line: string) => void | Promise<void>;
  /** How often a waiter looks again (default 2 s). */
  pollMs?: number;
  /** Checked after each wait: a value (the holder's record) ends the wait. */
  done?: () => Promise<T | null>;
  /** Where the run stood when a signal stopped this process (printed as it exits). */
  whereStopped?: StopLine;
}

/** A lock older than this that cannot be read was left by a process that died while writing it. */
const UNREADABLE_GRACE_MS = 60_000;

/**
 * Takes the run's lock, waiting while another live process holds it. Returns the lock, or what
 * `done` found while waiting (the record the holder wrote).
 */
export async function acquireRunLock<T>(
  path: string,
  opts: AcquireOptions<T>,
): Promise<{ lock: RunLock; result?: undefined } | { lock?: undefined; result: T }> {
  const pollMs = opts.pollMs ?? 2000;
  let told = false;
  while (true) {
    const owner = ownerHere(opts.describe);
    if (await create(path, owner)) {
      const lock = new RunLock(path, owner, opts.whereStopped);
      // A waiter gets the lock when its holder lets go: when that holder finished the run, the
      // result is what the waiter came for (and nothing is trained twice).
      const result = told ? await opts.done?.() : undefined;
      if (result === null || result === undefined) return { lock };
      await lock.release();
      return { result };
    }
    const held = await readLock(path);
    if (held === null) continue; // released between our attempt and our look: try again
    if (held === "unreadable") {
      const age = Date.now() - ((await Deno.stat(path).catch(() => null))?.mtime?.getTime() ?? 0);
      if (age > UNREADABLE_GRACE_MS && await removeStale(path, held)) {
        await opts.log(
          `taking over ${opts.describe}: its lock ${path} is unreadable (left by a crash)`,
        );
        continue;
      }
    } else {
      const alive = ownerAlive(held);
      if (alive === false) {
        if (await removeStale(path, held)) {
          await opts.log(
            `taking over ${opts.describe}: PID ${held.pid} on ${held.host}, which took it ` +
              `${since(held.startedAt)}, is gone; resuming from its backup if it left one`,
          );
        }
        continue;
      }
      if (!told) {
        told = true;
        await opts.log(
          `waiting for ${opts.describe}: being trained by PID ${held.pid} on ${held.host} since ` +
            `${since(held.startedAt)}; checking every ${formatDuration(pollMs / 1000)}` +
            (alive === null
              ? `. That host's processes cannot be checked from here: if nothing trains this run ` +
                `there any more, delete ${path} and it starts here`
              : ""),
        );
      }
    }
    await new Promise((r) => setTimeout(r, pollMs));
    const result = await opts.done?.();
    if (result !== null && result !== undefined) return { result };
  }
}

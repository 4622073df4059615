/**
 * What happens when the process is told to stop. SIGTERM (what `kill`, a job scheduler's time
 * limit or a shut-down sends) and SIGHUP (a closed terminal) end a Deno process at once by
 * default: a run's lock would stay behind and child processes (nbconvert, its kernel) would run on
 * as orphans. While something has registered a stop handler, those signals instead run every
 * handler (newest first: release a lock, stop child processes), print the lines they return —
 * where the work stopped — and exit with the usual 128 + signal number. A command may add SIGINT
 * (Ctrl-C) to the set; the library never does, since a notebook kernel is interrupted with it.
 */

/** Releases what it holds when the process is told to stop; returns a line saying where it stopped. */
export type StopHandler = (signal: Deno.Signal) => string | void | Promise<string | void>;

const NUMBERS: Partial<Record<Deno.Signal, number>> = { SIGHUP: 1, SIGINT: 2, SIGTERM: 15 };
const signals = new Set<Deno.Signal>(["SIGTERM", "SIGHUP"]);
const handlers: StopHandler[] = [];
const listening = new Map<Deno.Signal, () => void>();
let stopping = false;

/** Whether this platform delivers the signal to a listener (Windows has only SIGINT and SIGBREAK). */
function supported(signal: Deno.Signal): boolean {
  return Deno.build.os !== "windows" || signal === "SIGINT";
}

async function stop(signal: Deno.Signal): Promise<void> {
  if (stopping) return; // a second signal while cleaning up: the first one's exit follows
  stopping = true;
  for (const h of [...handlers].reverse()) {
    try {
      const line = await h(signal);
      if (line) console.error(line);
    } catch (e) {
      console.error(`while stopping: ${(e as Error).message}`);
    }
  }
  Deno.exit(128 + (NUMBERS[signal] ?? 15));
}

function listen(): void {
  for (const s of signals) {
    if (listening.has(s) || !supported(s)) continue;
    const fn = () => void stop(s);
    Deno.addSignalListener(s, fn);
    listening.set(s, fn);
  }
}

function unlisten(): void {
  for (const [s, fn] of listening) Deno.removeSignalListener(s, fn);
  listening.clear();
}

/**
 * Runs `handler` if the process is told to stop (SIGTERM, SIGHUP, and what `stopAlsoOn` added)
 * while it is registered; returns the function that unregisters it.
 */
export function onStop(handler: StopHandler): () => void {
  handlers.push(handler);
  listen();
  return () => {
    const i = handlers.indexOf(handler);
    if (i >= 0) handlers.splice(i, 1);
    if (handlers.length === 0 && !stopping) unlisten();
  };
}

/** Adds a signal (a command's SIGINT) to those that run the stop handlers. */
export function stopAlsoOn(signal: Deno.Signal): void {
  signals.add(signal);
  if (handlers.length) listen();
}

/** Parent of each process, from /proc (Linux); empty where there is no /proc. */
function parents(): Map<number, number> {
  const out = new Map<number, number>();
  try {
    for (const e of Deno.readDirSync("/proc")) {
      if (!/^\d+$/.test(e.name)) continue;
      try {
        const stat = Deno.readTextFileSync(`/proc/${e.name}/stat`);
        // "pid (comm) state ppid …": comm may hold spaces and parentheses, so split after the last ')'
        const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
        out.set(Number(e.name), ppid);
      } catch {
        // the process ended while we looked
      }
    }
  } catch {
    // no /proc: only the process itself is known
  }
  return out;
}

/** `pid` and every process below it (children, their children …), deepest first. */
export function processTree(pid: number): number[] {
  const parent = parents();
  const tree: number[] = [pid];
  for (let i = 0; i < tree.length; i++) {
    for (const [p, pp] of parent) if (pp === tree[i] && !tree.includes(p)) tree.push(p);
  }
  return tree.reverse();
}

/**
 * Whether a process of this id runs (Linux: /proc, a zombie — ended, not yet reaped — counts as
 * gone; elsewhere it is assumed to run).
 */
export function processExists(pid: number): boolean {
  if (Deno.build.os !== "linux") return true;
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    return stat.slice(stat.lastIndexOf(")") + 2)[0] !== "Z";
  } catch {
    return false;
  }
}

/**
 * Stops `pid` and everything it started, including processes that left its process group (a
 * Jupyter kernel runs in a session of its own): SIGTERM to each, then SIGKILL to any still there
 * after `graceMs`. The tree is read before the first signal, while children still name their
 * parent.
 */
export async function stopProcessTree(pid: number, graceMs = 5000): Promise<number[]> {
  const tree = processTree(pid);
  const send = (p: number, s: Deno.Signal) => {
    try {
      Deno.kill(p, s);
    } catch {
      // already gone
    }
  };
  for (const p of tree) send(p, "SIGTERM");
  const deadline = Date.now() + graceMs;
  while (tree.some(processExists) && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 100));
  }
  for (const p of tree.filter(processExists)) send(p, "SIGKILL");
  return tree;
}

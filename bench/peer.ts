/**
 * The PyTorch peer bench (`bench_torch.py` in ../shared/peer-bench, next to this repository),
 * run as a child process for `deno task bench --peer`.
 */
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import type { Precision } from "../lib/machine/backend.ts";
import { openBlasThreadTimeout } from "../lib/kernels/blas/blas.ts";
import type { PeerResult } from "./cli.ts";
import { envVar } from "../lib/machine/env.ts";

/** The install command the one-line "not installed" message names. */
export const PEER_INSTALL = "apt-get install -y python3-torch libopenblas0-pthread";

/** The peer bench's folder: `$PEER_BENCH`, else `../shared/peer-bench` beside the repository. */
export function peerDir(env: { PEER_BENCH?: string } = {}): string {
  return env.PEER_BENCH ??
    fileURLToPath(new URL("../../shared/peer-bench/", import.meta.url)).replace(/\/$/, "");
}

/** The Python that runs the peer: `$PEER_PYTHON`, else Debian's /usr/bin/python3, else python3. */
export function peerPython(env: { PEER_PYTHON?: string } = {}): string {
  return env.PEER_PYTHON ?? (existsSync("/usr/bin/python3") ? "/usr/bin/python3" : "python3");
}

/** Null when the peer can run; else one line saying what is missing and how to get it. */
export async function peerMissing(dir: string, python: string): Promise<string | null> {
  if (!existsSync(`${dir}/bench_torch.py`)) {
    return `--peer: no bench_torch.py in ${dir} (the PyTorch peer bench lives in ` +
      `../shared/peer-bench beside this repository; set PEER_BENCH to its folder)`;
  }
  try {
    const out = await new Deno.Command(python, {
      args: ["-c", "import torch"],
      stdout: "null",
      stderr: "null",
    }).output();
    if (out.success) return null;
  } catch {
    // no such python: say so below
  }
  return `--peer: PyTorch is not installed for ${python}; install it with: ${PEER_INSTALL}`;
}

/**
 * Thread settings both sides get, so the comparison is like for like: the thread counts, and
 * OpenBLAS's idle spin as cpu-fast sets it for itself (lib/kernels/blas/blas.ts) — PyTorch's fp32
 * dense layers run on OpenBLAS too, and measured ~5% faster on VGG16 with it (2-core Zen 5).
 */
export function threadEnv(threads: number): Record<string, string> {
  return {
    OMP_NUM_THREADS: String(threads),
    OPENBLAS_NUM_THREADS: String(threads),
    OPENBLAS_THREAD_TIMEOUT: openBlasThreadTimeout(),
  };
}

/**
 * Runs the peer on one model; returns its JSON result. Debian's PyTorch uses the pthread
 * OpenBLAS when that is on the library path (the README's strongest peer).
 */
export async function runPeer(
  model: string,
  precision: Precision,
  threads: number,
  dir: string,
  python: string,
): Promise<PeerResult> {
  const env: Record<string, string> = threadEnv(threads);
  const openblas = "/usr/lib/x86_64-linux-gnu/openblas-pthread";
  if (!envVar("LD_LIBRARY_PATH") && existsSync(openblas)) env.LD_LIBRARY_PATH = openblas;
  const args = [`${dir}/bench_torch.py`, "--model", model, "--threads", String(threads)];
  if (precision === "mixed_bfloat16") args.push("--bf16");
  const out = await new Deno.Command(python, { args, env, stdout: "piped", stderr: "piped" })
    .output();
  const text = new TextDecoder().decode(out.stdout);
  const line = text.split("\n").findLast((l) => l.startsWith("{"));
  if (!out.success || !line) {
    throw new Error(
      `the peer bench failed on ${model} (exit ${out.code}):\n${text}${
        new TextDecoder().decode(out.stderr)
      }`,
    );
  }
  return JSON.parse(line) as PeerResult;
}

/**
 * The set-up step both of the README's commands run first. It finds which of the tools the study
 * needs are missing, installs what it can (Debian packages with apt-get as root; the Deno Jupyter
 * kernel always), and otherwise stops with the exact command to run. It ends with a checklist.
 *
 * `probeSetup` reads the machine; `planSetup` is a pure function of what it found, so the
 * decisions are tested on faked machines; `runSetup` carries a plan out through a `SetupSystem`
 * (real or faked).
 */
import { envVar } from "./env.ts";

/** What the set-up prepares for: `deno task report`, or `deno task test` (which needs more). */
export type Purpose = "report" | "test";

export interface SetupFacts {
  os: string;
  /** Running as root: apt-get can install. */
  root: boolean;
  /** apt-get on PATH (a Debian-like system). */
  aptGet: boolean;
  /** sudo on PATH, for the command a non-root user is told to run. */
  sudo: boolean;
  /** The running Deno binary (its real path). */
  deno: string;
  jupyter: JupyterFacts;
  /** The registered `deno` Jupyter kernel, or null. */
  denoKernel: { dir: string; argv0: string; argv0Real: string | null } | null;
  /** The OpenBLAS library file found, or null. */
  openblas: string | null;
  /** The oneDNN 2.x library file found, or null. */
  onednn: string | null;
  /** Vulkan driver manifests found (WebGPU's adapters on Linux), empty when none. */
  vulkan: string[];
  /** The Chromium binary the browser tests will start, or null. */
  chromium: string | null;
  /** `CHROMIUM` when set (the tests use it instead of /usr/bin/chromium). */
  chromiumEnv: string | null;
  /** A font with Korean glyphs (the notebooks' section titles), or null. */
  cjkFont: string | null;
  /** The notebook UI installed: "JupyterLab 4.2.5", "Notebook 6.4.12", or null. */
  notebookUi: string | null;
  /** GNU parallel (a test runs the plan's commands through it), or null; absent: not probed. */
  parallel?: string | null;
}

/** Jupyter as report.ts runs it: `jupyter nbconvert --execute`, through nbclient and jupyter-client. */
export interface JupyterFacts {
  /** The `jupyter` command, or null. */
  command: string | null;
  /** Versions importable by the Python that runs `jupyter-nbconvert`; null when absent. */
  nbconvert: string | null;
  nbclient: string | null;
  jupyterClient: string | null;
}

export type PieceId =
  | "jupyter"
  | "kernel"
  | "openblas"
  | "onednn"
  | "vulkan"
  | "chromium"
  | "cjkfont"
  | "notebookui"
  | "parallel";

/** One thing the study needs, as found. */
export interface Piece {
  id: PieceId;
  label: string;
  present: boolean;
  /** What was found, or what is missing. */
  detail: string;
  /** For this purpose: stop without it, use it when there, or not needed at all. */
  need: "required" | "optional" | "none";
  /** The Debian packages that provide it (none for the kernel, which Deno registers). */
  apt: string[];
  /** Without apt-get: how to get it. */
  otherwise: string;
}

export interface SetupPlan {
  purpose: Purpose;
  pieces: Piece[];
  /** Debian packages to install now (root with apt-get only). */
  aptInstall: string[];
  /** Register the Deno kernel (`deno jupyter --install`), re-register (`--force`), or nothing. */
  kernel: "ok" | "install" | "reinstall";
  /** Commands the user must run for required pieces this step cannot install; non-empty = stop. */
  stop: string[];
  /** Optional pieces missing here and not installable now: the command that adds them. */
  advice: string[];
}

const JUPYTER_APT = ["jupyter-nbconvert", "python3-nbclient", "jupyter-client"];

/** Which pieces each purpose needs. Native libraries only speed training up: never required. */
function need(id: PieceId, purpose: Purpose, os: string): Piece["need"] {
  if (id === "jupyter" || id === "kernel") return "required";
  if (id === "openblas") return "optional";
  if (id === "onednn") return os === "linux" ? "optional" : "none"; // lib/kernels loads the .so only
  // WebGPU's software adapter (for the WebGPU tests) and the browser check of the HTML pages.
  // Elsewhere than Linux, WebGPU runs on the system's own graphics API: no Mesa needed.
  if (id === "vulkan") return purpose === "test" && os === "linux" ? "required" : "none";
  // The way a reader opens the notebooks: installed with the report when it can be, and its
  // test (tests/notebook_ui_test.ts) drives it.
  if (id === "notebookui") return purpose === "test" ? "required" : "optional";
  return purpose === "test" ? "required" : "none";
}

/** The pieces as found on a machine, with what each purpose needs of them. */
export function pieces(f: SetupFacts, purpose: Purpose): Piece[] {
  const j = f.jupyter;
  const jupyterMissing = [
    j.command ? "" : "the `jupyter` command",
    j.nbconvert ? "" : "nbconvert",
    j.nbclient ? "" : "nbclient",
    j.jupyterClient ? "" : "jupyter-client",
  ].filter(Boolean);
  const k = f.denoKernel;
  const kernelOk = k !== null && k.argv0Real === f.deno;
  const list: Omit<Piece, "need">[] = [
    {
      id: "jupyter",
      label: "Jupyter (nbconvert, nbclient, jupyter-client)",
      present: jupyterMissing.length === 0,
      detail: jupyterMissing.length === 0
        ? `nbconvert ${j.nbconvert}, nbclient ${j.nbclient}, jupyter-client ${j.jupyterClient}`
        : `missing: ${jupyterMissing.join(", ")}`,
      apt: JUPYTER_APT,
      otherwise: "pip install nbconvert nbclient jupyter-client",
    },
    {
      id: "kernel",
      label: "Deno Jupyter kernel",
      present: kernelOk,
      detail: k === null
        ? "not registered"
        : kernelOk
        ? `${k.dir} → ${k.argv0}`
        : `${k.dir} runs ${k.argv0}${k.argv0Real ? "" : " (absent)"}, not this Deno (${f.deno})`,
      apt: [],
      otherwise: "deno jupyter --install",
    },
    {
      id: "openblas",
      label: "OpenBLAS (CPU fast path)",
      present: f.openblas !== null,
      detail: f.openblas ?? "missing: training uses pure-JS matrix kernels, several times slower",
      apt: ["libopenblas0-pthread"],
      otherwise: f.os === "darwin"
        ? "brew install openblas"
        : "install OpenBLAS (libopenblas.so.0) with the system's package manager",
    },
    {
      id: "onednn",
      label: "oneDNN 2.x (CPU fast path's convolutions)",
      present: f.onednn !== null,
      detail: f.onednn ?? "missing: convolutions run on OpenBLAS (im2col), slower",
      apt: ["libdnnl2"],
      otherwise: "install oneDNN 2.x (libdnnl.so.2) with the system's package manager",
    },
    {
      id: "vulkan",
      label: "Vulkan driver (WebGPU adapter for the WebGPU tests)",
      present: f.vulkan.length > 0,
      detail: f.vulkan.length
        ? f.vulkan.map((d) => d.split("/").pop()!.replace(/(_icd)?(\.\w+)?\.json$/, "")).join(", ")
        : "no Vulkan driver manifest found",
      apt: ["mesa-vulkan-drivers"],
      otherwise: "install Mesa's Vulkan drivers (lavapipe) with the system's package manager",
    },
    {
      id: "chromium",
      label: "Chromium (checks the exported HTML)",
      present: f.chromium !== null,
      detail: f.chromium ??
        (f.chromiumEnv ? `CHROMIUM=${f.chromiumEnv} does not exist` : "no /usr/bin/chromium"),
      apt: ["chromium"],
      otherwise: "install Chromium and set CHROMIUM to its path",
    },
    {
      id: "cjkfont",
      label: "CJK font (the Korean section titles, in the browser check)",
      present: f.cjkFont !== null,
      detail: f.cjkFont ?? "no font with Korean glyphs: Chromium draws them as boxes",
      apt: ["fonts-noto-cjk"],
      otherwise: "install a font with Korean glyphs (Noto Sans CJK)",
    },
    {
      id: "notebookui",
      label: "Notebook UI (JupyterLab, or the classic Notebook)",
      present: f.notebookUi !== null,
      detail: f.notebookUi ?? "neither JupyterLab nor Jupyter Notebook",
      // Debian packages the classic Notebook only; JupyterLab comes from pip
      apt: ["jupyter-notebook"],
      otherwise: "pip install jupyterlab",
    },
    {
      id: "parallel",
      label: "GNU parallel (runs the plan's commands in the tests)",
      present: f.parallel !== null && f.parallel !== undefined,
      detail: f.parallel ?? "no parallel on PATH",
      apt: ["parallel"],
      otherwise: "install GNU parallel with the system's package manager",
    },
  ];
  return list.map((p) => ({ ...p, need: need(p.id, purpose, f.os) }));
}

/** The command that installs `packages` for this user (for a human to run). */
function aptCommand(f: SetupFacts, packages: string[]): string {
  const cmd = `apt-get install -y ${packages.join(" ")}`;
  return f.root ? cmd : f.sudo ? `sudo ${cmd}` : `${cmd}   (as root)`;
}

/** What to do about every piece: install now, tell the user, or nothing. Pure. */
export function planSetup(f: SetupFacts, purpose: Purpose): SetupPlan {
  const all = pieces(f, purpose);
  const missing = all.filter((p) => !p.present && p.need !== "none" && p.id !== "kernel");
  const canApt = f.root && f.aptGet;
  const aptInstall = canApt ? missing.flatMap((p) => p.apt) : [];
  const stop: string[] = [];
  const advice: string[] = [];
  if (!canApt) {
    for (const need of ["required", "optional"] as const) {
      const group = missing.filter((p) => p.need === need);
      const out = need === "required" ? stop : advice;
      if (f.aptGet) {
        if (group.length) out.push(aptCommand(f, group.flatMap((p) => p.apt)));
      } else out.push(...group.map((p) => p.otherwise));
    }
  }
  const k = f.denoKernel;
  const kernel = k === null ? "install" : k.argv0Real === f.deno ? "ok" : "reinstall";
  return { purpose, pieces: all, aptInstall, kernel, stop, advice };
}

const PURPOSE_TEXT: Record<Purpose, string> = { report: "the report", test: "the tests" };
const RERUN: Record<Purpose, string> = { report: "deno task report", test: "deno task test" };

/** The checklist: one line per piece this purpose uses, then what was installed. */
export function checklist(plan: SetupPlan, installed: string[]): string[] {
  const lines = [`set-up for ${PURPOSE_TEXT[plan.purpose]}:`];
  for (const p of plan.pieces) {
    if (p.need === "none") continue;
    const mark = p.present ? "✓" : p.need === "optional" ? "–" : "✗";
    lines.push(`  ${mark} ${p.label}: ${p.detail}`);
  }
  if (installed.length) lines.push(`  installed: ${installed.join("; ")}`);
  if (plan.advice.length) {
    lines.push(`  optional, for speed: ${plan.advice.join("; ")}`);
  }
  return lines;
}

/** Why the set-up stops: what is missing and the exact command(s) to run. */
function stopMessage(plan: SetupPlan): string {
  const missing = plan.pieces.filter((p) =>
    !p.present && p.need === "required" && p.id !== "kernel"
  );
  return [
    ...checklist(plan, []),
    "",
    `Missing for ${PURPOSE_TEXT[plan.purpose]}: ${missing.map((p) => p.label).join(", ")}.`,
    "Install with:",
    ...plan.stop.map((c) => `  ${c}`),
    `then run \`${RERUN[plan.purpose]}\` again.` +
    (plan.purpose === "test"
      ? " (`deno test -A tests/` runs the tests without them: the checks that need them skip.)"
      : ""),
  ].join("\n");
}

/** Raised when the set-up cannot finish; the message is the whole explanation (no stack). */
export class SetupError extends Error {
  override name = "SetupError";
}

/** What `runSetup` needs from the machine: the probe and a way to run commands. */
export interface SetupSystem {
  probe(): Promise<SetupFacts>;
  run(
    cmd: string,
    args: string[],
    env?: Record<string, string>,
  ): Promise<{ code: number; output: string }>;
  /** Waits `ms` (tests pass a fake clock); default a real wait. */
  sleep?(ms: number): Promise<void>;
}

/**
 * How long the set-up waits for another package manager to let go of dpkg's lock: on a freshly
 * booted cloud machine unattended upgrades often hold it for minutes.
 */
export const APT_LOCK_WAIT_S = 300;
const APT_LOCK_RETRY_S = 10;

/** Whether apt-get's output says another process holds dpkg's or apt's lock. */
function aptLockHeld(output: string): boolean {
  return /Could not get lock|Unable to acquire the dpkg frontend lock|Unable to lock (the )?(administration )?directory/i
    .test(output);
}

/**
 * apt-get, tried again every 10 s while another process holds the package manager's lock
 * (saying so once, with the holder apt names), for up to APT_LOCK_WAIT_S; then its last answer.
 */
async function aptGetWaiting(
  system: SetupSystem,
  args: string[],
  env: Record<string, string>,
  log: (line: string) => void,
): Promise<{ code: number; output: string; lockHeld: boolean }> {
  const sleep = system.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
  let waited = 0;
  while (true) {
    const r = await system.run("apt-get", args, env);
    const lockHeld = r.code !== 0 && aptLockHeld(r.output);
    if (!lockHeld || waited >= APT_LOCK_WAIT_S) return { ...r, lockHeld };
    if (waited === 0) {
      const holder = r.output.match(/held by process (\d+) \(([^)]*)\)/);
      log(
        `set-up: another package manager holds the dpkg lock` +
          `${holder ? ` (PID ${holder[1]}, ${holder[2]})` : ""} — often unattended upgrades ` +
          `after a boot; waiting for it, up to ${APT_LOCK_WAIT_S / 60} min…`,
      );
    }
    await sleep(APT_LOCK_RETRY_S * 1000);
    waited += APT_LOCK_RETRY_S;
  }
}

export interface SetupResult {
  plan: SetupPlan;
  /** What was installed, in words ("apt-get: chromium", "Deno kernel"); empty when nothing. */
  installed: string[];
  lines: string[];
}

/**
 * Finds what is missing for `purpose`, installs what it can and checks again. Throws a
 * SetupError with the exact command to run when a required piece cannot be installed here.
 */
export async function runSetup(
  purpose: Purpose,
  system: SetupSystem = realSystem(),
  log: (line: string) => void = () => {},
): Promise<SetupResult> {
  let plan = planSetup(await system.probe(), purpose);
  if (plan.stop.length) throw new SetupError(stopMessage(plan));
  const installed: string[] = [];
  if (plan.aptInstall.length) {
    const pkgs = plan.aptInstall;
    log(`set-up: installing ${pkgs.join(" ")} with apt-get (a minute or more)…`);
    const env = { DEBIAN_FRONTEND: "noninteractive" };
    for (const args of [["update", "-qq"], ["install", "-y", "-qq", ...pkgs]]) {
      const r = await aptGetWaiting(system, args, env, log);
      if (r.lockHeld) {
        throw new SetupError(
          `set-up: another package manager still holds the dpkg lock after ` +
            `${APT_LOCK_WAIT_S / 60} min (\`apt-get ${args.join(" ")}\`):\n${tail(r.output)}\n` +
            `Wait for it to finish, then run \`${RERUN[purpose]}\` again.`,
        );
      }
      if (r.code !== 0) {
        throw new SetupError(
          `set-up: \`apt-get ${args.join(" ")}\` failed (exit ${r.code}):\n` +
            `${tail(r.output)}\nRun \`apt-get install -y ${pkgs.join(" ")}\` to see why, then ` +
            `\`${RERUN[purpose]}\` again.`,
        );
      }
    }
    installed.push(`apt-get: ${pkgs.join(" ")}`);
  }
  if (plan.kernel !== "ok") {
    const args = ["jupyter", "--install", ...(plan.kernel === "reinstall" ? ["--force"] : [])];
    const r = await system.run(Deno.execPath(), args);
    if (r.code !== 0) {
      throw new SetupError(
        `set-up: \`deno ${args.join(" ")}\` failed (exit ${r.code}):\n${tail(r.output)}`,
      );
    }
    installed.push(`Deno kernel (deno ${args.join(" ")})`);
  }
  if (installed.length) {
    plan = planSetup(await system.probe(), purpose);
    const still = plan.pieces.filter((p) => !p.present && p.need === "required");
    if (still.length) {
      throw new SetupError(
        `set-up: installed (${installed.join("; ")}) but still missing: ` +
          `${still.map((p) => `${p.label} (${p.detail})`).join(", ")}.\n` +
          `Check the installation (e.g. PATH for jupyter), then run \`${RERUN[purpose]}\` again.`,
      );
    }
  }
  return { plan, installed, lines: checklist(plan, installed) };
}

function tail(output: string): string {
  return output.trim().split("\n").slice(-12).map((l) => `    ${l}`).join("\n");
}

// ---------------------------------------------------------------- the real machine

/** An executable named `name` on PATH, or null. */
export function which(name: string): string | null {
  for (const dir of (envVar("PATH") ?? "").split(":")) {
    if (!dir) continue;
    const path = `${dir}/${name}`;
    try {
      const st = Deno.statSync(path);
      if (st.isFile && ((st.mode ?? 0o111) & 0o111)) return path;
    } catch { /* not here */ }
  }
  return null;
}

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

function realPath(path: string): string | null {
  try {
    return Deno.realPathSync(path);
  } catch {
    return null;
  }
}

const MULTIARCH = `${Deno.build.arch}-linux-gnu`;

/** The places lib/kernels/blas/blas.ts and dnnl.ts open the libraries from (files only). */
const OPENBLAS_FILES = [
  `/usr/lib/${MULTIARCH}/openblas-pthread/libopenblas.so.0`,
  `/usr/lib/${MULTIARCH}/libopenblas.so.0`,
  "/usr/lib64/libopenblas.so.0",
  "/usr/lib/libopenblas.so.0",
  "/usr/local/lib/libopenblas.so.0",
  "/opt/homebrew/opt/openblas/lib/libopenblas.dylib",
  "/usr/local/opt/openblas/lib/libopenblas.dylib",
];
const ONEDNN_FILES = [
  `/usr/lib/${MULTIARCH}/libdnnl.so.2`,
  "/usr/lib64/libdnnl.so.2",
  "/usr/local/lib/libdnnl.so.2",
];

/** Vulkan driver manifests where the Vulkan loader looks for them. */
function vulkanDrivers(): string[] {
  const fromEnv = envVar("VK_DRIVER_FILES") ?? envVar("VK_ICD_FILENAMES");
  if (fromEnv) return fromEnv.split(":").filter(exists);
  const home = envVar("HOME");
  const dirs = [
    "/usr/share/vulkan/icd.d",
    "/usr/local/share/vulkan/icd.d",
    "/etc/vulkan/icd.d",
    ...(home ? [`${home}/.local/share/vulkan/icd.d`] : []),
  ];
  const found: string[] = [];
  for (const dir of dirs) {
    try {
      for (const e of Deno.readDirSync(dir)) if (e.name.endsWith(".json")) found.push(e.name);
    } catch { /* no such folder */ }
  }
  return found.sort();
}

/** The Python that runs `jupyter-nbconvert` (its shebang), which may not be `python3` on PATH. */
function nbconvertPython(script: string): string[] | null {
  try {
    const head = Deno.readTextFileSync(script).slice(0, 300).split("\n")[0];
    if (!head.startsWith("#!")) return null;
    const argv = head.slice(2).trim().split(/\s+/);
    return argv[0].endsWith("/env") ? argv.slice(1) : argv;
  } catch {
    return null;
  }
}

/** The Python that runs Jupyter (`jupyter-nbconvert`'s interpreter) as argv, or null. */
export function jupyterPython(): string[] | null {
  const script = which("jupyter-nbconvert");
  return script ? nbconvertPython(script) : null;
}

const PY_PROBE = `
import json
out = {}
for m in ("nbconvert", "nbclient", "jupyter_client", "jupyterlab", "notebook"):
    try:
        out[m] = getattr(__import__(m), "__version__", "?")
    except Exception:
        out[m] = None
specs = {}
if out["jupyter_client"]:
    try:
        from jupyter_client.kernelspec import KernelSpecManager
        for name, s in KernelSpecManager().get_all_specs().items():
            specs[name] = {"dir": s["resource_dir"], "argv0": (s["spec"].get("argv") or [""])[0]}
    except Exception:
        pass
out["kernels"] = specs
print(json.dumps(out))
`;

interface PyProbe {
  jupyterlab: string | null;
  notebook: string | null;
  nbconvert: string | null;
  nbclient: string | null;
  jupyter_client: string | null;
  kernels: Record<string, { dir: string; argv0: string }>;
}

async function probePython(): Promise<PyProbe | null> {
  const script = which("jupyter-nbconvert");
  const py = script ? nbconvertPython(script) : null;
  if (!py) return null;
  try {
    const out = await new Deno.Command(py[0], {
      args: [...py.slice(1), "-c", PY_PROBE],
      stdout: "piped",
      stderr: "null",
    }).output();
    return out.code === 0 ? JSON.parse(new TextDecoder().decode(out.stdout)) : null;
  } catch {
    return null; // the interpreter is gone: nbconvert is as good as missing
  }
}

/** Where `deno jupyter --install` writes the kernel when Jupyter itself cannot be asked. */
function userKernel(): { dir: string; argv0: string } | null {
  const home = envVar("HOME") ?? "";
  const data = envVar("JUPYTER_DATA_DIR") ??
    (Deno.build.os === "darwin"
      ? `${home}/Library/Jupyter`
      : `${envVar("XDG_DATA_HOME") ?? `${home}/.local/share`}/jupyter`);
  const dir = `${data}/kernels/deno`;
  try {
    const spec = JSON.parse(Deno.readTextFileSync(`${dir}/kernel.json`));
    return { dir, argv0: spec.argv?.[0] ?? "" };
  } catch {
    return null;
  }
}

/** A font with Korean glyphs as fontconfig lists it (its file), or null. */
async function koreanFont(): Promise<string | null> {
  try {
    const out = await new Deno.Command("fc-list", {
      args: [":lang=ko", "file"],
      stdout: "piped",
      stderr: "null",
    }).output();
    const first = new TextDecoder().decode(out.stdout).split("\n").find((l) => l.trim());
    return first ? first.replace(/:\s*$/, "").trim() : null;
  } catch {
    return null; // no fontconfig: no font Chromium could use either
  }
}

/** The notebook UI the Python of `jupyter` can run, JupyterLab first. */
function notebookUi(py: PyProbe | null): string | null {
  if (py?.jupyterlab && which("jupyter-lab")) return `JupyterLab ${py.jupyterlab} (jupyter lab)`;
  if (py?.notebook && which("jupyter-notebook")) {
    return `Notebook ${py.notebook} (jupyter notebook)`;
  }
  return null;
}

/** Reads this machine: what is installed, who we are. Touches nothing. */
export async function probeSetup(): Promise<SetupFacts> {
  const py = await probePython();
  const kernel = py ? py.kernels.deno ?? null : userKernel();
  const chromiumEnv = envVar("CHROMIUM") ?? null;
  const chromium = chromiumEnv ?? "/usr/bin/chromium";
  return {
    os: Deno.build.os,
    root: Deno.uid() === 0,
    aptGet: which("apt-get") !== null,
    sudo: which("sudo") !== null,
    deno: realPath(Deno.execPath()) ?? Deno.execPath(),
    jupyter: {
      command: which("jupyter"),
      nbconvert: py?.nbconvert ?? null,
      nbclient: py?.nbclient ?? null,
      jupyterClient: py?.jupyter_client ?? null,
    },
    denoKernel: kernel && {
      dir: kernel.dir,
      argv0: kernel.argv0,
      argv0Real: realPath(kernel.argv0.includes("/") ? kernel.argv0 : which(kernel.argv0) ?? ""),
    },
    openblas: OPENBLAS_FILES.find(exists) ?? null,
    onednn: ONEDNN_FILES.find(exists) ?? null,
    vulkan: Deno.build.os === "linux" ? vulkanDrivers() : [],
    chromium: exists(chromium) ? chromium : null,
    chromiumEnv,
    cjkFont: await koreanFont(),
    notebookUi: notebookUi(py),
    parallel: which("parallel"),
  };
}

/** The real machine: probes it and runs commands, their output captured for error messages. */
function realSystem(): SetupSystem {
  return {
    probe: probeSetup,
    async run(cmd, args, env) {
      const out = await new Deno.Command(cmd, { args, env, stdout: "piped", stderr: "piped" })
        .output();
      const dec = new TextDecoder();
      return { code: out.code, output: dec.decode(out.stdout) + dec.decode(out.stderr) };
    },
  };
}

/**
 * `deno task report`: executes every notebook in `notebooks/` in order with nbconvert and the
 * Deno kernel, and writes self-contained HTML pages (charts as inline SVG, no network needed)
 * plus an `index.html` linking them, with the comparison table from the run records.
 *
 *   deno task report [--only 01,07] [--out outputs/html] [--timeout SECONDS]
 *
 * `MNIST_PROFILE`, `RUNS_DIR` and the other variables pass through to the kernels.
 */
import { parseArgs } from "node:util";
import { basename, join, resolve } from "node:path";
import { envVar, REPO_ROOT } from "../lib/machine/env.ts";
import { writeFileAtomic } from "../lib/machine/atomic_write.ts";
import { listBackups } from "../lib/runs/backup.ts";
import { formatDuration } from "../lib/report/format.ts";
import { runCommand } from "../lib/machine/cli_error.ts";
import { runsRoot } from "../lib/runs/runs.ts";
import { onStop, stopProcessTree } from "../lib/machine/signals.ts";
import { jupyterPython, planSetup, probeSetup } from "../lib/machine/setup.ts";
import { setupStep } from "./setup.ts";
import { indexHtml, type PageResult, selfContained, TEMPLATE, weightNote } from "./report_page.ts";
import { initBackend } from "../lib/machine/backend.ts";
import {
  damagedRecordLines,
  fullProfileWarning,
  planCommands,
  planLines,
  planStudy,
} from "../lib/runs/plan.ts";
import { currentProfile } from "../lib/study/profile.ts";

const NOTEBOOKS_DIR = join(REPO_ROOT, "notebooks");
/** nbconvert configuration that keeps cell outputs arriving after the cell's "idle" message. */
export const LATE_OUTPUTS_CONFIG = join(REPO_ROOT, "scripts", "nbconvert_late_outputs.py");

/** Raised for anything the user must fix; its message is the whole explanation (no stack). */
export class ReportError extends Error {
  override name = "ReportError";
}

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs a command to its end. If the report is told to stop (SIGTERM, SIGHUP) meanwhile, the
 * command and everything it started — nbconvert's kernel runs in a session of its own, beyond
 * the reach of a process-group signal — are stopped, and a line says where the report stopped.
 */
async function run(cmd: string, args: string[], opts: { cwd?: string } = {}): Promise<Run> {
  const child = new Deno.Command(cmd, { args, cwd: opts.cwd, stdout: "piped", stderr: "piped" })
    .spawn();
  const t0 = performance.now();
  const unregister = onStop(async (signal) => {
    const tree = await stopProcessTree(child.pid);
    return stoppedLine(signal, cmd, args, tree, (performance.now() - t0) / 1000);
  });
  try {
    const out = await child.output();
    const dec = new TextDecoder();
    return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
  } finally {
    unregister();
  }
}

/** Where the report stopped: the notebook (or command), its processes, and what will resume. */
function stoppedLine(
  signal: Deno.Signal,
  cmd: string,
  args: string[],
  tree: number[],
  seconds: number,
): string {
  const notebook = args.find((a) => a.endsWith(".ipynb"));
  const what = notebook
    ? `${args.includes("--execute") ? "executing" : "exporting"} ` +
      basename(notebook)
    : `${cmd} ${args[0] ?? ""}`.trim();
  const resumable = listBackups(runsRoot(), new Date(Date.now() - seconds * 1000 - 60_000))
    .map((b) => `${b.header.describe} after epoch ${b.header.epoch}/${b.header.epochs}`);
  return `report: stopped by ${signal} while ${what} (after ${formatDuration(seconds)}); ` +
    `stopped its ${tree.length} process(es) (nbconvert, kernel). ` +
    (resumable.length ? `Backups that resume: ${resumable.join("; ")}. ` : "") +
    `Run the same command again to continue: finished runs are kept.`;
}

/**
 * Checks that nbconvert and the Deno kernel are installed (as the set-up step finds them);
 * throws a ReportError saying what is missing and how to install it.
 */
export async function checkTools(): Promise<void> {
  const plan = planSetup(await probeSetup(), "report");
  const missing = plan.pieces.filter((p) => p.need === "required" && !p.present);
  if (missing.length) {
    throw new ReportError(
      `${missing.map((p) => `${p.label}: ${p.detail}`).join("; ")}. Run \`deno task setup ` +
        `report\` to install ${missing.length > 1 ? "them" : "it"} (as root) or to be told how.`,
    );
  }
}

/** The notebooks to run, in order: all `NN_*.ipynb` in `dir`, or those whose number or name is in `only`. */
export async function listNotebooks(dir = NOTEBOOKS_DIR, only?: string[]): Promise<string[]> {
  const names: string[] = [];
  for await (const e of Deno.readDir(dir)) {
    if (e.isFile && e.name.endsWith(".ipynb") && !e.name.startsWith(".")) names.push(e.name);
  }
  names.sort();
  if (!only) return names.map((n) => join(dir, n));
  const picked = names.filter((n) =>
    only.some((o) => n === o || n.startsWith(`${o}_`) || n === `${o}.ipynb`)
  );
  const missing = only.filter((o) =>
    !picked.some((n) => n === o || n.startsWith(`${o}_`) || n === `${o}.ipynb`)
  );
  if (missing.length) {
    throw new ReportError(
      `--only ${missing.join(",")}: no such notebook in ${dir} (have: ${names.join(", ")})`,
    );
  }
  return picked.map((n) => join(dir, n));
}

interface NotebookJson {
  cells: { cell_type: string; source: string | string[]; outputs?: Output[] }[];
}
interface Output {
  output_type: string;
  ename?: string;
  evalue?: string;
  traceback?: string[];
}

const src = (s: string | string[]) => Array.isArray(s) ? s.join("") : s;
// deno-lint-ignore no-control-regex
const stripAnsi = (s: string) => s.replace(/\x1b\[[0-9;]*m/g, "");

/** Where a notebook failed: the cell's index (0-based, all cells), its first line and the error. */
export interface CellFailure {
  cell: number | null;
  firstLine: string;
  error: string;
}

/**
 * Reads nbconvert's failure output: nbclient prints the failing cell's source between two
 * `------------------` lines, then the error. The source is matched back to a cell index.
 */
export function parseNbconvertFailure(stderr: string, nb: NotebookJson): CellFailure {
  const text = stripAnsi(stderr);
  const m = text.match(
    /An error occurred while executing the following cell:\n-{18}\n([\s\S]*?)\n-{18}\n([\s\S]*)$/,
  );
  if (!m) {
    const tail = text.trim().split("\n").slice(-15).join("\n");
    return { cell: null, firstLine: "", error: tail };
  }
  const source = m[1];
  const cell = nb.cells.findIndex((c) =>
    c.cell_type === "code" && src(c.source).trim() === source.trim()
  );
  const error = m[2].trim().split("\n").filter((l) => l.trim() !== "").slice(0, 15).join("\n");
  return { cell: cell >= 0 ? cell : null, firstLine: source.trim().split("\n")[0], error };
}

/** Error outputs left in an executed notebook (none, when every cell ran cleanly). */
export function errorOutputs(nb: NotebookJson): { cell: number; ename: string; evalue: string }[] {
  const found: { cell: number; ename: string; evalue: string }[] = [];
  nb.cells.forEach((c, i) => {
    for (const o of c.outputs ?? []) {
      if (o.output_type === "error") {
        found.push({ cell: i, ename: o.ename ?? "Error", evalue: o.evalue ?? "" });
      }
    }
  });
  return found;
}

function describeFailure(name: string, f: CellFailure): string {
  const where = f.cell === null
    ? ""
    : ` in cell ${f.cell + 1}${f.firstLine ? ` (\`${f.firstLine}\`)` : ""}`;
  return `notebook ${name} failed${where}:\n${f.error.replace(/^/gm, "    ")}`;
}

/** The first Markdown heading of a notebook, for the index ("7. Comparison: …"). */
export function notebookTitle(nb: NotebookJson, fallback: string): string {
  for (const c of nb.cells) {
    if (c.cell_type !== "markdown") continue;
    const h = src(c.source).match(/^#\s+(.+)$/m);
    if (h) return h[1].trim();
  }
  return fallback;
}

/**
 * Signs an executed notebook as trusted on this machine (Jupyter's notary, as `jupyter trust`
 * does), so that a notebook UI opening it shows its charts and tables instead of asking to trust
 * it first. Debian's nbformat has no `jupyter trust` command; its module does the same.
 */
export async function signNotebook(path: string): Promise<void> {
  const sign = "import sys, nbformat\nfrom nbformat.sign import NotebookNotary\n" +
    "nb = nbformat.read(sys.argv[1], as_version=4)\nNotebookNotary().sign(nb)";
  const py = jupyterPython() ?? ["python3"];
  const r = await run(py[0], [...py.slice(1), "-c", sign, path]).catch((e) => ({
    code: -1,
    stdout: "",
    stderr: String(e),
  }));
  if (r.code !== 0) {
    console.warn(
      `report: could not sign ${basename(path)} as trusted (${r.stderr.trim().split("\n").pop()})`,
    );
  }
}

/** Executes one notebook (kernel cwd = the notebook's folder) and exports its HTML page. */
export async function executeNotebook(
  path: string,
  outDir: string,
  timeoutS: number,
): Promise<PageResult> {
  const name = basename(path);
  const stem = name.replace(/\.ipynb$/, "");
  const source = JSON.parse(await Deno.readTextFile(path)) as NotebookJson;
  const title = notebookTitle(source, stem);
  const executedDir = join(outDir, "notebooks");
  const t0 = performance.now();
  const exec = await run("jupyter", [
    "nbconvert",
    "--to",
    "notebook",
    "--execute",
    "--ExecutePreprocessor.kernel_name=deno",
    `--ExecutePreprocessor.timeout=${timeoutS > 0 ? timeoutS : -1}`,
    // keeps the outputs that Deno's kernel sends after a cell's "idle" (see the file)
    `--config=${LATE_OUTPUTS_CONFIG}`,
    "--output-dir",
    executedDir,
    path,
  ]);
  const seconds = (performance.now() - t0) / 1000;
  if (exec.code !== 0) {
    return {
      notebook: name,
      title,
      html: null,
      seconds,
      failure: describeFailure(name, parseNbconvertFailure(exec.stderr, source)),
    };
  }
  const executedPath = join(executedDir, name);
  await signNotebook(executedPath);
  const executed = JSON.parse(await Deno.readTextFile(executedPath)) as NotebookJson;
  const errors = errorOutputs(executed);
  if (errors.length) {
    const e = errors[0];
    const failure = describeFailure(name, {
      cell: e.cell,
      firstLine: src(executed.cells[e.cell].source).trim().split("\n")[0],
      error: `${e.ename}: ${e.evalue}`,
    });
    return { notebook: name, title, html: null, seconds, failure };
  }
  const template = await Deno.makeTempFile({ prefix: "report_svg_", suffix: ".html.j2" });
  await Deno.writeTextFile(template, TEMPLATE);
  const conv = await run("jupyter", [
    "nbconvert",
    "--to",
    "html",
    `--template-file=${template}`,
    "--output-dir",
    outDir,
    executedPath,
  ]);
  await Deno.remove(template).catch(() => {});
  if (conv.code !== 0) {
    const tail = stripAnsi(conv.stderr).trim().split("\n").slice(-10).join("\n");
    return {
      notebook: name,
      title,
      html: null,
      seconds,
      failure: `notebook ${name}: HTML export failed:\n${tail}`,
    };
  }
  const htmlPath = join(outDir, `${stem}.html`);
  const page = selfContained(await Deno.readTextFile(htmlPath), title);
  await writeFileAtomic(htmlPath, page);
  const bytes = new TextEncoder().encode(page).length;
  return { notebook: name, title, html: `${stem}.html`, seconds, failure: null, bytes };
}

/** Runs the report; returns the pages. Throws a ReportError naming every notebook that failed. */
export async function report(
  opts: {
    only?: string[];
    outDir?: string;
    timeoutS?: number;
    notebooksDir?: string;
    log?: (s: string) => void;
  } = {},
): Promise<PageResult[]> {
  const log = opts.log ?? ((s: string) => console.log(s));
  const outDir = resolve(opts.outDir ?? join(REPO_ROOT, "outputs", "html"));
  await checkTools();
  const notebooks = await listNotebooks(opts.notebooksDir ?? NOTEBOOKS_DIR, opts.only);
  if (notebooks.length === 0) {
    throw new ReportError(`no notebooks in ${opts.notebooksDir ?? NOTEBOOKS_DIR}`);
  }
  await Deno.mkdir(join(outDir, "notebooks"), { recursive: true });
  const profile = envVar("MNIST_PROFILE") ?? "full";
  log(`report: ${notebooks.length} notebook(s), profile ${profile} → ${outDir}`);
  for (const line of await planSummary(notebooks, profile)) log(line);
  const pages: PageResult[] = [];
  for (const nb of notebooks) {
    log(`▶ ${basename(nb)} …`);
    const page = await executeNotebook(nb, outDir, opts.timeoutS ?? -1);
    pages.push(page);
    log(
      page.failure
        ? `✗ ${page.failure}`
        : `✓ ${basename(nb)} (${page.seconds.toFixed(1)} s) → ${page.html} (${
          weightNote(page.bytes ?? 0)
        })`,
    );
  }
  await writeFileAtomic(join(outDir, "index.html"), await indexHtml(pages, profile));
  log(`index: ${join(outDir, "index.html")}`);
  const failed = pages.filter((p) => p.failure);
  if (failed.length) {
    throw new ReportError(
      `${failed.length} of ${pages.length} notebook(s) failed:\n${
        failed.map((p) => p.failure).join("\n")
      }`,
    );
  }
  return pages;
}

/**
 * What the notebooks will train, before they run: per notebook, runs cached (shown from their
 * records), resuming from a backup, or to train, with the time they will take on this backend.
 */
async function planSummary(notebooks: string[], profileName: string): Promise<string[]> {
  const backend = await initBackend({ quiet: true });
  const profile = currentProfile(profileName);
  const names = notebooks.map((nb) => basename(nb, ".ipynb"));
  const plan = (await planStudy(profile, backend)).filter((p) => names.includes(p.notebook));
  const damaged = await damagedRecordLines();
  if (plan.length === 0) return damaged;
  const warning = fullProfileWarning(plan, profile, backend);
  return [
    `plan on ${backend.name} (${backend.precision}):`,
    ...planLines(plan).map((l) => `  ${l}`),
    ...(warning ? [warning] : []),
    ...damaged,
  ];
}

/**
 * `--plan`: the plan of the chosen notebooks, without running them (no set-up step: the plan
 * reads records and backups only); with `--commands`, each run still to make as one command
 * line on stdout and everything else on stderr, so the output pipes into a job runner.
 */
async function printPlan(opts: { only?: string[]; commands: boolean }): Promise<number> {
  const notebooks = await listNotebooks(NOTEBOOKS_DIR, opts.only);
  const profile = envVar("MNIST_PROFILE") ?? "full";
  const say = opts.commands ? (s: string) => console.error(s) : (s: string) => console.log(s);
  const lines = await planSummary(notebooks, profile);
  for (const line of lines.length ? lines : ["plan: these notebooks train nothing"]) say(line);
  if (!opts.commands) return 0;
  const backend = await initBackend({ quiet: true });
  const names = notebooks.map((nb) => basename(nb, ".ipynb"));
  const plan = (await planStudy(currentProfile(profile), backend))
    .filter((p) => names.includes(p.notebook));
  const { commands, notes } = planCommands(plan, {
    profile: currentProfile(profile),
    backend,
    runsDir: envVar("RUNS_DIR"),
  });
  for (const n of notes) say(`# ${n}`);
  for (const c of commands) console.log(c);
  say(`${commands.length} command(s)`);
  return 0;
}

const HELP = `deno task report [options]

Executes notebooks/*.ipynb in order with the Deno Jupyter kernel and writes HTML pages
plus an index to outputs/html/ (executed notebooks in outputs/html/notebooks/). First runs the
set-up step (deno task setup report): installs Jupyter and the Deno kernel when it can.

Options:
  --only 01,07       run only these notebooks (number prefix or file name)
  --plan             print the plan (runs cached, resuming, to train, and how long) and exit
  --commands         with --plan: print each run still to make as one command line on stdout
                     (the plan goes to stderr), for GNU parallel, a Slurm array or any runner
  --out DIR          output folder (default outputs/html)
  --timeout SECONDS  per-cell time limit (default: none)
  --debug            show the stack trace of an error (also MNIST_DEBUG=1)
  -h, --help         this text

Environment: MNIST_PROFILE=quick for a fast run; RUNS_DIR to read/write run records elsewhere.`;

/** The options after validation; throws a ReportError with a one-line message on bad input. */
export function parseReportArgs(args: string[]) {
  let values;
  try {
    ({ values } = parseArgs({
      args,
      options: {
        only: { type: "string" },
        out: { type: "string" },
        plan: { type: "boolean" },
        commands: { type: "boolean" },
        timeout: { type: "string" },
        help: { type: "boolean", short: "h" },
      },
    }));
  } catch (e) {
    // node:util's own message ("Unknown option '--x'. To specify a positional argument …").
    throw new ReportError((e as Error).message.split("\n")[0]);
  }
  if (values.help) return { help: true as const };
  const timeoutS = values.timeout === undefined ? -1 : Number(values.timeout);
  if (values.timeout !== undefined && !(timeoutS > 0)) {
    throw new ReportError(`--timeout must be a number of seconds > 0, got "${values.timeout}"`);
  }
  const only = values.only?.split(",").map((s) => s.trim()).filter(Boolean);
  if (values.only !== undefined && !only?.length) {
    throw new ReportError(`--only needs notebook numbers or names, e.g. --only 01,07`);
  }
  if (values.commands && !values.plan) {
    throw new ReportError(`--commands goes with --plan: deno task report --plan --commands`);
  }
  return {
    help: false as const,
    only,
    outDir: values.out,
    timeoutS,
    plan: values.plan ?? false,
    commands: values.commands ?? false,
  };
}

async function main(args: string[]): Promise<number> {
  let opts: ReturnType<typeof parseReportArgs>;
  try {
    opts = parseReportArgs(args);
  } catch (e) {
    console.error(`report: ${(e as Error).message}\n\n${HELP}`);
    return 2;
  }
  if (opts.help) {
    console.log(HELP);
    return 0;
  }
  if (opts.plan) return await printPlan(opts);
  if (!(await setupStep("report"))) return 1;
  try {
    await report(opts);
  } catch (e) {
    if (e instanceof ReportError) {
      console.error(`report: ${e.message}`);
      return 1;
    }
    throw e;
  }
  return 0;
}

if (import.meta.main) await runCommand("report", main);

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
import { escapeHtml } from "../lib/display.ts";
import { runsOfProfile, runsTable } from "../lib/compare.ts";
import { envVar, REPO_ROOT, repoRelative } from "../lib/env.ts";
import { formatDuration } from "../lib/run_cache.ts";
import { planSetup, probeSetup } from "../lib/setup.ts";
import { setupStep } from "./setup.ts";
import { loadRuns, type RunRecord, runsRoot } from "../lib/runs.ts";
import { initBackend } from "../lib/backend.ts";
import { fullProfileWarning, planLines, planStudy } from "../lib/plan.ts";
import { currentProfile } from "../lib/profile.ts";

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

async function run(cmd: string, args: string[], opts: { cwd?: string } = {}): Promise<Run> {
  const out = await new Deno.Command(cmd, { args, cwd: opts.cwd, stdout: "piped", stderr: "piped" })
    .output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
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

/**
 * Makes an nbconvert HTML page self-contained: drops the `<script src>` tags the template adds
 * (require.js and MathJax, from file:// or a CDN — the notebooks need neither; SVG charts and
 * tables are inline) and adds a link back to the index.
 */
export function selfContained(html: string, title: string): string {
  const noExternal = html.replace(/<script\b[^>]*\bsrc=["'][^"']*["'][^>]*>\s*<\/script>/gi, "")
    .replace(/<link\b[^>]*\bhref=["'](?:https?:|file:|\/\/)[^"']*["'][^>]*>/gi, "");
  const nav =
    `<nav style="font:14px sans-serif;padding:8px 16px"><a href="index.html">← all notebooks</a> · ` +
    `${escapeHtml(title)}</nav>`;
  return noExternal.replace(/<body([^>]*)>/i, (b) => `${b}\n${nav}`);
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

/** One notebook's outcome. */
export interface PageResult {
  notebook: string;
  title: string;
  html: string | null;
  seconds: number;
  failure: string | null;
}

/**
 * nbconvert's lab template with SVG outputs passed through as they are. Some builds (Debian's
 * 6.5.3) run every SVG through lxml's `clean_html`, which strips all SVG elements and leaves
 * only the text: the charts vanish. Our SVG comes from our own vega renderer, so it is trusted.
 */
const TEMPLATE = `{%- extends 'lab/index.html.j2' -%}
{% block data_svg scoped -%}
<div class="jp-RenderedSVG jp-OutputArea-output {{ extra_class }}" data-mime-type="image/svg+xml">
{{ output.data['image/svg+xml'] }}
</div>
{%- endblock data_svg %}
`;

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
  await Deno.writeTextFile(htmlPath, selfContained(await Deno.readTextFile(htmlPath), title));
  return { notebook: name, title, html: `${stem}.html`, seconds, failure: null };
}

/** A count as a reader takes it in: 1,407,178 → "1.41 M", 20,490 → "20.5 k". */
function shortCount(n: number): string {
  return n >= 1e6
    ? `${(n / 1e6).toPrecision(3)} M`
    : n >= 1e3
    ? `${(n / 1e3).toPrecision(3)} k`
    : `${n}`;
}

/**
 * The index's runs table: the columns a reader compares, test accuracy as a percentage, narrow
 * enough for a 1280-px window. Notebook 07 has the full table: here the run id is the model
 * cell's tooltip, and throughput and feature-extraction time are left out.
 */
export function runsIndexTable(records: RunRecord[], caption: string): string {
  const rows = runsTable(records).toRecords() as Record<string, string | number>[];
  const num = (v: string) => `<td class="num">${v}</td>`;
  const body = rows.map((r) => {
    const params = Number(r.parameters), trained = Number(r.trained);
    const stopped = r.stopped ? ` <span class="meta">${escapeHtml(String(r.stopped))}</span>` : "";
    return "<tr>" +
      `<td title="run ${escapeHtml(String(r.run))}">${escapeHtml(String(r.model))}</td>` +
      `<td>${escapeHtml(String(r.section))}</td>` +
      num(`<strong>${(Number(r.test_accuracy) * 100).toFixed(2)} %</strong>`) +
      num(
        `${shortCount(params)}${
          trained < params ? `<br><span class="meta">${shortCount(trained)} trained</span>` : ""
        }`,
      ) +
      num(`${r.epochs}${stopped}`) +
      num(escapeHtml(formatDuration(Number(r.wall_s)))) +
      `<td>${escapeHtml(String(r.backend))}</td>` +
      `<td>${escapeHtml(String(r.weights))}</td>` +
      "</tr>";
  }).join("\n");
  const head = [
    ["model", ""],
    ["notebook", ""],
    ["test accuracy", "num"],
    ["parameters", "num"],
    ["epochs", "num"],
    ["time", "num"],
    ["backend", ""],
    ["weights", ""],
  ].map(([h, c]) => `<th${c ? ` class="${c}"` : ""}>${h}</th>`).join("");
  return `<table class="runs"><caption>${escapeHtml(caption)}</caption>` +
    `<thead><tr>${head}</tr></thead><tbody>\n${body}\n</tbody></table>`;
}

/** The index page: links to every notebook page and the comparison table from the run records. */
export async function indexHtml(
  pages: PageResult[],
  profile: string,
  records?: RunRecord[],
): Promise<string> {
  records ??= await loadRuns();
  const rows = pages.map((p) =>
    `<li>${
      p.html ? `<a href="${escapeHtml(p.html)}">${escapeHtml(p.title)}</a>` : escapeHtml(p.title)
    } ` +
    `<span class="meta">${escapeHtml(p.notebook)} · ${formatDuration(p.seconds)}` +
    `${p.html ? ` · <a href="notebooks/${escapeHtml(p.notebook)}">executed .ipynb</a>` : ""}` +
    `${p.failure ? ` · <strong class="fail">failed</strong>` : ""}</span></li>`
  ).join("\n");
  const section = (name: string, caption: string) => {
    const rs = runsOfProfile(records, name);
    return rs.length
      ? runsIndexTable(rs, caption)
      : `<p><em>${escapeHtml(caption)}: no run records.</em></p>`;
  };
  return `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>MNIST CNN study — report</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font:15px/1.5 system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
.meta{color:#666;font-size:13px}.fail{color:#b00}
table.runs{border-collapse:collapse;font-size:13px;margin:1em 0;width:100%}
table.runs th,table.runs td{border:1px solid #ddd;padding:3px 8px;vertical-align:top}
table.runs th{background:#f6f6f6;text-align:left}
table.runs .num{text-align:right;white-space:nowrap}
table.runs caption{text-align:left;font-weight:bold;padding:4px 0}
</style></head><body>
<h1>MNIST CNN study — report</h1>
<p class="meta">Generated ${new Date().toISOString().slice(0, 16).replace("T", " ")} UTC · profile
<strong>${escapeHtml(profile)}</strong> · run records from <code>${
    escapeHtml(repoRelative(runsRoot()))
  }</code></p>
<h2>Notebooks</h2>
<ol style="list-style:none;padding-left:0">
${rows}
</ol>
<h2>All runs</h2>
<p>Full-profile runs are the study's settings; reduced-profile runs use the study's epochs on a
tenth of the data; quick-profile runs are smoke tests. Each is listed apart. Parameters count a
transfer model's frozen base; time includes its one feature pass. Notebook 07 has every column.</p>
${section("full", "full-profile runs")}
${section("reduced", "reduced-profile runs")}
${section("quick", "quick-profile runs (smoke tests)")}
</body></html>
`;
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
        : `✓ ${basename(nb)} (${page.seconds.toFixed(1)} s) → ${page.html}`,
    );
  }
  await Deno.writeTextFile(join(outDir, "index.html"), await indexHtml(pages, profile));
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
  if (plan.length === 0) return [];
  const warning = fullProfileWarning(plan, profile, backend);
  return [
    `plan on ${backend.name} (${backend.precision}):`,
    ...planLines(plan).map((l) => `  ${l}`),
    ...(warning ? [warning] : []),
  ];
}

const HELP = `deno task report [options]

Executes notebooks/*.ipynb in order with the Deno Jupyter kernel and writes HTML pages
plus an index to outputs/html/ (executed notebooks in outputs/html/notebooks/). First runs the
set-up step (deno task setup report): installs Jupyter and the Deno kernel when it can.

Options:
  --only 01,07       run only these notebooks (number prefix or file name)
  --out DIR          output folder (default outputs/html)
  --timeout SECONDS  per-cell time limit (default: none)
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
  return { help: false as const, only, outDir: values.out, timeoutS };
}

async function main(): Promise<number> {
  let opts: ReturnType<typeof parseReportArgs>;
  try {
    opts = parseReportArgs(Deno.args);
  } catch (e) {
    console.error(`report: ${(e as Error).message}\n\n${HELP}`);
    return 2;
  }
  if (opts.help) {
    console.log(HELP);
    return 0;
  }
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

if (import.meta.main) Deno.exit(await main());

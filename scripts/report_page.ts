/**
 * The report's pages as a reader gets them: nbconvert's template for chart outputs, the
 * post-processing that makes an exported page self-contained (live Vega charts from scripts
 * inlined once, the SVG kept for readers without JavaScript, the unused part of JupyterLab's
 * style sheet dropped), and the index page with the runs tables.
 */
import * as vl from "vega-lite";
import { escapeHtml, publicPath } from "../lib/report/display.ts";
import { VEGALITE_MIME } from "../lib/report/charts.ts";
import { runsOfProfile, runsTable } from "../lib/report/compare.ts";
import { formatDuration } from "../lib/report/format.ts";
import { loadRuns, type RunRecord, runsRoot } from "../lib/runs/runs.ts";
import { type RunRow, RUNS_TABLE_CSS, runsTableHtml } from "../lib/report/runs_html.ts";

/**
 * nbconvert's lab template with chart outputs written as we need them. Some builds (Debian's
 * 6.5.3) run every SVG through lxml's `clean_html`, which strips all SVG elements and leaves only
 * the text: our SVG comes from our own vega renderer, so it passes through as it is. A chart with
 * a Vega-Lite spec gets a slot for the live chart, its SVG as the fallback, and the spec.
 */
export const TEMPLATE = `{%- extends 'lab/index.html.j2' -%}
{% block data_svg scoped -%}
<div class="jp-RenderedSVG jp-OutputArea-output {{ extra_class }}" data-mime-type="image/svg+xml">
{%- if '${VEGALITE_MIME}' in output.data %}
<div class="vega-live"></div>
<div class="vega-fallback">{{ output.data['image/svg+xml'] }}</div>
<script type="${VEGALITE_MIME}" class="vega-spec">{{ output.data['${VEGALITE_MIME}'] | tojson }}</script>
{%- else %}
{{ output.data['image/svg+xml'] }}
{%- endif %}
</div>
{%- endblock data_svg %}
`;

/** One package's browser build, read from the installed npm package (no network at export). */
function browserBuild(pkg: string, file: string): string {
  return Deno.readTextFileSync(new URL(`./${file}`, import.meta.resolve(pkg)));
}

/**
 * Draws every chart with vega-embed once the page has loaded; the fallback SVG goes only when
 * the live chart is drawn. Specs are Vega (compiled here from Vega-Lite), so the page needs
 * vega and vega-embed but not the Vega-Lite compiler.
 */
const EMBED_CHARTS = `(function () {
  if (!window.vega || !window.vegaEmbed) return;
  document.querySelectorAll("script.vega-spec").forEach(function (s) {
    var box = s.parentNode, live = box.querySelector(".vega-live");
    var fallback = box.querySelector(".vega-fallback");
    vegaEmbed(live, JSON.parse(s.textContent), { mode: "vega", renderer: "svg", actions: false })
      .then(function () { fallback.style.display = "none"; })
      .catch(function (e) { live.remove(); console.warn("chart left as SVG:", e); });
  });
})();`;

/** Significant digits of a live chart's numbers: finer than any axis or tooltip shows. */
const CHART_DIGITS = 6;

/**
 * A chart's spec as JSON that is safe inside a `<script>` element, every non-integer number
 * written to `CHART_DIGITS` significant digits: the data carries float64 values with 17 digits
 * that no axis or tooltip shows (about 50 kB of notebook 04's page).
 */
function specJson(spec: unknown): string {
  const round = (_: string, v: unknown) =>
    typeof v === "number" && !Number.isInteger(v) ? Number(v.toPrecision(CHART_DIGITS)) : v;
  return JSON.stringify(spec, round).replace(/</g, "\\u003c").replace(/>/g, "\\u003e")
    .replace(/&/g, "\\u0026");
}

const SPEC_RE = new RegExp(
  `<script type="${
    VEGALITE_MIME.replace(/[.+]/g, "\\$&")
  }" class="vega-spec">([\\s\\S]*?)</script>`,
  "g",
);

/**
 * Makes the page's charts live: each Vega-Lite spec compiled to Vega, with vega and vega-embed
 * inlined once before `</body>` (none when the page has no chart).
 */
export function embedCharts(html: string): string {
  let charts = 0;
  const out = html.replace(SPEC_RE, (_, json: string) => {
    charts++;
    const spec = vl.compile(JSON.parse(json) as vl.TopLevelSpec).spec;
    return `<script type="application/json" class="vega-spec">${specJson(spec)}</script>`;
  });
  if (charts === 0) return out;
  const scripts = [
    browserBuild("vega", "vega.min.js"),
    browserBuild("vega-embed", "vega-embed.min.js"),
    EMBED_CHARTS,
  ].map((js) => `<script>${js.replace(/<\/script/gi, "<\\/script")}</script>`).join("\n");
  return out.replace(/<\/body>/i, () => `${scripts}\n</body>`);
}

/** The class names a compound selector needs on one element (those inside `:not()` excluded). */
function requiredClasses(selector: string): string[] {
  return [...selector.replace(/:not\([^)]*\)/g, "").matchAll(/\.(-?[_a-zA-Z][\w-]*)/g)]
    .map((m) => m[1]);
}

/**
 * Drops the style rules no element of the page can match: a rule stays when one of its
 * selectors needs only class names that occur in the page (JupyterLab's sheet is ~0.5 MB,
 * mostly Blueprint widgets an exported notebook never shows). Comments go too.
 */
export function pruneCss(css: string, classes: Set<string>): string {
  const keep = (selectors: string) =>
    selectors.split(",").some((s) =>
      /:(is|where|has)\(/.test(s) || requiredClasses(s).every((c) => classes.has(c))
    );
  const text = css.replace(/\/\*[\s\S]*?\*\//g, "");
  let out = "", i = 0;
  while (i < text.length) {
    const open = text.indexOf("{", i);
    if (open < 0) break;
    const head = text.slice(i, open).trim();
    // the matching close brace (at-rules like @media nest rules)
    let depth = 1, j = open + 1;
    while (j < text.length && depth > 0) {
      if (text[j] === "{") depth++;
      else if (text[j] === "}") depth--;
      j++;
    }
    const body = text.slice(open + 1, j - 1);
    if (head.startsWith("@media") || head.startsWith("@supports")) {
      const inner = pruneCss(body, classes);
      if (inner.trim()) out += `${head}{${inner}}\n`;
    } else if (head.startsWith("@") || keep(head)) {
      out += `${head}{${body.trim()}}\n`;
    }
    i = j;
  }
  return out;
}

/** The page with every `<style>` pruned to what its elements can use. */
export function pruneStyles(html: string): string {
  const classes = new Set(
    [...html.matchAll(/\bclass=["']([^"']*)["']/g)].flatMap((m) => m[1].split(/\s+/)),
  );
  return html.replace(
    /(<style\b[^>]*>)([\s\S]*?)(<\/style>)/gi,
    (_, open: string, css: string, close: string) => `${open}${pruneCss(css, classes)}${close}`,
  );
}

/**
 * Makes an nbconvert HTML page self-contained: drops the `<script src>` tags the template adds
 * (require.js and MathJax, from file:// or a CDN — the notebooks need neither), inlines what the
 * live charts need, prunes the style sheet, and adds a link back to the index.
 */
export function selfContained(html: string, title: string): string {
  const noExternal = html.replace(/<script\b[^>]*\bsrc=["'][^"']*["'][^>]*>\s*<\/script>/gi, "")
    .replace(/<link\b[^>]*\bhref=["'](?:https?:|file:|\/\/)[^"']*["'][^>]*>/gi, "");
  const nav =
    `<nav style="font:14px sans-serif;padding:8px 16px"><a href="index.html">← all notebooks</a> · ` +
    `${escapeHtml(title)}</nav>`;
  return embedCharts(pruneStyles(noExternal)).replace(/<body([^>]*)>/i, (b) => `${b}\n${nav}`);
}

/** A page's weight as a reader downloads it: "1.23 MB", "512 kB". */
export function pageWeight(bytes: number): string {
  return bytes >= 1e6 ? `${(bytes / 1e6).toFixed(2)} MB` : `${Math.round(bytes / 1e3)} kB`;
}

/** What an exported page should weigh at most, its chart scripts included. */
export const PAGE_WEIGHT_GOAL = 1.5e6;

/** The weight as the report's log shows it, flagged when over the goal. */
export function weightNote(bytes: number): string {
  return bytes > PAGE_WEIGHT_GOAL
    ? `${pageWeight(bytes)}, over the ${pageWeight(PAGE_WEIGHT_GOAL)} goal`
    : pageWeight(bytes);
}

/** One notebook's outcome. */
export interface PageResult {
  notebook: string;
  title: string;
  html: string | null;
  seconds: number;
  failure: string | null;
  /** The exported page's size in bytes (null when it failed). */
  bytes?: number | null;
}

/**
 * The index's runs table for one profile: grouped by section, best first (lib/report/runs_html.ts);
 * the run id, device and weights caveat are in tooltips where they are shortened.
 */
export function runsIndexTable(records: RunRecord[], caption: string): string {
  return runsTableHtml(runsTable(records).toRecords() as RunRow[], records, caption);
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
    `${p.bytes ? ` · ${pageWeight(p.bytes)}` : ""}` +
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
${RUNS_TABLE_CSS}
</style></head><body>
<h1>MNIST CNN study — report</h1>
<p class="meta">Generated ${new Date().toISOString().slice(0, 16).replace("T", " ")} UTC · profile
<strong>${escapeHtml(profile)}</strong> · run records from <code>${
    escapeHtml(publicPath(runsRoot()))
  }</code> and <code>records/</code></p>
<h2>Notebooks</h2>
<ol style="list-style:none;padding-left:0">
${rows}
</ol>
<h2>All runs</h2>
<p>Full-profile runs are the study's settings; reduced-profile runs use the study's epochs on a
tenth of the data; quick-profile runs are smoke tests. Each is listed apart, grouped by notebook,
best test accuracy first. Parameters count a transfer model's frozen base; time includes its one
feature pass. Hover over a shortened value for the whole of it (the run column holds the run
record's name).</p>
${section("full", "full-profile runs")}
${section("reduced", "reduced-profile runs")}
${section("quick", "quick-profile runs (smoke tests)")}
</body></html>
`;
}

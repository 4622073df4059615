/**
 * The runs table as the pages show it (notebook 07 and the report's index): one block per
 * section, best test accuracy first within it, and every long value (run id, device, weights
 * caveat) shortened with its full text in a tooltip (`title`), so the table fits a 1280-px
 * window. Rows come from `runsTable` (lib/report/compare.ts); the records add seed and notes.
 */
import { escapeHtml } from "./display.ts";
import { formatDuration } from "./format.ts";
import type { RunRecord } from "../runs/runs.ts";

/** One row of `runsTable` (lib/report/compare.ts), by column name. */
export type RunRow = Record<string, unknown>;

/** The columns this table lays out itself; any other column of `runsTable` is shown as it is. */
const KNOWN = new Set([
  "model",
  "section",
  "profile",
  "parameters",
  "trained",
  "epochs",
  "stopped",
  "wall_s",
  "extract_s",
  "samples_per_s",
  "backend",
  "test_accuracy",
  "weights",
  "run",
]);

/** A count as a reader takes it in: 1,407,178 → "1.41 M", 20,490 → "20.5 k". */
function shortCount(n: number): string {
  return n >= 1e6
    ? `${(n / 1e6).toPrecision(3)} M`
    : n >= 1e3
    ? `${(n / 1e3).toPrecision(3)} k`
    : `${n}`;
}

/** `text` cut to `max` characters with "…", the whole of it in the tooltip when cut. */
export function shortened(text: string, max: number): string {
  if (text.length <= max) return escapeHtml(text);
  return `<span title="${escapeHtml(text)}">${
    escapeHtml(text.slice(0, max - 1).trimEnd())
  }…</span>`;
}

/** What sets a run apart from its neighbours: its seed when not the notebooks' 42, and caveats. */
function notes(r: RunRecord | undefined): string[] {
  if (!r) return [];
  const c = r.config;
  const train = c.keyParts.data.trainSamples;
  return [
    c.seed !== undefined && c.seed !== null && c.seed !== 42 ? `seed ${c.seed}` : "",
    train < c.profile.trainSamples
      ? `first steps only: ${train.toLocaleString("en-US")} train digits`
      : "",
    c.keyParts.training.loss === "clipped" ? "tfjs's clipped loss" : "",
  ].filter(Boolean);
}

/** "2026-11-28T08-52-54_baseline_cnn_full_54f0" → "11-28 08:52" (the whole id in the tooltip). */
function runStamp(id: string): string {
  const m = id.match(/^\d{4}-(\d\d-\d\d)T(\d\d)-(\d\d)/);
  return m ? `${m[1]} ${m[2]}:${m[3]}` : id.slice(0, 12);
}

/** "cpu-fast (OpenBLAS 0.3.21)" → the backend, its device's short name under it. */
function backendCell(backend: string): string {
  const m = backend.match(/^(\S+) \((.*)\)$/);
  return m
    ? `${escapeHtml(m[1])}<br><span class="meta">${shortened(m[2], 24)}</span>`
    : shortened(backend, 24);
}

function extraCell(v: unknown): string {
  if (typeof v === "number") {
    return Number.isInteger(v) ? v.toLocaleString("en-US") : v.toPrecision(4);
  }
  return v === null || v === undefined ? "" : shortened(String(v), 24);
}

/**
 * The runs table as HTML: a header row per section (in section order), its runs by test accuracy,
 * best first. `rows` are `runsTable(records)` rows; `records` the same runs (for seed and notes).
 */
export function runsTableHtml(rows: RunRow[], records: RunRecord[], caption: string): string {
  const byId = new Map(records.map((r) => [r.id, r]));
  const extras = rows.length ? Object.keys(rows[0]).filter((k) => !KNOWN.has(k)) : [];
  const head = [
    ["model", ""],
    ["test accuracy", "num"],
    ...extras.map((e) => [escapeHtml(e), "num"]),
    ["parameters<br>trained", "num"],
    ["epochs", "num"],
    ["wall_s<br>extract_s", "num"],
    ["samples_<wbr>per_s", "num"],
    ["backend", ""],
    ["weights", ""],
    ["run", ""],
  ];
  const sections = [...new Set(rows.map((r) => String(r.section)))].sort();
  const body = sections.flatMap((section) => {
    const group = rows.filter((r) => String(r.section) === section)
      .sort((a, b) => Number(b.test_accuracy) - Number(a.test_accuracy));
    return [
      `<tr class="section"><th colspan="${head.length}" scope="rowgroup">${
        escapeHtml(section)
      } <span class="meta">(${group.length} run${group.length === 1 ? "" : "s"})</span></th></tr>`,
      ...group.map((r) => rowHtml(r, byId.get(String(r.run)), extras)),
    ];
  }).join("\n");
  const th = head.map(([h, c]) => `<th${c ? ` class="${c}"` : ""}>${h}</th>`).join("");
  return `<table class="runs"><caption>${escapeHtml(caption)}</caption>` +
    `<thead><tr>${th}</tr></thead><tbody>\n${body}\n</tbody></table>`;
}

function rowHtml(r: RunRow, record: RunRecord | undefined, extras: string[]): string {
  const num = (v: string, title = "") =>
    `<td class="num"${title ? ` title="${escapeHtml(title)}"` : ""}>${v}</td>`;
  const meta = (s: string) => `<br><span class="meta">${s}</span>`;
  const params = Number(r.parameters), trained = Number(r.trained);
  const wall = Number(r.wall_s), extract = Number(r.extract_s ?? 0);
  const noteText = notes(record).map(escapeHtml).join(" · ");
  const device = record?.config.backend.device ?? "";
  return "<tr>" +
    `<td>${escapeHtml(String(r.model))}${noteText ? meta(noteText) : ""}</td>` +
    num(`<strong>${(Number(r.test_accuracy) * 100).toFixed(2)} %</strong>`) +
    extras.map((e) => `<td class="num wrap">${extraCell(r[e])}</td>`).join("") +
    num(
      `${shortCount(params)}${trained < params ? meta(`${shortCount(trained)} trained`) : ""}`,
      `${params.toLocaleString("en-US")} parameters, ${trained.toLocaleString("en-US")} trained`,
    ) +
    num(`${r.epochs}${r.stopped ? meta(escapeHtml(String(r.stopped))) : ""}`) +
    num(
      `${escapeHtml(formatDuration(wall))}${
        extract > 0 ? meta(`base ${escapeHtml(formatDuration(extract))}`) : ""
      }`,
      `${wall.toFixed(0)} s${
        extract > 0 ? `, of which ${extract.toFixed(0)} s the base's pass` : ""
      }`,
    ) +
    num(Number(r.samples_per_s).toFixed(0)) +
    `<td${device ? ` title="${escapeHtml(device)}"` : ""}>${backendCell(String(r.backend))}</td>` +
    `<td>${shortened(String(r.weights), 34)}</td>` +
    `<td class="run" title="run ${escapeHtml(String(r.run))}"><code>${
      runStamp(String(r.run))
    }</code></td>` +
    "</tr>";
}

/**
 * The table's style: the report's index brings it in its head, notebook outputs inline with the
 * table. Selectors are doubled (`.runs.runs`) to outweigh JupyterLab's, which right-align every
 * cell of an output's table.
 */
export const RUNS_TABLE_CSS =
  `table.runs.runs{border-collapse:collapse;font-size:13px;margin:1em 0;width:100%}
table.runs.runs th,table.runs.runs td{border:1px solid #ddd;padding:3px 6px;vertical-align:top;text-align:left}
table.runs.runs thead th{background:#f6f6f6}
table.runs.runs tr.section th{background:#eef3f8;font-weight:bold}
table.runs.runs td:first-child{min-width:15em;overflow-wrap:anywhere}
table.runs.runs .num{text-align:right;white-space:nowrap}
table.runs.runs td.run,table.runs.runs td.run code{white-space:nowrap}
table.runs.runs .num.wrap{white-space:normal}
table.runs.runs .meta{color:#666;font-size:12px;white-space:normal}
table.runs.runs caption{text-align:left;font-weight:bold;padding:4px 0}`;

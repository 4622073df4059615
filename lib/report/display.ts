/**
 * Notebook outputs as plain objects: anything with a `Symbol.for("Jupyter.display")` method is
 * shown by the Deno kernel, so the library runs (and is tested) outside a kernel too.
 */
import pl from "nodejs-polars";
import { envVar, REPO_ROOT, repoRelative } from "../machine/env.ts";

export const DISPLAY = Symbol.for("Jupyter.display");

/**
 * How long to yield after each display in a kernel. Deno's kernel sends display messages from
 * another task; a zero-length yield was enough on an idle machine, but under heavy CPU load
 * nbconvert still lost an occasional output. A few milliseconds per display costs nothing.
 */
const DISPLAY_SETTLE_MS = 25;

export type MimeBundle = Record<string, unknown>;

/** An object that the Deno kernel renders with the given MIME bundle. */
export function displayable<T extends object>(obj: T, bundle: () => MimeBundle): T & Displayable {
  return Object.assign(obj, { [DISPLAY]: bundle });
}

/** Anything the Deno kernel can render. */
export interface Displayable {
  [DISPLAY]: () => MimeBundle;
}

interface JupyterApi {
  display(
    obj: unknown,
    opts?: { raw?: boolean; update?: boolean; display_id?: string },
  ): Promise<void>;
}

/** `Deno.jupyter` exists only under `deno jupyter`; elsewhere its getter throws. */
function findJupyter(): JupyterApi | undefined {
  try {
    return (Deno as unknown as { jupyter?: JupyterApi }).jupyter;
  } catch {
    return undefined;
  }
}
const jupyter = findJupyter();

/** Shows a bundle now (in a kernel), or prints its text/plain part (elsewhere). */
export async function show(bundle: MimeBundle): Promise<void> {
  if (jupyter) {
    await jupyter.display(bundle, { raw: true });
    // Deno's kernel queues display messages and sends them from another task; without giving
    // it a turn, a cell can report "done" first and nbconvert drops its last outputs.
    await new Promise((resolve) => setTimeout(resolve, DISPLAY_SETTLE_MS));
  } else console.log(String(bundle["text/plain"] ?? ""));
}

/**
 * A folder as a published page may name it: relative to the repository when inside it, else
 * only its last name ("…/runs"), so that no page shows the machine's own paths.
 */
export function publicPath(path: string): string {
  const rel = repoRelative(path);
  if (!rel.startsWith("/")) return rel;
  return `…/${rel.replace(/\/+$/, "").split("/").pop()}`;
}

/**
 * Text (an error's detail, say) with this machine's paths made public: the repository's folder
 * dropped (paths become repository-relative) and the home folder written `~`.
 */
export function publicText(text: string): string {
  const home = envVar("HOME")?.replace(/\/+$/, "");
  const out = text.split(REPO_ROOT).join("");
  return home && home.length > 1 ? out.split(home).join("~") : out;
}

/** Text made safe for HTML, in element content and in quoted attribute values alike. */
export function escapeHtml(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(
    /"/g,
    "&quot;",
  );
}

/** Sends one display message for a slot (`update`: rewrite it); a kernel's, or a test's fake. */
export type DisplaySend = (
  bundle: MimeBundle,
  opts: { display_id: string; update: boolean },
) => Promise<void>;

/** The kernel's sender (`Deno.jupyter.display`), or undefined outside a kernel. */
const kernelSend: DisplaySend | undefined = jupyter &&
  (async (bundle, opts) => {
    await jupyter.display(bundle, { raw: true, ...opts });
    // As in show(): let the kernel send the message before the cell can finish.
    await new Promise((resolve) => setTimeout(resolve, DISPLAY_SETTLE_MS));
  });

/**
 * An output rewritten in place (Jupyter's `display_id` + `update_display_data`): the saved
 * notebook and its exported page keep the last state. Outside a kernel it shows nothing.
 */
export class LiveOutput {
  #id = `live-${crypto.randomUUID()}`;
  #shown = false;
  constructor(private readonly send: DisplaySend | undefined = kernelSend) {}

  /** Whether updates go anywhere (in a kernel, or to a given sender). */
  get active(): boolean {
    return this.send !== undefined;
  }

  async update(bundle: MimeBundle): Promise<void> {
    if (!this.send) return;
    await this.send(bundle, { display_id: this.#id, update: this.#shown });
    this.#shown = true;
  }

  /** Leaves the current output as it is; the next update starts a new one below it. */
  detach(): void {
    this.#id = `live-${crypto.randomUUID()}`;
    this.#shown = false;
  }
}

/**
 * A line rewritten in place: a live progress line in a notebook, a plain log line per update
 * in a terminal (unless `quietOutsideKernel`).
 */
export class LiveText {
  #out: LiveOutput;
  constructor(private readonly quietOutsideKernel = false, send?: DisplaySend) {
    this.#out = new LiveOutput(send ?? kernelSend);
  }

  async update(text: string): Promise<void> {
    if (!this.#out.active) {
      if (!this.quietOutsideKernel) console.log(text);
      return;
    }
    await this.#out.update({ "text/plain": text, "text/html": `<pre>${escapeHtml(text)}</pre>` });
  }

  /** Leaves the current output as it is; the next update starts a new one below it. */
  detach(): void {
    this.#out.detach();
  }
}

/** A polars DataFrame as a notebook table (HTML), with the plain-text table as fallback. */
export function table(df: pl.DataFrame, caption?: string): { df: pl.DataFrame } & Displayable {
  return displayable({ df }, () => ({
    "text/html": tableHtml(df, caption),
    "text/plain": (caption ? caption + "\n" : "") + df.toString(),
  }));
}

function formatCell(v: unknown): string {
  if (typeof v === "number") {
    if (Number.isInteger(v)) return v.toLocaleString("en-US");
    return Math.abs(v) >= 100 ? v.toFixed(1) : Math.abs(v) >= 1 ? v.toFixed(3) : v.toPrecision(4);
  }
  return v === null || v === undefined ? "" : String(v);
}

/** Renders a DataFrame as a compact HTML table (numbers right-aligned, integers with separators). */
export function tableHtml(df: pl.DataFrame, caption?: string): string {
  const cols = df.columns;
  const head = cols.map((c) => `<th>${escapeHtml(c)}</th>`).join("");
  const rows = (df.toRecords() as Record<string, unknown>[]).map((r) =>
    "<tr>" +
    cols.map((c) => {
      const align = typeof r[c] === "number" ? ' style="text-align:right"' : "";
      return `<td${align}>${escapeHtml(formatCell(r[c]))}</td>`;
    }).join("") + "</tr>"
  ).join("");
  const cap = caption ? `<caption>${escapeHtml(caption)}</caption>` : "";
  return `<table class="dataframe">${cap}<thead><tr>${head}</tr></thead><tbody>${rows}</tbody></table>`;
}

/** A short text as a Markdown output (e.g. a visible notice box). */
export function markdown(text: string): Displayable {
  return displayable({}, () => ({ "text/markdown": text, "text/plain": text }));
}

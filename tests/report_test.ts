/**
 * The report end to end: executes the notebooks with nbconvert and the Deno kernel (the test
 * that runs the notebooks in CI), then opens every exported page in headless Chromium over the
 * DevTools protocol and checks that each chart is drawn and that nothing was fetched from
 * outside the page. Without jupyter it skips — except under CI, where it fails.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import {
  checkTools,
  errorOutputs,
  parseNbconvertFailure,
  report,
  ReportError,
  selfContained,
} from "../scripts/report.ts";

const REPO = fileURLToPath(new URL("../", import.meta.url));
const CHROMIUM = Deno.env.get("CHROMIUM") ?? "/usr/bin/chromium";
const IN_CI = Boolean(Deno.env.get("CI"));

async function toolsMissing(): Promise<string | null> {
  try {
    await checkTools();
    return null;
  } catch (e) {
    return (e as Error).message;
  }
}
const missing = await toolsMissing() ??
  (await Deno.stat(CHROMIUM).then(
    () => null,
    () => `Chromium not found at ${CHROMIUM} (set CHROMIUM=…)`,
  ));
if (missing && !IN_CI) console.warn(`report_test: skipping the notebook runs — ${missing}`);

/** Runs `deno task report` as a user would, with the given environment; output goes to the test log. */
async function runReport(args: string[], env: Record<string, string>): Promise<number> {
  const cmd = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", join(REPO, "scripts", "report.ts"), ...args],
    env,
    cwd: REPO,
    stdout: "inherit",
    stderr: "inherit",
  });
  return (await cmd.output()).code;
}

interface NotebookJson {
  cells: {
    cell_type: string;
    source: string | string[];
    outputs?: { output_type: string; data?: Record<string, unknown> }[];
  }[];
}

async function readNotebook(path: string): Promise<NotebookJson> {
  return JSON.parse(await Deno.readTextFile(path));
}

/** Number of SVG chart outputs a notebook holds (each must become one inline `<svg>` in the page). */
function svgOutputs(nb: NotebookJson): number {
  return nb.cells.flatMap((c) => c.outputs ?? []).filter((o) => o.data && "image/svg+xml" in o.data)
    .length;
}

// ---------------------------------------------------------------- a tiny DevTools client

interface PageReport {
  /** Each chart output: its rendered size and how many drawn elements it holds. */
  charts: { width: number; height: number; marks: number }[];
  /** Every URL the page asked for other than itself and data: URLs. */
  requests: string[];
  failed: string[];
  brokenImages: string[];
  exceptions: string[];
}

/**
 * Opens `url` in headless Chromium and reports what the page drew and fetched. Uses the
 * DevTools protocol over a WebSocket: `--dump-dom` cannot say whether an SVG was laid out
 * or whether a resource failed to load.
 */
async function inspectPage(url: string): Promise<PageReport> {
  const profile = await Deno.makeTempDir({ prefix: "report_test_chromium_" });
  const proc = new Deno.Command(CHROMIUM, {
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      `--user-data-dir=${profile}`,
      "--remote-debugging-port=0",
      "--window-size=1280,1000",
      "about:blank",
    ],
    stdout: "null",
    stderr: "piped",
  }).spawn();
  try {
    const browserWs = await devtoolsUrl(proc.stderr);
    const cdp = await Cdp.connect(browserWs);
    try {
      return await inspectWith(cdp, url);
    } finally {
      await cdp.send("Browser.close").catch(() => {});
      cdp.close();
    }
  } finally {
    try {
      proc.kill("SIGKILL");
    } catch { /* already gone */ }
    await proc.status;
    await Deno.remove(profile, { recursive: true }).catch(() => {});
  }
}

/** Reads Chromium's stderr until it prints the DevTools WebSocket address. */
async function devtoolsUrl(stderr: ReadableStream<Uint8Array>): Promise<string> {
  const reader = stderr.pipeThrough(new TextDecoderStream()).getReader();
  let seen = "";
  const deadline = setTimeout(() => reader.cancel(), 30_000);
  try {
    while (true) {
      const { value, done } = await reader.read();
      if (done) break;
      seen += value;
      const m = seen.match(/DevTools listening on (ws:\/\/\S+)/);
      if (m) {
        // Keep draining stderr so Chromium never blocks on a full pipe.
        (async () => {
          try {
            while (!(await reader.read()).done) { /* discard */ }
          } catch { /* closed */ }
        })();
        return m[1];
      }
    }
  } finally {
    clearTimeout(deadline);
  }
  throw new Error(`Chromium did not start its DevTools endpoint:\n${seen.slice(-2000)}`);
}

type Json = Record<string, unknown>;

class Cdp {
  #next = 1;
  #pending = new Map<number, { resolve: (v: Json) => void; reject: (e: Error) => void }>();
  #listeners: ((method: string, params: Json, sessionId?: string) => void)[] = [];
  private constructor(private ws: WebSocket) {
    ws.onmessage = (ev) => {
      const msg = JSON.parse(String(ev.data));
      if (msg.id !== undefined) {
        const p = this.#pending.get(msg.id);
        this.#pending.delete(msg.id);
        if (msg.error) p?.reject(new Error(`${msg.error.message} (${JSON.stringify(msg.error)})`));
        else p?.resolve(msg.result);
      } else {
        for (const l of this.#listeners) l(msg.method, msg.params, msg.sessionId);
      }
    };
  }

  static connect(url: string): Promise<Cdp> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url);
      ws.onopen = () => resolve(new Cdp(ws));
      ws.onerror = (e) =>
        reject(new Error(`cannot connect to ${url}: ${(e as ErrorEvent).message ?? e}`));
    });
  }

  send(method: string, params: Json = {}, sessionId?: string): Promise<Json> {
    const id = this.#next++;
    this.ws.send(JSON.stringify({ id, method, params, ...(sessionId ? { sessionId } : {}) }));
    return new Promise((resolve, reject) => this.#pending.set(id, { resolve, reject }));
  }

  on(listener: (method: string, params: Json, sessionId?: string) => void): void {
    this.#listeners.push(listener);
  }

  close(): void {
    this.ws.close();
  }
}

const CHART_PROBE = `JSON.stringify({
  charts: [...document.querySelectorAll('[data-mime-type="image/svg+xml"]')].map((box) => {
    const svg = box.querySelector("svg");
    if (!svg) return { width: 0, height: 0, marks: 0 };
    const r = svg.getBoundingClientRect();
    return { width: r.width, height: r.height, marks: svg.querySelectorAll("path, rect, line, circle, text").length };
  }),
  brokenImages: [...document.images].filter((i) => !i.complete || i.naturalWidth === 0).map((i) => i.src),
})`;

async function inspectWith(cdp: Cdp, url: string): Promise<PageReport> {
  const { targetId } = await cdp.send("Target.createTarget", { url: "about:blank" }) as {
    targetId: string;
  };
  const { sessionId } = await cdp.send("Target.attachToTarget", { targetId, flatten: true }) as {
    sessionId: string;
  };
  const requests: string[] = [];
  const failed: string[] = [];
  const exceptions: string[] = [];
  let loaded!: () => void;
  const load = new Promise<void>((r) => loaded = r);
  cdp.on((method, params, sid) => {
    if (sid !== sessionId) return;
    if (method === "Network.requestWillBeSent") {
      const u = String((params.request as Json).url);
      if (u !== url && !u.startsWith("data:")) requests.push(u);
    } else if (method === "Network.loadingFailed") {
      failed.push(`${params.errorText} (${params.requestId})`);
    } else if (method === "Runtime.exceptionThrown") {
      exceptions.push(JSON.stringify((params.exceptionDetails as Json).text ?? params));
    } else if (method === "Page.loadEventFired") {
      loaded();
    }
  });
  for (const domain of ["Network", "Page", "Runtime"]) {
    await cdp.send(`${domain}.enable`, {}, sessionId);
  }
  await cdp.send("Page.navigate", { url }, sessionId);
  let timer: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([
    load,
    new Promise((_, reject) =>
      timer = setTimeout(() => reject(new Error(`${url} did not load in 60 s`)), 60_000)
    ),
  ]).finally(() => clearTimeout(timer));
  const result = await cdp.send("Runtime.evaluate", {
    expression: CHART_PROBE,
    returnByValue: true,
  }, sessionId);
  const probe = JSON.parse(String((result.result as Json).value));
  return { charts: probe.charts, brokenImages: probe.brokenImages, requests, failed, exceptions };
}

/** Asserts a page drew `expected` charts (each laid out, with marks) and needed nothing external. */
async function assertPageRenders(path: string, expectedCharts: number): Promise<void> {
  const name = path.split("/").pop();
  const html = await Deno.readTextFile(path);
  const external = [
    ...html.matchAll(
      /<(?:script|link|img|iframe)\b[^>]*\b(?:src|href)=["']((?:https?:|file:|\/\/)[^"']*)/gi,
    ),
  ]
    .map((m) => m[1]);
  assert.deepEqual(external, [], `${name} refers to external resources`);
  const page = await inspectPage(`file://${path}`);
  assert.equal(
    page.charts.length,
    expectedCharts,
    `${name}: ${expectedCharts} chart outputs expected in the page`,
  );
  page.charts.forEach((c, i) => {
    assert.ok(
      c.width > 50 && c.height > 50,
      `${name}: chart ${i + 1} is not laid out (${c.width}×${c.height})`,
    );
    assert.ok(
      c.marks > 10,
      `${name}: chart ${i + 1} has no drawn marks — was the SVG sanitised away?`,
    );
  });
  assert.deepEqual(page.requests, [], `${name} fetched resources besides itself`);
  assert.deepEqual(page.failed, [], `${name}: resources failed to load`);
  assert.deepEqual(page.brokenImages, [], `${name}: broken images`);
  assert.deepEqual(page.exceptions, [], `${name}: script errors`);
}

// ---------------------------------------------------------------- tests

Deno.test("parseNbconvertFailure names the failing cell", () => {
  const nb = {
    cells: [
      { cell_type: "markdown", source: "# t" },
      { cell_type: "code", source: ["const a = 1;\n", "a"] },
      { cell_type: "code", source: "throw new Error('boom')" },
    ],
  };
  const stderr =
    "Traceback...\nnbclient.exceptions.CellExecutionError: An error occurred while executing the " +
    "following cell:\n------------------\nthrow new Error('boom')\n------------------\n\n\x1b[31mError: boom\x1b[0m\n" +
    "    at <anonymous>:1:7\n";
  const f = parseNbconvertFailure(stderr, nb);
  assert.equal(f.cell, 2);
  assert.equal(f.firstLine, "throw new Error('boom')");
  assert.match(f.error, /^Error: boom/);
  assert.equal(parseNbconvertFailure("kernel died\n", nb).cell, null);
  assert.deepEqual(
    errorOutputs({
      cells: [{
        cell_type: "code",
        source: "",
        outputs: [{ output_type: "error", ename: "E", evalue: "v" }],
      }],
    }),
    [{ cell: 0, ename: "E", evalue: "v" }],
  );
});

Deno.test("selfContained drops external scripts and links back to the index", () => {
  const html =
    `<html><head><script src="file:///usr/share/javascript/requirejs/require.min.js"></script>` +
    `<script src="https://cdn.example/mathjax.js"></script><script>inline()</script></head><body class="x"><svg></svg></body></html>`;
  const out = selfContained(html, "1. Data");
  assert.ok(!out.includes("require.min.js") && !out.includes("cdn.example"));
  assert.ok(out.includes("<script>inline()</script>"));
  assert.match(out, /<body class="x">\n<nav[^>]*><a href="index.html">/);
});

Deno.test({
  name: "report: notebook 07 on the fixture run records — table, charts, browser check",
  ignore: Boolean(missing) && !IN_CI,
  async fn() {
    if (missing) throw new Error(`required in CI: ${missing}`);
    const out = await Deno.makeTempDir({ prefix: "report_test_fixtures_" });
    try {
      const code = await runReport(["--only", "07", "--out", out], {
        RUNS_DIR: join(REPO, "tests", "fixtures", "runs"),
        MNIST_PROFILE: "quick",
      });
      assert.equal(code, 0, "the report failed (see the log above)");
      const nb = await readNotebook(join(out, "notebooks", "07_comparison.ipynb"));
      assert.deepEqual(errorOutputs(nb as Parameters<typeof errorOutputs>[0]), []);
      // Five full-profile fixture runs and one quick: three charts for each profile.
      assert.equal(svgOutputs(nb), 6);
      const page = await Deno.readTextFile(join(out, "07_comparison.html"));
      assert.ok(
        page.includes("vgg16_scratch") && page.includes("collapsed"),
        "the findings name the collapse",
      );
      assert.ok(
        page.includes("random features (ImageNet weights unavailable)"),
        "labels are shown",
      );
      const index = await Deno.readTextFile(join(out, "index.html"));
      assert.match(index, /<a href="07_comparison.html">7\. Comparison/);
      assert.ok(
        index.includes("resnet152v2_head") && index.includes("<table"),
        "the index has the runs table",
      );
      await assertPageRenders(join(out, "07_comparison.html"), 6);
      await assertPageRenders(join(out, "index.html"), 0);
    } finally {
      await Deno.remove(out, { recursive: true });
    }
  },
});

Deno.test({
  name: "report: every notebook in the quick profile runs cleanly and renders in Chromium",
  ignore: Boolean(missing) && !IN_CI,
  async fn() {
    if (missing) throw new Error(`required in CI: ${missing}`);
    const out = await Deno.makeTempDir({ prefix: "report_test_quick_" });
    const runs = await Deno.makeTempDir({ prefix: "report_test_runs_" });
    try {
      const notebooks = [...Deno.readDirSync(join(REPO, "notebooks"))]
        .filter((e) => e.isFile && e.name.endsWith(".ipynb"))
        .map((e) => e.name).sort();
      console.log(`report_test: executing ${notebooks.join(", ")} (quick profile)`);
      // Quick runs write their records to a scratch folder, never into outputs/runs.
      const code = await runReport(["--out", out], { RUNS_DIR: runs, MNIST_PROFILE: "quick" });
      assert.equal(code, 0, "the report failed (see the log above for the notebook and cell)");
      for (const name of notebooks) {
        const nb = await readNotebook(join(out, "notebooks", name));
        assert.deepEqual(
          errorOutputs(nb as Parameters<typeof errorOutputs>[0]),
          [],
          `${name} has error outputs`,
        );
        const html = join(out, name.replace(/\.ipynb$/, ".html"));
        const charts = svgOutputs(nb);
        const inline = (await Deno.readTextFile(html)).match(/<svg\b/g)?.length ?? 0;
        assert.ok(
          inline >= charts,
          `${name}: ${charts} SVG outputs but ${inline} inline <svg> in the page`,
        );
        await assertPageRenders(html, charts);
      }
      await assertPageRenders(join(out, "index.html"), 0);
    } finally {
      await Deno.remove(out, { recursive: true });
      await Deno.remove(runs, { recursive: true });
    }
  },
});

Deno.test({
  name: "report: a failing notebook is named, with its cell and error",
  ignore: Boolean(missing) && !IN_CI,
  async fn() {
    if (missing) throw new Error(`required in CI: ${missing}`);
    const dir = await Deno.makeTempDir({ prefix: "report_test_failing_" });
    try {
      const cell = (source: string) => ({
        cell_type: "code",
        execution_count: null,
        metadata: {},
        outputs: [],
        source,
      });
      const nb = {
        cells: [
          { cell_type: "markdown", metadata: {}, source: "# Broken" },
          cell("const a = 1;\na"),
          cell("throw new Error('boom in cell 3')"),
        ],
        metadata: { kernelspec: { name: "deno", display_name: "Deno", language: "typescript" } },
        nbformat: 4,
        nbformat_minor: 5,
      };
      await Deno.mkdir(join(dir, "nb"));
      await Deno.writeTextFile(join(dir, "nb", "01_broken.ipynb"), JSON.stringify(nb));
      await assert.rejects(
        report({ notebooksDir: join(dir, "nb"), outDir: join(dir, "html"), log: () => {} }),
        (e: Error) => {
          assert.ok(e instanceof ReportError, String(e));
          assert.match(
            e.message,
            /notebook 01_broken\.ipynb failed in cell 3 \(`throw new Error\('boom in cell 3'\)`\)/,
          );
          assert.match(e.message, /Error: boom in cell 3/);
          return true;
        },
      );
      const index = await Deno.readTextFile(join(dir, "html", "index.html"));
      assert.match(index, /Broken.*failed/s, "the index marks the failed notebook");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

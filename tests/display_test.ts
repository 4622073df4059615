import assert from "node:assert/strict";
import pl from "nodejs-polars";
import {
  DISPLAY,
  LiveOutput,
  LiveText,
  markdown,
  type MimeBundle,
  publicPath,
  publicText,
  table,
  tableHtml,
} from "../lib/report/display.ts";

Deno.test("table(): an HTML table with a text fallback, numbers formatted", () => {
  const df = pl.DataFrame({ model: ["a<b", "c"], params: [1407178, 10], acc: [0.98765, 0.5] });
  const bundle = table(df, "runs")[DISPLAY]();
  const html = bundle["text/html"] as string;
  assert.match(html, /<caption>runs<\/caption>/);
  assert.match(html, /<th>params<\/th>/);
  assert.match(html, /1,407,178/);
  assert.match(html, /a&lt;b/);
  assert.match(html, /0\.9877/);
  assert.match(bundle["text/plain"] as string, /shape: \(2, 3\)/);
  assert.equal((tableHtml(df).match(/<tr>/g) ?? []).length, 3);
});

Deno.test("markdown(): a markdown bundle", () => {
  assert.deepEqual(markdown("**hi**")[DISPLAY](), {
    "text/markdown": "**hi**",
    "text/plain": "**hi**",
  });
});

Deno.test("LiveOutput rewrites one slot in place; detach starts a new one; nothing without a kernel", async () => {
  const sent: { bundle: MimeBundle; display_id: string; update: boolean }[] = [];
  const send = (bundle: MimeBundle, o: { display_id: string; update: boolean }) => {
    sent.push({ bundle, ...o });
    return Promise.resolve();
  };
  const line = new LiveText(false, send);
  await line.update("a <b>");
  await line.update("c");
  line.detach();
  await line.update("d");
  assert.deepEqual(sent.map((m) => m.update), [false, true, false]);
  assert.equal(sent[0].display_id, sent[1].display_id);
  assert.notEqual(sent[1].display_id, sent[2].display_id);
  assert.equal(sent[0].bundle["text/html"], "<pre>a &lt;b&gt;</pre>");
  const outside = new LiveOutput(); // tests run outside a kernel
  assert.equal(outside.active, false);
  await outside.update({ "text/plain": "x" }); // goes nowhere, throws nothing
});

Deno.test("publicPath: repository paths relative, others by their last name only", () => {
  const repo = new URL("../", import.meta.url).pathname;
  assert.equal(publicPath(`${repo}outputs/runs`), "outputs/runs");
  assert.equal(publicPath("/home/someone/scratch/runs/"), "…/runs");
  const home = Deno.env.get("HOME")!;
  assert.equal(
    publicText(`cache ${repo}data/weights/a.h5: not there; ${home}/.keras/models/a.h5: not there`),
    "cache data/weights/a.h5: not there; ~/.keras/models/a.h5: not there",
  );
});

Deno.test("lib/ never reads tensors synchronously (fails on WebGPU in Deno)", async () => {
  const offenders: string[] = [];
  const walk = async (dir: string) => {
    for await (const e of Deno.readDir(dir)) {
      const path = `${dir}/${e.name}`;
      if (e.isDirectory) await walk(path);
      else if (path.endsWith(".ts")) {
        const text = await Deno.readTextFile(path);
        text.split("\n").forEach((line, i) => {
          if (/\.(dataSync|arraySync|bufferSync)\(|\.print\(\)/.test(line)) {
            offenders.push(`${path}:${i + 1}`);
          }
        });
      }
    }
  };
  await walk(new URL("../lib", import.meta.url).pathname);
  assert.deepEqual(offenders, []);
});

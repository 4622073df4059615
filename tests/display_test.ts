import assert from "node:assert/strict";
import pl from "nodejs-polars";
import { DISPLAY, markdown, table, tableHtml } from "../lib/display.ts";

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

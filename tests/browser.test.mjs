// The browser entry (dist-web/browser.js + the wasm engine in wasm/web/) in a real browser:
// headless Chromium (Debian's /usr/bin/chromium driven by playwright-core; no browser is ever
// downloaded) loads tests/browser/index.html from a small static server on 127.0.0.1, and the
// page calls the fake provider (another 127.0.0.1 port, so real CORS) through batchify's
// ctx.fetch. Node checks the page's results against the fake's counters.
//
// Needs: `npx tsup` (dist-web/), `npm run build:wasm` (wasm/web/), Chromium at /usr/bin/chromium
// (or BATCHLING_CHROMIUM=/path). Missing pieces fail the test, never skip it.
import { test, describe, before, after, beforeEach } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import http from "node:http";
import { extname, join, normalize, sep } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";
import { chromium } from "playwright-core";
import { startFakeProvider } from "./fake-provider/server.mjs";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const CHROMIUM = process.env.BATCHLING_CHROMIUM ?? "/usr/bin/chromium";
const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

for (const [path, how] of [
  ["dist-web/browser.js", "npx tsup"],
  ["wasm/web/batchling_wasm.js", "npm run build:wasm"],
  ["wasm/web/batchling_wasm_bg.wasm", "npm run build:wasm"],
]) {
  if (!existsSync(join(ROOT, path))) throw new Error(`${path} is missing: run \`${how}\` first`);
}
if (!existsSync(CHROMIUM)) {
  throw new Error(`no Chromium at ${CHROMIUM}: apt-get install -y --no-install-recommends chromium (or set BATCHLING_CHROMIUM)`);
}

const TYPES = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8",
  ".map": "application/json",
  ".json": "application/json",
  ".wasm": "application/wasm", // WebAssembly.instantiateStreaming insists on it
  ".ts": "text/plain; charset=utf-8",
};
/** URL prefix → repo folder. Nothing else in the repo is served. */
const MOUNTS = [
  ["/dist-web/", "dist-web"],
  ["/wasm/web/", "wasm/web"],
  ["/tests/browser/", "tests/browser"],
  ["/examples/browser/", "examples/browser"],
];

/** A static server for the mounts, plus /vendor/openai.js (built in memory). */
async function startStaticServer(vendor) {
  const served = [];
  const server = http.createServer((req, res) => {
    const { pathname } = new URL(req.url, "http://x");
    served.push(pathname);
    if (pathname === "/vendor/openai.js") {
      res.writeHead(200, { "content-type": TYPES[".js"], "cache-control": "no-store" });
      return res.end(vendor);
    }
    const mount = MOUNTS.find(([prefix]) => pathname.startsWith(prefix));
    if (mount) {
      const dir = join(ROOT, mount[1]);
      const file = normalize(join(dir, decodeURIComponent(pathname.slice(mount[0].length))));
      if (file.startsWith(dir + sep) && existsSync(file)) {
        res.writeHead(200, { "content-type": TYPES[extname(file)] ?? "application/octet-stream", "cache-control": "no-store" });
        return res.end(readFileSync(file));
      }
    }
    res.writeHead(404, { "content-type": "text/plain" });
    res.end(`not found: ${pathname}`);
  });
  await new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", resolve);
  });
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    served,
    close: () =>
      new Promise((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/** The openai SDK as one browser ES module (its package needs a bundler for browsers). */
async function bundleOpenAI() {
  const out = await build({
    stdin: { contents: 'export { default as OpenAI } from "openai";', resolveDir: ROOT, loader: "js" },
    bundle: true,
    platform: "browser",
    format: "esm",
    target: "es2022",
    write: false,
    logLevel: "error",
  });
  return out.outputFiles[0].text;
}

const T = { timeout: 20_000 }; // per test: a hung flow fails instead of stalling the run
const totalRequests = (fake) => Object.values(fake.counters.requests).reduce((a, b) => a + b, 0);

let fake;
let site;
let browser;
let page;
const pageErrors = [];

before(async () => {
  const vendor = await bundleOpenAI();
  fake = await startFakeProvider();
  site = await startStaticServer(vendor);
  browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, timeout: 20_000 });
  page = await browser.newPage();
  page.on("pageerror", (error) => pageErrors.push(`pageerror: ${error.message}`));
  page.on("console", (message) => message.type() === "error" && pageErrors.push(`console: ${message.text()}`));
  await page.goto(`${site.url}/tests/browser/index.html?fake=${encodeURIComponent(fake.url)}`);
  await page.waitForFunction(() => window.pageReady === true, null, { timeout: 15_000 });
});

after(async () => {
  // Each step on its own, so one failure never leaves a browser or a server behind.
  await browser?.close().catch(() => {});
  await site?.close().catch(() => {});
  await fake?.close().catch(() => {});
});

beforeEach(() => fake.reset());

describe("browser entry in headless Chromium", () => {
  test("the page loads the entry as native ES modules and the .wasm next to the glue", T, () => {
    assert.deepEqual(pageErrors, []);
    for (const path of ["/dist-web/browser.js", "/wasm/web/batchling_wasm.js", "/wasm/web/batchling_wasm_bg.wasm"]) {
      assert.ok(site.served.includes(path), `${path} was requested; served: ${site.served.join(", ")}`);
    }
  });

  test("the fake provider answers CORS preflights without counting them", T, async () => {
    const res = await fetch(`${fake.url}/v1/chat/completions`, {
      method: "OPTIONS",
      headers: { origin: site.url, "access-control-request-method": "POST", "access-control-request-headers": "authorization,content-type,x-stainless-os" },
    });
    assert.equal(res.status, 204);
    assert.equal(res.headers.get("access-control-allow-origin"), "*");
    assert.match(res.headers.get("access-control-allow-headers"), /authorization/);
    assert.match(res.headers.get("access-control-allow-methods"), /POST/);
    assert.equal(totalRequests(fake), 0);
  });

  test("RequestBatcher: several adds become one batch; an Error result rejects only its item", T, async () => {
    const out = await page.evaluate(() => window.flows.requestBatcher());
    assert.deepEqual(out.batches, [[1, 2, 3, 4, 5]]);
    assert.deepEqual(out.values, [10, 20, 30, null, 50]);
    assert.deepEqual(out.rejected, { name: "Error", code: undefined, message: "four is not allowed", isBatchlingError: false });
    assert.equal(out.shortErrors.length, 2);
    for (const error of out.shortErrors) {
      assert.equal(error.isBatchResultError, true, JSON.stringify(error));
      assert.equal(error.isBatchlingError, true);
    }
    assert.equal(out.status.batches, 1);
    assert.equal(out.status.processed, 5, "as in Node: every handled item, failed ones too");
    assert.equal(out.status.failed, 1);
    assert.equal(out.closed, true);
  });

  test("batchify with raw fetch: one provider batch, answers equal the sync endpoint's", T, async () => {
    const prompts = ["browser 1", "browser 2", "browser 3"];
    const out = await page.evaluate((p) => window.flows.batchifyRaw(p), prompts);
    assert.deepEqual(out.answers.map((a) => a.status), [200, 200, 200]);
    assert.deepEqual(out.answers.map((a) => a.body.choices[0].message.content), prompts.map((p) => `echo: ${p}`));
    assert.deepEqual(out.answers.map((a) => a.dryRunHeader), [null, null, null]);
    assert.equal(fake.counters.batchesCreated.openai, 1);
    assert.deepEqual(fake.counters.batchSizes.map((b) => b.size), [3]);
    assert.equal(fake.counters.syncCalls, 0);
    assert.equal(fake.counters.lastHeaders["openai.batches.create"].authorization, "Bearer sk-browser-test");
    assert.ok(out.events.includes("batchSubmitted") && out.events.includes("resultsReceived"), out.events.join(","));
    assert.equal(out.report.dryRun, false);
    assert.equal(out.report.queues[0].requests, 3);

    const sync = await page.evaluate((p) => window.flows.syncAnswers(p), prompts);
    assert.equal(fake.counters.syncCalls, 3);
    assert.deepEqual(out.answers.map((a) => a.body), sync.map((a) => a.body));
  });

  test("the openai SDK (browser bundle) with ctx.fetch: one batch, the SDK's parsed answers", T, async () => {
    const prompts = ["sdk a", "sdk b", "sdk c"];
    const answers = await page.evaluate((p) => window.flows.openaiSdk(p), prompts);
    assert.deepEqual(answers.map((a) => a.choices[0].message.content), prompts.map((p) => `echo: ${p}`));
    assert.equal(fake.counters.batchesCreated.openai, 1);
    assert.equal(fake.counters.syncCalls, 0);
    assert.equal(fake.counters.lastHeaders["openai.batches.create"].authorization, "Bearer sk-browser-sdk");
  });

  test("dry run: synthetic 200s with x-batchling-dry-run: 1, nothing reaches the provider", T, async () => {
    const out = await page.evaluate((p) => window.flows.dryRun(p), ["dry 1", "dry 2"]);
    assert.deepEqual(out.answers.map((a) => a.status), [200, 200]);
    assert.deepEqual(out.answers.map((a) => a.dryRunHeader), ["1", "1"]);
    assert.equal(out.answers[0].body.object, "chat.completion");
    assert.equal(totalRequests(fake), 0);
    assert.equal(out.report.dryRun, true);
    assert.equal(out.report.queues[0].requests, 2);
  });

  test("cache over MemoryStorage: a repeated run makes zero provider calls", T, async () => {
    const prompts = ["cached x", "cached y"];
    const first = await page.evaluate((p) => window.flows.cachedRun(p), prompts);
    assert.deepEqual(first.answers.map((a) => a.body.choices[0].message.content), ["echo: cached x", "echo: cached y"]);
    assert.equal(fake.counters.batchesCreated.openai, 1);
    const calls = totalRequests(fake);
    assert.ok(calls > 0);
    assert.ok(first.journalLines >= 4, `journal lines: ${first.journalLines}`);
    assert.equal(first.journalHasKey, false, "the journal never holds the API key");

    const second = await page.evaluate((p) => window.flows.cachedRun(p), prompts);
    assert.deepEqual(second.answers.map((a) => a.body), first.answers.map((a) => a.body));
    assert.equal(second.cacheHits, 2);
    assert.equal(totalRequests(fake), calls, "no provider call on the repeat");
  });

  test("what this runtime lacks fails with errors that say what to do", T, async () => {
    const out = await page.evaluate(() => window.flows.apiSurface());
    assert.equal(out.hasProcess, false);
    assert.equal(out.runError.code, "ERR_BATCHLING_NO_SCOPE");
    assert.match(out.runError.message, /ctx\.fetch/);
    assert.equal(out.pathError.name, "TypeError");
    assert.match(out.pathError.message, /storage/);
    assert.equal(out.optionError.isInvalidOptionError, true);
    assert.equal(out.optionError.code, "ERR_BATCHLING_INVALID_OPTION");
  });

  test("no page errors along the way", T, () => {
    assert.deepEqual(pageErrors, []);
  });
});

describe("examples/browser (import map, no bundler)", () => {
  test("Run batches the prompts into one job; Run again answers from the localStorage cache; dry run estimates", T, async () => {
    const example = await browser.newPage();
    const errors = [];
    example.on("pageerror", (error) => errors.push(error.message));
    try {
      const query = new URLSearchParams({ baseUrl: `${fake.url}/v1`, apiKey: "sk-example", dryRun: "0", pollMs: "20" });
      await example.goto(`${site.url}/examples/browser/index.html?${query}`);
      await example.waitForFunction(() => document.getElementById("status").textContent === "ready", null, { timeout: 15_000 });
      const runOnce = async () => {
        await example.click("#run");
        await example.waitForFunction(() => document.getElementById("status").textContent === "done", null, { timeout: 15_000 });
        return example.$$eval("#answers li", (items) => items.map((li) => li.textContent));
      };
      const prompts = await example.$eval("#prompts", (t) => t.value.split("\n").filter(Boolean));
      const expected = prompts.map((p) => `${p} → echo: ${p}`);

      assert.deepEqual(await runOnce(), expected);
      assert.equal(fake.counters.batchesCreated.openai, 1);
      assert.deepEqual(fake.counters.batchSizes.map((b) => b.size), [prompts.length]);
      assert.equal(fake.counters.lastHeaders["openai.batches.create"].authorization, "Bearer sk-example");
      const calls = totalRequests(fake);

      assert.deepEqual(await runOnce(), expected);
      assert.equal(totalRequests(fake), calls, "the repeat is answered from localStorage");
      assert.match(await example.textContent("#log"), /cacheHit/);

      await example.check("#dryRun");
      await runOnce();
      assert.equal(totalRequests(fake), calls, "a dry run sends nothing");
      assert.match(await example.textContent("#log"), new RegExp(`openai gpt-4o-mini: ${prompts.length} requests in 1 batch\\(es\\), 0 from cache; estimated \\$`));
      assert.deepEqual(errors, []);
    } finally {
      await example.close();
    }
  });
});

// The worker entry in the real Cloudflare Workers runtime, offline: examples/worker/worker.js is
// bundled the way wrangler does it (esbuild, `workerd` condition, so `import "batchling"` is
// dist-web/browser.js; the .wasm stays a separate CompiledWasm module) and run in workerd
// through Miniflare (the workerd binary ships in the npm package @cloudflare/workerd-linux-64),
// with an in-memory KV namespace as the CACHE binding. The Worker calls the fake provider on
// 127.0.0.1 with workerd's own fetch; Node checks the answers and the fake's counters.
//
// Miniflare's KV keeps everything in memory and does not enforce production limits (1 write
// per second to one key, 1,000 operations per invocation).
//
// A last test imports "batchling" in plain Node under `--conditions=worker` (the same file) to
// check the exports map and init() with the .wasm bytes outside workerd.
import { test, describe, before, after, beforeEach } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";
import { Miniflare } from "miniflare";
import { startFakeProvider } from "./fake-provider/server.mjs";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const WASM = join(ROOT, "wasm/web/batchling_wasm_bg.wasm");
const EXAMPLE = join(ROOT, "examples/worker/worker.js");
for (const [path, how] of [
  ["dist-web/browser.js", "npx tsup"],
  ["wasm/web/batchling_wasm.js", "npm run build:wasm"],
  ["wasm/web/batchling_wasm_bg.wasm", "npm run build:wasm"],
]) {
  if (!existsSync(join(ROOT, path))) throw new Error(`${path} is missing: run \`${how}\` first`);
}

const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8"));

/**
 * "batchling" through package.json `exports` under the `workerd` condition (as wrangler
 * resolves it). "batchling/wasm" (the example's import of the .wasm) stays external as
 * ./batchling_wasm_bg.wasm, which Miniflare is given as a CompiledWasm module: what wrangler
 * makes of a .wasm import.
 */
const batchlingResolver = {
  name: "batchling-self",
  setup(b) {
    b.onResolve({ filter: /^batchling$/ }, () => ({ path: join(ROOT, pkg.exports["."].workerd.default) }));
    b.onResolve({ filter: /^batchling\/wasm$/ }, () => ({ path: "./batchling_wasm_bg.wasm", external: true }));
  },
};

async function bundleWorker() {
  const out = await build({
    entryPoints: [EXAMPLE],
    bundle: true,
    format: "esm",
    platform: "browser",
    conditions: ["workerd", "worker", "browser"],
    target: "es2022",
    write: false,
    logLevel: "error",
    plugins: [batchlingResolver],
  });
  return out.outputFiles[0].text;
}

const T = { timeout: 20_000 }; // per test: a hung Worker fails instead of stalling the run
const totalRequests = (fake) => Object.values(fake.counters.requests).reduce((a, b) => a + b, 0);

let fake;
let mf;
let bundleText;

before(async () => {
  fake = await startFakeProvider();
  bundleText = await bundleWorker();
  mf = new Miniflare({
    modulesRoot: ROOT,
    modules: [
      { type: "ESModule", path: join(ROOT, "worker.mjs"), contents: bundleText },
      { type: "CompiledWasm", path: join(ROOT, "batchling_wasm_bg.wasm"), contents: readFileSync(WASM) },
    ],
    compatibilityDate: "2025-09-01",
    cf: false, // the placeholder Request.cf: never fetch the real one from the network
    kvNamespaces: ["CACHE"],
    bindings: {
      OPENAI_API_KEY: "sk-worker-test",
      OPENAI_BASE_URL: `${fake.url}/v1`,
      BATCH_SIZE: "3",
      BATCH_WINDOW_MS: "50",
      POLL_INTERVAL_MS: "20",
    },
  });
  await mf.ready;
});

after(async () => {
  await mf?.dispose().catch(() => {});
  await fake?.close().catch(() => {});
});

beforeEach(() => fake.reset());

const post = async (path, body) => {
  const res = await mf.dispatchFetch(`http://worker.test${path}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  const text = await res.text();
  assert.equal(res.status, 200, text);
  return JSON.parse(text);
};

describe("examples/worker in workerd (Miniflare)", () => {
  test("the bundle imports the worker entry (no Node built-ins) and the .wasm as a module", T, () => {
    assert.equal(pkg.exports["."].workerd.default, "./dist-web/browser.js");
    assert.match(bundleText, /from "\.\/batchling_wasm_bg\.wasm"/);
    assert.doesNotMatch(bundleText, /from "node:/);
  });

  test("POST /chat: three prompts become one provider batch; the answers equal the sync endpoint's", T, async () => {
    const prompts = ["worker 1", "worker 2", "worker 3"];
    const out = await post("/chat", { prompts });
    assert.deepEqual(out.answers.map((a) => a.text), prompts.map((p) => `echo: ${p}`));
    assert.deepEqual(out.answers.map((a) => a.dryRun), [false, false, false]);
    assert.equal(fake.counters.batchesCreated.openai, 1);
    assert.deepEqual(fake.counters.batchSizes.map((b) => b.size), [3]);
    assert.equal(fake.counters.syncCalls, 0);
    assert.equal(fake.counters.lastHeaders["openai.batches.create"].authorization, "Bearer sk-worker-test");
    assert.equal(out.report.queues[0].requests, 3);

    const direct = await fetch(`${fake.url}/v1/chat/completions`, {
      method: "POST",
      headers: { authorization: "Bearer k", "content-type": "application/json" },
      body: JSON.stringify({ model: "gpt-4o-mini", messages: [{ role: "user", content: "worker 2" }] }),
    }).then((r) => r.json());
    assert.equal(direct.choices[0].message.content, out.answers[1].text);
  });

  test("the cache lives in Workers KV: a repeated request makes zero provider calls", T, async () => {
    const prompts = ["kv a", "kv b"];
    const first = await post("/chat", { prompts });
    assert.equal(fake.counters.batchesCreated.openai, 1);
    const calls = totalRequests(fake);
    const second = await post("/chat", { prompts });
    assert.deepEqual(second.answers, first.answers);
    // The Worker answers once ctx.close() resolves, and workerd then cancels the request's
    // pending I/O: close() must not resolve before the journal's last KV writes are done, or
    // the results never reach KV and the repeat polls and downloads the batch again.
    assert.equal(totalRequests(fake), calls, `no provider call on the repeat; made: ${JSON.stringify(fake.counters.requests)}`);

    const kv = await mf.getKVNamespace("CACHE");
    const lines = [];
    for (let line; (line = await kv.get(`batchling:${lines.length}`)) !== null; ) lines.push(line);
    assert.ok(lines.length >= 4, `journal lines in KV: ${lines.length}`); // one key per line, written once
    assert.equal(await kv.get("batchling:count"), null, "no shared counter key is rewritten");
    assert.ok(lines.every((line) => line.length > 0));
    assert.ok(!lines.some((line) => line.includes("sk-worker-test")), "the journal never holds the API key");
  });

  test("dry run: synthetic answers marked x-batchling-dry-run, nothing reaches the provider", T, async () => {
    const out = await post("/chat", { prompts: ["dry a", "dry b"], dryRun: true });
    assert.deepEqual(out.answers.map((a) => a.dryRun), [true, true]);
    assert.equal(out.report.dryRun, true);
    assert.equal(totalRequests(fake), 0);
  });

  test("POST /embed: RequestBatcher turns five texts into one bulk embeddings call", T, async () => {
    const texts = ["alpha", "beta", "gamma", "delta", "epsilon"];
    const out = await post("/embed", { texts });
    assert.equal(out.calls, 1);
    assert.equal(fake.counters.requests["openai.embeddings"], 1);
    assert.equal(fake.counters.lastHeaders["openai.embeddings"].authorization, "Bearer sk-worker-test");
    const direct = await fetch(`${fake.url}/v1/embeddings`, {
      method: "POST",
      headers: { authorization: "Bearer k", "content-type": "application/json" },
      body: JSON.stringify({ model: "text-embedding-3-small", input: texts }),
    }).then((r) => r.json());
    assert.deepEqual(out.vectors, direct.data.map((d) => d.embedding));
  });

  test("an unknown route answers 404 with usage", T, async () => {
    const res = await mf.dispatchFetch("http://worker.test/nope");
    assert.equal(res.status, 404);
    assert.match((await res.json()).error, /POST \/chat/);
  });
});

describe("the worker entry under Node's `worker` condition", () => {
  test("import \"batchling\" resolves to dist-web/browser.js; init(wasm bytes) runs the wasm engine", T, () => {
    const script = `
      import { readFileSync } from "node:fs";
      const entry = import.meta.resolve("batchling");
      const { init, batchify, RequestBatcher } = await import("batchling");
      let early;
      try { batchify(); } catch (error) { early = { code: error.code, message: error.message }; }
      await init(readFileSync(${JSON.stringify(WASM)}));
      const batches = [];
      const b = new RequestBatcher({ maxBatchSize: 8, maxDelayMs: 5, batchHandler: (xs) => (batches.push(xs.length), xs.map((x) => x + 1)) });
      const out = await Promise.all([1, 2, 3].map((x) => b.add(x)));
      await b.close();
      const ctx = batchify({ dryRun: true, batchWindowMs: 0 });
      const res = await ctx.fetch("https://api.openai.com/v1/chat/completions", {
        method: "POST", headers: { authorization: "Bearer k", "content-type": "application/json" },
        body: JSON.stringify({ model: "gpt-4o-mini", messages: [{ role: "user", content: "hi" }] }),
      });
      await ctx.close();
      // No Redis client in these runtimes: the fleet journal is refused, naming the option.
      let redis;
      try { batchify({ cache: { redis: "redis://127.0.0.1:6379" } }); } catch (error) { redis = { code: error.code, option: error.option, message: error.message }; }
      console.log(JSON.stringify({ entry, early, out, batches, dry: res.headers.get("x-batchling-dry-run"), redis }));
    `;
    const run = spawnSync(process.execPath, ["--conditions=worker", "--input-type=module", "-e", script], {
      cwd: ROOT,
      encoding: "utf8",
      timeout: 20_000,
    });
    assert.equal(run.status, 0, run.stderr);
    const result = JSON.parse(run.stdout.trim().split("\n").at(-1));
    assert.ok(result.entry.endsWith("/dist-web/browser.js"), result.entry);
    assert.equal(result.early.code, "ERR_BATCHLING_NOT_READY", "batchify() before the engine is loaded says what to do");
    assert.match(result.early.message, /await ready/);
    assert.deepEqual(result.out, [2, 3, 4]);
    assert.deepEqual(result.batches, [3]);
    assert.equal(result.dry, "1");
    assert.equal(result.redis?.code, "ERR_BATCHLING_INVALID_OPTION");
    assert.equal(result.redis.option, "cache.redis");
    assert.match(result.redis.message, /needs Node's batchify\(\) or batchling serve/);
  });
});

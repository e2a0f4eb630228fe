// A Cloudflare Worker (module syntax) using batchling's worker entry: `import ... from "batchling"`
// resolves to dist-web/browser.js under wrangler's `workerd` / `worker` conditions, and the
// engine is the .wasm, imported as a compiled module (Workers may not compile wasm from bytes).
//
//   POST /chat   {"prompts": ["…", …]}  → the prompts go out as ONE OpenAI Batch API job
//                                          (batchify + the openai SDK), answers come back in order;
//                                          the request cache lives in Workers KV (env.CACHE).
//   POST /embed  {"texts": ["…", …]}    → RequestBatcher: every text is embedded, but the Worker
//                                          makes one bulk /v1/embeddings call per 100 texts.
//
// Bindings (wrangler.toml): CACHE (KV namespace), OPENAI_API_KEY (secret), OPENAI_BASE_URL
// (optional). tests/worker.test.mjs runs this file in workerd (Miniflare) against the fake
// provider.
import OpenAI from "openai";
import { init, batchify, RequestBatcher } from "batchling";
import wasmModule from "batchling/wasm";

/**
 * Workers KV as batchling's cache storage: any async get / put / delete store fits.
 * Production note: KV takes at most one write per second to one key and 1,000 operations per
 * invocation; the journal writes a line key and its `<prefix>:count` key per record, so a busy
 * Worker should use Durable Object storage instead (`state.storage` has the same get / put /
 * delete shape and no such limits).
 */
const kvStorage = (kv) => ({
  get: (key) => kv.get(key),
  put: (key, value) => kv.put(key, value),
  delete: (key) => kv.delete(key),
});

const json = (value, status = 200) =>
  new Response(JSON.stringify(value), { status, headers: { "content-type": "application/json" } });

/** Provider batches take minutes to hours in production: poll every 30 s (tests pass less). */
function batchOptions(env, cache) {
  return {
    batchSize: Number(env.BATCH_SIZE ?? 100),
    batchWindowMs: Number(env.BATCH_WINDOW_MS ?? 500),
    pollIntervalMs: Number(env.POLL_INTERVAL_MS ?? 30_000),
    cache,
  };
}

async function chat(request, env) {
  const { prompts, model = "gpt-4o-mini", dryRun = false } = await request.json();
  // One context per request: a Worker may not settle one request's I/O from another's.
  // With the journal in KV, a retried request resumes the batch it already paid for, and a
  // repeated one is answered from the cache without calling the provider at all.
  const ctx = batchify({
    ...batchOptions(env, dryRun ? false : { storage: kvStorage(env.CACHE), prefix: "batchling" }),
    dryRun, // queue and group as usual, send nothing: synthetic answers and a cost estimate
  });
  const openai = new OpenAI({ apiKey: env.OPENAI_API_KEY, baseURL: env.OPENAI_BASE_URL, fetch: ctx.fetch, maxRetries: 0 });
  const answers = await Promise.all(
    prompts.map(async (content) => {
      const { data, response } = await openai.chat.completions
        .create({ model, messages: [{ role: "user", content }] })
        .withResponse();
      return { text: data.choices[0].message.content, dryRun: response.headers.get("x-batchling-dry-run") === "1" };
    }),
  );
  const report = await ctx.close();
  return json({ answers, report });
}

async function embed(request, env) {
  const { texts, model = "text-embedding-3-small" } = await request.json();
  let calls = 0;
  const embedder = new RequestBatcher({
    maxBatchSize: 100,
    maxDelayMs: 10,
    batchHandler: async (inputs) => {
      calls++;
      const response = await fetch(`${env.OPENAI_BASE_URL ?? "https://api.openai.com/v1"}/embeddings`, {
        method: "POST",
        headers: { authorization: `Bearer ${env.OPENAI_API_KEY}`, "content-type": "application/json" },
        body: JSON.stringify({ model, input: inputs }),
      });
      if (!response.ok) throw new Error(`embeddings: HTTP ${response.status}`);
      const { data } = await response.json();
      return data.sort((a, b) => a.index - b.index).map((d) => d.embedding);
    },
  });
  // Each caller adds one text and gets its own vector back.
  const vectors = await Promise.all(texts.map((text) => embedder.add(text)));
  await embedder.close();
  return json({ vectors, calls });
}

export default {
  async fetch(request, env) {
    await init(wasmModule); // once per isolate; later calls return at once
    const { pathname } = new URL(request.url);
    if (request.method === "POST" && pathname === "/chat") return chat(request, env);
    if (request.method === "POST" && pathname === "/embed") return embed(request, env);
    return json({ error: "POST /chat {prompts} or POST /embed {texts}" }, 404);
  },
};

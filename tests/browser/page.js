// The browser side of tests/browser.test.mjs. It imports the browser entry exactly as a page
// without a bundler would (native ES modules: /dist-web/browser.js, which imports the
// wasm-bindgen glue at /wasm/web/ and fetches the .wasm next to it), then offers one async
// function per flow on `window.flows`. Node calls them with page.evaluate and checks what they
// return against the fake provider's counters, which only Node can see.
import {
  ready,
  batchify,
  RequestBatcher,
  MemoryStorage,
  KeyValueJournal,
  BatchlingError,
  BatchResultError,
  InvalidOptionError,
} from "/dist-web/browser.js";
import { OpenAI } from "/vendor/openai.js";

const FAKE = new URL(location.href).searchParams.get("fake");
if (!FAKE) throw new Error("page.js: pass the fake provider's URL as ?fake=http://127.0.0.1:PORT");

const FAST = { batchSize: 3, batchWindowMs: 50, pollIntervalMs: 20 };
const AUTH = { authorization: "Bearer sk-browser-test", "content-type": "application/json" };
const chat = (content) => ({ model: "gpt-4o-mini", messages: [{ role: "user", content }] });

/** One raw OpenAI-shaped chat call through `fetchFn`: status, one header and the JSON body. */
async function rawChat(fetchFn, content) {
  const response = await fetchFn(`${FAKE}/v1/chat/completions`, {
    method: "POST",
    headers: AUTH,
    body: JSON.stringify(chat(content)),
  });
  return {
    status: response.status,
    dryRunHeader: response.headers.get("x-batchling-dry-run"),
    body: await response.json(),
  };
}

const describeError = (error) => ({
  name: error?.name,
  code: error?.code,
  message: String(error?.message ?? error),
  isBatchlingError: error instanceof BatchlingError,
});

window.flows = {
  /** Several adds → one batch; an Error in the results rejects only its item. */
  async requestBatcher() {
    const batches = [];
    const batcher = new RequestBatcher({
      maxBatchSize: 10,
      maxDelayMs: 20,
      batchHandler: async (items) => {
        batches.push([...items]);
        await new Promise((resolve) => setTimeout(resolve, 5)); // one round trip per batch
        return items.map((n) => (n === 4 ? new Error("four is not allowed") : n * 10));
      },
    });
    const settled = await Promise.allSettled([1, 2, 3, 4, 5].map((n) => batcher.add(n)));
    await batcher.close();
    const rejected = settled.find((s) => s.status === "rejected")?.reason;
    // A handler that returns the wrong number of results fails its whole batch.
    const short = new RequestBatcher({ maxBatchSize: 10, maxDelayMs: 0, batchHandler: (items) => items.slice(1) });
    const shortSettled = await Promise.allSettled(["a", "b"].map((x) => short.add(x)));
    await short.close();
    return {
      values: settled.map((s) => (s.status === "fulfilled" ? s.value : null)),
      rejected: describeError(rejected),
      shortErrors: shortSettled.map((s) => ({ ...describeError(s.reason), isBatchResultError: s.reason instanceof BatchResultError })),
      batches,
      status: batcher.getStatus(),
      closed: batcher.closed,
    };
  },

  /** Raw fetch calls through ctx.fetch: one provider batch for `prompts`. */
  async batchifyRaw(prompts) {
    const events = [];
    const ctx = batchify({ ...FAST, cache: false, onEvent: (e) => events.push(e.kind) });
    const answers = await Promise.all(prompts.map((p) => rawChat(ctx.fetch, p)));
    const report = await ctx.close();
    return { answers, report, events };
  },

  /** The same prompts straight to the fake's sync endpoint (the page's own fetch, CORS). */
  async syncAnswers(prompts) {
    return Promise.all(prompts.map((p) => rawChat(fetch, p)));
  },

  /** The official openai SDK (bundled for browsers) with ctx.fetch. */
  async openaiSdk(prompts) {
    const ctx = batchify({ ...FAST, cache: false });
    const client = new OpenAI({
      apiKey: "sk-browser-sdk",
      baseURL: `${FAKE}/v1`,
      fetch: ctx.fetch,
      dangerouslyAllowBrowser: true,
      maxRetries: 0,
    });
    const answers = await Promise.all(prompts.map((p) => client.chat.completions.create(chat(p))));
    await ctx.close();
    return answers.map((a) => JSON.parse(JSON.stringify(a)));
  },

  /** Dry run: synthetic 200s marked x-batchling-dry-run: 1, nothing sent. */
  async dryRun(prompts) {
    const ctx = batchify({ ...FAST, dryRun: true });
    const answers = await Promise.all(prompts.map((p) => rawChat(ctx.fetch, p)));
    const report = await ctx.close();
    return { answers, report };
  },

  /** The request cache over one MemoryStorage that outlives the contexts (window.cacheStore). */
  async cachedRun(prompts) {
    window.cacheStore ??= new MemoryStorage();
    const hits = [];
    const ctx = batchify({ ...FAST, cache: { storage: window.cacheStore }, onEvent: (e) => e.kind === "cacheHit" && hits.push(e) });
    const answers = await Promise.all(prompts.map((p) => rawChat(ctx.fetch, p)));
    await ctx.close();
    const journal = [];
    await new KeyValueJournal(window.cacheStore).load((text) => journal.push(...text.split("\n").filter(Boolean)));
    return { answers, cacheHits: hits.length, journalLines: journal.length, journalHasKey: journal.some((l) => l.includes("sk-browser-test")) };
  },

  /** What this runtime refuses, with errors that say what to do instead. */
  async apiSurface() {
    const ctx = batchify({ cache: false });
    let runError;
    try {
      await ctx.run(() => 1);
    } catch (error) {
      runError = describeError(error);
    }
    await ctx.close();
    let pathError;
    try {
      batchify({ cache: { path: "/tmp/x.jsonl" } });
    } catch (error) {
      pathError = describeError(error);
    }
    let optionError;
    try {
      batchify({ batchSize: 0 });
    } catch (error) {
      optionError = { ...describeError(error), isInvalidOptionError: error instanceof InvalidOptionError };
    }
    return { runError, pathError, optionError, hasProcess: typeof globalThis.process !== "undefined" };
  },
};

await ready;
window.pageReady = true;
document.getElementById("status").textContent = "ready";

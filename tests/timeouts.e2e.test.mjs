// Client timeouts against slow batches: every SDK and framework, with its timeout scaled down to
// about a second and its retries left at their defaults, against a batch at the fake provider
// that takes a few seconds. A batched call outlives its client's timeout and gets its batch's
// answer, with one batch line per call and no retry reaching batchling; a caller's own
// AbortSignal still rejects the call at once with the client's abort error.
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import OpenAI from "openai";
import Anthropic from "@anthropic-ai/sdk";
import { GoogleGenAI } from "@google/genai";
import Groq from "groq-sdk";
import Together from "together-ai";
import { Mistral } from "@mistralai/mistralai";
import { HTTPClient } from "@mistralai/mistralai/lib/http.js";
import { RequestAbortedError } from "@mistralai/mistralai/models/errors/httpclienterrors.js";
import { generateText } from "ai";
import { createOpenAI } from "@ai-sdk/openai";
import { createAnthropic } from "@ai-sdk/anthropic";
import { ChatOpenAI } from "@langchain/openai";
import { ChatAnthropic } from "@langchain/anthropic";
import { FAST, useFakeProvider } from "./support/fake.mjs";
import { batchify } from "../dist/index.js";

const fake = useFakeProvider();

/** Polls every 100 ms, done at the 20th: a batch answers about 2 s after it is created. */
const SLOW_BATCH = { pollIntervalMs: 100, pollsUntilDone: 20 };
const BATCH_MS = SLOW_BATCH.pollIntervalMs * SLOW_BATCH.pollsUntilDone;
/** The clients' timeout: well under the batch's time, so it fires during every wait. */
const TIMEOUT_MS = 1000;

const isAbort = (error) => error instanceof Error && (error.name === "AbortError" || error.name === "TimeoutError");

// One row per client: how it is built with a timeout (and retries at their defaults), how a call
// is made with an optional caller signal, the answer's text, and its error for a caller's abort.
const rows = [
  {
    name: "openai",
    provider: "openai",
    // openai, groq-sdk and together-ai declare a timeout given per request (X-Stainless-Timeout),
    // not their client's: a client-level one is outlived only from their shortest default (1 min).
    client: (fetch, timeout) => ({ sdk: new OpenAI({ apiKey: "sk-test", baseURL: `${fake.url}/v1`, fetch }), timeout }),
    ask: (c, text, signal) => c.sdk.chat.completions.create({ model: "gpt-4o-mini", messages: [{ role: "user", content: text }] }, { signal, timeout: c.timeout }),
    answer: (r) => r.choices[0].message.content,
    aborted: (e) => e instanceof OpenAI.APIUserAbortError,
  },
  {
    name: "@anthropic-ai/sdk",
    provider: "anthropic",
    client: (fetch, timeout) => new Anthropic({ apiKey: "ak-test", baseURL: fake.url, fetch, timeout }),
    ask: (c, text, signal) => c.messages.create({ model: "claude-haiku-4-5", max_tokens: 64, messages: [{ role: "user", content: text }] }, { signal }),
    answer: (r) => r.content[0].text,
    aborted: (e) => e instanceof Anthropic.APIUserAbortError,
  },
  {
    // Takes no custom fetch: its calls run inside ctx.run(). Its timeout header is in whole
    // seconds rounded up, so a caller's abort is told from its timer below 1 s only when the
    // timeout is over 1 s.
    name: "@google/genai",
    provider: "gemini",
    inScope: true,
    abortTimeout: 1500,
    client: (_fetch, timeout) => new GoogleGenAI({ apiKey: "gk-test", httpOptions: { baseUrl: fake.url, timeout } }),
    ask: (c, text, signal) => c.models.generateContent({ model: "gemini-2.5-flash", contents: text, config: { abortSignal: signal } }),
    answer: (r) => r.text,
    aborted: isAbort,
  },
  {
    name: "groq-sdk",
    provider: "groq",
    hosts: () => [{ baseUrl: `${fake.url}/groq/openai/v1`, provider: "groq" }],
    client: (fetch, timeout) => ({ sdk: new Groq({ apiKey: "gsk-test", baseURL: `${fake.url}/groq`, fetch }), timeout }),
    ask: (c, text, signal) => c.sdk.chat.completions.create({ model: "llama-3.1-8b-instant", messages: [{ role: "user", content: text }] }, { signal, timeout: c.timeout }),
    answer: (r) => r.choices[0].message.content,
    aborted: (e) => e instanceof Groq.APIUserAbortError,
  },
  {
    name: "@mistralai/mistralai",
    provider: "mistral",
    hosts: () => [{ baseUrl: `${fake.url}/mistral/v1`, provider: "mistral" }],
    client: (fetch, timeoutMs) =>
      new Mistral({ apiKey: "mk-test", serverURL: `${fake.url}/mistral`, timeoutMs, httpClient: new HTTPClient({ fetcher: fetch }) }),
    ask: (c, text, signal) => c.chat.complete({ model: "mistral-small-latest", messages: [{ role: "user", content: text }] }, signal ? { fetchOptions: { signal } } : undefined),
    answer: (r) => r.choices[0].message.content,
    aborted: (e) => e instanceof RequestAbortedError,
  },
  {
    name: "together-ai",
    provider: "together",
    hosts: () => [{ baseUrl: `${fake.url}/together/v1`, provider: "together" }],
    client: (fetch, timeout) => ({ sdk: new Together({ apiKey: "tk-test", baseURL: `${fake.url}/together/v1`, fetch }), timeout }),
    ask: (c, text, signal) =>
      c.sdk.chat.completions.create(
        { model: "meta-llama/Llama-3.3-70B-Instruct-Turbo", messages: [{ role: "user", content: text }] },
        { signal, timeout: c.timeout },
      ),
    answer: (r) => r.choices[0].message.content,
    aborted: (e) => e instanceof Together.APIUserAbortError,
  },
  {
    // The AI SDK has no timeout unless given one; `timeout` aborts with a TimeoutError.
    name: "AI SDK (openai.chat)",
    provider: "openai",
    client: (fetch, timeout) => ({ model: createOpenAI({ baseURL: `${fake.url}/v1`, apiKey: "sk-test", fetch }).chat("gpt-4o-mini"), timeout }),
    ask: (c, text, signal) => generateText({ model: c.model, prompt: text, timeout: c.timeout, abortSignal: signal }),
    answer: (r) => r.text,
    aborted: isAbort,
  },
  {
    name: "AI SDK (anthropic)",
    provider: "anthropic",
    client: (fetch, timeout) => ({ model: createAnthropic({ baseURL: `${fake.url}/v1`, apiKey: "ak-test", fetch })("claude-sonnet-4-6"), timeout }),
    ask: (c, text, signal) => generateText({ model: c.model, prompt: text, timeout: c.timeout, abortSignal: signal }),
    answer: (r) => r.text,
    aborted: isAbort,
  },
  {
    // ChatOpenAI drives openai 6, which declares a timeout only when it is given per request:
    // `configuration.timeout` is (ChatOpenAI's own `timeout` field is not: see below).
    name: "LangChain ChatOpenAI",
    provider: "openai",
    client: (fetch, timeout) => new ChatOpenAI({ model: "gpt-4o-mini", apiKey: "sk-test", configuration: { baseURL: `${fake.url}/v1`, fetch, timeout } }),
    ask: (c, text, signal) => c.invoke(text, { signal }),
    answer: (r) => r.content,
    aborted: isAbort,
  },
  {
    name: "LangChain ChatAnthropic",
    provider: "anthropic",
    // LangChain's own retry loop (p-retry) keeps retrying a call its caller aborted, in the
    // background, with backoff (about 90 s in all; each retry fails at once on the aborted signal
    // and sends nothing). `abortMaxRetries` turns it off for the abort test so the file does not
    // wait for it; the outlive test keeps LangChain's default retries.
    client: (fetch, timeout, { maxRetries } = {}) =>
      new ChatAnthropic({ model: "claude-sonnet-4-6", apiKey: "ak-test", anthropicApiUrl: fake.url, maxRetries, clientOptions: { fetch, timeout } }),
    abortMaxRetries: 0,
    ask: (c, text, signal) => c.invoke(text, { signal }),
    answer: (r) => r.content,
    aborted: isAbort,
  },
];

/** A context for `row` with a slow batch. `fetches()` counts the POSTs the client made (a retry
 * of the client's joins its line in flight, so only the client's fetches show it). */
function slowContext(row, options = {}) {
  Object.assign(fake.config, SLOW_BATCH);
  const events = [];
  const ctx = batchify({ ...FAST, pollIntervalMs: SLOW_BATCH.pollIntervalMs, hosts: row.hosts?.(), onEvent: (e) => events.push(e), ...options });
  let posts = 0;
  const counted = (inner) => (input, init) => {
    if ((init?.method ?? input?.method ?? "GET").toUpperCase() === "POST") posts++;
    return inner(input, init);
  };
  const run = async (fn) => {
    if (!row.inScope) return fn();
    const hooked = globalThis.fetch;
    globalThis.fetch = counted(hooked);
    try {
      return await ctx.run(fn);
    } finally {
      globalThis.fetch = hooked;
    }
  };
  return { ctx, fetch: counted(ctx.fetch), events, run, fetches: () => posts };
}

const batchesOf = (provider) => [...fake.batches.values()].filter((b) => b.provider === provider);

describe("a batched call outlives its client's timeout", () => {
  for (const row of rows) {
    test(`${row.name}: timeout ${TIMEOUT_MS} ms, a ${BATCH_MS} ms batch: every call gets the batch's answer, one line each`, async () => {
      const { ctx, fetch, events, run, fetches } = slowContext(row);
      const client = row.client(fetch, TIMEOUT_MS);
      const texts = ["one", "two", "three"];
      const started = performance.now();
      const results = await run(() => Promise.allSettled(texts.map((t) => row.ask(client, `slow ${t}`))));
      const waited = performance.now() - started;
      await ctx.close();
      for (const [i, r] of results.entries()) {
        assert.equal(r.status, "fulfilled", `call ${i}: ${r.reason}`);
        assert.match(row.answer(r.value), new RegExp(`slow ${texts[i]}`));
      }
      assert.ok(waited > TIMEOUT_MS * 1.5, `the batch outlasted the timeout (waited ${Math.round(waited)} ms)`);
      assert.equal(fetches(), texts.length, "the client made one fetch per call: no retry");
      const batches = batchesOf(row.provider);
      assert.equal(batches.length, 1, "one batch");
      assert.equal(batches[0].requests.length, texts.length, "one line per call");
      assert.equal(fake.counters.syncCalls, 0);
      assert.deepEqual(events.filter((e) => e.kind === "warning"), []);
    });

    test(`${row.name}: a caller's abort during the wait rejects at once with the client's abort error`, async () => {
      const { ctx, fetch, run, fetches } = slowContext(row);
      const client = row.client(fetch, row.abortTimeout ?? TIMEOUT_MS, { maxRetries: row.abortMaxRetries });
      const controller = new AbortController();
      const outcome = await run(async () => {
        const aborted = row.ask(client, "abort me", controller.signal);
        const kept = row.ask(client, "keep me");
        let abortedAt;
        setTimeout(() => {
          abortedAt = performance.now();
          controller.abort();
        }, 300);
        const error = await aborted.then(
          (value) => assert.fail(`answered: ${JSON.stringify(value)}`),
          (e) => e,
        );
        return { error, rejectedAfter: performance.now() - abortedAt, kept: await kept };
      });
      await ctx.close();
      assert.ok(row.aborted(outcome.error), `the client's abort error, got ${outcome.error?.name}: ${outcome.error?.message}`);
      assert.ok(outcome.rejectedAfter < 150, `rejected ${Math.round(outcome.rejectedAfter)} ms after the abort`);
      assert.match(row.answer(outcome.kept), /keep me/);
      assert.equal(fetches(), 2, "the aborted call was not sent again");
      assert.equal(fake.counters.syncCalls, 0);
    });
  }
});

describe("client timeouts that cannot be outlived warn once", () => {
  test("a timeout signal the caller gives the openai SDK cancels the call, with one warning naming the setting", async () => {
    const row = rows.find((r) => r.name === "openai");
    const { ctx, fetch, events, fetches } = slowContext(row);
    const client = row.client(fetch, TIMEOUT_MS);
    const results = await Promise.allSettled(["a", "b"].map((t) => row.ask(client, `deadline ${t}`, AbortSignal.timeout(300))));
    await ctx.close();
    for (const r of results) assert.ok(r.status === "rejected" && r.reason instanceof OpenAI.APIUserAbortError, String(r.reason));
    const warnings = events.filter((e) => e.kind === "warning");
    assert.equal(warnings.length, 1, "one warning per context");
    assert.match(warnings[0].message, /timeout: 24 \* 3600 \* 1000/);
    assert.equal(fetches(), 2, "no retry");
  });

  test("ChatOpenAI's own `timeout` field (undeclared by openai 6) is not outlived: the call fails, with one warning naming the fix", async () => {
    const row = rows.find((r) => r.name === "LangChain ChatOpenAI");
    const { ctx, fetch, events, fetches } = slowContext(row);
    const model = new ChatOpenAI({ model: "gpt-4o-mini", apiKey: "sk-test", timeout: TIMEOUT_MS, maxRetries: 0, configuration: { baseURL: `${fake.url}/v1`, fetch } });
    const results = await Promise.allSettled(["a", "b"].map((t) => model.invoke(`field ${t}`)));
    await ctx.close();
    for (const r of results) assert.equal(r.status, "rejected");
    assert.match(String(results[0].reason), /timed out/i);
    const warnings = events.filter((e) => e.kind === "warning");
    assert.equal(warnings.length, 1, "one warning per context");
    assert.match(warnings[0].message, /configuration: \{ timeout: 24 \* 3600 \* 1000 \}/);
    assert.equal(fetches(), 2, "no retry (maxRetries: 0)");
    assert.equal(batchesOf("openai").length, 1, "both lines were already in one batch");
  });
});

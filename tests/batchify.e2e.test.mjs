// End to end: the official SDKs inside batchify() against the fake provider on 127.0.0.1.
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { spawn } from "node:child_process";
import OpenAI from "openai";
import Anthropic from "@anthropic-ai/sdk";
import { GoogleGenAI } from "@google/genai";
import { FAST, useFakeProvider } from "./support/fake.mjs";
import { batchify, BatchlingError, MemoryStorage } from "../dist/index.js";

const fake = useFakeProvider();

const openaiWith = (fetch, key = "sk-test") => new OpenAI({ apiKey: key, baseURL: `${fake.url}/v1`, fetch, maxRetries: 0 });
const anthropicWith = (fetch) => new Anthropic({ apiKey: "ak-test", baseURL: fake.url, fetch, maxRetries: 0 });
const geminiSdk = () => new GoogleGenAI({ apiKey: "gk-test", httpOptions: { baseUrl: fake.url } });
const chat = (content, extra = {}) => ({ model: "gpt-4o-mini", messages: [{ role: "user", content }], ...extra });
const plain = (x) => JSON.parse(JSON.stringify(x));

describe("OpenAI through batchify", () => {
  test("100 concurrent calls become one batch of 100 with the sync endpoint's answers", async () => {
    const ctx = batchify({ ...FAST, batchSize: 100, batchWindowMs: 10_000 });
    const client = openaiWith(ctx.fetch);
    const prompts = Array.from({ length: 100 }, (_, i) => `question ${i}`);
    const answers = await Promise.all(prompts.map((p) => client.chat.completions.create(chat(p))));
    await ctx.close();
    assert.equal(fake.counters.batchesCreated.openai, 1);
    assert.deepEqual(fake.counters.batchSizes.map((b) => b.size), [100]);
    assert.equal(fake.counters.syncCalls, 0);
    const direct = openaiWith(undefined);
    for (const [i, p] of prompts.entries()) {
      assert.equal(answers[i].choices[0].message.content, `echo: ${p}`);
      assert.deepEqual(plain(answers[i]), plain(await direct.chat.completions.create(chat(p))));
    }
  });

  test("rich requests reach the provider unchanged (fidelity) on every endpoint", async () => {
    const rich = chat("weather?", {
      temperature: 0.3,
      top_p: 0.9,
      seed: 7,
      max_completion_tokens: 40,
      messages: [
        { role: "system", content: "You are terse." },
        { role: "user", content: "weather in Paris?" },
      ],
      tools: [{ type: "function", function: { name: "get_weather", parameters: { type: "object", properties: { city: { type: "string" } } } } }],
      response_format: { type: "json_object" },
      metadata: { run: "fidelity" },
    });
    const ctx = batchify(FAST);
    const client = openaiWith(ctx.fetch);
    const [viaBatch, resp, emb] = await Promise.all([
      client.chat.completions.create(rich),
      client.responses.create({ model: "gpt-4.1-mini", input: "Summarize: tides", instructions: "one line", max_output_tokens: 30 }),
      client.embeddings.create({ model: "text-embedding-3-small", input: ["a", "b"] }),
    ]);
    await ctx.close();
    assert.equal(fake.counters.batchesCreated.openai, 3, "one batch per endpoint/model");
    const direct = openaiWith(undefined);
    assert.deepEqual(plain(viaBatch), plain(await direct.chat.completions.create(rich)));
    assert.deepEqual(
      plain(resp),
      plain(await direct.responses.create({ model: "gpt-4.1-mini", input: "Summarize: tides", instructions: "one line", max_output_tokens: 30 })),
    );
    assert.deepEqual(plain(emb), plain(await direct.embeddings.create({ model: "text-embedding-3-small", input: ["a", "b"] })));
  });

  test("a per-line error throws the SDK's normal error class, others succeed", async () => {
    const ctx = batchify(FAST);
    const client = openaiWith(ctx.fetch);
    const results = await Promise.allSettled([client.chat.completions.create(chat("fine")), client.chat.completions.create(chat("FAIL:400 please"))]);
    await ctx.close();
    assert.equal(results[0].status, "fulfilled");
    assert.equal(results[1].status, "rejected");
    assert.ok(results[1].reason instanceof OpenAI.BadRequestError, String(results[1].reason));
    await assert.rejects(openaiWith(undefined).chat.completions.create(chat("FAIL:400 please")), OpenAI.BadRequestError);
    assert.equal(fake.counters.batchesCreated.openai, 1);
  });

  test("429 and 500 storms on upload, create and poll are retried to success", async () => {
    fake.faults.add({ route: "openai.files.create", status: 500, count: 2 });
    fake.faults.add({ route: "openai.batches.create", status: 429, count: 2, retryAfterSeconds: 0 });
    fake.faults.add({ route: "openai.batches.retrieve", status: 503, count: 3 });
    fake.faults.add({ route: "openai.files.content", drop: true, count: 1 });
    const retries = [];
    const ctx = batchify({ ...FAST, onEvent: (e) => e.kind === "retry" && retries.push(e.step) });
    const client = openaiWith(ctx.fetch);
    const answers = await Promise.all([1, 2, 3].map((i) => client.chat.completions.create(chat(`storm ${i}`))));
    await ctx.close();
    assert.deepEqual(answers.map((a) => a.choices[0].message.content), ["echo: storm 1", "echo: storm 2", "echo: storm 3"]);
    assert.equal(fake.counters.batchesCreated.openai, 1, "never created twice");
    assert.ok(retries.length >= 8, `retries seen: ${retries}`);
  });

  test("a create whose answer is lost is found by its tag, never created twice", async () => {
    fake.faults.add({ route: "openai.batches.create", drop: true, afterHandling: true, count: 1 });
    const ctx = batchify(FAST);
    const client = openaiWith(ctx.fetch);
    const answer = await client.chat.completions.create(chat("ambiguous"));
    await ctx.close();
    assert.equal(answer.choices[0].message.content, "echo: ambiguous");
    assert.equal(fake.counters.batchesCreated.openai, 1);
    assert.ok(fake.counters.requests["openai.batches.list"] >= 1, "looked the batch up");
  });

  for (const fate of ["failed", "expired", "cancelled"]) {
    test(`without resubmission, a ${fate} batch gives each caller an error naming the batch and state`, async () => {
      fake.faults.nextBatchFate("openai", fate);
      const ctx = batchify({ ...FAST, resubmit: false });
      const client = openaiWith(ctx.fetch);
      const results = await Promise.allSettled([1, 2, 3, 4].map((i) => client.chat.completions.create(chat(`fate ${i}`))));
      await ctx.close();
      const batchId = [...fake.batches.keys()][0];
      const rejected = results.filter((r) => r.status === "rejected");
      assert.ok(rejected.length >= 1);
      for (const r of rejected) {
        assert.ok(r.reason instanceof OpenAI.APIError, String(r.reason));
        assert.match(r.reason.message, new RegExp(batchId));
        assert.match(r.reason.message, new RegExp(fate === "cancelled" ? "cancel" : fate));
      }
      if (fate !== "expired") assert.equal(rejected.length, 4);
    });
  }

  test("different API keys never share a batch, and each batch carries its caller's key", async () => {
    const ctx = batchify(FAST);
    await Promise.all([
      openaiWith(ctx.fetch, "sk-alice").chat.completions.create(chat("a")),
      openaiWith(ctx.fetch, "sk-bob").chat.completions.create(chat("b")),
    ]);
    await ctx.close();
    assert.equal(fake.counters.batchesCreated.openai, 2);
    const keys = [...fake.batches.values()].map((b) => b.headers.authorization).sort();
    assert.deepEqual(keys, ["Bearer sk-alice", "Bearer sk-bob"]);
  });
});

describe("Anthropic and Gemini through batchify", () => {
  test("Anthropic messages batch: answers equal sync, errors throw the SDK's class", async () => {
    const ctx = batchify(FAST);
    const client = anthropicWith(ctx.fetch);
    const params = (text) => ({ model: "claude-sonnet-4-6", max_tokens: 64, system: "be brief", temperature: 0.2, messages: [{ role: "user", content: text }] });
    const results = await Promise.allSettled(["one", "two", "FAIL:400 three"].map((t) => client.messages.create(params(t))));
    await ctx.close();
    assert.equal(fake.counters.batchesCreated.anthropic, 1);
    const direct = anthropicWith(undefined);
    assert.deepEqual(plain(results[0].value), plain(await direct.messages.create(params("one"))));
    assert.equal(results[1].value.content[0].text, "echo: two");
    assert.ok(results[2].reason instanceof Anthropic.BadRequestError, String(results[2].reason));
  });

  test("anthropic-beta headers split batches", async () => {
    const ctx = batchify(FAST);
    const client = anthropicWith(ctx.fetch);
    const params = { model: "claude-sonnet-4-6", max_tokens: 16, messages: [{ role: "user", content: "x" }] };
    await Promise.all([client.messages.create(params), client.messages.create({ ...params, messages: [{ role: "user", content: "y" }] }, { headers: { "anthropic-beta": "some-beta-2025" } })]);
    await ctx.close();
    assert.equal(fake.counters.batchesCreated.anthropic, 2);
  });

  test("Gemini generateContent inside ctx.run is batched and equals sync", async () => {
    const ctx = batchify(FAST);
    const ai = geminiSdk();
    const request = (text) => ({ model: "gemini-2.5-flash", contents: text, config: { temperature: 0.1, systemInstruction: "short" } });
    const answers = await ctx.run(() => Promise.all(["sky", "sea"].map((t) => ai.models.generateContent(request(t)))));
    await ctx.close();
    assert.equal(fake.counters.batchesCreated.gemini, 1);
    const direct = await ai.models.generateContent(request("sky"));
    const strip = (r) => plain({ ...r, sdkHttpResponse: undefined });
    assert.deepEqual(strip(answers[0]), strip(direct));
    assert.equal(answers[1].text, "echo: sea");
  });
});

describe("scope, pass-through and dry run", () => {
  test("outside run() the global fetch is untouched; GETs and streaming pass through", async () => {
    const ctx = batchify(FAST);
    const client = openaiWith(undefined);
    await ctx.run(async () => {
      await client.models.list().catch(() => {}); // GET: passes through
      const stream = await client.chat.completions.create(chat("s", { stream: true })).catch((e) => e);
      assert.ok(stream, "streaming request went out as is");
    });
    await client.chat.completions.create(chat("outside"));
    await ctx.close();
    assert.equal(fake.counters.batchesCreated.openai, 0);
    assert.ok(fake.counters.syncCalls >= 1);
  });

  test("a JSON POST the core passes through reaches the provider with its body, read once by the host", async () => {
    const ctx = batchify(FAST);
    const client = openaiWith(ctx.fetch);
    const before = fake.counters.syncCalls;
    // stream: true cannot be batched; the fake's sync endpoint reads the body and streams the
    // answer to what it read back as server-sent events.
    const stream = await client.chat.completions.create(chat("streamed", { stream: true }));
    let streamed = "";
    for await (const part of stream) streamed += part.choices[0]?.delta?.content ?? "";
    await ctx.close();
    assert.equal(streamed, "echo: streamed", "the body (with stream: true) arrived intact and its events came back");
    assert.equal(fake.counters.syncCalls, before + 1);
    assert.equal(fake.counters.batchesCreated.openai, 0);
  });

  test("dry run: nothing reaches the provider; synthetic 200s and a cost report", async () => {
    const ctx = batchify({ ...FAST, dryRun: true, batchSize: 2 });
    const client = openaiWith(ctx.fetch);
    const raw = await client.chat.completions.create(chat("dry 1")).withResponse();
    const rest = await Promise.all([2, 3, 4].map((i) => client.chat.completions.create(chat(`dry ${i}`))));
    const report = await ctx.close();
    assert.equal(raw.response.headers.get("x-batchling-dry-run"), "1");
    assert.equal(raw.data.object, "chat.completion");
    assert.equal(rest.length, 3);
    assert.equal(Object.values(fake.counters.requests).reduce((a, b) => a + b, 0), 0);
    assert.equal(report.dryRun, true);
    const [row] = report.queues;
    assert.equal(row.provider, "openai");
    assert.equal(row.model, "gpt-4o-mini");
    assert.equal(row.requests, 4);
    assert.ok(row.batches >= 2);
    assert.ok(row.estimatedBatchUsd > 0 && row.estimatedBatchUsd < row.estimatedSyncUsd);
  });

  test("an aborted call rejects at once and never reaches the provider", async () => {
    const ctx = batchify({ ...FAST, batchWindowMs: 200 });
    const client = openaiWith(ctx.fetch);
    const controller = new AbortController();
    const aborted = client.chat.completions.create(chat("abort me"), { signal: controller.signal });
    const kept = client.chat.completions.create(chat("keep me"));
    setTimeout(() => controller.abort(), 20);
    await assert.rejects(aborted, OpenAI.APIUserAbortError);
    assert.equal((await kept).choices[0].message.content, "echo: keep me");
    await ctx.close();
    const [batch] = [...fake.batches.values()];
    assert.equal(batch.requests.length, 1, "the aborted request was taken out of the queue");
  });

  test("the global hook is installed once and routes each scope to its own context", async () => {
    const a = batchify({ ...FAST, dryRun: true });
    const b = batchify(FAST);
    const first = globalThis.fetch;
    batchify(FAST);
    assert.equal(globalThis.fetch, first, "creating more contexts does not re-patch fetch");
    const client = openaiWith(undefined);
    const [dry, real] = await Promise.all([
      a.run(() => client.chat.completions.create(chat("scope a")).withResponse()),
      b.run(() => client.chat.completions.create(chat("scope b")).withResponse()),
    ]);
    await Promise.all([a.close(), b.close()]);
    assert.equal(dry.response.headers.get("x-batchling-dry-run"), "1");
    assert.equal(real.response.headers.get("x-batchling-dry-run"), null);
    assert.equal(real.data.choices[0].message.content, "echo: scope b");
    assert.equal(fake.counters.batchesCreated.openai, 1);
  });

  test("close() on an idle context resolves; calls after close go out unbatched", async () => {
    const ctx = batchify(FAST);
    await ctx.close();
    const answer = await openaiWith(ctx.fetch).chat.completions.create(chat("late"));
    assert.equal(answer.choices[0].message.content, "echo: late");
    assert.equal(fake.counters.batchesCreated.openai, 0);
  });
});

describe("persistent cache", () => {
  test("a repeated run costs nothing; the cache file holds no key", async () => {
    const dir = mkdtempSync(join(tmpdir(), "batchling-cache-"));
    const path = join(dir, "cache.jsonl");
    try {
      const run = async () => {
        const ctx = batchify({ ...FAST, cache: { path } });
        const client = openaiWith(ctx.fetch, "sk-secret-123");
        const out = await Promise.all(["x", "y"].map((t) => client.chat.completions.create(chat(t))));
        await ctx.close();
        return out.map((a) => a.choices[0].message.content);
      };
      assert.deepEqual(await run(), ["echo: x", "echo: y"]);
      const calls = Object.values(fake.counters.requests).reduce((a, b) => a + b, 0);
      assert.deepEqual(await run(), ["echo: x", "echo: y"]);
      assert.equal(Object.values(fake.counters.requests).reduce((a, b) => a + b, 0), calls, "no provider call on the repeat");
      const journal = readFileSync(path, "utf8");
      assert.ok(!journal.includes("sk-secret-123"));
      assert.ok(!/bearer/i.test(journal));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("pluggable key-value storage: a repeat run over the same store costs nothing", async () => {
    const storage = new MemoryStorage();
    const run = async () => {
      const ctx = batchify({ ...FAST, cache: { storage } });
      const out = await Promise.all(["k1", "k2"].map((t) => openaiWith(ctx.fetch).chat.completions.create(chat(t))));
      await ctx.close();
      return out.map((a) => a.choices[0].message.content);
    };
    assert.deepEqual(await run(), ["echo: k1", "echo: k2"]);
    const calls = Object.values(fake.counters.requests).reduce((a, b) => a + b, 0);
    assert.deepEqual(await run(), ["echo: k1", "echo: k2"]);
    assert.equal(Object.values(fake.counters.requests).reduce((a, b) => a + b, 0), calls);
    let count = 0;
    while ((await storage.get(`batchling-cache:${count}`)) !== undefined) count++;
    assert.ok(count >= 4, `journal lines: ${count}`); // intent, submitted, two results
  });

  test("a damaged cache line warns and the other records still serve", async () => {
    const dir = mkdtempSync(join(tmpdir(), "batchling-cache-"));
    const path = join(dir, "cache.jsonl");
    try {
      const first = batchify({ ...FAST, cache: { path } });
      await openaiWith(first.fetch).chat.completions.create(chat("keep me"));
      await first.close();
      writeFileSync(path, readFileSync(path, "utf8") + '{"type":"result","finger');
      const warnings = [];
      const second = batchify({ ...FAST, cache: { path }, onEvent: (e) => e.kind === "warning" && warnings.push(e.message) });
      const before = fake.counters.batchesCreated.openai;
      const again = await openaiWith(second.fetch).chat.completions.create(chat("keep me"));
      await second.close();
      assert.equal(again.choices[0].message.content, "echo: keep me");
      assert.equal(fake.counters.batchesCreated.openai, before);
      assert.equal(warnings.length, 1);
      assert.match(warnings[0], /damaged/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("a journal mostly superseded is compacted at load and still answers every hit, from the file", async () => {
    const dir = mkdtempSync(join(tmpdir(), "batchling-compact-"));
    const path = join(dir, "cache.jsonl");
    try {
      const first = batchify({ ...FAST, cache: { path } });
      const client = openaiWith(first.fetch);
      // One batch each: intent, submitted and result lines, two of three superseded.
      for (const t of ["c1", "c2", "c3"]) await client.chat.completions.create(chat(t));
      await first.close();
      assert.equal(readFileSync(path, "utf8").trimEnd().split("\n").length, 9);
      const run = async () => {
        const ctx = batchify({ ...FAST, cache: { path } });
        const out = await Promise.all(["c1", "c2", "c3"].map((t) => openaiWith(ctx.fetch).chat.completions.create(chat(t))));
        await ctx.close();
        return out.map((a) => a.choices[0].message.content);
      };
      const calls = Object.values(fake.counters.requests).reduce((a, b) => a + b, 0);
      assert.deepEqual(await run(), ["echo: c1", "echo: c2", "echo: c3"]);
      const lines = readFileSync(path, "utf8").trimEnd().split("\n");
      assert.deepEqual(lines.map((l) => JSON.parse(l).type), ["result", "result", "result"], "only the answers are left");
      // A second run reads the compacted file's places.
      assert.deepEqual(await run(), ["echo: c1", "echo: c2", "echo: c3"]);
      assert.equal(Object.values(fake.counters.requests).reduce((a, b) => a + b, 0), calls, "no provider call");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("after a torn last line, new answers are appended on their own line and served", async () => {
    const dir = mkdtempSync(join(tmpdir(), "batchling-torn-"));
    const path = join(dir, "cache.jsonl");
    try {
      writeFileSync(path, '{"type":"result","finger');
      const second = batchify({ ...FAST, cache: { path }, onEvent: () => {} });
      await openaiWith(second.fetch).chat.completions.create(chat("after torn"));
      await second.close();
      const before = fake.counters.batchesCreated.openai;
      const third = batchify({ ...FAST, cache: { path }, onEvent: () => {} });
      const again = await openaiWith(third.fetch).chat.completions.create(chat("after torn"));
      await third.close();
      assert.equal(again.choices[0].message.content, "echo: after torn");
      assert.equal(fake.counters.batchesCreated.openai, before, "answered from the cache");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("SIGKILL while polling, then a re-run: zero new batches, every answer delivered", async () => {
    const dir = mkdtempSync(join(tmpdir(), "batchling-crash-"));
    const path = join(dir, "cache.jsonl");
    const script = join(dir, "job.mjs");
    const dist = new URL("../dist/index.js", import.meta.url).href;
    const openaiUrl = import.meta.resolve("openai");
    writeFileSync(
      script,
      `import OpenAI from ${JSON.stringify(openaiUrl)};
       import { batchify } from ${JSON.stringify(dist)};
       const ctx = batchify({ batchSize: 20, batchWindowMs: 60_000, pollIntervalMs: 20, cache: { path: process.env.CACHE } });
       const client = new OpenAI({ apiKey: "sk-crash", baseURL: process.env.BASE, fetch: ctx.fetch, maxRetries: 0 });
       const out = await Promise.all(Array.from({ length: 20 }, (_, i) => client.chat.completions.create({ model: "gpt-4o-mini", messages: [{ role: "user", content: "crash " + i }] })));
       await ctx.close();
       console.log(JSON.stringify(out.map((a) => a.choices[0].message.content)));`,
    );
    const env = { ...process.env, CACHE: path, BASE: `${fake.url}/v1` };
    try {
      fake.config.pollsUntilDone = 1_000_000; // the batch stays in progress until we say so
      const first = spawn(process.execPath, [script], { env, stdio: ["ignore", "pipe", "pipe"] });
      const deadline = Date.now() + 60_000; // generous: CI machines are busy
      while ((fake.counters.requests["openai.batches.retrieve"] ?? 0) < 2) {
        assert.ok(Date.now() < deadline, "the first run never started polling");
        await new Promise((r) => setTimeout(r, 10));
      }
      first.kill("SIGKILL");
      await new Promise((r) => first.on("exit", r));
      assert.equal(fake.counters.batchesCreated.openai, 1);
      for (const batch of fake.batches.values()) batch.polls = 0;
      fake.config.pollsUntilDone = 1;
      const second = spawn(process.execPath, [script], { env, stdio: ["ignore", "pipe", "pipe"] });
      let stdout = "";
      second.stdout.on("data", (d) => (stdout += d));
      let stderr = "";
      second.stderr.on("data", (d) => (stderr += d));
      const code = await new Promise((r) => second.on("exit", r));
      assert.equal(code, 0, stderr);
      assert.equal(fake.counters.batchesCreated.openai, 1, "the re-run created no batch");
      assert.equal(fake.counters.requests["openai.files.create"], 1, "nor uploaded anything");
      assert.deepEqual(JSON.parse(stdout), Array.from({ length: 20 }, (_, i) => `echo: crash ${i}`));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("batchify options", () => {
  test("bad options are refused eagerly with the option named", () => {
    for (const [options, option] of [
      [{ batchSize: 0 }, "batchSize"],
      [{ batchWindowMs: -1 }, "batchWindowMs"],
      [{ pollIntervalMs: 0 }, "pollIntervalMs"],
      [{ dryRun: "yes" }, "dryRun"],
      [{ cache: { path: "" } }, "cache"],
      [{ onEvent: 1 }, "onEvent"],
      [{ retry: { attempts: 0 } }, "retry.attempts"],
      [{ batchsize: 10 }, "batchsize"],
      [{ hosts: {} }, "hosts"],
      [{ hosts: [null] }, "hosts[0]"],
      [{ hosts: [{ baseUrl: "https://x.example/v1" }] }, "hosts[0].provider"],
      [{ hosts: [{ baseUrl: "", provider: "openai" }] }, "hosts[0].baseUrl"],
      [{ hosts: [{ baseUrl: "https://x.example/v1", provider: "openai", apiKey: "k" }] }, "hosts[0].apiKey"],
      [{ hosts: [{ baseUrl: "https://x.example/v1", provider: "openai", maxRequests: 0 }] }, "hosts[0].maxRequests"],
      [{ hosts: [{ baseUrl: "https://x.example/v1", provider: "openai", completionWindow: 24 }] }, "hosts[0].completionWindow"],
    ]) {
      assert.throws(() => batchify(options), (e) => e instanceof BatchlingError && e.option === option, JSON.stringify(options));
    }
  });

  test("a declared host's URL and provider are checked by the engine, naming the entry", () => {
    for (const [hosts, words] of [
      [[{ baseUrl: "api.example.com/v1", provider: "openai" }], ["hosts[0]", "absolute URL"]],
      [[{ baseUrl: "https://a.example/v1", provider: "openai" }, { baseUrl: "https://b.example/v1", provider: "acme" }], ["hosts[1]", "acme"]],
      [[{ baseUrl: "ftp://a.example/v1", provider: "openai" }], ["hosts[0]", "http or https"]],
    ]) {
      assert.throws(
        () => batchify({ hosts, cache: false }),
        (e) => e instanceof BatchlingError && e.option === "hosts" && words.every((w) => e.message.includes(w)),
        JSON.stringify(hosts),
      );
    }
  });

  test("a declared host's limits split batches; other hosts keep the defaults", async () => {
    const ctx = batchify({ ...FAST, batchSize: 100, hosts: [{ baseUrl: `${fake.url}/v1`, provider: "openai", maxRequests: 3 }] });
    const client = openaiWith(ctx.fetch);
    const answers = await Promise.all(Array.from({ length: 7 }, (_, i) => client.chat.completions.create(chat(`q${i}`))));
    await ctx.close();
    assert.deepEqual(answers.map((a) => a.choices[0].message.content), Array.from({ length: 7 }, (_, i) => `echo: q${i}`));
    assert.deepEqual(fake.counters.batchSizes.map((b) => b.size).sort(), [1, 3, 3]);
    assert.equal(fake.counters.syncCalls, 0);
  });
});

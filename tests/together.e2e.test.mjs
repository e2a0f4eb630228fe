// End to end: the together-ai SDK inside batchify() against the fake Together module
// (/together/v1 on 127.0.0.1). The shared contract for every provider, plus what is Together's
// own: the presigned two-request upload (the API key never reaches the storage URL), the `{job}`
// create wrapper, and a lost create found by its input file.
import { test, describe, before, after, beforeEach } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createRequire } from "node:module";
import { startFakeProvider } from "./fake-provider/server.mjs";
import { batchify } from "../dist/index.js";

// The SDK's upload helper reads its base URL when it is loaded: point it at the fake first.
const fake = await startFakeProvider();
process.env.TOGETHER_API_BASE_URL = `${fake.url}/together/v1`;
const { default: Together } = await import("together-ai");
const { default: row } = await import("./contract/together.mjs");

const FAST = { batchWindowMs: 30, pollIntervalMs: 10, retry: { attempts: 6, backoffMs: 5, maxBackoffMs: 40 }, cache: false };
const plain = (x) => JSON.parse(JSON.stringify(x));
const options = (extra = {}) => ({ ...FAST, hosts: row.hosts(fake), ...extra });
const batched = (ctx) => row.client(fake, ctx.fetch);
const direct = () => row.client(fake, undefined);
const onlyBatch = () => [...fake.batches.values()].find((b) => b.provider === "together");

before(() => {});
after(async () => {
  await fake.close();
});
beforeEach(() => fake.reset());

describe("Together through batchify", () => {
  test("concurrent calls become one batch whose answers equal the sync endpoint's", async () => {
    const ctx = batchify(options({ batchSize: 5, batchWindowMs: 10_000 }));
    const client = batched(ctx);
    const prompts = ["one", "two", "three", "four", "five"];
    const answers = await Promise.all(prompts.map((p) => row.ask(client, p)));
    await ctx.close();
    assert.equal(fake.counters.batchesCreated.together, 1);
    assert.deepEqual(fake.counters.batchSizes.map((b) => b.size), [5]);
    assert.equal(fake.counters.syncCalls, 0);
    for (const [i, p] of prompts.entries()) {
      assert.equal(row.answerText(answers[i]), `echo: ${p}`);
      assert.deepEqual(plain(answers[i]), plain(await row.ask(direct(), p)));
    }
  });

  test("the batch line carries exactly the body the SDK would have sent (fidelity)", async () => {
    const rich = {
      model: row.model,
      messages: [
        { role: "system", content: "You are terse." },
        { role: "user", content: "weather in Paris?" },
      ],
      temperature: 0.2,
      top_p: 0.9,
      top_k: 40,
      repetition_penalty: 1.1,
      stop: ["</s>"],
      max_tokens: 64,
      response_format: { type: "json_object" },
      tools: [{ type: "function", function: { name: "get_weather", parameters: { type: "object", properties: { city: { type: "string" } } } } }],
    };
    const sent = [];
    const recording = new Together({
      apiKey: "k-test",
      baseURL: `${fake.url}/together/v1`,
      maxRetries: 0,
      fetch: async (url, init) => {
        sent.push(JSON.parse(init.body));
        return fetch(url, init);
      },
    });
    const syncAnswer = await recording.chat.completions.create(rich);
    fake.reset();
    const ctx = batchify(options());
    const viaBatch = await batched(ctx).chat.completions.create(rich);
    await ctx.close();
    assert.deepEqual(onlyBatch().requests[0].body, sent[0]);
    assert.deepEqual(plain(viaBatch), plain(syncAnswer));
  });

  test("a per-line error throws the SDK's BadRequestError (400), the others succeed", async () => {
    const ctx = batchify(options());
    const client = batched(ctx);
    const results = await Promise.allSettled([row.ask(client, "fine"), row.ask(client, "FAIL:400 please"), row.ask(client, "also fine")]);
    await ctx.close();
    assert.equal(fake.counters.batchesCreated.together, 1);
    assert.deepEqual(results.map((r) => r.status), ["fulfilled", "rejected", "fulfilled"]);
    assert.ok(results[1].reason instanceof Together.BadRequestError, String(results[1].reason));
    assert.equal(row.errorStatus(results[1].reason), 400);
    const syncError = await row.ask(direct(), "FAIL:400 please").catch((e) => e);
    assert.ok(syncError instanceof Together.BadRequestError);
    assert.deepEqual(results[1].reason.error, syncError.error);
  });

  for (const [fate, status] of [["failed", 500], ["expired", 504], ["cancelled", 499]]) {
    test(`a ${fate} batch rejects its requests with ${status}, naming the batch`, async () => {
      fake.faults.nextBatchFate("together", fate);
      const ctx = batchify(options());
      const client = batched(ctx);
      const results = await Promise.allSettled([1, 2, 3, 4].map((i) => row.ask(client, `fate ${i}`)));
      await ctx.close();
      const batchId = onlyBatch().id;
      const rejected = results.filter((r) => r.status === "rejected");
      // An expired batch ran its first half (fake-provider/together.mjs).
      assert.equal(rejected.length, fate === "expired" ? 2 : 4);
      for (const r of rejected) {
        assert.ok(r.reason instanceof Together.APIError, String(r.reason));
        assert.equal(row.errorStatus(r.reason), status);
        assert.match(r.reason.message, new RegExp(batchId));
        assert.match(r.reason.message, /together batch/);
      }
    });
  }

  for (const route of row.faultRoutes) {
    test(`429 and 500 on ${route} are retried to success`, async () => {
      fake.faults.add({ route, status: 429, retryAfterSeconds: 0 });
      fake.faults.add({ route, status: 500 });
      const ctx = batchify(options());
      const client = batched(ctx);
      const answers = await Promise.all(["x", "y"].map((t) => row.ask(client, t)));
      await ctx.close();
      assert.deepEqual(answers.map(row.answerText), ["echo: x", "echo: y"]);
      assert.equal(fake.counters.faultsTriggered, 2);
      assert.equal(fake.counters.batchesCreated.together, 1);
    });
  }

  test("a second run with the same cache answers identically without a new batch", async () => {
    const dir = mkdtempSync(join(tmpdir(), "batchling-together-"));
    try {
      const cache = { path: join(dir, "cache.jsonl") };
      const run = async () => {
        const ctx = batchify(options({ cache }));
        const answers = await Promise.all(["c1", "c2"].map((t) => row.ask(batched(ctx), t)));
        await ctx.close();
        return plain(answers);
      };
      const first = await run();
      assert.equal(fake.counters.batchesCreated.together, 1);
      const second = await run();
      assert.deepEqual(second, first);
      assert.equal(fake.counters.batchesCreated.together, 1, "no new batch");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("dry run answers with synthetic 200s and sends nothing", async () => {
    const ctx = batchify(options({ dryRun: true }));
    const answers = await Promise.all(["d1", "d2"].map((t) => row.ask(batched(ctx), t)));
    const report = await ctx.close();
    assert.deepEqual(fake.counters.requests, {});
    for (const a of answers) assert.match(row.answerText(a), /dry run/);
    assert.equal(report.queues[0].provider, "together");
  });
});

describe("Together's own flow", () => {
  test("the upload is announced, then PUT to the presigned URL without the API key", async () => {
    const ctx = batchify(options());
    await Promise.all(["u1", "u2"].map((t) => row.ask(batched(ctx), t)));
    await ctx.close();
    const c = fake.counters;
    assert.equal(c.requests["together.files.create"], 1);
    assert.equal(c.requests["together.files.upload"], 1);
    assert.match(c.lastPaths["together.files.create"], /purpose=batch-api/);
    assert.equal(c.lastHeaders["together.files.create"].authorization, "Bearer k-test");
    assert.equal(c.lastHeaders["together.files.create"]["x-batchling-redirect"], undefined, "the core's marker is not sent");
    assert.equal(c.lastHeaders["together.files.upload"].authorization, undefined);
    assert.equal(c.lastHeaders["together.files.upload"]["content-type"], "application/octet-stream");
    const batch = onlyBatch();
    const input = fake.files.get(batch.inputFileId);
    assert.equal(input.purpose, "batch-api");
    assert.equal(batch.modelId, row.model);
    const lines = input.data.toString("utf8").trim().split("\n").map((l) => JSON.parse(l));
    assert.deepEqual(lines.map((l) => Object.keys(l)), [["custom_id", "body"], ["custom_id", "body"]]);
  });

  test("the fake's upload agrees with the SDK's own upload helper", async () => {
    const dir = mkdtempSync(join(tmpdir(), "batchling-together-"));
    try {
      const path = join(dir, "in.jsonl");
      writeFileSync(path, `${JSON.stringify({ custom_id: "r1", body: { model: row.model, messages: [{ role: "user", content: "hi" }] } })}\n`);
      // The SDK's ESM build cannot reach `fs` in its upload helper (it calls `require`): use its
      // CommonJS build, which also reads TOGETHER_API_BASE_URL when loaded.
      const TogetherCjs = createRequire(import.meta.url)("together-ai").Together;
      const sdk = new TogetherCjs({ apiKey: "k-test", baseURL: `${fake.url}/together/v1`, maxRetries: 0 });
      // Its PUT streams the file without `duplex: "half"`, which Node's fetch requires: add it.
      const realFetch = globalThis.fetch;
      globalThis.fetch = (url, init) => realFetch(url, init?.body && typeof init.body.pipe === "function" ? { ...init, duplex: "half" } : init);
      let file;
      try {
        file = await sdk.files.upload(path, "batch-api", false);
      } finally {
        globalThis.fetch = realFetch;
      }
      assert.equal(fake.counters.lastHeaders["together.files.upload"].authorization, undefined);
      assert.equal(file.purpose, "batch-api");
      const job = await direct().batches.create({ endpoint: "/v1/chat/completions", input_file_id: file.id });
      assert.equal(job.job.status, "VALIDATING");
      const got = await direct().batches.retrieve(job.job.id);
      assert.equal(got.status, "COMPLETED");
      assert.deepEqual((await direct().batches.list()).map((b) => b.id), [job.job.id]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("a create whose answer is lost is found by its input file, never created twice", async () => {
    fake.faults.add({ route: "together.batches.create", drop: true, afterHandling: true });
    const ctx = batchify(options());
    const answer = await row.ask(batched(ctx), "ambiguous");
    await ctx.close();
    assert.equal(row.answerText(answer), "echo: ambiguous");
    assert.equal(fake.counters.batchesCreated.together, 1);
    assert.ok(fake.counters.requests["together.batches.list"] >= 1, "looked the batch up");
  });

  test("a storage answer the SDK-visible flow cannot use fails the callers, not silently", async () => {
    fake.faults.add({ route: "together.files.upload", status: 403, body: "<Error><Code>AccessDenied</Code></Error>" });
    const ctx = batchify(options());
    const result = await row.ask(batched(ctx), "denied").catch((e) => e);
    await ctx.close();
    assert.ok(result instanceof Together.PermissionDeniedError, String(result));
    assert.equal(fake.counters.batchesCreated.together, 0);
  });

  test("other Together paths pass through untouched", async () => {
    const ctx = batchify(options());
    const client = batched(ctx);
    const list = await client.batches.list();
    const streamed = await client.chat.completions.create({ model: row.model, messages: [{ role: "user", content: "s" }], stream: true }).catch((e) => e);
    await ctx.close();
    assert.deepEqual(list, []);
    assert.equal(fake.counters.requests["together.batches.list"], 1);
    assert.ok(streamed instanceof Together.BadRequestError, "the fake refuses streaming, directly");
    assert.equal(fake.counters.batchesCreated.together, 0);
  });
});

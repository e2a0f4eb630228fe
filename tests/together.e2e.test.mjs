// End to end: the together-ai SDK inside batchify() against the fake Together module
// (/together/v1 on 127.0.0.1). The shared checks run in tests/contract.test.mjs (row
// tests/contract/together.mjs); here is what is Together's own: the presigned two-request upload
// (the API key never reaches the storage URL), the `{job}` create wrapper, a lost create found by
// its input file, and the SDK's error classes.
import { test, describe, after, beforeEach } from "node:test";
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
const options = (extra = {}) => ({ ...FAST, hosts: row.hosts(fake), ...extra });
const batched = (ctx) => row.client(fake, ctx.fetch);
const direct = () => row.client(fake, undefined);
const onlyBatch = () => [...fake.batches.values()].find((b) => b.provider === "together");

after(async () => {
  await fake.close();
});
beforeEach(() => fake.reset());

describe("Together's own flow", () => {
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

  test("the upload is announced, then PUT to the presigned URL without the API key", async () => {
    // The input file is read back below: keep it at the fake.
    const ctx = batchify({ ...options(), deleteProviderFiles: false });
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

  test("a storage refusal of the PUT reaches the callers as the SDK's error, and nothing is created", async () => {
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

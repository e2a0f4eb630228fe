// End to end: Gemini batches beyond the inline limit, through the official `@google/genai` SDK
// inside batchify() against the fake provider. A batch whose inline create body would pass the
// inline cap goes as a JSONL file: resumable upload (start, then `upload, finalize`), create
// naming the file, results from the batch's responses file. The cap is lowered with a declared
// host's `maxInlineBytes` so the test needs no 20 MB of prompts.
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { GoogleGenAI } from "@google/genai";
import { FAST, useFakeProvider } from "./support/fake.mjs";
import { batchify, BatchlingError } from "../dist/index.js";

const fake = useFakeProvider();

const MODEL = "gemini-2.5-flash";
const sdk = () => new GoogleGenAI({ apiKey: "gk-file", httpOptions: { baseUrl: fake.url, apiVersion: "v1beta" } });
const hosts = (maxInlineBytes) => [{ baseUrl: `${fake.url}/v1beta`, provider: "gemini", maxInlineBytes }];
const ask = (ai, text) => ai.models.generateContent({ model: MODEL, contents: text, config: { temperature: 0.2, systemInstruction: "short" } });
const plain = (r) => JSON.parse(JSON.stringify({ ...r, sdkHttpResponse: undefined }));
const geminiBatches = () => [...fake.batches.values()].filter((b) => b.provider === "gemini");
const count = (route) => fake.counters.requests[route] ?? 0;

describe("Gemini batches beyond the inline cap", () => {
  test("a batch over the cap goes through the file flow and every caller gets the sync answer", async () => {
    // 12 prompts of ~300 bytes: ~5 kB inline, over a 2 kB cap.
    const prompts = Array.from({ length: 12 }, (_, i) => `question ${i}: ${"why is the sky blue? ".repeat(15)}`);
    const ctx = batchify({ ...FAST, batchSize: 12, batchWindowMs: 5_000, hosts: hosts(2_000) });
    const ai = sdk();
    const answers = await ctx.run(() => Promise.all(prompts.map((p) => ask(ai, p))));
    await ctx.close();

    assert.equal(fake.counters.batchesCreated.gemini, 1);
    const [batch] = geminiBatches();
    assert.equal(batch.source, "file", "created from an uploaded file");
    assert.equal(batch.requests.length, 12);
    assert.match(batch.inputFileName, /^files\//);
    assert.equal(count("gemini.files.upload"), 1, "one resumable start");
    assert.equal(count("gemini.files.uploadChunk"), 1, "one upload, finalize");
    assert.equal(count("gemini.files.download"), 1, "results from the responses file");
    assert.equal(fake.counters.lastHeaders["gemini.files.upload"]["x-goog-upload-protocol"], "resumable");
    assert.equal(fake.counters.lastHeaders["gemini.files.uploadChunk"]["x-goog-upload-command"], "upload, finalize");
    assert.match(fake.counters.lastPaths["gemini.files.download"], /^GET \/v1beta\/files\/[^/]+:download\?alt=media$/);
    assert.equal(fake.counters.syncCalls, 0);

    const direct = sdk();
    for (const [i, p] of prompts.entries()) {
      assert.equal(answers[i].text, `echo: ${p}`);
      assert.deepEqual(plain(answers[i]), plain(await ask(direct, p)));
    }
  });

  test("a per-line error in a file batch throws the SDK's ApiError for that caller only", async () => {
    const ctx = batchify({ ...FAST, batchSize: 3, batchWindowMs: 5_000, hosts: hosts(200) });
    const ai = sdk();
    const results = await ctx.run(() =>
      Promise.allSettled(["fine one", "FAIL:400 please", "fine two"].map((t) => ask(ai, `${t} ${"padding ".repeat(20)}`))),
    );
    await ctx.close();
    assert.equal(geminiBatches()[0].source, "file");
    assert.deepEqual(results.map((r) => r.status), ["fulfilled", "rejected", "fulfilled"]);
    assert.equal(results[1].reason.status, 400, String(results[1].reason));
    assert.match(results[0].value.text, /^echo: fine one/);
  });

  test("a batch under the cap stays inline: one create, no upload", async () => {
    const ctx = batchify({ ...FAST, batchSize: 2, batchWindowMs: 5_000, hosts: hosts(20_000) });
    const ai = sdk();
    const answers = await ctx.run(() => Promise.all(["sky", "sea"].map((t) => ask(ai, t))));
    await ctx.close();
    assert.deepEqual(answers.map((a) => a.text), ["echo: sky", "echo: sea"]);
    assert.equal(geminiBatches()[0].source, "inline");
    assert.equal(count("gemini.files.upload"), 0);
  });

  test("maxInlineBytes is refused on a non-Gemini host, at 0 and above Gemini's 20 MB", () => {
    const refused = (host) =>
      assert.throws(
        () => batchify({ cache: false, hosts: [host] }),
        (e) => e instanceof BatchlingError && e.code === "ERR_BATCHLING_INVALID_OPTION" && /^hosts/.test(e.option) && /maxInlineBytes/.test(e.message),
      );
    refused({ baseUrl: "https://proxy.example/v1", provider: "openai", maxInlineBytes: 1000 });
    refused({ baseUrl: "https://proxy.example/v1beta", provider: "gemini", maxInlineBytes: 0 });
    refused({ baseUrl: "https://proxy.example/v1beta", provider: "gemini", maxInlineBytes: 20_000_001 });
  });
});

// Frameworks that take a custom fetch work unchanged through ctx.fetch (and, inside ctx.run(),
// through the global fetch): the Vercel AI SDK (`ai` + @ai-sdk/openai, @ai-sdk/anthropic) and
// LangChain.js (@langchain/openai, @langchain/anthropic), against the fake provider on 127.0.0.1.
//
// Each test checks that N concurrent calls become exactly one provider batch of N lines with no
// call to the sync endpoints, and that the framework's result equals what the same call returns
// from the fake's sync endpoint without batchling (the fake answers deterministically).
//
// Retries: both frameworks retry failed calls themselves (AI SDK: maxRetries 2 with a 2 s initial
// delay; LangChain: 6 attempts with backoff). A retried call would be queued again and ride a
// new batch, which is correct but makes the error tests slow, so the error tests set
// `maxRetries: 0` and check the error the framework raises on the first attempt.
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { generateText, generateObject, streamText, embed, embedMany, Output, APICallError, NoObjectGeneratedError, RetryError } from "ai";
import { createOpenAI } from "@ai-sdk/openai";
import { createAnthropic } from "@ai-sdk/anthropic";
import { ChatOpenAI } from "@langchain/openai";
import { ChatAnthropic } from "@langchain/anthropic";
import { z } from "zod";
import { FAST, useFakeProvider } from "./support/fake.mjs";
import { batchify, MemoryStorage } from "../dist/index.js";

const fake = useFakeProvider();

const plain = (x) => JSON.parse(JSON.stringify(x));
const sizes = () => fake.counters.batchSizes.map((b) => `${b.provider}:${b.size}`).sort();
const batchOf = (provider) => [...fake.batches.values()].filter((b) => b.provider === provider);
/** The one batch of `provider`, after checking there is exactly one, of `n` lines. */
function oneBatch(provider, n) {
  const batches = batchOf(provider);
  assert.equal(batches.length, 1, `one ${provider} batch, got ${sizes()}`);
  assert.equal(batches[0].requests.length, n, `${n} lines in the batch`);
  return batches[0];
}
function noSyncCalls() {
  assert.equal(fake.counters.syncCalls, 0, `no call reached a sync endpoint: ${JSON.stringify(fake.counters.syncCallsByProvider)}`);
}

// ---------------------------------------------------------------------------------------------
// Vercel AI SDK

const aiOpenAI = (fetch) => createOpenAI({ baseURL: `${fake.url}/v1`, apiKey: "sk-test", fetch });
const aiAnthropic = (fetch) => createAnthropic({ baseURL: `${fake.url}/v1`, apiKey: "ak-test", fetch });
/** The parts of a generateText result that come from the provider (headers and timing differ;
 * Anthropic messages carry no creation time, so the SDK stamps its own clock there). */
const textResult = (r, { clock = false } = {}) =>
  plain({
    text: r.text,
    content: r.content,
    finishReason: r.finishReason,
    usage: r.usage,
    providerMetadata: r.providerMetadata,
    warnings: r.warnings,
    response: { id: r.response.id, modelId: r.response.modelId, timestamp: clock ? undefined : r.response.timestamp, body: r.response.body },
  });

describe("Vercel AI SDK through ctx.fetch", () => {
  test("generateText with openai.chat(): N calls, one /v1/chat/completions batch, sync-equal answers", async () => {
    const ctx = batchify(FAST);
    const openai = aiOpenAI(ctx.fetch);
    const prompts = ["alpha", "beta", "gamma", "delta", "epsilon"];
    const call = (model, prompt) => generateText({ model: model.chat("gpt-4o-mini"), system: "be brief", prompt, temperature: 0.2 });
    const results = await Promise.all(prompts.map((p) => call(openai, p)));
    await ctx.close();
    const batch = oneBatch("openai", prompts.length);
    assert.equal(batch.endpoint, "/v1/chat/completions");
    noSyncCalls();
    const direct = aiOpenAI(undefined);
    for (const [i, p] of prompts.entries()) {
      assert.equal(results[i].text, `echo: ${p}`);
      assert.equal(results[i].finishReason, "stop");
      assert.ok(results[i].usage.inputTokens > 0 && results[i].usage.outputTokens > 0, JSON.stringify(results[i].usage));
      assert.deepEqual(textResult(results[i]), textResult(await call(direct, p)));
    }
  });

  test("generateText with openai(model) (Responses API): one /v1/responses batch, sync-equal answers", async () => {
    const ctx = batchify(FAST);
    const openai = aiOpenAI(ctx.fetch);
    const prompts = ["tides", "winds", "stars"];
    const call = (model, prompt) => generateText({ model: model("gpt-4.1-mini"), prompt, maxOutputTokens: 40 });
    const results = await Promise.all(prompts.map((p) => call(openai, p)));
    await ctx.close();
    assert.equal(oneBatch("openai", 3).endpoint, "/v1/responses");
    noSyncCalls();
    const direct = aiOpenAI(undefined);
    for (const [i, p] of prompts.entries()) {
      assert.equal(results[i].text, `echo: ${p}`);
      assert.equal(results[i].finishReason, "stop");
      assert.ok(results[i].usage.totalTokens > 0);
      assert.deepEqual(textResult(results[i]), textResult(await call(direct, p)));
    }
  });

  test("embed and embedMany: one /v1/embeddings batch, the same vectors as sync", async () => {
    const ctx = batchify(FAST);
    const model = aiOpenAI(ctx.fetch).embedding("text-embedding-3-small");
    const [one, two, many] = await Promise.all([
      embed({ model, value: "first" }),
      embed({ model, value: "second" }),
      embedMany({ model, values: ["x", "y", "z"] }), // one request with an array input
    ]);
    await ctx.close();
    assert.equal(oneBatch("openai", 3).endpoint, "/v1/embeddings");
    noSyncCalls();
    const direct = aiOpenAI(undefined).embedding("text-embedding-3-small");
    assert.deepEqual(one.embedding, (await embed({ model: direct, value: "first" })).embedding);
    assert.deepEqual(two.embedding, (await embed({ model: direct, value: "second" })).embedding);
    const syncMany = await embedMany({ model: direct, values: ["x", "y", "z"] });
    assert.equal(many.embeddings.length, 3);
    assert.deepEqual(many.embeddings, syncMany.embeddings);
    assert.deepEqual(many.usage, syncMany.usage);
    assert.ok(one.usage.tokens > 0);
  });

  test("generateText with createAnthropic(): one message batch, sync-equal answers", async () => {
    const ctx = batchify(FAST);
    const anthropic = aiAnthropic(ctx.fetch);
    const prompts = ["one", "two", "three", "four"];
    const call = (provider, prompt) =>
      generateText({ model: provider("claude-sonnet-4-6"), system: "be brief", prompt, maxOutputTokens: 64 });
    const results = await Promise.all(prompts.map((p) => call(anthropic, p)));
    await ctx.close();
    oneBatch("anthropic", prompts.length);
    noSyncCalls();
    const direct = aiAnthropic(undefined);
    for (const [i, p] of prompts.entries()) {
      assert.equal(results[i].text, `echo: ${p}`);
      assert.equal(results[i].finishReason, "stop");
      assert.ok(results[i].usage.inputTokens > 0 && results[i].usage.outputTokens > 0);
      assert.deepEqual(textResult(results[i], { clock: true }), textResult(await call(direct, p), { clock: true }));
    }
  });

  test("structured output with a zod schema: generateObject (chat) and Output.object (responses)", async () => {
    const schema = z.object({ name: z.string(), age: z.number(), tags: z.array(z.string()) });
    const ctx = batchify(FAST);
    const openai = aiOpenAI(ctx.fetch);
    const object = (provider, prompt) => generateObject({ model: provider.chat("gpt-4o-mini"), schema, prompt });
    const viaOutput = (provider, prompt) => generateText({ model: provider("gpt-4.1-mini"), output: Output.object({ schema }), prompt });
    const [a, b, c, bad] = await Promise.allSettled([
      object(openai, "person a"),
      object(openai, "person b"),
      viaOutput(openai, "person c"),
      object(openai, "BADJSON person"), // the fake answers JSON that violates the schema
    ]);
    await ctx.close();
    assert.deepEqual(sizes(), ["openai:1", "openai:3"], "chat and responses batches");
    noSyncCalls();
    assert.deepEqual(a.value.object, { name: "echo: person a", age: 1, tags: ["fake"] });
    assert.deepEqual(b.value.object, { name: "echo: person b", age: 1, tags: ["fake"] });
    assert.deepEqual(c.value.output, { name: "echo: person c", age: 1, tags: ["fake"] });
    assert.equal(a.value.finishReason, "stop");
    assert.ok(a.value.usage.totalTokens > 0);
    assert.ok(NoObjectGeneratedError.isInstance(bad.reason), String(bad.reason));
    const direct = aiOpenAI(undefined);
    const syncA = await object(direct, "person a");
    assert.deepEqual(plain({ o: a.value.object, u: a.value.usage, r: a.value.response.body }), plain({ o: syncA.object, u: syncA.usage, r: syncA.response.body }));
    assert.deepEqual(c.value.output, (await viaOutput(direct, "person c")).output);
  });

  test("structured output through Anthropic (json tool mode): one batch, typed objects", async () => {
    // @ai-sdk/anthropic defaults to Anthropic's native `output_config.format` for Claude 4.x; the
    // fake provider answers structured output only for a forced tool, so this test picks the
    // SDK's `jsonTool` mode. Batching does not care which: the body reaches the batch unchanged.
    const schema = z.object({ city: z.string(), population: z.number() });
    const ctx = batchify(FAST);
    const anthropic = aiAnthropic(ctx.fetch);
    const call = (provider, prompt) =>
      generateObject({ model: provider("claude-sonnet-4-6"), schema, prompt, providerOptions: { anthropic: { structuredOutputMode: "jsonTool" } } });
    const results = await Promise.all(["paris", "rome"].map((p) => call(anthropic, p)));
    await ctx.close();
    const batch = oneBatch("anthropic", 2);
    for (const { body } of batch.requests) {
      assert.deepEqual([body.tools[0].name, body.tool_choice.type], ["json", "any"], "the forced tool reached the batch");
    }
    noSyncCalls();
    assert.deepEqual(results.map((r) => r.object), [{ city: "echo: paris", population: 1 }, { city: "echo: rome", population: 1 }]);
    assert.deepEqual(plain(results[0].usage), plain((await call(aiAnthropic(undefined), "paris")).usage));
  });

  test("a per-line error is the SDK's APICallError with the line's status; neighbours succeed", async () => {
    const ctx = batchify(FAST);
    const openai = aiOpenAI(ctx.fetch);
    const anthropic = aiAnthropic(ctx.fetch);
    // maxRetries: 0 — see the top of the file; 500 is retryable for the AI SDK.
    const chat = (prompt) => generateText({ model: openai.chat("gpt-4o-mini"), prompt, maxRetries: 0 });
    const claude = (prompt) => generateText({ model: anthropic("claude-sonnet-4-6"), prompt, maxRetries: 0 });
    const [ok, bad400, bad500, claudeOk, claude429] = await Promise.allSettled([
      chat("fine"),
      chat("FAIL:400 nope"),
      chat("FAIL:500 boom"),
      claude("fine too"),
      claude("FAIL:429 slow down"),
    ]);
    await ctx.close();
    assert.deepEqual(sizes(), ["anthropic:2", "openai:3"]);
    noSyncCalls();
    assert.equal(ok.value.text, "echo: fine");
    assert.equal(claudeOk.value.text, "echo: fine too");
    for (const [result, status, retryable] of [[bad400, 400, false], [bad500, 500, true], [claude429, 429, true]]) {
      assert.equal(result.status, "rejected");
      assert.ok(APICallError.isInstance(result.reason), String(result.reason));
      assert.equal(result.reason.statusCode, status);
      assert.equal(result.reason.isRetryable, retryable);
      assert.match(result.reason.message, new RegExp(`FAIL:${status}`));
    }
    // Without batchling the same calls fail the same way.
    const direct = await generateText({ model: aiOpenAI(undefined).chat("gpt-4o-mini"), prompt: "FAIL:400 nope", maxRetries: 0 }).catch((e) => e);
    assert.equal(direct.statusCode, 400);
    assert.equal(direct.message, bad400.reason.message);
  });

  test("the AI SDK's own retry of a 5xx line rides a new batch (not a cached error); a 400 is not retried", async () => {
    // With the persistent cache on: a transient line error (429 / 5xx) is not cached, so the
    // framework's retry really reaches the provider again. (The fake fails it again: it is
    // deterministic.) The AI SDK waits 2 s before its first retry.
    const ctx = batchify({ ...FAST, cache: { storage: new MemoryStorage() } });
    const openai = aiOpenAI(ctx.fetch);
    const call = (prompt) => generateText({ model: openai.chat("gpt-4o-mini"), prompt, maxRetries: 1 });
    const [flaky, bad] = await Promise.allSettled([call("FAIL:500 flaky"), call("FAIL:400 bad")]);
    await ctx.close();
    assert.deepEqual(sizes(), ["openai:1", "openai:2"], "the retry went out in a second batch");
    noSyncCalls();
    assert.ok(RetryError.isInstance(flaky.reason), String(flaky.reason));
    assert.deepEqual(flaky.reason.errors.map((e) => e.statusCode), [500, 500]);
    assert.ok(APICallError.isInstance(bad.reason), String(bad.reason));
    assert.equal(bad.reason.statusCode, 400);
  });

  test("inside ctx.run(), providers created without a fetch are batched too", async () => {
    const ctx = batchify(FAST);
    const openai = aiOpenAI(undefined);
    const anthropic = aiAnthropic(undefined);
    const [a, b, c] = await ctx.run(() =>
      Promise.all([
        generateText({ model: openai.chat("gpt-4o-mini"), prompt: "run a" }),
        generateText({ model: openai.chat("gpt-4o-mini"), prompt: "run b" }),
        generateText({ model: anthropic("claude-sonnet-4-6"), prompt: "run c" }),
      ]),
    );
    await ctx.close();
    assert.deepEqual(sizes(), ["anthropic:1", "openai:2"]);
    noSyncCalls();
    assert.deepEqual([a.text, b.text, c.text], ["echo: run a", "echo: run b", "echo: run c"]);
  });

  test("streamText is not batched: it goes to the sync endpoint as a stream, untouched", async () => {
    const ctx = batchify(FAST);
    let streamError;
    const result = streamText({
      model: aiOpenAI(ctx.fetch).chat("gpt-4o-mini"),
      prompt: "stream me",
      maxRetries: 0,
      onError: ({ error }) => (streamError = error),
    });
    // The fake's sync endpoint answers `stream: true` with server-sent events.
    const parts = [];
    for await (const part of result.textStream) parts.push(part);
    await ctx.close();
    assert.equal(streamError, undefined, String(streamError));
    assert.equal(parts.join(""), "echo: stream me");
    assert.ok(parts.length > 1, `streamed in ${parts.length} parts`);
    assert.equal(fake.counters.batchesCreated.openai, 0);
    assert.equal(fake.counters.requests["openai.chat.completions"], 1, "one sync call");
    assert.equal(fake.counters.lastPaths["openai.chat.completions"], "POST /v1/chat/completions");
  });
});

// ---------------------------------------------------------------------------------------------
// LangChain.js

const lcOpenAI = (fetch, extra = {}) =>
  new ChatOpenAI({ model: "gpt-4o-mini", apiKey: "sk-test", configuration: { baseURL: `${fake.url}/v1`, fetch }, ...extra });
const lcAnthropic = (fetch, extra = {}) =>
  new ChatAnthropic({ model: "claude-sonnet-4-6", apiKey: "ak-test", anthropicApiUrl: fake.url, clientOptions: { fetch }, ...extra });

describe("LangChain.js through ctx.fetch", () => {
  test("ChatOpenAI .invoke and .batch: one /v1/chat/completions batch, sync-equal messages", async () => {
    const ctx = batchify(FAST);
    const model = lcOpenAI(ctx.fetch);
    const [solo, many] = await Promise.all([model.invoke("solo"), model.batch(["one", "two", "three"])]);
    await ctx.close();
    assert.equal(oneBatch("openai", 4).endpoint, "/v1/chat/completions");
    noSyncCalls();
    assert.deepEqual(many.map((m) => m.content), ["echo: one", "echo: two", "echo: three"]);
    assert.equal(solo.response_metadata.finish_reason, "stop");
    assert.ok(solo.usage_metadata.input_tokens > 0 && solo.usage_metadata.output_tokens > 0);
    const direct = lcOpenAI(undefined);
    assert.deepEqual(plain(solo), plain(await direct.invoke("solo")));
    assert.deepEqual(plain(many), plain(await direct.batch(["one", "two", "three"])));
  });

  test("ChatOpenAI with useResponsesApi: one /v1/responses batch, sync-equal messages", async () => {
    const ctx = batchify(FAST);
    const model = lcOpenAI(ctx.fetch, { model: "gpt-4.1-mini", useResponsesApi: true });
    const answers = await model.batch(["north", "south"]);
    await ctx.close();
    assert.equal(oneBatch("openai", 2).endpoint, "/v1/responses");
    noSyncCalls();
    assert.deepEqual(answers.map((m) => m.text), ["echo: north", "echo: south"]);
    const direct = lcOpenAI(undefined, { model: "gpt-4.1-mini", useResponsesApi: true });
    assert.deepEqual(plain(answers), plain(await direct.batch(["north", "south"])));
  });

  test("ChatAnthropic .invoke and .batch: one message batch, sync-equal messages", async () => {
    const ctx = batchify(FAST);
    const model = lcAnthropic(ctx.fetch, { maxTokens: 128 });
    const [solo, many] = await Promise.all([model.invoke("solo"), model.batch(["one", "two"])]);
    await ctx.close();
    oneBatch("anthropic", 3);
    noSyncCalls();
    assert.deepEqual(many.map((m) => m.content), ["echo: one", "echo: two"]);
    assert.equal(solo.response_metadata.stop_reason, "end_turn");
    assert.ok(solo.usage_metadata.input_tokens > 0 && solo.usage_metadata.output_tokens > 0);
    const direct = lcAnthropic(undefined, { maxTokens: 128 });
    assert.deepEqual(plain(solo), plain(await direct.invoke("solo")));
    assert.deepEqual(plain(many), plain(await direct.batch(["one", "two"])));
  });

  test("withStructuredOutput(zod) on ChatOpenAI (json_schema) and ChatAnthropic (forced tool)", async () => {
    const schema = z.object({ title: z.string(), year: z.number() });
    const ctx = batchify(FAST);
    const gpt = lcOpenAI(ctx.fetch).withStructuredOutput(schema);
    const claude = lcAnthropic(ctx.fetch).withStructuredOutput(schema);
    const [fromGpt, fromClaude] = await Promise.all([gpt.batch(["film a", "film b"]), claude.batch(["book a", "book b"])]);
    await ctx.close();
    assert.deepEqual(sizes(), ["anthropic:2", "openai:2"]);
    noSyncCalls();
    assert.deepEqual(fromGpt, [{ title: "echo: film a", year: 1 }, { title: "echo: film b", year: 1 }]);
    assert.deepEqual(fromClaude, [{ title: "echo: book a", year: 1 }, { title: "echo: book b", year: 1 }]);
    assert.deepEqual(fromGpt[0], await lcOpenAI(undefined).withStructuredOutput(schema).invoke("film a"));
    assert.deepEqual(fromClaude[0], await lcAnthropic(undefined).withStructuredOutput(schema).invoke("book a"));
  });

  test("a per-line error rejects with the error LangChain raises without batchling; neighbours succeed", async () => {
    const ctx = batchify(FAST);
    // maxRetries: 0 — see the top of the file; LangChain retries 5xx and 429.
    const gpt = lcOpenAI(ctx.fetch, { maxRetries: 0 });
    const claude = lcAnthropic(ctx.fetch, { maxRetries: 0 });
    const [ok, bad400, bad500, claudeOk, claude400] = await Promise.allSettled([
      gpt.invoke("fine"),
      gpt.invoke("FAIL:400 nope"),
      gpt.invoke("FAIL:500 boom"),
      claude.invoke("fine too"),
      claude.invoke("FAIL:400 nope"),
    ]);
    await ctx.close();
    assert.deepEqual(sizes(), ["anthropic:2", "openai:3"]);
    noSyncCalls();
    assert.equal(ok.value.content, "echo: fine");
    assert.equal(claudeOk.value.content, "echo: fine too");
    const directGpt = lcOpenAI(undefined, { maxRetries: 0 });
    const directClaude = lcAnthropic(undefined, { maxRetries: 0 });
    const expected = [
      [bad400, "BadRequestError", 400, () => directGpt.invoke("FAIL:400 nope")],
      [bad500, "InternalServerError", 500, () => directGpt.invoke("FAIL:500 boom")],
      [claude400, "BadRequestError", 400, () => directClaude.invoke("FAIL:400 nope")],
    ];
    for (const [result, name, status, directCall] of expected) {
      assert.equal(result.status, "rejected");
      assert.equal(result.reason.constructor.name, name, String(result.reason));
      assert.equal(result.reason.status, status);
      const direct = await directCall().catch((e) => e);
      assert.equal(direct.constructor, result.reason.constructor, "the same class as without batchling");
      assert.equal(direct.message, result.reason.message);
    }
  });

  test("inside ctx.run(), models created without a fetch are batched too", async () => {
    const ctx = batchify(FAST);
    const gpt = lcOpenAI(undefined);
    const claude = lcAnthropic(undefined);
    const [a, b] = await ctx.run(() => Promise.all([gpt.batch(["run a", "run b"]), claude.invoke("run c")]));
    await ctx.close();
    assert.deepEqual(sizes(), ["anthropic:1", "openai:2"]);
    noSyncCalls();
    assert.deepEqual([...a.map((m) => m.content), b.content], ["echo: run a", "echo: run b", "echo: run c"]);
  });

  test(".stream() is not batched: it goes to the sync endpoint as a stream, untouched", async () => {
    const ctx = batchify(FAST);
    // The fake's sync endpoint answers `stream: true` with server-sent events.
    const stream = await lcOpenAI(ctx.fetch, { maxRetries: 0 }).stream("stream me");
    const parts = [];
    for await (const chunk of stream) parts.push(chunk.content);
    await ctx.close();
    assert.equal(parts.join(""), "echo: stream me");
    assert.ok(parts.filter((p) => p !== "").length > 1, `streamed in ${parts.length} chunks`);
    assert.equal(fake.counters.batchesCreated.openai, 0);
    assert.equal(fake.counters.requests["openai.chat.completions"], 1, "one sync call");
  });
});

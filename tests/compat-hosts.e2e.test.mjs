// OpenAI-compatible hosts through the OpenAI adapter (Groq, Doubleword, Azure OpenAI, declared
// hosts): what the shared contract (tests/contract.test.mjs) does not check. Against the fake
// provider's flavours of its OpenAI module (tests/fake-provider/openai.mjs, FLAVOURS).
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import OpenAI, { AzureOpenAI } from "openai";
import Groq from "groq-sdk";
import { FAST, useFakeProvider } from "./support/fake.mjs";
import { batchify, BatchlingError } from "../dist/index.js";

const fake = useFakeProvider();

const messages = (content) => [{ role: "user", content }];
const text = (completion) => completion.choices[0].message.content;
const lines = (batch) => batch.requests;
const createBodies = () => [...fake.batches.values()].map((b) => b.completionWindow);

describe("Azure OpenAI", () => {
  const azureHosts = () => [{ baseUrl: `${fake.url}/azure/openai`, provider: "azure" }];
  const azure = (fetch, apiVersion = "2024-10-21", deployment) =>
    new AzureOpenAI({ endpoint: `${fake.url}/azure`, apiKey: "az-key", apiVersion, deployment, fetch, maxRetries: 0 });

  test("classic deployments: every batch call carries the api-version and api-key; lines name the deployment", async () => {
    const ctx = batchify({ ...FAST, hosts: azureHosts() });
    // The client's deployment wins over the body's model, as it does for the sync call.
    const client = azure(ctx.fetch, "2024-10-21", "my-batch-deployment");
    const answers = await Promise.all(["a", "b"].map((t) => client.chat.completions.create({ model: "gpt-4o-mini", messages: messages(t) })));
    await ctx.close();
    assert.deepEqual(answers.map(text), ["echo: a", "echo: b"]);
    assert.equal(fake.counters.batchesCreated.azure, 1);
    for (const route of ["azure.files.create", "azure.batches.create", "azure.batches.retrieve", "azure.files.content"]) {
      assert.match(fake.counters.lastPaths[route], /[?&]api-version=2024-10-21(&|$)/, route);
      assert.equal(fake.counters.lastHeaders[route]["api-key"], "az-key", route);
      assert.equal(fake.counters.lastHeaders[route].authorization, undefined, route);
    }
    assert.match(fake.counters.lastPaths["azure.files.create"], /^POST \/azure\/openai\/files\?/);
    const [batch] = fake.batches.values();
    assert.equal(batch.endpoint, "/chat/completions");
    assert.deepEqual(lines(batch).map((l) => [l.url, l.body.model]), [
      ["/chat/completions", "my-batch-deployment"],
      ["/chat/completions", "my-batch-deployment"],
    ]);
    // The same answers as the deployment's sync endpoint.
    const direct = azure(undefined, "2024-10-21", "my-batch-deployment");
    assert.deepEqual(JSON.parse(JSON.stringify(answers[0])),
      JSON.parse(JSON.stringify(await direct.chat.completions.create({ model: "gpt-4o-mini", messages: messages("a") }))));
  });

  test("different api-versions never share a batch", async () => {
    const ctx = batchify({ ...FAST, batchSize: 100, batchWindowMs: 100, hosts: azureHosts() });
    const [a, b] = [azure(ctx.fetch, "2024-10-21"), azure(ctx.fetch, "2025-04-01-preview")];
    const ask = (c, t) => c.chat.completions.create({ model: "dep", messages: messages(t) });
    await Promise.all([ask(a, "one"), ask(b, "two"), ask(a, "three")]);
    await ctx.close();
    assert.deepEqual(fake.counters.batchSizes.map((s) => s.size).sort(), [1, 2]);
    const prompts = [...fake.batches.values()].map((batch) => batch.requests.map((r) => r.body.messages[0].content).sort().join());
    assert.deepEqual(prompts.sort(), ["one,three", "two"]);
  });

  test("embeddings are batched under the deployment with the classic /embeddings url", async () => {
    const ctx = batchify({ ...FAST, hosts: azureHosts() });
    const client = azure(ctx.fetch);
    const out = await client.embeddings.create({ model: "emb-deployment", input: ["x", "y"] });
    await ctx.close();
    assert.equal(out.data.length, 2);
    const [batch] = fake.batches.values();
    assert.equal(batch.endpoint, "/embeddings");
    assert.equal(lines(batch)[0].url, "/embeddings");
  });

  test("the v1 surface (/openai/v1, no api-version) batches like OpenAI", async () => {
    const ctx = batchify({ ...FAST, hosts: azureHosts() });
    const client = new OpenAI({ baseURL: `${fake.url}/azure/openai/v1`, apiKey: "unused", defaultHeaders: { "api-key": "az-key" }, fetch: ctx.fetch, maxRetries: 0 });
    const answer = await client.chat.completions.create({ model: "gpt-4o-mini", messages: messages("v1") });
    await ctx.close();
    assert.equal(text(answer), "echo: v1");
    const [batch] = fake.batches.values();
    assert.equal(batch.provider, "azure");
    assert.equal(batch.endpoint, "/v1/chat/completions");
    assert.doesNotMatch(fake.counters.lastPaths["azure.batches.create"], /api-version/);
  });

  test("a quota failure (token_limit_exceeded) sends the request again, in a new batch, and answers it, even with resubmit: false", async () => {
    const events = [];
    // `resubmit` is about requests a batch did not run; a refusal for the quota is not one.
    const ctx = batchify({ ...FAST, hosts: azureHosts(), resubmit: false, onEvent: (e) => events.push(e) });
    const client = azure(ctx.fetch);
    // The first poll answers a failed batch as Azure does when the enqueued-token quota is
    // exceeded: the batch ran nothing, so its request goes back to its queue.
    fake.faults.add({
      route: "azure.batches.retrieve",
      status: 200,
      body: {
        id: "batch_quota", object: "batch", status: "failed", endpoint: "/chat/completions",
        errors: { object: "list", data: [{ code: "token_limit_exceeded", message: "Enqueued token limit reached for dep.", param: null, line: null }] },
        request_counts: { total: 0, completed: 0, failed: 0 },
      },
    });
    const [result] = await Promise.allSettled([client.chat.completions.create({ model: "dep", messages: messages("q") })]);
    await ctx.close();
    assert.equal(result.status, "fulfilled", String(result.reason));
    assert.match(result.value.choices[0].message.content, /q/);
    assert.ok(events.some((e) => e.kind === "enqueuedLimit"), "the refusal is reported");
    assert.equal(events.filter((e) => e.kind === "batchSubmitted").length, 2, "one batch refused, one that ran");
    assert.ok(!events.some((e) => e.kind === "linesResubmitted"), "not a line that did not run");
  });

  test("the fake refuses calls without api-version or api-key, as Azure does", async () => {
    const url = `${fake.url}/azure/openai/batches`;
    assert.equal((await fetch(url, { headers: { "api-key": "k" } })).status, 400);
    assert.equal((await fetch(`${url}?api-version=2024-10-21`)).status, 401);
    assert.equal((await fetch(`${url}?api-version=2024-10-21`, { headers: { "api-key": "k" } })).status, 200);
  });

  test("a declared Azure host with a window Azure refuses is rejected eagerly", () => {
    assert.throws(
      () => batchify({ hosts: [{ baseUrl: "https://r.openai.azure.com/openai", provider: "azure", completionWindow: "48h" }], cache: false }),
      (e) => e instanceof BatchlingError && e.option === "hosts" && /Azure/.test(e.message),
    );
  });
});

describe("Groq", () => {
  const groqHosts = (extra = {}) => [{ baseUrl: `${fake.url}/groq/openai/v1`, provider: "groq", ...extra }];
  const groq = (fetch) => new Groq({ apiKey: "gsk-test", baseURL: `${fake.url}/groq`, fetch, maxRetries: 0 });

  test("a declared window between 24h and 7d reaches the create body; the default is 24h", async () => {
    for (const [extra, window] of [[{}, "24h"], [{ completionWindow: "7d" }, "7d"]]) {
      fake.reset();
      const ctx = batchify({ ...FAST, hosts: groqHosts(extra) });
      const answer = await groq(ctx.fetch).chat.completions.create({ model: "llama-3.1-8b-instant", messages: messages("w") });
      await ctx.close();
      assert.equal(text(answer), "echo: w");
      assert.deepEqual(createBodies(), [window]);
      assert.match(fake.counters.lastPaths["groq.batches.create"], /^POST \/groq\/openai\/v1\/batches$/);
    }
    assert.throws(
      () => batchify({ hosts: groqHosts({ completionWindow: "30d" }), cache: false }),
      (e) => e instanceof BatchlingError && e.option === "hosts" && /Groq/.test(e.message),
    );
  });

  test("an endpoint Groq does not batch (responses) passes through, next to batched chat calls", async () => {
    const ctx = batchify({ ...FAST, hosts: groqHosts() });
    const client = new OpenAI({ apiKey: "gsk-test", baseURL: `${fake.url}/groq/openai/v1`, fetch: ctx.fetch, maxRetries: 0 });
    const [response, chat] = await Promise.all([
      client.responses.create({ model: "openai/gpt-oss-20b", input: "straight through" }),
      client.chat.completions.create({ model: "openai/gpt-oss-20b", messages: messages("batched") }),
    ]);
    await ctx.close();
    assert.equal(response.output_text, "echo: straight through");
    assert.equal(text(chat), "echo: batched");
    assert.equal(fake.counters.syncCallsByProvider.groq, 1);
    assert.equal(fake.counters.requests["groq.responses"], 1);
    assert.equal(fake.counters.batchesCreated.groq, 1);
  });
});

describe("Doubleword", () => {
  test("embeddings are batched too", async () => {
    const ctx = batchify({ ...FAST, hosts: [{ baseUrl: `${fake.url}/doubleword/v1`, provider: "doubleword" }] });
    const client = new OpenAI({ apiKey: "dw-test", baseURL: `${fake.url}/doubleword/v1`, fetch: ctx.fetch, maxRetries: 0 });
    const [a, b] = await Promise.all(["x", "y"].map((input) => client.embeddings.create({ model: "Qwen/Qwen3-Embedding-8B", input })));
    await ctx.close();
    assert.equal(a.data.length, 1);
    assert.notDeepEqual(a.data[0].embedding, b.data[0].embedding);
    assert.deepEqual(fake.counters.batchSizes.map((s) => [s.provider, s.size]), [["doubleword", 2]]);
    assert.equal([...fake.batches.values()][0].endpoint, "/v1/embeddings");
  });
});

describe("a declared OpenAI-compatible host", () => {
  test("its completion window reaches every create body and maxRequests splits the batches", async () => {
    // Any OpenAI-compatible batch host (Novita, DeepInfra, …), declared with the OpenAI protocol.
    // The fake's Groq flavour stands in for it because it accepts a 48h window.
    const baseUrl = `${fake.url}/groq/openai/v1`;
    const ctx = batchify({ ...FAST, batchSize: 100, batchWindowMs: 100, hosts: [{ baseUrl, provider: "openai", completionWindow: "48h", maxRequests: 2 }] });
    const client = new OpenAI({ apiKey: "novita-key", baseURL: baseUrl, fetch: ctx.fetch, maxRetries: 0 });
    const answers = await Promise.all(Array.from({ length: 5 }, (_, i) => client.chat.completions.create({ model: "meta-llama/llama-3.1-8b-instruct", messages: messages(`n${i}`) })));
    await ctx.close();
    assert.deepEqual(answers.map(text), Array.from({ length: 5 }, (_, i) => `echo: n${i}`));
    assert.deepEqual(fake.counters.batchSizes.map((s) => s.size).sort(), [1, 2, 2]);
    assert.deepEqual(createBodies(), ["48h", "48h", "48h"]);
    assert.equal(fake.counters.syncCalls, 0);
  });
});

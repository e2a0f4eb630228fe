// End to end: the providers' enqueued-token limits, through the official SDKs inside batchify()
// against the fake provider with a low limit (`config.enqueuedTokenLimit`): a refused batch ran
// nothing, so its requests go again once a batch in flight ends; every call is answered once.
import { test, describe, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import OpenAI from "openai";
import Anthropic from "@anthropic-ai/sdk";
import { FAST, useFakeProvider } from "./support/fake.mjs";
import { Batch, batchify, BatchlingError } from "../dist/index.js";

const fake = useFakeProvider();

const openaiWith = (fetch) => new OpenAI({ apiKey: "sk-test", baseURL: `${fake.url}/v1`, fetch, maxRetries: 0 });
const anthropicWith = (fetch) => new Anthropic({ apiKey: "ak-test", baseURL: fake.url, fetch, maxRetries: 0 });
const prompt = (i) => `question ${String(i).padStart(2, "0")} ${"lorem ipsum ".repeat(30)}`;
const chat = (content) => ({ model: "gpt-4o-mini", messages: [{ role: "user", content }] });
/** The fake's token count of one such request (its body's JSON chars / 4). */
const tokensOf = (body) => Math.ceil(JSON.stringify(body).length / 4);

/** Custom ids of each batch the fake got, in creation order, with whether it was refused. */
function batchesSeen() {
  return [...fake.batches.values()]
    .filter((b) => b.provider === "openai" || b.provider === "anthropic")
    .sort((a, b) => a.seq - b.seq)
    .map((b) => ({ ids: b.requests.map((r) => r.customId), refused: Boolean(b.refusedForTokens), state: b.state }));
}

/** No request went into a batch while another batch that ran (or was live) held it. */
function assertNoRequestTwiceLive(batches) {
  const seen = new Map();
  for (const [i, b] of batches.entries()) {
    for (const id of b.ids) {
      const earlier = seen.get(id);
      assert.ok(earlier === undefined || batches[earlier].refused, `request ${id} sent in batch ${i} after batch ${earlier} ran it`);
      seen.set(id, i);
    }
  }
}

describe("enqueued-token limit", () => {
  test("OpenAI: a batch refused with token_limit_exceeded goes again once the batch before it ends", async () => {
    const per = tokensOf(chat(prompt(0)));
    fake.config.enqueuedTokenLimit = Math.floor(per * 2.5); // two requests fit, four do not
    const events = [];
    const ctx = batchify({ ...FAST, batchSize: 2, onEvent: (e) => events.push(e) });
    const client = openaiWith(ctx.fetch);
    const answers = await Promise.all(Array.from({ length: 6 }, (_, i) => client.chat.completions.create(chat(prompt(i)))));
    await ctx.close();
    for (const [i, a] of answers.entries()) assert.equal(a.choices[0].message.content, `echo: ${prompt(i)}`);
    const batches = batchesSeen();
    assert.ok(fake.counters.enqueuedLimitRefusals >= 1, "the low limit refused a batch");
    assert.equal(batches.filter((b) => !b.refused).length, 3, "three batches of two ran");
    assertNoRequestTwiceLive(batches);
    const limit = events.filter((e) => e.kind === "enqueuedLimit");
    assert.ok(limit.length >= 1, "the wait was announced");
    assert.equal(limit[0].provider, "openai");
    assert.equal(limit[0].model, "gpt-4o-mini");
    assert.equal(limit[0].limitTokens, fake.config.enqueuedTokenLimit, "the limit the provider stated");
    assert.ok(limit[0].requests >= 1 && limit[0].tokens >= per, JSON.stringify(limit[0]));
    const finished = events.filter((e) => e.kind === "batchFinished" && e.state === "failed");
    assert.equal(finished.length, fake.counters.enqueuedLimitRefusals);
  });

  test("OpenAI: maxEnqueuedTokens keeps under a known limit, so the provider never refuses", async () => {
    const per = tokensOf(chat(prompt(0)));
    fake.config.enqueuedTokenLimit = Math.floor(per * 2.5);
    const events = [];
    const ctx = batchify({ ...FAST, batchSize: 5, maxEnqueuedTokens: Math.floor(per * 2.5), onEvent: (e) => events.push(e) });
    const client = openaiWith(ctx.fetch);
    const answers = await Promise.all(Array.from({ length: 5 }, (_, i) => client.chat.completions.create(chat(prompt(i)))));
    await ctx.close();
    for (const [i, a] of answers.entries()) assert.equal(a.choices[0].message.content, `echo: ${prompt(i)}`);
    assert.equal(fake.counters.enqueuedLimitRefusals, 0);
    assert.deepEqual(fake.counters.batchSizes.map((b) => b.size), [2, 2, 1], "split under the limit");
    assert.equal(fake.counters.maxConcurrentActiveBatches.openai, 1, "one batch at a time");
    assert.ok(events.some((e) => e.kind === "enqueuedLimit" && e.limitTokens === Math.floor(per * 2.5)));
    assertNoRequestTwiceLive(batchesSeen());
  });

  test("Anthropic: a create answered 429 waits for the batch in flight, then goes", async () => {
    const body = (i) => ({ model: "claude-3-5-haiku-latest", max_tokens: 50, messages: [{ role: "user", content: prompt(i) }] });
    fake.config.enqueuedTokenLimit = Math.floor(tokensOf(body(0)) * 2.5);
    const events = [];
    const ctx = batchify({ ...FAST, batchSize: 2, onEvent: (e) => events.push(e) });
    const client = anthropicWith(ctx.fetch);
    const answers = await Promise.all(Array.from({ length: 4 }, (_, i) => client.messages.create(body(i))));
    await ctx.close();
    for (const [i, a] of answers.entries()) assert.equal(a.content[0].text, `echo: ${prompt(i)}`);
    assert.ok(fake.counters.enqueuedLimitRefusals >= 1);
    assert.equal(fake.counters.batchesCreated.anthropic, 2);
    assert.equal(fake.counters.maxConcurrentActiveBatches.anthropic, 1);
    assert.ok(events.some((e) => e.kind === "enqueuedLimit" && e.provider === "anthropic"));
    assert.ok(!events.some((e) => e.kind === "retry" && e.step === "create"), "waited rather than retried");
  });

  test("maxEnqueuedTokens is checked eagerly", () => {
    for (const bad of [0, -1, 1.5, "100", Number.NaN]) {
      assert.throws(
        () => batchify({ ...FAST, maxEnqueuedTokens: bad }),
        (e) => e instanceof BatchlingError && e.code === "ERR_BATCHLING_INVALID_OPTION" && e.option === "maxEnqueuedTokens",
        String(bad),
      );
    }
  });

  test("the job builder: status() shows the requests waiting for headroom, and every job ends ok", async () => {
    const dir = mkdtempSync(join(tmpdir(), "batchling-enqueued-"));
    after(() => rmSync(dir, { recursive: true, force: true }));
    const batch = new Batch({
      stateFile: join(dir, "state.json"),
      resultsDir: join(dir, "results"),
      itemsPerBatch: 2,
      pollIntervalMs: 10,
      retry: { attempts: 3, backoffMs: 5, maxBackoffMs: 20 },
      providers: { openai: { apiKey: "sk-test", baseURL: `${fake.url}/v1` } },
    });
    const progress = [];
    batch.defaults({ model: "gpt-4o-mini" }).onProgress((stats) => progress.push(stats));
    for (let i = 0; i < 6; i++) batch.addJob({ id: `job-${i}`, messages: [{ role: "user", content: prompt(i) }] });
    // Two jobs' requests fit under the limit, four do not (a job's body is the request the fake counts).
    fake.config.enqueuedTokenLimit = Math.floor(tokensOf(chat(prompt(0))) * 2.5);
    const run = await batch.run({ wait: true });
    const results = run.results();
    for (let i = 0; i < 6; i++) {
      assert.equal(results[`job-${i}`].ok, true, JSON.stringify(results[`job-${i}`]));
      assert.equal(results[`job-${i}`].response, `echo: ${prompt(i)}`);
    }
    assert.ok(fake.counters.enqueuedLimitRefusals >= 1);
    assert.ok(progress.some((s) => s.waitingForHeadroom > 0), "status showed requests waiting for headroom");
    const final = run.status();
    assert.equal(final.waitingForHeadroom, 0);
    assert.equal(final.completed, 6);
    assertNoRequestTwiceLive(batchesSeen());
  });
});

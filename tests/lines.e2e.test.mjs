// End to end: lines that never came back. A batch that ends without running some of its requests
// (a missing line, an expired batch) resubmits exactly those in a new batch, through the official
// SDKs inside batchify() against the fake provider; a flaky download is downloaded again rather
// than resubmitted; the job builder resubmits lines that came back with a retryable error.
import { test, describe, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import OpenAI from "openai";
import Anthropic from "@anthropic-ai/sdk";
import { FAST, useFakeProvider } from "./support/fake.mjs";
import { Batch, BatchlingError, batchify } from "../dist/index.js";

const fake = useFakeProvider();

const openaiWith = (fetch) => new OpenAI({ apiKey: "sk-test", baseURL: `${fake.url}/v1`, fetch, maxRetries: 0 });
const anthropicWith = (fetch) => new Anthropic({ apiKey: "ak-test", baseURL: fake.url, fetch, maxRetries: 0 });

const ROWS = [
  {
    provider: "openai",
    client: openaiWith,
    ask: (c, text) => c.chat.completions.create({ model: "gpt-4o-mini", messages: [{ role: "user", content: text }] }),
    text: (a) => a.choices[0].message.content,
    download: "openai.files.content",
  },
  {
    provider: "anthropic",
    client: anthropicWith,
    ask: (c, text) => c.messages.create({ model: "claude-haiku-4-5", max_tokens: 20, messages: [{ role: "user", content: text }] }),
    text: (a) => a.content[0].text,
    download: "anthropic.batches.results",
  },
];

/** Ask `texts` through one batchify context with `options`; its events and settled results. */
async function through(row, options, texts) {
  const events = [];
  const ctx = batchify({ ...FAST, batchSize: texts.length, batchWindowMs: 200, onEvent: (e) => events.push(e), ...options });
  const client = row.client(ctx.fetch);
  const results = await Promise.allSettled(texts.map((t) => row.ask(client, t)));
  await ctx.close();
  return { results, events };
}

const sizes = (provider) => fake.counters.batchSizes.filter((b) => b.provider === provider).map((b) => b.size);
const resubmissions = (events) => events.filter((e) => e.kind === "linesResubmitted");

for (const row of ROWS) {
  describe(`${row.provider}: lines that never came back`, () => {
    test("a completed batch with a missing line: that caller gets a real answer from a second batch", async () => {
      fake.faults.nextBatchFate(row.provider, "missing");
      const texts = ["m0", "m1", "m2"];
      const { results, events } = await through(row, {}, texts);
      assert.deepEqual(results.map((r) => r.status), ["fulfilled", "fulfilled", "fulfilled"], String(results.map((r) => r.reason)));
      assert.deepEqual(results.map((r) => row.text(r.value)), texts.map((t) => `echo: ${t}`));
      assert.deepEqual(sizes(row.provider), [3, 1], "only the missing request went into the second batch");
      const [first] = fake.counters.batchSizes;
      assert.deepEqual(
        resubmissions(events).map((e) => [e.batchId, e.state, e.requests]),
        [[first.id, "completed", 1]],
      );
    });

    test("an expired batch: what did not run is resubmitted and answered", async () => {
      fake.faults.nextBatchFate(row.provider, "expired");
      const texts = ["e0", "e1", "e2", "e3"];
      const { results, events } = await through(row, {}, texts);
      assert.deepEqual(results.map((r) => row.text(r.value)), texts.map((t) => `echo: ${t}`));
      // The fake runs the first half of an expired batch: the other two go into a second one.
      assert.deepEqual(sizes(row.provider), [4, 2]);
      assert.deepEqual(resubmissions(events).map((e) => [e.state, e.requests]), [["expired", 2]]);
    });

    test("after lineAttempts batches that ran nothing, the typed error names every batch", async () => {
      fake.faults.nextBatchFate(row.provider, "expired");
      fake.faults.nextBatchFate(row.provider, "expired");
      const { results } = await through(row, { lineAttempts: 2 }, ["x0"]);
      assert.equal(results[0].status, "rejected");
      // The SDKs wrap a rejected fetch in their connection error, with ours as its cause.
      const err = results[0].reason.cause;
      assert.ok(err instanceof BatchlingError, String(results[0].reason));
      assert.equal(err.code, "ERR_BATCHLING_LINES_NOT_RUN");
      const ids = fake.counters.batchSizes.map((b) => b.id);
      assert.equal(ids.length, 2, "no third batch");
      for (const id of ids) assert.ok(err.message.includes(id), `${err.message} names ${id}`);
      assert.match(err.message, /expired/);
    });

    test("resubmit: false keeps today's answer: the batch's end as an error response", async () => {
      fake.faults.nextBatchFate(row.provider, "missing");
      const { results } = await through(row, { resubmit: false }, ["n0", "n1"]);
      const rejected = results.filter((r) => r.status === "rejected");
      assert.equal(rejected.length, 1);
      assert.equal(rejected[0].reason.status, 500, String(rejected[0].reason));
      assert.deepEqual(sizes(row.provider), [2]);
    });

    test("a flaky download is downloaded again, not resubmitted", async () => {
      fake.faults.add({ route: row.download, dropFirstLine: true });
      const texts = ["f0", "f1", "f2"];
      const { results, events } = await through(row, {}, texts);
      assert.deepEqual(results.map((r) => row.text(r.value)), texts.map((t) => `echo: ${t}`));
      assert.equal(fake.counters.requests[row.download], 2, "downloaded twice");
      assert.deepEqual(sizes(row.provider), [3], "the fake received each line once");
      assert.deepEqual(resubmissions(events), []);
      assert.ok(events.some((e) => e.kind === "warning" && /downloading its results again/.test(e.message)));
    });
  });
}

test("options are checked eagerly with typed errors", () => {
  assert.throws(() => batchify({ lineAttempts: 0 }), (e) => e.code === "ERR_BATCHLING_INVALID_OPTION" && e.option === "lineAttempts");
  assert.throws(() => batchify({ resubmit: "no" }), (e) => e.code === "ERR_BATCHLING_INVALID_OPTION" && e.option === "resubmit");
});

describe("the job builder", () => {
  const dirs = [];
  after(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

  test("a line that came back with a retryable error is resubmitted and counted in status()", async () => {
    const dir = mkdtempSync(join(tmpdir(), "batchling-lines-"));
    dirs.push(dir);
    const batch = new Batch({
      stateFile: join(dir, "state.json"),
      resultsDir: join(dir, "results"),
      pollIntervalMs: 10,
      lineAttempts: 2,
      providers: { openai: { apiKey: "sk-test", baseURL: `${fake.url}/v1` } },
    });
    batch.addJob({ id: "fine", model: "gpt-4o-mini", messages: [{ role: "user", content: "fine" }] });
    batch.addJob({ id: "busy", model: "gpt-4o-mini", messages: [{ role: "user", content: "busy FAIL:503" }] });
    batch.addJob({ id: "bad", model: "gpt-4o-mini", messages: [{ role: "user", content: "bad FAIL:400" }] });
    const run = await batch.run({ wait: true });
    const results = run.results();
    assert.equal(results.fine.ok, true);
    assert.equal(results.busy.ok, false);
    assert.equal(results.busy.status, 503);
    assert.equal(results.bad.status, 400);
    // "busy" went through both batches; "bad" is not retryable: the first answer is final.
    assert.deepEqual(sizes("openai"), [3, 1]);
    assert.equal(run.status().resubmitted, 1);
  });
});

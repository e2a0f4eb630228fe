// Deadlines end to end: the official openai SDK inside batchify() against a fake provider whose
// batches take seconds. A call not answered by its deadline (`deadlineMs`, or its
// `x-batchling-deadline-ms` header) is answered from the normal endpoint; one whose deadline is
// shorter than a batch's turnaround never enters a batch; the header never reaches the provider;
// the close report counts the sync fallbacks, their cost and the requests paid twice.
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import OpenAI from "openai";
import { FAST, useFakeProvider } from "./support/fake.mjs";
import { batchify, BatchlingError } from "../dist/index.js";

const fake = useFakeProvider();

const HEADER = "x-batchling-deadline-ms";
/** Polls every 100 ms, done at the 25th: a batch answers about 2.5 s after it is created. */
const SLOW = { ...FAST, pollIntervalMs: 100 };
const slowBatches = () => {
  fake.config.pollsUntilDone = 25;
};
/** A batch's turnaround as batchling counts it: the window, then one poll. */
const TURNAROUND_MS = SLOW.batchWindowMs + SLOW.pollIntervalMs;
const DEADLINE_MS = 600;

const openaiWith = (fetch) => new OpenAI({ apiKey: "sk-test", baseURL: `${fake.url}/v1`, fetch, maxRetries: 0 });
const chat = (content, extra = {}) => ({ model: "gpt-4o-mini", messages: [{ role: "user", content }], ...extra });
const text = (r) => r.choices[0].message.content;
const plain = (x) => JSON.parse(JSON.stringify(x));
const row = (report) => {
  assert.equal(report.queues.length, 1, JSON.stringify(report.queues));
  return report.queues[0];
};
const counts = (q) => ({ syncFallbacks: q.syncFallbacks, paidTwice: q.paidTwice, maybePaidTwice: q.maybePaidTwice });
const headerNeverSent = () => assert.equal(fake.counters.headerNames[HEADER], undefined, `${HEADER} reached the provider`);

/** Resolves once `done()` holds, checking every 20 ms (fails after `ms`). */
async function until(done, ms = 10_000) {
  const start = Date.now();
  while (!done()) {
    if (Date.now() - start > ms) assert.fail("condition not reached in time");
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe("deadlines through batchify", () => {
  test("deadlineMs: callers are answered by their deadline from the normal endpoint; the batch's lines are paid twice", async () => {
    slowBatches();
    const events = [];
    const ctx = batchify({ ...SLOW, deadlineMs: DEADLINE_MS, onEvent: (e) => events.push(e) });
    const client = openaiWith(ctx.fetch);
    const prompts = ["one", "two", "three"];
    const start = Date.now();
    const answers = await Promise.all(prompts.map((p) => client.chat.completions.create(chat(p))));
    const took = Date.now() - start;
    assert.ok(took >= DEADLINE_MS - 20, `answered after ${took} ms, before the deadline`);
    assert.ok(took < DEADLINE_MS + 1000, `answered after ${took} ms, long past the deadline`);
    const batch = [...fake.batches.values()];
    assert.equal(batch.length, 1, "the requests were in one batch");
    assert.equal(batch[0].terminal ?? false, false, "that batch had not ended: the answers are not its");
    assert.deepEqual(batch[0].requests.length, 3);
    assert.equal(fake.counters.requests["openai.chat.completions"], 3, "one sync call per caller");

    // The same answers as the normal endpoint's, each from the sync call for its own body.
    const direct = openaiWith(undefined);
    for (const [i, p] of prompts.entries()) {
      assert.equal(text(answers[i]), `echo: ${p}`);
      assert.deepEqual(plain(answers[i]), plain(await direct.chat.completions.create(chat(p))));
    }
    const fallbacks = events.filter((e) => e.kind === "deadlineFallback");
    assert.equal(fallbacks.length, 3);
    for (const e of fallbacks) {
      assert.equal(e.sent, true);
      assert.equal(e.tooClose, false);
      assert.equal(e.batchId, batch[0].id, "names the batch it was in");
    }
    // The batch has not ended: the three may still be paid twice.
    assert.deepEqual(counts(row(ctx.report())), { syncFallbacks: 3, paidTwice: 0, maybePaidTwice: 3 });

    // Its lines come back (billed): discarded, and the three counted as paid twice.
    await until(() => row(ctx.report()).paidTwice === 3);
    const report = await ctx.close();
    const q = row(report);
    assert.deepEqual(counts(q), { syncFallbacks: 3, paidTwice: 3, maybePaidTwice: 0 });
    assert.ok(q.syncFallbackUsd > 0, `syncFallbackUsd ${q.syncFallbackUsd}`);
    assert.ok(q.estimatedSyncUsd > 0 && q.syncFallbackUsd <= q.estimatedSyncUsd * 1.0001, "sync prices, for these three only");
    assert.equal(q.requests, 3);
    assert.equal(events.filter((e) => e.kind === "resultsReceived").length, 1);
    headerNeverSent();
  });

  test("the header sets one call's deadline and never reaches the provider", async () => {
    slowBatches();
    const ctx = batchify(SLOW);
    const client = openaiWith(ctx.fetch);
    const started = Date.now();
    const hurried = client.chat.completions
      .create(chat("hurried"), { headers: { [HEADER]: String(DEADLINE_MS) } })
      .then((r) => ({ r, at: Date.now() - started }));
    const patient = client.chat.completions.create(chat("patient")).then((r) => ({ r, at: Date.now() - started }));
    const first = await hurried;
    assert.equal(text(first.r), "echo: hurried");
    assert.ok(first.at < DEADLINE_MS + 1000, `the hurried call took ${first.at} ms`);
    assert.equal(fake.counters.requests["openai.chat.completions"], 1, "only the hurried call went sync");
    const second = await patient;
    assert.equal(text(second.r), "echo: patient");
    assert.ok(second.at > first.at + 500, "the other call waited for its batch");
    const report = await ctx.close();
    // Both were in the batch; the hurried one's line came back too (the batch ended first).
    assert.deepEqual(fake.batches.values().next().value.requests.length, 2);
    assert.deepEqual(counts(row(report)), { syncFallbacks: 1, paidTwice: 1, maybePaidTwice: 0 });
    assert.equal(fake.counters.requests["openai.chat.completions"], 1);
    headerNeverSent();
  });

  test("a deadline shorter than a batch's turnaround goes straight to the normal endpoint, in no batch", async () => {
    slowBatches();
    const events = [];
    const ctx = batchify({ ...SLOW, onEvent: (e) => events.push(e) });
    const client = openaiWith(ctx.fetch);
    const started = Date.now();
    const answer = await client.chat.completions.create(chat("now"), { headers: { [HEADER]: String(TURNAROUND_MS - 1) } });
    const took = Date.now() - started;
    assert.equal(text(answer), "echo: now");
    assert.ok(took < SLOW.batchWindowMs + 500, `took ${took} ms: it did not wait for the window`);
    const report = await ctx.close();
    assert.equal(fake.counters.batchesCreated.openai, 0, "no batch");
    assert.equal(fake.counters.requests["openai.files.create"], undefined, "no batch file");
    assert.equal(fake.counters.requests["openai.chat.completions"], 1);
    const [fallback] = events.filter((e) => e.kind === "deadlineFallback");
    assert.deepEqual([fallback.sent, fallback.tooClose, fallback.batchId], [true, true, null]);
    assert.deepEqual(counts(row(report)), { syncFallbacks: 1, paidTwice: 0, maybePaidTwice: 0 });
    assert.ok(row(report).syncFallbackUsd > 0);
    headerNeverSent();
  });

  test("a bad header value fails the call with a typed error naming the header; nothing is sent", async () => {
    const ctx = batchify(SLOW);
    for (const value of ["0", "-5", "1.5", "soon", ""]) {
      const error = await ctx
        .fetch(`${fake.url}/v1/chat/completions`, {
          method: "POST",
          headers: { "content-type": "application/json", authorization: "Bearer sk-test", [HEADER]: value },
          body: JSON.stringify(chat("x")),
        })
        .then(() => assert.fail(`accepted ${JSON.stringify(value)}`), (e) => e);
      assert.ok(error instanceof BatchlingError, String(error));
      assert.equal(error.code, "ERR_BATCHLING_INVALID_DEADLINE");
      assert.match(error.message, new RegExp(HEADER));
    }
    await ctx.close();
    assert.deepEqual(fake.counters.requests, {}, "nothing reached the provider");
  });

  test("bad deadlineMs / maxSyncFallbacks options are refused eagerly with the option named", () => {
    for (const [options, option] of [
      [{ deadlineMs: 0 }, "deadlineMs"],
      [{ deadlineMs: -1 }, "deadlineMs"],
      [{ deadlineMs: "60s" }, "deadlineMs"],
      [{ maxSyncFallbacks: 0 }, "maxSyncFallbacks"],
      [{ maxSyncFallbacks: 1.5 }, "maxSyncFallbacks"],
    ]) {
      assert.throws(() => batchify({ ...FAST, ...options }), (e) => e instanceof BatchlingError && e.option === option, JSON.stringify(options));
    }
  });

  test("pass-throughs (a streamed call, a GET, a call after close) lose the header and go out as before", async () => {
    slowBatches();
    const ctx = batchify({ ...SLOW, deadlineMs: DEADLINE_MS });
    const client = openaiWith(ctx.fetch);
    const headers = { [HEADER]: "50" };
    // stream: true is not batched: it goes to the normal endpoint as it is (the fake streams the
    // answer to the body it read).
    const stream = await client.chat.completions.create(chat("streamed", { stream: true }), { headers });
    let streamed = "";
    for await (const part of stream) streamed += part.choices[0]?.delta?.content ?? "";
    assert.equal(streamed, "echo: streamed");
    const listed = await ctx.fetch(`${fake.url}/v1/batches?limit=1`, { headers: { authorization: "Bearer sk-test", ...headers } });
    assert.equal(listed.status, 200);
    const listedViaRequest = await ctx.fetch(new Request(`${fake.url}/v1/batches?limit=1`, { headers: { authorization: "Bearer sk-test", ...headers } }));
    assert.equal(listedViaRequest.status, 200);
    const report = await ctx.close();
    assert.ok(report.queues.every((q) => q.syncFallbacks === 0), "passed through, not fallen back");
    const late = await client.chat.completions.create(chat("after close"), { headers });
    assert.equal(text(late), "echo: after close");
    assert.equal(fake.counters.requests["openai.chat.completions"], 2, "the streamed call and the late one");
    assert.equal(fake.counters.requests["openai.batches.list"], 2);
    assert.equal(fake.counters.batchesCreated.openai, 0);
    headerNeverSent();
  });
});

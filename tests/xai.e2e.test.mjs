// xAI (Grok) end to end, beyond the shared contract (tests/contract/xai.mjs): the openai SDK
// pointed at the fake's /xai/v1 inside batchify(). Checks what only xAI's flow has: requests
// added after an empty create, paged results, a lost add answer, a lost create found by name,
// partial expiry, a cancel, and what passes through.
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import OpenAI from "openai";
import { FAST, useFakeProvider } from "./support/fake.mjs";
import { batchify } from "../dist/index.js";

const fake = useFakeProvider();

const hosts = () => [{ baseUrl: `${fake.url}/xai/v1`, provider: "xai" }];
const grok = (fetch) => new OpenAI({ apiKey: "xai-test", baseURL: `${fake.url}/xai/v1`, fetch, maxRetries: 0 });
const ask = (client, content) => client.chat.completions.create({ model: "grok-4", messages: [{ role: "user", content }] });
const plain = (x) => JSON.parse(JSON.stringify(x));

/** Run `fn(client)` with a batchify context whose fetch the client uses. */
async function batched(options, fn) {
  const ctx = batchify({ ...FAST, hosts: hosts(), ...options });
  try {
    return await fn(grok(ctx.fetch));
  } finally {
    await ctx.close();
  }
}

describe("xAI through batchify", () => {
  test("an empty create, one add call, then every results page; answers equal the sync endpoint's", async () => {
    const texts = Array.from({ length: 7 }, (_, i) => `q${i}`);
    const answers = await batched({}, (c) => Promise.all(texts.map((t) => ask(c, t))));
    const n = fake.counters.requests;
    assert.equal(n["xai.batches.create"], 1);
    assert.equal(n["xai.batches.addRequests"], 1);
    assert.equal(n["xai.batches.results"], 4, "7 results at 2 per page");
    assert.match(fake.counters.lastPaths["xai.batches.results"], /pagination_token=page%2F6%3D/);
    assert.equal(fake.counters.syncCalls, 0);
    const [batch] = [...fake.batches.values()];
    assert.match(batch.name, /^batchling-/);
    assert.equal(batch.requests.length, 7);
    assert.equal(batch.headers.authorization, "Bearer xai-test");
    const direct = grok(undefined);
    for (const [i, t] of texts.entries()) {
      assert.equal(answers[i].choices[0].message.content, `echo: ${t}`);
      assert.deepEqual(plain(answers[i]), plain(await ask(direct, t)));
    }
  });

  test("per-line errors come back with the status their gRPC code maps to", async () => {
    const results = await batched({}, (c) =>
      Promise.allSettled(["ok", "FAIL:400 x", "FAIL:429 y", "EXPIRE_LINE z"].map((t) => ask(c, t))),
    );
    assert.equal(fake.counters.batchesCreated.xai, 1);
    assert.equal(results[0].status, "fulfilled");
    assert.ok(results[1].reason instanceof OpenAI.BadRequestError);
    assert.equal(results[1].reason.code, "INVALID_ARGUMENT");
    assert.ok(results[2].reason instanceof OpenAI.RateLimitError);
    assert.equal(results[3].reason.status, 504);
  });

  test("a lost add answer is retried, and the repeated ids are not run twice", async () => {
    fake.faults.add({ route: "xai.batches.addRequests", drop: true, afterHandling: true });
    const answers = await batched({}, (c) => Promise.all(["a1", "a2", "a3"].map((t) => ask(c, t))));
    assert.deepEqual(answers.map((a) => a.choices[0].message.content), ["echo: a1", "echo: a2", "echo: a3"]);
    assert.equal(fake.counters.requests["xai.batches.addRequests"], 2);
    assert.equal(fake.counters.batchesCreated.xai, 1);
    assert.deepEqual(fake.counters.batchSizes.map((b) => b.size), [3]);
  });

  test("a create whose answer is lost is found by its name, then filled", async () => {
    fake.faults.add({ route: "xai.batches.create", drop: true, afterHandling: true });
    const answers = await batched({}, (c) => Promise.all(["b1", "b2"].map((t) => ask(c, t))));
    assert.equal(answers[1].choices[0].message.content, "echo: b2");
    assert.equal(fake.counters.requests["xai.batches.create"], 1);
    assert.equal(fake.counters.requests["xai.batches.list"], 1);
    assert.equal(fake.counters.batchesCreated.xai, 1);
    assert.deepEqual(fake.counters.batchSizes.map((b) => b.size), [2]);
  });

  test("without resubmission, an expired batch answers the requests that ran, and 504 for the others", async () => {
    fake.faults.nextBatchFate("xai", "expired");
    const results = await batched({ resubmit: false }, (c) => Promise.allSettled(["e1", "e2", "e3", "e4"].map((t) => ask(c, t))));
    const ran = results.filter((r) => r.status === "fulfilled");
    const expired = results.filter((r) => r.status === "rejected");
    assert.equal(ran.length, 2);
    assert.equal(expired.length, 2);
    const id = fake.counters.batchSizes[0].id;
    for (const r of expired) {
      assert.equal(r.reason.status, 504);
      assert.match(r.reason.message, new RegExp(`${id}.*expired`));
    }
  });

  test("without resubmission, a batch cancelled on xAI's side answers 499", async () => {
    fake.config.pollsUntilDone = 1_000;
    const settled = batched({ pollIntervalMs: 20, resubmit: false }, (c) => Promise.allSettled([ask(c, "c1"), ask(c, "c2")]));
    while (!fake.counters.requests["xai.batches.retrieve"]) await new Promise((r) => setTimeout(r, 5));
    const id = fake.counters.batchSizes[0].id;
    const cancel = await fetch(`${fake.url}/xai/v1/batches/${id}:cancel`, { method: "POST", headers: { authorization: "Bearer xai-test" } });
    assert.equal((await cancel.json()).state.num_cancelled, 2);
    const results = await settled;
    assert.deepEqual(results.map((r) => r.reason?.status), [499, 499]);
  });

  test("what xAI's batch API does not take passes through untouched", async () => {
    const outcome = await batched({}, async (c) => {
      const streamed = await c.chat.completions.create({ model: "grok-4", messages: [{ role: "user", content: "s" }], stream: true }).catch((e) => e);
      const responses = await c.responses.create({ model: "grok-4", input: "r" }).catch((e) => e);
      return { streamed, responses };
    });
    assert.equal(outcome.streamed.status, 400, "the fake's sync endpoint refuses streams");
    assert.equal(outcome.responses.status, 404, "the fake has no xAI responses route");
    assert.equal(fake.counters.batchesCreated.xai, 0);
    assert.equal(fake.counters.requests["xai.chat.completions"], 1);
  });
});

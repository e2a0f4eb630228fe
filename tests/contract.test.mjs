// The provider contract: the same checks for every provider, one row per provider in
// tests/contract/<provider>.mjs, each driven through its official SDK (or the SDK users reach
// it with) against the fake provider on 127.0.0.1.
//
// A row: { provider, model, hosts(fake), client(fake, fetch, apiKey?), ask(client, text),
//          answerText(result), errorStatus(error), faultRoutes: [fake route names],
//          comparable?(result) (what to compare; default the whole result) }.
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { bodyDigest } from "./fake-provider/server.mjs";
import { FAST, useFakeProvider } from "./support/fake.mjs";
import { batchify } from "../dist/index.js";

const ROW_DIR = new URL("./contract/", import.meta.url);
const rows = await Promise.all(
  readdirSync(ROW_DIR)
    .filter((f) => f.endsWith(".mjs"))
    .sort()
    .map(async (f) => (await import(new URL(f, ROW_DIR))).default),
);

const plain = (x) => JSON.parse(JSON.stringify(x));
// What a caller can compare between two answers: the row may drop transport details (headers).
const comparable = (row, result) => plain(row.comparable ? row.comparable(result) : result);
const totalRequests = (counters) => Object.values(counters.requests).reduce((a, b) => a + b, 0);

const fake = useFakeProvider();

/** Run `asks` through a batchify context: the client gets ctx.fetch and runs inside ctx.run(). */
async function throughBatchify(row, options, asks) {
  const ctx = batchify({ ...FAST, hosts: row.hosts(fake), ...options });
  const client = row.client(fake, ctx.fetch);
  try {
    return await ctx.run(() => asks(client));
  } finally {
    await ctx.close();
  }
}

/** The body each call sends to the sync endpoint, recorded from the global fetch. */
async function syncBodies(row, texts) {
  const bodies = [];
  const realFetch = globalThis.fetch;
  globalThis.fetch = async (input, init) => {
    const request = new Request(input, init);
    if (request.method === "POST") bodies.push(JSON.parse(await request.clone().text()));
    return realFetch(request);
  };
  try {
    const client = row.client(fake, undefined);
    for (const text of texts) await row.ask(client, text);
  } finally {
    globalThis.fetch = realFetch;
  }
  return bodies;
}

for (const row of rows) {
  const { provider } = row;
  describe(`contract: ${provider}`, () => {
    test("concurrent calls become one batch whose answers equal the sync endpoint's", async () => {
      const texts = Array.from({ length: 5 }, (_, i) => `question ${i}`);
      const answers = await throughBatchify(row, { batchSize: 100, batchWindowMs: 200 }, (c) => Promise.all(texts.map((t) => row.ask(c, t))));
      assert.equal(fake.counters.batchesCreated[provider], 1);
      assert.deepEqual(fake.counters.batchSizes.map((b) => [b.provider, b.size]), [[provider, 5]]);
      assert.equal(fake.counters.syncCalls, 0);
      const direct = row.client(fake, undefined);
      for (const [i, text] of texts.entries()) {
        assert.match(row.answerText(answers[i]), new RegExp(text));
        assert.deepEqual(comparable(row, answers[i]), comparable(row, await row.ask(direct, text)));
      }
    });

    test("fidelity: each batch line carries the body the SDK sends to the sync endpoint", async () => {
      const texts = ["fidelity one", "fidelity two ✓ \"quoted\""];
      await throughBatchify(row, {}, (c) => Promise.all(texts.map((t) => row.ask(c, t))));
      const [batch] = [...fake.batches.values()];
      fake.reset();
      const sent = await syncBodies(row, texts);
      const digest = (body) => bodyDigest(body, { provider });
      assert.deepEqual(batch.requests.map((r) => digest(r.body)).sort(), sent.map(digest).sort());
    });

    test("a per-line error rejects only its caller, with the SDK's error and status", async () => {
      const results = await throughBatchify(row, {}, (c) =>
        Promise.allSettled(["fine one", "FAIL:400 please", "fine two"].map((t) => row.ask(c, t))),
      );
      assert.equal(fake.counters.batchesCreated[provider], 1);
      assert.deepEqual(results.map((r) => r.status), ["fulfilled", "rejected", "fulfilled"]);
      assert.equal(row.errorStatus(results[1].reason), 400, String(results[1].reason));
      assert.match(row.answerText(results[2].value), /fine two/);
    });

    // One request per batch: the fakes let part of an expired batch run (as providers do), and
    // this checks the request that did not. Expired and cancelled answers are batchling's own and
    // name the batch; a failed batch may come back as the provider's own per-line errors.
    for (const [fate, status] of [["failed", 500], ["expired", 504], ["cancelled", 499]]) {
      test(`without resubmission, a ${fate} batch answers its caller with ${status}, and it is not retried`, async () => {
        fake.faults.nextBatchFate(provider, fate);
        const [result] = await throughBatchify(row, { resubmit: false }, (c) => Promise.allSettled([row.ask(c, `${fate} batch`)]));
        assert.equal(result.status, "rejected");
        assert.equal(row.errorStatus(result.reason), status, String(result.reason));
        if (fate !== "failed") {
          const id = fake.counters.batchSizes.at(-1).id.replace(/^batches\//, "");
          assert.ok(String(result.reason?.message ?? result.reason).includes(id), `${result.reason?.message} names ${id}`);
        }
        assert.equal(fake.counters.batchesCreated[provider], 1, "no silent retry into another batch");
      });
    }

    test("429 and 500 on every step of the batch flow are retried to success", async () => {
      for (const route of row.faultRoutes) {
        fake.faults.add({ route, status: 429, retryAfterSeconds: 0 });
        fake.faults.add({ route, status: 500 });
      }
      const answers = await throughBatchify(row, {}, (c) => Promise.all(["x1", "x2"].map((t) => row.ask(c, t))));
      assert.deepEqual(answers.map((a) => /x\d/.exec(row.answerText(a))?.[0]), ["x1", "x2"]);
      assert.equal(fake.counters.faultsTriggered, 2 * row.faultRoutes.length);
      assert.deepEqual(fake.faults.pending, []);
      assert.equal(fake.counters.batchesCreated[provider], 1);
    });

    test("cache: a second run answers from the cache with zero provider calls", async () => {
      const dir = mkdtempSync(join(tmpdir(), `batchling-contract-${provider}-`));
      try {
        const cache = { path: join(dir, "cache.jsonl") };
        const texts = ["cached one", "cached two"];
        const first = await throughBatchify(row, { cache }, (c) => Promise.all(texts.map((t) => row.ask(c, t))));
        const callsAfterFirst = totalRequests(fake.counters);
        const second = await throughBatchify(row, { cache }, (c) => Promise.all(texts.map((t) => row.ask(c, t))));
        assert.deepEqual(second.map((a) => comparable(row, a)), first.map((a) => comparable(row, a)));
        assert.equal(totalRequests(fake.counters), callsAfterFirst);
        assert.equal(fake.counters.batchesCreated[provider], 1);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });

    test("dry run: the SDK accepts the synthetic answers and nothing is sent", async () => {
      const answers = await throughBatchify(row, { dryRun: true }, (c) => Promise.all(["dry one", "dry two"].map((t) => row.ask(c, t))));
      assert.equal(answers.length, 2);
      for (const a of answers) assert.equal(typeof row.answerText(a), "string");
      assert.equal(totalRequests(fake.counters), 0);
    });
  });
}

test("every contract row names a provider once", () => {
  const names = rows.map((r) => r.provider);
  assert.deepEqual([...new Set(names)], names);
  assert.ok(names.length >= 3);
});

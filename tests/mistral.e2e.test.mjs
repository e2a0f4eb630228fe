// End to end: the Mistral SDK (@mistralai/mistralai) inside batchify() against the fake provider's
// Mistral module (/mistral/v1/...). tests/contract.test.mjs runs the shared contract with
// tests/contract/mistral.mjs; this file checks what is Mistral's own (file-mode jobs, the job
// states, FIM and embeddings, partial timed-out jobs, the lost create, the fake against the SDK).
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { useFakeProvider, FAST } from "./support/fake.mjs";
import { batchify } from "../dist/index.js";
import row from "./contract/mistral.mjs";

const plain = (x) => JSON.parse(JSON.stringify(x));
const fake = useFakeProvider();

const ctxFor = (options = {}) => batchify({ ...FAST, hosts: row.hosts(fake), ...options });
const mistralJobs = () => [...fake.batches.values()].filter((b) => b.provider === "mistral");

/** A fetch that records the JSON body of every POST it sends (the SDK hands it a Request). */
function recordingFetch() {
  const bodies = [];
  const fetcher = async (input, init) => {
    const request = new Request(input, init);
    if (request.method === "POST") bodies.push(JSON.parse(await request.clone().text()));
    return fetch(request);
  };
  return { fetcher, bodies };
}

async function rejection(promise) {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  assert.fail("expected a rejection");
}

describe("Mistral through batchify", () => {
  test("concurrent calls become one job whose answers equal the sync endpoint's", async () => {
    const ctx = ctxFor({ batchSize: 20, batchWindowMs: 10_000 });
    const client = row.client(fake, ctx.fetch);
    const prompts = Array.from({ length: 20 }, (_, i) => `question ${i}`);
    const answers = await Promise.all(prompts.map((p) => row.ask(client, p)));
    await ctx.close();
    assert.equal(fake.counters.batchesCreated.mistral, 1);
    assert.deepEqual(fake.counters.batchSizes.map((b) => b.size), [20]);
    assert.equal(fake.counters.syncCalls, 0);
    const [job] = mistralJobs();
    assert.equal(job.endpoint, "/v1/chat/completions");
    assert.equal(job.model, row.model);
    assert.match(job.metadata.batchling_tag, /\S/);
    assert.equal(job.inline, false, "file mode");
    assert.equal(fake.counters.lastHeaders["mistral.batches.create"].authorization, "Bearer k-test");
    const direct = row.client(fake, undefined);
    for (const [i, p] of prompts.entries()) {
      assert.equal(row.answerText(answers[i]), `echo: ${p}`);
      assert.deepEqual(plain(answers[i]), plain(await row.ask(direct, p)));
    }
  });

  test("fidelity: each job line's body is the body the SDK sends synchronously", async () => {
    const rich = {
      model: row.model,
      messages: [{ role: "system", content: "Be terse." }, { role: "user", content: "weather in Paris?" }],
      temperature: 0.3,
      topP: 0.9,
      maxTokens: 40,
      randomSeed: 7,
      safePrompt: true,
      tools: [{ type: "function", function: { name: "get_weather", parameters: { type: "object", properties: { city: { type: "string" } } } } }],
      responseFormat: { type: "json_object" },
    };
    const recorder = recordingFetch();
    const sync = await row.client(fake, recorder.fetcher).chat.complete(rich);
    fake.reset();
    const ctx = ctxFor();
    const viaBatch = await row.client(fake, ctx.fetch).chat.complete(rich);
    await ctx.close();
    const [job] = mistralJobs();
    const { stream: _s, ...sent } = recorder.bodies[0];
    assert.deepEqual(job.requests[0].body, sent);
    assert.deepEqual(plain(viaBatch), plain(sync));
  });

  test("embeddings and FIM completions are batched too, one job per endpoint", async () => {
    const ctx = ctxFor();
    const client = row.client(fake, ctx.fetch);
    const emb = { model: "mistral-embed", inputs: ["a", "b"] };
    const fim = { model: "codestral-latest", prompt: "def add(a, b):", suffix: "return c" };
    const [e, f] = await Promise.all([client.embeddings.create(emb), client.fim.complete(fim)]);
    await ctx.close();
    assert.deepEqual(mistralJobs().map((j) => j.endpoint).sort(), ["/v1/embeddings", "/v1/fim/completions"]);
    assert.equal(fake.counters.syncCalls, 0);
    const direct = row.client(fake, undefined);
    assert.deepEqual(plain(e), plain(await direct.embeddings.create(emb)));
    assert.deepEqual(plain(f), plain(await direct.fim.complete(fim)));
    assert.equal(e.data.length, 2);
  });

  test("inside ctx.run the SDK's default fetcher is intercepted", async () => {
    const ctx = ctxFor();
    const client = row.client(fake, undefined);
    const answers = await ctx.run(() => Promise.all(["x", "y"].map((t) => row.ask(client, t))));
    await ctx.close();
    assert.equal(fake.counters.batchesCreated.mistral, 1);
    assert.deepEqual(answers.map(row.answerText), ["echo: x", "echo: y"]);
  });

  test("a per-line error rejects with the SDK's error and status; the others succeed", async () => {
    const ctx = ctxFor();
    const client = row.client(fake, ctx.fetch);
    const results = await Promise.allSettled(["fine", "FAIL:400 please", "also fine"].map((t) => row.ask(client, t)));
    await ctx.close();
    assert.equal(fake.counters.batchesCreated.mistral, 1);
    assert.equal(results[0].status, "fulfilled");
    assert.equal(results[2].status, "fulfilled");
    const error = results[1].reason;
    assert.equal(error.name, "SDKError");
    assert.equal(row.errorStatus(error), 400);
    assert.match(error.message, /FAIL:400/);
    assert.equal(JSON.parse(error.body).object, "error");
  });

  for (const [fate, status, state] of [["failed", 500, "FAILED"], ["expired", 504, "TIMEOUT_EXCEEDED"], ["cancelled", 499, "CANCELLED"]]) {
    test(`without resubmission, a ${state} job rejects its calls with ${status} naming the job`, async () => {
      fake.faults.nextBatchFate("mistral", fate);
      const ctx = ctxFor({ resubmit: false });
      const error = await rejection(row.ask(row.client(fake, ctx.fetch), "doomed"));
      await ctx.close();
      const [job] = mistralJobs();
      assert.equal(job.state, state);
      assert.equal(row.errorStatus(error), status);
      assert.ok(error.message.includes(job.id), error.message);
      assert.equal(error.headers.get("x-should-retry"), "false");
    });
  }

  test("without resubmission, a timed-out job answers the requests that ran; the rest get 504", async () => {
    fake.faults.nextBatchFate("mistral", "expired");
    fake.config.shuffleResults = false;
    const ctx = ctxFor({ batchSize: 4, batchWindowMs: 10_000, resubmit: false });
    const client = row.client(fake, ctx.fetch);
    const results = await Promise.allSettled(["a", "b", "c", "d"].map((t) => row.ask(client, t)));
    await ctx.close();
    const [job] = mistralJobs();
    const ran = new Set(job.requests.slice(0, 2).map((r) => JSON.stringify(r.body.messages)));
    for (const [i, t] of ["a", "b", "c", "d"].entries()) {
      const didRun = ran.has(JSON.stringify([{ role: "user", content: t }]));
      if (didRun) assert.equal(row.answerText(results[i].value), `echo: ${t}`);
      else assert.equal(row.errorStatus(results[i].reason), 504);
    }
  });

  test("without resubmission, an EXPIRE_LINE line gets 504 while the job succeeds", async () => {
    const ctx = ctxFor({ resubmit: false });
    const client = row.client(fake, ctx.fetch);
    const [ok, expired] = await Promise.allSettled([row.ask(client, "ok"), row.ask(client, "EXPIRE_LINE")]);
    await ctx.close();
    assert.equal(row.answerText(ok.value), "echo: ok");
    assert.equal(row.errorStatus(expired.reason), 504);
  });

  test("a create whose answer is lost is found by its metadata tag, never created twice", async () => {
    fake.faults.add({ route: "mistral.batches.create", drop: true, afterHandling: true });
    const ctx = ctxFor();
    const answer = await row.ask(row.client(fake, ctx.fetch), "lost");
    await ctx.close();
    assert.equal(row.answerText(answer), "echo: lost");
    assert.equal(fake.counters.batchesCreated.mistral, 1);
    assert.equal(fake.counters.requests["mistral.batches.list"], 1);
    assert.match(fake.counters.lastPaths["mistral.batches.list"], /order_by=-created/);
  });

  test("dry run: synthetic answers the SDK accepts, nothing sent", async () => {
    const ctx = ctxFor({ dryRun: true });
    const client = row.client(fake, ctx.fetch);
    const [chat, emb] = await Promise.all([
      row.ask(client, "hello"),
      client.embeddings.create({ model: "mistral-embed", inputs: ["a", "b", "c"] }),
    ]);
    const report = await ctx.close();
    assert.match(row.answerText(chat), /dry run/);
    assert.equal(emb.data.length, 3);
    assert.equal(emb.data[0].embedding.length, 1024);
    assert.deepEqual(fake.counters.requests, {});
    assert.deepEqual(report.queues.map((q) => [q.provider, q.endpoint]).sort(), [
      ["mistral", "/v1/chat/completions"],
      ["mistral", "/v1/embeddings"],
    ]);
  });

  test("what Mistral does not batch passes through: file uploads, file reads", async () => {
    const ctx = ctxFor();
    const client = row.client(fake, ctx.fetch);
    const uploaded = await client.files.upload({
      file: { fileName: "lines.jsonl", content: new TextEncoder().encode('{"custom_id":"0","body":{}}\n') },
      purpose: "batch",
    });
    const read = await client.files.retrieve({ fileId: uploaded.id });
    await ctx.close();
    assert.equal(read.id, uploaded.id);
    assert.equal(read.purpose, "batch");
    assert.equal(fake.counters.batchesCreated.mistral, 0);
  });
});

describe("the fake's Mistral module", () => {
  test("speaks the SDK's batch API: inline and file jobs, list, download, cancel", async () => {
    fake.config.pollsUntilDone = 2;
    const c = row.client(fake, undefined);
    const inline = await c.batch.jobs.create({
      requests: [{ customId: "a", body: { messages: [{ role: "user", content: "hi" }] } }],
      endpoint: "/v1/chat/completions",
      model: row.model,
      metadata: { k: "v" },
    });
    assert.equal(inline.status, "QUEUED");
    assert.equal((await c.batch.jobs.get({ jobId: inline.id })).status, "RUNNING");
    const done = await c.batch.jobs.get({ jobId: inline.id, inline: true });
    assert.equal(done.status, "SUCCESS");
    assert.equal(done.outputs[0].response.body.choices[0].message.content, "echo: hi");
    assert.equal((await c.batch.jobs.list({})).total, 1);

    const up = await c.files.upload({
      file: { fileName: "x.jsonl", content: new TextEncoder().encode('{"custom_id":"z","body":{"messages":[{"role":"user","content":"FAIL:400"}]}}\n') },
      purpose: "batch",
    });
    const job = await c.batch.jobs.create({ inputFiles: [up.id], endpoint: "/v1/chat/completions", model: row.model });
    await c.batch.jobs.get({ jobId: job.id });
    const finished = await c.batch.jobs.get({ jobId: job.id });
    assert.equal(finished.outputFile, null);
    const line = JSON.parse(await new Response(await c.files.download({ fileId: finished.errorFile })).text());
    assert.equal(line.custom_id, "z");
    assert.equal(line.response.status_code, 400);

    const doomed = await c.batch.jobs.create({ requests: [{ body: { messages: [{ role: "user", content: "x" }] } }], endpoint: "/v1/chat/completions", model: row.model });
    assert.equal((await c.batch.jobs.cancel({ jobId: doomed.id })).status, "CANCELLATION_REQUESTED");
    assert.equal((await c.batch.jobs.get({ jobId: doomed.id })).status, "CANCELLED");
  });

  test("refuses a request without a Bearer key in Mistral's shape", async () => {
    const error = await rejection(row.client(fake, undefined, "").chat.complete({ model: row.model, messages: [{ role: "user", content: "x" }] }));
    assert.equal(row.errorStatus(error), 401);
    assert.equal(JSON.parse(error.body).message, "Unauthorized");
  });
});

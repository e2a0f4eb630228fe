// End to end: the Batch job builder (dist/index.js) against the fake provider on 127.0.0.1:
// multi-provider runs, results on disk and exports, max concurrency, the cost limit, crash and
// resume from the state file, structured output, per-job failures, misuse and file jobs.
import { test, describe, before, after, beforeEach } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { spawn } from "node:child_process";
import { deflateSync } from "node:zlib";
import { startFakeProvider } from "./fake-provider/server.mjs";
import { Batch, BatchlingError, readStateFile } from "../dist/index.js";
import { parseCsv } from "./support/csv.mjs";
import { PROVIDERS } from "./fake-provider/common.mjs";

// Per-provider counters have a key for every provider the fake speaks.
const perProvider = (counts) => ({ ...Object.fromEntries(PROVIDERS.map((p) => [p, 0])), ...counts });

// zod (a dev dependency): a zod responseModel is tested next to JSON Schema.
const zod = await import("zod");

let fake;
const tempDirs = [];
before(async () => {
  fake = await startFakeProvider();
});
after(async () => {
  await fake.close();
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
});
beforeEach(() => fake.reset());

const tempDir = () => {
  const dir = mkdtempSync(join(tmpdir(), "batchling-batch-"));
  tempDirs.push(dir);
  return dir;
};
const providers = () => ({
  openai: { apiKey: "sk-test", baseURL: `${fake.url}/v1` },
  anthropic: { apiKey: "ak-test", baseURL: fake.url },
  gemini: { apiKey: "gk-test", baseURL: `${fake.url}/v1beta` },
});
/** A Batch in a fresh temp dir, polling fast, talking to the fake. */
function newBatch(options = {}) {
  const dir = tempDir();
  const stateFile = join(dir, "state.json");
  const resultsDir = join(dir, "results");
  const batch = new Batch({ stateFile, resultsDir, pollIntervalMs: 10, retry: { attempts: 3, backoffMs: 5, maxBackoffMs: 20 }, providers: providers(), ...options });
  return { dir, stateFile, resultsDir, batch };
}
const user = (content) => [{ role: "user", content }];
const totalCreated = () => Object.values(fake.counters.batchesCreated).reduce((a, b) => a + b, 0);
const totalRequests = () => Object.values(fake.counters.requests).reduce((a, b) => a + b, 0);
const sizes = (provider) => fake.counters.batchSizes.filter((b) => b.provider === provider).map((b) => b.size).sort((a, b) => a - b);
const byId = (list) => Object.fromEntries(list.map((r) => [r.jobId, r]));


/** A valid 1×1 RGBA PNG, built from its chunks. */
function tinyPng() {
  const crcTable = Array.from({ length: 256 }, (_, n) => {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    return c >>> 0;
  });
  const crc32 = (buf) => {
    let c = 0xffffffff;
    for (const byte of buf) c = crcTable[(c ^ byte) & 0xff] ^ (c >>> 8);
    return (c ^ 0xffffffff) >>> 0;
  };
  const chunk = (type, data) => {
    const body = Buffer.concat([Buffer.from(type, "ascii"), data]);
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(body));
    return Buffer.concat([len, body, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(1, 0); // width
  ihdr.writeUInt32BE(1, 4); // height
  ihdr[8] = 8; // bit depth
  ihdr[9] = 6; // RGBA
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk("IHDR", ihdr),
    chunk("IDAT", deflateSync(Buffer.from([0, 255, 0, 0, 255]))), // filter 0, one red pixel
    chunk("IEND", Buffer.alloc(0)),
  ]);
}

// ---------------------------------------------------------------------------------------------

describe("a multi-provider run", () => {
  test("N jobs over OpenAI / Anthropic / Gemini with itemsPerBatch K: batches, results, files, status, exports", async () => {
    const K = 3;
    // Opting in to one JSON file per job (the default is results.jsonl only).
    const { batch, resultsDir } = newBatch({ itemsPerBatch: K, resultFiles: "per-job" });
    const events = [];
    const progress = [];
    batch
      .defaults({ model: "gpt-4o-mini", temperature: 0.2, system: "be brief" })
      .onEvent((e) => events.push(e))
      .onProgress((stats) => progress.push(stats));
    const tricky = 'say "hi", then\na new line, and a comma';
    const contents = {};
    const add = (id, content, overrides = {}) => {
      contents[id] = content;
      batch.addJob({ id, messages: user(content), ...overrides });
    };
    for (let i = 0; i < 6; i++) add(`openai-${i}`, `openai question ${i}`);
    add("openai-tricky", tricky, { temperature: 0.7 });
    for (let i = 0; i < 5; i++) add(`anthropic-${i}`, `anthropic question ${i}`, { model: "claude-haiku-4-5" });
    for (let i = 0; i < 4; i++) add(`gemini-${i}`, `gemini question ${i}`, { model: "gemini-2.5-flash", maxTokens: 64 });
    const ids = Object.keys(contents);

    const run = await batch.run({ wait: true });

    // ceil(7/3) + ceil(5/3) + ceil(4/3) provider batches, cut at K.
    assert.deepEqual(fake.counters.batchesCreated, perProvider({ openai: 3, anthropic: 2, gemini: 2 }));
    assert.deepEqual(sizes("openai"), [1, 3, 3]);
    assert.deepEqual(sizes("anthropic"), [2, 3]);
    assert.deepEqual(sizes("gemini"), [1, 3]);
    assert.equal(fake.counters.syncCalls, 0, "nothing went to a sync endpoint");

    // Defaults and per-job overrides reached the provider.
    const bodies = [...fake.batches.values()].flatMap((b) => b.requests.map((r) => ({ provider: b.provider, model: b.model, body: r.body })));
    const openaiBodies = bodies.filter((b) => b.provider === "openai").map((b) => b.body);
    assert.ok(openaiBodies.every((b) => b.model === "gpt-4o-mini" && b.messages[0].role === "system" && b.messages[0].content === "be brief"));
    assert.deepEqual(openaiBodies.map((b) => b.temperature).sort(), [0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.7]);
    assert.ok(bodies.filter((b) => b.provider === "anthropic").every((b) => b.body.model === "claude-haiku-4-5" && b.body.system === "be brief"));
    assert.ok(bodies.filter((b) => b.provider === "gemini").every((b) => b.model === "models/gemini-2.5-flash" && b.body.generationConfig.maxOutputTokens === 64));

    // Every result, keyed by job id.
    const results = run.results();
    assert.deepEqual(Object.keys(results).sort(), [...ids].sort());
    for (const id of ids) {
      const r = results[id];
      assert.equal(r.ok, true, `${id}: ${r.error}`);
      assert.equal(r.jobId, id);
      assert.equal(r.response, `echo: ${contents[id]}`);
      assert.equal(r.error, null);
      assert.ok(r.inputTokens > 0 && r.outputTokens > 0 && r.costUsd > 0, id);
    }

    // One JSON file per job plus results.jsonl, matching results().
    const files = readdirSync(resultsDir).sort();
    assert.deepEqual(files, [...ids.map((id) => `${id}.json`), "results.jsonl"].sort());
    for (const id of ids) assert.deepEqual(JSON.parse(readFileSync(join(resultsDir, `${id}.json`), "utf8")), results[id]);
    const lines = readFileSync(join(resultsDir, "results.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l));
    assert.equal(lines.length, ids.length);
    assert.deepEqual(byId(lines), results);

    // Status and progress.
    assert.equal(run.isComplete, true);
    const status = run.status();
    assert.equal(status.total, ids.length);
    assert.equal(status.completed, ids.length);
    assert.equal(status.failed, 0);
    assert.equal(status.pending, 0);
    assert.equal(status.notRun, 0);
    assert.equal(status.batches, 7);
    assert.equal(status.batchesCompleted, 7);
    assert.equal(status.isComplete, true);
    assert.equal(status.costLimitUsd, null);
    assert.ok(status.estimatedCostUsd > 0);
    assert.ok(status.elapsedMs >= 0);
    const actual = Object.values(results).reduce((sum, r) => sum + r.costUsd, 0);
    assert.ok(Math.abs(status.costUsd - actual) < 1e-12);
    assert.equal(events.filter((e) => e.kind === "batchSubmitted").length, 7);
    assert.deepEqual(events.filter((e) => e.kind === "jobFinished").map((e) => e.jobId).sort(), [...ids].sort());
    // onProgress gets the run's statistics, as status() returns them: from the start (nothing
    // done) to the end (everything), never going backwards, total = completed + failed + pending.
    assert.ok(progress.length > ids.length, `${progress.length} progress calls`);
    assert.deepEqual([progress[0].total, progress[0].completed, progress[0].pending, progress[0].batches], [ids.length, 0, ids.length, 0]);
    for (const [i, stats] of progress.entries()) {
      assert.equal(stats.total, stats.completed + stats.failed + stats.pending, `call ${i}`);
      if (i > 0) {
        for (const key of ["completed", "batches", "batchesCompleted", "costUsd", "estimatedCostUsd"]) assert.ok(stats[key] >= progress[i - 1][key], `${key} at call ${i}`);
      }
    }
    const { elapsedMs: _a, ...last } = progress.at(-1);
    const { elapsedMs: _b, ...final } = status;
    assert.deepEqual(last, final);
    assert.equal(`${last.completed}/${last.total}`, `${ids.length}/${ids.length}`);

    // Exports: CSV parses back (quotes, commas and newlines escaped), JSON is every result.
    const csv = parseCsv(run.export("csv"));
    const [header, ...rows] = csv;
    assert.deepEqual(header, ["jobId", "ok", "response", "parsedResponse", "citations", "inputTokens", "outputTokens", "costUsd", "error"]);
    assert.equal(rows.length, ids.length);
    const rowsById = Object.fromEntries(rows.map((row) => [row[0], row]));
    for (const id of ids) {
      const [, ok, text, parsed, citations, input, output, cost, error] = rowsById[id];
      assert.equal(ok, "true");
      assert.equal(text, results[id].response);
      assert.equal(parsed, "");
      assert.equal(citations, "[]");
      assert.equal(Number(input), results[id].inputTokens);
      assert.equal(Number(output), results[id].outputTokens);
      assert.equal(Number(cost), results[id].costUsd);
      assert.equal(error, "");
    }
    assert.equal(rowsById["openai-tricky"][2], `echo: ${tricky}`);
    const json = JSON.parse(run.export("json"));
    assert.ok(Array.isArray(json));
    assert.deepEqual(byId(json), results);
  });

  test("maxConcurrent: 2 keeps at most two provider batches in flight, across providers", async () => {
    fake.config.pollsUntilDone = 5; // each batch stays in progress for a few polls, so they overlap
    const { batch } = newBatch({ itemsPerBatch: 2, maxConcurrent: 2 });
    for (let i = 0; i < 4; i++) batch.addJob({ id: `o${i}`, model: "gpt-4o-mini", messages: user(`o ${i}`) });
    for (let i = 0; i < 4; i++) batch.addJob({ id: `a${i}`, model: "claude-haiku-4-5", messages: user(`a ${i}`) });
    for (let i = 0; i < 4; i++) batch.addJob({ id: `g${i}`, model: "gemini-2.5-flash", messages: user(`g ${i}`) });
    const run = batch.run();
    assert.equal(run.isComplete, false);
    assert.deepEqual([run.status().pending, run.status().completed, run.status().isComplete], [12, 0, false]);
    await run.wait();
    assert.equal(run.isComplete, true);
    assert.equal(totalCreated(), 6);
    assert.equal(fake.counters.maxConcurrentActiveBatches.total, 2, "two batches overlapped, never three");
    assert.equal(run.status().completed, 12);
    assert.equal(fake.counters.activeBatches.total, 0);
  });
});

describe("cost limit", () => {
  test("a limit between batch k and k+1 submits exactly k batches; the rest are not run", async () => {
    const K = 2;
    const N = 10;
    const prompt = (i) => `cost question ${String(i).padStart(2, "0")}`; // equal lengths: equal estimates
    // Calibrate: the estimate of one batch of K such jobs.
    const calibration = newBatch({ itemsPerBatch: K });
    for (let i = 0; i < K; i++) calibration.batch.addJob({ id: `c${i}`, model: "gpt-4o-mini", messages: user(prompt(90 + i)) });
    const perBatch = (await calibration.batch.run({ wait: true })).status().estimatedCostUsd;
    assert.ok(perBatch > 0);
    fake.reset();

    const k = 2;
    const limit = perBatch * (k + 0.5);
    const submitting = [];
    const { batch } = newBatch({ itemsPerBatch: K });
    batch.addCostLimit({ usd: limit }).onEvent((e) => e.kind === "batchSubmitting" && submitting.push(e));
    for (let i = 0; i < N; i++) batch.addJob({ id: `job-${i}`, model: "gpt-4o-mini", messages: user(prompt(i)) });
    const run = await batch.run({ wait: true });

    assert.equal(fake.counters.batchesCreated.openai, k, "exactly k batches reached the provider");
    assert.deepEqual(sizes("openai"), [K, K]);
    const status = run.status();
    assert.equal(status.batches, k);
    assert.equal(status.completed, k * K);
    assert.equal(status.notRun, N - k * K);
    assert.equal(status.failed, N - k * K);
    assert.equal(status.pending, 0);
    assert.equal(status.costLimitUsd, limit);
    assert.ok(status.estimatedCostUsd <= limit, `${status.estimatedCostUsd} <= ${limit}`);
    assert.ok(Math.abs(status.estimatedCostUsd - k * perBatch) < perBatch * 1e-6);
    assert.equal(submitting.length, k);
    for (const e of submitting) assert.ok(Math.abs(e.estimatedUsd - perBatch) < perBatch * 1e-6);
    const failed = Object.values(run.results()).filter((r) => !r.ok);
    assert.equal(failed.length, N - k * K);
    for (const r of failed) {
      assert.match(r.error, /not run: .*cost limit of \$\d/);
      assert.equal(r.response, null);
    }
    assert.equal(run.isComplete, true);
  });
});

describe("crash and resume", () => {
  // SIGKILL: no chance to clean up. SIGTERM: the run stops submitting and exits 143 at once,
  // leaving its active batches to the next run (the state file has them).
  for (const [signal, exitCode, exitSignal] of [["SIGKILL", null, "SIGKILL"], ["SIGTERM", 143, null]]) test(`${signal} after the batches are submitted, then a re-run: zero new batches, every job ends with its result`, async () => {
    const dir = tempDir();
    const stateFile = join(dir, "state.json");
    const resultsDir = join(dir, "results");
    const script = join(dir, "run.mjs");
    const dist = new URL("../dist/index.js", import.meta.url).href;
    writeFileSync(
      script,
      `import { Batch } from ${JSON.stringify(dist)};
       const batch = new Batch({ stateFile: process.env.STATE, resultsDir: process.env.RESULTS, resultFiles: "per-job", itemsPerBatch: 3, pollIntervalMs: 20, providers: JSON.parse(process.env.PROVIDERS) });
       for (let i = 0; i < 6; i++) batch.addJob({ id: "o" + i, model: "gpt-4o-mini", messages: [{ role: "user", content: "crash o" + i }] });
       for (let i = 0; i < 3; i++) batch.addJob({ id: "a" + i, model: "claude-haiku-4-5", messages: [{ role: "user", content: "crash a" + i }] });
       for (let i = 0; i < 3; i++) batch.addJob({ id: "g" + i, model: "gemini-2.5-flash", messages: [{ role: "user", content: "crash g" + i }] });
       const run = await batch.run({ wait: true });
       console.log(JSON.stringify({ status: run.status(), results: run.results() }));`,
    );
    const env = { ...process.env, STATE: stateFile, RESULTS: resultsDir, PROVIDERS: JSON.stringify(providers()) };
    fake.config.pollsUntilDone = 1_000_000; // in progress until we say so
    const first = spawn(process.execPath, [script], { env, stdio: ["ignore", "pipe", "pipe"] });
    let firstErr = "";
    first.stderr.on("data", (d) => (firstErr += d));
    const exited = new Promise((r) => first.on("exit", (code, killedBy) => r([code, killedBy])));
    const deadline = Date.now() + 60_000; // generous: CI machines are busy
    // Submitted = created at the provider and polled at least once (the state file has them).
    while (totalCreated() < 4 || [...fake.batches.values()].some((b) => b.polls < 1)) {
      assert.ok(Date.now() < deadline, `the first run never submitted its batches: ${firstErr}`);
      await new Promise((r) => setTimeout(r, 10));
    }
    first.kill(signal);
    const [firstCode, killedBy] = await exited;
    assert.equal(firstCode, exitCode, firstErr);
    assert.equal(killedBy, exitSignal);
    assert.deepEqual(fake.counters.batchesCreated, perProvider({ openai: 2, anthropic: 1, gemini: 1 }));
    assert.deepEqual(readdirSync(resultsDir).filter((f) => f.endsWith(".json")), [], "nothing finished before the kill");
    const state = readStateFile(stateFile);
    assert.equal(state.version, 1);
    assert.equal(state.jobIds.length, 12);
    assert.equal(state.journal.filter((l) => l.startsWith('{"type":"submitted"')).length, 4);

    for (const record of fake.batches.values()) record.polls = 0;
    fake.config.pollsUntilDone = 1;
    const second = spawn(process.execPath, [script], { env, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    second.stdout.on("data", (d) => (stdout += d));
    second.stderr.on("data", (d) => (stderr += d));
    const code = await new Promise((r) => second.on("exit", r));
    assert.equal(code, 0, stderr);
    assert.deepEqual(fake.counters.batchesCreated, perProvider({ openai: 2, anthropic: 1, gemini: 1 }), "the re-run created no batch");
    assert.equal(fake.counters.requests["openai.files.create"], 2, "nor uploaded anything");
    const submitted = readStateFile(stateFile).journal.filter((l) => l.startsWith('{"type":"submitted"')).map((l) => JSON.parse(l).batch_id);
    assert.deepEqual(submitted.sort(), [...fake.batches.values()].map((b) => (b.provider === "gemini" ? `batches/${b.id}` : b.id)).sort());
    const { status, results } = JSON.parse(stdout);
    assert.equal(status.isComplete, true);
    assert.equal(status.completed, 12);
    assert.equal(status.batches, 0, "nothing submitted by the re-run");
    const expected = [...["o0", "o1", "o2", "o3", "o4", "o5"], "a0", "a1", "a2", "g0", "g1", "g2"];
    assert.deepEqual(Object.keys(results).sort(), [...expected].sort());
    for (const id of expected) {
      assert.equal(results[id].ok, true, `${id}: ${results[id].error}`);
      assert.equal(results[id].response, `echo: crash ${id}`);
      assert.deepEqual(JSON.parse(readFileSync(join(resultsDir, `${id}.json`), "utf8")), results[id]);
    }
  });
});

describe("structured output", () => {
  const schema = {
    type: "object",
    properties: {
      title: { type: "string" },
      score: { type: "integer" },
      tags: { type: "array", items: { type: "string" } },
      mood: { type: "string", enum: ["happy", "sad"] },
      note: { type: ["string", "null"] },
      detail: {
        type: "object",
        properties: { ok: { type: "boolean" }, ratio: { type: "number" } },
        required: ["ok", "ratio"],
        additionalProperties: false,
      },
    },
    required: ["title", "score", "tags", "mood", "note", "detail"],
    additionalProperties: false,
  };
  const expected = (text) => ({ title: `echo: ${text}`, score: 1, tags: ["fake"], mood: "happy", note: "fake", detail: { ok: true, ratio: 1 } });
  const models = { openai: "gpt-4o-mini", anthropic: "claude-haiku-4-5", gemini: "gemini-2.5-flash" };

  test("responseModel as a JSON Schema on every provider: parsedResponse is the object; BADJSON fails only its job", async () => {
    const { batch } = newBatch();
    for (const [provider, model] of Object.entries(models)) {
      batch.addJob({ id: `${provider}-good`, model, messages: user(`rate ${provider}`), responseModel: schema });
      batch.addJob({ id: `${provider}-bad`, model, messages: user(`BADJSON rate ${provider}`), responseModel: schema });
      batch.addJob({ id: `${provider}-plain`, model, messages: user(`plain ${provider}`) });
    }
    const run = await batch.run({ wait: true });
    const results = run.results();
    for (const provider of Object.keys(models)) {
      const good = results[`${provider}-good`];
      assert.equal(good.ok, true, `${provider}: ${good.error}`);
      assert.deepEqual(good.parsedResponse, expected(`rate ${provider}`));
      assert.deepEqual(JSON.parse(good.response), good.parsedResponse);
      const bad = results[`${provider}-bad`];
      assert.equal(bad.ok, false, provider);
      assert.equal(bad.parsedResponse, null);
      assert.match(bad.error, /does not match responseSchema: \$: missing required property `title`/);
      assert.ok(bad.response, "the invalid JSON is kept for inspection");
      const plain = results[`${provider}-plain`];
      assert.equal(plain.ok, true);
      assert.equal(plain.response, `echo: plain ${provider}`);
      assert.equal(plain.parsedResponse, null);
    }
    const status = run.status();
    assert.equal(status.completed, 6);
    assert.equal(status.failed, 3);

    // The structured wire format each provider was asked for.
    const bodyOf = (provider, text) =>
      [...fake.batches.values()].filter((b) => b.provider === provider).flatMap((b) => b.requests).map((r) => r.body)
        .find((body) => JSON.stringify(body).includes(text));
    const openaiBody = bodyOf("openai", "rate openai");
    assert.deepEqual(openaiBody.response_format, { type: "json_schema", json_schema: { name: "response", schema, strict: true } });
    const anthropicBody = bodyOf("anthropic", "rate anthropic");
    assert.deepEqual(anthropicBody.tool_choice, { type: "tool", name: "response" });
    assert.deepEqual(anthropicBody.tools.map((t) => [t.name, t.input_schema]), [["response", schema]]);
    const geminiBody = bodyOf("gemini", "rate gemini");
    assert.equal(geminiBody.generationConfig.responseMimeType, "application/json");
    assert.deepEqual(geminiBody.generationConfig.responseJsonSchema, schema);

    // The fake answers the same request identically via its sync endpoints.
    const post = async (url, headers, body) => (await fetch(url, { method: "POST", headers: { "content-type": "application/json", ...headers }, body: JSON.stringify(body) })).json();
    const syncOpenai = await post(`${fake.url}/v1/chat/completions`, { authorization: "Bearer k" }, openaiBody);
    assert.deepEqual(JSON.parse(syncOpenai.choices[0].message.content), results["openai-good"].parsedResponse);
    const syncAnthropic = await post(`${fake.url}/v1/messages`, { "x-api-key": "k", "anthropic-version": "2023-06-01" }, anthropicBody);
    assert.equal(syncAnthropic.stop_reason, "tool_use");
    assert.equal(syncAnthropic.content[0].type, "tool_use");
    assert.equal(syncAnthropic.content[0].name, "response");
    assert.deepEqual(syncAnthropic.content[0].input, results["anthropic-good"].parsedResponse);
    const syncGemini = await post(`${fake.url}/v1beta/models/gemini-2.5-flash:generateContent`, { "x-goog-api-key": "k" }, geminiBody);
    assert.deepEqual(JSON.parse(syncGemini.candidates[0].content.parts[0].text), results["gemini-good"].parsedResponse);
  });

  test("a hand-written schema with an optional field: OpenAI gets its strict form; an omitted field is absent, not an error", async () => {
    const handWritten = {
      type: "object",
      properties: { answer: { type: "string" }, source: { type: "string" } },
      required: ["answer"],
    };
    const { batch } = newBatch();
    for (const [provider, model] of Object.entries(models)) {
      batch.addJob({ id: `${provider}-omits`, model, messages: user(`SKIP_OPTIONAL sky ${provider}`), responseModel: handWritten });
      batch.addJob({ id: `${provider}-fills`, model, messages: user(`sky ${provider}`), responseModel: handWritten });
    }
    const results = (await batch.run({ wait: true })).results();
    for (const provider of Object.keys(models)) {
      const omits = results[`${provider}-omits`];
      assert.equal(omits.ok, true, `${provider}: ${omits.error}`);
      assert.equal(omits.error, null);
      assert.deepEqual(omits.parsedResponse, { answer: `echo: SKIP_OPTIONAL sky ${provider}` });
      const fills = results[`${provider}-fills`];
      assert.equal(fills.ok, true, `${provider}: ${fills.error}`);
      assert.deepEqual(fills.parsedResponse, { answer: `echo: sky ${provider}`, source: "fake" });
    }
    // OpenAI's answer carried the null strict mode asks for; the raw text keeps it.
    assert.deepEqual(JSON.parse(results["openai-omits"].response), { answer: "echo: SKIP_OPTIONAL sky openai", source: null });
    const openaiBody = [...fake.batches.values()].filter((b) => b.provider === "openai").flatMap((b) => b.requests).map((r) => r.body)[0];
    assert.deepEqual(openaiBody.response_format.json_schema, {
      name: "response",
      strict: true,
      schema: {
        type: "object",
        properties: { answer: { type: "string" }, source: { type: ["string", "null"] } },
        required: ["answer", "source"],
        additionalProperties: false,
      },
    });
    // Anthropic and Gemini take the schema as written.
    const anthropicBody = [...fake.batches.values()].find((b) => b.provider === "anthropic").requests[0].body;
    assert.deepEqual(anthropicBody.tools[0].input_schema, handWritten);
  });

  test("a schema strict mode cannot express is refused at run(), naming the keyword and the path", () => {
    const { batch } = newBatch();
    batch.addJob({
      id: "mapped",
      model: "gpt-4o-mini",
      messages: user("x"),
      responseModel: { type: "object", properties: { counts: { type: "object", additionalProperties: { type: "integer" } } } },
    });
    assert.throws(() => batch.run(), (e) => {
      assert.ok(e instanceof BatchlingError);
      assert.equal(e.code, "ERR_BATCHLING_INVALID_SCHEMA");
      assert.match(e.message, /^job `mapped`: `responseSchema` cannot be expressed in OpenAI's strict structured-output mode: `additionalProperties` at #\/properties\/counts: /);
      return true;
    });
    assert.equal(totalRequests(), 0);
  });

    test("responseModel as a zod schema: its JSON Schema is sent and its own validation applies", async () => {
      const z = zod.z ?? zod;
      const model = z.object({ title: z.string(), score: z.number().int() });
      const { batch } = newBatch();
      batch.addJob({ id: "good", model: "gemini-2.5-flash", messages: user("zod"), responseModel: model });
      batch.addJob({ id: "bad", model: "gemini-2.5-flash", messages: user("BADJSON zod"), responseModel: model });
      const results = (await batch.run({ wait: true })).results();
      assert.equal(results.good.ok, true, results.good.error);
      assert.deepEqual(results.good.parsedResponse, { title: "echo: zod", score: 1 });
      assert.equal(results.bad.ok, false);
    });

  test("a zod schema with an optional field on OpenAI: the omitted field passes zod's own validation", async () => {
    const z = zod.z ?? zod;
    const model = z.object({ title: z.string(), note: z.string().optional() });
    const { batch } = newBatch();
    batch.addJob({ id: "omits", model: "gpt-4o-mini", messages: user("SKIP_OPTIONAL zod"), responseModel: model });
    const results = (await batch.run({ wait: true })).results();
    assert.equal(results.omits.ok, true, results.omits.error);
    assert.deepEqual(results.omits.parsedResponse, { title: "echo: SKIP_OPTIONAL zod" });
  });
});

describe("per-job failures", () => {
  test("a FAIL:400 job fails alone with the provider's message, on every provider", async () => {
    const { batch } = newBatch();
    for (const model of ["gpt-4o-mini", "claude-haiku-4-5", "gemini-2.5-flash"]) {
      batch.addJob({ id: `${model}-fail`, model, messages: user("please FAIL:400") });
      batch.addJob({ id: `${model}-ok`, model, messages: user("fine") });
    }
    const run = await batch.run({ wait: true });
    assert.equal(totalCreated(), 3, "one batch per provider: the failing job rode along");
    const results = run.results();
    for (const model of ["gpt-4o-mini", "claude-haiku-4-5", "gemini-2.5-flash"]) {
      const failed = results[`${model}-fail`];
      assert.equal(failed.ok, false, model);
      assert.match(failed.error, /400/, model);
      assert.match(failed.error, /Fake failure triggered by FAIL:400/, model);
      assert.equal(failed.response, null);
      assert.equal(results[`${model}-ok`].ok, true, model);
      assert.equal(results[`${model}-ok`].response, "echo: fine");
    }
    const status = run.status();
    assert.deepEqual([status.completed, status.failed, status.notRun, status.pending], [3, 3, 0, 0]);
  });
});

describe("misuse", () => {
  const refused = (fn, pattern) =>
    assert.throws(fn, (e) => {
      assert.ok(e instanceof BatchlingError, String(e));
      assert.match(e.message, pattern);
      return true;
    });

  test("job shape errors are refused by addJob, naming the job", () => {
    const { batch, dir } = newBatch();
    const file = join(dir, "notes.txt");
    writeFileSync(file, "notes");
    refused(() => batch.addJob({ id: "both", messages: user("x"), file, prompt: "p" }), /job `both`: give either messages or file \+ prompt, not both/);
    refused(() => batch.addJob({ id: "neither" }), /job `neither`: give messages, or file \+ prompt/);
    refused(() => batch.addJob({ id: "no-prompt", file }), /job `no-prompt`: a file job needs both `file` \(a path\) and `prompt`/);
    refused(() => batch.addJob({ id: "typo", mesages: user("x") }), /mesages/);
    batch.addJob({ id: "dup", messages: user("x") });
    refused(() => batch.addJob({ id: "dup", messages: user("y") }), /duplicate job id `dup`/);
  });

  test("bad jobs fail at run() before anything is sent: file type, unknown model, missing key, no model", async () => {
    const saved = process.env.ANTHROPIC_API_KEY;
    delete process.env.ANTHROPIC_API_KEY;
    try {
      const cases = [
        [(b, dir) => {
          const doc = join(dir, "report.docx");
          writeFileSync(doc, "not really a docx");
          b.addJob({ id: "docx", file: doc, prompt: "summarize", model: "gpt-4o-mini" });
        }, /job `docx`: unsupported file type `\.docx`; supported: .*\.pdf.*\.png/],
        [(b) => b.addJob({ id: "typo", model: "gpt4o", messages: user("x") }), /job `typo`: unknown model `gpt4o`; did you mean gpt-4o, gpt-4o-mini/],
        [(b) => b.addJob({ id: "claude-job", model: "claude-haiku-4-5", messages: user("x") }), /job `claude-job` needs an API key for anthropic: set ANTHROPIC_API_KEY or pass providers: \{ anthropic: \{ apiKey \} \}/],
        [(b) => b.addJob({ id: "modelless", messages: user("x") }), /job `modelless` has no model/],
        [(b, dir) => b.addJob({ id: "missing", model: "gpt-4o-mini", file: join(dir, "nope.pdf"), prompt: "p" }), /job `missing`: file not found: .*nope\.pdf/],
      ];
      for (const [addBad, pattern] of cases) {
        const dir = tempDir();
        const stateFile = join(dir, "state.json");
        const resultsDir = join(dir, "results");
        const { anthropic: _none, ...withoutAnthropic } = providers();
        const batch = new Batch({ stateFile, resultsDir, pollIntervalMs: 10, providers: withoutAnthropic });
        batch.addJob({ id: "fine", model: "gpt-4o-mini", messages: user("fine") });
        addBad(batch, dir);
        refused(() => batch.run(), pattern);
        await assert.rejects(async () => batch.run({ wait: true }), pattern);
        assert.equal(totalRequests(), 0, `nothing was sent (${pattern})`);
        assert.equal(existsSync(stateFile), false);
        assert.equal(existsSync(resultsDir), false);
      }
      const missingKey = new Batch({ stateFile: join(tempDir(), "s.json"), resultsDir: join(tempDir(), "r"), providers: {} });
      missingKey.addJob({ id: "k", model: "claude-haiku-4-5", messages: user("x") });
      assert.throws(() => missingKey.run(), (e) => e.code === "ERR_BATCHLING_MISSING_KEY");
    } finally {
      if (saved !== undefined) process.env.ANTHROPIC_API_KEY = saved;
    }
  });

  test("bad options are refused eagerly with the option named", () => {
    for (const [options, pattern] of [
      [{}, /stateFile/],
      [{ stateFile: "s", resultsDir: "r", maxConcurrent: 0 }, /maxConcurrent/],
      [{ stateFile: "s", resultsDir: "r", itemsPerBatch: 1.5 }, /itemsPerBatch/],
      [{ stateFile: "s", resultsDir: "r", providers: { mistral: {} } }, /mistral/],
    ]) {
      refused(() => new Batch(options), pattern);
    }
    refused(() => new Batch({ stateFile: "s", resultsDir: "r" }).addCostLimit({ usd: -1 }), /costLimit\.usd/);
  });
});

describe("file jobs", () => {
  test("a text file is inlined before the prompt; a 1×1 PNG goes inline to every provider", async () => {
    const { batch, dir } = newBatch();
    const notes = join(dir, "notes.txt");
    writeFileSync(notes, "line one\nline two\n");
    const png = tinyPng();
    const pngPath = join(dir, "pixel.png");
    writeFileSync(pngPath, png);
    batch.addJob({ id: "text", model: "gpt-4o-mini", file: notes, prompt: "Summarize the notes" });
    const models = { openai: "gpt-4o-mini", anthropic: "claude-haiku-4-5", gemini: "gemini-2.5-flash" };
    for (const [provider, model] of Object.entries(models)) batch.addJob({ id: `png-${provider}`, model, file: pngPath, prompt: "Describe the image" });
    const run = await batch.run({ wait: true });
    const results = run.results();
    assert.equal(results.text.ok, true, results.text.error);
    assert.equal(results.text.response, 'echo: <file name="notes.txt">\nline one\nline two\n</file>\n\nSummarize the notes');
    const b64 = png.toString("base64");
    const bodies = (provider) => [...fake.batches.values()].filter((b) => b.provider === provider).flatMap((b) => b.requests.map((r) => r.body));
    for (const provider of Object.keys(models)) {
      const r = results[`png-${provider}`];
      assert.equal(r.ok, true, `${provider}: ${r.error}`);
      assert.equal(r.response, "echo: Describe the image");
    }
    const openaiPng = bodies("openai").find((b) => Array.isArray(b.messages[0].content));
    assert.deepEqual(openaiPng.messages[0].content, [
      { type: "image_url", image_url: { url: `data:image/png;base64,${b64}` } },
      { type: "text", text: "Describe the image" },
    ]);
    const [anthropicPng] = bodies("anthropic");
    assert.deepEqual(anthropicPng.messages[0].content[0], { type: "image", source: { type: "base64", media_type: "image/png", data: b64 } });
    const [geminiPng] = bodies("gemini");
    assert.deepEqual(geminiPng.contents[0].parts[0], { inlineData: { mimeType: "image/png", data: b64 } });
  });
});

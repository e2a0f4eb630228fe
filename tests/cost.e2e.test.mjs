// End to end: the cost batchling reports against what the providers bill, through the job
// builder and batchify() with an official SDK, against the fake provider, which learns prompt
// caching (first request with a prefix writes it, later ones read it). Prices are the core's
// table's (claude-haiku-4-5: $1 / $5, gpt-4o-mini: $0.15 / $0.075 cached / $0.60; batch half).
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import OpenAI from "openai";
import { FAST, useFakeProvider } from "./support/fake.mjs";
import { Batch, batchify, BatchlingError, InvalidOptionError } from "../dist/index.js";

const fake = useFakeProvider();

const dirs = [];
process.on("exit", () => dirs.forEach((dir) => rmSync(dir, { recursive: true, force: true })));
function newBatch(options = {}) {
  const dir = mkdtempSync(join(tmpdir(), "batchling-cost-"));
  dirs.push(dir);
  return new Batch({
    stateFile: join(dir, "state.json"),
    resultsDir: join(dir, "results"),
    pollIntervalMs: 10,
    retry: { attempts: 3, backoffMs: 5, maxBackoffMs: 20 },
    providers: {
      openai: { apiKey: "sk-test", baseURL: `${fake.url}/v1` },
      anthropic: { apiKey: "ak-test", baseURL: fake.url },
    },
    ...options,
  });
}

const close = (actual, expected, what) => assert.ok(Math.abs(actual - expected) < 1e-12, `${what}: ${actual} != ${expected}`);
/** A system prompt far above the 1024-token cache minimum (~1500 tokens at 4 chars each). */
const LONG = "You review contracts for a living. Flag every clause that shifts liability. ".repeat(80);

/** The fake's batch answers, by the text of their reply. */
function anthropicAnswers() {
  const byReply = new Map();
  for (const record of fake.batches.values()) {
    if (record.provider !== "anthropic") continue;
    for (const { result } of record.results ?? []) byReply.set(result.message.content[0].text, result.message.usage);
  }
  return byReply;
}

/** The output files are read back below (`openaiAnswers`): their deletes after the run fail,
 *  so the fake keeps them. */
function keepOpenAiFiles() {
  fake.faults.add({ route: "openai.files.delete", status: 500, count: 10 });
}

function openaiAnswers() {
  const byReply = new Map();
  for (const record of fake.batches.values()) {
    if (record.provider !== "openai" || !record.outputFileId) continue;
    for (const line of fake.files.get(record.outputFileId).data.toString("utf8").trim().split("\n")) {
      const body = JSON.parse(line).response.body;
      byReply.set(body.choices[0].message.content, body.usage);
    }
  }
  return byReply;
}

/** Anthropic's bill for one answer's usage (claude-haiku-4-5, batch half price). */
function haikuCost(u) {
  const w1h = u.cache_creation?.ephemeral_1h_input_tokens ?? 0;
  const w5m = u.cache_creation_input_tokens - w1h;
  return (u.input_tokens * 1 + w5m * 1.25 + w1h * 2 + u.cache_read_input_tokens * 0.1 + u.output_tokens * 5) / 1e6 * 0.5;
}

/** The same usage with every input token at the one input rate (what cost was before). */
function haikuFlat(u) {
  const input = u.input_tokens + u.cache_creation_input_tokens + u.cache_read_input_tokens;
  return (input * 1 + u.output_tokens * 5) / 1e6 * 0.5;
}

/** OpenAI's bill for one chat answer's usage (gpt-4o-mini, batch half price). */
function miniCost(u) {
  const cached = u.prompt_tokens_details?.cached_tokens ?? 0;
  return ((u.prompt_tokens - cached) * 0.15 + cached * 0.075 + u.completion_tokens * 0.6) / 1e6 * 0.5;
}

describe("job builder: cost from the reported usage", () => {
  test("Anthropic: a shared system prompt with cache_control is written once and read after, and billed so", async () => {
    const system = [
      { type: "text", text: "Answer in one line." },
      { type: "text", text: LONG, cache_control: { type: "ephemeral" } },
    ];
    const batch = newBatch().defaults({ model: "claude-haiku-4-5", maxTokens: 50, system });
    for (let i = 0; i < 6; i++) batch.addJob({ id: `c${i}`, messages: [{ role: "user", content: `Contract ${i}: is clause 4 fair?` }] });
    const run = await batch.run({ wait: true });
    const results = run.results();

    // The blocks reached the provider unchanged.
    const [record] = [...fake.batches.values()];
    assert.deepEqual(record.requests[0].body.system, system);

    const answers = anthropicAnswers();
    const writes = [...answers.values()].filter((u) => u.cache_creation_input_tokens > 0);
    const reads = [...answers.values()].filter((u) => u.cache_read_input_tokens > 0);
    assert.equal(writes.length, 1, "the first request writes the prefix");
    assert.equal(reads.length, 5, "the others read it");

    let total = 0;
    let flat = 0;
    for (const result of Object.values(results)) {
      assert.equal(result.ok, true, result.error);
      const usage = answers.get(result.response);
      close(result.costUsd, haikuCost(usage), result.jobId);
      total += result.costUsd;
      flat += haikuFlat(usage);
    }
    assert.ok(total < flat / 3, `cached cost ${total} should be far below the all-input figure ${flat}`);
    const stats = run.status();
    close(stats.costUsd, total, "status().costUsd");
    assert.ok(stats.estimatedCostUsd >= stats.costUsd, "the estimate stays an upper bound");
    // The printed line says both, and how much of the estimate was spent.
    const write = process.stdout.write;
    let printed = "";
    process.stdout.write = (text) => ((printed += text), true);
    try {
      run.status({ print: true });
    } finally {
      process.stdout.write = write;
    }
    const share = Math.round((100 * stats.costUsd) / stats.estimatedCostUsd);
    assert.match(printed, new RegExp(`cost \\$${stats.costUsd.toFixed(4).replace(".", "\\.")} actual`));
    assert.match(printed, new RegExp(`an upper bound: actual ${share}% of it`));
  });

  test("Anthropic: 1-hour cache writes at 2× input; blocks in a message pass through", async () => {
    const batch = newBatch().defaults({ model: "claude-haiku-4-5", maxTokens: 20 });
    for (let i = 0; i < 3; i++) {
      batch.addJob({
        id: `h${i}`,
        messages: [{
          role: "user",
          content: [
            { type: "text", text: LONG, cache_control: { type: "ephemeral", ttl: "1h" } },
            { type: "text", text: `Question ${i}` },
          ],
        }],
      });
    }
    const run = await batch.run({ wait: true });
    const [record] = [...fake.batches.values()];
    assert.equal(record.requests[0].body.messages[0].content[0].cache_control.ttl, "1h");
    const answers = anthropicAnswers();
    const hour = [...answers.values()].filter((u) => u.cache_creation?.ephemeral_1h_input_tokens > 0);
    assert.equal(hour.length, 1);
    for (const result of Object.values(run.results())) {
      assert.equal(result.ok, true, result.error);
      close(result.costUsd, haikuCost(answers.get(result.response)), result.jobId);
    }
  });

  test("OpenAI: a long shared prefix is billed at the cached-input price after the first request", async () => {
    const batch = newBatch().defaults({ model: "gpt-4o-mini", maxTokens: 30 });
    for (let i = 0; i < 4; i++) {
      batch.addJob({ id: `o${i}`, messages: [{ role: "system", content: LONG }, { role: "user", content: `Item ${i}` }] });
    }
    keepOpenAiFiles();
    const run = await batch.run({ wait: true });
    const answers = openaiAnswers();
    const cachedCounts = [...answers.values()].map((u) => u.prompt_tokens_details.cached_tokens).sort((a, b) => a - b);
    assert.equal(cachedCounts[0], 0, "the first request caches nothing");
    assert.ok(cachedCounts.slice(1).every((n) => n >= 1024 && n % 128 === 0), String(cachedCounts));
    let total = 0;
    for (const result of Object.values(run.results())) {
      assert.equal(result.ok, true, result.error);
      close(result.costUsd, miniCost(answers.get(result.response)), result.jobId);
      total += result.costUsd;
    }
    close(run.status().costUsd, total, "status().costUsd");
  });

  test("a fine-tune id with prices and provider is accepted and costed at its price", async () => {
    const ft = "ft:gpt-4o-mini-2024-07-18:acme::c0st";
    const prices = { [ft]: { provider: "openai", inputPerMTok: 0.3, outputPerMTok: 1.2, cachedInputPerMTok: 0.15 } };
    const batch = newBatch({ prices }).addCostLimit({ usd: 1 });
    batch.addJob({ id: "ft1", model: ft, messages: [{ role: "user", content: "Hello" }] });
    keepOpenAiFiles();
    const run = await batch.run({ wait: true });
    const result = run.results().ft1;
    assert.equal(result.ok, true, result.error);
    const [record] = [...fake.batches.values()];
    assert.equal(record.requests[0].body.model, ft);
    const usage = openaiAnswers().get(result.response);
    close(result.costUsd, (usage.prompt_tokens * 0.3 + usage.completion_tokens * 1.2) / 1e6 * 0.5, "fine-tune cost");
    assert.ok(run.status().estimatedCostUsd >= result.costUsd);
  });

  test("without prices, a fine-tune id is refused naming the model and the option", async () => {
    const ft = "ft:gpt-4o-mini-2024-07-18:acme::c0st";
    const batch = newBatch().addCostLimit({ usd: 1 });
    batch.addJob({ id: "ft1", model: ft, messages: [{ role: "user", content: "Hello" }] });
    assert.throws(() => batch.run(), (error) => {
      assert.ok(error instanceof BatchlingError);
      assert.match(error.message, /unknown model `ft:gpt-4o-mini-2024-07-18:acme::c0st`/);
      assert.match(error.message, /`prices` option/);
      return true;
    });
    assert.equal(fake.counters.batchesCreated.openai ?? 0, 0);
  });

  test("bad prices are refused when the Batch is made, naming the model and the field", () => {
    const cases = [
      [{ "gpt-4o": { inputPerMTok: -1, outputPerMTok: 1 } }, "prices.gpt-4o.inputPerMTok"],
      [{ "gpt-4o": { inputPerMTok: 1 } }, "prices.gpt-4o.outputPerMTok"],
      [{ "gpt-4o": { inputPerMTok: 1, outputPerMTok: Number.NaN } }, "prices.gpt-4o.outputPerMTok"],
      [{ "ft:x": { provider: "opnai", inputPerMTok: 1, outputPerMTok: 1 } }, "prices.ft:x.provider"],
      [{ "gpt-4o": { inputPerMTok: 1, outputPerMTok: 1, cacheWrite: 1 } }, "prices.gpt-4o.cacheWrite"],
      [[], "prices"],
    ];
    for (const [prices, option] of cases) {
      assert.throws(() => newBatch({ prices }), (error) => {
        assert.ok(error instanceof InvalidOptionError, String(error));
        assert.equal(error.option, option, error.message);
        return true;
      });
    }
  });
});

describe("batchify: the report's actual cost from the usage", () => {
  test("OpenAI SDK: estimate vs actual in the report, with a shared prefix and a price override", async () => {
    const ctx = batchify({ ...FAST, batchSize: 5, batchWindowMs: 10_000, prices: { "gpt-4o-mini": { inputPerMTok: 0.2, outputPerMTok: 0.8, cachedInputPerMTok: 0.02 } } });
    const client = new OpenAI({ apiKey: "sk-test", baseURL: `${fake.url}/v1`, fetch: ctx.fetch, maxRetries: 0 });
    const ask = (i) => client.chat.completions.create({ model: "gpt-4o-mini", max_tokens: 30, messages: [{ role: "system", content: LONG }, { role: "user", content: `Row ${i}` }] });
    const answers = await Promise.all([0, 1, 2, 3, 4].map(ask));
    const report = await ctx.close();
    const [row] = report.queues;
    const expected = answers.reduce((sum, a) => {
      const cached = a.usage.prompt_tokens_details.cached_tokens;
      return sum + ((a.usage.prompt_tokens - cached) * 0.2 + cached * 0.02 + a.usage.completion_tokens * 0.8) / 1e6 * 0.5;
    }, 0);
    assert.ok(answers.filter((a) => a.usage.prompt_tokens_details.cached_tokens > 0).length === 4);
    assert.equal(row.answersCosted, 5);
    close(row.actualBatchUsd, expected, "report actual");
    assert.ok(row.estimatedBatchUsd >= row.actualBatchUsd, "the estimate stays an upper bound");
  });

  test("batchify refuses bad prices naming the model and the field", () => {
    assert.throws(() => batchify({ prices: { "gpt-4o": { inputPerMTok: "1", outputPerMTok: 1 } } }), (error) => {
      assert.ok(error instanceof InvalidOptionError);
      assert.equal(error.option, "prices.gpt-4o.inputPerMTok");
      return true;
    });
  });
});

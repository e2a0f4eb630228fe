// A fleet of batchify() processes sharing one Redis (`cache: { redis }`), end to end: worker
// processes (tests/fleet/worker.mjs: the official openai SDK through ctx.fetch) and `batchling
// serve --redis` replicas against the fake provider on 127.0.0.1, and a redis-server of this
// file's own (append-only persistence, a free port, stopped by its PID). What is checked at the
// fake: every distinct request is in exactly one batch line, whatever the overlap, the kills and
// the Redis restart; every caller gets the answer to its own prompt.
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { Redis } from "ioredis";
import { useFakeProvider } from "./support/fake.mjs";
import { freePort, startRedis } from "./support/redis.mjs";
import { batchify, RedisUnavailableError } from "../dist/index.js";
import { mulberry32 as random } from "./support/random.mjs";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const WORKER = join(ROOT, "tests", "fleet", "worker.mjs");
const CLI = join(ROOT, "dist", "cli.js");
// The credential every worker sends: it must never reach Redis.
const API_KEY = "sk-test-FLEETE2ESECRET0123456789";

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const fake = useFakeProvider();
const tmp = mkdtempSync(join(tmpdir(), "batchling-fleet-"));
const children = new Set();
let redis;
let redisPort;
let redisDir;
let redisUrl;

before(async () => {
  redisPort = await freePort();
  redisDir = mkdtempSync(join(tmp, "redis-"));
  redis = await startRedis(redisPort, redisDir);
  redisUrl = `redis://127.0.0.1:${redisPort}/0`;
});
after(async () => {
  for (const child of children) child.kill("SIGKILL");
  await redis?.stop();
  rmSync(tmp, { recursive: true, force: true });
});

const SEED = Number(process.env.BATCHLING_FLEET_SEED ?? Date.now() % 1e9);

/** `count` distinct prompts out of `prompts`, at random. */
function subset(rand, prompts, count) {
  const pool = [...prompts];
  for (let i = pool.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [pool[i], pool[j]] = [pool[j], pool[i]];
  }
  return pool.slice(0, count);
}

/** A worker process asking `prompts` through batchify with `options` (cache: { redis } added). */
function startWorker(name, prompts, { redis: redisOptions = {}, ...options } = {}) {
  const config = {
    fakeUrl: fake.url,
    apiKey: API_KEY,
    prompts,
    batchify: { batchSize: 8, batchWindowMs: 100, pollIntervalMs: 30, ...options, cache: { redis: { url: redisUrl, pollMs: 50, ...redisOptions } } },
  };
  const child = spawn(process.execPath, [WORKER, JSON.stringify(config)], { cwd: tmp, stdio: ["ignore", "pipe", "pipe"] });
  children.add(child);
  const worker = { name, prompts, child, answers: [], stderr: "", done: false };
  let buffered = "";
  child.stdout.on("data", (chunk) => {
    buffered += chunk;
    let newline;
    while ((newline = buffered.indexOf("\n")) >= 0) {
      const line = JSON.parse(buffered.slice(0, newline));
      buffered = buffered.slice(newline + 1);
      if (line.done) worker.done = true;
      else if (line.prompt !== undefined) worker.answers.push(line);
    }
  });
  child.stderr.on("data", (chunk) => (worker.stderr += chunk));
  worker.exited = new Promise((resolve) =>
    child.once("exit", (code, signal) => {
      children.delete(child);
      resolve({ code, signal });
    }),
  );
  return worker;
}

/** The worker ended on its own, having answered each of its prompts with its own answer. */
async function assertAnsweredAll(worker) {
  const exit = await worker.exited;
  const context = `${worker.name} (seed ${SEED}) stderr:\n${worker.stderr}`;
  assert.deepEqual(exit, { code: 0, signal: null }, context);
  assert.ok(worker.done, context);
  const failed = worker.answers.filter((a) => a.error);
  assert.deepEqual(failed, [], context);
  assert.deepEqual(worker.answers.map((a) => a.prompt).sort(), [...worker.prompts].sort(), context);
  for (const answer of worker.answers) assert.equal(answer.content, `echo: ${answer.prompt}`, context);
}

/** How many batch lines at the fake carry each prompt (OpenAI batches: the last user message). */
function linesAtFake() {
  const lines = new Map();
  for (const batch of fake.batches.values()) {
    for (const request of batch.requests ?? []) {
      const prompt = request.body.messages.at(-1).content;
      lines.set(prompt, (lines.get(prompt) ?? 0) + 1);
    }
  }
  return lines;
}

/** Each of `prompts` in exactly one batch line, and no other line. */
function assertOneLineEach(prompts) {
  const lines = linesAtFake();
  const duplicates = [...lines].filter(([, n]) => n > 1);
  assert.deepEqual(duplicates, [], `requests in more than one batch line (seed ${SEED})`);
  assert.deepEqual([...lines.keys()].sort(), [...new Set(prompts)].sort(), `seed ${SEED}`);
}

async function flushRedis() {
  const client = new Redis(redisUrl, { lazyConnect: true });
  await client.connect();
  await client.flushdb();
  await client.quit();
}

const promptsOf = (tag, n) => Array.from({ length: n }, (_, i) => `${tag} prompt ${i}`);

describe("a fleet of batchify() processes sharing one Redis", () => {
  test("four workers sending overlapping requests: each request in one batch line, every caller answered", async () => {
    await flushRedis();
    const rand = random(SEED);
    const prompts = promptsOf("overlap", 40);
    const workers = ["w1", "w2", "w3", "w4"].map((name) => startWorker(name, subset(rand, prompts, 25)));
    for (const worker of workers) await assertAnsweredAll(worker);
    const asked = workers.flatMap((w) => w.prompts);
    assertOneLineEach(asked);
    // The overlap was real: more calls than lines, the rest answered through the store.
    assert.equal(asked.length, 100);
    assert.ok(new Set(asked).size < asked.length);
  });

  test("no API key or auth header is in Redis after a run (every key and value scanned)", async () => {
    // What the previous test left: its answers and batch records, under the TTLs.
    const client = new Redis(redisUrl);
    try {
      const keys = [];
      let cursor = "0";
      do {
        const [next, batch] = await client.scan(cursor, "COUNT", 1000);
        cursor = next;
        keys.push(...batch);
      } while (cursor !== "0");
      assert.ok(keys.some((k) => k.startsWith("batchling:answer:")), `answers are stored: ${keys.slice(0, 5)}`);
      assert.ok(keys.some((k) => k.startsWith("batchling:batch:")), "batch records are stored");
      for (const key of keys) {
        assert.equal(await client.type(key), "string", key);
        const value = await client.get(key);
        const ttl = await client.pttl(key);
        for (const text of [key, value ?? ""]) {
          assert.ok(!text.includes(API_KEY), `the API key is in Redis at ${key}`);
          assert.ok(!text.includes(API_KEY.slice(8)), `part of the API key is in Redis at ${key}`);
          assert.ok(!/bearer/i.test(text), `an auth header is in Redis at ${key}`);
          assert.ok(!/authorization/i.test(text), `an auth header is in Redis at ${key}`);
        }
        // Nothing is kept for ever: answers and records carry the maxAgeDays TTL (30 days).
        assert.ok(ttl > 0 && ttl <= 30 * 24 * 3600 * 1000, `${key} has TTL ${ttl}`);
      }
    } finally {
      await client.quit();
    }
  });

  test("workers killed with SIGKILL mid-run and replaced: every answer delivered, zero duplicate lines", async () => {
    await flushRedis();
    // Batches take a while (several polls), so kills land after creates and before the ends.
    fake.config.pollsUntilDone = 8;
    const rand = random(SEED + 1);
    const prompts = promptsOf("kill", 40);
    // Short fleet timings: a killed worker's claims lapse after 1.5 s, then 0.5 s of grace.
    const timings = { redis: { leaseMs: 1500, graceMs: 500 }, pollIntervalMs: 150 };
    const workers = ["k1", "k2", "k3", "k4"].map((name) => startWorker(name, subset(rand, prompts, 25), timings));
    const deadline = Date.now() + 30_000;
    while (fake.batches.size < 3 && Date.now() < deadline) await sleep(20);
    assert.ok(fake.batches.size >= 3, "the workers created batches");
    const victims = subset(rand, workers, 2);
    for (const victim of victims) victim.child.kill("SIGKILL");
    for (const victim of victims) assert.equal((await victim.exited).signal, "SIGKILL");
    const unanswered = victims.flatMap((v) => v.prompts.filter((p) => !v.answers.some((a) => a.prompt === p)));
    assert.ok(unanswered.length > 0, "the kills left callers unanswered");
    // A restart of each: the same requests again (the callers' retries), with the same key.
    const replacements = victims.map((v) => startWorker(`${v.name}-again`, v.prompts, timings));
    const survivors = workers.filter((w) => !victims.includes(w));
    for (const worker of [...survivors, ...replacements]) await assertAnsweredAll(worker);
    assertOneLineEach(workers.flatMap((w) => w.prompts));
  });

  test("a Redis restart mid-run (SIGTERM, then the same port and append-only file): every answer delivered, zero duplicate lines", async () => {
    await flushRedis();
    fake.config.pollsUntilDone = 6;
    const rand = random(SEED + 2);
    const prompts = promptsOf("restart", 30);
    // The lease outlasts the restart; store actions wait for Redis to come back.
    const timings = { redis: { leaseMs: 8000, graceMs: 1000, retryForMs: 20_000, connectTimeoutMs: 10_000 }, pollIntervalMs: 150 };
    const workers = ["r1", "r2", "r3"].map((name) => startWorker(name, subset(rand, prompts, 20), timings));
    const deadline = Date.now() + 30_000;
    while (fake.batches.size < 2 && Date.now() < deadline) await sleep(20);
    assert.ok(fake.batches.size >= 2, "the workers created batches");
    await redis.stop();
    await sleep(500);
    redis = await startRedis(redisPort, redisDir);
    for (const worker of workers) await assertAnsweredAll(worker);
    assertOneLineEach(workers.flatMap((w) => w.prompts));
  });

  test("batchling serve --redis as two replicas: the same requests sent to both, one line each at the fake", async () => {
    await flushRedis();
    fake.config.pollsUntilDone = 2;
    const dir = mkdtempSync(join(tmp, "serve-"));
    const start = () => {
      const child = spawn(
        process.execPath,
        [CLI, "serve", "--port", "0", "--redis", redisUrl, "--host", `openai=${fake.url}/v1`, "--batch-size", "5", "--batch-window-ms", "150", "--poll-interval-ms", "20"],
        { cwd: dir, stdio: ["ignore", "ignore", "pipe"] },
      );
      children.add(child);
      const replica = { child, stderr: "" };
      replica.exited = new Promise((resolve) => child.once("exit", (code, signal) => resolve({ code, signal })));
      return new Promise((resolve, reject) => {
        child.stderr.on("data", (chunk) => {
          replica.stderr += chunk;
          const match = /listening on (http:\/\/\S+)/.exec(replica.stderr);
          if (match && !replica.url) {
            replica.url = match[1];
            resolve(replica);
          }
        });
        replica.exited.then(() => reject(new Error(`serve exited:\n${replica.stderr}`)));
      });
    };
    const replicas = [await start(), await start()];
    const prompts = promptsOf("serve", 12);
    const ask = async (replica, prompt) => {
      const response = await fetch(`${replica.url}/openai/v1/chat/completions`, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${API_KEY}` },
        body: JSON.stringify({ model: "gpt-4o-mini", messages: [{ role: "user", content: prompt }] }),
      });
      const body = await response.json();
      assert.equal(response.status, 200, `${JSON.stringify(body)}\n${replica.stderr}`);
      return body.choices[0].message.content;
    };
    const answers = await Promise.all(replicas.flatMap((replica) => prompts.map(async (prompt) => [prompt, await ask(replica, prompt)])));
    assert.equal(answers.length, 24);
    for (const [prompt, content] of answers) assert.equal(content, `echo: ${prompt}`);
    assertOneLineEach(prompts);
    for (const replica of replicas) {
      replica.child.kill("SIGTERM");
      assert.deepEqual(await replica.exited, { code: 0, signal: null }, replica.stderr);
      children.delete(replica.child);
    }
    // Redis is the journal: no cache file was written beside it.
    assert.deepEqual(readdirSync(dir), []);
  });

  test("Redis unreachable: calls fail with ERR_BATCHLING_REDIS_UNAVAILABLE and nothing reaches the provider", async () => {
    const closed = await freePort();
    const ctx = batchify({ batchWindowMs: 10, cache: { redis: { url: `redis://127.0.0.1:${closed}`, connectTimeoutMs: 300 } } });
    const call = (prompt) =>
      ctx.fetch(`${fake.url}/v1/chat/completions`, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${API_KEY}` },
        body: JSON.stringify({ model: "gpt-4o-mini", messages: [{ role: "user", content: prompt }] }),
      });
    for (const prompt of ["first", "second"]) {
      // Each call tries to open the store again (Redis may be back by then), and fails typed.
      await assert.rejects(call(prompt), (error) => {
        assert.ok(error instanceof RedisUnavailableError, String(error));
        assert.equal(error.code, "ERR_BATCHLING_REDIS_UNAVAILABLE");
        assert.match(error.message, /nothing was sent without the journal/);
        return true;
      });
    }
    await ctx.close();
    assert.equal(Object.values(fake.counters.requests).reduce((a, b) => a + b, 0), 0, "nothing reached the fake");
  });

  test("option errors name cache.redis; a dry run touches no store", async () => {
    assert.throws(() => batchify({ cache: { redis: "http://127.0.0.1:6379" } }), {
      code: "ERR_BATCHLING_INVALID_OPTION",
      option: "cache.redis",
      message: /redis:\/\/ or rediss:\/\//,
    });
    assert.throws(() => batchify({ cache: { redis: { url: redisUrl, leaseMs: 0 } } }), { option: "cache.redis.leaseMs" });
    assert.throws(() => batchify({ cache: { redis: redisUrl, path: "c.jsonl" } }), { option: "cache.redis" });
    assert.throws(() => batchify({ deadlineMs: 1000, cache: { redis: redisUrl } }), { option: "deadlineMs" });
    // A Redis nobody listens on: a dry run answers anyway, since it claims nothing.
    const closed = await freePort();
    const ctx = batchify({ dryRun: true, batchWindowMs: 10, cache: { redis: { url: `redis://127.0.0.1:${closed}`, connectTimeoutMs: 200 } } });
    const response = await ctx.fetch(`${fake.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${API_KEY}` },
      body: JSON.stringify({ model: "gpt-4o-mini", messages: [{ role: "user", content: "dry" }] }),
    });
    assert.equal(response.status, 200);
    assert.equal((await ctx.close()).dryRun, true);
    assert.equal(Object.values(fake.counters.requests).reduce((a, b) => a + b, 0), 0);
  });

  test("a Redis without append-only persistence: batchify warns at start-up, and still batches", async () => {
    const port = await freePort();
    const volatile = await startRedis(port, mkdtempSync(join(tmp, "volatile-")), { appendonly: "no" });
    const warnings = [];
    const onWarning = (warning) => warnings.push(warning);
    process.on("warning", onWarning);
    try {
      fake.config.pollsUntilDone = 1;
      const ctx = batchify({ batchWindowMs: 10, pollIntervalMs: 10, cache: { redis: `redis://127.0.0.1:${port}` } });
      const response = await ctx.fetch(`${fake.url}/v1/chat/completions`, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${API_KEY}` },
        body: JSON.stringify({ model: "gpt-4o-mini", messages: [{ role: "user", content: "volatile" }] }),
      });
      assert.equal((await response.json()).choices[0].message.content, "echo: volatile");
      await ctx.close();
      await sleep(0); // process warnings are emitted on the next tick
      const warning = warnings.find((w) => w.code === "BATCHLING_REDIS_NOT_PERSISTENT");
      assert.ok(warning, `warnings: ${warnings.map((w) => w.code)}`);
      assert.equal(warning.name, "BatchlingWarning");
      assert.match(warning.message, /appendonly no/);
      assert.match(warning.message, /set appendonly yes/);
    } finally {
      process.off("warning", onWarning);
      await volatile.stop();
    }
  });

  test("Redis gone after the start: the calls that hang on it fail with ERR_BATCHLING_STORE_UNAVAILABLE, nothing sent", async () => {
    const port = await freePort();
    const gone = await startRedis(port, mkdtempSync(join(tmp, "gone-")));
    const ctx = batchify({ batchWindowMs: 10, cache: { redis: { url: `redis://127.0.0.1:${port}`, retryForMs: 300 } } });
    const call = () =>
      ctx.fetch(`${fake.url}/v1/chat/completions`, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${API_KEY}` },
        body: JSON.stringify({ model: "gpt-4o-mini", messages: [{ role: "user", content: "while Redis is away" }] }),
      });
    // The store opens at once; then Redis goes away.
    await sleep(300);
    await gone.stop();
    await assert.rejects(call(), (error) => {
      assert.equal(error.code, "ERR_BATCHLING_STORE_UNAVAILABLE");
      return true;
    });
    await ctx.close();
    assert.equal(Object.values(fake.counters.requests).reduce((a, b) => a + b, 0), 0, "nothing reached the fake");
  });
});

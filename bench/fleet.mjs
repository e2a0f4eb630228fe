// npm run bench:fleet: the latency the Redis journal (`cache: { redis }`, fleet mode) adds to each
// request against the file journal (`cache: { path }`), on the same workload side by side.
//
// Each round sends N distinct chat completions (fresh prompts every round: no cache hits) through
// batchify() with the official openai SDK, against the fake provider on 127.0.0.1 answering at
// once (a batch is done at its first poll), once with each journal, the order alternating:
//   (file)  cache: { path: <tmp>/cache.jsonl }
//   (redis) cache: { redis: redis://127.0.0.1:<port> } on a redis-server of the bench's own
//           (appendonly yes, everysec fsync: Redis's default), one process, so every request is
//           claimed by it (the added work is the fleet's store actions, not waiting for others).
// Each round's first request is sent alone and not timed (it opens the journal: Redis's connection
// and persistence check, or the file). Per request: wall time from the call to its answer. Reported per journal: the median of the
// per-request medians over the rounds, and the median of (round wall time / N); then the
// differences redis - file.
//
// Env: BENCH_REQUESTS (500), BENCH_ROUNDS (7), BENCH_WARMUP (1), BENCH_BATCH_SIZE (100),
// BENCH_WINDOW_MS (20), BENCH_POLL_MS (10).
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import OpenAI from "openai";
import { batchify } from "../dist/index.js";
import { startFakeProvider } from "../tests/fake-provider/server.mjs";
import { freePort, startRedis } from "../tests/support/redis.mjs";

const N = Number(process.env.BENCH_REQUESTS ?? 500);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 7);
const WARMUP = Number(process.env.BENCH_WARMUP ?? 1);
const BATCH_SIZE = Number(process.env.BENCH_BATCH_SIZE ?? 100);
const WINDOW_MS = Number(process.env.BENCH_WINDOW_MS ?? 20);
const POLL_MS = Number(process.env.BENCH_POLL_MS ?? 10);

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

const dir = mkdtempSync(join(tmpdir(), "batchling-bench-fleet-"));
const fake = await startFakeProvider({ pollsUntilDone: 1 });
const port = await freePort();
const redis = await startRedis(port, dir);
const redisUrl = `redis://127.0.0.1:${port}/0`;

let roundNo = 0;
async function round(kind) {
  const tag = `${kind}-${roundNo++}`;
  const cache = kind === "redis" ? { redis: redisUrl } : { path: join(dir, `${tag}.jsonl`) };
  const ctx = batchify({ batchSize: BATCH_SIZE, batchWindowMs: WINDOW_MS, pollIntervalMs: POLL_MS, cache });
  const openai = new OpenAI({ apiKey: "sk-bench", baseURL: `${fake.url}/v1`, fetch: ctx.fetch, maxRetries: 0 });
  const ask = (prompt) => openai.chat.completions.create({ model: "gpt-4o-mini", messages: [{ role: "user", content: prompt }] });
  // One request first, not timed: the store's connection (or the journal file) is opened once
  // per process, so what is timed is the steady state.
  const opened = performance.now();
  await ask(`${tag} first`);
  const firstMs = performance.now() - opened;
  const latencies = new Array(N);
  const started = performance.now();
  await Promise.all(
    Array.from({ length: N }, async (_, i) => {
      const t0 = performance.now();
      const completion = await ask(`${tag} prompt ${i}`);
      latencies[i] = performance.now() - t0;
      if (completion.choices[0].message.content !== `echo: ${tag} prompt ${i}`) throw new Error(`wrong answer for ${tag} ${i}`);
    }),
  );
  const wall = performance.now() - started;
  await ctx.close();
  fake.reset();
  return { median: median(latencies), perRequest: wall / N, firstMs };
}

const results = { file: [], redis: [] };
try {
  for (let r = 0; r < WARMUP + ROUNDS; r++) {
    const order = r % 2 ? ["redis", "file"] : ["file", "redis"];
    for (const kind of order) {
      const result = await round(kind);
      if (r >= WARMUP) results[kind].push(result);
    }
  }
} finally {
  await fake.close();
  await redis.stop();
  rmSync(dir, { recursive: true, force: true });
}

const summary = (kind) => ({
  median: median(results[kind].map((r) => r.median)),
  perRequest: median(results[kind].map((r) => r.perRequest)),
  firstMs: median(results[kind].map((r) => r.firstMs)),
});
const file = summary("file");
const red = summary("redis");
const ms = (x) => `${x.toFixed(2)} ms`;
console.log(`batchify, ${N} requests per round (batch size ${BATCH_SIZE}, window ${WINDOW_MS} ms, poll ${POLL_MS} ms), ${ROUNDS} rounds after ${WARMUP} warm-up, fake provider answering at the first poll`);
console.log("");
console.log("| journal | median request latency | round wall time / N | first request (opens the journal) |");
console.log("|---|---|---|---|");
console.log(`| file (cache: { path }) | ${ms(file.median)} | ${ms(file.perRequest)} | ${ms(file.firstMs)} |`);
console.log(`| Redis (cache: { redis }) | ${ms(red.median)} | ${ms(red.perRequest)} | ${ms(red.firstMs)} |`);
console.log(`| added by Redis | ${ms(red.median - file.median)} | ${ms(red.perRequest - file.perRequest)} | ${ms(red.firstMs - file.firstMs)} |`);

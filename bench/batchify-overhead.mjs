// npm run bench:batchify: what batchify() adds to each intercepted OpenAI SDK call.
//
// The same 10,000 `chat.completions.create` calls (official openai SDK, maxRetries: 0, distinct
// prompts so none are deduplicated), CONCURRENCY in flight at once, made
//   (a) direct:   against the fake provider's synchronous endpoint over HTTP on 127.0.0.1;
//   (b) batchify: through batchify({ dryRun: true, cache: false, batchSize: 1000,
//                 batchWindowMs: 0 }) with `fetch: ctx.fetch` (intercepted, queued, answered
//                 by the engine's dry-run response; nothing goes on the network);
//   (ref) canned: the SDK with a fetch that returns a fixed response at once: the SDK's own cost,
//                 so (b) - (ref) is what the interception path costs by itself.
// Rounds alternate (a), (b), (ref) after warm-up rounds; prints the median µs per call of each
// and the ratios. The fake server runs in a worker thread (its own event loop, so its CPU time
// is not charged to the client's loop, as with a remote API); BENCH_SERVER=inprocess runs it on
// the client's loop instead.
//
// Env: BENCH_CALLS (10000), BENCH_CONCURRENCY (100), BENCH_ROUNDS (9), BENCH_WARMUP (2),
// BENCH_SERVER (worker | inprocess).
import { Worker } from "node:worker_threads";
import { availableParallelism } from "node:os";
import { readFileSync } from "node:fs";
import OpenAI from "openai";
import { batchify } from "../dist/index.js";

const CALLS = Number(process.env.BENCH_CALLS ?? 10_000);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 100);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 9);
const WARMUP = Number(process.env.BENCH_WARMUP ?? 2);
const SERVER = process.env.BENCH_SERVER ?? "worker";
const OPENAI_VERSION = JSON.parse(readFileSync(new URL("../node_modules/openai/package.json", import.meta.url), "utf8")).version;
const BATCHIFY_OPTIONS = { dryRun: true, cache: false, batchSize: 1000, batchWindowMs: 0 };

// ---- the fake provider ----------------------------------------------------------------------

async function startServer() {
  if (SERVER === "inprocess") {
    const { startFakeProvider } = await import("../tests/fake-provider/server.mjs");
    const fake = await startFakeProvider();
    return { url: fake.url, close: () => fake.close() };
  }
  const serverModule = new URL("../tests/fake-provider/server.mjs", import.meta.url).href;
  const worker = new Worker(
    `import { parentPort } from "node:worker_threads";
     const { startFakeProvider } = await import(${JSON.stringify(serverModule)});
     const fake = await startFakeProvider();
     parentPort.postMessage(fake.url);
     parentPort.once("message", async () => { await fake.close(); parentPort.close(); });`,
    { eval: true },
  );
  const url = await new Promise((resolve, reject) => {
    worker.once("message", resolve);
    worker.once("error", reject);
  });
  return {
    url,
    close: async () => {
      worker.postMessage("close");
      await new Promise((resolve) => worker.once("exit", resolve));
    },
  };
}

// ---- the workload ---------------------------------------------------------------------------

const SYSTEM = ["You are a helpful assistant.", "Answer in one word.", "Summarise for a support agent."];
const params = Array.from({ length: CALLS }, (_, i) => ({
  model: "gpt-4o-mini",
  messages: [
    { role: "system", content: SYSTEM[i % SYSTEM.length] },
    { role: "user", content: `Question ${i}: classify the review "${"great product, fast shipping ".repeat(1 + (i % 5))}"` },
  ],
  max_completion_tokens: 64 + (i % 7) * 16,
  ...(i % 3 === 0 ? { temperature: 0.2 } : {}),
}));

/** All CALLS calls, at most CONCURRENCY in flight. Returns the answers (for a sanity check). */
async function runCalls(client) {
  const answers = new Array(CALLS);
  let next = 0;
  const worker = async () => {
    while (next < CALLS) {
      const i = next++;
      answers[i] = await client.chat.completions.create(params[i]);
    }
  };
  await Promise.all(Array.from({ length: Math.min(CONCURRENCY, CALLS) }, worker));
  return answers;
}

const clientOptions = (url, fetch) => ({ apiKey: "sk-bench", baseURL: `${url}/v1`, maxRetries: 0, ...(fetch ? { fetch } : {}) });

/** A chat.completion answer, for the canned fetch. */
const CANNED = JSON.stringify({
  id: "chatcmpl-canned",
  object: "chat.completion",
  created: 0,
  model: "gpt-4o-mini",
  choices: [{ index: 0, message: { role: "assistant", content: "ok", refusal: null }, logprobs: null, finish_reason: "stop" }],
  usage: { prompt_tokens: 0, completion_tokens: 0, total_tokens: 0 },
});
const cannedFetch = async (input, init) => {
  // Read the body as the interception path does, so both pay for it.
  await new Request(input, init).text();
  return new Response(CANNED, { status: 200, headers: { "content-type": "application/json" } });
};

async function timeDirect(client) {
  const start = process.hrtime.bigint();
  const answers = await runCalls(client);
  const ns = Number(process.hrtime.bigint() - start);
  if (!answers[CALLS - 1].choices[0].message.content.startsWith("echo: ")) throw new Error("direct: unexpected answer");
  return ns;
}

async function timeBatchify(url) {
  const ctx = batchify(BATCHIFY_OPTIONS);
  const client = new OpenAI(clientOptions(url, ctx.fetch));
  const start = process.hrtime.bigint();
  const answers = await runCalls(client);
  const ns = Number(process.hrtime.bigint() - start);
  await ctx.close();
  if (!answers[CALLS - 1].choices[0].message.content.includes("dry run")) throw new Error("batchify: not a dry-run answer");
  return ns;
}

async function timeCanned(url) {
  const client = new OpenAI(clientOptions(url, cannedFetch));
  const start = process.hrtime.bigint();
  await runCalls(client);
  return Number(process.hrtime.bigint() - start);
}

// ---- run ------------------------------------------------------------------------------------

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

const server = await startServer();
const direct = new OpenAI(clientOptions(server.url));
const samples = { direct: [], batchify: [], canned: [] };
try {
  for (let round = 0; round < WARMUP + ROUNDS; round++) {
    const d = await timeDirect(direct);
    const b = await timeBatchify(server.url);
    const c = await timeCanned(server.url);
    if (round >= WARMUP) {
      samples.direct.push(d);
      samples.batchify.push(b);
      samples.canned.push(c);
    }
  }
} finally {
  await server.close();
}

const usPerCall = (ns) => ns / 1e3 / CALLS;
const med = Object.fromEntries(Object.entries(samples).map(([k, v]) => [k, usPerCall(median(v))]));
const spread = (k) => {
  const v = samples[k].map(usPerCall);
  return `${Math.min(...v).toFixed(1)}–${Math.max(...v).toFixed(1)}`;
};
console.log(
  `workload: ${CALLS} openai@${OPENAI_VERSION} chat.completions.create calls per round, ${CONCURRENCY} in flight; ` +
    `median of ${ROUNDS} alternating rounds after ${WARMUP} warm-up; fake server: ${SERVER === "inprocess" ? "same event loop" : "worker thread"}; ` +
    `node ${process.version}, ${availableParallelism()} CPUs`,
);
console.log(`batchify options: ${JSON.stringify(BATCHIFY_OPTIONS)}, fetch: ctx.fetch`);
console.table([
  { path: "(a) direct HTTP to fake sync endpoint", "median µs/call": med.direct.toFixed(1), "min–max": spread("direct"), "÷ direct": "1.00" },
  { path: "(b) batchify dry run via ctx.fetch", "median µs/call": med.batchify.toFixed(1), "min–max": spread("batchify"), "÷ direct": (med.batchify / med.direct).toFixed(2) },
  { path: "(ref) SDK with canned-response fetch", "median µs/call": med.canned.toFixed(1), "min–max": spread("canned"), "÷ direct": (med.canned / med.direct).toFixed(2) },
]);
console.log(`batchify / direct: ${(med.batchify / med.direct).toFixed(2)}x`);
console.log(`added by interception (b - ref): ${(med.batchify - med.canned).toFixed(1)} µs per call`);

// npm run bench:batchify-memory: CPU and memory per in-flight batchify() call, side by side with
// the bare SDK.
//
// CALLS (10,000 and 100,000 by default) `openai.chat.completions.create` calls (official openai
// SDK, maxRetries: 0, distinct prompts), all started at once, made in three ways, each run in a
// fresh child process (so its peak RSS is its own):
//   bare:     the SDK with a fetch that answers at once with a canned chat.completion (the
//             fetch takes the body as the interception does: the SDK's string, no Request);
//   batchify: through batchify({ batchSize: 100, cache: { path } }) with `fetch: ctx.fetch`, a
//             real batch flow (upload, create, poll, download) against the fake provider running
//             in another process, the cache journal in a fresh temporary file;
//   hit:      the same calls again, in a new process with the journal the batchify run wrote:
//             every call is answered from the cache.
// Per run: CPU per call (user + system of the client process, from the first call to the last
// answer, the forced GC below excluded), peak RSS (the process's maxRSS), and heap + external
// memory after a forced GC (`--expose-gc`) taken while every call is in flight (and the RSS at
// that moment, which also counts the native core's memory, outside the JS heap): the fake holds
// its batches (not finished) until the measurement is taken, the bare fetch holds its answers
// until every call has reached it. Rounds alternate the modes; prints medians and the
// difference per call.
//
// Env: BENCH_SIZES ("10000,100000"), BENCH_ROUNDS (3), BENCH_DIST (the dist/ to measure).
import { fork } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir, availableParallelism } from "node:os";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const SELF = fileURLToPath(import.meta.url);
// BENCH_DIST: another build's dist/ directory (e.g. a copy of main's), to compare builds.
const DIST = process.env.BENCH_DIST ? pathToFileURL(join(process.env.BENCH_DIST, "index.js")).href : "../dist/index.js";
const BATCH_SIZE = 100;

// ---- child: one run ------------------------------------------------------------------------

function workload(calls) {
  const SYSTEM = ["You are a helpful assistant.", "Answer in one word.", "Summarise for a support agent."];
  return Array.from({ length: calls }, (_, i) => ({
    model: "gpt-4o-mini",
    messages: [
      { role: "system", content: SYSTEM[i % SYSTEM.length] },
      { role: "user", content: `Question ${i}: classify the review "${"great product, fast shipping ".repeat(1 + (i % 5))}"` },
    ],
    max_completion_tokens: 64 + (i % 7) * 16,
    ...(i % 3 === 0 ? { temperature: 0.2 } : {}),
  }));
}

const CANNED = JSON.stringify({
  id: "chatcmpl-canned",
  object: "chat.completion",
  created: 0,
  model: "gpt-4o-mini",
  choices: [{ index: 0, message: { role: "assistant", content: "ok", refusal: null }, logprobs: null, finish_reason: "stop" }],
  usage: { prompt_tokens: 0, completion_tokens: 0, total_tokens: 0 },
});

const cpuMicros = () => {
  const { user, system } = process.cpuUsage();
  return user + system;
};

/** heap + external after a full GC, and the CPU the GC itself took (excluded from the run's). */
function measureInFlight() {
  const before = cpuMicros();
  globalThis.gc();
  globalThis.gc();
  const m = process.memoryUsage();
  return { inFlightBytes: m.heapUsed + m.external, heapUsed: m.heapUsed, external: m.external, rssAfterGc: m.rss, gcMicros: cpuMicros() - before };
}

async function child(mode, calls, url, journalPath) {
  const { default: OpenAI } = await import("openai");
  const params = workload(calls);
  let fetch;
  let ctx;
  let allInFlight; // resolves once every call is in flight
  let release; // lets them finish
  if (mode === "bare") {
    let waiting = [];
    let reached = 0;
    let signalAll;
    allInFlight = new Promise((resolve) => (signalAll = resolve));
    let held = true;
    fetch = async (input, init) => {
      // Read the body the cheapest way, as the interception does (SDKs pass a string).
      if (typeof init?.body !== "string") await new Request(input, init).text();
      if (held) {
        await new Promise((resolve) => {
          waiting.push(resolve);
          if (++reached === calls) signalAll();
        });
      }
      return new Response(CANNED, { status: 200, headers: { "content-type": "application/json" } });
    };
    release = () => {
      held = false;
      for (const resolve of waiting) resolve();
      waiting = [];
    };
  } else {
    const { batchify } = await import(DIST);
    let submitted = 0;
    let signalAll;
    allInFlight = mode === "hit" ? Promise.resolve() : new Promise((resolve) => (signalAll = resolve));
    ctx = batchify({
      batchSize: BATCH_SIZE,
      batchWindowMs: 50,
      pollIntervalMs: 100,
      cache: { path: journalPath },
      onEvent: (event) => {
        if (event.kind === "batchSubmitted" && (submitted += event.requests) === calls) signalAll();
      },
    });
    fetch = ctx.fetch;
    release = () => process.send({ release: true });
  }
  const client = new OpenAI({ apiKey: "sk-bench", baseURL: `${url ?? "http://127.0.0.1:9"}/v1`, maxRetries: 0, fetch });
  const start = cpuMicros();
  const answers = Promise.all(params.map((p) => client.chat.completions.create(p)));
  let memory = { inFlightBytes: null, heapUsed: null, external: null, rssAfterGc: null, gcMicros: 0 };
  if (mode !== "hit") {
    await allInFlight;
    memory = measureInFlight();
    release();
  }
  const done = await answers;
  const cpu = cpuMicros() - start - memory.gcMicros;
  if (ctx) await ctx.close();
  const last = done[calls - 1].choices[0].message.content;
  if (mode === "bare" ? last !== "ok" : !last.startsWith("echo: ")) throw new Error(`${mode}: unexpected answer ${last}`);
  const peakRss = process.resourceUsage().maxRSS * 1024;
  return { cpuPerCall: cpu / calls, peakRss, ...memory };
}

// ---- the fake provider, in its own process --------------------------------------------------

async function fakeProcess() {
  const { startFakeProvider } = await import("../tests/fake-provider/server.mjs");
  const fake = await startFakeProvider({ pollsUntilDone: 0, shuffleResults: false });
  process.on("message", (message) => {
    if (message === "hold") fake.config.pollsUntilDone = 1e9;
    if (message === "release") fake.config.pollsUntilDone = 0;
    if (message === "close") fake.close().then(() => process.exit(0));
  });
  process.send({ url: fake.url });
}

function startFake() {
  const proc = fork(SELF, ["fake"], { stdio: ["ignore", "inherit", "inherit", "ipc"] });
  return new Promise((resolve, reject) => {
    proc.once("error", reject);
    proc.once("message", ({ url }) => resolve({ url, proc }));
  });
}

function runChild(mode, calls, fake, journalPath) {
  const proc = fork(SELF, ["child", mode, String(calls), fake?.url ?? "", journalPath ?? ""], {
    // BENCH_CPU_PROF=<dir>: each run writes a CPU profile there (named by mode and pid).
    execArgv: ["--expose-gc", ...(process.env.BENCH_CPU_PROF ? ["--cpu-prof", `--cpu-prof-dir=${process.env.BENCH_CPU_PROF}`, `--cpu-prof-name=${mode}-${calls}-\${pid}.cpuprofile`] : [])],
    stdio: ["ignore", "inherit", "inherit", "ipc"],
  });
  return new Promise((resolve, reject) => {
    proc.on("message", (message) => {
      if (message.release) fake.proc.send("release");
      if (message.result) resolve(message.result);
      if (message.error) reject(new Error(message.error));
    });
    proc.once("exit", (code) => code !== 0 && reject(new Error(`${mode} run exited with ${code}`)));
  });
}

// ---- parent ---------------------------------------------------------------------------------

const median = (xs) => {
  const s = xs.filter((x) => x !== null).sort((a, b) => a - b);
  if (s.length === 0) return null;
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const MiB = (bytes) => (bytes === null ? "—" : (bytes / 2 ** 20).toFixed(0));

async function parent() {
  const sizes = (process.env.BENCH_SIZES ?? "10000,100000").split(",").map(Number);
  const rounds = Number(process.env.BENCH_ROUNDS ?? 3);
  const fake = await startFake();
  const dir = mkdtempSync(join(tmpdir(), "batchling-bench-"));
  console.log(
    `openai SDK chat.completions.create calls, all started at once; batchify batchSize ${BATCH_SIZE}, cache on, ` +
      `fake provider in another process; median of ${rounds} rounds, each run in a fresh process; node ${process.version}, ${availableParallelism()} CPUs`,
  );
  try {
    for (const calls of sizes) {
      const runs = { bare: [], batchify: [], hit: [] };
      for (let round = 0; round < rounds; round++) {
        const journal = join(dir, `cache-${calls}-${round}.jsonl`);
        runs.bare.push(await runChild("bare", calls, fake));
        fake.proc.send("hold");
        runs.batchify.push(await runChild("batchify", calls, fake, journal));
        runs.hit.push(await runChild("hit", calls, fake, journal));
        rmSync(journal, { force: true });
      }
      const med = Object.fromEntries(
        Object.entries(runs).map(([mode, rs]) => [
          mode,
          Object.fromEntries(["cpuPerCall", "peakRss", "inFlightBytes", "heapUsed", "external", "rssAfterGc"].map((k) => [k, median(rs.map((r) => r[k]))])),
        ]),
      );
      const row = (label, m) => ({
        run: label,
        "CPU µs/call": m.cpuPerCall.toFixed(1),
        "peak RSS MiB": MiB(m.peakRss),
        "in flight after GC: heap+external MiB": MiB(m.inFlightBytes),
        "heap MiB": MiB(m.heapUsed),
        "external MiB": MiB(m.external),
        "RSS after GC MiB": MiB(m.rssAfterGc),
      });
      console.log(`\n${calls.toLocaleString("en")} calls`);
      console.table([row("bare SDK, fetch answers at once", med.bare), row("batchify, fake batch flow", med.batchify), row("batchify, all cache hits", med.hit)]);
      const perCall = (a, b) => ((a - b) / calls / 1024).toFixed(2);
      console.log(
        `added per call: CPU ${(med.batchify.cpuPerCall - med.bare.cpuPerCall).toFixed(1)} µs (cache hit ${(med.hit.cpuPerCall - med.bare.cpuPerCall).toFixed(1)} µs); ` +
          `peak RSS ${perCall(med.batchify.peakRss, med.bare.peakRss)} KiB (cache hit ${perCall(med.hit.peakRss, med.bare.peakRss)} KiB); ` +
          `in flight after GC: heap+external ${perCall(med.batchify.inFlightBytes, med.bare.inFlightBytes)} KiB, ` +
          `RSS (with the native core's memory) ${perCall(med.batchify.rssAfterGc, med.bare.rssAfterGc)} KiB`,
      );
    }
  } finally {
    fake.proc.send("close");
    rmSync(dir, { recursive: true, force: true });
  }
}

const [role, mode, calls, url, journalPath] = process.argv.slice(2);
if (role === "child") {
  child(mode, Number(calls), url || undefined, journalPath || undefined).then(
    (result) => process.send({ result }, () => process.exit(0)),
    (error) => process.send({ error: String(error?.stack ?? error) }, () => process.exit(1)),
  );
} else if (role === "fake") {
  await fakeProcess();
} else {
  await parent();
}

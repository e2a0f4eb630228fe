// npm run bench:serve: what `batchling serve` sustains, and what it adds to each request.
//
// `batchling serve` runs as its own process (dist/cli.js serve); the fake provider runs in a
// worker thread of this process and the client (Node's fetch, keep-alive) on its main thread.
//
// 1. Throughput, batch size 1,000: BENCH_REQUESTS chat completions (distinct prompts),
//    BENCH_CONCURRENCY in flight, through `--batch-size 1000 --batch-window-ms 500
//    --poll-interval-ms 50`, cache on (a fresh journal per round), in two modes alternating by
//    round: dry run (synthetic answers, nothing sent) and real (uploaded, created, polled and
//    downloaded at the fake, which ends a batch at its first poll). Prints the median requests
//    per second (first send to last answer) and the server's CPU µs per request (/proc).
// 2. Added latency outside the batch wait: BENCH_LATENCY_REQUESTS sequential requests, median and
//    p99 of
//    (a) a canned chat completion from a bare Node HTTP server (the loopback round trip alone);
//    (b) the same request through `serve --dry-run --batch-size 1 --batch-window-ms 0` (route,
//        headers, engine, journal, answer: everything but a provider's batch);
//    (c) a GET the server passes through (`/openai/v1/batches?limit=1`) against the same GET
//        straight to the fake: the proxy's own cost.
//
// Env: BENCH_REQUESTS (20000), BENCH_CONCURRENCY (2000), BENCH_ROUNDS (3 per mode),
// BENCH_LATENCY_REQUESTS (1000), BENCH_CPU_PROF=dir (the server process writes a V8 CPU profile there).
import { spawn } from "node:child_process";
import { createServer } from "node:http";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Worker } from "node:worker_threads";

const REQUESTS = Number(process.env.BENCH_REQUESTS ?? 20_000);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 2_000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const LATENCY_REQUESTS = Number(process.env.BENCH_LATENCY_REQUESTS ?? 1_000);
const CLI = new URL("../dist/cli.js", import.meta.url).pathname;
const tmp = mkdtempSync(join(tmpdir(), "batchling-bench-serve-"));
const CLOCK_TICKS_PER_S = 100;

async function startFake() {
  const serverModule = new URL("../tests/fake-provider/server.mjs", import.meta.url).href;
  const worker = new Worker(
    `import { parentPort } from "node:worker_threads";
     const { startFakeProvider } = await import(${JSON.stringify(serverModule)});
     const fake = await startFakeProvider({ pollsUntilDone: 1 });
     parentPort.postMessage(fake.url);
     parentPort.on("message", async (m) => {
       if (m === "reset") { fake.reset(); parentPort.postMessage("reset"); return; }
       await fake.close(); parentPort.close();
     });`,
    { eval: true },
  );
  const url = await new Promise((resolve, reject) => {
    worker.once("message", resolve);
    worker.once("error", reject);
  });
  return {
    url,
    reset: () => new Promise((resolve) => { worker.once("message", resolve); worker.postMessage("reset"); }),
    close: async () => {
      worker.postMessage("close");
      await new Promise((resolve) => worker.once("exit", resolve));
    },
  };
}

async function startServe(fakeUrl, args) {
  const child = spawn(process.execPath, [...(process.env.BENCH_CPU_PROF ? ["--cpu-prof", `--cpu-prof-dir=${process.env.BENCH_CPU_PROF}`] : []), CLI, "serve", "--port", "0", "--host", `openai=${fakeUrl}/v1`, ...args], { stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  const url = await new Promise((resolve, reject) => {
    child.stderr.on("data", (d) => {
      stderr += d;
      const match = /listening on (http:\/\/\S+)/.exec(stderr);
      if (match) resolve(match[1]);
    });
    child.once("exit", (code) => reject(new Error(`serve exited ${code}: ${stderr}`)));
  });
  return {
    url,
    /** User + system CPU seconds of the server process so far. */
    cpuS() {
      const fields = readFileSync(`/proc/${child.pid}/stat`, "utf8").split(") ")[1].split(" ");
      return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS_PER_S;
    },
    stop: () => new Promise((resolve) => { child.once("exit", resolve); child.kill("SIGTERM"); }),
  };
}

const chatBody = (prompt) => JSON.stringify({ model: "gpt-4o-mini", messages: [{ role: "user", content: prompt }], max_completion_tokens: 64 });
const HEADERS = { authorization: "Bearer sk-bench", "content-type": "application/json" };

async function throughputRound(fake, dryRun, round) {
  await fake.reset();
  const cachePath = join(tmp, `cache-${dryRun ? "dry" : "real"}-${round}.jsonl`);
  const server = await startServe(fake.url, ["--batch-size", "1000", "--batch-window-ms", "500", "--poll-interval-ms", "50", "--cache-path", cachePath, ...(dryRun ? ["--dry-run"] : [])]);
  const url = `${server.url}/openai/v1/chat/completions`;
  const cpuBefore = server.cpuS();
  const start = performance.now();
  let next = 0;
  let failed = 0;
  const worker = async () => {
    while (next < REQUESTS) {
      const i = next++;
      const response = await fetch(url, { method: "POST", headers: HEADERS, body: chatBody(`round ${round} request ${i}: classify this review`) });
      const body = await response.json();
      if (response.status !== 200 || !body.choices) failed++;
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  const seconds = (performance.now() - start) / 1000;
  const cpuS = server.cpuS() - cpuBefore;
  await server.stop();
  rmSync(cachePath, { force: true });
  if (failed) throw new Error(`${failed} requests failed`);
  return { rps: REQUESTS / seconds, cpuUsPerRequest: (cpuS * 1e6) / REQUESTS };
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const p99 = (xs) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * 0.99))];

async function latencies(send) {
  for (let i = 0; i < 50; i++) await send(-1 - i); // warm-up
  const out = [];
  for (let i = 0; i < LATENCY_REQUESTS; i++) {
    const start = performance.now();
    await send(i);
    out.push((performance.now() - start) * 1000);
  }
  return out;
}

async function main() {
  const fake = await startFake();
  console.log(`batchling serve bench: ${REQUESTS} requests, ${CONCURRENCY} in flight, batch size 1000, ${ROUNDS} rounds per mode; node ${process.version}`);
  const results = { dry: [], real: [] };
  for (let round = 0; round < ROUNDS; round++) {
    for (const mode of ["dry", "real"]) {
      const r = await throughputRound(fake, mode === "dry", round);
      results[mode].push(r);
      console.log(`  round ${round + 1} ${mode.padEnd(4)}: ${r.rps.toFixed(0)} requests/s, server CPU ${r.cpuUsPerRequest.toFixed(0)} µs/request`);
    }
  }
  for (const mode of ["dry", "real"]) {
    const rps = median(results[mode].map((r) => r.rps));
    const cpu = median(results[mode].map((r) => r.cpuUsPerRequest));
    console.log(`throughput ${mode === "dry" ? "dry run" : "real   "}: median ${rps.toFixed(0)} requests/s, server CPU ${cpu.toFixed(0)} µs/request`);
  }

  // Latency.
  await fake.reset();
  const canned = JSON.stringify({ id: "chatcmpl-x", object: "chat.completion", created: 0, model: "gpt-4o-mini", choices: [{ index: 0, message: { role: "assistant", content: "ok" }, finish_reason: "stop" }], usage: { prompt_tokens: 9, completion_tokens: 1, total_tokens: 10 } });
  const bare = createServer((req, res) => {
    req.resume();
    req.on("end", () => {
      res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(canned) });
      res.end(canned);
    });
  });
  await new Promise((resolve) => bare.listen(0, "127.0.0.1", resolve));
  const bareUrl = `http://127.0.0.1:${bare.address().port}/v1/chat/completions`;
  const post = (url) => async (i) => {
    const response = await fetch(url, { method: "POST", headers: HEADERS, body: chatBody(`latency ${i}`) });
    await response.arrayBuffer();
  };
  const get = (url) => async () => {
    const response = await fetch(url, { headers: HEADERS });
    await response.arrayBuffer();
  };
  const dry = await startServe(fake.url, ["--dry-run", "--batch-size", "1", "--batch-window-ms", "0", "--no-cache"]);
  const direct = await latencies(post(bareUrl));
  const through = await latencies(post(`${dry.url}/openai/v1/chat/completions`));
  const fakeGet = await latencies(get(`${fake.url}/v1/batches?limit=1`));
  const proxiedGet = await latencies(get(`${dry.url}/openai/v1/batches?limit=1`));
  await dry.stop();
  bare.close();
  const row = (name, xs) => console.log(`  ${name.padEnd(44)} median ${median(xs).toFixed(0).padStart(5)} µs   p99 ${p99(xs).toFixed(0).padStart(6)} µs`);
  console.log(`latency, ${LATENCY_REQUESTS} sequential requests:`);
  row("(a) bare HTTP server, canned answer", direct);
  row("(b) serve --dry-run, batch size 1", through);
  row("    fake GET /v1/batches direct", fakeGet);
  row("(c) the same GET passed through serve", proxiedGet);
  console.log(`added by serve outside the batch wait: ${(median(through) - median(direct)).toFixed(0)} µs per batched request (b - a), ${(median(proxiedGet) - median(fakeGet)).toFixed(0)} µs per pass-through (c - direct)`);
  await fake.close();
  rmSync(tmp, { recursive: true, force: true });
}

await main();

// node bench/batch-jobs-memory.mjs: a Batch run of N short chat jobs from a .jsonl source
// (gpt-4o-mini, itemsPerBatch 1000, maxConcurrent 10, pollIntervalMs 20) against the fake
// provider in another process; prints wall time, CPU per job in the runner, the runner's peak
// JS heap and RSS (sampled every 50 ms) and the state file's size. Env: N (20000); BATCHLING_ROOT, a checkout with a built dist/ to
// measure instead of this one (e.g. an older commit, side by side).
//
// KILL_AT=random (or a number of ms): the runner runs in a child process instead, is killed
// with SIGKILL at a random point of its run after its first batch reached the fake provider
// (uniform over that span of an uninterrupted run, which it times first on the same jobs; or
// KILL_AT ms after the first batch), and a second
// child resumes it with the same state file. The fake provider then runs in this process, and
// its own record of the batch lines it received must show every job once and no job twice; the
// resume's results must answer every job. Prints what the kill interrupted and the check's
// counts; exits 1 if the check fails.
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { spawn } from "node:child_process";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const root = process.env.BATCHLING_ROOT ?? fileURLToPath(new URL("..", import.meta.url));
const N = Number(process.env.N ?? 20000);
const KILL_AT = process.env.KILL_AT;
const BATCH_OPTIONS = { itemsPerBatch: 1000, maxConcurrent: 10, pollIntervalMs: 20 };
// A kill mode runner works in its parent's directory.
const dir = process.env.BENCH_DIR ?? mkdtempSync(join(tmpdir(), "batchling-bench-memory-"));

function writeSource() {
  const source = join(dir, "jobs.jsonl");
  const lines = [];
  for (let i = 0; i < N; i++) lines.push(JSON.stringify({ id: `j${i}`, model: "gpt-4o-mini", messages: [{ role: "user", content: `short question number ${i}` }] }));
  writeFileSync(source, lines.join("\n") + "\n");
  return source;
}

/** One measured run in this process, against the fake provider at `url`. */
async function measure(url, source) {
  const { Batch } = await import(join(root, "dist/index.js"));
  const t0 = performance.now();
  const cpu0 = process.cpuUsage();
  const stateFile = join(dir, "state.json");
  const batch = new Batch({ stateFile, resultsDir: join(dir, "results"), ...BATCH_OPTIONS, providers: { openai: { apiKey: "sk-test", baseURL: `${url}/v1` } } });
  await batch.addJobs(source);
  let peakHeap = 0;
  let peakRss = 0;
  const timer = setInterval(() => {
    const { heapUsed, rss } = process.memoryUsage();
    peakHeap = Math.max(peakHeap, heapUsed);
    peakRss = Math.max(peakRss, rss);
  }, 50);
  const run = await batch.run({ wait: true });
  clearInterval(timer);
  const cpu = process.cpuUsage(cpu0);
  return {
    jobs: N,
    completed: run.status().completed,
    wallS: Number(((performance.now() - t0) / 1000).toFixed(1)),
    cpuUsPerJob: Math.round((cpu.user + cpu.system) / N),
    peakHeapMiB: Math.round(peakHeap / 2 ** 20),
    peakRssMiB: Math.round(peakRss / 2 ** 20),
    stateFileBytes: statSync(stateFile).size,
  };
}

if (process.env.BENCH_CHILD) {
  // A runner of the kill mode: one run, its measurement on stdout.
  console.log(JSON.stringify(await measure(process.env.BENCH_URL, process.env.BENCH_SOURCE)));
  process.exit(0);
}

if (!KILL_AT) {
  const serverModule = JSON.stringify(join(root, "tests/fake-provider/server.mjs"));
  const server = spawn(
    process.execPath,
    ["--input-type=module", "-e", `const { startFakeProvider } = await import(${serverModule}); console.log((await startFakeProvider({ pollsUntilDone: 1 })).url);`],
    { stdio: ["ignore", "pipe", "inherit"] },
  );
  const url = await new Promise((resolve) => server.stdout.once("data", (d) => resolve(String(d).trim())));
  try {
    console.log(JSON.stringify(await measure(url, writeSource())));
  } finally {
    server.kill();
    rmSync(dir, { recursive: true, force: true });
  }
} else {
  const { startFakeProvider } = await import(join(root, "tests/fake-provider/server.mjs"));
  const fake = await startFakeProvider({ pollsUntilDone: 1 });
  const source = writeSource();
  const runner = () => {
    const child = spawn(process.execPath, [fileURLToPath(import.meta.url)], {
      env: { ...process.env, BENCH_CHILD: "1", BENCH_URL: fake.url, BENCH_SOURCE: source, BENCH_DIR: dir },
      stdio: ["ignore", "pipe", "inherit"],
    });
    let stdout = "";
    child.stdout.on("data", (d) => (stdout += d));
    const exited = new Promise((resolve) => child.on("exit", (code, signal) => resolve({ code, signal, stdout })));
    return { child, exited };
  };
  let ok = false;
  try {
    // The first batch to reach the fake provider starts the span a kill can interrupt (before
    // it, the runner only reads and checks its jobs).
    const firstBatch = async () => {
      while (fake.batches.size === 0) await new Promise((resolve) => setTimeout(resolve, 5));
      return performance.now();
    };
    let killAfterMs = Number(KILL_AT);
    if (KILL_AT === "random") {
      // Time an uninterrupted run on its own state, then kill at a random point of that span.
      const timing = runner();
      const t0 = await Promise.race([firstBatch(), timing.exited.then(() => performance.now())]);
      const { code } = await timing.exited;
      if (code !== 0) throw new Error(`the timing run exited with ${code}`);
      killAfterMs = Math.round(Math.random() * (performance.now() - t0));
      rmSync(join(dir, "state.json"), { force: true });
      rmSync(join(dir, "results"), { recursive: true, force: true });
      fake.reset();
    }
    const first = runner();
    const t0 = await Promise.race([firstBatch(), first.exited.then(() => performance.now())]);
    const timer = setTimeout(() => first.child.kill("SIGKILL"), killAfterMs);
    const killed = await first.exited;
    clearTimeout(timer);
    const linesBefore = [...fake.linesPerBody().values()].reduce((a, b) => a + b, 0);
    const resultsBefore = countLines(join(dir, "results", "results.jsonl"));
    const resumed = await runner().exited;
    if (resumed.code !== 0) throw new Error(`the resume exited with ${resumed.code}`);
    const counts = fake.linesPerBody();
    let twice = 0;
    for (const count of counts.values()) if (count > 1) twice++;
    const results = new Set(readFileSync(join(dir, "results", "results.jsonl"), "utf8").trim().split("\n").map((line) => JSON.parse(line).jobId));
    ok = killed.signal === "SIGKILL" && counts.size === N && twice === 0 && results.size === N;
    console.log(
      JSON.stringify({
        jobs: N,
        killedAfterFirstBatchMs: Math.round(performance.now() - t0),
        killed: killed.signal === "SIGKILL",
        linesReceivedBeforeKill: linesBefore,
        resultsBeforeKill: resultsBefore,
        distinctJobsReceived: counts.size,
        jobsReceivedTwice: twice,
        jobsAnswered: results.size,
        resume: JSON.parse(resumed.stdout),
        ok,
      }),
    );
  } finally {
    await fake.close();
    rmSync(dir, { recursive: true, force: true });
  }
  process.exit(ok ? 0 : 1);
}

function countLines(path) {
  try {
    return readFileSync(path, "utf8").split("\n").filter(Boolean).length;
  } catch {
    return 0;
  }
}

// node bench/batch-jobs-memory.mjs: a Batch run of N short chat jobs from a .jsonl source
// (gpt-4o-mini, itemsPerBatch 1000, maxConcurrent 10, pollIntervalMs 20) against the fake
// provider in another process; prints wall time, CPU per job in the runner, the runner's peak
// JS heap and RSS (sampled every 50 ms) and the state file's size. Env: N (20000); BATCHLING_ROOT, a checkout with a built dist/ to
// measure instead of this one (e.g. an older commit, side by side).
import { mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { spawn } from "node:child_process";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const root = process.env.BATCHLING_ROOT ?? fileURLToPath(new URL("..", import.meta.url));
const { Batch } = await import(join(root, "dist/index.js"));
const N = Number(process.env.N ?? 20000);
const serverModule = JSON.stringify(join(root, "tests/fake-provider/server.mjs"));
const server = spawn(
  process.execPath,
  ["--input-type=module", "-e", `const { startFakeProvider } = await import(${serverModule}); console.log((await startFakeProvider({ pollsUntilDone: 1 })).url);`],
  { stdio: ["ignore", "pipe", "inherit"] },
);
const url = await new Promise((resolve) => server.stdout.once("data", (d) => resolve(String(d).trim())));
const dir = mkdtempSync(join(tmpdir(), "batchling-bench-memory-"));
try {
  const source = join(dir, "jobs.jsonl");
  const lines = [];
  for (let i = 0; i < N; i++) lines.push(JSON.stringify({ id: `j${i}`, model: "gpt-4o-mini", messages: [{ role: "user", content: `short question number ${i}` }] }));
  writeFileSync(source, lines.join("\n") + "\n");
  lines.length = 0;
  const t0 = performance.now();
  const cpu0 = process.cpuUsage();
  const stateFile = join(dir, "state.json");
  const batch = new Batch({ stateFile, resultsDir: join(dir, "results"), itemsPerBatch: 1000, maxConcurrent: 10, pollIntervalMs: 20, providers: { openai: { apiKey: "sk-test", baseURL: `${url}/v1` } } });
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
  console.log(
    JSON.stringify({
      jobs: N,
      completed: run.status().completed,
      wallS: Number(((performance.now() - t0) / 1000).toFixed(1)),
      cpuUsPerJob: Math.round((cpu.user + cpu.system) / N),
      peakHeapMiB: Math.round(peakHeap / 2 ** 20),
      peakRssMiB: Math.round(peakRss / 2 ** 20),
      stateFileBytes: statSync(stateFile).size,
    }),
  );
} finally {
  server.kill();
  rmSync(dir, { recursive: true, force: true });
}

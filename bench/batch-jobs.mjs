// npm run bench:batch: the Batch job builder (dist/index.js) end to end against the fake provider.
//
// For each size (default 1,000, 2,000, 5,000 and 10,000 jobs, in one process): that many short
// chat jobs (model gpt-4o-mini, itemsPerBatch 1000, maxConcurrent 10, pollIntervalMs 20) run
// through `new Batch(...).run()` against tests/fake-provider on 127.0.0.1. The fake holds every
// batch in progress (pollsUntilDone = 1e9) until the last batch is submitted, then lets them
// finish at the next poll (pollsUntilDone = 1), so submission and completion are measured apart.
//
// What is measured (performance.now(), one process, nothing added to the library):
// - prepare:    the synchronous part of run() (every job's request built by the core).
// - submitted:  from just before run() until the `batchSubmitted` progress events number
//               ceil(jobs / itemsPerBatch).
// - total:      from just before run() until run.wait() resolves (includes the hold above).
// - state-file saves: the library's own saves, timed from inside: the header written once per
//   run (temp file + rename, below) and then one appendFileSync per journal record.
//   (Until 2026-11-23 every save rewrote the whole state; the notes below describe that.) Before dist/ is imported, the
//   `node:fs` functions mkdirSync, writeFileSync, renameSync and appendFileSync are wrapped and
//   pushed to the ESM named exports with module.syncBuiltinESMExports(), so dist/'s
//   `import { writeFileSync } from "fs"` calls the wrappers. StateFileJournal.save() is
//   mkdirSync(stateDir) -> JSON.stringify(state) -> writeFileSync(tmp) -> renameSync(tmp, state);
//   one save is timed from the mkdirSync(stateDir) call to the return of renameSync(…, state),
//   i.e. the whole synchronous save, stringify included (the run's event loop is blocked for
//   that long). Size = bytes of the string written.
// - per-job result writes: from writeFileSync(<resultsDir>/<id>.json.tmp) to the return of
//   appendFileSync(results.jsonl): write + rename of the job's JSON file, JSON.stringify of its
//   results.jsonl line, and the append (not the pretty JSON.stringify before the write).
//
// The fake server runs in a worker thread (its own event loop, like a remote API);
// BENCH_SERVER=inprocess runs it on the run's own loop. Temp dirs are removed at the end.
// - replay: after the runs, the same steps as StateFileJournal.save() (mkdirSync, JSON.stringify
//   of {version, resultsDir, jobIds, journal}, 0600 write of the temp file, rename) are replayed
//   for BENCH_REPLAY job counts, on the largest run's real journal lines (cycled), 2 saves per
//   batch, to show how the save cost grows past the sizes that were run.
// Env: BENCH_SIZES (1000,2000,5000,10000), BENCH_ROUNDS (3; medians and min–max are printed),
// BENCH_POLL_MS (20), BENCH_REPLAY (10000,100000; empty to skip), BENCH_SERVER (worker | inprocess).
import fs from "node:fs";
import { syncBuiltinESMExports } from "node:module";
import { Worker } from "node:worker_threads";
import { availableParallelism, cpus, tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { performance } from "node:perf_hooks";

const SIZES = (process.env.BENCH_SIZES ?? "1000,2000,5000,10000").split(",").map(Number);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
// The replay reproduces the earlier whole-file saves (kept for comparison); off by default now
// that the state file is appended to.
const REPLAY = (process.env.BENCH_REPLAY ?? "").split(",").filter(Boolean).map(Number);
const POLL_MS = Number(process.env.BENCH_POLL_MS ?? 20);
const SERVER = process.env.BENCH_SERVER ?? "worker";
const ITEMS_PER_BATCH = 1000;
const MAX_CONCURRENT = 10;
const HOLD = 1e9;

// ---- fs probes (installed before dist/ is loaded) --------------------------------------------

const probe = { stateDir: null, stateFile: null, stateTmp: null, resultsDir: null, resultsLog: null, save: null, write: null, saves: [], writes: [], writeParts: [] };
const orig = { mkdirSync: fs.mkdirSync, writeFileSync: fs.writeFileSync, renameSync: fs.renameSync, appendFileSync: fs.appendFileSync };
fs.mkdirSync = function (path, options) {
  if (probe.stateDir !== null && path === probe.stateDir) probe.save = { t0: performance.now() };
  return orig.mkdirSync.call(this, path, options);
};
fs.writeFileSync = function (path, data, options) {
  if (probe.save !== null && path === probe.stateTmp) probe.save.data = data;
  else if (probe.resultsDir !== null && typeof path === "string" && path.startsWith(probe.resultsDir) && path.endsWith(".json.tmp")) {
    probe.write = { t0: performance.now() };
  }
  const out = orig.writeFileSync.call(this, path, data, options);
  if (probe.write !== null && probe.write.tw === undefined) probe.write.tw = performance.now();
  return out;
};
fs.renameSync = function (from, to) {
  const out = orig.renameSync.call(this, from, to);
  if (probe.save !== null && to === probe.stateFile) {
    const ms = performance.now() - probe.save.t0;
    probe.saves.push({ ms, bytes: Buffer.byteLength(probe.save.data) });
    probe.save = null;
  } else if (probe.write !== null && probe.write.tr === undefined && probe.write.tw !== undefined) probe.write.tr = performance.now();
  return out;
};
fs.appendFileSync = function (path, data, options) {
  // A state save after the run's start is one appended journal line (see StateFileJournal).
  const t0 = performance.now();
  const out = orig.appendFileSync.call(this, path, data, options);
  if (probe.stateFile !== null && path === probe.stateFile) {
    probe.saves.push({ ms: performance.now() - t0, bytes: Buffer.byteLength(data) });
  }
  if (probe.write !== null && path === probe.resultsLog) {
    const w = probe.write;
    const t = performance.now();
    probe.writes.push(t - w.t0);
    probe.writeParts.push([w.tw - w.t0, w.tr - w.tw, t - w.tr]);
    probe.write = null;
  }
  return out;
};
// The results log is an open file (one writeSync per result): a write while a result's file
// write is being timed ends that result's timing.
orig.writeSync = fs.writeSync;
fs.writeSync = function (fd, ...rest) {
  const t0 = performance.now();
  const out = orig.writeSync.call(this, fd, ...rest);
  if (probe.write !== null && probe.write.tr !== undefined) {
    const w = probe.write;
    const t = performance.now();
    probe.writes.push(t - w.t0);
    probe.writeParts.push([w.tw - w.t0, w.tr - w.tw, t - w.tr]);
    probe.write = null;
  }
  void t0;
  return out;
};
syncBuiltinESMExports();

const { Batch } = await import("../dist/index.js");

// ---- the fake provider -----------------------------------------------------------------------

async function startServer() {
  const serverModule = new URL("../tests/fake-provider/server.mjs", import.meta.url).href;
  if (SERVER === "inprocess") {
    const { startFakeProvider } = await import(serverModule);
    const fake = await startFakeProvider({ pollsUntilDone: HOLD });
    return {
      url: fake.url,
      reset: async () => fake.reset(),
      setPollsUntilDone: async (n) => void (fake.config.pollsUntilDone = n),
      counters: async () => structuredClone(fake.counters),
      close: () => fake.close(),
    };
  }
  const worker = new Worker(
    `import { parentPort } from "node:worker_threads";
     const { startFakeProvider } = await import(${JSON.stringify(serverModule)});
     const fake = await startFakeProvider({ pollsUntilDone: ${HOLD} });
     parentPort.on("message", async ({ id, cmd, value }) => {
       if (cmd === "reset") fake.reset();
       if (cmd === "polls") fake.config.pollsUntilDone = value;
       if (cmd === "close") await fake.close();
       parentPort.postMessage({ id, value: cmd === "counters" ? fake.counters : undefined });
       if (cmd === "close") parentPort.close();
     });
     parentPort.postMessage({ url: fake.url });`,
    { eval: true },
  );
  const url = await new Promise((resolve, reject) => {
    worker.once("message", (m) => resolve(m.url));
    worker.once("error", reject);
  });
  let nextId = 0;
  const pending = new Map();
  worker.on("message", (m) => {
    pending.get(m.id)?.(m.value);
    pending.delete(m.id);
  });
  const ask = (cmd, value) => new Promise((resolve) => {
    const id = nextId++;
    pending.set(id, resolve);
    worker.postMessage({ id, cmd, value });
  });
  return {
    url,
    reset: () => ask("reset"),
    setPollsUntilDone: (n) => ask("polls", n),
    counters: () => ask("counters"),
    close: async () => {
      await ask("close");
      await new Promise((resolve) => worker.once("exit", resolve));
    },
  };
}

// ---- one run ---------------------------------------------------------------------------------

const REVIEWS = ["great product, fast shipping", "arrived broken", "ok for the price", "would buy again", "too small"];

async function runOnce(server, jobs) {
  await server.reset();
  await server.setPollsUntilDone(HOLD);
  const dir = fs.mkdtempSync(join(tmpdir(), "batchling-bench-batch-"));
  try {
    const stateFile = join(dir, "state", "state.json");
    const resultsDir = join(dir, "results");
    Object.assign(probe, {
      stateDir: dirname(stateFile),
      stateFile,
      stateTmp: `${stateFile}.${process.pid}.tmp`,
      resultsDir,
      resultsLog: join(resultsDir, "results.jsonl"),
      save: null,
      write: null,
      saves: [],
      writes: [],
      writeParts: [],
    });
    const batch = new Batch({
      stateFile,
      resultsDir,
      itemsPerBatch: ITEMS_PER_BATCH,
      maxConcurrent: MAX_CONCURRENT,
      pollIntervalMs: POLL_MS,
      providers: { openai: { apiKey: "sk-bench", baseURL: `${server.url}/v1` } },
      // The per-job result files are what this bench times (they are opt-in since results stream
      // to results.jsonl; bench/batch-jobs-memory.mjs measures the default).
      resultFiles: "per-job",
    }).defaults({ model: "gpt-4o-mini", maxTokens: 16 });
    for (let i = 0; i < jobs; i++) {
      batch.addJob({ messages: [{ role: "user", content: `Review ${i}: "${REVIEWS[i % REVIEWS.length]}". Positive or negative?` }] });
    }
    const batches = Math.ceil(jobs / ITEMS_PER_BATCH);
    let submitted = 0;
    let submittedAt = null;
    let release;
    const allSubmitted = new Promise((resolve) => (release = resolve));
    batch.onEvent((event) => {
      if (event.kind === "batchSubmitted" && ++submitted === batches) {
        submittedAt = performance.now();
        release();
      }
    });

    const t0 = performance.now();
    const run = batch.run();
    const prepared = performance.now();
    await allSubmitted;
    await server.setPollsUntilDone(1); // let the held batches finish at their next poll
    await run.wait();
    const done = performance.now();

    const status = run.status();
    if (status.completed !== jobs || status.failed !== 0) throw new Error(`run not clean: ${JSON.stringify(status)}`);
    const counters = await server.counters();
    if (counters.batchesCreated.openai !== batches) throw new Error(`expected ${batches} batches, fake saw ${counters.batchesCreated.openai}`);
    if (probe.writes.length !== jobs) throw new Error(`timed ${probe.writes.length} result writes, expected ${jobs}`);
    const finalState = fs.statSync(stateFile).size;
    const journal = fs.readFileSync(stateFile, "utf8").split("\n").slice(1).filter(Boolean);
    const savedBytes = probe.saves.reduce((sum, save) => sum + save.bytes, 0);
    if (savedBytes !== finalState) throw new Error(`timed saves wrote ${savedBytes} B, the state file has ${finalState} B`);
    let resultFilesBytes = 0;
    for (const name of fs.readdirSync(resultsDir)) if (name !== "results.jsonl") resultFilesBytes += fs.statSync(join(resultsDir, name)).size;
    return {
      jobs,
      batches,
      prepareMs: prepared - t0,
      submittedMs: submittedAt - t0,
      totalMs: done - t0,
      maxActive: counters.maxConcurrentActiveBatches.openai,
      saves: probe.saves.map((s) => ({ ...s })),
      writes: [...probe.writes],
      writeParts: probe.writeParts,
      resultsJsonlBytes: fs.statSync(probe.resultsLog).size,
      resultFilesBytes,
      journal,
    };
  } finally {
    Object.assign(probe, { stateDir: null, stateFile: null, stateTmp: null, resultsDir: null, resultsLog: null });
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

// ---- run and report --------------------------------------------------------------------------

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const pct = (xs, p) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))];
const sum = (xs) => xs.reduce((a, b) => a + b, 0);
const kb = (bytes) => (bytes / 1024).toFixed(1);
const mb = (bytes) => (bytes / 1024 / 1024).toFixed(2);

/** Busy CPU time of the whole machine (ms) from /proc/stat, to tell how much others used. */
function machineBusyMs() {
  try {
    const f = fs.readFileSync("/proc/stat", "utf8").split("\n")[0].trim().split(/\s+/).slice(1).map(Number);
    const idle = f[3] + (f[4] ?? 0);
    return ((sum(f.slice(0, 8)) - idle) * 1000) / 100; // USER_HZ = 100
  } catch {
    return NaN;
  }
}

const server = await startServer();
const rows = [];
let lastJournal = null;
const busy0 = machineBusyMs();
const cpu0 = process.cpuUsage();
const wall0 = performance.now();
try {
  // One small warm-up run (JIT, sockets), not reported.
  await runOnce(server, 200);
  for (const jobs of SIZES) {
    const rounds = [];
    for (let r = 0; r < ROUNDS; r++) rounds.push(await runOnce(server, jobs));
    const pick = (f) => median(rounds.map(f));
    const range = (f, digits = 0) => {
      const v = rounds.map(f);
      return ROUNDS > 1 ? ` (${Math.min(...v).toFixed(digits)}–${Math.max(...v).toFixed(digits)})` : "";
    };
    const last = rounds.at(-1);
    lastJournal = { jobs, lines: last.journal };
    rows.push({
      jobs,
      batches: last.batches,
      maxActive: last.maxActive,
      prepareMs: pick((r) => r.prepareMs),
      afterSubmitMs: pick((r) => r.totalMs - r.submittedMs),
      ranges: {
        submitted: range((r) => r.submittedMs),
        total: range((r) => r.totalMs),
        save: range((r) => sum(r.saves.map((s) => s.ms)), 1),
        writeTotal: range((r) => sum(r.writes)),
        writeMedian: range((r) => median(r.writes) * 1e3),
      },
      submittedMs: pick((r) => r.submittedMs),
      totalMs: pick((r) => r.totalMs),
      saves: last.saves.length,
      saveBytes: last.saves.map((s) => s.bytes),
      saveMs: rounds.map((r) => r.saves.map((s) => s.ms)),
      totalSaveMs: pick((r) => sum(r.saves.map((s) => s.ms))),
      maxSaveMs: pick((r) => Math.max(...r.saves.map((s) => s.ms))),
      writeMedianUs: pick((r) => median(r.writes) * 1e3),
      writeP99Us: pick((r) => pct(r.writes, 99) * 1e3),
      writeTotalMs: pick((r) => sum(r.writes)),
      writePartsUs: [0, 1, 2].map((k) => pick((r) => median(r.writeParts.map((p) => p[k])) * 1e3)),
      resultsJsonlBytes: last.resultsJsonlBytes,
      resultFilesBytes: last.resultFilesBytes,
    });
  }
} finally {
  await server.close();
}
const wallMs = performance.now() - wall0;
const cpu = process.cpuUsage(cpu0);
const othersCores = (machineBusyMs() - busy0 - (cpu.user + cpu.system) / 1e3) / wallMs;

// ---- replay of StateFileJournal.save() at other sizes ----------------------------------------
// The same steps as js/src/batch.ts StateFileJournal.save(), on a state built from the largest
// run's real journal lines (cycled) and ids `job-1`…`job-N`: the sequence of 2 saves per batch
// (intent, then submitted) that a run of N jobs makes. Run at the largest measured size too, to
// compare with the in-run numbers.
function replaySaves(jobs) {
  const dir = fs.mkdtempSync(join(tmpdir(), "batchling-bench-replay-"));
  try {
    const path = join(dir, "state", "state.json");
    const intents = lastJournal.lines.filter((l) => l.startsWith('{"type":"intent"'));
    const submits = lastJournal.lines.filter((l) => l.startsWith('{"type":"submitted"'));
    const jobIds = Array.from({ length: jobs }, (_, i) => `job-${i + 1}`);
    const lines = [];
    const saves = [];
    const save = () => {
      const t0 = performance.now();
      fs.mkdirSync(dirname(path), { recursive: true });
      const text = JSON.stringify({ version: 1, resultsDir: join(dir, "results"), jobIds, journal: lines });
      const tmp = `${path}.${process.pid}.tmp`;
      fs.writeFileSync(tmp, text, { mode: 0o600 });
      fs.renameSync(tmp, path);
      saves.push({ ms: performance.now() - t0, bytes: Buffer.byteLength(text) });
    };
    for (let b = 0; b < Math.ceil(jobs / ITEMS_PER_BATCH); b++) {
      lines.push(intents[b % intents.length]);
      save();
      lines.push(submits[b % submits.length]);
      save();
    }
    return saves;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
const replays = lastJournal ? REPLAY.map((jobs) => ({ jobs, saves: replaySaves(jobs) })) : [];

console.log(
  `Batch job builder: ${SIZES.join(", ")} chat jobs, gpt-4o-mini, itemsPerBatch ${ITEMS_PER_BATCH}, maxConcurrent ${MAX_CONCURRENT}, ` +
    `pollIntervalMs ${POLL_MS}; fake server: ${SERVER === "inprocess" ? "same event loop" : "worker thread"}; ` +
    `${ROUNDS > 1 ? `median of ${ROUNDS} rounds; ` : ""}node ${process.version}, ${availableParallelism()} CPUs (${cpus()[0]?.model ?? "?"}); ` +
    `other processes used ${othersCores.toFixed(2)} cores on average during the runs`,
);
console.log(`\nRun times (ms from just before run()${ROUNDS > 1 ? "; median (min–max)" : ""}):`);
console.table(
  rows.map((r) => ({
    jobs: r.jobs,
    batches: r.batches,
    "max active": r.maxActive,
    "prepare (sync run())": r.prepareMs.toFixed(0),
    "all submitted": r.submittedMs.toFixed(0) + r.ranges.submitted,
    "complete": r.totalMs.toFixed(0) + r.ranges.total,
    "complete - submitted": r.afterSubmitMs.toFixed(0),
  })),
);
console.log("State-file saves (whole StateFileJournal.save(): stringify + write tmp + rename):");
console.table(
  rows.map((r) => ({
    jobs: r.jobs,
    saves: r.saves,
    "first KiB": kb(r.saveBytes[0]),
    "final KiB": kb(r.saveBytes.at(-1)),
    "written total MiB": mb(sum(r.saveBytes)),
    "save ms total": r.totalSaveMs.toFixed(1) + r.ranges.save,
    "slowest save ms": r.maxSaveMs.toFixed(2),
  })),
);
const base = rows[0];
const last = rows.at(-1);
if (rows.length > 1) {
  const n = last.jobs / base.jobs;
  const exp = (a, b) => (Math.log(b / a) / Math.log(n)).toFixed(2);
  console.log(
    `${base.jobs} -> ${last.jobs} jobs (x${n}): saves x${(last.saves / base.saves).toFixed(1)}, final state size x${(last.saveBytes.at(-1) / base.saveBytes.at(-1)).toFixed(1)}, ` +
      `bytes written by saves x${(sum(last.saveBytes) / sum(base.saveBytes)).toFixed(1)} (exponent ${exp(sum(base.saveBytes), sum(last.saveBytes))}), ` +
      `save time x${(last.totalSaveMs / base.totalSaveMs).toFixed(1)} (exponent ${exp(base.totalSaveMs, last.totalSaveMs)}); 1 = linear, 2 = quadratic`,
  );
  console.log(`\nPer-save detail at ${last.jobs} jobs (KiB, ms${ROUNDS > 1 ? " median over rounds" : ""}):`);
  console.log(
    last.saveBytes.map((b, i) => `${kb(b)}:${median(last.saveMs.map((round) => round[i])).toFixed(2)}`).join("  "),
  );
}
if (replays.length > 0) {
  console.log(`\nReplay of StateFileJournal.save() (same steps, real journal lines from the ${lastJournal.jobs}-job run, quiet loop):`);
  console.table(
    replays.map(({ jobs, saves }) => ({
      jobs,
      saves: saves.length,
      "final KiB": kb(saves.at(-1).bytes),
      "written total MiB": mb(sum(saves.map((s) => s.bytes))),
      "save ms total": sum(saves.map((s) => s.ms)).toFixed(1),
      "slowest save ms": Math.max(...saves.map((s) => s.ms)).toFixed(2),
    })),
  );
}
console.log("\nPer-job result writes (<id>.json tmp write + rename + results.jsonl append):");
console.table(
  rows.map((r) => ({
    jobs: r.jobs,
    "median µs": r.writeMedianUs.toFixed(0) + r.ranges.writeMedian,
    "p99 µs": r.writeP99Us.toFixed(1),
    "total ms": r.writeTotalMs.toFixed(0) + r.ranges.writeTotal,
    "median µs: write / rename / append": r.writePartsUs.map((x) => x.toFixed(0)).join(" / "),
    "results.jsonl KiB": kb(r.resultsJsonlBytes),
    "<id>.json files KiB": kb(r.resultFilesBytes),
  })),
);

// Batch.addJobs(source): jobs from a .jsonl file, an array or an (async) iterable, against the
// fake provider: a large file run, one error for every bad line, a SIGKILL and a resume that
// submits no job twice, a resume refused when the file changed, and an async generator recorded
// so that a resume does not read it again.
import { test, before, after, beforeEach } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execFileSync, spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { startFakeProvider } from "./fake-provider/server.mjs";
import { Batch, BatchlingError, InvalidJobsError, SourceChangedError, readStateFile } from "../dist/index.js";

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
  const dir = mkdtempSync(join(tmpdir(), "batchling-stream-"));
  tempDirs.push(dir);
  return dir;
};
const providers = () => ({ openai: { apiKey: "sk-test", baseURL: `${fake.url}/v1` } });
const paths = () => {
  const dir = tempDir();
  return { dir, stateFile: join(dir, "state.json"), resultsDir: join(dir, "results"), source: join(dir, "jobs.jsonl") };
};
const jobLine = (i, extra = {}) => JSON.stringify({ id: `j${i}`, model: "gpt-4o-mini", messages: [{ role: "user", content: `stream ${i}` }], ...extra });
const jsonl = (n, extra) => Array.from({ length: n }, (_, i) => jobLine(i, extra)).join("\n") + "\n";
const totalRequests = () => Object.values(fake.counters.requests).reduce((a, b) => a + b, 0);
/** How many times the fake was sent each prompt, over every batch it holds. */
function promptsSent() {
  const counts = new Map();
  for (const batch of fake.batches.values()) {
    for (const request of batch.requests) {
      const body = typeof request.body === "string" ? JSON.parse(request.body) : request.body;
      const prompt = body.messages.at(-1).content;
      counts.set(prompt, (counts.get(prompt) ?? 0) + 1);
    }
  }
  return counts;
}
function assertEveryJobOnce(n) {
  const counts = promptsSent();
  assert.equal(counts.size, n, "every job was submitted");
  for (const [prompt, count] of counts) assert.equal(count, 1, `\`${prompt}\` submitted ${count} times`);
}
const byId = (results) => Object.fromEntries(results.map((r) => [r.jobId, r]));
function assertAnswered(results, n) {
  assert.equal(Object.keys(results).length, n);
  for (let i = 0; i < n; i++) {
    const result = results[`j${i}`];
    assert.equal(result?.ok, true, `j${i}: ${result?.error}`);
    assert.equal(result.response, `echo: stream ${i}`);
  }
}

const dist = new URL("../dist/index.js", import.meta.url).href;
/** A child process that runs `addJobs(<source expression>)` to the end and prints its results. */
function childScript(dir, sourceExpression) {
  const script = join(dir, "run.mjs");
  writeFileSync(
    script,
    `import { Batch } from ${JSON.stringify(dist)};
     const batch = new Batch({ stateFile: process.env.STATE, resultsDir: process.env.RESULTS, resultFiles: process.env.RESULT_FILES, itemsPerBatch: Number(process.env.ITEMS ?? 10), maxConcurrent: Number(process.env.CONCURRENT ?? 1), pollIntervalMs: 20, providers: JSON.parse(process.env.PROVIDERS) });
     async function* generated() {
       if (process.env.RESUMING) throw new Error("the resume read the generator again");
       for (let i = 0; i < 30; i++) yield { id: "j" + i, model: "gpt-4o-mini", messages: [{ role: "user", content: "stream " + i }] };
     }
     await batch.addJobs(${sourceExpression});
     const run = await batch.run({ wait: true });
     console.log(JSON.stringify({ status: run.status(), results: run.results() }));`,
  );
  return script;
}
function spawnChild(script, env) {
  const child = spawn(process.execPath, [script], { env: { ...process.env, PROVIDERS: JSON.stringify(providers()), ...env }, stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d) => (stdout += d));
  child.stderr.on("data", (d) => (stderr += d));
  const exited = new Promise((r) => child.on("exit", (code, signal) => r({ code, signal, stdout, stderr })));
  return { child, exited, stderr: () => stderr };
}
/** Runs the child until its first batch is submitted (created and polled: the state file has
 * it; maxConcurrent 1, so no other is being submitted), then SIGKILLs it. */
async function crashAfterFirstBatch(script, env) {
  fake.config.pollsUntilDone = 1_000_000;
  const first = spawnChild(script, env);
  const deadline = Date.now() + 60_000;
  while (fake.batches.size < 1 || [...fake.batches.values()].some((b) => b.polls < 1)) {
    assert.ok(Date.now() < deadline, `the first run never submitted a batch: ${first.stderr()}`);
    await new Promise((r) => setTimeout(r, 10));
  }
  first.child.kill("SIGKILL");
  const { signal } = await first.exited;
  assert.equal(signal, "SIGKILL");
  assert.equal(fake.batches.size, 1, "one batch submitted before the kill");
  for (const record of fake.batches.values()) record.polls = 0;
  fake.config.pollsUntilDone = 1;
}
async function resume(script, env) {
  const { code, stdout, stderr } = await spawnChild(script, env).exited;
  assert.equal(code, 0, stderr);
  return JSON.parse(stdout);
}

test("2,000 jobs from a .jsonl file: every job answered once; the state file records the file and its hash", async () => {
  const { stateFile, resultsDir, source } = paths();
  // ~1.5 MB: lines cross the reader's 1 MiB chunks; a multi-byte character shifts byte offsets.
  const text = jsonl(2000, { system: "é".repeat(300) });
  assert.ok(Buffer.byteLength(text) > 1 << 20);
  writeFileSync(source, text);
  const batch = new Batch({ stateFile, resultsDir, itemsPerBatch: 500, maxConcurrent: 4, pollIntervalMs: 10, providers: providers() });
  await batch.addJobs(source);
  // The batches' files stay at the provider (their deletes fail), as after a crash before the
  // deletes that follow the results' write: the re-run below fetches 500 results again.
  fake.faults.add({ route: "openai.files.delete", status: 500, count: 12 });
  const run = await batch.run({ wait: true });
  assert.equal(run.status().completed, 2000);
  assert.equal(fake.batches.size, 4);
  assertEveryJobOnce(2000);
  assertAnswered(run.results(), 2000);
  const [first] = fake.batches.values();
  const body = (r) => (typeof r.body === "string" ? JSON.parse(r.body) : r.body);
  assert.deepEqual(body(first.requests[0]).messages[0], { role: "system", content: "é".repeat(300) });
  // Results went to results.jsonl, one line per job, and no file per job (the default).
  assert.deepEqual(readdirSync(resultsDir), ["results.jsonl"]);
  const logged = readFileSync(join(resultsDir, "results.jsonl"), "utf8").split("\n");
  assert.equal(logged.pop(), "", "the log ends with a newline");
  assert.equal(logged.length, 2000);
  assert.deepEqual(byId(logged.map((l) => JSON.parse(l))), run.results());
  const streamed = [];
  for await (const result of run.iterResults()) streamed.push(result);
  assert.equal(streamed.length, 2000);
  assert.deepEqual(byId(streamed), run.results());
  assert.deepEqual(JSON.parse(run.export("json")).length, 2000);

  // Results already in results.jsonl count as done; a torn last line is cut off with a warning.
  // The state file still records the 4 submitted batches: the other jobs' answers are fetched
  // again from them, and nothing is submitted.
  const kept = logged.slice(0, 1500);
  writeFileSync(join(resultsDir, "results.jsonl"), kept.join("\n") + "\n" + logged[1500].slice(0, 40));
  const warnings = [];
  const onWarning = (w) => warnings.push(w.message);
  process.on("warning", onWarning);
  const finished = [];
  const again = new Batch({ stateFile, resultsDir, itemsPerBatch: 500, maxConcurrent: 4, pollIntervalMs: 10, providers: providers() });
  await again.addJobs(source);
  again.onEvent((e) => e.kind === "jobFinished" && finished.push(e.jobId));
  const resumed = again.run();
  assert.equal(resumed.status().completed, 1500, "the logged results count as done before anything runs");
  await resumed.wait();
  await new Promise((r) => setImmediate(r));
  process.off("warning", onWarning);
  assert.ok(warnings.some((m) => /results\.jsonl: its last line is torn \(40 bytes/.test(m)), warnings.join("; "));
  assert.equal(finished.length, 500, "only the jobs without a logged result ran");
  assert.equal(fake.batches.size, 4, "nothing new submitted");
  assert.equal(resumed.status().completed, 2000);
  const relogged = readFileSync(join(resultsDir, "results.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l));
  assert.equal(relogged.length, 2000);
  assertAnswered(byId(relogged), 2000);

  // The header counts the source's jobs but does not list them: it stays small.
  const state = readStateFile(stateFile);
  assert.equal(state.jobs, 2000);
  assert.deepEqual(state.jobIds, []);
  assert.ok(Buffer.byteLength(readFileSync(stateFile, "utf8").split("\n")[0]) < 1024);
  // batchling jobs status|results read results.jsonl for the source's jobs.
  const cli = (args) => execFileSync(process.execPath, [fileURLToPath(new URL("../dist/cli.js", import.meta.url)), "jobs", ...args], { encoding: "utf8" });
  assert.match(cli(["status", stateFile]), /jobs: +2000\ncompleted: +2000\nfailed: +0\npending: +0\n/);
  assert.deepEqual(byId(JSON.parse(cli(["results", stateFile]))), resumed.results());
  assert.deepEqual(state.sources, [
    { kind: "file", path: source, sha256: createHash("sha256").update(text).digest("hex"), bytes: Buffer.byteLength(text), jobs: 2000 },
  ]);
});

test("jobs in flight are bounded by itemsPerBatch x maxConcurrent; jobs of two models interleaved do not stall the run", async () => {
  const { stateFile, resultsDir, source } = paths();
  // Alternating models: two forming batches share the window, neither fills it on its own.
  const models = ["gpt-4o-mini", "gpt-4.1-mini"];
  writeFileSync(source, Array.from({ length: 20 }, (_, i) => jobLine(i, { model: models[i % 2] })).join("\n") + "\n");
  const batch = new Batch({ stateFile, resultsDir, itemsPerBatch: 3, maxConcurrent: 1, pollIntervalMs: 10, providers: providers() });
  await batch.addJobs(source);
  let inFlight = 0;
  let most = 0;
  batch.onEvent((e) => {
    if (e.kind === "requestQueued" || e.kind === "cacheHit") most = Math.max(most, ++inFlight);
    if (e.kind === "jobFinished") inFlight--;
  });
  const run = await batch.run({ wait: true });
  assertAnswered(run.results(), 20);
  assertEveryJobOnce(20);
  assert.ok(most <= 3, `at most 3 jobs in flight, saw ${most}`);
  for (const record of fake.batches.values()) assert.ok(record.requests.length <= 3);
  assert.deepEqual(new Set([...fake.batches.values()].map((b) => b.model)), new Set(models));
});

test("a job that no longer builds when its batch forms (its file deleted after run() checked it) stops the run with that error; the jobs before it keep their results", async () => {
  const { dir, stateFile, resultsDir } = paths();
  const notes = join(dir, "notes.txt");
  writeFileSync(notes, "some notes");
  const batch = new Batch({ stateFile, resultsDir, itemsPerBatch: 1, maxConcurrent: 1, pollIntervalMs: 10, providers: providers() });
  await batch.addJobs([JSON.parse(jobLine(0)), JSON.parse(jobLine(1)), { id: "j2", model: "gpt-4o-mini", file: notes, prompt: "Summarise" }]);
  const run = batch.run();
  rmSync(notes); // j2 is built after j0 and j1 have finished: the window holds one job
  await assert.rejects(run.wait(), (e) => e.code === "ERR_BATCHLING_INVALID_JOB" && /job `j2`: file not found/.test(e.message));
  assertAnswered(run.results(), 2);
  assert.equal(run.status().pending, 1);
});

test("arrays and sync iterables: ids continue from addJob; CRLF and blank lines in a file are fine", async () => {
  const { stateFile, resultsDir, source } = paths();
  writeFileSync(source, `${jobLine(3)}\r\n\r\n${jobLine(4)}`); // no final newline
  const batch = new Batch({ stateFile, resultsDir, pollIntervalMs: 10, providers: providers() });
  batch.addJob({ id: "j0", model: "gpt-4o-mini", messages: [{ role: "user", content: "stream 0" }] });
  await batch.addJobs([JSON.parse(jobLine(1))]);
  await batch.addJobs(new Set([JSON.parse(jobLine(2))]));
  await batch.addJobs(source);
  const run = await batch.run({ wait: true });
  assertAnswered(run.results(), 5);
  assert.equal(readStateFile(stateFile).sources.length, 1, "only the file is a recorded source");
});

test("bad lines are all reported with their line numbers in one error, and nothing is added or sent", async () => {
  const { stateFile, resultsDir, source } = paths();
  const lines = [
    jobLine(0),
    "{not json",
    JSON.stringify({ id: "typo", model: "gpt-4o-mini", mesages: [] }),
    "",
    JSON.stringify({ id: "neither", model: "gpt-4o-mini" }),
    jobLine(0), // duplicate id
    jobLine(6),
  ];
  for (let i = 0; i < 25; i++) lines.push(JSON.stringify({ id: `bad${i}` }));
  writeFileSync(source, lines.join("\n"));
  const batch = new Batch({ stateFile, resultsDir, pollIntervalMs: 10, providers: providers() });
  const error = await batch.addJobs(source).then(() => null, (e) => e);
  assert.ok(error instanceof InvalidJobsError && error instanceof BatchlingError, String(error));
  assert.equal(error.code, "ERR_BATCHLING_INVALID_JOBS");
  assert.equal(error.count, 29, "every bad line counted");
  assert.equal(error.problems.length, 20, "the first 20 listed");
  assert.deepEqual(error.problems.slice(0, 5).map((p) => [p.line, p.jobId, p.code]), [
    [2, undefined, "ERR_BATCHLING_INVALID_JOB"],
    [3, "typo", "ERR_BATCHLING_INVALID_OPTION"],
    [5, "neither", "ERR_BATCHLING_INVALID_OPTION"],
    [6, "j0", "ERR_BATCHLING_INVALID_OPTION"],
    [8, "bad0", "ERR_BATCHLING_INVALID_OPTION"],
  ]);
  assert.match(error.problems[0].message, /^not JSON: /);
  assert.match(error.problems[1].message, /mesages/);
  assert.match(error.problems[2].message, /job `neither`: give messages, or file \+ prompt/);
  assert.match(error.problems[3].message, /duplicate job id `j0`/);
  assert.match(error.message, new RegExp(`^29 bad jobs in ${source.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}; nothing was added:\\n  line 2: not JSON`));
  assert.match(error.message, /… and 9 more$/);
  // An array's bad items are reported by index.
  const arrayError = await batch.addJobs([JSON.parse(jobLine(0)), { id: "x", prompt: "p" }, "nope"]).then(() => null, (e) => e);
  assert.ok(arrayError instanceof InvalidJobsError);
  assert.deepEqual(arrayError.problems.map((p) => [p.index, p.jobId]), [[1, "x"], [2, undefined]]);
  // Nothing of either source was added: the good jobs can be added again, under the same ids.
  await batch.addJobs([JSON.parse(jobLine(0))]);
  await batch.run({ wait: true });
  assert.equal(fake.batches.size, 1);
  assertEveryJobOnce(1);
  const missing = await batch.addJobs(join(tempDir(), "nope.jsonl")).then(() => null, (e) => e);
  assert.equal(missing?.code, "ERR_BATCHLING_INVALID_JOBS");
  assert.match(missing.message, /job source not found: .*nope\.jsonl/);
  await assert.rejects(() => batch.addJobs(42), (e) => e.code === "ERR_BATCHLING_INVALID_OPTION");
});

test("SIGKILL after the first batch of a .jsonl run; a resume with the file edited is refused, then with it restored submits no job twice and answers every one", async () => {
  const { dir, stateFile, resultsDir, source } = paths();
  const text = jsonl(30);
  writeFileSync(source, text);
  const script = childScript(dir, "process.env.SOURCE");
  const env = { STATE: stateFile, RESULTS: resultsDir, SOURCE: source };
  await crashAfterFirstBatch(script, env);
  assert.equal(readStateFile(stateFile).sources[0].path, source);

  // Edited between the crash and the resume: one job's prompt changed, same size.
  writeFileSync(source, text.replace('"stream 7"', '"stream X"'));
  const before = totalRequests();
  const edited = new Batch({ stateFile, resultsDir, itemsPerBatch: 10, pollIntervalMs: 20, providers: providers() });
  await edited.addJobs(source);
  assert.throws(
    () => edited.run(),
    (e) => {
      assert.ok(e instanceof SourceChangedError, String(e));
      assert.equal(e.code, "ERR_BATCHLING_SOURCE_CHANGED");
      assert.equal(e.path, source);
      assert.ok(e.message.includes(`\`${source}\` changed since the run started: it had ${text.length} bytes, 30 jobs, sha256 `), e.message);
      return true;
    },
  );
  // In the child too: the typed error, and nothing sent.
  const refused = await spawnChild(script, env).exited;
  assert.notEqual(refused.code, 0);
  assert.match(refused.stderr, /ERR_BATCHLING_SOURCE_CHANGED/);
  assert.equal(totalRequests(), before, "a refused resume sends nothing");

  writeFileSync(source, text);
  const { status, results } = await resume(script, env);
  assert.equal(status.completed, 30);
  assert.equal(fake.batches.size, 3);
  assertEveryJobOnce(30);
  assertAnswered(results, 30);
  assert.deepEqual(readdirSync(resultsDir), ["results.jsonl"], "no file per job by default");
  assert.deepEqual(byId(readFileSync(join(resultsDir, "results.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l))), results);
});

test("3,000 jobs from a .jsonl file, SIGKILLed at a random point of the run: the resume answers every job and the provider received none twice", async () => {
  const { dir, stateFile, resultsDir, source } = paths();
  const n = 3000;
  writeFileSync(source, jsonl(n));
  const script = childScript(dir, "process.env.SOURCE");
  const env = { STATE: stateFile, RESULTS: resultsDir, SOURCE: source, ITEMS: "100", CONCURRENT: "4" };
  fake.config.pollsUntilDone = 2;
  const first = spawnChild(script, env);
  const deadline = Date.now() + 60_000;
  while (fake.batches.size === 0) {
    assert.ok(Date.now() < deadline, `the first run never submitted a batch: ${first.stderr()}`);
    await new Promise((r) => setTimeout(r, 5));
  }
  // Anywhere from the first batch's create to well past the run's end (~30 batches).
  const delay = Math.floor(Math.random() * 1500);
  await new Promise((r) => setTimeout(r, delay));
  first.child.kill("SIGKILL");
  const killed = await first.exited;
  const sentBefore = [...fake.linesPerBody().values()].reduce((a, b) => a + b, 0);
  const context = `killed ${delay} ms after the first batch (${killed.signal ?? `exit ${killed.code}`}), ${sentBefore} lines sent by then`;
  const { status, results } = await resume(script, env);
  assert.equal(status.completed, n, context);
  const counts = fake.linesPerBody();
  assert.equal(counts.size, n, `every job was submitted: ${context}`);
  for (const [body, count] of counts) assert.equal(count, 1, `${body} submitted ${count} times: ${context}`);
  assertEveryJobOnce(n);
  assertAnswered(results, n);
  const logged = readFileSync(join(resultsDir, "results.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l));
  assert.equal(new Set(logged.map((r) => r.jobId)).size, n, "results.jsonl holds every job");
});

test("an async generator is recorded next to the state file; after a SIGKILL the resume reads the recording, not the generator", async () => {
  const { dir, stateFile, resultsDir } = paths();
  const script = childScript(dir, "generated()");
  await crashAfterFirstBatch(script, { STATE: stateFile, RESULTS: resultsDir });
  const recording = `${stateFile}.source-1.jsonl`;
  assert.equal(readFileSync(recording, "utf8"), jsonl(30));
  assert.deepEqual(readStateFile(stateFile).sources.map((s) => [s.kind, s.path, s.jobs]), [["recorded", recording, 30]]);
  const { status, results } = await resume(script, { STATE: stateFile, RESULTS: resultsDir, RESUMING: "1", RESULT_FILES: "per-job" });
  assert.equal(status.completed, 30);
  assertEveryJobOnce(30);
  assertAnswered(results, 30);
  // Opted in: one JSON file per job as well as results.jsonl, each holding the job's result.
  assert.deepEqual(readdirSync(resultsDir).sort(), [...Object.keys(results).map((id) => `${id}.json`), "results.jsonl"].sort());
  for (const id of Object.keys(results)) assert.deepEqual(JSON.parse(readFileSync(join(resultsDir, `${id}.json`), "utf8")), results[id]);
  assert.ok(existsSync(recording));
});

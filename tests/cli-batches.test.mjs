// `batchling batches list|status|cancel` against the fake provider, on the journal a killed run
// left; the cancelled answer (499) a re-run then gets without resubmitting; the ETA of
// `batchPolled` events; and the CLI's one line per retry on stderr without a terminal.
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createServer } from "node:net";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { Batch, batchify } from "../dist/index.js";
import { startFakeProvider } from "./fake-provider/server.mjs";

const ROOT = dirname(dirname(fileURLToPath(import.meta.url)));
const CLI = join(ROOT, "dist", "cli.js");

/** Run the bin; `until(stderr, stdout)` true kills it (SIGKILL), as a crash would. */
function runCli(args, { env = {}, until, timeoutMs = 20_000 } = {}) {
  return new Promise((resolve, reject) => {
    const childEnv = { ...process.env, ...env };
    for (const name of ["OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "NODE_OPTIONS"]) {
      if (!(name in env)) delete childEnv[name];
    }
    const child = spawn(process.execPath, [CLI, ...args], { cwd: ROOT, env: childEnv, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    const check = () => {
      if (until?.(stderr, stdout)) child.kill("SIGKILL");
    };
    child.stdout.setEncoding("utf8").on("data", (d) => ((stdout += d), check()));
    child.stderr.setEncoding("utf8").on("data", (d) => ((stderr += d), check()));
    const poll = until ? setInterval(check, 20) : undefined;
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.on("error", reject);
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      clearInterval(poll);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/** A duration as the CLI prints it (`8 s`, `1.5 s`, `2 min 5 s`, `1 h 3 min`), in ms. */
function parseAge(text) {
  let ms = 0;
  for (const [, n, unit] of text.matchAll(/([\d.]+) (h|min|s)/g)) ms += Number(n) * { h: 3_600_000, min: 60_000, s: 1_000 }[unit];
  return ms;
}

/** What an OpenAI gpt-4o-mini answer's usage costs at the batch price ($0.15 / $0.075 cached /
 * $0.60 per million tokens, half for batches). */
function gpt4oMiniBatchUsd(u) {
  const cached = u.prompt_tokens_details?.cached_tokens ?? 0;
  return ((u.prompt_tokens - cached) * 0.15 + cached * 0.075 + u.completion_tokens * 0.6) / 1e6 * 0.5;
}

// The script batchify runs: two chat calls through the (intercepted) global fetch; each caller's
// status and content.
const SCRIPT = `
export async function main(base) {
  const ask = (text) =>
    fetch(base + "/v1/chat/completions", {
      method: "POST",
      headers: { "content-type": "application/json", authorization: "Bearer sk-test" },
      body: JSON.stringify({ model: "gpt-4o-mini", messages: [{ role: "user", content: text }] }),
    }).then(async (r) => ({ status: r.status, body: await r.json() }));
  const answers = await Promise.all([ask("one"), ask("two")]);
  return answers.map((a) => a.status + " " + (a.body.choices?.[0]?.message?.content ?? a.body.error?.message));
}
`;

describe("batchling batches", () => {
  let dir;
  let fake;
  let script;
  let journal;
  let batchId;
  const run = (extra = []) => runCli([`${script}:main`, fake.url, "--cache-path", journal, "--batch-size", "2", "--batch-window-ms", "5000", ...extra]);

  let startedAt;
  before(async () => {
    startedAt = Date.now();
    dir = mkdtempSync(join(tmpdir(), "batchling-cli-batches-"));
    script = join(dir, "ask.mjs");
    journal = join(dir, "cache.jsonl");
    writeFileSync(script, SCRIPT);
    fake = await startFakeProvider({ pollsUntilDone: 1_000 });
    // A first run submits the batch, then dies before its answers come (kill -9).
    const first = await runCli([`${script}:main`, fake.url, "--cache-path", journal, "--batch-size", "2", "--batch-window-ms", "5000", "--poll-interval-ms", "60000"], {
      until: () => existsSync(journal) && readFileSync(journal, "utf8").includes('"type":"submitted"'),
    });
    assert.equal(first.signal, "SIGKILL", first.stderr);
    assert.equal(fake.counters.batchesCreated.openai, 1);
    batchId = [...fake.batches.keys()][0];
  });
  after(async () => {
    await fake?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test("list shows the live batch a killed run left, with its waiting requests, age and cost so far", async () => {
    const { code, stdout, stderr } = await runCli(["batches", "list", "--cache-path", journal]);
    const listedAt = Date.now();
    assert.equal(code, 0, stderr);
    const lines = stdout.trim().split("\n");
    assert.equal(lines.length, 1, stdout);
    const m = lines[0].match(new RegExp(`^${batchId}\\s+openai gpt-4o-mini \\(${fake.url}/v1\\)\\s+2/2 requests waiting · age (.+) · cost so far \\$0\\.00 \\(0 answers\\)$`));
    assert.ok(m, stdout);
    // The age counts from the time the submitted record carries, up to the listing.
    const submitted = readFileSync(journal, "utf8").split("\n").filter(Boolean).map((l) => JSON.parse(l)).find((r) => r.type === "submitted");
    assert.ok(submitted.at_ms > startedAt - 1_000 && submitted.at_ms <= listedAt, JSON.stringify(submitted));
    const age = parseAge(m[1]);
    assert.ok(age >= 0 && Math.abs(age - (listedAt - submitted.at_ms)) <= 2_000, `${m[1]} vs ${listedAt - submitted.at_ms} ms`);
  });

  test("status polls the provider with the key from the environment; without one it names the variable", async () => {
    const { code, stdout, stderr } = await runCli(["batches", "status", batchId, "--cache-path", journal], { env: { OPENAI_API_KEY: "sk-test" } });
    assert.equal(code, 0, stderr);
    assert.match(stdout, new RegExp(`^${batchId} `));
    // The fake counts nothing until a batch ends: the provider's own numbers, as it sent them.
    assert.match(stdout, /\n {2}in_progress 0\/0\n$/);
    assert.equal(fake.batches.get(batchId).polls, 1, "one poll of the batch");

    const noKey = await runCli(["batches", "status", batchId, "--cache-path", journal]);
    assert.equal(noKey.code, 1);
    assert.match(noKey.stderr, /no API key for openai: set OPENAI_API_KEY/);

    const unknown = await runCli(["batches", "status", "batch_nope", "--cache-path", journal], { env: { OPENAI_API_KEY: "sk-test" } });
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, new RegExp(`no live batch "batch_nope" .*\\(live: ${batchId}\\)`));
  });

  test("usage errors exit 2", async () => {
    for (const args of [["batches"], ["batches", "stop"], ["batches", "cancel"], ["batches", "list", "x"], ["batches", "list", "--bogus"]]) {
      const { code, stderr } = await runCli(args);
      assert.equal(code, 2, `${args.join(" ")}: ${stderr}`);
      assert.match(stderr, /usage: batchling batches/);
    }
    const missing = await runCli(["batches", "list", "--cache-path", join(dir, "none.jsonl")]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /no journal at/);
  });

  test("cancel cancels at the provider and journals it; re-runs answer 499 and never resubmit", async () => {
    const { code, stdout, stderr } = await runCli(["batches", "cancel", batchId, "--cache-path", journal], { env: { OPENAI_API_KEY: "sk-test" } });
    assert.equal(code, 0, stderr);
    assert.match(stdout, new RegExp(`cancelled ${batchId} \\(openai\\)`));
    assert.equal(fake.batches.get(batchId).cancelRequested, true);
    assert.match(readFileSync(journal, "utf8"), new RegExp(`"type":"cancelled","batch_id":"${batchId}"`));
    const listed = await runCli(["batches", "list", "--cache-path", journal]);
    assert.match(listed.stdout, /2\/2 requests waiting · age .* · cancelled\n$/);

    // The re-run resumes the batch, finds it cancelled, and answers its callers 499.
    const second = await run(["--poll-interval-ms", "10"]);
    assert.equal(second.code, 0, second.stderr);
    const answers = JSON.parse(second.stdout);
    assert.equal(answers.length, 2);
    for (const a of answers) assert.match(a, new RegExp(`^499 .*${batchId}`));
    assert.equal(fake.counters.batchesCreated.openai, 1, "not submitted again");

    // And so does every later run, without asking the provider.
    const polls = fake.batches.get(batchId).polls;
    const third = await run(["--poll-interval-ms", "10"]);
    assert.equal(third.code, 0, third.stderr);
    for (const a of JSON.parse(third.stdout)) assert.match(a, /^499 .*cancelled/);
    assert.equal(fake.counters.batchesCreated.openai, 1, "not submitted again");
    assert.equal(fake.batches.get(batchId).polls, polls, "not polled again");

    const after = await runCli(["batches", "list", "--cache-path", journal]);
    assert.equal(after.stdout, "no live batches\n");
  });
});

test("a Batch run's state file: list shows its live batch; cancel fails its unfinished jobs with 499 on the re-run", async () => {
  const dir = mkdtempSync(join(tmpdir(), "batchling-cli-batches-state-"));
  const fake = await startFakeProvider({ pollsUntilDone: 1_000 });
  const stateFile = join(dir, "state.json");
  const runner = join(dir, "run.mjs");
  writeFileSync(runner, `
import { Batch } from ${JSON.stringify(join(ROOT, "dist", "index.js"))};
const run = new Batch({ stateFile: ${JSON.stringify(stateFile)}, resultsDir: ${JSON.stringify(join(dir, "out"))}, pollIntervalMs: Number(process.argv[2]) })
  .defaults({ model: "gpt-4o-mini" })
  .addJob({ id: "a", messages: [{ role: "user", content: "one" }] })
  .addJob({ id: "b", messages: [{ role: "user", content: "two" }] })
  .run({ wait: true });
await run;
`);
  const node = (args, until) =>
    new Promise((resolve) => {
      const env = { ...process.env, OPENAI_API_KEY: "sk-test", OPENAI_BASE_URL: `${fake.url}/v1` };
      const child = spawn(process.execPath, [runner, ...args], { env, stdio: ["ignore", "pipe", "pipe"] });
      let stderr = "";
      child.stderr.setEncoding("utf8").on("data", (d) => (stderr += d));
      const poll = setInterval(() => until?.() && child.kill("SIGKILL"), 20);
      const timer = setTimeout(() => child.kill("SIGKILL"), 20_000);
      child.on("close", (code, signal) => (clearInterval(poll), clearTimeout(timer), resolve({ code, signal, stderr })));
    });
  try {
    const first = await node(["60000"], () => existsSync(stateFile) && readFileSync(stateFile, "utf8").includes('"type":"submitted"'));
    assert.equal(first.signal, "SIGKILL", first.stderr);
    const batchId = [...fake.batches.keys()][0];
    const listed = await runCli(["batches", "list", "--state-file", stateFile]);
    assert.equal(listed.code, 0, listed.stderr);
    assert.match(listed.stdout, new RegExp(`^${batchId}\\s+openai gpt-4o-mini .*2 requests \\(answers are in the run's results directory\\) · age [\\d.]+ s · cost so far — \\(answers are not in the state file\\)\n$`));
    const cancelled = await runCli(["batches", "cancel", batchId, "--state-file", stateFile], { env: { OPENAI_API_KEY: "sk-test" } });
    assert.equal(cancelled.code, 0, cancelled.stderr);
    assert.equal(fake.batches.get(batchId).cancelRequested, true);
    // The re-run resumes the batch, finds it cancelled: both jobs fail with the cancelled answer.
    const second = await node(["10"]);
    assert.equal(second.code, 0, second.stderr);
    assert.equal(fake.counters.batchesCreated.openai, 1, "not submitted again");
    const results = readFileSync(join(dir, "out", "results.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l));
    assert.deepEqual(results.map((r) => r.jobId ?? r.id).sort(), ["a", "b"]);
    for (const r of results) {
      assert.equal(r.ok, false);
      assert.equal(r.status, 499);
      assert.match(r.error, new RegExp(`batch ${batchId} was cancelled`));
    }
  } finally {
    await fake.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a partially answered batch: list shows the cost of its journalled answers, as the run's own report counts it", async () => {
  const dir = mkdtempSync(join(tmpdir(), "batchling-cli-batches-cost-"));
  const journal = join(dir, "cache.jsonl");
  const fake = await startFakeProvider({ pollsUntilDone: 1 });
  let ctx;
  try {
    // The output file (two answers) downloads; the error file (the FAIL line) then fails until
    // the faults are cleared: the batch stays live with two of its three requests answered.
    ctx = batchify({
      batchSize: 3,
      batchWindowMs: 5_000,
      pollIntervalMs: 10,
      retry: { attempts: 1_000, backoffMs: 50, maxBackoffMs: 50 },
      cache: { path: journal },
      onEvent: (event) => {
        if (event.kind === "resultsReceived" && event.results > 0) {
          fake.faults.add({ route: "openai.files.content", status: 500, count: 1_000_000 });
        }
      },
    });
    const body = (text) => ({ model: "gpt-4o-mini", messages: [{ role: "user", content: text }] });
    const texts = ["first question", "a second, longer question about costs", "FAIL:400 third"];
    const ask = (text) =>
      fetch(`${fake.url}/v1/chat/completions`, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: "Bearer sk-test" },
        body: JSON.stringify(body(text)),
      }).then((r) => r.status);
    const answered = ctx.run(() => Promise.all(texts.map(ask)));
    const results = () => readFileSync(journal, "utf8").split("\n").filter(Boolean).map((l) => JSON.parse(l)).filter((r) => r.type === "result");
    const deadline = Date.now() + 15_000;
    while (!(existsSync(journal) && results().length === 2)) {
      assert.ok(Date.now() < deadline, "the output file's answers were never journalled");
      await new Promise((r) => setTimeout(r, 20));
    }
    const batchId = [...fake.batches.keys()][0];
    const listed = await runCli(["batches", "list", "--cache-path", journal]);
    assert.equal(listed.code, 0, listed.stderr);
    const m = listed.stdout.match(new RegExp(`^${batchId}\\s+openai gpt-4o-mini .*1/3 requests waiting · age [\\d.]+ s · cost so far \\$([\\d.]+) \\(2 answers\\)\n$`));
    assert.ok(m, listed.stdout);
    // The formula over the answers' usage, as journalled.
    const expected = results().reduce((usd, r) => usd + gpt4oMiniBatchUsd(JSON.parse(r.body).usage), 0);
    assert.ok(expected > 0);
    const shown = Number(m[1]);
    assert.ok(Math.abs(shown - expected) / expected < 0.006, `${m[1]} vs ${expected}`);
    // And the run's own report, at this moment, counts the same answers at the same cost.
    const row = ctx.report().queues[0];
    assert.equal(row.answersCosted, 2);
    assert.ok(Math.abs(row.actualBatchUsd - expected) < 1e-12, `${row.actualBatchUsd} vs ${expected}`);

    fake.faults.clear();
    assert.deepEqual(await answered, [200, 200, 400]);
    await ctx.close();
    ctx = undefined;
    const after = await runCli(["batches", "list", "--cache-path", journal]);
    assert.equal(after.stdout, "no live batches\n");
  } finally {
    fake.faults.clear();
    await ctx?.close();
    await fake.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test("the CLI's summary after a run shows the actual batch cost next to the estimate, and the provider files deleted", async () => {
  const dir = mkdtempSync(join(tmpdir(), "batchling-cli-summary-"));
  const fake = await startFakeProvider({ pollsUntilDone: 1 });
  try {
    const script = join(dir, "ask.mjs");
    writeFileSync(script, SCRIPT);
    const { code, stdout, stderr } = await runCli([`${script}:main`, fake.url, "--no-cache", "--batch-size", "2", "--poll-interval-ms", "10"]);
    assert.equal(code, 0, stderr);
    assert.equal(JSON.parse(stdout).length, 2);
    const m = stderr.match(/^batchling: 2 requests in 1 new batch; cost: \$([\d.]+) for 2 answers \(estimated \$([\d.]+)\) at batch prices; provider files: (\d+) deleted$/m);
    assert.ok(m, stderr);
    // The same bodies at the sync endpoint report the usage the batch lines did (the fake's
    // answers are a function of the body).
    let expected = 0;
    for (const text of ["one", "two"]) {
      const r = await fetch(`${fake.url}/v1/chat/completions`, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: "Bearer sk-test" },
        body: JSON.stringify({ model: "gpt-4o-mini", messages: [{ role: "user", content: text }] }),
      });
      expected += gpt4oMiniBatchUsd((await r.json()).usage);
    }
    assert.ok(Math.abs(Number(m[1]) - expected) / expected < 0.006, `${m[1]} vs ${expected}`);
    assert.ok(Number(m[2]) >= Number(m[1]), "the estimate is an upper bound");
    // The input and output files, both deleted at the fake.
    assert.equal(Number(m[3]), fake.counters.requests["openai.files.delete"]);
    assert.ok(Number(m[3]) >= 2, stderr);
  } finally {
    await fake.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test("batchPolled events carry an ETA from the provider's counts", async () => {
  const fake = await startFakeProvider({ pollsUntilDone: 4 });
  const polled = [];
  try {
    const ctx = batchify({
      batchWindowMs: 0,
      pollIntervalMs: 30,
      cache: false,
      onEvent: (event) => {
        if (event.kind !== "batchPolled") return;
        polled.push(event);
        // The fake reports no progress until the end: after the first poll, say half are done.
        const record = fake.batches.get(event.batchId);
        if (polled.length === 1) record.requestCounts = { total: 4, completed: 2, failed: 0 };
      },
    });
    await ctx.run(() =>
      Promise.all(["a", "b", "c", "d"].map((text) =>
        fetch(`${fake.url}/v1/chat/completions`, {
          method: "POST",
          headers: { "content-type": "application/json", authorization: "Bearer sk-test" },
          body: JSON.stringify({ model: "gpt-4o-mini", messages: [{ role: "user", content: text }] }),
        }).then((r) => r.json()),
      )),
    );
    await ctx.close();
  } finally {
    await fake.close();
  }
  assert.ok(polled.length >= 3, JSON.stringify(polled));
  assert.equal(polled[0].etaMs, null, "no progress seen yet");
  const half = polled.find((e) => e.completed === 2);
  assert.ok(half, JSON.stringify(polled));
  // 2 of 4 done after t since submission: about t again for the other 2.
  assert.ok(half.etaMs > 0 && half.etaMs < 10_000, JSON.stringify(half));
  assert.equal(polled.at(-1).etaMs, 0, "done");
});

test("the job builder's status() carries the ETA of its live batches", async () => {
  const dir = mkdtempSync(join(tmpdir(), "batchling-eta-"));
  const fake = await startFakeProvider({ pollsUntilDone: 4 });
  const seen = [];
  try {
    let polls = 0;
    const batch = new Batch({
      stateFile: join(dir, "state.json"),
      resultsDir: join(dir, "out"),
      pollIntervalMs: 30,
      providers: { openai: { apiKey: "sk-test", baseURL: `${fake.url}/v1` } },
    }).defaults({ model: "gpt-4o-mini" });
    for (const id of ["a", "b", "c", "d"]) batch.addJob({ id, messages: [{ role: "user", content: id }] });
    batch.onEvent((event) => {
      if (event.kind !== "batchPolled") return;
      if (++polls === 1) fake.batches.get(event.batchId).requestCounts = { total: 4, completed: 2, failed: 0 };
    });
    batch.onProgress((stats) => seen.push(stats.etaMs));
    const run = await batch.run({ wait: true });
    assert.equal(run.status().etaMs, null, "no live batch: no ETA");
  } finally {
    await fake.close();
    rmSync(dir, { recursive: true, force: true });
  }
  assert.equal(seen[0], null, "before any progress");
  assert.ok(seen.some((eta) => eta > 0 && eta < 10_000), JSON.stringify(seen));
});

test("without a terminal, each retry is one stderr line naming its cause, host and delay", async () => {
  const dir = mkdtempSync(join(tmpdir(), "batchling-cli-retry-"));
  // A port nothing listens on: take one, then close it.
  const server = createServer();
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = server.address().port;
  await new Promise((resolve) => server.close(resolve));
  try {
    const script = join(dir, "ask.mjs");
    writeFileSync(script, SCRIPT);
    const lines = (stderr) => stderr.split("\n").filter((l) => l.includes("retry "));
    const { stderr } = await runCli([`${script}:main`, `http://127.0.0.1:${port}`, "--no-cache", "--batch-size", "2", "--batch-window-ms", "5000"], {
      until: (err) => /retry 2\//.test(err),
    });
    const retries = lines(stderr);
    assert.equal(retries.length, 2, stderr);
    assert.match(retries[0], new RegExp(`^batchling: upload: connection refused: 127\\.0\\.0\\.1:${port}, retry 1/\\d+ in [\\d.]+ (s|min)`));
    assert.match(retries[1], /retry 2\//);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

// `batchling serve` (dist/cli.js serve) as a separate process, against the fake provider, driven
// by clients nobody here wrote: the official Python `openai` and `anthropic` packages (in the
// .venv-test/ virtual environment `npm run setup:test` creates) and curl.
import { test, describe, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFile } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { setTimeout as sleep } from "node:timers/promises";
import { useFakeProvider } from "./support/fake.mjs";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const CLI = join(ROOT, "dist", "cli.js");
const PYTHON = join(ROOT, ".venv-test", "bin", "python");
const CLIENTS = join(ROOT, "tests", "serve", "clients.py");

const fake = useFakeProvider();
const tmp = mkdtempSync(join(tmpdir(), "batchling-serve-"));
const servers = new Set();
after(() => {
  for (const server of servers) server.child.kill("SIGKILL");
  rmSync(tmp, { recursive: true, force: true });
});

/** Start `batchling serve` on a free port with the fake as the OpenAI and Anthropic upstream;
 * resolves once it listens (or with its exit code and output when it refuses to start). */
function startServe(args = [], env = {}) {
  const child = spawn(
    process.execPath,
    [CLI, "serve", "--port", "0", "--host", `openai=${fake.url}/v1`, "--host", `anthropic=${fake.url}`, "--poll-interval-ms", "20", ...args],
    { cwd: tmp, env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] },
  );
  const server = { child, stderr: "", url: undefined, exited: new Promise((resolve) => child.once("exit", (code, signal) => resolve({ code, signal }))) };
  servers.add(server);
  child.stderr.on("data", (d) => (server.stderr += d));
  child.stdout.resume();
  return new Promise((resolve) => {
    const onData = () => {
      const match = /listening on (http:\/\/\S+)/.exec(server.stderr);
      if (match) {
        server.url = match[1];
        child.stderr.off("data", onData);
        resolve(server);
      }
    };
    child.stderr.on("data", onData);
    server.exited.then(() => resolve(server));
  });
}

async function stop(server, signal = "SIGTERM") {
  server.child.kill(signal);
  const exit = await server.exited;
  servers.delete(server);
  return exit;
}

function run(file, args, { env = {}, timeoutMs = 120_000 } = {}) {
  return new Promise((resolve) => {
    execFile(file, args, { env: { ...process.env, ...env }, timeout: timeoutMs, maxBuffer: 64 << 20 }, (error, stdout, stderr) => {
      resolve({ code: error ? (error.code ?? 1) : 0, stdout, stderr });
    });
  });
}

async function python(mode, server, count, prefix, env) {
  assert.ok(existsSync(PYTHON), `${PYTHON} is missing: run \`npm run setup:test\` (it creates the Python SDKs' virtual environment)`);
  const out = await run(PYTHON, [CLIENTS, mode, server.url, String(count), prefix], { env });
  assert.equal(out.code, 0, `clients.py ${mode} failed:\n${out.stderr}\nserver:\n${server.stderr}`);
  return JSON.parse(out.stdout).answers;
}

/** curl's status line and body: `-w` appends the status after the body. */
async function curl(args) {
  const out = await run("curl", ["-sS", "-w", "\n%{http_code}", ...args]);
  const cut = out.stdout.lastIndexOf("\n");
  return { code: out.code, status: Number(out.stdout.slice(cut + 1)), body: out.stdout.slice(0, cut), stderr: out.stderr };
}

function chatArgs(server, prompt, extra = []) {
  return [
    `${server.url}/openai/v1/chat/completions`,
    "-H", "authorization: Bearer sk-test",
    "-H", "content-type: application/json",
    "-d", JSON.stringify({ model: "gpt-4o-mini", messages: [{ role: "user", content: prompt }] }),
    ...extra,
  ];
}

/** The fake's own sync answer to the same request. */
async function syncAnswer(path, body, headers) {
  const response = await fetch(`${fake.url}${path}`, { method: "POST", headers: { "content-type": "application/json", ...headers }, body: JSON.stringify(body) });
  return response.json();
}

async function metric(server, line) {
  const text = await (await fetch(`${server.url}/metrics`)).text();
  const found = text.split("\n").find((l) => l.startsWith(line + " "));
  return found === undefined ? undefined : Number(found.slice(line.length + 1));
}

async function until(what, predicate, timeoutMs = 20_000) {
  const start = Date.now();
  while (!(await predicate())) {
    if (Date.now() - start > timeoutMs) assert.fail(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

describe("batchling serve", () => {
  test("100 concurrent calls of the Python openai SDK become one batch whose answers equal the sync endpoint's", async () => {
    const server = await startServe(["--batch-size", "100", "--batch-window-ms", "60000", "--no-cache"]);
    const answers = await python("openai-chat", server, 100, "py");
    assert.equal(fake.counters.batchesCreated.openai, 1);
    const [batch] = [...fake.batches.values()];
    assert.equal(batch.requests.length, 100);
    assert.equal(fake.counters.syncCalls, 0, "nothing went to the sync endpoint");
    for (let i = 0; i < 100; i++) {
      const sync = await syncAnswer("/v1/chat/completions", { model: "gpt-4o-mini", messages: [{ role: "user", content: `py ${i}` }] }, { authorization: "Bearer sk-test" });
      assert.deepEqual(answers[i], { id: sync.id, content: sync.choices[0].message.content, totalTokens: sync.usage.total_tokens });
    }
    assert.equal(answers[7].content, "echo: py 7");
    await stop(server);
  });

  test("the Python anthropic SDK's calls are batched too, with the caller's key upstream", async () => {
    const server = await startServe(["--batch-size", "10", "--batch-window-ms", "60000", "--no-cache"]);
    const answers = await python("anthropic-message", server, 10, "claude");
    assert.equal(fake.counters.batchesCreated.anthropic, 1);
    const [batch] = [...fake.batches.values()];
    assert.equal(batch.requests.length, 10);
    // The SDK's own credential header (this release sends the key as a bearer token) went upstream.
    assert.match(batch.headers["x-api-key"] ?? batch.headers.authorization, /sk-ant-test$/);
    for (let i = 0; i < 10; i++) {
      const sync = await syncAnswer(
        "/v1/messages",
        { model: "claude-haiku-4-5", max_tokens: 64, messages: [{ role: "user", content: `claude ${i}` }] },
        { "x-api-key": "sk-ant-test", "anthropic-version": "2023-06-01" },
      );
      assert.deepEqual(answers[i], { id: sync.id, content: sync.content[0].text, outputTokens: sync.usage.output_tokens });
    }
    await stop(server);
  });

  test("a streamed call passes through, its events arriving as the upstream sends them", async () => {
    fake.config.streamIntervalMs = 50;
    const server = await startServe(["--no-cache"]);
    const [answer] = await python("openai-stream", server, 1, "stream me please");
    assert.equal(answer.content, "echo: stream me please");
    assert.ok(answer.chunks >= 4, `${answer.chunks} chunks`);
    // Relayed as they came: the client saw the chunks spread over the upstream's pacing, not
    // all at once after the end (4 gaps of 50 ms at least between the first and last).
    assert.ok(answer.spreadS >= 0.1, `chunks arrived within ${answer.spreadS} s`);
    assert.equal(fake.counters.syncCalls, 1);
    assert.equal(fake.counters.batchesCreated.openai, 0);
    await stop(server);
  });

  test("curl: a client that disconnects and retries is answered from its batch and the journal, never batched twice", async () => {
    fake.config.pollsUntilDone = 40; // about a second at 20 ms polls
    const server = await startServe(["--batch-size", "1", "--batch-window-ms", "0", "--cache-path", join(tmp, "disconnect.jsonl")]);
    const gone = await curl([...chatArgs(server, "patience"), "--max-time", "0.3"]);
    assert.equal(gone.code, 28, `curl timed out: ${gone.stderr}`);
    // A retry while the batch still runs joins it.
    const joined = await curl(chatArgs(server, "patience"));
    assert.equal(joined.status, 200, joined.body);
    assert.equal(JSON.parse(joined.body).choices[0].message.content, "echo: patience");
    await until("the answer journalled", async () => (await metric(server, 'batchling_results_total{provider="openai"}')) === 1);
    // A retry after the answer came is a cache hit.
    const cached = await curl(chatArgs(server, "patience"));
    assert.equal(cached.status, 200);
    assert.deepEqual(JSON.parse(cached.body), JSON.parse(joined.body));
    assert.equal(fake.counters.batchesCreated.openai, 1);
    assert.equal([...fake.batches.values()][0].requests.length, 1);
    assert.equal(await metric(server, 'batchling_cache_hits_total{provider="openai"}'), 1, "the last retry");
    await stop(server);
  });

  test("SIGTERM stops it at once; after a restart, the client's retry resumes polling the batch it was in", async () => {
    fake.config.pollsUntilDone = 1_000_000;
    const cache = join(tmp, "restart.jsonl");
    const first = await startServe(["--batch-size", "1", "--batch-window-ms", "0", "--cache-path", cache]);
    const gone = await curl([...chatArgs(first, "across restarts"), "--max-time", "0.5"]);
    assert.equal(gone.code, 28);
    await until("the batch created", () => fake.counters.batchesCreated.openai === 1);
    const startedStop = Date.now();
    const exit = await stop(first, "SIGTERM");
    assert.deepEqual(exit, { code: 0, signal: null }, first.stderr);
    assert.ok(Date.now() - startedStop < 5_000, "it did not wait for the batch");
    assert.match(first.stderr, /SIGTERM: stopping/);

    const second = await startServe(["--batch-size", "1", "--batch-window-ms", "0", "--cache-path", cache]);
    const retry = curl(chatArgs(second, "across restarts"));
    await until("the batch polled again", () => [...fake.batches.values()][0].polls > 0);
    fake.config.pollsUntilDone = 1;
    for (const batch of fake.batches.values()) batch.polls = 0;
    const answered = await retry;
    assert.equal(answered.status, 200, answered.body);
    assert.equal(JSON.parse(answered.body).choices[0].message.content, "echo: across restarts");
    assert.equal(fake.counters.batchesCreated.openai, 1, "the retry was not batched again");
    await stop(second);
  });

  test("dry run: synthetic answers, nothing sent", async () => {
    const server = await startServe(["--dry-run", "--batch-size", "5", "--batch-window-ms", "60000", "--no-cache"]);
    const answers = await python("openai-chat", server, 5, "dry");
    assert.equal(answers.length, 5);
    assert.equal(fake.counters.batchesCreated.openai, 0);
    assert.equal(fake.counters.syncCalls, 0);
    assert.match(server.stderr, /\(dry run\)/);
    await stop(server);
  });

  test("/healthz and /metrics (Prometheus text: queued, batches in flight, answers, cost)", async () => {
    const server = await startServe(["--batch-size", "2", "--batch-window-ms", "60000", "--no-cache"]);
    const health = await fetch(`${server.url}/healthz`);
    assert.equal(health.status, 200);
    assert.deepEqual(await health.json(), { ok: true });
    await python("openai-chat", server, 2, "metered");
    const response = await fetch(`${server.url}/metrics`);
    assert.match(response.headers.get("content-type"), /^text\/plain; version=0\.0\.4/);
    const text = await response.text();
    assert.match(text, /^# TYPE batchling_batches_in_flight gauge$/m);
    assert.equal(await metric(server, 'batchling_requests_queued_total{provider="openai",model="gpt-4o-mini"}'), 2);
    assert.equal(await metric(server, 'batchling_batches_submitted_total{provider="openai"}'), 1);
    assert.equal(await metric(server, 'batchling_batches_in_flight{provider="openai"}'), 0);
    assert.equal(await metric(server, 'batchling_results_total{provider="openai"}'), 2);
    assert.equal(await metric(server, 'batchling_serve_requests_total{route="openai",status="200"}'), 2);
    const batchUsd = await metric(server, 'batchling_estimated_cost_usd{provider="openai",model="gpt-4o-mini",pricing="batch"}');
    const syncUsd = await metric(server, 'batchling_estimated_cost_usd{provider="openai",model="gpt-4o-mini",pricing="sync"}');
    assert.ok(batchUsd > 0 && Math.abs(batchUsd * 2 - syncUsd) < 1e-12, `${batchUsd} vs ${syncUsd}`);
    assert.ok((await metric(server, 'batchling_actual_cost_usd{provider="openai",model="gpt-4o-mini"}')) > 0);
    await stop(server);
  });

  test("not an open relay: foreign Host headers, unknown paths and other addresses without a token are refused", async () => {
    const server = await startServe(["--no-cache"]);
    const rebinding = await curl([...chatArgs(server, "x"), "-H", "Host: evil.example"]);
    assert.equal(rebinding.status, 403);
    assert.equal(JSON.parse(rebinding.body).error.code, "ERR_BATCHLING_SERVE_HOST");
    for (const path of ["/v1/chat/completions", "/http://evil.example/v1/models", "/openai/v1/../../x"]) {
      const out = await curl(["--path-as-is", `${server.url}${path}`]);
      assert.equal(out.status, 404, path);
      assert.match(JSON.parse(out.body).error.message, /\/openai\/v1/);
    }
    assert.equal(fake.counters.syncCalls, 0);
    await stop(server);

    const open = await startServe(["--listen", "0.0.0.0"]);
    assert.equal((await open.exited).code, 2);
    assert.equal(open.url, undefined, "it never listened");
    assert.match(open.stderr, /give --token/);
  });

  test("with --token, every call carries it, and it never goes upstream", async () => {
    const token = "t0ken-for-tests";
    const server = await startServe(["--listen", "0.0.0.0", "--batch-size", "1", "--batch-window-ms", "0", "--no-cache"], { BATCHLING_SERVE_TOKEN: token });
    const local = server.url.replace("0.0.0.0", "127.0.0.1");
    const at = { ...server, url: local };
    const refused = await curl(chatArgs(at, "guarded"));
    assert.equal(refused.status, 401);
    assert.equal(JSON.parse(refused.body).error.code, "ERR_BATCHLING_SERVE_TOKEN");
    const wrong = await curl([...chatArgs(at, "guarded"), "-H", "x-batchling-token: nope"]);
    assert.equal(wrong.status, 401);
    const answers = await python("openai-chat", at, 1, "guarded", { BATCHLING_TOKEN: token });
    assert.equal(answers[0].content, "echo: guarded 0");
    const [batch] = [...fake.batches.values()];
    assert.equal(batch.headers.authorization, "Bearer sk-test");
    for (const name of Object.keys(fake.counters.headerNames)) assert.notEqual(name, "x-batchling-token");
    assert.equal((await fetch(`${local}/healthz`)).status, 200, "a probe needs no token");
    await stop(server);
  });
});

// Data that does not pile up, end to end through the openai SDK against the fake provider: a
// batch's provider files are deleted once its answers are journalled (or kept on request), a
// resumed batch the provider no longer keeps fails with ERR_BATCHLING_BATCH_GONE, the journal's
// new directory gets a .gitignore, and `batchling cache stats|prune` through the built bin.
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import OpenAI from "openai";
import { FAST, useFakeProvider } from "./support/fake.mjs";
import { batchify, BatchlingError } from "../dist/index.js";

const fake = useFakeProvider();
const ROOT = dirname(dirname(fileURLToPath(import.meta.url)));
const CLI = join(ROOT, "dist", "cli.js");
const DAY = 24 * 60 * 60 * 1000;

const client = (fetch) => new OpenAI({ apiKey: "sk-test", baseURL: `${fake.url}/v1`, fetch, maxRetries: 0 });
const chat = (content) => ({ model: "gpt-4o-mini", messages: [{ role: "user", content }] });
const TEXTS = ["one", "two", "FAIL:400 three"];

/** A fresh directory; the journal goes in a subdirectory batchling creates. */
function withDir(fn) {
  const dir = mkdtempSync(join(tmpdir(), "batchling-prune-"));
  return Promise.resolve(fn(dir)).finally(() => rmSync(dir, { recursive: true, force: true }));
}

/** Ask every text through batchify; the settled answers and the close report. */
async function run(options, texts = TEXTS) {
  const events = [];
  const ctx = batchify({ ...FAST, ...options, onEvent: (e) => events.push(e) });
  const sdk = client(ctx.fetch);
  const answers = await Promise.allSettled(texts.map((t) => sdk.chat.completions.create(chat(t))));
  const report = await ctx.close();
  return { answers, report, events };
}

const openaiFiles = () => [...fake.files.values()].filter((f) => f.provider === "openai");
const journalLines = (path) => readFileSync(path, "utf8").trim().split("\n").map((l) => JSON.parse(l));
const writeJournal = (path, records) => writeFileSync(path, records.map((r) => JSON.stringify(r) + "\n").join(""));

describe("provider files", () => {
  test("a run deletes its batch's input, output and error files once the answers are journalled", () =>
    withDir(async (dir) => {
      const path = join(dir, "state", "cache.jsonl");
      const { answers, report } = await run({ cache: { path } });
      assert.equal(answers[0].value.choices[0].message.content, "echo: one");
      assert.ok(answers[2].reason instanceof OpenAI.BadRequestError);
      assert.equal(fake.counters.requests["openai.files.delete"], 3);
      assert.deepEqual(openaiFiles(), [], "the fake's file store holds none of the batch's files");
      assert.equal(report.queues[0].filesDeleted, 3);
      assert.equal(report.queues[0].fileDeletesFailed, 0);
      // The answers were journalled (with their time) before the files went.
      const results = journalLines(path).filter((r) => r.type === "result");
      assert.equal(results.length, 3);
      for (const r of results) assert.ok(Math.abs(r.at_ms - Date.now()) < 60_000, JSON.stringify(r.at_ms));
      // The directory batchling made keeps the answers out of a repository.
      assert.equal(readFileSync(join(dir, "state", ".gitignore"), "utf8").split("\n").filter((l) => l && !l.startsWith("#")).join(), "*");
    }));

  test("a journal in an existing directory leaves it without a .gitignore", () =>
    withDir(async (dir) => {
      await run({ cache: { path: join(dir, "cache.jsonl") } }, ["solo"]);
      assert.ok(existsSync(join(dir, "cache.jsonl")));
      assert.equal(existsSync(join(dir, ".gitignore")), false);
    }));

  test("deleteProviderFiles: false keeps them", async () => {
    const { answers, report } = await run({ deleteProviderFiles: false });
    assert.equal(answers[1].value.choices[0].message.content, "echo: two");
    assert.equal(fake.counters.requests["openai.files.delete"] ?? 0, 0);
    assert.equal(openaiFiles().length, 3, "input, output and error file");
    assert.equal(report.queues[0].filesDeleted, 0);
  });

  test("a failed delete is a warning event and counted, never an error for the callers", async () => {
    fake.faults.add({ route: "openai.files.delete", status: 500, count: 3 });
    const { answers, report, events } = await run({});
    assert.deepEqual(answers.map((a) => a.status), ["fulfilled", "fulfilled", "rejected"]);
    const warnings = events.filter((e) => e.kind === "warning" && /could not delete/.test(e.message));
    assert.equal(warnings.length, 3, JSON.stringify(events.filter((e) => e.kind === "warning")));
    assert.equal(report.queues[0].fileDeletesFailed, 3);
    assert.equal(report.queues[0].filesDeleted, 0);
  });

  test("an invalid deleteProviderFiles or cache.maxAgeDays is refused naming it", () => {
    assert.throws(() => batchify({ ...FAST, deleteProviderFiles: "no" }), (e) => e.code === "ERR_BATCHLING_INVALID_OPTION" && e.option === "deleteProviderFiles");
    assert.throws(() => batchify({ ...FAST, cache: { path: "x.jsonl", maxAgeDays: -1 } }), (e) => e.option === "cache.maxAgeDays" && /above 0/.test(e.message));
    assert.throws(() => batchify({ ...FAST, cache: { maxAgeDays: "30" } }), (e) => e.option === "cache.maxAgeDays");
  });
});

describe("a batch the provider no longer keeps", () => {
  /** A journal whose batch was submitted `days` ago and whose answers never came. */
  async function journalOfAnOldBatch(path, days, options = {}) {
    await run({ cache: { path }, ...options });
    const records = journalLines(path).filter((r) => r.type !== "result");
    const submitted = records.find((r) => r.type === "submitted");
    submitted.at_ms = Date.now() - days * DAY;
    writeJournal(path, records);
    return submitted.batch_id;
  }

  async function expectGone(path, batchId) {
    const { answers } = await run({ cache: { path } });
    for (const a of answers) {
      assert.equal(a.status, "rejected");
      // The SDK wraps a rejected fetch in its connection error; batchling's error is the cause.
      const error = a.reason.cause;
      assert.ok(error instanceof BatchlingError, String(a.reason));
      assert.equal(error.code, "ERR_BATCHLING_BATCH_GONE");
      assert.match(error.message, new RegExp(`${batchId}.*submitted 3[12] days ago`));
    }
    // Released: the next run submits the requests again.
    const again = await run({ cache: { path } });
    assert.equal(again.answers[0].value.choices[0].message.content, "echo: one");
    assert.equal(fake.counters.batchesCreated.openai, 2);
  }

  test("the batch itself gone (404): a clear error naming it and its age, then a fresh submit", () =>
    withDir(async (dir) => {
      const path = join(dir, "cache.jsonl");
      const batchId = await journalOfAnOldBatch(path, 31);
      fake.batches.delete(batchId);
      const retrieves = fake.counters.requests["openai.batches.retrieve"];
      await expectGone(path, batchId);
      assert.ok(fake.counters.requests["openai.batches.retrieve"] - retrieves <= 2, "one poll, no retry loop (plus the fresh batch's)");
    }));

  test("its output file gone (404): the same error", () =>
    withDir(async (dir) => {
      const path = join(dir, "cache.jsonl");
      const batchId = await journalOfAnOldBatch(path, 31, { deleteProviderFiles: false });
      const batch = fake.batches.get(batchId);
      assert.ok(fake.files.delete(batch.outputFileId), "the output file existed");
      fake.files.delete(batch.errorFileId);
      await expectGone(path, batchId);
    }));
});

// ---------------------------------------------------------------------------------------------
// batchling cache stats|prune, the built bin as a child process.

function runCli(args) {
  return new Promise((resolve, reject) => {
    const env = { ...process.env };
    delete env.NODE_OPTIONS;
    const child = spawn(process.execPath, [CLI, ...args], { cwd: ROOT, env, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (d) => (stdout += d));
    child.stderr.setEncoding("utf8").on("data", (d) => (stderr += d));
    const timer = setTimeout(() => child.kill("SIGKILL"), 15_000);
    child.on("error", reject);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

describe("batchling cache", () => {
  test("stats counts answers kept and expired; prune drops the expired and the superseded", () =>
    withDir(async (dir) => {
      const path = join(dir, "cache.jsonl");
      await run({ cache: { path } }, ["a", "b", "c", "d"]);
      // Two answers are 40 days old, one has no time (journalled by an older version).
      const records = journalLines(path);
      const results = records.filter((r) => r.type === "result");
      results[0].at_ms = results[1].at_ms = Date.now() - 40 * DAY;
      delete results[2].at_ms;
      writeJournal(path, records);
      const linesBefore = records.length;

      let r = await runCli(["cache", "stats", "--path", path, "--json"]);
      assert.equal(r.code, 0, r.stderr);
      let stats = JSON.parse(r.stdout);
      assert.equal(stats.lines, linesBefore);
      assert.equal(stats.answers, 2);
      assert.equal(stats.undatedAnswers, 1);
      assert.equal(stats.expiredAnswers, 2);
      assert.equal(stats.maxAgeMs, 30 * DAY);
      assert.equal(stats.liveBatches, 0);

      // A longer limit keeps them.
      r = await runCli(["cache", "stats", "--path", path, "--max-age-days", "50"]);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /answers: 4 \(1 without a time, kept\)/);
      assert.match(r.stdout, /expired answers \(older than 50 days\): 0/);

      r = await runCli(["cache", "prune", "--path", path]);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, new RegExp(`pruned .*: ${linesBefore} → 2 lines`));
      const kept = journalLines(path);
      assert.deepEqual(kept.map((k) => k.type), ["result", "result"]);
      assert.deepEqual(kept.map((k) => k.fingerprint).sort(), [results[2].fingerprint, results[3].fingerprint].sort());

      r = await runCli(["cache", "stats", "--path", path, "--json"]);
      stats = JSON.parse(r.stdout);
      assert.equal(stats.expiredAnswers, 0);
      assert.equal(stats.lines, 2);
      r = await runCli(["cache", "prune", "--path", path]);
      assert.match(r.stdout, /nothing to prune/);

      // The pruned journal still answers its two live requests from the cache; the two
      // expired ones are asked again.
      const again = await run({ cache: { path } }, ["a", "b", "c", "d"]);
      assert.deepEqual(again.answers.map((a) => a.value.choices[0].message.content), ["echo: a", "echo: b", "echo: c", "echo: d"]);
      assert.deepEqual(fake.counters.batchSizes.map((b) => b.size), [4, 2]);
    }));

  test("usage errors exit 2 naming the problem; a missing journal exits 1", () =>
    withDir(async (dir) => {
      let r = await runCli(["cache", "stats", "--path", join(dir, "x.jsonl"), "--max-age-days", "0"]);
      assert.equal(r.code, 2);
      assert.match(r.stderr, /--max-age-days must be a number of days above 0, got 0/);
      r = await runCli(["cache", "stats", "--max-age-days", "soon"]);
      assert.equal(r.code, 2);
      assert.match(r.stderr, /--max-age-days must be a number of days, got "soon"/);
      r = await runCli(["cache", "shrink"]);
      assert.equal(r.code, 2);
      assert.match(r.stderr, /unknown action "shrink"/);
      r = await runCli(["cache", "stats", "--path", join(dir, "none.jsonl")]);
      assert.equal(r.code, 1);
      assert.match(r.stderr, /no cache journal at .*none\.jsonl/);
      r = await runCli(["cache", "--help"]);
      assert.equal(r.code, 0);
      assert.match(r.stdout, /batchling cache stats\|prune/);
    }));
});

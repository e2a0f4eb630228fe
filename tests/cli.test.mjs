// The `batchling` CLI: parseCliArgs() rules and usage errors, then the built bin (dist/cli.js)
// run as a child process: --help, the summarize example in dry run, argument forwarding,
// missing exports, script failures and usage errors.
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createServer } from "node:http";
import { copyFileSync, mkdtempSync, mkdirSync, readdirSync, rmSync, statSync, writeFileSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseCliArgs, CliUsageError, USAGE_LINE } from "../dist/cli-args.js";
import { Batch } from "../dist/index.js";
import { startFakeProvider } from "./fake-provider/server.mjs";
import { parseCsv } from "./support/csv.mjs";

const ROOT = dirname(dirname(fileURLToPath(import.meta.url)));
const CLI = join(ROOT, "dist", "cli.js");
const DRY_RUN_CONTENT = "[batchling dry run: request not sent]";

// ---------------------------------------------------------------------------------------------
// parseCliArgs

describe("parseCliArgs", () => {
  test("the design.md example: positional, keywords (both forms) and a batching switch", () => {
    assert.deepEqual(parseCliArgs(["path/to/script.mjs:main", "arg1", "--name", "alice", "--count=3", "--dry-run"]), {
      target: { file: "path/to/script.mjs", exportName: "main" },
      positional: ["arg1"],
      keywords: { name: "alice", count: "3" },
      batchify: { dryRun: true },
      help: false,
    });
  });

  test("the export defaults to main; the last colon separates it; path colons are kept", () => {
    assert.deepEqual(parseCliArgs(["s.mjs"]).target, { file: "s.mjs", exportName: "main" });
    assert.deepEqual(parseCliArgs(["dir/s.mjs:summarize"]).target, { file: "dir/s.mjs", exportName: "summarize" });
    assert.deepEqual(parseCliArgs(["a:b/s.mjs:run"]).target, { file: "a:b/s.mjs", exportName: "run" });
    assert.deepEqual(parseCliArgs(["s.mjs:default"]).target, { file: "s.mjs", exportName: "default" });
    assert.deepEqual(parseCliArgs(["C:\\jobs\\s.mjs"]).target, { file: "C:\\jobs\\s.mjs", exportName: "main" });
    assert.deepEqual(parseCliArgs(["file:///tmp/s.mjs"]).target, { file: "file:///tmp/s.mjs", exportName: "main" });
    assert.deepEqual(parseCliArgs(["file:///tmp/s.mjs:go"]).target, { file: "file:///tmp/s.mjs", exportName: "go" });
  });

  test("recognised flags configure batchify, as --flag value or --flag=value", () => {
    assert.deepEqual(
      parseCliArgs(["s.mjs", "--batch-size", "50", "--batch-window-ms=0", "--poll-interval-ms", "250", "--dry-run"]).batchify,
      { batchSize: 50, batchWindowMs: 0, pollIntervalMs: 250, dryRun: true },
    );
    assert.deepEqual(parseCliArgs(["s.mjs", "--batch-size=7", "--batch-window-ms", "30", "--poll-interval-ms=1"]).batchify, {
      batchSize: 7,
      batchWindowMs: 30,
      pollIntervalMs: 1,
    });
    const plain = parseCliArgs(["s.mjs"]);
    assert.deepEqual(plain.batchify, {}, "no flag: batchify defaults");
    assert.deepEqual(plain.keywords, {});
  });

  test("--no-cache gives cache: false; --cache-path gives cache: { path }", () => {
    assert.deepEqual(parseCliArgs(["s.mjs", "--no-cache"]).batchify, { cache: false });
    assert.deepEqual(parseCliArgs(["s.mjs", "--cache-path", "tmp/c.jsonl"]).batchify, { cache: { path: "tmp/c.jsonl" } });
    assert.deepEqual(parseCliArgs(["s.mjs", "--cache-path=/abs/c.jsonl"]).batchify, { cache: { path: "/abs/c.jsonl" } });
  });

  test("recognised flags never leak into the keywords; switches take no value", () => {
    const args = parseCliArgs(["s.mjs", "--dry-run", "arg", "--no-cache", "more", "--batch-size", "3", "last"]);
    assert.deepEqual(args.positional, ["arg", "more", "last"]);
    assert.deepEqual(args.keywords, {});
    assert.deepEqual(args.batchify, { dryRun: true, cache: false, batchSize: 3 });
  });

  test("keyword names are converted from kebab-case to camelCase", () => {
    assert.deepEqual(parseCliArgs(["s.mjs", "--max-items", "5", "--output-dir=out", "--a-b-c", "x", "--snake_case", "y"]).keywords, {
      maxItems: "5",
      outputDir: "out",
      aBC: "x",
      snake_case: "y",
    });
  });

  test("a bare --flag is true: at the end, or followed by another --option", () => {
    assert.deepEqual(parseCliArgs(["s.mjs", "--verbose"]).keywords, { verbose: true });
    assert.deepEqual(parseCliArgs(["s.mjs", "--verbose", "--count", "3", "--fast", "--dry-run"]), {
      target: { file: "s.mjs", exportName: "main" },
      positional: [],
      keywords: { verbose: true, count: "3", fast: true },
      batchify: { dryRun: true },
      help: false,
    });
  });

  test("values are strings, kept verbatim: empty, with '=', or starting with a single dash", () => {
    assert.deepEqual(parseCliArgs(["s.mjs", "--name=", "--expr=a=b", "--offset", "-1", "--from", "-"]).keywords, {
      name: "",
      expr: "a=b",
      offset: "-1",
      from: "-",
    });
    assert.deepEqual(parseCliArgs(["s.mjs", "-1", "-", "-x"]).positional, ["-1", "-", "-x"], "single-dash tokens are positional");
  });

  test("the last occurrence of a repeated option wins", () => {
    const args = parseCliArgs(["s.mjs", "--name", "a", "--name=b", "--batch-size", "2", "--batch-size=9"]);
    assert.deepEqual(args.keywords, { name: "b" });
    assert.equal(args.batchify.batchSize, 9);
  });

  test("-- ends option parsing: every later token is positional", () => {
    assert.deepEqual(parseCliArgs(["s.mjs:f", "a", "--k", "v", "--", "--dry-run", "--x=1", "--", "-h", "b"]), {
      target: { file: "s.mjs", exportName: "f" },
      positional: ["a", "--dry-run", "--x=1", "--", "-h", "b"],
      keywords: { k: "v" },
      batchify: {},
      help: false,
    });
    assert.deepEqual(parseCliArgs(["--", "s.mjs", "--x"]).target, { file: "s.mjs", exportName: "main" }, "the target may follow --");
    assert.deepEqual(parseCliArgs(["s.mjs", "--flag", "--", "v"]).keywords, { flag: true }, "-- is not a value");
  });

  test("batching flags may come before the target", () => {
    const args = parseCliArgs(["--dry-run", "--batch-size", "4", "s.mjs:go", "x"]);
    assert.deepEqual(args.target, { file: "s.mjs", exportName: "go" });
    assert.deepEqual(args.positional, ["x"]);
    assert.deepEqual(args.batchify, { dryRun: true, batchSize: 4 });
  });

  test("-h / --help set help, need no target and win over other problems", () => {
    assert.equal(parseCliArgs(["--help"]).help, true);
    assert.equal(parseCliArgs(["-h"]).help, true);
    const withTarget = parseCliArgs(["s.mjs", "a", "-h"]);
    assert.equal(withTarget.help, true);
    assert.deepEqual(withTarget.target, { file: "s.mjs", exportName: "main" });
    assert.equal(parseCliArgs(["s.mjs", "--batch-size", "x", "--help"]).help, true);
    assert.equal(parseCliArgs(["s.mjs"]).help, false);
    assert.deepEqual(parseCliArgs(["s.mjs", "--", "--help"]).positional, ["--help"], "after --, --help is an argument");
  });

  const usageError = (argv, problem) => {
    assert.throws(
      () => parseCliArgs(argv),
      (error) => {
        assert.ok(error instanceof CliUsageError, `expected CliUsageError for ${JSON.stringify(argv)}, got ${error}`);
        assert.ok(error instanceof Error);
        assert.equal(error.name, "CliUsageError");
        assert.equal(error.code, "ERR_BATCHLING_USAGE");
        assert.match(error.problem, problem);
        assert.ok(error.message.startsWith(error.problem), "the message names the problem first");
        assert.ok(error.message.includes(USAGE_LINE), "the message shows the usage");
        return true;
      },
      `expected a usage error for ${JSON.stringify(argv)}`,
    );
  };

  test("--host provider=baseUrl declares batch hosts, repeatable, in order", () => {
    assert.deepEqual(
      parseCliArgs(["s.mjs", "--host", "openai=https://api.novita.ai/openai/v1", "--host=groq=http://127.0.0.1:9/groq/openai/v1"]).batchify,
      { hosts: [{ provider: "openai", baseUrl: "https://api.novita.ai/openai/v1" }, { provider: "groq", baseUrl: "http://127.0.0.1:9/groq/openai/v1" }] },
    );
    usageError(["s.mjs", "--host", "https://x.example/v1"], /--host needs provider=baseUrl/);
    usageError(["s.mjs", "--host", "openai="], /--host needs provider=baseUrl/);
    usageError(["s.mjs", "--host"], /--host needs a value/);
  });

  test("usage error: missing target", () => {
    usageError([], /missing the script/);
    usageError(["--dry-run", "--batch-size", "3"], /missing the script/);
    usageError([""], /script path is empty/);
  });

  test("usage error: integer flags with a non-integer or out-of-range value", () => {
    for (const bad of ["abc", "1.5", "0", "-1", "1e3", " 2", "", "99999999999999999999"]) {
      usageError(["s.mjs", `--batch-size=${bad}`], /--batch-size must be an integer >= 1/);
    }
    usageError(["s.mjs", "--batch-size", "ten"], /--batch-size must be an integer >= 1, got "ten"/);
    usageError(["s.mjs", "--batch-window-ms", "-5"], /--batch-window-ms must be an integer >= 0/);
    usageError(["s.mjs", "--poll-interval-ms", "0"], /--poll-interval-ms must be an integer >= 1/);
  });

  test("usage error: a valued flag without a value", () => {
    usageError(["s.mjs", "--batch-size"], /--batch-size needs a value/);
    usageError(["s.mjs", "--batch-size", "--dry-run"], /--batch-size needs a value/);
    usageError(["s.mjs", "--batch-window-ms"], /--batch-window-ms needs a value/);
    usageError(["s.mjs", "--poll-interval-ms", "--x"], /--poll-interval-ms needs a value/);
    usageError(["s.mjs", "--cache-path"], /--cache-path needs a value/);
    usageError(["s.mjs", "--cache-path="], /--cache-path needs a non-empty path/);
  });

  test("usage error: --cache-path with --no-cache (either order)", () => {
    usageError(["s.mjs", "--no-cache", "--cache-path", "c.jsonl"], /--cache-path and --no-cache/);
    usageError(["s.mjs", "--cache-path=c.jsonl", "--no-cache"], /--cache-path and --no-cache/);
  });

  test("--redis URL gives cache: { redis }; with --no-cache or --cache-path, or without a URL, a usage error", () => {
    assert.deepEqual(parseCliArgs(["s.mjs", "--redis", "redis://127.0.0.1:6379/0"]).batchify, { cache: { redis: "redis://127.0.0.1:6379/0" } });
    assert.deepEqual(parseCliArgs(["s.mjs", "--redis=rediss://r.example:6380", "--dry-run"]).batchify, { cache: { redis: "rediss://r.example:6380" }, dryRun: true });
    usageError(["s.mjs", "--redis"], /--redis needs a value, e.g. --redis redis:\/\/127\.0\.0\.1:6379\/0/);
    usageError(["s.mjs", "--redis="], /--redis needs a URL/);
    usageError(["s.mjs", "--redis", "redis://h", "--no-cache"], /--redis and --no-cache cannot be used together/);
    usageError(["s.mjs", "--cache-path", "c.jsonl", "--redis=redis://h"], /--redis and --cache-path cannot be used together/);
  });

  test("usage error: a value given to a switch", () => {
    usageError(["s.mjs", "--dry-run=yes"], /--dry-run takes no value/);
    usageError(["s.mjs", "--no-cache=1"], /--no-cache takes no value/);
  });

  test("usage error: malformed targets", () => {
    usageError(["s.mjs:"], /missing export name/);
    usageError([":main"], /missing script path/);
    usageError(["s.mjs:my-fn"], /not a JavaScript identifier/);
  });

  test("usage error: malformed options and keywords before the target", () => {
    usageError(["s.mjs", "--=x"], /malformed option/);
    usageError(["s.mjs", "---x"], /malformed option/);
    usageError(["s.mjs", "--__proto__", "x"], /cannot be used as a keyword/);
    usageError(["--name", "alice", "s.mjs"], /comes before the script/);
  });
});

// ---------------------------------------------------------------------------------------------
// The bin, end to end.

function runCli(args, { cwd = ROOT, env = {} } = {}) {
  return new Promise((resolve, reject) => {
    const childEnv = { ...process.env, ...env };
    delete childEnv.OPENAI_API_KEY;
    delete childEnv.NODE_OPTIONS;
    const child = spawn(process.execPath, [CLI, ...args], { cwd, env: childEnv, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (d) => (stdout += d));
    child.stderr.setEncoding("utf8").on("data", (d) => (stderr += d));
    const timer = setTimeout(() => child.kill("SIGKILL"), 15_000);
    child.on("error", reject);
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

describe("batchling bin", () => {
  let dir;
  // Any request that escapes the dry run lands here: OPENAI_BASE_URL points the SDK at it.
  let trap;
  let trapHits = 0;
  let trapUrl;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "batchling-cli-"));
    writeFileSync(
      join(dir, "fixture.mjs"),
      [
        "export function echo(...args) { return args; }",
        "export async function main(...args) { return { main: args }; }",
        "export function positionalOnly(a, b) { return { a, b, count: arguments.length }; }",
        "export async function fail() { throw new TypeError('fixture failure'); }",
        "export async function nothing() {}",
        "export const answer = 42;",
        "export default function () { return 'default export'; }",
      ].join("\n"),
    );
    trap = createServer((req, res) => {
      trapHits++;
      res.writeHead(500).end();
    });
    await new Promise((resolve) => trap.listen(0, "127.0.0.1", resolve));
    trapUrl = `http://127.0.0.1:${trap.address().port}/v1`;
  });
  after(async () => {
    rmSync(dir, { recursive: true, force: true });
    await new Promise((resolve) => trap.close(resolve));
  });

  test("the bin is executable and starts with a node shebang", () => {
    assert.ok(readFileSync(CLI, "utf8").startsWith("#!/usr/bin/env node\n"));
    assert.ok(statSync(CLI).mode & 0o111, "dist/cli.js is executable");
  });

  test("--redis with a URL that is not Redis's: a usage error (exit 2) naming the flag, password hidden, nothing run", async () => {
    const { code, stdout, stderr } = await runCli(["examples/summarize.mjs:main", "--redis", "http://app:hunter2@127.0.0.1:6379"]);
    assert.equal(code, 2, stderr);
    assert.match(stderr, /^batchling: --redis must be a URL like "redis:\/\/127\.0\.0\.1:6379\/0" \(redis:\/\/ or rediss:\/\/\), got "http:\/\/app:\*\*\*@127\.0\.0\.1:6379"/);
    assert.ok(!stderr.includes("hunter2"), "the password is not printed");
    assert.equal(stdout, "");
  });

  test("--help prints usage, every flag and an example, and exits 0", async () => {
    for (const flag of ["--help", "-h"]) {
      const { code, stdout, stderr } = await runCli([flag]);
      assert.equal(code, 0, stderr);
      assert.match(stdout, /^usage: batchling /);
      for (const f of ["--batch-size N", "--batch-window-ms N", "--poll-interval-ms N", "--dry-run", "--no-cache", "--cache-path P", "--redis URL", "-h, --help", "--"]) {
        assert.ok(stdout.includes(f), `help mentions ${f}`);
      }
      assert.match(stdout, /Example:\n\s+batchling examples\/summarize\.mjs:main/);
      assert.match(stdout, /fn\(\.\.\.positional, keywords\)/, "help documents how keywords are passed");
      assert.equal(stderr, "");
    }
  });

  test("README command: the summarize example in dry run prints summaries and the report, sends nothing", async () => {
    // Exactly `batchling examples/summarize.mjs:main --dry-run`, from the package root, no API key.
    const { code, stdout, stderr } = await runCli(["examples/summarize.mjs:main", "--dry-run"], { env: { OPENAI_BASE_URL: trapUrl } });
    assert.equal(code, 0, stderr);
    const summaries = JSON.parse(stdout);
    assert.equal(summaries.length, 5);
    for (const s of summaries) {
      assert.equal(s.summary, DRY_RUN_CONTENT);
      assert.equal(typeof s.text, "string");
    }
    assert.equal(trapHits, 0, "nothing reached the network");
    assert.match(stderr, /dry run: nothing was sent/);
    const header = stderr.split("\n").find((l) => l.startsWith("provider"));
    assert.match(header, /provider\s+endpoint\s+model\s+requests\s+batches\s+cache hits\s+batch cost\s+sync cost/);
    assert.match(stderr, /^openai\s+\/v1\/chat\/completions\s+gpt-4o-mini\s+5\s+1\s+0\s+(\$[\d.]+|unknown price)\s+(\$[\d.]+|unknown price)$/m);
    assert.match(stderr, /^total\s+5\s+1\s+0\s/m);
    assert.ok(!stderr.includes("\r"), "no progress line when stderr is not a terminal");
    assert.ok(!stdout.includes("openai"), "the report goes to stderr only");
  });

  test("the example forwards --count (a keyword) and reports the smaller batch", async () => {
    const { code, stdout, stderr } = await runCli(["examples/summarize.mjs:main", "--count=2", "--batch-window-ms", "20", "--dry-run", "--no-cache"], {
      env: { OPENAI_BASE_URL: trapUrl },
    });
    assert.equal(code, 0, stderr);
    assert.deepEqual(JSON.parse(stdout).map((s) => s.summary), [DRY_RUN_CONTENT, DRY_RUN_CONTENT]);
    assert.match(stderr, /^openai\s+\/v1\/chat\/completions\s+gpt-4o-mini\s+2\s+1\s+0\s/m);
    assert.equal(trapHits, 0);
  });

  test("positional and keyword arguments reach the function; the script resolves from the cwd", async () => {
    const { code, stdout, stderr } = await runCli(
      ["fixture.mjs:echo", "a", "b", "--max-items", "5", "--verbose", "--dry-run", "--name=x y", "--no-cache", "--", "--literal"],
      { cwd: dir },
    );
    assert.equal(code, 0, stderr);
    assert.deepEqual(JSON.parse(stdout), ["a", "b", "--literal", { maxItems: "5", verbose: true, name: "x y" }]);
  });

  test("without keywords no options object is passed; the export defaults to main", async () => {
    let r = await runCli(["fixture.mjs:positionalOnly", "one", "two", "--no-cache"], { cwd: dir });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout), { a: "one", b: "two", count: 2 });
    r = await runCli([join(dir, "fixture.mjs"), "p", "--k=v", "--no-cache"]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout), { main: ["p", { k: "v" }] });
  });

  test("return values: strings raw, undefined prints nothing", async () => {
    let r = await runCli(["fixture.mjs:default", "--no-cache"], { cwd: dir });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, "default export\n");
    r = await runCli(["fixture.mjs:nothing", "--no-cache"], { cwd: dir });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, "");
    assert.equal(r.stderr, "");
  });

  test("a missing export exits 1 and lists the exports the script has", async () => {
    const { code, stdout, stderr } = await runCli(["fixture.mjs:summarise", "--no-cache"], { cwd: dir });
    assert.equal(code, 1);
    assert.equal(stdout, "");
    assert.match(stderr, /fixture\.mjs has no export named "summarise"/);
    for (const e of ["answer (number)", "default (function)", "echo (function)", "fail (function)", "main (function)", "positionalOnly (function)"]) {
      assert.ok(stderr.includes(e), `lists ${e}: ${stderr}`);
    }
    assert.doesNotMatch(stderr, /\n\s+at /, "no stack trace");
  });

  test("an export that is not a function exits 1", async () => {
    const { code, stderr } = await runCli(["fixture.mjs:answer", "--no-cache"], { cwd: dir });
    assert.equal(code, 1);
    assert.match(stderr, /exports "answer" as a number, not a function; its exports are: /);
  });

  test("a missing script exits 1 with its resolved path", async () => {
    const { code, stderr } = await runCli(["nope.mjs", "--no-cache"], { cwd: dir });
    assert.equal(code, 1);
    assert.match(stderr, /cannot find the script "nope\.mjs"/);
    assert.ok(stderr.includes(join(dir, "nope.mjs")));
  });

  test("a failing script exits 1 with the error's stack", async () => {
    const { code, stdout, stderr } = await runCli(["fixture.mjs:fail", "--no-cache"], { cwd: dir });
    assert.equal(code, 1);
    assert.equal(stdout, "");
    assert.match(stderr, /TypeError: fixture failure\n\s+at fail \(/);
  });

  test("a bad flag value exits 2 with the problem and the usage, without running anything", async () => {
    let r = await runCli(["fixture.mjs:echo", "--batch-size", "abc"], { cwd: dir });
    assert.equal(r.code, 2);
    assert.equal(r.stdout, "");
    assert.match(r.stderr, /^batchling: --batch-size must be an integer >= 1, got "abc"\nusage: batchling /);
    assert.doesNotMatch(r.stderr, /\n\s+at /);
    r = await runCli([], { cwd: dir });
    assert.equal(r.code, 2);
    assert.match(r.stderr, /missing the script/);
    r = await runCli(["fixture.mjs", "--no-cache", "--cache-path", "x"], { cwd: dir });
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--cache-path and --no-cache cannot be used together/);
  });
});

// ---------------------------------------------------------------------------------------------
// `batchling jobs status|results <stateFile>` on the state of a real Batch run (fake provider).


describe("batchling jobs", () => {
  let dir;
  let stateFile;
  let results;
  const ids = ["alpha", "needs/escaping id", "boom", "quote"];
  const tricky = 'she said "yes", then\nleft';
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "batchling-cli-jobs-"));
    stateFile = join(dir, "state.json");
    const fake = await startFakeProvider();
    try {
      const batch = new Batch({
        stateFile,
        resultsDir: join(dir, "results"),
        // One JSON file per job too: the tests below also read runs that wrote only those.
        resultFiles: "per-job",
        pollIntervalMs: 10,
        providers: { openai: { apiKey: "sk-test", baseURL: `${fake.url}/v1` } },
      }).defaults({ model: "gpt-4o-mini" });
      batch.addJob({ id: "alpha", messages: [{ role: "user", content: "first" }] });
      batch.addJob({ id: "needs/escaping id", messages: [{ role: "user", content: "second" }] });
      batch.addJob({ id: "boom", messages: [{ role: "user", content: "FAIL:400 please" }] });
      batch.addJob({ id: "quote", messages: [{ role: "user", content: tricky }] });
      results = (await batch.run({ wait: true })).results();
      assert.equal(fake.counters.batchesCreated.openai, 1);
    } finally {
      await fake.close();
    }
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  const fields = (stdout) => Object.fromEntries(stdout.trim().split("\n").map((l) => [l.slice(0, l.indexOf(":")), l.slice(l.indexOf(":") + 1).trim()]));

  test("status prints jobs, completed, failed, pending, batches and the total cost", async () => {
    const { code, stdout, stderr } = await runCli(["jobs", "status", stateFile]);
    assert.equal(code, 0, stderr);
    assert.equal(stderr, "");
    const f = fields(stdout);
    assert.equal(f["state file"], stateFile);
    assert.equal(f.results, join(dir, "results"));
    assert.deepEqual([f.jobs, f.completed, f.failed, f.pending, f.batches, f.complete], ["4", "3", "1", "0", "1 submitted", "yes"]);
    const cost = Object.values(results).reduce((sum, r) => sum + (r.costUsd ?? 0), 0);
    assert.ok(cost > 0);
    const shown = Number(/^\$([\d.e-]+)/.exec(f.cost)?.[1]);
    assert.ok(Math.abs(shown - cost) / cost < 0.01, `${f.cost} vs ${cost}`);
  });

  test("status counts a job without a result as pending; a torn last line of results.jsonl is skipped (relative state path, from the cwd)", async () => {
    const partial = join(dir, "partial");
    mkdirSync(partial, { recursive: true });
    for (const file of readdirSync(join(dir, "results"))) {
      if (file !== "alpha.json" && file !== "results.jsonl") copyFileSync(join(dir, "results", file), join(partial, file));
    }
    // results.jsonl without alpha's line, and the start of a line a crash cut short.
    const lines = readFileSync(join(dir, "results", "results.jsonl"), "utf8").split("\n").filter((l) => l && JSON.parse(l).jobId !== "alpha");
    assert.equal(lines.length, 3);
    writeFileSync(join(partial, "results.jsonl"), lines.join("\n") + '\n{"jobId":"alpha","ok":tr');
    const [header, ...journal] = readFileSync(stateFile, "utf8").split("\n");
    const moved = JSON.stringify({ ...JSON.parse(header), resultsDir: partial });
    writeFileSync(join(dir, "partial-state.json"), [moved, ...journal].join("\n"));
    const { code, stdout, stderr } = await runCli(["jobs", "status", "partial-state.json"], { cwd: dir });
    assert.equal(code, 0, stderr);
    assert.match(stderr, /results\.jsonl: its last line is torn \(\d+ bytes, a run stopped while writing it\): skipped/);
    const f = fields(stdout);
    assert.deepEqual([f.jobs, f.completed, f.failed, f.pending, f.complete], ["4", "2", "1", "1", "no"]);
    const r = await runCli(["jobs", "results", "partial-state.json"], { cwd: dir });
    assert.deepEqual(JSON.parse(r.stdout).map((x) => x.jobId), ["needs/escaping id", "boom", "quote"]);
  });

  test("results prints every finished job as JSON (the default), in job order", async () => {
    const { code, stdout, stderr } = await runCli(["jobs", "results", stateFile]);
    assert.equal(code, 0, stderr);
    const printed = JSON.parse(stdout);
    assert.deepEqual(printed.map((r) => r.jobId), ids);
    for (const r of printed) assert.deepEqual(r, results[r.jobId]);
    assert.equal(printed[0].response, "echo: first");
    assert.equal(printed[2].ok, false);
    assert.match(printed[2].error, /FAIL:400/);
    const explicit = await runCli(["jobs", "results", stateFile, "--format", "json"]);
    assert.equal(explicit.stdout, stdout);
  });

  test("results --format csv parses back, quotes and newlines escaped", async () => {
    for (const args of [["--format", "csv"], ["--format=csv"]]) {
      const { code, stdout, stderr } = await runCli(["jobs", "results", stateFile, ...args]);
      assert.equal(code, 0, stderr);
      const [header, ...rows] = parseCsv(stdout);
      assert.deepEqual(header, ["jobId", "ok", "response", "parsedResponse", "citations", "inputTokens", "outputTokens", "costUsd", "error"]);
      assert.deepEqual(rows.map((r) => r[0]), ids);
      assert.deepEqual(rows.map((r) => r[1]), ["true", "true", "false", "true"]);
      assert.equal(rows[3][2], `echo: ${tricky}`);
      assert.equal(rows[2][2], "");
      assert.equal(rows[0][4], "[]");
      assert.equal(rows[2][8], results.boom.error);
      assert.equal(Number(rows[0][5]), results.alpha.inputTokens);
      assert.equal(Number(rows[0][7]), results.alpha.costUsd);
    }
  });

  test("result files written before the spec's names (id, responseText) are read under the new ones", async () => {
    const old = join(dir, "old-results");
    mkdirSync(old, { recursive: true });
    for (const file of readdirSync(join(dir, "results")).filter((f) => f.endsWith(".json"))) {
      const { jobId, response, ...rest } = JSON.parse(readFileSync(join(dir, "results", file), "utf8"));
      writeFileSync(join(old, file), JSON.stringify({ id: jobId, responseText: response, ...rest }));
    }
    const [header, ...journal] = readFileSync(stateFile, "utf8").split("\n");
    writeFileSync(join(dir, "old-state.json"), [JSON.stringify({ ...JSON.parse(header), resultsDir: old }), ...journal].join("\n"));
    const r = await runCli(["jobs", "results", join(dir, "old-state.json")]);
    assert.equal(r.code, 0, r.stderr);
    const printed = JSON.parse(r.stdout);
    assert.deepEqual(printed.map((x) => x.jobId), ids);
    for (const x of printed) {
      assert.deepEqual(x, results[x.jobId]);
      assert.equal("id" in x || "responseText" in x, false);
    }
  });

  test("a missing or invalid state file exits 1 with a clear message", async () => {
    let r = await runCli(["jobs", "status", "nope.json"], { cwd: dir });
    assert.equal(r.code, 1);
    assert.equal(r.stdout, "");
    assert.equal(r.stderr, `batchling: state file not found: ${join(dir, "nope.json")}\n`);
    writeFileSync(join(dir, "garbage.json"), "{not json");
    r = await runCli(["jobs", "results", join(dir, "garbage.json")]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /garbage\.json is not a batchling state file: .*JSON/);
    writeFileSync(join(dir, "other.json"), JSON.stringify({ hello: "world" }));
    r = await runCli(["jobs", "status", join(dir, "other.json")]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /other\.json is not a batchling state file: its first line is not a batchling state header/);
    writeFileSync(join(dir, "noids.json"), JSON.stringify({ batchling: "state", version: 1, resultsDir: dir }) + "\n");
    r = await runCli(["jobs", "status", join(dir, "noids.json")]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /`jobIds` is missing/);
    r = await runCli(["jobs", "status", dir]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /is a directory, not a state file/);
    assert.doesNotMatch(r.stderr, /\n\s+at /, "no stack trace");
  });

  test("usage errors exit 2 with the jobs usage; --help exits 0", async () => {
    for (const [args, pattern] of [
      [["jobs"], /missing the action: status or results/],
      [["jobs", "frob", "s.json"], /unknown action "frob"/],
      [["jobs", "status"], /missing the state file/],
      [["jobs", "results", "s.json", "--format", "xml"], /--format must be csv or json, got "xml"/],
      [["jobs", "results", "s.json", "--format"], /--format needs a value/],
      [["jobs", "status", "s.json", "--format", "csv"], /--format applies to `jobs results` only/],
      [["jobs", "status", "a.json", "b.json"], /unexpected argument "b\.json"/],
      [["jobs", "status", "s.json", "--verbose"], /unknown option "--verbose"/],
    ]) {
      const r = await runCli(args, { cwd: dir });
      assert.equal(r.code, 2, args.join(" "));
      assert.equal(r.stdout, "");
      assert.match(r.stderr, pattern);
      assert.match(r.stderr, /usage: batchling jobs status <stateFile>/);
    }
    const help = await runCli(["jobs", "--help"]);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /^usage: batchling jobs status <stateFile> \| batchling jobs results <stateFile> \[--format csv\|json\]/);
    const main = await runCli(["--help"]);
    assert.match(main.stdout, /batchling jobs status <stateFile>/);
    assert.match(main.stdout, /batchling jobs results <stateFile> \[--format csv\|json\]/);
  });
});

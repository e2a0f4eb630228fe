// `batchling serve` used wrongly: every mistake is refused before anything listens, with a
// message naming the problem (and exit status 2 from the command line).
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseServeArgs, CliUsageError } from "../dist/cli-args.js";

const CLI = join(dirname(fileURLToPath(import.meta.url)), "..", "dist", "cli.js");

describe("parseServeArgs", () => {
  test("defaults: 127.0.0.1:8787, no token", () => {
    const args = parseServeArgs([]);
    assert.deepEqual(args, { port: 8787, listen: "127.0.0.1", batchify: {}, help: false });
  });

  test("server and batching flags, in both spellings", () => {
    const args = parseServeArgs(["--port=0", "--listen", "::1", "--token", "t", "--batch-size", "1000", "--dry-run", "--host", "openai=http://127.0.0.1:9/v1", "--cache-path=c.jsonl"]);
    assert.deepEqual(args, {
      port: 0,
      listen: "::1",
      token: "t",
      help: false,
      batchify: { batchSize: 1000, dryRun: true, hosts: [{ provider: "openai", baseUrl: "http://127.0.0.1:9/v1" }], cache: { path: "c.jsonl" } },
    });
  });

  test("the token comes from BATCHLING_SERVE_TOKEN unless --token is given", () => {
    assert.equal(parseServeArgs([], { BATCHLING_SERVE_TOKEN: "env" }).token, "env");
    assert.equal(parseServeArgs(["--token", "flag"], { BATCHLING_SERVE_TOKEN: "env" }).token, "flag");
    assert.equal(parseServeArgs([], { BATCHLING_SERVE_TOKEN: "" }).token, undefined);
  });

  for (const [argv, message] of [
    [["--port", "99999"], /--port must be an integer from 0 to 65535, got "99999"/],
    [["--port", "-1"], /--port must be an integer from 0 to 65535, got "-1"/],
    [["--port", "80a"], /--port must be an integer/],
    [["--port"], /--port needs a value/],
    [["--listen", ""], /--listen needs an address/],
    [["--token"], /--token needs a value/],
    [["script.mjs"], /takes no positional argument, got "script.mjs"/],
    [["--bogus"], /unknown option "--bogus" for batchling serve/],
    [["--batch-size", "0"], /--batch-size must be an integer >= 1/],
    [["--no-cache", "--cache-path", "x"], /cannot be used together/],
    [["--host", "openai"], /--host needs provider=baseUrl/],
    [["--dry-run=yes"], /--dry-run takes no value/],
    [["--redis"], /--redis needs a value/],
    [["--redis", "redis://h", "--no-cache"], /--redis and --no-cache cannot be used together/],
    [["--cache-path", "c.jsonl", "--redis", "redis://h"], /--redis and --cache-path cannot be used together/],
  ]) {
    test(`refuses ${argv.join(" ")}`, () => {
      assert.throws(() => parseServeArgs(argv), (e) => e instanceof CliUsageError && message.test(e.problem), String(message));
    });
  }
});

describe("batchling serve refuses to start", () => {
  const serve = (args, env = {}) => spawnSync(process.execPath, [CLI, "serve", ...args], { encoding: "utf8", env: { ...process.env, BATCHLING_SERVE_TOKEN: "", ...env }, timeout: 20_000 });

  test("a usage error exits 2 with the problem", () => {
    const out = serve(["--port", "x"]);
    assert.equal(out.status, 2);
    assert.match(out.stderr, /--port must be an integer/);
  });

  test("--redis with a bad URL exits 2 naming the flag and the rule, before listening", () => {
    for (const [url, rule] of [
      ["localhost:6379", /redis:\/\/ or rediss:\/\//],
      ["redis://127.0.0.1:70000", /a port from 1 to 65535/],
      ["redis://127.0.0.1/x", /a database number/],
    ]) {
      const out = serve(["--port", "0", "--redis", url]);
      assert.equal(out.status, 2, out.stderr);
      assert.match(out.stderr, /^batchling serve: --redis must be a URL like/);
      assert.match(out.stderr, rule);
      assert.doesNotMatch(out.stderr, /listening/);
    }
  });

  test("on a non-loopback address without a token (an open relay), naming the fix", () => {
    const out = serve(["--listen", "0.0.0.0", "--port", "0"]);
    assert.equal(out.status, 2);
    assert.match(out.stderr, /listening on 0\.0\.0\.0 would let anyone who reaches it spend your API keys: give --token/);
    assert.match(out.stderr, /ERR_BATCHLING_SERVE_CONFIG/);
  });

  test("with an empty token", () => {
    const out = serve(["--token", "", "--port", "0"]);
    assert.equal(out.status, 2);
    assert.match(out.stderr, /--token must not be empty/);
  });

  test("with an upstream that is not an absolute URL", () => {
    const out = serve(["--host", "openai=127.0.0.1:9/v1", "--port", "0"]);
    assert.equal(out.status, 2);
    assert.match(out.stderr, /--host openai=127\.0\.0\.1:9\/v1: the base URL must be an absolute http\(s\) URL/);
  });

  test("--help prints the serve usage", () => {
    const out = serve(["--help"]);
    assert.equal(out.status, 0);
    assert.match(out.stdout, /usage: batchling serve/);
  });
});

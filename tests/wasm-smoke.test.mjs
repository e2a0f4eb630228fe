// The wasm engine (bindings-wasm/, built by scripts/build-wasm.sh into wasm/node/) on its own:
// the scratch-buffer batcher cycle, overflow, option errors and an interceptor dry run, and the
// same call sequences against the native addon (when it loads) for byte-for-byte parity.
// `npm test` builds wasm/node/ first (npm run build:wasm); without it these tests fail, never skip.
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const WASM = new URL("../wasm/node/batchling_wasm.js", import.meta.url);
if (!existsSync(WASM)) throw new Error("wasm/node/ is not built: run `npm run build:wasm` first");
const wasm = require(WASM.pathname);
const native = require("../bindings-node/index.cjs");

// Wire constants (core/src/wire.rs).
const RUN_BATCH = 1;
const RESOLVE = 2;
const REJECT = 3;

/** [deadline, nAdds, ...adds, ...actions] → parts. */
function decode(out, length) {
  const a = Array.from(out.subarray(0, length));
  const nAdds = a[1];
  return { deadline: a[0], adds: a.slice(2, 2 + nAdds), actions: a.slice(2 + nAdds) };
}

/** One add → RunBatch → completedMany → Resolve cycle; returns every decoded outcome and the status. */
function cycle(backend) {
  const engine = new backend.NativeBatcher({ maxBatchSize: 2, maxDelayMs: 10, maxQueueSize: undefined });
  const scratch = new Float64Array(64);
  const steps = [];
  let n = engine.add(1000, Uint32Array.of(0, 0), false, scratch);
  const added = decode(scratch, n);
  steps.push(added);
  n = engine.completedMany(1005, Float64Array.of(added.actions[1]), Uint32Array.of(0), new Uint32Array(0), scratch);
  steps.push(decode(scratch, n));
  n = engine.close(1006, false, scratch);
  steps.push(decode(scratch, n));
  return { steps, status: engine.status() };
}

describe("wasm engine", () => {
  test("NativeBatcher: add → RunBatch → completed → Resolve through the scratch buffer", () => {
    const { steps, status } = cycle(wasm);
    const [added, completed] = steps;
    assert.equal(added.adds.length, 2);
    const [a, b] = added.adds;
    assert.ok(a >= 0 && b >= 0 && a !== b);
    // RunBatch: batch, group 0, attempt 1, 2 items.
    assert.deepEqual(added.actions.slice(0, 1), [RUN_BATCH]);
    assert.deepEqual(added.actions.slice(2, 7), [0, 1, 2, a, b]);
    assert.deepEqual(completed.actions, [RESOLVE, a, RESOLVE, b]);
    assert.equal(status.processed, 2);
    assert.equal(status.batches, 1);
    assert.equal(status.averageBatchSize, 2);
    assert.equal(status.lastBatchTime, 1000);
    assert.equal(status.pending, 0);
  });

  test("NativeBatcher: an outcome larger than the scratch buffer comes from takeOverflow()", () => {
    const engine = new wasm.NativeBatcher({ maxBatchSize: 3, maxDelayMs: 0 });
    const small = new Float64Array(2);
    const n = engine.add(0, Uint32Array.of(0, 0, 0), false, small);
    assert.ok(n > small.length);
    const out = engine.takeOverflow();
    assert.ok(out instanceof Float64Array);
    assert.equal(out.length, n);
    const { adds, actions } = decode(out, n);
    assert.equal(adds.length, 3);
    assert.equal(actions[0], RUN_BATCH);
    assert.equal(engine.takeOverflow().length, 0);
  });

  test("NativeBatcher: status before any cut has no lastBatchTime, like napi", () => {
    const status = new wasm.NativeBatcher({ maxBatchSize: 2, maxDelayMs: 0 }).status();
    assert.deepEqual(Object.keys(status), [
      "pending", "processing", "processed", "failed", "batches", "averageBatchSize",
      "retried", "rejected", "cancelled", "timedOut",
      "queueSize", "maxQueueSize", "isQueueFull", "isQueueEmpty",
    ]);
    assert.equal(status.maxQueueSize, null, "unbounded: null, like napi");
  });

  test("NativeBatcher: queue statistics match the native addon's, bounded and not", () => {
    for (const options of [{ maxBatchSize: 2, maxDelayMs: 50, maxQueueSize: 3 }, { maxBatchSize: 2, maxDelayMs: 50 }]) {
      const engines = [wasm, native].map((m) => new m.NativeBatcher(options));
      const scratch = new Float64Array(64);
      const seen = engines.map(() => []);
      for (const groups of [[], [0], [1], [2], [3]]) {
        engines.forEach((engine, i) => {
          if (groups.length > 0) engine.add(0, Uint32Array.from(groups), false, scratch);
          const { queueSize, maxQueueSize, isQueueFull, isQueueEmpty } = engine.status();
          seen[i].push([queueSize, maxQueueSize, isQueueFull, isQueueEmpty]);
        });
      }
      const bound = options.maxQueueSize ?? null;
      assert.deepEqual(seen[0], [
        [0, bound, false, true],
        [1, bound, false, false],
        [2, bound, false, false],
        [3, bound, bound === 3, false],
        [bound === 3 ? 3 : 4, bound, bound === 3, false],
      ]);
      assert.deepEqual(seen[1], seen[0], "native and wasm agree");
    }
  });

  test("option errors carry the core's ConfigError text", () => {
    assert.throws(() => new wasm.NativeBatcher({ maxBatchSize: 0, maxDelayMs: 0 }), {
      name: "Error",
      message: "invalid option `maxBatchSize`: must be at least 1",
    });
    assert.throws(() => new wasm.NativeBatcher({ maxBatchSize: 2.5, maxDelayMs: 0 }), {
      message: "invalid option `maxBatchSize`: must be a whole number from 0 to 9007199254740992, got 2.5",
    });
    assert.throws(() => new wasm.NativeInterceptor("nope"), { message: /^invalid option `options`: / });
    assert.throws(() => new wasm.NativeInterceptor(JSON.stringify({ pollIntervalMs: 0 })), {
      message: "invalid option `pollIntervalMs`: must be at least 1",
    });
  });

  test("option checks answer as data (engine options, or the option and the rule), alike on both engines", () => {
    const fn = { $type: "function" };
    for (const backend of [wasm, native]) {
      assert.deepEqual(JSON.parse(backend.checkBatcherOptions(JSON.stringify({ maxBatchSize: 3, maxDelayMs: 0, batchHandler: fn }))), {
        ok: true,
        options: { maxBatchSize: 3, maxDelayMs: 0 },
      });
      assert.deepEqual(JSON.parse(backend.checkBatcherOptions(JSON.stringify({ maxBatchSize: 3, maxDelayMs: 0 }))), {
        ok: false,
        code: "ERR_BATCHLING_INVALID_OPTION",
        option: "batchHandler",
        message: "must be a function (items) => results",
      });
      const host = JSON.stringify({ cache: false, tagSeed: 7 });
      assert.deepEqual(JSON.parse(backend.checkInterceptorOptions(JSON.stringify({ batchSize: 5, onEvent: fn }), host)), {
        ok: true,
        options: { batchSize: 5, cache: false, tagSeed: 7 },
      });
      assert.deepEqual(JSON.parse(backend.checkInterceptorOptions(JSON.stringify({ hosts: [{ baseUrl: "https://x.example/v1", provider: "" }] }), host)), {
        ok: false,
        code: "ERR_BATCHLING_INVALID_OPTION",
        option: "hosts[0].provider",
        message: "must be a non-empty string, got ",
      });
    }
  });

  test("NativeInterceptor: a dry-run submit is answered with x-batchling-dry-run", () => {
    const engine = new wasm.NativeInterceptor(JSON.stringify({ batchSize: 1, dryRun: true, cache: false, tagSeed: 7 }));
    const loaded = JSON.parse(engine.loadCache(""));
    assert.deepEqual(loaded, { deadline: null, outputs: [] });
    const json = engine.submit(
      0,
      1,
      "POST",
      "https://api.openai.com/v1/chat/completions",
      JSON.stringify([["content-type", "application/json"]]),
      JSON.stringify({ model: "gpt-4o-mini", messages: [{ role: "user", content: "hi" }] }),
    );
    const { outputs } = JSON.parse(json);
    const respond = outputs.find((o) => o.type === "respond");
    assert.ok(respond, json);
    assert.equal(respond.request, 1);
    assert.equal(respond.status, 200);
    assert.deepEqual(respond.headers.find(([name]) => name === "x-batchling-dry-run"), ["x-batchling-dry-run", "1"]);
    assert.equal(JSON.parse(respond.body).object, "chat.completion");
    assert.deepEqual(JSON.parse(engine.close(1)).outputs, [{ type: "drained" }]);
    assert.equal(JSON.parse(engine.report())[0].requests, 1);
    assert.throws(() => engine.submit(2, 2, "POST", "https://api.openai.com/v1/chat/completions", "{", "{}"), {
      message: /headers must be \[\[name, value\], …\]/,
    });
  });

  test("job builder functions answer JSON", () => {
    const spec = JSON.stringify({ id: "a", model: "gpt-4o-mini", prompt: "hi" });
    assert.deepEqual(JSON.parse(wasm.jobProvider(spec)), { ok: true, provider: "openai" });
    const bad = JSON.parse(wasm.jobProvider("{}"));
    assert.equal(bad.ok, false);
    assert.equal(bad.code, "ERR_BATCHLING_INVALID_JOB");
    const built = JSON.parse(wasm.jobBuildRequest(spec, JSON.stringify({ openai: { baseUrl: "", apiKey: "sk-test" } })));
    assert.equal(built.ok, true, JSON.stringify(built));
    assert.equal(built.request.method, "POST");
    const providers = JSON.parse(wasm.jobProviders());
    assert.deepEqual(providers.providers.map((p) => [p.name, p.apiKeyEnv]), [
      ["openai", "OPENAI_API_KEY"],
      ["anthropic", "ANTHROPIC_API_KEY"],
      ["gemini", "GEMINI_API_KEY"],
    ]);
    assert.deepEqual(JSON.parse(wasm.jobFileTypes()).fileTypes[0], { extension: ".pdf", mediaType: "application/pdf" });
  });

  test("completedMany: one call for several batches, resolves coalesced across them; same on both engines", () => {
    const run = (backend) => {
      const engine = new backend.NativeBatcher({ maxBatchSize: 2, maxDelayMs: 0, hostItemIds: true });
      const scratch = new Float64Array(64);
      let n = engine.addWithIds(0, new Uint32Array(6), 100, false, scratch);
      const added = Array.from(scratch.subarray(0, n));
      // Batches 1, 2, 3 (host ids 100-101, 102-103, 104-105); 103 failed on its own.
      n = engine.completedMany(1, Float64Array.of(1, 2, 3), Uint32Array.of(0, 1, 0), Uint32Array.of(1), scratch);
      const completed = Array.from(scratch.subarray(0, n));
      let error;
      try {
        engine.completedMany(2, Float64Array.of(4), Uint32Array.of(2), Uint32Array.of(0), scratch);
      } catch (e) {
        error = e.message;
      }
      return { added, completed, error, status: engine.status() };
    };
    const wasmRun = run(wasm);
    assert.deepEqual(wasmRun.completed, [-1, 0, 0, RESOLVE, 100, 3, REJECT, 103, 3, 0, 0, RESOLVE, 104, 2]);
    assert.match(wasmRun.error, /failed counts add up to 2 but 1 failed positions/);
    assert.equal(wasmRun.status.processed, 6);
    assert.equal(wasmRun.status.failed, 1);
    assert.deepEqual(wasmRun, run(native));
  });

  test("parity with the native addon on the same calls", () => {
    assert.deepEqual(cycle(wasm), cycle(native));
    const run = (backend) => {
      const engine = new backend.NativeInterceptor(JSON.stringify({ batchSize: 1, dryRun: true, cache: true, tagSeed: 7 }));
      const outs = [engine.loadCache("not json\n\n")];
      outs.push(engine.submit(0, 1, "POST", "https://api.anthropic.com/v1/messages", "[]",
        JSON.stringify({ model: "claude-sonnet-4-5", max_tokens: 16, messages: [{ role: "user", content: "hi" }] })));
      outs.push(engine.submit(1, 2, "GET", "https://example.com/", "[]", ""));
      outs.push(engine.tick(5), engine.flush(6), engine.cancel(7, 9), engine.transportError(8, 99, "x"));
      outs.push(engine.response(9, 99, 200, "[]", "{}"), engine.close(10), engine.report());
      return outs;
    };
    assert.deepEqual(run(wasm), run(native));
    const spec = JSON.stringify({ id: "j1", model: "claude-sonnet-4-5", prompt: "hi", maxTokens: 10 });
    const endpoint = JSON.stringify({ anthropic: { baseUrl: "http://127.0.0.1:9", apiKey: "k" } });
    const jobs = (backend) => [
      backend.jobProvider(spec),
      backend.jobProvider("nope"),
      backend.jobBuildRequest(spec, endpoint),
      backend.jobBuildRequest(spec, "{"),
      backend.jobExtractResult(spec, 200, JSON.stringify({ content: [{ type: "text", text: "ok" }], usage: {} })),
      backend.jobExtractResult(spec, 500, "boom"),
      backend.jobProviders(),
      backend.jobFileTypes(),
    ];
    assert.deepEqual(jobs(wasm), jobs(native));
    let wasmError;
    let nativeError;
    try { new wasm.NativeBatcher({ maxBatchSize: 1, maxDelayMs: 0, retryBackoffMs: 10, retryMaxBackoffMs: 5 }); } catch (e) { wasmError = e.message; }
    try { new native.NativeBatcher({ maxBatchSize: 1, maxDelayMs: 0, retryBackoffMs: 10, retryMaxBackoffMs: 5 }); } catch (e) { nativeError = e.message; }
    assert.equal(wasmError, nativeError);
  });
});

// Behaviour of RequestBatcher through its public API, with real timers.
// Every rule of the engine (core/src/batcher.rs) is exercised end to end: triggers, grouping,
// order, failures, retry, timeouts, cancellation, queue limit, concurrency, flush, close,
// status counters, scale and exactly-once settlement.
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { getEventListeners } from "node:events";
import {
  RequestBatcher,
  BatchlingError,
  QueueFullError,
  ClosedError,
  TimeoutError,
  CancelledError,
  BatchResultError,
} from "../dist/index.js";
import { mulberry32 as prng } from "./support/random.mjs";

// ---- helpers -------------------------------------------------------------------------------

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
/** Let every queued microtask and one macrotask turn run. */
const turn = () => new Promise((resolve) => setImmediate(resolve));

function deferred() {
  let resolve;
  let reject;
  const promise = new Promise((a, b) => {
    resolve = a;
    reject = b;
  });
  return { promise, resolve, reject };
}

/** Observe a promise's settlement (and count settlements) without letting it go unhandled. */
function track(promise) {
  const state = { state: "pending", value: undefined, reason: undefined, settlements: 0, at: undefined };
  promise.then(
    (value) => {
      state.settlements++;
      state.state = "fulfilled";
      state.value = value;
      state.at = performance.now();
    },
    (reason) => {
      state.settlements++;
      state.state = "rejected";
      state.reason = reason;
      state.at = performance.now();
    },
  );
  return state;
}


const double = (items) => items.map((x) => x * 2);

// ---- triggers ------------------------------------------------------------------------------

describe("triggers", () => {
  test("size trigger: a group is cut as soon as it holds maxBatchSize items", async () => {
    const batches = [];
    const batcher = new RequestBatcher({
      maxBatchSize: 3,
      maxDelayMs: 5_000,
      batchHandler: (items) => {
        batches.push([...items]);
        return double(items);
      },
    });
    const t0 = performance.now();
    const promises = [0, 1, 2, 3, 4, 5, 6].map((i) => batcher.add(i));
    const states = promises.map(track);
    // The two full batches run without waiting for the 5 s window.
    assert.deepEqual(await Promise.all(promises.slice(0, 6)), [0, 2, 4, 6, 8, 10]);
    assert.ok(performance.now() - t0 < 1_000, "full batches must not wait for maxDelayMs");
    assert.deepEqual(batches, [
      [0, 1, 2],
      [3, 4, 5],
    ]);
    await turn();
    assert.equal(states[6].state, "pending", "the 7th item waits for its window");
    assert.equal(batcher.getStatus().pending, 1);

    // Items of later ticks fill the same window: 2 more make a full batch of 3 at once.
    const later = [7, 8].map((i) => batcher.add(i));
    assert.deepEqual(await Promise.all([promises[6], ...later]), [12, 14, 16]);
    assert.ok(performance.now() - t0 < 1_000);
    assert.deepEqual(batches, [
      [0, 1, 2],
      [3, 4, 5],
      [6, 7, 8],
    ]);
    assert.equal(batcher.getStatus().batches, 3);
    await batcher.close();
  });

  test("delay trigger: a lone item waits about maxDelayMs, not much less", async () => {
    const maxDelayMs = 40;
    let ranAt;
    const batcher = new RequestBatcher({
      maxBatchSize: 100,
      maxDelayMs,
      batchHandler: (items) => {
        ranAt = performance.now();
        return double(items);
      },
    });
    const t0 = performance.now();
    assert.equal(await batcher.add(21), 42);
    const waited = ranAt - t0;
    assert.ok(waited >= maxDelayMs - 2, `cut after ${waited.toFixed(1)} ms, before maxDelayMs`);
    assert.ok(waited < maxDelayMs + 300, `cut after ${waited.toFixed(1)} ms, far after maxDelayMs`);
    await batcher.close();
  });

  test("delay trigger: the window opens at the group's first item, not its last", async () => {
    const maxDelayMs = 60;
    const calls = [];
    const batcher = new RequestBatcher({
      maxBatchSize: 100,
      maxDelayMs,
      batchHandler: (items) => {
        calls.push({ items: [...items], at: performance.now() });
        return double(items);
      },
    });
    const t0 = performance.now();
    const first = batcher.add(1);
    await sleep(45);
    const second = batcher.add(2);
    assert.deepEqual(await Promise.all([first, second]), [2, 4]);
    assert.equal(calls.length, 1);
    assert.deepEqual(calls[0].items, [1, 2]);
    const waited = calls[0].at - t0;
    assert.ok(waited >= maxDelayMs - 2, `cut after ${waited.toFixed(1)} ms`);
    // Had the window restarted at the second item, the cut would come at >= 105 ms.
    assert.ok(waited < maxDelayMs + 35, `cut after ${waited.toFixed(1)} ms: window restarted?`);
    await batcher.close();
  });

  test("maxDelayMs: 0 batches exactly what one tick adds", async () => {
    const batches = [];
    const batcher = new RequestBatcher({
      maxBatchSize: 100,
      maxDelayMs: 0,
      batchHandler: (items) => {
        batches.push([...items]);
        return double(items);
      },
    });
    const a = [0, 1, 2, 3, 4].map((i) => batcher.add(i));
    await turn();
    const b = [5, 6].map((i) => batcher.add(i));
    assert.deepEqual(await Promise.all([...a, ...b]), [0, 2, 4, 6, 8, 10, 12]);
    assert.deepEqual(batches, [
      [0, 1, 2, 3, 4],
      [5, 6],
    ]);
    await batcher.close();
  });

  test("maxDelayMs: 0 keeps a large tick (5000 adds) in one batch when maxBatchSize allows", async () => {
    const sizes = [];
    const batcher = new RequestBatcher({
      maxBatchSize: 10_000,
      maxDelayMs: 0,
      batchHandler: (items) => {
        sizes.push(items.length);
        return items;
      },
    });
    const promises = [];
    for (let i = 0; i < 5_000; i++) promises.push(batcher.add(i));
    const results = await Promise.all(promises);
    assert.equal(results[4_999], 4_999);
    assert.deepEqual(sizes, [5_000], "one tick's adds form one batch");
    await batcher.close();
  });
});

// ---- grouping and order --------------------------------------------------------------------

describe("grouping and order", () => {
  test("keys never share a batch; add order is kept; each caller gets its own result", async () => {
    const batches = [];
    const batcher = new RequestBatcher({
      maxBatchSize: 4,
      maxDelayMs: 10,
      keyGenerator: (item) => item.key,
      batchHandler: (items) => {
        batches.push(items.map((item) => ({ ...item })));
        return items.map((item) => `${item.key}:${item.n}`);
      },
    });
    const keys = ["a", "b", "c"];
    const items = Array.from({ length: 30 }, (_, n) => ({ key: keys[(n * 7) % 3 === 0 ? 0 : n % 3], n }));
    const results = await Promise.all(items.map((item) => batcher.add(item)));
    assert.deepEqual(
      results,
      items.map((item) => `${item.key}:${item.n}`),
    );
    for (const batch of batches) {
      assert.ok(batch.length >= 1 && batch.length <= 4);
      assert.equal(new Set(batch.map((item) => item.key)).size, 1, `mixed keys: ${JSON.stringify(batch)}`);
    }
    // Within a key, concatenating its batches gives back the add order.
    for (const key of keys) {
      const seen = batches.filter((b) => b[0].key === key).flat().map((item) => item.n);
      const added = items.filter((item) => item.key === key).map((item) => item.n);
      assert.deepEqual(seen, added);
    }
    await batcher.close();
  });

  test("keys of different types and identities are kept apart (Map semantics)", async () => {
    const batches = [];
    const objA = { id: 1 };
    const objB = { id: 1 };
    const batcher = new RequestBatcher({
      maxBatchSize: 10,
      maxDelayMs: 0,
      keyGenerator: (item) => item.key,
      batchHandler: (items) => {
        batches.push(items.map((item) => item.n));
        return items.map((item) => item.n);
      },
    });
    const items = [
      { key: 1, n: 0 },
      { key: "1", n: 1 },
      { key: objA, n: 2 },
      { key: objB, n: 3 },
      { key: 1, n: 4 },
      { key: objA, n: 5 },
      { key: NaN, n: 6 },
      { key: NaN, n: 7 },
    ];
    assert.deepEqual(await Promise.all(items.map((item) => batcher.add(item))), [0, 1, 2, 3, 4, 5, 6, 7]);
    assert.deepEqual(
      batches.map((b) => b.join(",")).sort(),
      ["0,4", "1", "2,5", "3", "6,7"].sort(),
    );
    await batcher.close();
  });

  test("a group released while a same-tick add still refers to it never mixes keys", async () => {
    // Key "a" is interned for p1 while the only engine item of that group (p0) is cancelled in
    // the same tick: the engine releases the group, and key "b" must not inherit its id while
    // p1 (key "a") is still waiting to be handed over.
    const batches = [];
    const batcher = new RequestBatcher({
      maxBatchSize: 10,
      maxDelayMs: 20,
      keyGenerator: (item) => item.key,
      batchHandler: (items) => {
        batches.push(items.map((item) => item.key));
        return items.map((item) => item.value);
      },
    });
    const controller = new AbortController();
    const p0 = track(batcher.add({ key: "a", value: 0 }, { signal: controller.signal }));
    batcher.getStatus(); // hands p0 to the engine now
    const p1 = batcher.add({ key: "a", value: 1 });
    controller.abort();
    const p2 = batcher.add({ key: "b", value: 2 });
    assert.deepEqual(await Promise.all([p1, p2]), [1, 2]);
    assert.equal(p0.state, "rejected");
    assert.ok(p0.reason instanceof CancelledError);
    for (const batch of batches) assert.equal(new Set(batch).size, 1, `mixed keys in one batch: ${JSON.stringify(batches)}`);
    await batcher.close();
  });

  test("keys released after their batch and interned again keep grouping right", async () => {
    const batches = [];
    const batcher = new RequestBatcher({
      maxBatchSize: 3,
      maxDelayMs: 0,
      keyGenerator: (item) => item[0],
      batchHandler: (items) => {
        batches.push([...items]);
        return items;
      },
    });
    for (let round = 0; round < 5; round++) {
      const words = round % 2 === 0 ? ["a1", "b1", "a2", "c1", "b2"] : ["c2", "d1", "c3", "d2", "a3"];
      assert.deepEqual(await Promise.all(words.map((w) => batcher.add(w))), words);
    }
    for (const batch of batches) assert.equal(new Set(batch.map((w) => w[0])).size, 1, JSON.stringify(batches));
    await batcher.close();
  });

  test("results map to the right callers across many batches, async handler", async () => {
    const seenOrder = [];
    const batcher = new RequestBatcher({
      maxBatchSize: 7,
      maxDelayMs: 5,
      batchHandler: async (items) => {
        seenOrder.push(...items);
        await sleep((items[0] * 13) % 11); // batches finish out of order
        return items.map((x) => ({ x, square: x * x }));
      },
    });
    const inputs = Array.from({ length: 50 }, (_, i) => i);
    const results = await Promise.all(inputs.map((x) => batcher.add(x)));
    assert.deepEqual(
      results,
      inputs.map((x) => ({ x, square: x * x })),
    );
    assert.deepEqual(seenOrder, inputs, "the handler sees items in add order");
    await batcher.close();
  });
});

// ---- failures ------------------------------------------------------------------------------

describe("failures", () => {
  for (const [name, handler] of [
    ["throws synchronously", () => {
      throw new Error("sync boom");
    }],
    ["rejects asynchronously", async () => {
      await sleep(1);
      throw new Error("async boom");
    }],
  ]) {
    test(`a handler that ${name} rejects every item with the same error; errorHandler once`, async () => {
      const reports = [];
      const batcher = new RequestBatcher({
        maxBatchSize: 3,
        maxDelayMs: 1_000,
        batchHandler: handler,
        errorHandler: (error, items) => reports.push({ error, items: [...items] }),
      });
      const results = await Promise.allSettled([batcher.add("x"), batcher.add("y"), batcher.add("z")]);
      assert.equal(reports.length, 1);
      assert.deepEqual(reports[0].items, ["x", "y", "z"]);
      assert.ok(reports[0].error instanceof Error);
      for (const result of results) {
        assert.equal(result.status, "rejected");
        assert.equal(result.reason, reports[0].error, "every item is rejected with the handler's error");
      }
      const status = batcher.getStatus();
      assert.equal(status.failed, 3);
      assert.equal(status.processed, 0);
      assert.equal(status.processing, 0);
      await batcher.close();
    });
  }

  test("Error instances in the result array reject only their items", async () => {
    const reports = [];
    const itemError = new Error("item 1 failed");
    const batcher = new RequestBatcher({
      maxBatchSize: 3,
      maxDelayMs: 1_000,
      batchHandler: (items) => items.map((x) => (x === 1 ? itemError : x * 10)),
      errorHandler: (error, items) => reports.push({ error, items }),
    });
    const [a, b, c] = await Promise.allSettled([batcher.add(0), batcher.add(1), batcher.add(2)]);
    assert.deepEqual(a, { status: "fulfilled", value: 0 });
    assert.deepEqual(b, { status: "rejected", reason: itemError });
    assert.deepEqual(c, { status: "fulfilled", value: 20 });
    assert.equal(reports.length, 0, "an item error is not a batch failure");
    const status = batcher.getStatus();
    assert.equal(status.processed, 3);
    assert.equal(status.failed, 1);
    await batcher.close();
  });

  test("results map to callers when a batch's items are several id runs, one cancelled mid-run, one failed", async () => {
    // Keys alternate a a b a a b …: each key's batch is made of non-consecutive adds, so the
    // engine names it as several runs of ids; cancelling one item splits a run when it resolves.
    const gate = deferred();
    const handled = [];
    const batcher = new RequestBatcher({
      maxBatchSize: 6,
      maxDelayMs: 1_000,
      keyGenerator: (x) => x.key,
      batchHandler: async (items) => {
        handled.push(items.map((x) => x.n));
        await gate.promise;
        return items.map((x) => (x.n === 7 ? new Error(`item ${x.n} failed`) : x.n * 10));
      },
    });
    const controller = new AbortController();
    const pattern = ["a", "a", "b", "a", "a", "b", "a", "a", "b"];
    const settled = pattern.map((key, n) =>
      track(batcher.add({ key, n }, n === 3 ? { signal: controller.signal } : undefined)),
    );
    await turn();
    assert.deepEqual(handled, [[0, 1, 3, 4, 6, 7]], "key a's batch: ids 0-1, 3-4, 6-7");
    controller.abort("stop");
    gate.resolve();
    await batcher.flush();
    await sleep(5);
    for (const [n, t] of settled.entries()) {
      if (n === 3) {
        assert.ok(t.reason instanceof CancelledError, "item 3 was cancelled");
      } else if (n === 7) {
        assert.equal(t.state, "rejected");
        assert.equal(t.reason.message, "item 7 failed");
      } else {
        assert.equal(t.state, "fulfilled", `item ${n}`);
        assert.equal(t.value, n * 10, `item ${n} gets its own result`);
      }
      assert.equal(t.settlements, 1);
    }
    await batcher.close();
  });

  for (const [name, result, received] of [
    ["too short", (items) => items.slice(1), 2],
    ["too long", (items) => [...items, 0], 4],
    ["not an array", () => undefined, undefined],
  ]) {
    test(`a result array that is ${name} fails every item with BatchResultError, never retried`, async () => {
      let calls = 0;
      const reports = [];
      const batcher = new RequestBatcher({
        maxBatchSize: 3,
        maxDelayMs: 1_000,
        retry: { attempts: 3, backoffMs: 1 },
        batchHandler: (items) => {
          calls++;
          return result(items);
        },
        errorHandler: (error, items) => reports.push({ error, items: [...items] }),
      });
      const results = await Promise.allSettled([batcher.add(1), batcher.add(2), batcher.add(3)]);
      for (const r of results) {
        assert.equal(r.status, "rejected");
        assert.ok(r.reason instanceof BatchResultError, `got ${r.reason}`);
        assert.ok(r.reason instanceof BatchlingError);
        assert.equal(r.reason.code, "ERR_BATCHLING_RESULT_LENGTH");
        assert.equal(r.reason.expected, 3);
        assert.equal(r.reason.received, received);
        assert.match(r.reason.message, /one per item/);
      }
      await sleep(20);
      assert.equal(calls, 1, "a wrong-length result is not retried");
      assert.equal(reports.length, 1);
      assert.ok(reports[0].error instanceof BatchResultError);
      assert.deepEqual(reports[0].items, [1, 2, 3]);
      assert.equal(batcher.getStatus().retried, 0);
      assert.equal(batcher.getStatus().failed, 3);
      await batcher.close();
    });
  }

  test("a throwing errorHandler does not keep items from settling", async () => {
    let reports = 0;
    let fail = true;
    const batcher = new RequestBatcher({
      maxBatchSize: 2,
      maxDelayMs: 1_000,
      batchHandler: (items) => {
        if (fail) throw new Error("batch failed");
        return items;
      },
      errorHandler: () => {
        reports++;
        throw new Error("errorHandler blew up");
      },
    });
    const results = await Promise.allSettled([batcher.add(1), batcher.add(2)]);
    assert.deepEqual(
      results.map((r) => [r.status, r.reason?.message]),
      [
        ["rejected", "batch failed"],
        ["rejected", "batch failed"],
      ],
    );
    assert.equal(reports, 1);
    fail = false;
    assert.deepEqual(await Promise.all([batcher.add(3), batcher.add(4)]), [3, 4], "the batcher still works");
    await batcher.close();
  });

  test("a throwing keyGenerator rejects only that add", async () => {
    const batches = [];
    const keyError = new Error("no key for 'bad'");
    const batcher = new RequestBatcher({
      maxBatchSize: 10,
      maxDelayMs: 0,
      keyGenerator: (item) => {
        if (item === "bad") throw keyError;
        return "k";
      },
      batchHandler: (items) => {
        batches.push([...items]);
        return items.map((item) => item.toUpperCase());
      },
    });
    const results = await Promise.allSettled(["a", "bad", "b"].map((item) => batcher.add(item)));
    assert.deepEqual(results, [
      { status: "fulfilled", value: "A" },
      { status: "rejected", reason: keyError },
      { status: "fulfilled", value: "B" },
    ]);
    assert.deepEqual(batches, [["a", "b"]]);
    await batcher.close();
  });
});

// ---- retry ---------------------------------------------------------------------------------

describe("retry", () => {
  test("a batch failing twice then succeeding resolves every item; retried === 2", async () => {
    const attempts = [];
    const reports = [];
    const batcher = new RequestBatcher({
      maxBatchSize: 3,
      maxDelayMs: 1_000,
      retry: { attempts: 2, backoffMs: 5 },
      jitterSeed: 7,
      batchHandler: async (items) => {
        attempts.push([...items]);
        if (attempts.length <= 2) throw new Error(`attempt ${attempts.length}`);
        return double(items);
      },
      errorHandler: (error) => reports.push(error),
    });
    assert.deepEqual(await Promise.all([batcher.add(1), batcher.add(2), batcher.add(3)]), [2, 4, 6]);
    assert.deepEqual(attempts, [
      [1, 2, 3],
      [1, 2, 3],
      [1, 2, 3],
    ]);
    assert.equal(reports.length, 0, "a batch that eventually succeeds is not reported");
    const status = batcher.getStatus();
    assert.equal(status.retried, 2);
    assert.equal(status.batches, 1, "a retry is not a new batch");
    assert.equal(status.processed, 3);
    assert.equal(status.failed, 0);
    await batcher.close();
  });

  test("exhausted retries reject every item with the last error", async () => {
    const errors = [];
    const reports = [];
    const startedAt = [];
    const batcher = new RequestBatcher({
      maxBatchSize: 2,
      maxDelayMs: 1_000,
      retry: { attempts: 1, backoffMs: 30 },
      batchHandler: () => {
        startedAt.push(performance.now());
        const error = new Error(`attempt ${errors.length + 1}`);
        errors.push(error);
        throw error;
      },
      errorHandler: (error, items) => reports.push({ error, items: [...items] }),
    });
    const results = await Promise.allSettled([batcher.add("p"), batcher.add("q")]);
    assert.equal(errors.length, 2, "1 attempt + 1 retry");
    for (const r of results) {
      assert.equal(r.status, "rejected");
      assert.equal(r.reason, errors[1], "rejected with the last attempt's error");
    }
    assert.equal(reports.length, 1);
    assert.equal(reports[0].error, errors[1]);
    assert.deepEqual(reports[0].items, ["p", "q"]);
    // Backoff has jitter in [50%, 100%] of the step.
    const gap = startedAt[1] - startedAt[0];
    assert.ok(gap >= 15 - 2, `retried after ${gap.toFixed(1)} ms, before the backoff`);
    assert.equal(batcher.getStatus().retried, 1);
    assert.equal(batcher.getStatus().failed, 2);
    await batcher.close();
  });

  test("an item cancelled during backoff is left out of the retry", async () => {
    const attempts = [];
    const batcher = new RequestBatcher({
      maxBatchSize: 3,
      maxDelayMs: 1_000,
      retry: { attempts: 1, backoffMs: 40 },
      batchHandler: (items) => {
        attempts.push([...items]);
        if (attempts.length === 1) throw new Error("first");
        return items;
      },
    });
    const controller = new AbortController();
    const a = batcher.add("a");
    const b = track(batcher.add("b", { signal: controller.signal }));
    const c = batcher.add("c");
    await sleep(10); // first attempt failed, backing off
    assert.equal(attempts.length, 1);
    controller.abort();
    await turn();
    assert.equal(b.state, "rejected");
    assert.ok(b.reason instanceof CancelledError);
    assert.deepEqual(await Promise.all([a, c]), ["a", "c"]);
    assert.deepEqual(attempts, [
      ["a", "b", "c"],
      ["a", "c"],
    ]);
    await batcher.close();
  });
});

// ---- timeouts ------------------------------------------------------------------------------

describe("timeouts", () => {
  test("an item times out during a slow handler; the late result is dropped", async () => {
    const handlerDone = deferred();
    const batcher = new RequestBatcher({
      maxBatchSize: 10,
      maxDelayMs: 0,
      timeoutMs: 30,
      batchHandler: async (items) => {
        await sleep(120);
        handlerDone.resolve();
        return double(items);
      },
    });
    const t0 = performance.now();
    const states = [batcher.add(1), batcher.add(2)].map(track);
    await sleep(80);
    for (const s of states) {
      assert.equal(s.state, "rejected", "must time out while the handler still runs");
      assert.ok(s.reason instanceof TimeoutError);
      assert.ok(s.reason instanceof BatchlingError);
      assert.equal(s.reason.code, "ERR_BATCHLING_TIMEOUT");
      assert.equal(s.reason.timeoutMs, 30);
      const after = s.at - t0;
      assert.ok(after >= 28 && after < 80, `timed out after ${after.toFixed(1)} ms`);
    }
    assert.equal(batcher.getStatus().timedOut, 2);
    assert.equal(batcher.getStatus().processing, 0);
    await handlerDone.promise;
    await sleep(5);
    for (const s of states) {
      assert.equal(s.state, "rejected");
      assert.equal(s.settlements, 1);
    }
    const status = batcher.getStatus();
    assert.equal(status.processed, 0, "the late result is not counted");
    assert.equal(status.timedOut, 2);
    await batcher.close();
  });

  test("an item that times out while queued never reaches the handler", async () => {
    const seen = [];
    const batcher = new RequestBatcher({
      maxBatchSize: 10,
      maxDelayMs: 200,
      timeoutMs: 25,
      batchHandler: (items) => {
        seen.push(...items);
        return items;
      },
    });
    const s = track(batcher.add("late"));
    await sleep(60);
    assert.equal(s.state, "rejected");
    assert.ok(s.reason instanceof TimeoutError);
    assert.equal(batcher.getStatus().pending, 0);
    await batcher.flush();
    await batcher.close();
    assert.deepEqual(seen, []);
    assert.equal(batcher.getStatus().batches, 0, "a group emptied by timeouts is not cut");
  });
});

// ---- cancellation --------------------------------------------------------------------------

describe("cancellation", () => {
  test("an already aborted signal rejects with CancelledError at once", async () => {
    let calls = 0;
    const batcher = new RequestBatcher({
      maxBatchSize: 10,
      maxDelayMs: 0,
      batchHandler: (items) => {
        calls++;
        return items;
      },
    });
    const reason = new Error("user left");
    const s = track(batcher.add(1, { signal: AbortSignal.abort(reason) }));
    await Promise.resolve();
    await Promise.resolve();
    assert.equal(s.state, "rejected", "rejects within the same tick");
    assert.ok(s.reason instanceof CancelledError);
    assert.ok(s.reason instanceof BatchlingError);
    assert.equal(s.reason.code, "ERR_BATCHLING_CANCELLED");
    assert.equal(s.reason.cause, reason);
    await batcher.flush();
    await batcher.close();
    assert.equal(calls, 0);
    assert.equal(batcher.getStatus().pending, 0);
  });

  test("cancelling a queued item rejects it at once and the handler never sees it", async () => {
    const batches = [];
    const batcher = new RequestBatcher({
      maxBatchSize: 10,
      maxDelayMs: 40,
      batchHandler: (items) => {
        batches.push([...items]);
        return items;
      },
    });
    const controller = new AbortController();
    const a = batcher.add("a");
    const b = track(batcher.add("b", { signal: controller.signal }));
    const c = batcher.add("c");
    await sleep(5);
    controller.abort();
    await Promise.resolve();
    await Promise.resolve();
    assert.equal(b.state, "rejected");
    assert.ok(b.reason instanceof CancelledError);
    assert.equal(batcher.getStatus().cancelled, 1);
    assert.equal(batcher.getStatus().pending, 2);
    assert.deepEqual(await Promise.all([a, c]), ["a", "c"]);
    assert.deepEqual(batches, [["a", "c"]]);
    await batcher.close();
  });

  for (const [label, maxBatchSize, maxDelayMs] of [
    ["maxDelayMs 0", 10, 0],
    ["the add fills a batch", 2, 50],
  ]) test(`cancelling an item in the same tick as its add keeps it from the handler (${label})`, async () => {
    const seen = [];
    const batcher = new RequestBatcher({
      maxBatchSize,
      maxDelayMs,
      batchHandler: (items) => {
        seen.push(...items);
        return items;
      },
    });
    const controller = new AbortController();
    const a = batcher.add("a");
    const b = batcher.add("b", { signal: controller.signal });
    controller.abort();
    const [ra, rb] = await Promise.allSettled([a, b]);
    assert.deepEqual(ra, { status: "fulfilled", value: "a" });
    assert.equal(rb.status, "rejected");
    assert.ok(rb.reason instanceof CancelledError);
    assert.deepEqual(seen, ["a"]);
    await batcher.close();
  });

  test("cancelling an in-flight item rejects it at once; its late result is dropped", async () => {
    const gate = deferred();
    let started = false;
    const batcher = new RequestBatcher({
      maxBatchSize: 2,
      maxDelayMs: 1_000,
      batchHandler: async (items) => {
        started = true;
        await gate.promise;
        return double(items);
      },
    });
    const controller = new AbortController();
    const a = track(batcher.add(1, { signal: controller.signal }));
    const b = track(batcher.add(2));
    await turn();
    assert.ok(started);
    assert.equal(batcher.getStatus().processing, 2);
    controller.abort("stop");
    await Promise.resolve();
    await Promise.resolve();
    assert.equal(a.state, "rejected", "rejects before the handler returns");
    assert.ok(a.reason instanceof CancelledError);
    assert.equal(a.reason.cause, "stop");
    assert.equal(batcher.getStatus().processing, 1);
    gate.resolve();
    await sleep(5);
    assert.equal(a.state, "rejected");
    assert.equal(a.settlements, 1);
    assert.equal(b.state, "fulfilled");
    assert.equal(b.value, 4);
    const status = batcher.getStatus();
    assert.equal(status.cancelled, 1);
    assert.equal(status.processed, 1, "only the live item is processed");
    await batcher.close();
  });

  test("a shared AbortSignal keeps no listener for items that have settled", async () => {
    const batcher = new RequestBatcher({ maxBatchSize: 10, maxDelayMs: 0, maxQueueSize: 4, batchHandler: double });
    const controller = new AbortController();
    const { signal } = controller;
    // Resolved items, one tick at a time…
    for (let i = 0; i < 12; i++) assert.equal(await batcher.add(i, { signal }), i * 2);
    // …and items refused because the queue is full.
    const burst = await Promise.allSettled(Array.from({ length: 6 }, (_, i) => batcher.add(i, { signal })));
    assert.equal(burst.filter((r) => r.reason instanceof QueueFullError).length, 2);
    assert.equal(getEventListeners(signal, "abort").length, 0, "abort listeners leak on a shared signal");
    controller.abort();
    await turn();
    assert.equal(batcher.getStatus().cancelled, 0);
    await batcher.close();
  });

  test("aborting after the item settled changes nothing", async () => {
    const batcher = new RequestBatcher({ maxBatchSize: 1, maxDelayMs: 0, batchHandler: double });
    const controller = new AbortController();
    assert.equal(await batcher.add(5, { signal: controller.signal }), 10);
    controller.abort();
    await turn();
    assert.equal(batcher.getStatus().cancelled, 0);
    assert.equal(batcher.getStatus().processed, 1);
    await batcher.close();
  });
});

// ---- queue limit ---------------------------------------------------------------------------

describe("queue limit", () => {
  test("the add beyond maxQueueSize rejects with QueueFullError; adds work again after draining", async () => {
    const batches = [];
    const batcher = new RequestBatcher({
      maxBatchSize: 10,
      maxDelayMs: 20,
      maxQueueSize: 3,
      batchHandler: (items) => {
        batches.push([...items]);
        return double(items);
      },
    });
    const results = await Promise.allSettled([1, 2, 3, 4, 5].map((i) => batcher.add(i)));
    assert.deepEqual(
      results.slice(0, 3).map((r) => r.value),
      [2, 4, 6],
    );
    for (const r of results.slice(3)) {
      assert.equal(r.status, "rejected");
      assert.ok(r.reason instanceof QueueFullError);
      assert.ok(r.reason instanceof BatchlingError);
      assert.equal(r.reason.code, "ERR_BATCHLING_QUEUE_FULL");
      assert.match(r.reason.message, /\b3\b/);
    }
    assert.equal(batcher.getStatus().rejected, 2);
    assert.deepEqual(batches, [[1, 2, 3]], "refused items never reach the handler");
    assert.deepEqual(await Promise.all([6, 7, 8].map((i) => batcher.add(i))), [12, 14, 16]);
    await batcher.close();
  });

  test("items of a running batch do not count toward maxQueueSize", async () => {
    const gate = deferred();
    const batcher = new RequestBatcher({
      maxBatchSize: 2,
      maxDelayMs: 1_000,
      maxQueueSize: 2,
      batchHandler: async (items) => {
        await gate.promise;
        return items;
      },
    });
    const first = [batcher.add("a"), batcher.add("b")]; // cut and running
    await turn();
    assert.equal(batcher.getStatus().processing, 2);
    const second = [batcher.add("c"), batcher.add("d")];
    await turn();
    const third = track(batcher.add("e"));
    await turn();
    // c, d were cut as a full batch and run at once (no concurrency limit): the queue is empty.
    assert.equal(third.state, "pending");
    gate.resolve();
    assert.deepEqual(await Promise.all([...first, ...second]), ["a", "b", "c", "d"]);
    await batcher.close();
    assert.equal(third.state, "fulfilled");
  });
});

describe("queue statistics", () => {
  const queueOf = (batcher) => {
    const { queueSize, maxQueueSize, isQueueFull, isQueueEmpty } = batcher.getStatus();
    return { queueSize, maxQueueSize, isQueueFull, isQueueEmpty };
  };

  test("queueSize counts items added and not yet running; isQueueFull is when the next add is refused", async () => {
    let gate = deferred();
    const batcher = new RequestBatcher({
      maxBatchSize: 2,
      maxDelayMs: 10_000,
      maxQueueSize: 3,
      maxConcurrentBatches: 1,
      batchHandler: async (items) => {
        await gate.promise;
        return items;
      },
    });
    assert.deepEqual(queueOf(batcher), { queueSize: 0, maxQueueSize: 3, isQueueFull: false, isQueueEmpty: true });
    const running = [batcher.add("a"), batcher.add("b")]; // a full batch: cut and running
    assert.deepEqual(queueOf(batcher), { queueSize: 0, maxQueueSize: 3, isQueueFull: false, isQueueEmpty: true });
    assert.equal(batcher.getStatus().processing, 2);
    const queued = [batcher.add("c")];
    assert.deepEqual(queueOf(batcher), { queueSize: 1, maxQueueSize: 3, isQueueFull: false, isQueueEmpty: false });
    queued.push(batcher.add("d"), batcher.add("e")); // c, d cut but waiting for the one slot; e in its group
    assert.deepEqual(queueOf(batcher), { queueSize: 3, maxQueueSize: 3, isQueueFull: true, isQueueEmpty: false });
    assert.equal(batcher.getStatus().pending, 3, "queueSize is the pending count");
    await assert.rejects(batcher.add("f"), QueueFullError, "a full queue refuses the next add");
    assert.equal(queueOf(batcher).isQueueFull, true, "a refused add changes nothing");
    gate.resolve();
    assert.deepEqual(await Promise.all(running), ["a", "b"]);
    await turn();
    // c, d run now; e waits for its window.
    assert.deepEqual(queueOf(batcher), { queueSize: 1, maxQueueSize: 3, isQueueFull: false, isQueueEmpty: false });
    gate = deferred();
    gate.resolve();
    await batcher.close();
    assert.deepEqual(await Promise.all(queued), ["c", "d", "e"]);
    assert.deepEqual(queueOf(batcher), { queueSize: 0, maxQueueSize: 3, isQueueFull: false, isQueueEmpty: true });
  });

  test("without maxQueueSize the queue is never full", async () => {
    const batcher = new RequestBatcher({ maxBatchSize: 10_000, maxDelayMs: 10_000, batchHandler: (items) => items });
    const added = Array.from({ length: 5_000 }, (_, i) => batcher.add(i));
    assert.deepEqual(queueOf(batcher), { queueSize: 5_000, maxQueueSize: null, isQueueFull: false, isQueueEmpty: false });
    await batcher.close();
    assert.equal((await Promise.all(added)).length, 5_000);
    assert.deepEqual(queueOf(batcher), { queueSize: 0, maxQueueSize: null, isQueueFull: false, isQueueEmpty: true });
  });

  test("a batch waiting for its retry takes no queue room", async () => {
    let calls = 0;
    const gate = deferred();
    const batcher = new RequestBatcher({
      maxBatchSize: 2,
      maxDelayMs: 10_000,
      maxQueueSize: 2,
      retry: { attempts: 1, backoffMs: 30, maxBackoffMs: 30 },
      jitterSeed: 1,
      batchHandler: async (items) => {
        if (calls++ === 0) throw new Error("transient");
        await gate.promise;
        return items;
      },
    });
    const first = [batcher.add("a"), batcher.add("b")];
    await turn();
    await turn();
    assert.equal(batcher.getStatus().retried, 1, "the first attempt failed and waits for its retry");
    assert.deepEqual(queueOf(batcher), { queueSize: 0, maxQueueSize: 2, isQueueFull: false, isQueueEmpty: true });
    const more = [batcher.add("c")];
    assert.deepEqual(queueOf(batcher), { queueSize: 1, maxQueueSize: 2, isQueueFull: false, isQueueEmpty: false });
    gate.resolve();
    assert.deepEqual(await Promise.all(first), ["a", "b"]);
    await batcher.close();
    assert.deepEqual(await Promise.all(more), ["c"]);
  });
});

// ---- concurrency ---------------------------------------------------------------------------

describe("maxConcurrentBatches", () => {
  test("never more than K handlers run at once; batches start in cut order", async () => {
    let active = 0;
    let maxActive = 0;
    const starts = [];
    const batcher = new RequestBatcher({
      maxBatchSize: 5,
      maxDelayMs: 1_000,
      maxConcurrentBatches: 2,
      batchHandler: async (items) => {
        active++;
        maxActive = Math.max(maxActive, active);
        starts.push(items[0]);
        await sleep(15);
        active--;
        return double(items);
      },
    });
    const inputs = Array.from({ length: 40 }, (_, i) => i);
    const promises = inputs.map((i) => batcher.add(i));
    await turn();
    const status = batcher.getStatus();
    assert.equal(status.processing, 10, "two batches run");
    assert.equal(status.pending, 30, "the rest wait for a slot");
    assert.deepEqual(await Promise.all(promises), inputs.map((i) => i * 2));
    assert.equal(maxActive, 2);
    assert.deepEqual(starts, [0, 5, 10, 15, 20, 25, 30, 35]);
    await batcher.close();
  });
});

// ---- flush ---------------------------------------------------------------------------------

describe("flush", () => {
  test("flush cuts pending groups now and resolves once they settled", async () => {
    const batches = [];
    const batcher = new RequestBatcher({
      maxBatchSize: 10,
      maxDelayMs: 10_000,
      keyGenerator: (item) => item[0],
      batchHandler: async (items) => {
        batches.push([...items]);
        await sleep(10);
        return items;
      },
    });
    const states = ["a1", "b1", "a2"].map((item) => track(batcher.add(item)));
    const t0 = performance.now();
    await batcher.flush();
    assert.ok(performance.now() - t0 < 1_000);
    await Promise.resolve();
    for (const s of states) assert.equal(s.state, "fulfilled");
    assert.deepEqual(batches, [["a1", "a2"], ["b1"]]);
    await batcher.flush(); // nothing pending: resolves at once
    await batcher.close();
  });

  test("concurrent flushes with adds in between all resolve; every item settles once", async () => {
    let calls = 0;
    const batcher = new RequestBatcher({
      maxBatchSize: 4,
      maxDelayMs: 10_000,
      batchHandler: async (items) => {
        calls++;
        await sleep((items[0] % 3) * 4);
        return double(items);
      },
    });
    const states = [];
    const flushes = [];
    let next = 0;
    const addSome = (n) => {
      const from = next;
      for (let i = 0; i < n; i++) states.push(track(batcher.add(next++)));
      return from + n; // items below this index were added before the next flush
    };
    for (let round = 0; round < 6; round++) {
      const before = addSome(round + 1);
      flushes.push(
        batcher.flush().then(() => {
          for (let i = 0; i < before; i++) {
            // The flush promise resolves only after items added before it settled. Promise
            // reactions run in order, so an item settled before this point is already visible.
            assert.notEqual(states[i].state, "pending", `flush ${round} resolved before item ${i} settled`);
          }
        }),
      );
      if (round % 2 === 1) await turn();
    }
    flushes.push(batcher.flush(), batcher.flush());
    await Promise.all(flushes);
    await batcher.close();
    await turn();
    assert.equal(states.length, 21);
    states.forEach((s, i) => {
      assert.equal(s.settlements, 1);
      assert.equal(s.value, i * 2);
    });
    assert.ok(calls >= 6);
  });
});

// ---- close ---------------------------------------------------------------------------------

describe("close", () => {
  test("close() drains pending items, then resolves; later adds reject with ClosedError", async () => {
    const batches = [];
    const batcher = new RequestBatcher({
      maxBatchSize: 10,
      maxDelayMs: 10_000,
      batchHandler: async (items) => {
        batches.push([...items]);
        await sleep(10);
        return double(items);
      },
    });
    const states = [1, 2, 3].map((i) => track(batcher.add(i)));
    assert.equal(batcher.closed, false);
    const t0 = performance.now();
    await batcher.close();
    assert.ok(performance.now() - t0 < 1_000, "close does not wait for maxDelayMs");
    assert.equal(batcher.closed, true);
    await Promise.resolve();
    assert.deepEqual(
      states.map((s) => s.value),
      [2, 4, 6],
    );
    assert.deepEqual(batches, [[1, 2, 3]]);
    const late = await Promise.allSettled([batcher.add(4)]);
    assert.equal(late[0].status, "rejected");
    assert.ok(late[0].reason instanceof ClosedError);
    assert.ok(late[0].reason instanceof BatchlingError);
    assert.equal(late[0].reason.code, "ERR_BATCHLING_CLOSED");
    assert.equal(batcher.getStatus().rejected, 1);
    assert.equal(batches.length, 1);
    await batcher.close(); // closing twice is harmless
  });

  test("close() on an idle batcher resolves at once", async () => {
    const batcher = new RequestBatcher({ maxBatchSize: 1, maxDelayMs: 0, batchHandler: double });
    await batcher.close();
    assert.equal(batcher.closed, true);
  });

  test("close({ abort: true }) rejects pending and in-flight items with ClosedError", async () => {
    const gate = deferred();
    let calls = 0;
    const batcher = new RequestBatcher({
      maxBatchSize: 2,
      maxDelayMs: 10_000,
      batchHandler: async (items) => {
        calls++;
        await gate.promise;
        return double(items);
      },
    });
    const inFlight = [1, 2].map((i) => track(batcher.add(i)));
    const queued = track(batcher.add(3));
    await turn();
    assert.equal(batcher.getStatus().processing, 2);
    assert.equal(batcher.getStatus().pending, 1);
    await batcher.close({ abort: true });
    await Promise.resolve();
    for (const s of [...inFlight, queued]) {
      assert.equal(s.state, "rejected");
      assert.ok(s.reason instanceof ClosedError);
    }
    const status = batcher.getStatus();
    assert.equal(status.pending, 0);
    assert.equal(status.processing, 0);
    assert.equal(status.rejected, 3);
    gate.resolve();
    await sleep(5);
    for (const s of [...inFlight, queued]) {
      assert.equal(s.state, "rejected", "the late result is dropped");
      assert.equal(s.settlements, 1);
    }
    assert.equal(calls, 1, "the queued item never runs");
    assert.equal(batcher.getStatus().processed, 0);
  });

  test("close({ abort: true }) during a draining close() rejects what is left", async () => {
    const gate = deferred();
    const batcher = new RequestBatcher({
      maxBatchSize: 1,
      maxDelayMs: 10_000,
      maxConcurrentBatches: 1,
      batchHandler: async (items) => {
        await gate.promise;
        return items;
      },
    });
    const states = ["a", "b", "c"].map((x) => track(batcher.add(x)));
    const draining = track(batcher.close());
    await turn();
    assert.equal(draining.state, "pending", "drain waits for the running handler");
    await batcher.close({ abort: true });
    await turn();
    assert.equal(draining.state, "fulfilled");
    for (const s of states) assert.ok(s.reason instanceof ClosedError);
    gate.resolve();
  });
});

// ---- status --------------------------------------------------------------------------------

describe("getStatus", () => {
  test("counters are right at every stage", async () => {
    let gate = deferred();
    const itemError = new Error("bad item");
    const batcher = new RequestBatcher({
      maxBatchSize: 10,
      maxDelayMs: 10_000,
      batchHandler: async (items) => {
        await gate.promise;
        return items.map((x) => (x === "bad" ? itemError : x));
      },
    });
    const { lastBatchTime, ...initial } = batcher.getStatus();
    assert.equal(lastBatchTime, undefined, "no batch cut yet");
    assert.deepEqual(initial, {
      pending: 0,
      processing: 0,
      processed: 0,
      failed: 0,
      batches: 0,
      averageBatchSize: 0,
      retried: 0,
      rejected: 0,
      cancelled: 0,
      timedOut: 0,
      queueSize: 0,
      maxQueueSize: null,
      isQueueFull: false,
      isQueueEmpty: true,
    });
    const first = ["a", "bad", "c"].map((x) => batcher.add(x));
    let status = batcher.getStatus();
    assert.equal(status.pending, 3, "adds of this tick are counted");
    assert.equal(status.batches, 0);
    const flushed = batcher.flush();
    const cutAt = performance.now();
    status = batcher.getStatus();
    assert.equal(status.pending, 0);
    assert.equal(status.processing, 3);
    assert.equal(status.batches, 1);
    assert.equal(status.averageBatchSize, 3);
    assert.equal(typeof status.lastBatchTime, "number");
    assert.ok(Math.abs(status.lastBatchTime - cutAt) <= 5, "lastBatchTime is the cut's performance.now()");
    const firstCutTime = status.lastBatchTime;
    gate.resolve();
    await flushed;
    await Promise.allSettled(first);
    status = batcher.getStatus();
    assert.equal(status.processing, 0);
    assert.equal(status.processed, 3);
    assert.equal(status.failed, 1);

    gate = deferred();
    gate.resolve();
    await sleep(12);
    const second = batcher.add("d");
    await batcher.flush();
    assert.equal(await second, "d");
    status = batcher.getStatus();
    assert.equal(status.batches, 2);
    assert.equal(status.averageBatchSize, 2);
    assert.ok(status.lastBatchTime >= firstCutTime + 8, "lastBatchTime moves with each cut");
    assert.equal(status.processed, 4);
    await batcher.close();
  });
});

// ---- scale and exactly-once ----------------------------------------------------------------

describe("scale and exactly-once", () => {
  test("100 000 concurrent adds with maxBatchSize 100: 1000 handler calls, right values", async () => {
    let calls = 0;
    let wrongSize = 0;
    const batcher = new RequestBatcher({
      maxBatchSize: 100,
      maxDelayMs: 1_000,
      batchHandler: (items) => {
        calls++;
        if (items.length !== 100) wrongSize++;
        return items.map((x) => x + 1);
      },
    });
    const n = 100_000;
    const promises = new Array(n);
    for (let i = 0; i < n; i++) promises[i] = batcher.add(i);
    const results = await Promise.all(promises);
    assert.equal(calls, 1000);
    assert.equal(wrongSize, 0);
    for (let i = 0; i < n; i++) if (results[i] !== i + 1) assert.fail(`item ${i} got ${results[i]}`);
    const status = batcher.getStatus();
    assert.equal(status.processed, n);
    assert.equal(status.batches, 1000);
    assert.equal(status.averageBatchSize, 100);
    await batcher.close();
  });

  for (const seed of [1, 2, 3]) {
    test(`every promise settles exactly once under random cancels, timeouts and failures (seed ${seed})`, async () => {
      const random = prng(seed);
      const n = 600;
      const items = Array.from({ length: n }, (_, id) => ({ id, key: id % 4 }));
      const settledIds = new Set();
      let seenSettled = 0;
      const batchErrors = new Set();
      const itemErrors = new Map();
      const batcher = new RequestBatcher({
        maxBatchSize: 8,
        maxDelayMs: 3,
        maxConcurrentBatches: 20,
        timeoutMs: 60,
        retry: { attempts: 1, backoffMs: 2 },
        jitterSeed: seed,
        keyGenerator: (item) => item.key,
        batchHandler: async (batch) => {
          for (const item of batch) if (settledIds.has(item.id)) seenSettled++;
          const roll = random();
          await sleep(random() < 0.1 ? 80 : Math.floor(random() * 25));
          if (roll < 0.35) {
            const error = new Error(`batch of ${batch[0].id} failed`);
            batchErrors.add(error);
            throw error;
          }
          return batch.map((item) => {
            if (random() < 0.1) {
              const error = new Error(`item ${item.id} failed`);
              itemErrors.set(item.id, error);
              return error;
            }
            return item.id * 3;
          });
        },
      });
      const states = new Array(n);
      const controllers = new Array(n);
      let preAborted = 0;
      for (let i = 0; i < n; i++) {
        const r = random();
        let signal;
        if (r < 0.05) {
          signal = AbortSignal.abort();
          preAborted++;
        } else if (r < 0.25) {
          controllers[i] = new AbortController();
          signal = controllers[i].signal;
        }
        const promise = batcher.add(items[i], { signal });
        states[i] = track(promise);
        promise.then(
          () => settledIds.add(i),
          () => settledIds.add(i),
        );
        if (controllers[i]) {
          const controller = controllers[i];
          setTimeout(() => controller.abort(), Math.floor(random() * 70));
        }
        if (random() < 0.05) await sleep(Math.floor(random() * 10));
      }
      await sleep(75); // every abort timer has fired
      await batcher.close();
      await turn();

      let resolved = 0;
      let itemFailed = 0;
      let batchFailed = 0;
      let cancelled = 0;
      let timedOut = 0;
      for (let i = 0; i < n; i++) {
        const s = states[i];
        assert.equal(s.settlements, 1, `item ${i} settled ${s.settlements} times`);
        if (s.state === "fulfilled") {
          assert.equal(s.value, i * 3);
          resolved++;
        } else if (s.reason instanceof CancelledError) cancelled++;
        else if (s.reason instanceof TimeoutError) timedOut++;
        else if (itemErrors.has(i) && itemErrors.get(i) === s.reason) itemFailed++;
        else if (batchErrors.has(s.reason)) batchFailed++;
        else assert.fail(`item ${i} rejected with an unexpected reason: ${s.reason}`);
      }
      assert.equal(resolved + itemFailed + batchFailed + cancelled + timedOut, n);
      assert.equal(seenSettled, 0, "the handler never receives an item that has already settled");
      // Each outcome kind must actually have happened, or the test proves little.
      assert.ok(resolved > 0 && cancelled > preAborted && timedOut > 0 && batchFailed > 0 && itemFailed > 0,
        JSON.stringify({ resolved, itemFailed, batchFailed, cancelled, timedOut }));
      const status = batcher.getStatus();
      assert.equal(status.pending, 0);
      assert.equal(status.processing, 0);
      assert.equal(status.processed, resolved + itemFailed);
      assert.equal(status.failed, itemFailed + batchFailed);
      assert.equal(status.cancelled, cancelled - preAborted, "engine-side cancels");
      assert.equal(status.timedOut, timedOut);
    });
  }
});

// ---- re-entrancy ---------------------------------------------------------------------------

describe("re-entrancy", () => {
  test("getStatus() called inside batchHandler does not lose the delay timer of a new add", async () => {
    const maxDelayMs = 20;
    let inner;
    let innerAddedAt;
    let innerRanAt;
    const batcher = new RequestBatcher({
      maxBatchSize: 10,
      maxDelayMs,
      batchHandler: async (items) => {
        if (items[0] === "outer") {
          innerAddedAt = performance.now();
          inner = batcher.add("inner");
          batcher.getStatus(); // hands "inner" to the engine from inside the handler
          await sleep(400);
        } else {
          innerRanAt = performance.now();
        }
        return items;
      },
    });
    assert.equal(await batcher.add("outer"), "outer");
    assert.equal(await inner, "inner");
    const waited = innerRanAt - innerAddedAt;
    assert.ok(waited < maxDelayMs + 150, `inner item waited ${waited.toFixed(1)} ms for a ${maxDelayMs} ms window`);
    await batcher.close();
  });
});

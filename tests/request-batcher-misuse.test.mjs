// Misuse of RequestBatcher: every invalid option fails fast, in the constructor, with an
// InvalidOptionError that names the option and says what is allowed.
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import {
  RequestBatcher,
  BatchlingError,
  InvalidOptionError,
  QueueFullError,
  ClosedError,
  TimeoutError,
  CancelledError,
  BatchResultError,
} from "../dist/index.js";

const handler = (items) => items;
const valid = () => ({ maxBatchSize: 10, maxDelayMs: 5, batchHandler: handler });
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Construct with `options` and check the InvalidOptionError it must throw. */
function expectInvalid(options, option, allowed) {
  let thrown;
  try {
    new RequestBatcher(options);
  } catch (error) {
    thrown = error;
  }
  assert.ok(thrown, `expected InvalidOptionError for \`${option}\`, but the constructor accepted the options`);
  assert.ok(thrown instanceof InvalidOptionError, `expected InvalidOptionError, got ${thrown}`);
  assert.ok(thrown instanceof BatchlingError);
  assert.ok(thrown instanceof Error);
  assert.equal(thrown.name, "InvalidOptionError");
  assert.equal(thrown.code, "ERR_BATCHLING_INVALID_OPTION");
  assert.equal(thrown.option, option);
  assert.ok(thrown.message.includes(`\`${option}\``), `message names the option: ${thrown.message}`);
  assert.match(thrown.message, allowed);
  return thrown;
}

/** Replace (or with `undefined`, delete) one option of a valid set. */
function withOption(name, value) {
  const options = valid();
  if (value === undefined) delete options[name];
  else options[name] = value;
  return options;
}

describe("options object", () => {
  for (const [label, options] of [
    ["missing", undefined],
    ["null", null],
    ["a number", 42],
    ["a string", "maxBatchSize=10"],
    ["a function", handler],
  ]) {
    test(`options ${label}`, () => {
      expectInvalid(options, "options", /options object.*maxBatchSize.*maxDelayMs.*batchHandler/);
    });
  }
});

describe("required options", () => {
  for (const value of [0, -1, 1.5, "10", undefined, NaN, Infinity, null, true, 10n]) {
    test(`maxBatchSize ${typeof value === "bigint" ? `${value}n` : String(value)} (${typeof value})`, () => {
      const error = expectInvalid(withOption("maxBatchSize", value), "maxBatchSize", /integer >= 1/);
      if (value === undefined) assert.match(error.message, /required/);
    });
  }

  for (const value of [-1, -0.5, 2.5, "5", undefined, NaN, -Infinity]) {
    test(`maxDelayMs ${String(value)} (${typeof value})`, () => {
      const error = expectInvalid(withOption("maxDelayMs", value), "maxDelayMs", /integer >= 0/);
      if (value === undefined) assert.match(error.message, /required/);
    });
  }

  for (const value of [undefined, "items => items", {}, 1, null]) {
    test(`batchHandler ${String(value)} (${typeof value})`, () => {
      expectInvalid(withOption("batchHandler", value), "batchHandler", /must be a function/);
    });
  }

  test("maxBatchSize 1 and maxDelayMs 0 are the smallest allowed values", async () => {
    const batcher = new RequestBatcher({ maxBatchSize: 1, maxDelayMs: 0, batchHandler: handler });
    assert.deepEqual(await Promise.all([batcher.add("a"), batcher.add("b")]), ["a", "b"]);
    assert.equal(batcher.getStatus().batches, 2);
    await batcher.close();
  });
});

describe("optional options", () => {
  for (const [name, value] of [
    ["keyGenerator", "id"],
    ["keyGenerator", { key: "id" }],
    ["errorHandler", 1],
    ["errorHandler", "console.error"],
  ]) {
    test(`${name} ${JSON.stringify(value)}`, () => {
      expectInvalid(withOption(name, value), name, /must be a function/);
    });
  }

  for (const [name, value] of [
    ["maxQueueSize", 0],
    ["maxQueueSize", -5],
    ["maxQueueSize", 2.5],
    ["maxConcurrentBatches", 0],
    ["maxConcurrentBatches", "2"],
    ["timeoutMs", 0],
    ["timeoutMs", -100],
    ["timeoutMs", 0.5],
  ]) {
    test(`${name} ${JSON.stringify(value)}`, () => {
      expectInvalid(withOption(name, value), name, /integer >= 1/);
    });
  }

  for (const value of [-1, 1.5, 2 ** 60, "7"]) {
    test(`jitterSeed ${String(value)}`, () => {
      expectInvalid(withOption("jitterSeed", value), "jitterSeed", /non-negative integer/);
    });
  }

  test("explicitly undefined optional options are the same as omitted", async () => {
    const batcher = new RequestBatcher({
      ...valid(),
      keyGenerator: undefined,
      errorHandler: undefined,
      maxQueueSize: undefined,
      maxConcurrentBatches: undefined,
      retry: undefined,
      timeoutMs: undefined,
      jitterSeed: undefined,
    });
    assert.equal(await batcher.add(3), 3);
    await batcher.close();
  });
});

describe("retry options", () => {
  for (const value of ["3", 3, null, true]) {
    test(`retry ${JSON.stringify(value)}`, () => {
      expectInvalid(withOption("retry", value), "retry", /must be an object.*attempts/);
    });
  }

  test("retry.attempts missing", () => {
    const error = expectInvalid(withOption("retry", { backoffMs: 10 }), "retry.attempts", /integer >= 0/);
    assert.match(error.message, /required/);
  });

  for (const value of [-1, 1.5, "2"]) {
    test(`retry.attempts ${JSON.stringify(value)}`, () => {
      expectInvalid(withOption("retry", { attempts: value }), "retry.attempts", /integer >= 0/);
    });
  }

  test("retry.backoffMs negative", () => {
    expectInvalid(withOption("retry", { attempts: 1, backoffMs: -1 }), "retry.backoffMs", /integer >= 0/);
  });

  test("retry.maxBackoffMs negative", () => {
    expectInvalid(withOption("retry", { attempts: 1, maxBackoffMs: -1 }), "retry.maxBackoffMs", /integer >= 0/);
  });

  test("retry.maxBackoffMs < retry.backoffMs (checked by the engine, re-thrown as InvalidOptionError)", () => {
    expectInvalid(
      withOption("retry", { attempts: 2, backoffMs: 100, maxBackoffMs: 50 }),
      "retry.maxBackoffMs",
      /at least retry\.backoffMs/,
    );
  });

  test("retry.maxBackoffMs equal to retry.backoffMs is allowed", async () => {
    let calls = 0;
    const batcher = new RequestBatcher({
      ...valid(),
      maxDelayMs: 0,
      retry: { attempts: 1, backoffMs: 3, maxBackoffMs: 3 },
      batchHandler: (items) => {
        if (++calls === 1) throw new Error("once");
        return items;
      },
    });
    assert.equal(await batcher.add("x"), "x");
    assert.equal(calls, 2);
    await batcher.close();
  });

  test("a misspelt retry option (backofMs) is reported, not silently ignored", () => {
    expectInvalid(withOption("retry", { attempts: 1, backofMs: 5 }), "retry.backofMs", /unknown option/);
  });
});

describe("unknown options", () => {
  for (const typo of ["maxBatchSise", "timeOutMs", "maxQueue", "onError"]) {
    test(`unknown option ${typo} next to valid ones`, () => {
      const error = expectInvalid({ ...valid(), [typo]: 10 }, typo, /unknown option/);
      // The message lists what is allowed.
      for (const known of ["maxBatchSize", "maxDelayMs", "batchHandler", "timeoutMs", "maxQueueSize", "retry"]) {
        assert.ok(error.message.includes(known), `message lists ${known}: ${error.message}`);
      }
    });
  }

  test("a typo in place of a required option still names the missing option", () => {
    const options = { maxBatchSise: 10, maxDelayMs: 5, batchHandler: handler };
    expectInvalid(options, "maxBatchSize", /required/);
  });
});

describe("values the native engine cannot hold", () => {
  // The JS checks accept any integer, but the binding takes u32 for counts: a larger value must
  // be refused (or honoured), never silently wrapped modulo 2^32.
  test("maxBatchSize 2^32 + 2 is refused or honoured, not wrapped to 2", async () => {
    const sizes = [];
    let batcher;
    try {
      batcher = new RequestBatcher({
        maxBatchSize: 2 ** 32 + 2,
        maxDelayMs: 10,
        batchHandler: (items) => {
          sizes.push(items.length);
          return items;
        },
      });
    } catch (error) {
      assert.ok(error instanceof InvalidOptionError);
      assert.equal(error.option, "maxBatchSize");
      return;
    }
    await Promise.all([1, 2, 3, 4, 5].map((i) => batcher.add(i)));
    assert.deepEqual(sizes, [5], "5 items in one tick form one batch when maxBatchSize > 5");
    await batcher.close();
  });

  test("maxBatchSize 2^32 is reported as too large, not as 'must be at least 1'", () => {
    let thrown;
    try {
      new RequestBatcher({ ...valid(), maxBatchSize: 2 ** 32 });
    } catch (error) {
      thrown = error;
    }
    if (thrown === undefined) return; // honoured: fine
    assert.ok(thrown instanceof InvalidOptionError);
    assert.equal(thrown.option, "maxBatchSize");
    assert.doesNotMatch(thrown.message, /at least 1/, `misleading message: ${thrown.message}`);
  });

  test("retry.attempts 2^32 is refused or honoured, not wrapped to 0", async () => {
    let calls = 0;
    let batcher;
    try {
      batcher = new RequestBatcher({
        ...valid(),
        maxDelayMs: 0,
        retry: { attempts: 2 ** 32, backoffMs: 1, maxBackoffMs: 1 },
        batchHandler: (items) => {
          if (++calls === 1) throw new Error("first attempt fails");
          return items;
        },
      });
    } catch (error) {
      assert.ok(error instanceof InvalidOptionError);
      assert.equal(error.option, "retry.attempts");
      return;
    }
    assert.equal(await batcher.add("x"), "x", "the failed attempt is retried");
    await batcher.close();
  });

  for (const [label, options, hang] of [
    ["maxDelayMs: Number.MAX_SAFE_INTEGER (never cut by time)", { maxDelayMs: Number.MAX_SAFE_INTEGER }, false],
    ["timeoutMs: Number.MAX_SAFE_INTEGER", { maxDelayMs: 0, timeoutMs: Number.MAX_SAFE_INTEGER }, true],
  ]) {
    test(`${label} is refused or waits quietly, without a timer storm`, async () => {
      let batcher;
      try {
        batcher = new RequestBatcher({
          maxBatchSize: 10,
          batchHandler: hang ? () => new Promise(() => {}) : handler,
          ...options,
        });
      } catch (error) {
        assert.ok(error instanceof InvalidOptionError);
        assert.match(error.message, /at most|<=|maximum/);
        return;
      }
      let warnings = 0;
      const onWarning = (warning) => {
        if (warning.name === "TimeoutOverflowWarning") warnings++;
      };
      process.on("warning", onWarning);
      try {
        const pending = batcher.add(1).catch((error) => error);
        await sleep(60);
        assert.ok(warnings <= 1, `${warnings} TimeoutOverflowWarnings in 60 ms: the timer re-fires every 1 ms`);
        await batcher.close({ abort: true });
        assert.ok((await pending) instanceof ClosedError);
      } finally {
        process.off("warning", onWarning);
        await batcher.close({ abort: true });
      }
    });
  }
});

describe("error classes", () => {
  test("every batchling error is a BatchlingError with a stable code and its own name", () => {
    const cases = [
      [new InvalidOptionError("maxBatchSize", "must be an integer >= 1"), "ERR_BATCHLING_INVALID_OPTION"],
      [new QueueFullError(5), "ERR_BATCHLING_QUEUE_FULL"],
      [new ClosedError(), "ERR_BATCHLING_CLOSED"],
      [new TimeoutError(10), "ERR_BATCHLING_TIMEOUT"],
      [new CancelledError("why"), "ERR_BATCHLING_CANCELLED"],
      [new BatchResultError(3, [1]), "ERR_BATCHLING_RESULT_LENGTH"],
    ];
    const codes = new Set();
    for (const [error, code] of cases) {
      assert.ok(error instanceof BatchlingError);
      assert.ok(error instanceof Error);
      assert.equal(error.code, code);
      assert.equal(error.name, error.constructor.name);
      assert.ok(error.message.length > 0);
      codes.add(error.code);
    }
    assert.equal(codes.size, cases.length, "codes are distinct");
    assert.equal(new CancelledError("why").cause, "why");
    assert.equal(new TimeoutError(10).timeoutMs, 10);
    assert.equal(new BatchResultError(3, [1]).expected, 3);
    assert.equal(new BatchResultError(3, [1]).received, 1);
    assert.match(new QueueFullError(5).message, /\b5\b.*maxQueueSize/);
  });

  test("errors from a misused batcher are typed: add after close, wrong-length results", async () => {
    const batcher = new RequestBatcher({ ...valid(), maxDelayMs: 0, batchHandler: () => [] });
    const [wrong] = await Promise.allSettled([batcher.add(1)]);
    assert.ok(wrong.reason instanceof BatchResultError);
    await batcher.close();
    const [closed] = await Promise.allSettled([batcher.add(2)]);
    assert.ok(closed.reason instanceof ClosedError);
    assert.match(closed.reason.message, /closed/);
  });
});

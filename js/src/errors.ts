/** Base class of every error batchling raises. `code` is stable; match on it, not on text. */
export class BatchlingError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

/** An option is missing, of the wrong type or out of range. Raised by constructors, eagerly. */
export class InvalidOptionError extends BatchlingError {
  readonly option: string;
  constructor(option: string, message: string) {
    super("ERR_BATCHLING_INVALID_OPTION", `invalid option \`${option}\`: ${message}`);
    this.option = option;
  }
}

/** `add()` was refused because `maxQueueSize` items are already waiting. Retry later or raise the limit. */
export class QueueFullError extends BatchlingError {
  constructor(maxQueueSize: number | undefined) {
    super(
      "ERR_BATCHLING_QUEUE_FULL",
      `queue full: ${maxQueueSize} items are already waiting (maxQueueSize); wait for some to settle or raise the limit`,
    );
  }
}

/** `add()` after `close()`, or an item still unsettled when `close({ abort: true })` ran. */
export class ClosedError extends BatchlingError {
  constructor(message = "the batcher is closed: create a new one to add more items") {
    super("ERR_BATCHLING_CLOSED", message);
  }
}

/** The item did not settle within `timeoutMs`; a late result is dropped. */
export class TimeoutError extends BatchlingError {
  readonly timeoutMs: number;
  constructor(timeoutMs: number) {
    super("ERR_BATCHLING_TIMEOUT", `item did not settle within timeoutMs (${timeoutMs} ms)`);
    this.timeoutMs = timeoutMs;
  }
}

/** The item's `signal` aborted before it settled; a late result is dropped. */
export class CancelledError extends BatchlingError {
  constructor(reason?: unknown) {
    super("ERR_BATCHLING_CANCELLED", "item cancelled by its AbortSignal", { cause: reason });
  }
}

/** `batchHandler` returned something other than an array with one result per item. */
export class BatchResultError extends BatchlingError {
  readonly expected: number;
  readonly received: number | undefined;
  constructor(expected: number, received: unknown) {
    const got = Array.isArray(received) ? `${received.length} results` : `a ${received === null ? "null" : typeof received}`;
    super(
      "ERR_BATCHLING_RESULT_LENGTH",
      `batchHandler must return an array of ${expected} results (one per item, in order), got ${got}`,
    );
    this.expected = expected;
    this.received = Array.isArray(received) ? received.length : undefined;
  }
}

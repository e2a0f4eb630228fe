// What every entry (Node, browser / worker) exports alike: the runtime-independent API.
export { RequestBatcher } from "./request-batcher.js";
export type { RequestBatcherOptions, RequestBatcherStatus, RetryOptions, AddOptions } from "./request-batcher.js";
export type { PriceOverride } from "./generated/core.js";
export type { BatchifyOptions, HostDeclaration, BatchifyContext, BatchifyReport, QueueReport, BatchlingEvent } from "./batchify-host.js";
export { MemoryStorage, KeyValueJournal } from "./storage.js";
export type { KeyValueStorage, JournalStore } from "./storage.js";
export {
  BatchlingError,
  InvalidOptionError,
  QueueFullError,
  ClosedError,
  TimeoutError,
  CancelledError,
  BatchResultError,
} from "./errors.js";

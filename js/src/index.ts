// The Node entry: installs Node's engine loader (native addon, wasm fallback) first.
import "./engine-node.js";
export { RequestBatcher } from "./request-batcher.js";
export { batchify } from "./batchify.js";
export type { BatchifyOptions, BatchifyContext, BatchifyReport, QueueReport, BatchlingEvent } from "./batchify.js";
export { MemoryStorage, KeyValueJournal } from "./storage.js";
export type { KeyValueStorage, JournalStore } from "./storage.js";
export type { RequestBatcherOptions, RequestBatcherStatus, RetryOptions, AddOptions } from "./request-batcher.js";
export {
  BatchlingError,
  InvalidOptionError,
  QueueFullError,
  ClosedError,
  TimeoutError,
  CancelledError,
  BatchResultError,
} from "./errors.js";
export { loadEngineModule as backend } from "./engine.js";
export { Batch, BatchRun, exportResults, readStateFile } from "./batch.js";
export type { StateFile, BatchOptions, BatchStatus, JobDefaults, JobInput, JobResult, ProgressEvent, ResponseModel } from "./batch.js";

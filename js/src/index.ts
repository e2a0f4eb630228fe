// The Node entry: installs Node's engine loader (native addon, wasm fallback) first.
import "./engine-node.js";
export * from "./shared-exports.js";
export { batchify } from "./batchify.js";
export { loadEngineModule as backend } from "./engine.js";
export { Batch, BatchRun, exportResults, readStateFile, InvalidJobsError, SourceChangedError, MAX_JOB_PROBLEMS } from "./batch.js";
export type { StateFile, BatchOptions, BatchStats, BatchEvent, JobDefaults, JobInput, JobResult, ResponseModel, JobsSource, JobSource, JobProblem } from "./batch.js";

// The Node entry: installs Node's engine loader (native addon, wasm fallback) first.
import "./engine-node.js";
export * from "./shared-exports.js";
export { batchify } from "./batchify.js";
export type { RedisCacheOptions } from "./batchify-host.js";
// The fleet journal's typed errors (`cache: { redis }`): Redis unreachable, ioredis not installed.
export { RedisUnavailableError, RedisClientMissingError } from "./fleet-redis.js";
export type { RedisWarning } from "./fleet-redis.js";
export { loadEngineModule as backend } from "./engine.js";
export { Batch } from "./batch.js";
export { BatchRun } from "./batch-run.js";
export { exportResults, readStateFile } from "./batch-files.js";
export type { StateFile } from "./batch-files.js";
export { InvalidJobsError, SourceChangedError, MAX_JOB_PROBLEMS } from "./batch-types.js";
export type { BatchOptions, Prices, BatchStats, BatchEvent, JobDefaults, JobInput, JobResult, ResponseModel, JobsSource, JobSource, JobProblem } from "./batch-types.js";

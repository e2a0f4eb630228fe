//! batchling-core: a sans-IO batching engine. Events in, actions out; the host owns time and I/O.

pub mod attachments;
pub mod backoff;
pub mod batcher;
pub mod cache;
pub mod catalog;
pub mod host;
pub mod http;
pub mod interceptor;
pub mod job_format;
pub mod jobs;
pub mod json_schema;
pub mod provider_id;
pub mod providers;

//! batchling-core: a sans-IO batching engine. Events in, actions out; the host owns time and I/O.
//!
//! Two engines, each a state machine the host drives with its clock and its I/O:
//! - [`Batcher`] (`RequestBatcher`): items in, "run the handler on these items" out, with size
//!   and delay triggers, key groups, a bounded queue, retries, timeouts and cancellation.
//! - [`Interceptor`] (`batchify()`): intercepted HTTP requests in, provider batch calls and the
//!   callers' synthetic responses out, with a crash-safe journal ([`cache`]).
//!
//! Around them: [`providers`] (one file per provider: descriptor, batch adapter, job format,
//! listed in one registry), [`jobs`] (the `Batch` job builder: a job spec becomes the request
//! its provider's SDK would send, an answer becomes a result), [`catalog`] (models and prices),
//! [`serve`] (the rules of `batchling serve`: routes, who may call it), [`fleet`] (the protocol
//! that lets many processes share one store so a request is batched once across them all),
//! and [`host`] (what the Node and wasm bindings share: the engines as numbers and strings in,
//! encoded outcomes out).
//!
//! Layers, bottom up (no module imports one above it): [`http`], [`provider_id`], [`backoff`],
//! [`attachments`], [`json_schema`] → [`catalog`] → [`job_format`] → [`providers`] →
//! [`batcher`], [`cache`], [`jobs`], [`serve`], [`fleet`] → [`interceptor`] → [`host`].

pub mod attachments;
pub mod backoff;
pub mod batcher;
pub mod cache;
pub mod catalog;
pub mod fleet;
pub mod host;
pub mod http;
pub mod interceptor;
pub mod job_format;
pub mod jobs;
pub mod json_schema;
pub mod options;
pub mod provider_id;
pub mod providers;
pub mod serve;

pub use batcher::{Batcher, BatcherConfig};
pub use host::{BatcherHost, InterceptorHost};
pub use http::{HttpRequest, HttpResponse};
pub use interceptor::{FailCode, Input, Interceptor, InterceptorConfig, LifecycleEvent, Output};
pub use jobs::{JobError, JobResult, JobSpec};
pub use options::OptionError;
pub use provider_id::ProviderId;

//! batchling-core: a sans-IO batching engine. Events in, actions out; the host owns time and I/O.

pub mod batcher;
pub mod http;
pub mod wire;

//! What both bindings share: the engines wrapped for a host that speaks numbers, strings and
//! typed arrays. A binding (napi, wasm-bindgen) keeps only its marshalling: it turns its
//! runtime's values into these calls' arguments and their results back, nothing else.
//!
//! - [`BatcherHost`]: the generic [`crate::batcher::Batcher`], its outcomes encoded as numbers
//!   ([`wire`]) into the host's scratch buffer.
//! - [`InterceptorHost`]: the provider batching engine, its outputs as one JSON string per call.
//! - [`jobs`]: the job builder's functions, JSON in and JSON out.
//! - [`batches`]: the live batches of a journal, and the calls that poll or cancel one.
//! - [`batch_options`]: the job builder's option rules (keys, ranges), refusals as data.
//! - [`fleet`]: a fleet member (the protocol many processes share a store by), JSON in and out.
//! - [`serve`]: `batchling serve`'s router, built from JSON, deciding each request as JSON.
//! - [`run_state`]: what a job run leaves on disk (state file, result files) and its summary.
//! - [`options`]: the options as users write them, checked before an engine is built, answered
//!   as data (the engine options, or the [`crate::options::OptionError`]).

pub mod batch_options;
mod batcher;
pub mod batches;
pub mod fleet;
mod interceptor;
pub mod jobs;
mod json_entries;
pub mod options;
pub mod run_state;
pub mod serve;
mod ts_types;
pub mod wire;

pub use batcher::BatcherHost;
pub use interceptor::InterceptorHost;

/// Milliseconds as a host passes them (a JS number); negatives and NaN count as 0.
pub fn ms(value: f64) -> u64 {
    value.max(0.0) as u64
}

/// Why a host call was refused: its arguments do not have the shape the call takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostArgError(pub String);

impl std::fmt::Display for HostArgError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for HostArgError {}

/// A refusal as the host functions answer it: `{"ok":false,"code":…,"error":…}` (option
/// refusals carry the option instead: see `options`).
pub(crate) fn refusal(code: &str, error: impl std::fmt::Display) -> String {
    serde_json::json!({ "ok": false, "code": code, "error": error.to_string() }).to_string()
}

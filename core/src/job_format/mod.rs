//! What a job is, and what a provider the job builder serves must provide: the job's spec and
//! result ([`spec`]), the provider-neutral plan a validated job becomes, and the
//! `JobFormat` a provider implements (both in `format`, as each names the other) in its own file to render that plan and read its answer.
//!
//! It sits below `providers/` (which implement `JobFormat`) and `jobs/` (which validates,
//! plans and dispatches through the providers' registry), so neither imports the other back.

mod format;
pub mod spec;

pub(crate) use format::JobFormat;
pub(crate) use format::{file_data, u64_at, Output, Part, Prepared, Turn};
pub use spec::*;

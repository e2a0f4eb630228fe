//! The provider-neutral plan of a job and of its answer: what validation produces and a
//! provider's renderer turns into a request body ([`Prepared`]: turns of [`Part`]s), and what a
//! provider's extractor reads out of an answer before the schema checks ([`Output`]).

use serde_json::Value;

use crate::catalog::models::ModelInfo;

use super::format::JobFormat;
use super::{Citation, JobSpec};

/// A validated job, ready to render for its provider.
pub(crate) struct Prepared<'a> {
    pub(crate) job: &'a JobSpec,
    pub(crate) info: &'static ModelInfo,
    /// How its provider renders it.
    pub(crate) format: &'static dyn JobFormat,
    /// The model name as sent (Gemini without a `models/` prefix).
    pub(crate) model: &'a str,
    pub(crate) system: Option<String>,
    pub(crate) turns: Vec<Turn<'a>>,
    pub(crate) max_tokens: Option<u64>,
    /// The response schema as sent: OpenAI's strict form of the job's (see
    /// [`crate::json_schema::to_strict`]), the job's own for Anthropic and Gemini.
    pub(crate) schema: Option<Value>,
}

pub(crate) struct Turn<'a> {
    pub(crate) assistant: bool,
    pub(crate) parts: Vec<Part<'a>>,
}

pub(crate) enum Part<'a> {
    Text(String),
    Pdf {
        name: &'a str,
        data: &'a str,
    },
    Image {
        media_type: &'static str,
        data: &'a str,
    },
}

/// A file's base64 data as rendered: empty when `placeholder` (estimates leave the bytes out).
pub(crate) fn file_data(d: &str, placeholder: bool) -> &str {
    if placeholder {
        ""
    } else {
        d
    }
}

/// What one provider's answer holds, before schema checks.
#[derive(Default)]
pub(crate) struct Output {
    pub(crate) text: Option<String>,
    /// Anthropic tool input.
    pub(crate) structured: Option<Value>,
    pub(crate) citations: Vec<Citation>,
    pub(crate) input_tokens: Option<u64>,
    pub(crate) output_tokens: Option<u64>,
    pub(crate) finish_reason: Option<String>,
    pub(crate) truncated: bool,
    /// A refusal, a block, a missing answer.
    pub(crate) problem: Option<String>,
}

/// The unsigned integer at `pointer` in `v`, if any.
pub(crate) fn u64_at(v: &Value, pointer: &str) -> Option<u64> {
    v.pointer(pointer).and_then(Value::as_u64)
}

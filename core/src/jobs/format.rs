//! What the job builder needs from a provider it serves. Each such provider implements
//! [`JobFormat`] in its own file and names it in its descriptor
//! ([`crate::providers::ProviderDescriptor`]'s `jobs`); the rest of `jobs/` is provider-neutral
//! and reaches a provider only through it.

use serde_json::Value;

use crate::catalog::models::ModelInfo;

use super::plan::{Output, Prepared};

/// A provider's rules for a job, the synchronous request its SDK would send, and how its answer
/// reads. Plain functions over plain data, like the batch adapters.
pub(crate) trait JobFormat: Sync {
    /// Image media types the provider accepts inline.
    fn image_types(&self) -> &'static [&'static str];

    /// The highest `temperature` the provider accepts (the lowest is 0).
    fn max_temperature(&self) -> f64 {
        2.0
    }

    /// The model name as the request carries it.
    fn model_name<'a>(&self, model: &'a str) -> &'a str {
        model
    }

    /// The output cap the request carries when the job sets none (`None`: no cap is sent).
    fn default_max_tokens(&self, _info: &ModelInfo) -> Option<u64> {
        None
    }

    /// The response schema to send for `schema` (a JSON object), or why it cannot be used.
    fn wire_schema(&self, schema: &Value) -> Result<Value, String>;

    /// Whether [`JobFormat::wire_schema`] sends OpenAI's strict form, whose `null`s for omitted
    /// optional properties are dropped from the answer before it is checked.
    fn strict_schema(&self) -> bool {
        false
    }

    /// JSON pointers of the body fields structured output relies on, which `extra` may not set
    /// when the job has a schema.
    fn schema_fields(&self) -> &'static [&'static str];

    /// Any further reason an `extra` (as a JSON object) would undo structured output.
    fn schema_extra_conflict(&self, _extra: &Value) -> Option<String> {
        None
    }

    /// The request body; `placeholder` leaves file data out (for estimates).
    fn body(&self, p: &Prepared, placeholder: bool) -> Value;

    /// The request's URL under `base_url` (no trailing slash) and the provider's own headers:
    /// auth (only when `api_key` is not empty) and any version header.
    fn target(&self, base_url: &str, model: &str, api_key: &str)
        -> (String, Vec<(String, String)>);

    /// A documented size limit of one request, when it is below the batch's own.
    fn max_request_bytes(&self) -> Option<usize> {
        None
    }

    /// What the answer (a JSON body with a 2xx status) holds.
    fn output(&self, answer: &Value) -> Output;
}

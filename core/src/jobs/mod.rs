//! Offline jobs: turn a job description into the exact synchronous request the provider's SDK
//! would send, and the provider's answer back into a result.
//!
//! The host's `Batch` builder calls [`build_request`] for each job and feeds the request to the
//! batching engine exactly as if an SDK had sent it ([`crate::providers::classify`] recognises
//! and routes it), then hands each synthetic response to [`extract_result`]. The host stays a
//! thin loop over JSON.
//!
//! Everything here is provider-neutral: the job as given ([`JobSpec`]), its validation into a
//! plan of turns and parts (`prepare`, `plan`), the request around the body and its size check
//! (`render`), and the result's schema checks and cost (`extract`). What differs per provider
//! (its limits and rules for a job, the body and URL its SDK would send, how its answer reads) is
//! a `JobFormat` in the provider's own file (`providers/openai.rs`, `anthropic.rs`,
//! `gemini.rs`), named by its [`crate::providers::ProviderDescriptor`]. The decisions below are
//! those formats'.
//!
//! ```text
//! JobSpec ──validate──▶ JobError (named job, what to do)
//!    │
//!    └─build_request──▶ HttpRequest ──(batch engine)──▶ status + body ──extract_result──▶ JobResult
//! ```
//!
//! Decisions worth knowing:
//! - `system` and every `system`-role message are joined (blank line between) into the
//!   provider's system slot: OpenAI's leading system message, Anthropic's `system`, Gemini's
//!   `systemInstruction`.
//! - A `file` goes before the `prompt` in one user turn. PDFs and images are sent inline
//!   (base64); text files (`text/*`, JSON, XML, YAML, ...) are decoded and inlined into the prompt
//!   as `<file name="...">…</file>` followed by a blank line and the prompt, for every provider.
//! - Anthropic needs `max_tokens`: [`crate::providers::DEFAULT_ANTHROPIC_MAX_TOKENS`] when the job
//!   sets none ([`crate::providers::DEFAULT_ANTHROPIC_MAX_TOKENS_THINKING`] for models that think by
//!   default, whose thinking counts towards it). OpenAI and Gemini get no cap unless the job sets
//!   one.
//! - Structured output: OpenAI `response_format` json_schema with `strict: true`, the schema
//!   converted to strict form as OpenAI's SDK helpers do (optional properties become required and
//!   nullable, objects closed; see `json_schema::strict`) and the nulls that adds dropped from the answer
//!   before it is checked against the job's own schema; Anthropic a forced tool named `response`
//!   (with thinking switched off on models that think by default, since forced tool use and
//!   thinking are incompatible); Gemini `responseMimeType: application/json` +
//!   `responseJsonSchema` (standard JSON Schema; the older `responseSchema` is an OpenAPI subset
//!   that rejects `additionalProperties` and type arrays).
//! - Anthropic PDFs carry the file name as the document `title` and `citations: {enabled: true}`
//!   when the model supports citations and no schema is asked for (a forced tool answer has no
//!   place for citations).
//! - `extra` is deep-merged into the body last (objects merge, anything else replaces). It may not
//!   set `model` or `stream`, nor the fields structured output relies on when a schema is given.

mod error;
mod extract;
mod prepare;
mod render;

use std::collections::BTreeMap;

use crate::catalog::models::ModelInfo;
use crate::catalog::pricing::{self, CostEstimate};
use crate::http::HttpRequest;
use crate::provider_id::ProviderId;

pub use crate::attachments::{IMAGE_TOKENS_EST, PDF_PAGE_TOKENS_EST};
pub use crate::job_format::*;
pub use crate::json_schema::{drop_introduced_nulls, to_strict, validate_json, StrictRefusal};
pub use error::JobError;
pub use extract::extract_result;

use prepare::{file_tokens_est, prepare, resolve_checked, resolve_model};
use render::{build_body, finish_request};

/// The provider that serves the job's model, so the host can pick its [`ProviderEndpoint`].
pub fn job_provider(job: &JobSpec) -> Result<ProviderId, JobError> {
    resolve_model(job).map(|info| info.provider)
}

/// Every check [`build_request`] makes that does not depend on the endpoint. The host can call it
/// when a job is added, long before sending.
pub fn validate(job: &JobSpec) -> Result<(), JobError> {
    let info = resolve_checked(job)?;
    let prepared = prepare(job, info)?;
    // Catch a body that could never fit in a batch, on the default endpoint.
    let endpoint = ProviderEndpoint::default_for(info.provider, "");
    finish_request(&prepared, &endpoint).map(|_| ())
}

/// The checks of [`validate`] that depend on the model, against `info` rather than the catalog's
/// entry for the job's model (a model the catalog does not know, e.g. a fine-tune, described by
/// its capabilities).
pub fn validate_for_model(job: &JobSpec, info: &'static ModelInfo) -> Result<(), JobError> {
    prepare(job, info).map(|_| ())
}

/// The endpoint of the provider that serves `job`'s model, among the host's `endpoints` (by
/// provider name: the caller's settings, else the environment, else the default). Refused
/// ([`JobError::MissingKey`]) when that provider has no API key there.
pub fn job_endpoint<'a>(
    job: &JobSpec,
    endpoints: &'a BTreeMap<String, ProviderEndpoint>,
) -> Result<&'a ProviderEndpoint, JobError> {
    let provider = job_provider(job)?;
    endpoints
        .get(provider.as_str())
        .filter(|endpoint| !endpoint.api_key.is_empty())
        .ok_or_else(|| JobError::MissingKey {
            id: job.id.clone(),
            provider,
        })
}

/// Validates `job` and builds the synchronous request its provider's SDK would send.
pub fn build_request(job: &JobSpec, endpoint: &ProviderEndpoint) -> Result<HttpRequest, JobError> {
    let info = resolve_checked(job)?;
    let prepared = prepare(job, info)?;
    finish_request(&prepared, endpoint)
}

/// A rough cost estimate of `job` at list prices (sync and batch). Input tokens are the body's
/// characters / [`pricing::CHARS_PER_TOKEN`] with file bytes replaced by
/// [`IMAGE_TOKENS_EST`] per image and [`PDF_PAGE_TOKENS_EST`] per PDF page (pages counted from
/// the PDF's page objects when visible, else guessed from its size); output tokens are the cap
/// (see [`pricing::estimate`]).
pub fn estimate_job(job: &JobSpec) -> Result<CostEstimate, JobError> {
    let info = resolve_checked(job)?;
    let prepared = prepare(job, info)?;
    let body = build_body(&prepared, true);
    let rates = extract::job_rates(job, info);
    let mut estimate = pricing::estimate_with(rates, &job.model, &body);
    estimate.input_tokens_est += file_tokens_est(&prepared);
    estimate.sync_usd = rates.map(|r| {
        pricing::input_output_usd(
            &r,
            &body,
            estimate.input_tokens_est,
            estimate.output_tokens_est,
        )
    });
    estimate.batch_usd = estimate
        .sync_usd
        .zip(rates)
        .map(|(usd, r)| usd * r.batch_multiplier);
    Ok(estimate)
}

/// The estimated batch-price cost of `job` in USD; `None` when the job is invalid or the model
/// has no known price.
pub fn estimate_job_cost(job: &JobSpec) -> Option<f64> {
    estimate_job(job).ok().and_then(|e| e.batch_usd)
}

/// The default base URL of `provider` (from its descriptor; empty when it has none).
pub fn default_base_url(provider: ProviderId) -> &'static str {
    provider.descriptor().default_base_url.unwrap_or("")
}

impl ProviderEndpoint {
    /// The provider's default base URL with `api_key`.
    pub fn default_for(provider: ProviderId, api_key: impl Into<String>) -> Self {
        ProviderEndpoint {
            base_url: default_base_url(provider).to_string(),
            api_key: api_key.into(),
            headers: std::collections::BTreeMap::new(),
        }
    }
}

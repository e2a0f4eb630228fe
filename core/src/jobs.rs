//! Offline jobs: turn a job description into the exact synchronous request the provider's SDK
//! would send, and the provider's answer back into a result.
//!
//! The host's `Batch` builder calls [`build_request`] for each job and feeds the request to the
//! batching engine exactly as if an SDK had sent it ([`crate::providers::classify`] recognises
//! and routes it), then hands each synthetic response to [`extract_result`]. All
//! provider-specific shaping lives here, so the host stays a thin loop over JSON.
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
//! - Anthropic needs `max_tokens`: [`DEFAULT_ANTHROPIC_MAX_TOKENS`] when the job sets none
//!   ([`DEFAULT_ANTHROPIC_MAX_TOKENS_THINKING`] for models that think by default, whose thinking
//!   counts towards it). OpenAI and Gemini get no cap unless the job sets one.
//! - Structured output: OpenAI `response_format` json_schema with `strict: true`, the schema
//!   converted to strict form as OpenAI's SDK helpers do (optional properties become required and
//!   nullable, objects closed; see [`strict`]) and the nulls that adds dropped from the answer
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

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::http::{HttpRequest, HttpResponse};
use crate::models::{self, ModelInfo, UnknownModel};
use crate::pricing::{self, CostEstimate};
use crate::providers::{self, BatchContext, BatchItem, ProviderId};

/// Default base URLs, used when the host has none configured.
pub const OPENAI_BASE_URL: &str = "https://api.openai.com/v1";
pub const ANTHROPIC_BASE_URL: &str = "https://api.anthropic.com";
pub const GEMINI_BASE_URL: &str = "https://generativelanguage.googleapis.com/v1beta";

/// The `anthropic-version` header value sent with Anthropic requests.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

/// Anthropic `max_tokens` when a job sets none (the value in Anthropic's own examples; about
/// 750 English words).
pub const DEFAULT_ANTHROPIC_MAX_TOKENS: u64 = 1_024;
/// Anthropic `max_tokens` when a job sets none and the model thinks by default: thinking tokens
/// count towards the cap, so 1,024 would often leave nothing for the answer.
pub const DEFAULT_ANTHROPIC_MAX_TOKENS_THINKING: u64 = 8_192;

/// Name of the OpenAI json_schema and of the Anthropic tool that carry structured output.
pub const RESPONSE_SCHEMA_NAME: &str = "response";

/// Anthropic's documented size limit of one Messages request.
pub const ANTHROPIC_MAX_REQUEST_BYTES: usize = 32_000_000;

/// Input tokens assumed per image in estimates (Anthropic bills about width × height / 750,
/// ≈1,600 for a 1.15-megapixel image; OpenAI and Gemini bill less). A rough upper figure.
pub const IMAGE_TOKENS_EST: u64 = 1_600;
/// Input tokens assumed per PDF page in estimates (Anthropic: 1,500–3,000 text tokens per page
/// plus the page image; Gemini bills far less). A rough upper figure.
pub const PDF_PAGE_TOKENS_EST: u64 = 3_000;

/// The default base URL of `provider`.
pub fn default_base_url(provider: ProviderId) -> &'static str {
    match provider {
        ProviderId::OpenAi => OPENAI_BASE_URL,
        ProviderId::Anthropic => ANTHROPIC_BASE_URL,
        ProviderId::Gemini => GEMINI_BASE_URL,
        ProviderId::Groq => "https://api.groq.com/openai/v1",
        ProviderId::Doubleword => "https://api.doubleword.ai/v1",
        // Azure has no global endpoint: every resource has its own host.
        ProviderId::Azure => "",
        ProviderId::Mistral => "https://api.mistral.ai/v1",
        ProviderId::Together => "https://api.together.ai/v1",
        ProviderId::Xai => "https://api.x.ai/v1",
    }
}

/// One offline job, as the host passes it (camelCase JSON; unknown fields are rejected so a
/// misspelt option fails loudly).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JobSpec {
    /// Unique within a batch; names the job in errors and results.
    pub id: String,
    pub model: String,
    /// A conversation. Excludes `file` / `prompt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messages: Option<Vec<Message>>,
    /// A document or image to ask about; needs `prompt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<FileInput>,
    /// The question or instruction. On its own it is a one-message conversation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
    /// A JSON Schema the answer must follow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_schema: Option<Value>,
    /// Provider-specific body fields, deep-merged into the request body last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra: Option<Map<String, Value>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Message {
    /// "system", "user" or "assistant".
    pub role: String,
    pub content: String,
}

/// A file the host read and base64-encoded (standard alphabet, padded).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FileInput {
    pub name: String,
    /// "application/pdf", "image/png", "text/plain", ...
    pub media_type: String,
    pub data_base64: String,
}

impl fmt::Debug for FileInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileInput")
            .field("name", &self.name)
            .field("media_type", &self.media_type)
            .field(
                "data_base64",
                &format_args!("<{} chars>", self.data_base64.len()),
            )
            .finish()
    }
}

/// Where and as whom to send a provider's requests.
#[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProviderEndpoint {
    /// No trailing slash needed. Empty means the provider's default ([`default_base_url`]).
    pub base_url: String,
    /// Empty: no auth header is sent (e.g. a proxy adds it).
    pub api_key: String,
    /// Further headers for every request (`OpenAI-Project`, `anthropic-beta`, proxy auth, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
}

impl ProviderEndpoint {
    /// The provider's default base URL with `api_key`.
    pub fn default_for(provider: ProviderId, api_key: impl Into<String>) -> Self {
        ProviderEndpoint {
            base_url: default_base_url(provider).to_string(),
            api_key: api_key.into(),
            headers: BTreeMap::new(),
        }
    }
}

impl fmt::Debug for ProviderEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProviderEndpoint")
            .field("base_url", &self.base_url)
            .field("api_key", &"<redacted>")
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// A passage the answer cites (Anthropic citations).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Citation {
    pub cited_text: String,
    /// The cited document's title (the file name), else "document <n>".
    pub source: String,
    /// 1-based, inclusive, for PDF page citations.
    #[serde(default)]
    pub start_page: Option<u64>,
    #[serde(default)]
    pub end_page: Option<u64>,
}

/// The outcome of one job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobResult {
    /// The job's `id`.
    pub job_id: String,
    /// A 2xx answer with usable content (and, with a schema, valid structured output).
    pub ok: bool,
    /// The HTTP status of the (synthetic) response.
    pub status: u16,
    /// The raw answer text. With a schema: the JSON text (Anthropic: the tool input,
    /// serialised). Kept when the JSON is invalid, so it can be inspected.
    #[serde(default)]
    pub response: Option<String>,
    /// The structured answer, only when it parsed and matched the schema. For OpenAI (whose
    /// strict mode makes optional properties required and nullable) the nulls of optional
    /// properties that do not accept null are dropped first: an absent field stays absent.
    #[serde(default)]
    pub parsed_response: Option<Value>,
    #[serde(default)]
    pub citations: Vec<Citation>,
    /// As the provider reported them (Anthropic: including cache reads/writes; Gemini output:
    /// candidates plus thinking tokens, which are billed as output).
    #[serde(default)]
    pub input_tokens: Option<u64>,
    #[serde(default)]
    pub output_tokens: Option<u64>,
    /// Reported usage × the model's batch price. `None` without usage or a known price.
    #[serde(default)]
    pub cost_usd: Option<f64>,
    /// The provider's own stop reason ("stop", "end_turn", "MAX_TOKENS", ...).
    #[serde(default)]
    pub finish_reason: Option<String>,
    /// The answer was cut off by the output token cap.
    #[serde(default)]
    pub truncated: bool,
    #[serde(default)]
    pub error: Option<String>,
}

/// Why a job cannot be sent. `Display` names the job and says what to change.
#[derive(Debug, Clone, PartialEq)]
pub enum JobError {
    EmptyId,
    BothInputs {
        id: String,
    },
    NoInput {
        id: String,
    },
    FileWithoutPrompt {
        id: String,
    },
    InvalidMessage {
        id: String,
        index: usize,
        reason: String,
    },
    UnknownModel {
        id: String,
        error: UnknownModel,
    },
    /// The model or provider cannot read this kind of file.
    UnsupportedFile {
        id: String,
        file: String,
        reason: String,
    },
    /// The file's bytes are not what they claim to be (bad base64, wrong magic bytes, not UTF-8).
    InvalidFile {
        id: String,
        file: String,
        reason: String,
    },
    StructuredOutputUnsupported {
        id: String,
        model: String,
    },
    InvalidSchema {
        id: String,
        reason: String,
    },
    TemperatureUnsupported {
        id: String,
        model: String,
    },
    TemperatureOutOfRange {
        id: String,
        model: String,
        temperature: f64,
        max: f64,
    },
    MaxTokensOutOfRange {
        id: String,
        model: String,
        max_tokens: u64,
        limit: u64,
    },
    ReservedExtraKey {
        id: String,
        key: String,
    },
    ConflictingExtra {
        id: String,
        reason: String,
    },
    RequestTooLarge {
        id: String,
        bytes: usize,
        limit: usize,
        provider: ProviderId,
    },
    /// The built request would not be batched (e.g. a base URL the batch engine passes through).
    NotBatchable {
        id: String,
        reason: String,
    },
}

impl JobError {
    /// A stable snake_case code for the host.
    pub fn code(&self) -> &'static str {
        match self {
            JobError::EmptyId => "empty_id",
            JobError::BothInputs { .. } => "both_inputs",
            JobError::NoInput { .. } => "no_input",
            JobError::FileWithoutPrompt { .. } => "file_without_prompt",
            JobError::InvalidMessage { .. } => "invalid_message",
            JobError::UnknownModel { .. } => "unknown_model",
            JobError::UnsupportedFile { .. } => "unsupported_file",
            JobError::InvalidFile { .. } => "invalid_file",
            JobError::StructuredOutputUnsupported { .. } => "structured_output_unsupported",
            JobError::InvalidSchema { .. } => "invalid_schema",
            JobError::TemperatureUnsupported { .. } => "temperature_unsupported",
            JobError::TemperatureOutOfRange { .. } => "temperature_out_of_range",
            JobError::MaxTokensOutOfRange { .. } => "max_tokens_out_of_range",
            JobError::ReservedExtraKey { .. } => "reserved_extra_key",
            JobError::ConflictingExtra { .. } => "conflicting_extra",
            JobError::RequestTooLarge { .. } => "request_too_large",
            JobError::NotBatchable { .. } => "not_batchable",
        }
    }
}

impl fmt::Display for JobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JobError::EmptyId => f.write_str("a job has an empty `id`; give every job a unique id"),
            JobError::BothInputs { id } => write!(
                f,
                "job `{id}`: give either `messages` or `file` + `prompt`, not both"
            ),
            JobError::NoInput { id } => write!(
                f,
                "job `{id}`: nothing to send; give `messages` (with at least one user or \
                 assistant message) or `prompt` (with an optional `file`)"
            ),
            JobError::FileWithoutPrompt { id } => write!(
                f,
                "job `{id}`: `file` needs a `prompt` saying what to do with it"
            ),
            JobError::InvalidMessage { id, index, reason } => {
                write!(f, "job `{id}`: messages[{index}] {reason}")
            }
            JobError::UnknownModel { id, error } => write!(f, "job `{id}`: {error}"),
            JobError::UnsupportedFile { id, file, reason } => {
                write!(f, "job `{id}`: file `{file}`: {reason}")
            }
            JobError::InvalidFile { id, file, reason } => {
                write!(f, "job `{id}`: file `{file}` {reason}")
            }
            JobError::StructuredOutputUnsupported { id, model } => write!(
                f,
                "job `{id}`: model `{model}` does not support structured output; drop \
                 `responseSchema` or pick a model that supports it"
            ),
            JobError::InvalidSchema { id, reason } => {
                write!(f, "job `{id}`: `responseSchema` {reason}")
            }
            JobError::TemperatureUnsupported { id, model } => write!(
                f,
                "job `{id}`: model `{model}` rejects `temperature`; remove it for this job"
            ),
            JobError::TemperatureOutOfRange {
                id,
                model,
                temperature,
                max,
            } => write!(
                f,
                "job `{id}`: temperature {temperature} is out of range for `{model}`; use a \
                 value from 0 to {max}"
            ),
            JobError::MaxTokensOutOfRange {
                id,
                model,
                max_tokens,
                limit,
            } => {
                if *max_tokens == 0 {
                    write!(f, "job `{id}`: `maxTokens` must be at least 1")
                } else {
                    write!(
                        f,
                        "job `{id}`: maxTokens {max_tokens} is above `{model}`'s limit of \
                         {limit} output tokens; lower `maxTokens` to at most {limit}"
                    )
                }
            }
            JobError::ReservedExtraKey { id, key } => write!(
                f,
                "job `{id}`: `extra` may not set `{key}`; {}",
                if key == "model" {
                    "set the job's `model` instead"
                } else {
                    "batched requests cannot stream"
                }
            ),
            JobError::ConflictingExtra { id, reason } => write!(f, "job `{id}`: {reason}"),
            JobError::RequestTooLarge {
                id,
                bytes,
                limit,
                provider,
            } => write!(
                f,
                "job `{id}`: the request is {} but a {provider} batch request may be at most {}; \
                 use a smaller file or split it",
                megabytes(*bytes),
                megabytes(*limit)
            ),
            JobError::NotBatchable { id, reason } => write!(
                f,
                "job `{id}`: the batch engine would not batch this request ({reason}); check \
                 the provider base URL"
            ),
        }
    }
}

impl std::error::Error for JobError {}

fn megabytes(bytes: usize) -> String {
    format!("{:.1} MB", bytes as f64 / 1_000_000.0)
}

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
    let mut estimate = pricing::estimate(info.provider, info.name, &body);
    estimate.input_tokens_est += file_tokens_est(&prepared);
    let price = info.price();
    estimate.sync_usd = price.map(|p| {
        (estimate.input_tokens_est as f64 * p.input_usd_per_mtok
            + estimate.output_tokens_est as f64 * p.output_usd_per_mtok)
            / 1_000_000.0
    });
    estimate.batch_usd = estimate
        .sync_usd
        .zip(price)
        .map(|(usd, p)| usd * p.batch_multiplier);
    Ok(estimate)
}

/// The estimated batch-price cost of `job` in USD; `None` when the job is invalid or the model
/// has no known price.
pub fn estimate_job_cost(job: &JobSpec) -> Option<f64> {
    estimate_job(job).ok().and_then(|e| e.batch_usd)
}

// ---------------------------------------------------------------------------------------------
// Validation and the provider-neutral plan.

/// A validated job, ready to render for its provider.
struct Prepared<'a> {
    job: &'a JobSpec,
    info: &'static ModelInfo,
    /// The model name as sent (Gemini without a `models/` prefix).
    model: &'a str,
    system: Option<String>,
    turns: Vec<Turn<'a>>,
    max_tokens: Option<u64>,
    /// The response schema as sent: OpenAI's strict form of the job's (see [`to_strict`]), the
    /// job's own for Anthropic and Gemini.
    schema: Option<Value>,
    /// Anthropic: switch thinking off so the forced tool call is allowed.
    disable_thinking: bool,
    citations: bool,
}

struct Turn<'a> {
    assistant: bool,
    parts: Vec<Part<'a>>,
}

enum Part<'a> {
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FileKind {
    Pdf,
    Image(&'static str),
    Text,
}

const TEXT_APPLICATION_TYPES: &[&str] = &[
    "application/json",
    "application/ld+json",
    "application/x-ndjson",
    "application/jsonl",
    "application/xml",
    "application/yaml",
    "application/x-yaml",
    "application/toml",
    "application/javascript",
    "application/typescript",
    "application/sql",
    "application/x-sh",
];

const IMAGE_TYPES: &[&str] = &[
    "image/png",
    "image/jpeg",
    "image/gif",
    "image/webp",
    "image/heic",
    "image/heif",
];

fn classify_media(media_type: &str) -> Option<FileKind> {
    let mt = media_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let mt = if mt == "image/jpg" {
        "image/jpeg".to_string()
    } else {
        mt
    };
    if mt == "application/pdf" {
        return Some(FileKind::Pdf);
    }
    if let Some(t) = IMAGE_TYPES.iter().find(|t| **t == mt) {
        return Some(FileKind::Image(t));
    }
    if mt.starts_with("text/") || TEXT_APPLICATION_TYPES.contains(&mt.as_str()) {
        return Some(FileKind::Text);
    }
    None
}

/// Image types each provider accepts inline.
fn provider_image_types(p: ProviderId) -> &'static [&'static str] {
    match p {
        ProviderId::Gemini => &[
            "image/png",
            "image/jpeg",
            "image/webp",
            "image/heic",
            "image/heif",
        ],
        _ => &["image/png", "image/jpeg", "image/gif", "image/webp"],
    }
}

fn resolve_model(job: &JobSpec) -> Result<&'static ModelInfo, JobError> {
    models::resolve(&job.model).map_err(|error| JobError::UnknownModel {
        id: job.id.clone(),
        error,
    })
}

/// Shape checks that need no model, then the model.
fn resolve_checked(job: &JobSpec) -> Result<&'static ModelInfo, JobError> {
    if job.id.trim().is_empty() {
        return Err(JobError::EmptyId);
    }
    let id = || job.id.clone();
    let has_prompt = job.prompt.as_deref().is_some_and(|p| !p.trim().is_empty());
    match (&job.messages, job.file.is_some(), has_prompt) {
        (Some(_), true, _) | (Some(_), _, true) => return Err(JobError::BothInputs { id: id() }),
        (None, true, false) => return Err(JobError::FileWithoutPrompt { id: id() }),
        (None, false, false) => return Err(JobError::NoInput { id: id() }),
        _ => {}
    }
    resolve_model(job)
}

fn prepare<'a>(job: &'a JobSpec, info: &'static ModelInfo) -> Result<Prepared<'a>, JobError> {
    let id = || job.id.clone();
    let provider = info.provider;

    // Conversation.
    let mut system: Vec<&str> = job
        .system
        .as_deref()
        .filter(|s| !s.trim().is_empty())
        .into_iter()
        .collect();
    let mut turns = Vec::new();
    if let Some(messages) = &job.messages {
        for (index, m) in messages.iter().enumerate() {
            let bad = |reason: &str| JobError::InvalidMessage {
                id: id(),
                index,
                reason: reason.to_string(),
            };
            if m.content.trim().is_empty() {
                return Err(bad("has empty `content`"));
            }
            match m.role.as_str() {
                "system" => system.push(&m.content),
                "user" | "assistant" => turns.push(Turn {
                    assistant: m.role == "assistant",
                    parts: vec![Part::Text(m.content.clone())],
                }),
                other => {
                    return Err(bad(&format!(
                        "has role `{other}`; use \"system\", \"user\" or \"assistant\""
                    )))
                }
            }
        }
        if turns.is_empty() {
            return Err(JobError::NoInput { id: id() });
        }
    } else {
        let prompt = job.prompt.as_deref().unwrap_or_default();
        let mut parts = Vec::new();
        match &job.file {
            None => parts.push(Part::Text(prompt.to_string())),
            Some(file) => match file_part(job, info, file)? {
                FilePart::Inline(part) => {
                    parts.push(part);
                    parts.push(Part::Text(prompt.to_string()));
                }
                FilePart::Text(text) => {
                    parts.push(Part::Text(inline_text_file(&file.name, &text, prompt)))
                }
            },
        }
        turns.push(Turn {
            assistant: false,
            parts,
        });
    }
    let system = (!system.is_empty()).then(|| system.join("\n\n"));

    // Structured output.
    let wire_schema = match &job.response_schema {
        None => None,
        Some(schema) => {
            if !info.supports_structured_output {
                return Err(JobError::StructuredOutputUnsupported {
                    id: id(),
                    model: job.model.clone(),
                });
            }
            Some(
                wire_schema(provider, schema)
                    .map_err(|reason| JobError::InvalidSchema { id: id(), reason })?,
            )
        }
    };

    // Sampling and limits.
    if let Some(t) = job.temperature {
        if !info.supports_temperature {
            return Err(JobError::TemperatureUnsupported {
                id: id(),
                model: job.model.clone(),
            });
        }
        let max = if provider == ProviderId::Anthropic {
            1.0
        } else {
            2.0
        };
        if !(t.is_finite() && (0.0..=max).contains(&t)) {
            return Err(JobError::TemperatureOutOfRange {
                id: id(),
                model: job.model.clone(),
                temperature: t,
                max,
            });
        }
    }
    if let Some(n) = job.max_tokens {
        if n == 0 || n > info.max_output_tokens {
            return Err(JobError::MaxTokensOutOfRange {
                id: id(),
                model: job.model.clone(),
                max_tokens: n,
                limit: info.max_output_tokens,
            });
        }
    }

    // Extra body fields.
    if let Some(extra) = &job.extra {
        for key in ["model", "stream"] {
            if extra.contains_key(key) {
                return Err(JobError::ReservedExtraKey {
                    id: id(),
                    key: key.to_string(),
                });
            }
        }
        if job.response_schema.is_some() {
            extra_conflict(provider, extra).map_or(Ok(()), |reason| {
                Err(JobError::ConflictingExtra { id: id(), reason })
            })?;
        }
    }

    let structured = job.response_schema.is_some();
    Ok(Prepared {
        job,
        info,
        model: if provider == ProviderId::Gemini {
            job.model.strip_prefix("models/").unwrap_or(&job.model)
        } else {
            &job.model
        },
        system,
        turns,
        max_tokens: effective_max_tokens(job, info),
        schema: wire_schema,
        disable_thinking: provider == ProviderId::Anthropic && structured && info.thinks_by_default,
        citations: provider == ProviderId::Anthropic && info.supports_citations && !structured,
    })
}

/// The output cap the request carries: the job's, else Anthropic's required default.
fn effective_max_tokens(job: &JobSpec, info: &ModelInfo) -> Option<u64> {
    job.max_tokens.or_else(|| {
        (info.provider == ProviderId::Anthropic).then(|| {
            let default = if info.thinks_by_default {
                DEFAULT_ANTHROPIC_MAX_TOKENS_THINKING
            } else {
                DEFAULT_ANTHROPIC_MAX_TOKENS
            };
            default.min(info.max_output_tokens)
        })
    })
}

enum FilePart<'a> {
    Inline(Part<'a>),
    Text(String),
}

fn file_part<'a>(
    job: &JobSpec,
    info: &ModelInfo,
    file: &'a FileInput,
) -> Result<FilePart<'a>, JobError> {
    let unsupported = |reason: String| JobError::UnsupportedFile {
        id: job.id.clone(),
        file: file.name.clone(),
        reason,
    };
    let invalid = |reason: String| JobError::InvalidFile {
        id: job.id.clone(),
        file: file.name.clone(),
        reason,
    };
    let kind = classify_media(&file.media_type).ok_or_else(|| {
        unsupported(format!(
            "media type `{}` is not supported; send a PDF (application/pdf), an image (PNG, \
             JPEG, GIF, WebP) or a text file (text/*, application/json, application/xml, ...)",
            file.media_type
        ))
    })?;
    let data = file.data_base64.as_str();
    if data.is_empty() {
        return Err(invalid("is empty".to_string()));
    }
    if let Err(at) = base64_check(data) {
        return Err(invalid(format!(
            "is not valid base64 (standard alphabet, padded): bad character or length at \
             offset {at}"
        )));
    }
    match kind {
        FileKind::Pdf => {
            if !info.supports_files {
                return Err(unsupported(format!(
                    "model `{}` cannot read PDF files; {}",
                    job.model,
                    alternative(info, |m| m.supports_files, "PDFs")
                )));
            }
            let head = base64_decode_prefix(data, 1024);
            if !contains(&head, b"%PDF-") {
                return Err(invalid(
                    "is declared application/pdf but does not start like a PDF".to_string(),
                ));
            }
            Ok(FilePart::Inline(Part::Pdf {
                name: &file.name,
                data,
            }))
        }
        FileKind::Image(media_type) => {
            if !info.supports_images {
                return Err(unsupported(format!(
                    "model `{}` cannot read images; {}",
                    job.model,
                    alternative(info, |m| m.supports_images, "images")
                )));
            }
            let accepted = provider_image_types(info.provider);
            if !accepted.contains(&media_type) {
                return Err(unsupported(format!(
                    "{} does not accept {media_type} images; convert it to one of {}",
                    info.provider,
                    accepted.join(", ")
                )));
            }
            let head = base64_decode_prefix(data, 16);
            match sniff_image(&head) {
                Some(actual) if actual != media_type => Err(invalid(format!(
                    "is declared {media_type} but its bytes are {actual}; fix `mediaType`"
                ))),
                None if !matches!(media_type, "image/heic" | "image/heif") => Err(invalid(
                    format!("is declared {media_type} but its bytes are not in that format"),
                )),
                _ => Ok(FilePart::Inline(Part::Image { media_type, data })),
            }
        }
        FileKind::Text => {
            let bytes = base64_decode_prefix(data, usize::MAX);
            let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&bytes);
            match std::str::from_utf8(bytes) {
                Ok(text) => Ok(FilePart::Text(text.to_string())),
                Err(_) => Err(invalid(format!(
                    "is declared {} but is not UTF-8 text; convert it to UTF-8",
                    file.media_type
                ))),
            }
        }
    }
}

/// "use a model that reads X, e.g. <first model of the same provider that does>".
fn alternative(info: &ModelInfo, ok: impl Fn(&ModelInfo) -> bool, what: &str) -> String {
    match models::all()
        .iter()
        .find(|m| m.provider == info.provider && ok(m))
    {
        Some(m) => format!("use a model that reads {what}, e.g. {}", m.name),
        None => format!("use a model that reads {what}"),
    }
}

/// A text file inlined before the prompt.
fn inline_text_file(name: &str, text: &str, prompt: &str) -> String {
    let name: String = name
        .chars()
        .map(|c| if c == '"' || c.is_control() { '_' } else { c })
        .collect();
    let newline = if text.ends_with('\n') { "" } else { "\n" };
    format!("<file name=\"{name}\">\n{text}{newline}</file>\n\n{prompt}")
}

/// Whether `provider` gets structured output as OpenAI's strict `json_schema` (so the schema is
/// sent in [`to_strict`] form).
fn strict_schema_provider(provider: ProviderId) -> bool {
    !matches!(provider, ProviderId::Anthropic | ProviderId::Gemini)
}

/// The schema to send to `provider`, or why `schema` cannot be used with it.
fn wire_schema(provider: ProviderId, schema: &Value) -> Result<Value, String> {
    let Some(obj) = schema.as_object() else {
        return Err("must be a JSON Schema object".to_string());
    };
    let root_is_object = obj.get("type").and_then(Value::as_str) == Some("object");
    match provider {
        ProviderId::Anthropic if !root_is_object => Err(
            "must have `\"type\": \"object\"` at the root for Anthropic structured output (it \
             becomes a tool's input schema)"
                .to_string(),
        ),
        _ if !strict_schema_provider(provider) => Ok(schema.clone()),
        _ if !root_is_object => Err(
            "must have `\"type\": \"object\"` at the root for OpenAI structured output".to_string(),
        ),
        _ => to_strict(schema).map_err(|refusal| {
            format!("cannot be expressed in OpenAI's strict structured-output mode: {refusal}")
        }),
    }
}

/// `extra` fields that would undo structured output.
fn extra_conflict(provider: ProviderId, extra: &Map<String, Value>) -> Option<String> {
    let owned: &[&str] = match provider {
        ProviderId::Anthropic => &["/tools", "/tool_choice"],
        ProviderId::Gemini => &[
            "/generationConfig/responseMimeType",
            "/generationConfig/responseJsonSchema",
            "/generationConfig/responseSchema",
        ],
        _ => &["/response_format"],
    };
    let extra = Value::Object(extra.clone());
    if let Some(p) = owned.iter().find(|p| extra.pointer(p).is_some()) {
        return Some(format!(
            "`extra` sets `{}`, which `responseSchema` needs; remove one of them",
            &p[1..].replace('/', ".")
        ));
    }
    if provider == ProviderId::Anthropic {
        let thinking = extra.pointer("/thinking/type").and_then(Value::as_str);
        if thinking.is_some_and(|t| t != "disabled") {
            return Some(
                "`extra.thinking` cannot be combined with `responseSchema` on Anthropic \
                 (structured output forces a tool call, which thinking does not allow); remove \
                 one of them"
                    .to_string(),
            );
        }
    }
    None
}

// ---------------------------------------------------------------------------------------------
// Rendering.

fn build_body(p: &Prepared, placeholder_data: bool) -> Value {
    let mut body = match p.info.provider {
        ProviderId::Anthropic => anthropic_body(p, placeholder_data),
        ProviderId::Gemini => gemini_body(p, placeholder_data),
        _ => openai_body(p, placeholder_data),
    };
    if let Some(extra) = &p.job.extra {
        deep_merge(&mut body, extra);
    }
    body
}

fn deep_merge(target: &mut Value, extra: &Map<String, Value>) {
    let Value::Object(target) = target else {
        return;
    };
    for (k, v) in extra {
        match (target.get_mut(k), v) {
            (Some(existing @ Value::Object(_)), Value::Object(more)) => deep_merge(existing, more),
            _ => {
                target.insert(k.clone(), v.clone());
            }
        }
    }
}

fn data(d: &str, placeholder: bool) -> &str {
    if placeholder {
        ""
    } else {
        d
    }
}

fn openai_body(p: &Prepared, placeholder: bool) -> Value {
    let mut messages = Vec::new();
    if let Some(system) = &p.system {
        messages.push(json!({"role": "system", "content": system}));
    }
    for turn in &p.turns {
        let role = if turn.assistant { "assistant" } else { "user" };
        let content = match turn.parts.as_slice() {
            [Part::Text(t)] => json!(t),
            parts => Value::Array(
                parts
                    .iter()
                    .map(|part| match part {
                        Part::Text(t) => json!({"type": "text", "text": t}),
                        Part::Pdf { name, data: d } => json!({
                            "type": "file",
                            "file": {
                                "filename": name,
                                "file_data": format!("data:application/pdf;base64,{}", data(d, placeholder)),
                            },
                        }),
                        Part::Image { media_type, data: d } => json!({
                            "type": "image_url",
                            "image_url": {"url": format!("data:{media_type};base64,{}", data(d, placeholder))},
                        }),
                    })
                    .collect(),
            ),
        };
        messages.push(json!({"role": role, "content": content}));
    }
    let mut body = Map::new();
    body.insert("model".into(), json!(p.model));
    body.insert("messages".into(), Value::Array(messages));
    if let Some(t) = p.job.temperature {
        body.insert("temperature".into(), json!(t));
    }
    if let Some(n) = p.max_tokens {
        body.insert("max_completion_tokens".into(), json!(n));
    }
    if let Some(schema) = &p.schema {
        body.insert(
            "response_format".into(),
            json!({
                "type": "json_schema",
                "json_schema": {"name": RESPONSE_SCHEMA_NAME, "schema": schema, "strict": true},
            }),
        );
    }
    Value::Object(body)
}

fn anthropic_body(p: &Prepared, placeholder: bool) -> Value {
    let messages: Vec<Value> = p
        .turns
        .iter()
        .map(|turn| {
            let role = if turn.assistant { "assistant" } else { "user" };
            let content = match turn.parts.as_slice() {
                [Part::Text(t)] => json!(t),
                parts => Value::Array(
                    parts
                        .iter()
                        .map(|part| match part {
                            Part::Text(t) => json!({"type": "text", "text": t}),
                            Part::Pdf { name, data: d } => {
                                let mut doc = json!({
                                    "type": "document",
                                    "source": {
                                        "type": "base64",
                                        "media_type": "application/pdf",
                                        "data": data(d, placeholder),
                                    },
                                    "title": name,
                                });
                                if p.citations {
                                    doc["citations"] = json!({"enabled": true});
                                }
                                doc
                            }
                            Part::Image {
                                media_type,
                                data: d,
                            } => json!({
                                "type": "image",
                                "source": {
                                    "type": "base64",
                                    "media_type": media_type,
                                    "data": data(d, placeholder),
                                },
                            }),
                        })
                        .collect(),
                ),
            };
            json!({"role": role, "content": content})
        })
        .collect();
    let mut body = Map::new();
    body.insert("model".into(), json!(p.model));
    body.insert(
        "max_tokens".into(),
        json!(p.max_tokens.unwrap_or(DEFAULT_ANTHROPIC_MAX_TOKENS)),
    );
    if let Some(system) = &p.system {
        body.insert("system".into(), json!(system));
    }
    body.insert("messages".into(), Value::Array(messages));
    if let Some(t) = p.job.temperature {
        body.insert("temperature".into(), json!(t));
    }
    if let Some(schema) = &p.schema {
        body.insert(
            "tools".into(),
            json!([{
                "name": RESPONSE_SCHEMA_NAME,
                "description": "Record the answer. Call this tool exactly once with the complete answer.",
                "input_schema": schema,
            }]),
        );
        body.insert(
            "tool_choice".into(),
            json!({"type": "tool", "name": RESPONSE_SCHEMA_NAME}),
        );
        if p.disable_thinking {
            body.insert("thinking".into(), json!({"type": "disabled"}));
        }
    }
    Value::Object(body)
}

fn gemini_body(p: &Prepared, placeholder: bool) -> Value {
    let contents: Vec<Value> = p
        .turns
        .iter()
        .map(|turn| {
            let parts: Vec<Value> = turn
                .parts
                .iter()
                .map(|part| match part {
                    Part::Text(t) => json!({"text": t}),
                    Part::Pdf { data: d, .. } => json!({
                        "inlineData": {"mimeType": "application/pdf", "data": data(d, placeholder)},
                    }),
                    Part::Image {
                        media_type,
                        data: d,
                    } => json!({
                        "inlineData": {"mimeType": media_type, "data": data(d, placeholder)},
                    }),
                })
                .collect();
            json!({"role": if turn.assistant { "model" } else { "user" }, "parts": parts})
        })
        .collect();
    let mut body = Map::new();
    body.insert("contents".into(), Value::Array(contents));
    if let Some(system) = &p.system {
        body.insert(
            "systemInstruction".into(),
            json!({"parts": [{"text": system}]}),
        );
    }
    let mut config = Map::new();
    if let Some(t) = p.job.temperature {
        config.insert("temperature".into(), json!(t));
    }
    if let Some(n) = p.max_tokens {
        config.insert("maxOutputTokens".into(), json!(n));
    }
    if let Some(schema) = &p.schema {
        config.insert("responseMimeType".into(), json!("application/json"));
        config.insert("responseJsonSchema".into(), schema.clone());
    }
    if !config.is_empty() {
        body.insert("generationConfig".into(), Value::Object(config));
    }
    Value::Object(body)
}

/// Renders the request and checks it is one the batch engine will batch, and fits a batch.
fn finish_request(p: &Prepared, endpoint: &ProviderEndpoint) -> Result<HttpRequest, JobError> {
    let provider = p.info.provider;
    let base = if endpoint.base_url.trim().is_empty() {
        default_base_url(provider)
    } else {
        endpoint.base_url.trim().trim_end_matches('/')
    };
    let key = endpoint.api_key.as_str();
    let mut headers: Vec<(String, String)> = Vec::new();
    let url = match provider {
        ProviderId::Anthropic => {
            if !key.is_empty() {
                headers.push(("x-api-key".into(), key.to_string()));
            }
            headers.push(("anthropic-version".into(), ANTHROPIC_VERSION.into()));
            format!("{base}/v1/messages")
        }
        ProviderId::Gemini => {
            if !key.is_empty() {
                headers.push(("x-goog-api-key".into(), key.to_string()));
            }
            format!("{base}/models/{}:generateContent", p.model)
        }
        _ => {
            if !key.is_empty() {
                headers.push(("authorization".into(), format!("Bearer {key}")));
            }
            format!("{base}/chat/completions")
        }
    };
    headers.push(("content-type".into(), "application/json".into()));
    for (k, v) in &endpoint.headers {
        if !headers.iter().any(|(h, _)| h.eq_ignore_ascii_case(k)) {
            headers.push((k.clone(), v.clone()));
        }
    }
    let req = HttpRequest {
        method: "POST".into(),
        url,
        headers,
        body: build_body(p, false).to_string(),
    };

    let id = || p.job.id.clone();
    let mut route = providers::classify(&req).map_err(|why| JobError::NotBatchable {
        id: id(),
        reason: format!("POST {} passes through: {why}", req.url),
    })?;
    if route.provider != provider {
        return Err(JobError::NotBatchable {
            id: id(),
            reason: format!(
                "POST {} is recognised as {}, not {provider}",
                req.url, route.provider
            ),
        });
    }
    let adapter = providers::adapter(provider);
    let mut limit = adapter.limits(&route).max_bytes;
    if provider == ProviderId::Anthropic {
        limit = limit.min(ANTHROPIC_MAX_REQUEST_BYTES);
    }
    // The item owns the body; the adapters size an item from it, not from the route's copy.
    let item = BatchItem {
        custom_id: p.job.id.clone(),
        body: std::mem::take(&mut route.body),
    };
    let ctx = BatchContext {
        route: &route,
        tag: "batchling-size-check",
    };
    let bytes = adapter.item_bytes(&ctx, &item).max(req.body.len());
    if bytes > limit {
        return Err(JobError::RequestTooLarge {
            id: id(),
            bytes,
            limit,
            provider,
        });
    }
    Ok(req)
}

fn file_tokens_est(p: &Prepared) -> u64 {
    p.turns
        .iter()
        .flat_map(|t| &t.parts)
        .map(|part| match part {
            Part::Text(_) => 0,
            Part::Image { .. } => IMAGE_TOKENS_EST,
            Part::Pdf { data, .. } => {
                pdf_pages(&base64_decode_prefix(data, usize::MAX)) * PDF_PAGE_TOKENS_EST
            }
        })
        .sum()
}

/// Page count from the PDF's `/Type /Page` objects; when those sit in compressed object streams,
/// a guess of one page per 50 kB.
fn pdf_pages(pdf: &[u8]) -> u64 {
    let mut pages = 0u64;
    let mut i = 0;
    while let Some(at) = find(&pdf[i..], b"/Type") {
        let mut j = i + at + b"/Type".len();
        while j < pdf.len() && pdf[j].is_ascii_whitespace() {
            j += 1;
        }
        if pdf[j..].starts_with(b"/Page")
            && !pdf
                .get(j + b"/Page".len())
                .is_some_and(|c| c.is_ascii_alphanumeric())
        {
            pages += 1;
        }
        i = j;
    }
    if pages == 0 {
        (pdf.len() as u64).div_ceil(50_000).max(1)
    } else {
        pages
    }
}

/// Input tokens of a request-body string that is an attachment: base64 (or a `data:…;base64,`
/// URL) of a PDF ([`PDF_PAGE_TOKENS_EST`] per page) or an image ([`IMAGE_TOKENS_EST`]). `None`
/// for anything else, which is billed as text. Short strings are never attachments.
pub(crate) fn attachment_tokens_est(s: &str) -> Option<u64> {
    const MIN_ATTACHMENT_CHARS: usize = 512;
    if s.len() < MIN_ATTACHMENT_CHARS {
        return None;
    }
    let data = match s.strip_prefix("data:") {
        Some(url) => url.split_once(";base64,")?.1,
        None => s,
    };
    base64_check(data).ok()?;
    let head = base64_decode_prefix(data, 16);
    if head.starts_with(b"%PDF") {
        Some(pdf_pages(&base64_decode_prefix(data, usize::MAX)) * PDF_PAGE_TOKENS_EST)
    } else {
        sniff_image(&head).map(|_| IMAGE_TOKENS_EST)
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    find(hay, needle).is_some()
}

fn sniff_image(head: &[u8]) -> Option<&'static str> {
    if head.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if head.starts_with(b"\xFF\xD8\xFF") {
        Some("image/jpeg")
    } else if head.starts_with(b"GIF87a") || head.starts_with(b"GIF89a") {
        Some("image/gif")
    } else if head.len() >= 12 && &head[..4] == b"RIFF" && &head[8..12] == b"WEBP" {
        Some("image/webp")
    } else {
        None
    }
}

// ---------------------------------------------------------------------------------------------
// Base64 (standard alphabet, padded). Hand-rolled: the core takes no extra dependencies.

fn b64_value(c: u8) -> Option<u8> {
    match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    }
}

/// `Err(offset)` of the first byte that makes `s` invalid padded base64.
fn base64_check(s: &str) -> Result<(), usize> {
    let b = s.as_bytes();
    if !b.len().is_multiple_of(4) {
        return Err(b.len());
    }
    let pad = b.iter().rev().take(2).take_while(|&&c| c == b'=').count();
    let body = &b[..b.len() - pad];
    if let Some(at) = body.iter().position(|&c| b64_value(c).is_none()) {
        return Err(at);
    }
    Ok(())
}

/// Decodes at most `max_bytes` (rounded up to whole 3-byte groups) of already-checked base64.
fn base64_decode_prefix(s: &str, max_bytes: usize) -> Vec<u8> {
    let groups = s.len() / 4;
    let want = max_bytes.div_ceil(3).min(groups);
    let mut out = Vec::with_capacity(want * 3);
    for chunk in s.as_bytes().chunks_exact(4).take(want) {
        let v: Vec<u8> = chunk.iter().filter_map(|&c| b64_value(c)).collect();
        let n = v.len();
        let word = v
            .iter()
            .chain(std::iter::repeat(&0))
            .take(4)
            .fold(0u32, |acc, &x| (acc << 6) | u32::from(x));
        let bytes = [(word >> 16) as u8, (word >> 8) as u8, word as u8];
        out.extend_from_slice(&bytes[..n.saturating_sub(1)]);
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Results.

/// Turns the (synthetic) synchronous response to `job`'s request into its result. Never panics;
/// anything unusable becomes `ok: false` with a reason.
pub fn extract_result(job: &JobSpec, status: u16, body: &str) -> JobResult {
    let mut r = JobResult {
        job_id: job.id.clone(),
        ok: false,
        status,
        response: None,
        parsed_response: None,
        citations: Vec::new(),
        input_tokens: None,
        output_tokens: None,
        cost_usd: None,
        finish_reason: None,
        truncated: false,
        error: None,
    };
    let info = match models::resolve(&job.model) {
        Ok(info) => info,
        Err(e) => {
            r.error = Some(e.to_string());
            return r;
        }
    };
    if !(200..300).contains(&status) {
        let resp = HttpResponse {
            status,
            headers: Vec::new(),
            body: body.to_string(),
        };
        r.error = Some(format!(
            "HTTP {status}: {}",
            providers::describe_error(&resp)
        ));
        return r;
    }
    let v: Value = match serde_json::from_str(body) {
        Ok(v) => v,
        Err(e) => {
            r.error = Some(format!("the response body is not JSON: {e}"));
            return r;
        }
    };
    let out = match info.provider {
        ProviderId::Anthropic => anthropic_output(&v),
        ProviderId::Gemini => gemini_output(&v),
        _ => openai_output(&v),
    };
    r.input_tokens = out.input_tokens;
    r.output_tokens = out.output_tokens;
    r.cost_usd = usage_cost(info, out.input_tokens, out.output_tokens);
    r.citations = out.citations;
    r.finish_reason = out.finish_reason;
    r.truncated = out.truncated;
    r.response = out.text;
    let cap_hint = || match effective_max_tokens(job, info) {
        Some(n) => format!(" (the output hit the {n}-token cap; raise `maxTokens`)"),
        None => " (the output hit the model's token cap)".to_string(),
    };
    if let Some(problem) = out.problem {
        r.error = Some(problem);
        return r;
    }
    match &job.response_schema {
        None => {
            if r.response.as_deref().is_some_and(|t| !t.is_empty()) {
                r.ok = true;
            } else if r.truncated {
                r.error = Some(format!(
                    "the answer is empty: the model used every output token before writing any \
                     (thinking and reasoning count towards the cap){}",
                    cap_hint()
                ));
            } else {
                r.error = Some("the answer is empty".to_string());
            }
        }
        Some(schema) => {
            let parsed = match out.structured {
                Some(v) => Ok(v),
                None => parse_json_answer(r.response.as_deref().unwrap_or_default()),
            };
            let truncated = if r.truncated {
                cap_hint()
            } else {
                String::new()
            };
            match parsed {
                Err(e) => r.error = Some(format!("the answer is not valid JSON: {e}{truncated}")),
                Ok(mut value) => {
                    // Strict mode made the model write null for the optional fields it left out.
                    if strict_schema_provider(info.provider) {
                        drop_introduced_nulls(schema, &mut value);
                    }
                    match validate_json(schema, &value) {
                        Ok(()) => {
                            r.ok = true;
                            r.parsed_response = Some(value);
                        }
                        Err(e) => {
                            r.error = Some(format!(
                                "the answer does not match responseSchema: {e}{truncated}"
                            ))
                        }
                    }
                }
            }
        }
    }
    r
}

/// What one provider's answer holds, before schema checks.
#[derive(Default)]
struct Output {
    text: Option<String>,
    /// Anthropic tool input.
    structured: Option<Value>,
    citations: Vec<Citation>,
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    finish_reason: Option<String>,
    truncated: bool,
    /// A refusal, a block, a missing answer.
    problem: Option<String>,
}

fn u64_at(v: &Value, pointer: &str) -> Option<u64> {
    v.pointer(pointer).and_then(Value::as_u64)
}

fn openai_output(v: &Value) -> Output {
    let mut out = Output {
        input_tokens: u64_at(v, "/usage/prompt_tokens"),
        output_tokens: u64_at(v, "/usage/completion_tokens"),
        ..Output::default()
    };
    let Some(choice) = v.pointer("/choices/0") else {
        out.problem = Some("the response has no choices".to_string());
        return out;
    };
    out.finish_reason = choice
        .get("finish_reason")
        .and_then(Value::as_str)
        .map(str::to_string);
    out.truncated = out.finish_reason.as_deref() == Some("length");
    out.text = choice
        .pointer("/message/content")
        .and_then(Value::as_str)
        .map(str::to_string);
    if let Some(refusal) = choice.pointer("/message/refusal").and_then(Value::as_str) {
        out.problem = Some(format!("the model refused: {refusal}"));
    } else if out.finish_reason.as_deref() == Some("content_filter") {
        out.problem = Some("the answer was withheld by OpenAI's content filter".to_string());
    }
    out
}

fn anthropic_output(v: &Value) -> Output {
    let usage = |k: &str| u64_at(v, &format!("/usage/{k}"));
    let input = usage("input_tokens").map(|n| {
        n + usage("cache_creation_input_tokens").unwrap_or(0)
            + usage("cache_read_input_tokens").unwrap_or(0)
    });
    let mut out = Output {
        input_tokens: input,
        output_tokens: usage("output_tokens"),
        finish_reason: v
            .get("stop_reason")
            .and_then(Value::as_str)
            .map(str::to_string),
        ..Output::default()
    };
    out.truncated = out.finish_reason.as_deref() == Some("max_tokens");
    let mut text = String::new();
    let mut any_text = false;
    for block in v
        .get("content")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        match block.get("type").and_then(Value::as_str) {
            Some("text") => {
                any_text = true;
                text.push_str(
                    block
                        .get("text")
                        .and_then(Value::as_str)
                        .unwrap_or_default(),
                );
                for c in block
                    .get("citations")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    out.citations.push(anthropic_citation(c));
                }
            }
            Some("tool_use")
                if block.get("name").and_then(Value::as_str) == Some(RESPONSE_SCHEMA_NAME) =>
            {
                out.structured = block.get("input").cloned();
            }
            _ => {}
        }
    }
    out.text = match &out.structured {
        Some(input) => Some(input.to_string()),
        None => any_text.then_some(text),
    };
    if out.finish_reason.as_deref() == Some("refusal") {
        out.problem = Some("the model declined to answer (stop_reason: refusal)".to_string());
    }
    out
}

fn anthropic_citation(c: &Value) -> Citation {
    let source = match c.get("document_title").and_then(Value::as_str) {
        Some(t) if !t.is_empty() => t.to_string(),
        _ => match c.get("document_index").and_then(Value::as_u64) {
            Some(i) => format!("document {i}"),
            None => "document".to_string(),
        },
    };
    let start = c.get("start_page_number").and_then(Value::as_u64);
    // The API's end page is exclusive.
    let end = c
        .get("end_page_number")
        .and_then(Value::as_u64)
        .map(|e| e.saturating_sub(1).max(start.unwrap_or(0)));
    Citation {
        cited_text: c
            .get("cited_text")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        source,
        start_page: start,
        end_page: end.filter(|_| start.is_some()),
    }
}

/// Gemini finish reasons that mean the answer was withheld.
const GEMINI_BLOCKED: &[&str] = &[
    "SAFETY",
    "RECITATION",
    "BLOCKLIST",
    "PROHIBITED_CONTENT",
    "SPII",
    "IMAGE_SAFETY",
];

fn gemini_output(v: &Value) -> Output {
    let prompt = u64_at(v, "/usageMetadata/promptTokenCount");
    let candidates = u64_at(v, "/usageMetadata/candidatesTokenCount");
    let thoughts = u64_at(v, "/usageMetadata/thoughtsTokenCount");
    let mut out = Output {
        input_tokens: prompt,
        output_tokens: match (candidates, thoughts) {
            (None, None) => None,
            (c, t) => Some(c.unwrap_or(0) + t.unwrap_or(0)),
        },
        ..Output::default()
    };
    let Some(candidate) = v.pointer("/candidates/0") else {
        out.problem = Some(
            match v
                .pointer("/promptFeedback/blockReason")
                .and_then(Value::as_str)
            {
                Some(reason) => format!("Gemini blocked the prompt ({reason})"),
                None => "the response has no candidates".to_string(),
            },
        );
        return out;
    };
    out.finish_reason = candidate
        .get("finishReason")
        .and_then(Value::as_str)
        .map(str::to_string);
    out.truncated = out.finish_reason.as_deref() == Some("MAX_TOKENS");
    let mut text = String::new();
    let mut any_text = false;
    for part in candidate
        .pointer("/content/parts")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if part.get("thought").and_then(Value::as_bool) == Some(true) {
            continue;
        }
        if let Some(t) = part.get("text").and_then(Value::as_str) {
            any_text = true;
            text.push_str(t);
        }
    }
    out.text = any_text.then_some(text);
    if let Some(reason) = out
        .finish_reason
        .as_deref()
        .filter(|r| GEMINI_BLOCKED.contains(r))
    {
        out.problem = Some(format!("Gemini withheld the answer ({reason})"));
    }
    out
}

fn usage_cost(info: &ModelInfo, input: Option<u64>, output: Option<u64>) -> Option<f64> {
    if input.is_none() && output.is_none() {
        return None;
    }
    let p = info.price()?;
    let sync = (input.unwrap_or(0) as f64 * p.input_usd_per_mtok
        + output.unwrap_or(0) as f64 * p.output_usd_per_mtok)
        / 1_000_000.0;
    Some(sync * p.batch_multiplier)
}

/// Parses a JSON answer, tolerating surrounding whitespace and a Markdown code fence.
fn parse_json_answer(text: &str) -> Result<Value, String> {
    let mut t = text.trim();
    if let Some(rest) = t.strip_prefix("```") {
        let rest = rest.strip_prefix("json").unwrap_or(rest);
        t = rest.strip_suffix("```").unwrap_or(rest).trim();
    }
    if t.is_empty() {
        return Err("the answer is empty".to_string());
    }
    serde_json::from_str(t).map_err(|e| e.to_string())
}

// ---------------------------------------------------------------------------------------------
// JSON Schema validation (a subset).

/// Checks `value` against `schema`, supporting the subset structured output uses: `type` (a name
/// or a list of names; `integer` accepts whole numbers), OpenAPI's `nullable: true`, `enum`,
/// `const`, `properties`, `required`, `additionalProperties` (`false` or a schema), `items`,
/// `anyOf` / `oneOf` (both as "at least one"), `allOf`, and local `$ref`s (`#/$defs/...`).
/// Other keywords are ignored. The error names the first offending place as a path (`$.a[2].b`).
pub fn validate_json(schema: &Value, value: &Value) -> Result<(), String> {
    Validator { root: schema }.check(schema, value, "$", 0)
}

struct Validator<'a> {
    root: &'a Value,
}

/// `$ref` hops allowed without descending into the value (guards against `$ref` cycles).
const MAX_REF_HOPS: usize = 32;

impl Validator<'_> {
    fn check(&self, schema: &Value, value: &Value, path: &str, hops: usize) -> Result<(), String> {
        let obj = match schema {
            Value::Bool(true) => return Ok(()),
            Value::Bool(false) => return Err(format!("{path}: no value is allowed here")),
            Value::Object(obj) => obj,
            _ => return Ok(()),
        };
        if let Some(reference) = obj.get("$ref").and_then(Value::as_str) {
            if hops >= MAX_REF_HOPS {
                return Err(format!("{path}: `$ref` {reference} loops"));
            }
            let target = reference
                .strip_prefix('#')
                .and_then(|p| self.root.pointer(p))
                .ok_or_else(|| format!("{path}: cannot resolve `$ref` {reference}"))?;
            self.check(target, value, path, hops + 1)?;
        }
        if let Some(t) = obj.get("type") {
            let mut names: Vec<&str> = match t {
                Value::String(s) => vec![s.as_str()],
                Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
                _ => Vec::new(),
            };
            if obj.get("nullable") == Some(&Value::Bool(true)) {
                names.push("null");
            }
            if !names.is_empty() && !names.iter().any(|n| type_matches(n, value)) {
                return Err(format!(
                    "{path}: expected {}, got {}",
                    names.join(" or "),
                    type_name(value)
                ));
            }
        }
        if let Some(options) = obj.get("enum").and_then(Value::as_array) {
            if !options.iter().any(|o| json_eq(o, value)) {
                return Err(format!(
                    "{path}: {} is not one of {}",
                    short(value),
                    short(&Value::Array(options.clone()))
                ));
            }
        }
        if let Some(c) = obj.get("const") {
            if !json_eq(c, value) {
                return Err(format!(
                    "{path}: expected {}, got {}",
                    short(c),
                    short(value)
                ));
            }
        }
        for key in ["anyOf", "oneOf"] {
            if let Some(alternatives) = obj.get(key).and_then(Value::as_array) {
                let mut first_error = None;
                let matched = alternatives.iter().any(|alt| {
                    let res = self.check(alt, value, path, hops);
                    if let Err(e) = &res {
                        first_error.get_or_insert_with(|| e.clone());
                    }
                    res.is_ok()
                });
                if !matched && !alternatives.is_empty() {
                    return Err(format!(
                        "{path}: matches none of the `{key}` alternatives (first: {})",
                        first_error.unwrap_or_default()
                    ));
                }
            }
        }
        if let Some(all) = obj.get("allOf").and_then(Value::as_array) {
            for sub in all {
                self.check(sub, value, path, hops)?;
            }
        }
        match value {
            Value::Object(map) => {
                let props = obj.get("properties").and_then(Value::as_object);
                if let Some(required) = obj.get("required").and_then(Value::as_array) {
                    for key in required.iter().filter_map(Value::as_str) {
                        if !map.contains_key(key) {
                            return Err(format!("{path}: missing required property `{key}`"));
                        }
                    }
                }
                for (key, item) in map {
                    let child = child_path(path, key);
                    match props.and_then(|p| p.get(key)) {
                        Some(sub) => self.check(sub, item, &child, 0)?,
                        None => match obj.get("additionalProperties") {
                            Some(Value::Bool(false)) => {
                                return Err(format!("{path}: unexpected property `{key}`"))
                            }
                            Some(extra @ Value::Object(_)) => self.check(extra, item, &child, 0)?,
                            _ => {}
                        },
                    }
                }
            }
            Value::Array(items) => {
                if let Some(sub) = obj.get("items").filter(|s| !s.is_array()) {
                    for (i, item) in items.iter().enumerate() {
                        self.check(sub, item, &format!("{path}[{i}]"), 0)?;
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }
}

fn type_matches(name: &str, v: &Value) -> bool {
    match name {
        "null" => v.is_null(),
        "boolean" => v.is_boolean(),
        "string" => v.is_string(),
        "number" => v.is_number(),
        "integer" => match v {
            Value::Number(n) => {
                n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|f| f.fract() == 0.0)
            }
            _ => false,
        },
        "array" => v.is_array(),
        "object" => v.is_object(),
        _ => true,
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Equality with numbers compared by value (1 == 1.0).
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x == y || x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_eq(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, a)| y.get(k).is_some_and(|b| json_eq(a, b)))
        }
        _ => a == b,
    }
}

fn child_path(path: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !key.starts_with(|c: char| c.is_ascii_digit());
    if plain {
        format!("{path}.{key}")
    } else {
        format!("{path}[{}]", Value::String(key.to_string()))
    }
}

/// A value for an error message, cut to a readable length.
fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.len() <= 80 {
        return s;
    }
    let mut end = 77;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

mod strict;
pub use strict::{drop_introduced_nulls, to_strict, StrictRefusal};

#[cfg(test)]
mod tests;

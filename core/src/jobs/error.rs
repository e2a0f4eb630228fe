//! Why a job cannot be sent: one typed error, whose `Display` names the job and what to change.

use std::fmt;

use crate::catalog::models::UnknownModel;
use crate::provider_id::ProviderId;

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
    /// The `system` field's content blocks.
    InvalidSystem {
        id: String,
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
    /// The host has no API key for the provider that serves the job's model.
    MissingKey {
        id: String,
        provider: ProviderId,
    },
}

impl JobError {
    /// The stable code users match on (`err.code`), in the package's one style: `ERR_BATCHLING_*`.
    pub fn code(&self) -> &'static str {
        match self {
            JobError::EmptyId => "ERR_BATCHLING_EMPTY_ID",
            JobError::BothInputs { .. } => "ERR_BATCHLING_BOTH_INPUTS",
            JobError::NoInput { .. } => "ERR_BATCHLING_NO_INPUT",
            JobError::FileWithoutPrompt { .. } => "ERR_BATCHLING_FILE_WITHOUT_PROMPT",
            JobError::InvalidMessage { .. } | JobError::InvalidSystem { .. } => {
                "ERR_BATCHLING_INVALID_MESSAGE"
            }
            JobError::UnknownModel { .. } => "ERR_BATCHLING_UNKNOWN_MODEL",
            JobError::UnsupportedFile { .. } => "ERR_BATCHLING_UNSUPPORTED_FILE",
            JobError::InvalidFile { .. } => "ERR_BATCHLING_INVALID_FILE",
            JobError::StructuredOutputUnsupported { .. } => {
                "ERR_BATCHLING_STRUCTURED_OUTPUT_UNSUPPORTED"
            }
            JobError::InvalidSchema { .. } => "ERR_BATCHLING_INVALID_SCHEMA",
            JobError::TemperatureUnsupported { .. } => "ERR_BATCHLING_TEMPERATURE_UNSUPPORTED",
            JobError::TemperatureOutOfRange { .. } => "ERR_BATCHLING_TEMPERATURE_OUT_OF_RANGE",
            JobError::MaxTokensOutOfRange { .. } => "ERR_BATCHLING_MAX_TOKENS_OUT_OF_RANGE",
            JobError::ReservedExtraKey { .. } => "ERR_BATCHLING_RESERVED_EXTRA_KEY",
            JobError::ConflictingExtra { .. } => "ERR_BATCHLING_CONFLICTING_EXTRA",
            JobError::RequestTooLarge { .. } => "ERR_BATCHLING_REQUEST_TOO_LARGE",
            JobError::NotBatchable { .. } => "ERR_BATCHLING_NOT_BATCHABLE",
            JobError::MissingKey { .. } => "ERR_BATCHLING_MISSING_KEY",
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
            JobError::InvalidSystem { id, reason } => write!(f, "job `{id}`: `system` {reason}"),
            JobError::InvalidMessage { id, index, reason } => {
                write!(f, "job `{id}`: messages[{index}] {reason}")
            }
            // A typo gets its suggestions; a name that looks like no typo (a fine-tune's
            // `ft:…` / `…/…` id, or nothing close) the option that makes it usable.
            JobError::UnknownModel { id, error }
                if error.model.trim().is_empty()
                    || !(error.suggestions.is_empty()
                        || error.model.contains(':')
                        || error.model.contains('/')) =>
            {
                write!(f, "job `{id}`: {error}")
            }
            JobError::UnknownModel { id, error } => write!(
                f,
                "job `{id}`: {error}; for a model batchling does not know (e.g. a fine-tune), give \
                 its provider and price with the `prices` option: {{ \"{}\": {{ provider, \
                 inputPerMTok, outputPerMTok }} }}",
                error.model
            ),
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
            JobError::MissingKey { id, provider } => {
                let name = provider.as_str();
                write!(f, "job `{id}` needs an API key for {name}: ")?;
                if let Some(env) = provider.descriptor().api_key_env {
                    write!(f, "set {env} or ")?;
                }
                write!(f, "pass providers: {{ {name}: {{ apiKey }} }}")
            }
        }
    }
}

impl std::error::Error for JobError {}

fn megabytes(bytes: usize) -> String {
    format!("{:.1} MB", bytes as f64 / 1_000_000.0)
}

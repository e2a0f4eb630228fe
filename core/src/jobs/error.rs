//! Why a job cannot be sent: one typed error, whose `Display` names the job and what to change.

use std::fmt;

use crate::catalog::models::UnknownModel;
use crate::providers::ProviderId;

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

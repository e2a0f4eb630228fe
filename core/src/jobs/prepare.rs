//! Validation and the provider-neutral plan: a job is checked against its model's capabilities
//! and turned into turns of parts (text, PDF, image) ready to render for its provider.

use serde_json::{json, Map, Value};

use crate::attachments::{
    base64_check, base64_decode_prefix, classify_media, contains, pdf_pages, sniff_image, FileKind,
    IMAGE_TOKENS_EST, PDF_PAGE_TOKENS_EST,
};
use crate::catalog::models::{self, ModelInfo};

use super::{Content, FileInput, JobError, JobSpec};
use crate::job_format::JobFormat;
use crate::job_format::{Part, Prepared, Turn};

/// The job's model in the registry, else (a model the registry does not know, e.g. a fine-tune
/// id) what [`models::unlisted`] assumes of its priced provider's models.
pub(super) fn resolve_model(job: &JobSpec) -> Result<&'static ModelInfo, JobError> {
    models::resolve(&job.model).or_else(|error| {
        job.price
            .and_then(|p| p.provider)
            .filter(|_| !job.model.trim().is_empty())
            .and_then(models::unlisted)
            .ok_or_else(|| JobError::UnknownModel {
                id: job.id.clone(),
                error,
            })
    })
}

/// Shape checks that need no model, then the model.
pub(super) fn resolve_checked(job: &JobSpec) -> Result<&'static ModelInfo, JobError> {
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

/// The job format of the provider that serves `info`'s model.
pub(super) fn job_format(
    job: &JobSpec,
    info: &ModelInfo,
) -> Result<&'static dyn JobFormat, JobError> {
    info.provider
        .descriptor()
        .jobs
        .ok_or_else(|| JobError::NotBatchable {
            id: job.id.clone(),
            reason: format!("the job builder does not serve {}", info.provider),
        })
}

pub(super) fn prepare<'a>(
    job: &'a JobSpec,
    info: &'static ModelInfo,
) -> Result<Prepared<'a>, JobError> {
    let id = || job.id.clone();
    let format = job_format(job, info)?;

    // Conversation. Content blocks reach a format that takes them unchanged; others get their text.
    let keep_blocks = format.takes_content_blocks();
    let mut system: Vec<String> = Vec::new();
    let mut system_blocks: Vec<Value> = Vec::new();
    let mut any_system_blocks = false;
    let mut add_system = |content: &Content, system: &mut Vec<String>| {
        let text = content.text(keep_blocks)?;
        match content {
            Content::Blocks(blocks) => {
                any_system_blocks = true;
                system_blocks.extend(blocks.iter().cloned());
            }
            Content::Text(_) => system_blocks.push(json!({"type": "text", "text": text})),
        }
        system.push(text);
        Ok::<(), String>(())
    };
    if let Some(content) = &job.system {
        let blank = matches!(content, Content::Text(t) if t.trim().is_empty());
        if !blank {
            add_system(content, &mut system)
                .map_err(|reason| JobError::InvalidSystem { id: id(), reason })?;
        }
    }
    let mut turns = Vec::new();
    if let Some(messages) = &job.messages {
        for (index, m) in messages.iter().enumerate() {
            let bad = |reason: &str| JobError::InvalidMessage {
                id: id(),
                index,
                reason: reason.to_string(),
            };
            if matches!(&m.content, Content::Text(t) if t.trim().is_empty()) {
                return Err(bad("has empty `content`"));
            }
            match m.role.as_str() {
                "system" => add_system(&m.content, &mut system)
                    .map_err(|reason| bad(&format!("`content`: {reason}")))?,
                "user" | "assistant" => {
                    let text = m
                        .content
                        .text(keep_blocks)
                        .map_err(|reason| bad(&format!("`content`: {reason}")))?;
                    turns.push(Turn {
                        assistant: m.role == "assistant",
                        parts: vec![Part::Text(text)],
                        blocks: match &m.content {
                            Content::Blocks(b) if keep_blocks => Some(b.as_slice()),
                            _ => None,
                        },
                    })
                }
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
            Some(file) => match file_part(job, info, format, file)? {
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
            blocks: None,
        });
    }
    let system = (!system.is_empty()).then(|| system.join("\n\n"));
    let system_blocks = (keep_blocks && any_system_blocks).then_some(system_blocks);

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
                wire_schema(format, schema)
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
        let max = format.max_temperature();
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
            extra_conflict(format, extra).map_or(Ok(()), |reason| {
                Err(JobError::ConflictingExtra { id: id(), reason })
            })?;
        }
    }

    Ok(Prepared {
        job,
        info,
        format,
        model: format.model_name(&job.model),
        system,
        system_blocks,
        turns,
        max_tokens: effective_max_tokens(job, info, format),
        schema: wire_schema,
    })
}

/// The output cap the request carries: the job's, else the provider's default (Anthropic
/// requires one).
pub(super) fn effective_max_tokens(
    job: &JobSpec,
    info: &ModelInfo,
    format: &dyn JobFormat,
) -> Option<u64> {
    job.max_tokens.or_else(|| format.default_max_tokens(info))
}

pub(super) enum FilePart<'a> {
    Inline(Part<'a>),
    Text(String),
}

pub(super) fn file_part<'a>(
    job: &JobSpec,
    info: &ModelInfo,
    format: &dyn JobFormat,
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
            let accepted = format.image_types();
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
pub(super) fn alternative(info: &ModelInfo, ok: impl Fn(&ModelInfo) -> bool, what: &str) -> String {
    match models::all()
        .iter()
        .find(|m| m.provider == info.provider && ok(m))
    {
        Some(m) => format!("use a model that reads {what}, e.g. {}", m.name),
        None => format!("use a model that reads {what}"),
    }
}

/// A text file inlined before the prompt.
pub(super) fn inline_text_file(name: &str, text: &str, prompt: &str) -> String {
    let name: String = name
        .chars()
        .map(|c| if c == '"' || c.is_control() { '_' } else { c })
        .collect();
    let newline = if text.ends_with('\n') { "" } else { "\n" };
    format!("<file name=\"{name}\">\n{text}{newline}</file>\n\n{prompt}")
}

/// The schema to send, or why `schema` cannot be used with the job's provider.
pub(super) fn wire_schema(format: &dyn JobFormat, schema: &Value) -> Result<Value, String> {
    if !schema.is_object() {
        return Err("must be a JSON Schema object".to_string());
    }
    format.wire_schema(schema)
}

/// `extra` fields that would undo structured output.
pub(super) fn extra_conflict(format: &dyn JobFormat, extra: &Map<String, Value>) -> Option<String> {
    let extra = Value::Object(extra.clone());
    if let Some(p) = format
        .schema_fields()
        .iter()
        .find(|p| extra.pointer(p).is_some())
    {
        return Some(format!(
            "`extra` sets `{}`, which `responseSchema` needs; remove one of them",
            &p[1..].replace('/', ".")
        ));
    }
    format.schema_extra_conflict(&extra)
}

pub(super) fn file_tokens_est(p: &Prepared) -> u64 {
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

//! Together AI batch API (providers.md §7): a presigned upload (`POST {base}/files?…&purpose=
//! batch-api` answers `302` with the storage URL, then `PUT` the JSONL there), then
//! `POST {base}/batches` (answered inside a `{job, warning?}` wrapper); poll
//! `GET {base}/batches/{id}`; results in the output and error files.
//!
//! Only chat completions are batched. Together's batch endpoint enum also has the audio
//! transcription / translation endpoints, but their synchronous calls are multipart uploads, so
//! they pass through like every other path under a Together host.
//!
//! **Assumed, not confirmed** (providers.md marks it so): result lines are OpenAI-shaped,
//! `{custom_id, response: {status_code, body}}` or `{custom_id, error: {code, message}}`, with
//! per-request failures in the error file even when the batch is COMPLETED; they are read by the
//! OpenAI line parser. Error bodies are taken to be OpenAI's `{"error": {message, type, param,
//! code}}` envelope (Together's API is OpenAI-compatible); the together-ai SDK picks its error
//! class by status alone, so a 400 line is a `BadRequestError` whatever the body.
//!
//! Batches carry no metadata to tag, so a lost create is looked up by its input file id (unique
//! per upload, see [`LostCreateKey::UploadedFile`]).

use serde_json::{json, Value};

use super::common::{self, ok_json, str_field};
use super::hosts::any_window;
use super::openai_compat::{self, ByteCount, OpenAi};
use super::{
    BatchContext, BatchItem, BatchLimits, EndKind, HostMatch, LostCreateKey, ParsedResults,
    PassThrough, PollReport, PollState, ProtocolError, ProviderAdapter, ProviderDescriptor,
    ProviderId, RemoteBatch, Route, REDIRECT_MANUAL_HEADER,
};
use crate::http::{HttpRequest, HttpResponse};

/// The one endpoint batched: the sync path under the base, and the batch's `endpoint` value.
const CHAT_PATH: &str = "/chat/completions";
const CHAT_ENDPOINT: &str = "/v1/chat/completions";
/// Batchable in Together's batch API, but multipart in their synchronous form.
const AUDIO_PATHS: &[&str] = &["/audio/transcriptions", "/audio/translations"];

/// Together's file purpose for batch input.
const PURPOSE: &str = "batch-api";

/// Documented limits: 50,000 requests and 100 MB per input file (MB read as 10^6 bytes). The
/// PUT carries the bare JSONL, so no envelope needs room.
const MAX_REQUESTS: usize = 50_000;
const MAX_FILE_BYTES: usize = 100_000_000;

/// The header of the upload's 302 that names the new file.
const FILE_ID_HEADER: &str = "x-together-file-id";

pub(super) const DESCRIPTOR: ProviderDescriptor = ProviderDescriptor {
    id: ProviderId::Together,
    name: "together",
    adapter: &Together,
    openai_profile: None,
    // The SDK client's default base, and the one its upload helper uses.
    hosts: &["https://api.together.ai/v1", "https://api.together.xyz/v1"],
    default_base_url: Some("https://api.together.ai/v1"),
    window_error: any_window,
    api_key_env: Some("TOGETHER_API_KEY"),
    base_url_env: None,
    jobs: None,
};

pub struct Together;

impl Together {
    /// The input file: one line per item, each ending in a newline.
    fn input_jsonl(items: &[BatchItem]) -> String {
        let mut out = Vec::new();
        for item in items {
            common::write_custom_id_body_line(&mut out, item);
            out.push(b'\n');
        }
        String::from_utf8(out).expect("serde_json writes UTF-8")
    }

    /// `file_name=…&file_type=jsonl&purpose=batch-api`, sent as the query and as the form body,
    /// as the SDK does. The tag is URL-safe (`batchling-<hex>`).
    fn upload_params(tag: &str) -> String {
        format!("file_name={tag}.jsonl&file_type=jsonl&purpose={PURPOSE}")
    }

    /// A BatchJob's id and status.
    fn remote_batch(job: &Value) -> Option<RemoteBatch> {
        Some(RemoteBatch {
            id: str_field(job, "/id")
                .filter(|id| !id.is_empty())?
                .to_string(),
            state_label: str_field(job, "/status").unwrap_or("").to_string(),
        })
    }

    /// The upload's 302: (storage URL, file id).
    fn redirect(resp: &HttpResponse) -> Result<(&str, &str), ProtocolError> {
        if !(300..400).contains(&resp.status) {
            return Err(ProtocolError::new(format!(
                "file upload: expected a 302 redirect to the upload URL, got HTTP {}: {}",
                resp.status,
                common::describe_error(resp)
            )));
        }
        let location = resp
            .header("location")
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .ok_or_else(|| ProtocolError::new("file upload: the redirect has no Location"))?;
        let file_id = resp
            .header(FILE_ID_HEADER)
            .map(str::trim)
            .filter(|id| !id.is_empty())
            .ok_or_else(|| {
                ProtocolError::new(format!("file upload: the redirect has no {FILE_ID_HEADER}"))
            })?;
        Ok((location, file_id))
    }
}

impl ProviderAdapter for Together {
    fn id(&self) -> ProviderId {
        ProviderId::Together
    }

    fn recognize_at(&self, req: &HttpRequest, host: &HostMatch) -> Result<Route, PassThrough> {
        match host.rest_path {
            CHAT_PATH => openai_compat::route(
                req,
                &host.base_url,
                CHAT_ENDPOINT,
                host.provider,
                host.settings,
            ),
            path if AUDIO_PATHS.contains(&path) => Err(PassThrough::NotJson),
            _ => Err(PassThrough::UnknownUrl),
        }
    }

    fn limits(&self, route: &Route) -> BatchLimits {
        BatchLimits {
            max_requests: route.settings.max_requests.unwrap_or(MAX_REQUESTS),
            max_bytes: route.settings.max_file_bytes.unwrap_or(MAX_FILE_BYTES),
        }
    }

    fn item_bytes(&self, _ctx: &BatchContext, item: &BatchItem) -> usize {
        let mut count = ByteCount(0);
        common::write_custom_id_body_line(&mut count, item);
        count.0 + 1
    }

    /// The first half of the upload: announce the file; the answer is a 302 to storage.
    fn build_upload(&self, ctx: &BatchContext, _items: &[BatchItem]) -> Option<HttpRequest> {
        let params = Self::upload_params(ctx.tag);
        let mut headers = ctx.route.forward_headers.clone();
        headers.push((
            "content-type".into(),
            "application/x-www-form-urlencoded".into(),
        ));
        headers.push((REDIRECT_MANUAL_HEADER.into(), "manual".into()));
        Some(HttpRequest {
            method: "POST".into(),
            url: format!("{}/files?{params}", ctx.route.base_url),
            headers,
            body: params,
        })
    }

    fn parse_upload(&self, resp: &HttpResponse) -> Result<String, ProtocolError> {
        Self::redirect(resp).map(|(_, file_id)| file_id.to_string())
    }

    /// The second half: `PUT` the JSONL to the presigned URL. It carries none of the caller's
    /// headers: the storage host is not Together's API and must never see the API key.
    fn build_upload_finish(
        &self,
        ctx: &BatchContext,
        items: &[BatchItem],
        upload_answer: &HttpResponse,
    ) -> Option<HttpRequest> {
        let (location, _) = Self::redirect(upload_answer).ok()?;
        let url = if location.starts_with('/') {
            format!("{}{location}", common::origin(&ctx.route.base_url))
        } else {
            location.to_string()
        };
        Some(HttpRequest {
            method: "PUT".into(),
            url,
            headers: vec![("content-type".into(), "application/octet-stream".into())],
            body: Self::input_jsonl(items),
        })
    }

    fn build_create(
        &self,
        ctx: &BatchContext,
        _items: &[BatchItem],
        uploaded_file: Option<&str>,
    ) -> HttpRequest {
        debug_assert!(
            uploaded_file.is_some(),
            "Together batches need the uploaded file id"
        );
        let mut body = json!({
            "endpoint": ctx.route.endpoint,
            "input_file_id": uploaded_file.unwrap_or_default(),
            "model_id": ctx.route.model,
        });
        // Optional for Together (24 h, best effort): sent only when the host declares one.
        if let Some(window) = &ctx.route.settings.completion_window {
            body["completion_window"] = json!(window);
        }
        common::post(ctx, "/batches", &body)
    }

    fn parse_create(&self, resp: &HttpResponse) -> Result<RemoteBatch, ProtocolError> {
        let v = ok_json(resp, "batch create")?;
        // `{job: BatchJob, warning?}`; a bare BatchJob is accepted too.
        Self::remote_batch(v.get("job").unwrap_or(&v))
            .ok_or_else(|| ProtocolError::new("batch create: answer has no job id"))
    }

    fn lost_create_key(&self) -> LostCreateKey {
        LostCreateKey::UploadedFile
    }

    fn build_find(&self, ctx: &BatchContext) -> Option<HttpRequest> {
        Some(common::get(ctx, "/batches"))
    }

    /// `input_file_id` is the uploaded file id ([`LostCreateKey::UploadedFile`]).
    fn parse_find(
        &self,
        resp: &HttpResponse,
        input_file_id: &str,
    ) -> Result<Option<RemoteBatch>, ProtocolError> {
        let v = ok_json(resp, "batch list")?;
        // A bare array (or `{data: [...]}`); anything else is not a list.
        let jobs = if v.is_array() {
            &v
        } else {
            v.get("data").unwrap_or(&Value::Null)
        };
        common::find_listed(
            Some(jobs),
            |job| str_field(job, "/input_file_id") == Some(input_file_id),
            Self::remote_batch,
        )
    }

    /// `GET {base}/batches/{id}`, as OpenAI's.
    fn build_poll(&self, ctx: &BatchContext, batch_id: &str) -> HttpRequest {
        OpenAi.build_poll(ctx, batch_id)
    }

    /// `POST {base}/batches/{id}/cancel`, as OpenAI's.
    fn build_cancel(&self, ctx: &BatchContext, batch_id: &str) -> Option<HttpRequest> {
        OpenAi.build_cancel(ctx, batch_id)
    }

    fn parse_poll(
        &self,
        resp: &HttpResponse,
        _custom_ids_in_order: &[String],
    ) -> Result<PollReport, ProtocolError> {
        let v = ok_json(resp, "batch poll")?;
        let status = str_field(&v, "/status")
            .ok_or_else(|| ProtocolError::new("batch poll: answer has no status"))?;
        let downloads = openai_compat::result_files(&v);
        let ended = match status.to_ascii_uppercase().as_str() {
            "VALIDATING" | "IN_PROGRESS" => None,
            "COMPLETED" => Some(None),
            "FAILED" => Some(Some(EndKind::Failed)),
            "EXPIRED" => Some(Some(EndKind::Expired)),
            "CANCELLED" => Some(Some(EndKind::Cancelled)),
            // Failing loudly beats polling forever on a state we do not understand.
            other => {
                return Err(ProtocolError::new(format!(
                    "batch poll: unknown status {other:?}"
                )))
            }
        };
        let (state, end_kind_if_partial) = match ended {
            None => (PollState::Running, None),
            Some(None) => (
                PollState::Completed {
                    downloads,
                    inline: None,
                },
                None,
            ),
            // A batch that stopped early keeps what ran in its files; the requests without a
            // line did not run.
            Some(Some(kind)) if !downloads.is_empty() => (
                PollState::Completed {
                    downloads,
                    inline: None,
                },
                Some(kind),
            ),
            Some(Some(kind)) => (
                PollState::Ended {
                    kind,
                    message: str_field(&v, "/error").unwrap_or("").to_string(),
                },
                None,
            ),
        };
        // Together reports progress (0–100), not request counts.
        Ok(PollReport {
            state_label: status.to_string(),
            total: 0,
            completed: 0,
            failed: 0,
            state,
            end_kind_if_partial,
        })
    }

    /// `GET {base}/files/{id}/content`, as OpenAI's.
    fn build_download(&self, ctx: &BatchContext, file_id: &str) -> HttpRequest {
        OpenAi.build_download(ctx, file_id)
    }

    /// `DELETE {base}/files/{id}`, as OpenAI's.
    fn build_delete_file(&self, ctx: &BatchContext, file_id: &str) -> Option<HttpRequest> {
        OpenAi.build_delete_file(ctx, file_id)
    }

    /// Assumed OpenAI-shaped lines (see the module docs).
    fn parse_results(&self, batch_id: &str, body: &str) -> ParsedResults {
        OpenAi.parse_results(batch_id, body)
    }

    /// The output and error files are JSONL.
    fn streams_results(&self) -> bool {
        true
    }

    fn ended_response(&self, batch_id: &str, kind: EndKind, message: &str) -> HttpResponse {
        openai_compat::ended_response_as(ProviderId::Together, batch_id, kind, message)
    }

    /// Together's chat completion has OpenAI's shape.
    fn dry_run_response(&self, route: &Route, custom_id: &str) -> HttpResponse {
        OpenAi.dry_run_response(route, custom_id)
    }
}

#[cfg(test)]
mod tests;

//! xAI (Grok) Batch API: its own protocol, not OpenAI's (providers.md §8). A batch is created
//! empty (`POST {base}/batches {"name"}`), then filled by "add requests" calls
//! (`POST {base}/batches/{id}/requests`, at most 25 MB each); it has no status enum, only
//! counters (`state.num_pending`, …); its results are a paged JSON listing
//! (`GET {base}/batches/{id}/results?limit=&pagination_token=`).
//!
//! Only chat completions are batched. `/v1/responses` passes through: one third-party client
//! reports a `responses` wrapper in add-requests, but nothing confirms its shape or the shape
//! of its results, so we do not bet callers' requests on it.
//!
//! The wire shapes come from xAI's docs plus third-party clients (providers.md marks them so).
//! What we assumed where nothing says:
//! - The create answer and the listing carry `batch_id` and `name`; the listing is
//!   `{batches: [...], pagination_token}` (xAI's gRPC `ListBatchesResponse`, whose REST form the
//!   clients mirror). Our tag is the batch `name`.
//! - A retried add-requests call whose first attempt went through (answer lost) may resend
//!   `batch_request_id`s xAI already has. We assume xAI rejects or deduplicates them; if it
//!   keeps both, each id's first result wins ([`common::ResultsBuilder`] within a page, the
//!   batcher across pages).
//! - Expiry: there is no "expired" state. A batch still pending once its `expire_time` has
//!   passed is treated as expired. The core reads no clock, so "now" is the poll answer's own
//!   HTTP `Date` header (xAI's clock, the same one that wrote `expire_time`); without a `Date`
//!   header a batch is never taken for expired and we keep polling until nothing is pending.
//! - `cancel_by_xai_message` means xAI rejected the batch: it failed. `cancel_time` without it
//!   means someone cancelled it: once nothing is pending it is cancelled.
//! - A per-request error is a `google.rpc.Status`-like `{code, message}` with a gRPC code, mapped
//!   to HTTP as for Gemini and answered in OpenAI's error envelope (what the `openai` SDK, which
//!   users call xAI's chat endpoint with, parses).

use serde_json::{json, Value};

use super::common::{self, json_request, json_response, ok_json, str_field};
use super::hosts::any_window;
use super::{
    BatchContext, BatchItem, BatchLimits, EndKind, HostMatch, ItemResult, OpenAi, ParsedResults,
    PassThrough, PollReport, PollState, ProtocolError, ProviderAdapter, ProviderDescriptor,
    ProviderId, RemoteBatch, Route,
};
use crate::http::{HttpRequest, HttpResponse};

/// The one path we batch (after the host's base URL) and the endpoint we call it.
const CHAT_PATH: &str = "/chat/completions";
const CHAT_ENDPOINT: &str = "/v1/chat/completions";

/// Documented: each add-requests call carries at most 25 MB (read as 10^6 bytes); 64 KiB are
/// kept for the `{"batch_requests":[...]}` wrapper.
const MAX_ADD_CALL_BYTES: usize = 25_000_000;
const ENVELOPE_HEADROOM_BYTES: usize = 64 * 1024;
/// Documented: batches over 100,000 requests may be throttled.
const MAX_REQUESTS: usize = 100_000;
/// Not an xAI limit (a batch may hold any number of add calls; a team may make 100 per 30 s):
/// we fill one batch with at most this many add calls, so one batch's bodies stay a few hundred
/// MB in memory.
const MAX_ADD_CALLS: usize = 10;
/// Results and listings per page. xAI's maximum page size is undocumented; clients use 100.
const PAGE_SIZE: u32 = 100;

pub(super) const DESCRIPTOR: ProviderDescriptor = ProviderDescriptor {
    id: ProviderId::Xai,
    name: "xai",
    adapter: &Xai,
    openai_profile: None,
    hosts: &["https://api.x.ai/v1"],
    default_base_url: Some("https://api.x.ai/v1"),
    window_error: any_window,
    api_key_env: Some("XAI_API_KEY"),
    base_url_env: None,
    jobs: None,
};

pub struct Xai;

impl Xai {
    /// One entry of `batch_requests`.
    fn request_entry(item: &BatchItem) -> Value {
        json!({
            "batch_request_id": item.custom_id,
            "batch_request": {"chat_get_completion": item.body},
        })
    }

    /// The add-requests calls for `items`, each body at most `max_bytes` (an entry larger than
    /// that goes alone, and xAI refuses it with its own error).
    fn add_calls(
        ctx: &BatchContext,
        items: &[BatchItem],
        batch_id: &str,
        max_bytes: usize,
    ) -> Vec<HttpRequest> {
        const HEAD: &str = r#"{"batch_requests":["#;
        const TAIL: &str = "]}";
        let url = format!("{}/batches/{batch_id}/requests", ctx.route.base_url);
        let call = |body: String| {
            let mut req = json_request("POST", url.clone(), &ctx.route.forward_headers, None);
            req.headers
                .push(("content-type".into(), "application/json".into()));
            req.body = body;
            req
        };
        let mut calls = Vec::new();
        let mut body = String::from(HEAD);
        let mut entries = 0;
        for item in items {
            let entry = Self::request_entry(item).to_string();
            if entries > 0 && body.len() + 1 + entry.len() + TAIL.len() > max_bytes {
                body.push_str(TAIL);
                calls.push(call(std::mem::replace(&mut body, String::from(HEAD))));
                entries = 0;
            }
            if entries > 0 {
                body.push(',');
            }
            body.push_str(&entry);
            entries += 1;
        }
        if entries > 0 {
            body.push_str(TAIL);
            calls.push(call(body));
        }
        calls
    }

    /// OpenAI's error envelope, which the `openai` SDK reads for its error classes.
    fn error_body(status: u16, message: &str, error_type: &str, code: &str) -> Value {
        let error_type = if error_type.is_empty() {
            if status >= 500 {
                "server_error"
            } else {
                "invalid_request_error"
            }
        } else {
            error_type
        };
        json!({"error": {"message": message, "type": error_type, "param": null, "code": code}})
    }

    /// One entry of a results page → the synchronous answer.
    fn parse_entry(batch_id: &str, entry: &Value) -> Result<ItemResult, String> {
        let obj = entry.as_object().ok_or("result is not a JSON object")?;
        let custom_id = common::id_field(obj, "batch_request_id")?;
        // REST nests the outcome in `batch_result`; accept it flat too (the gRPC message's shape).
        let result = obj
            .get("batch_result")
            .filter(|r| r.is_object())
            .unwrap_or(entry);
        let response = if let Some(resp) = result.get("response").filter(|r| r.is_object()) {
            HttpResponse::json(200, Self::response_body(resp)?.to_string())
        } else if let Some(err) = result.get("error").filter(|e| e.is_object()) {
            let code = err.get("code");
            let (status, name) =
                common::grpc_to_http(code.and_then(Value::as_i64), code.and_then(Value::as_str));
            let message = str_field(err, "/message").unwrap_or("");
            let body = Self::error_body(status, message, "", name);
            json_response(status, &body, &[("x-batchling-batch-id", batch_id)])
        } else {
            return Err("batch_result has neither response nor error".into());
        };
        Ok(ItemResult {
            custom_id,
            response,
        })
    }

    /// The sync answer inside `response`: `chat_get_completion` (REST), `completion_response`
    /// (the gRPC name), or the one object it holds under another wrapper name.
    fn response_body(resp: &Value) -> Result<&Value, String> {
        let obj = resp.as_object().ok_or("response is not an object")?;
        let named = ["chat_get_completion", "completion_response"]
            .iter()
            .find_map(|k| obj.get(*k));
        let only = || match obj.values().collect::<Vec<_>>()[..] {
            [one] => Some(one),
            _ => None,
        };
        named
            .or_else(only)
            .filter(|b| b.is_object())
            .ok_or_else(|| "response holds no chat_get_completion object".to_string())
    }

    fn remote_batch(v: &Value) -> Option<RemoteBatch> {
        let id = str_field(v, "/batch_id").or_else(|| str_field(v, "/id"))?;
        Some(RemoteBatch {
            id: id.to_string(),
            state_label: String::new(),
        })
    }

    /// A download entry: the results page after `token` (the first page without one). Relative
    /// to the route's base URL.
    fn results_page(batch_id: &str, token: Option<&str>) -> String {
        let mut page = format!("batches/{batch_id}/results?limit={PAGE_SIZE}");
        if let Some(token) = token {
            page.push_str("&pagination_token=");
            page.push_str(&percent_encode(token));
        }
        page
    }

    fn first_page(batch_id: &str) -> PollState {
        PollState::Completed {
            downloads: vec![Self::results_page(batch_id, None)],
            inline: None,
        }
    }
}

impl ProviderAdapter for Xai {
    fn id(&self) -> ProviderId {
        ProviderId::Xai
    }

    fn recognize_at(&self, req: &HttpRequest, host: &HostMatch) -> Result<Route, PassThrough> {
        if host.rest_path != CHAT_PATH {
            return Err(PassThrough::UnknownUrl);
        }
        super::openai_compat::route(
            req,
            &host.base_url,
            CHAT_ENDPOINT,
            host.provider,
            host.settings,
        )
    }

    fn limits(&self, route: &Route) -> BatchLimits {
        BatchLimits {
            max_requests: route.settings.max_requests.unwrap_or(MAX_REQUESTS),
            max_bytes: route
                .settings
                .max_file_bytes
                .unwrap_or(MAX_ADD_CALLS * (MAX_ADD_CALL_BYTES - ENVELOPE_HEADROOM_BYTES)),
        }
    }

    fn item_bytes(&self, _ctx: &BatchContext, item: &BatchItem) -> usize {
        // +1 for the separating comma.
        Self::request_entry(item).to_string().len() + 1
    }

    /// The batch is created empty, named by our tag; the requests follow in
    /// [`ProviderAdapter::build_after_create`].
    fn build_create(
        &self,
        ctx: &BatchContext,
        _items: &[BatchItem],
        _uploaded_file: Option<&str>,
    ) -> HttpRequest {
        common::post(ctx, "/batches", &json!({"name": ctx.tag}))
    }

    fn parse_create(&self, resp: &HttpResponse) -> Result<RemoteBatch, ProtocolError> {
        let v = ok_json(resp, "batch create")?;
        Self::remote_batch(&v)
            .ok_or_else(|| ProtocolError::new("batch create: answer has no batch_id"))
    }

    fn build_after_create(
        &self,
        ctx: &BatchContext,
        items: &[BatchItem],
        batch_id: &str,
    ) -> Vec<HttpRequest> {
        let max = ctx
            .route
            .settings
            .max_file_bytes
            .unwrap_or(usize::MAX)
            .min(MAX_ADD_CALL_BYTES - ENVELOPE_HEADROOM_BYTES);
        Self::add_calls(ctx, items, batch_id, max)
    }

    /// Our tag is the batch's `name`; the newest batches come first.
    fn build_find(&self, ctx: &BatchContext) -> Option<HttpRequest> {
        Some(common::get(ctx, &format!("/batches?limit={PAGE_SIZE}")))
    }

    fn parse_find(
        &self,
        resp: &HttpResponse,
        tag: &str,
    ) -> Result<Option<RemoteBatch>, ProtocolError> {
        let v = ok_json(resp, "batch list")?;
        // Proto3 JSON leaves an empty list out.
        common::find_listed(
            v.get("batches").or_else(|| v.get("data")),
            |b| str_field(b, "/name") == Some(tag),
            Self::remote_batch,
        )
    }

    fn build_poll(&self, ctx: &BatchContext, batch_id: &str) -> HttpRequest {
        common::get(ctx, &format!("/batches/{batch_id}"))
    }

    fn parse_poll(
        &self,
        resp: &HttpResponse,
        _custom_ids_in_order: &[String],
    ) -> Result<PollReport, ProtocolError> {
        let v = ok_json(resp, "batch poll")?;
        if !v.is_object() {
            return Err(ProtocolError::new("batch poll: answer is not an object"));
        }
        let batch_id = Self::remote_batch(&v).map(|b| b.id).unwrap_or_default();
        // Counters are int64 (they may come as strings) and proto3 JSON leaves zeros out.
        let n = |k: &str| common::count_field(&v, &format!("/state/{k}"));
        let (total, pending) = (n("num_requests"), n("num_pending"));
        let (success, error, cancelled) = (n("num_success"), n("num_error"), n("num_cancelled"));
        let rejected = str_field(&v, "/cancel_by_xai_message").filter(|m| !m.is_empty());
        let cancel_time = v
            .get("cancel_time")
            .is_some_and(|t| !t.is_null() && t.as_str() != Some(""));
        let expire_time = v.get("expire_time").and_then(timestamp_seconds);
        let server_now = resp.header("date").and_then(http_date_seconds);
        let expired =
            pending > 0 && matches!((server_now, expire_time), (Some(now), Some(at)) if now >= at);
        // Ended early: download what ran (the rest gets `kind`), or, when nothing ran, end.
        let ended = |kind: EndKind, message: String| {
            if success + error > 0 {
                (Self::first_page(&batch_id), Some(kind))
            } else {
                (PollState::Ended { kind, message }, None)
            }
        };
        let (label, (state, end_kind_if_partial)) = if let Some(message) = rejected {
            ("rejected", ended(EndKind::Failed, message.to_string()))
        } else if expired {
            let at = str_field(&v, "/expire_time").unwrap_or("its expire_time");
            let message = format!("{pending} of {total} requests still pending at {at}");
            ("expired", ended(EndKind::Expired, message))
        } else if pending > 0 {
            let label = if cancel_time {
                "cancelling"
            } else {
                "processing"
            };
            (label, (PollState::Running, None))
        } else if cancel_time || cancelled > 0 {
            ("cancelled", ended(EndKind::Cancelled, String::new()))
        } else if total == 0 {
            // No request visible yet: the batcher polls only after its add calls succeeded, so
            // this is xAI catching up.
            ("processing", (PollState::Running, None))
        } else {
            ("completed", (Self::first_page(&batch_id), None))
        };
        Ok(PollReport {
            state_label: label.to_string(),
            total,
            completed: success,
            failed: error + cancelled,
            state,
            end_kind_if_partial,
        })
    }

    /// `page` is a results page relative to the base URL (see [`Xai::results_page`]).
    fn build_download(&self, ctx: &BatchContext, page: &str) -> HttpRequest {
        common::get(ctx, &format!("/{page}"))
    }

    /// One results page, `{results: [...], pagination_token}`. Entry numbers in `malformed` are
    /// 1-based positions in the page.
    fn parse_results(&self, batch_id: &str, body: &str) -> ParsedResults {
        let mut results = common::ResultsBuilder::default();
        match serde_json::from_str::<Value>(body) {
            Ok(v) => match v.get("results") {
                Some(Value::Array(entries)) => {
                    for (i, entry) in entries.iter().enumerate() {
                        results.push(i + 1, Self::parse_entry(batch_id, entry));
                    }
                }
                // Proto3 JSON leaves an empty list out.
                None if v.is_object() => {}
                _ => results.push(1, Err("results page has no results array".into())),
            },
            Err(e) => results.push(1, Err(format!("results page is not JSON: {e}"))),
        }
        results.finish()
    }

    /// The next page while xAI hands out a `pagination_token`. A page without results ends the
    /// listing even with a token, so a server that keeps answering with tokens cannot keep us
    /// downloading forever.
    fn next_download(&self, batch_id: &str, body: &str) -> Option<String> {
        let v: Value = serde_json::from_str(body).ok()?;
        let has_results = v
            .get("results")
            .and_then(Value::as_array)
            .is_some_and(|r| !r.is_empty());
        let token = str_field(&v, "/pagination_token").filter(|t| !t.is_empty())?;
        has_results.then(|| Self::results_page(batch_id, Some(token)))
    }

    fn ended_response(&self, batch_id: &str, kind: EndKind, message: &str) -> HttpResponse {
        let message = common::not_run_message(ProviderId::Xai, batch_id, kind, message);
        let body = Self::error_body(
            kind.http_status(),
            &message,
            "batch_error",
            &format!("batch_{kind}"),
        );
        json_response(
            kind.http_status(),
            &body,
            &common::not_run_headers(batch_id),
        )
    }

    /// The chat completion shape of OpenAI's dry run: xAI answers chat in OpenAI's shape.
    fn dry_run_response(&self, route: &Route, custom_id: &str) -> HttpResponse {
        OpenAi.dry_run_response(route, custom_id)
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters (for a query value).
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Seconds since the Unix epoch of a UTC calendar date and time (proleptic Gregorian; Howard
/// Hinnant's `days_from_civil`).
fn unix_seconds(year: i64, month: i64, day: i64, hour: i64, minute: i64, second: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    days * 86_400 + hour * 3_600 + minute * 60 + second
}

/// A run of exactly `width` ASCII digits.
fn digits(s: &str, width: usize) -> Option<i64> {
    (s.len() == width && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

/// `expire_time` as Unix seconds: an RFC 3339 / ISO 8601 string (proto JSON's Timestamp form;
/// a bare date means its midnight UTC), a number of seconds, or a `{seconds}` object.
fn timestamp_seconds(v: &Value) -> Option<i64> {
    match v {
        Value::String(s) => rfc3339_seconds(s),
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Value::Object(o) => match o.get("seconds")? {
            Value::String(s) => s.parse().ok(),
            other => other.as_i64(),
        },
        _ => None,
    }
}

/// `YYYY-MM-DD[(T| )HH:MM[:SS[.fraction]]][Z|±HH:MM]` → Unix seconds (fraction dropped).
fn rfc3339_seconds(s: &str) -> Option<i64> {
    let s = s.trim();
    let cut = s.len().min(10);
    if !s.is_char_boundary(cut) {
        return None;
    }
    let (date, rest) = s.split_at(cut);
    let mut d = date.split('-');
    let (year, month, day) = (
        digits(d.next()?, 4)?,
        digits(d.next()?, 2)?,
        digits(d.next()?, 2)?,
    );
    if d.next().is_some() || !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    let midnight = unix_seconds(year, month, day, 0, 0, 0);
    if rest.is_empty() {
        return Some(midnight);
    }
    let rest = rest.strip_prefix(['T', 't', ' '])?;
    // The zone starts at the first 'Z', '+' or '-' after the time.
    let zone_at = rest.find(['Z', 'z', '+', '-']).unwrap_or(rest.len());
    let (time, zone) = rest.split_at(zone_at);
    let time = time.split('.').next()?;
    let mut t = time.split(':');
    let hour = digits(t.next()?, 2)?;
    let minute = digits(t.next()?, 2)?;
    let second = t.next().map_or(Some(0), |s| digits(s, 2))?;
    if t.next().is_some() || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let offset = match zone {
        "" | "Z" | "z" => 0,
        _ => {
            let sign = if zone.starts_with('-') { -1 } else { 1 };
            let (h, m) = zone[1..].split_once(':')?;
            sign * (digits(h, 2)? * 3_600 + digits(m, 2)? * 60)
        }
    };
    Some(midnight + hour * 3_600 + minute * 60 + second - offset)
}

/// An HTTP `Date` header in the IMF-fixdate form servers must send ("Sun, 06 Nov 1994 08:49:37
/// GMT") → Unix seconds.
fn http_date_seconds(s: &str) -> Option<i64> {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let parts: Vec<&str> = s.split_whitespace().collect();
    let [_weekday, day, month, year, time, "GMT"] = parts[..] else {
        return None;
    };
    let month = MONTHS.iter().position(|m| *m == month)? as i64 + 1;
    let mut t = time.split(':');
    let (hour, minute, second) = (
        digits(t.next()?, 2)?,
        digits(t.next()?, 2)?,
        digits(t.next()?, 2)?,
    );
    Some(unix_seconds(
        digits(year, 4)?,
        month,
        digits(day, 2)?,
        hour,
        minute,
        second,
    ))
}

#[cfg(test)]
mod tests;

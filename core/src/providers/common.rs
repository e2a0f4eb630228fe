//! Plumbing shared by the adapters: URL splitting, header filtering, fingerprints, JSON and JSONL.

use std::collections::BTreeSet;

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::{ItemResult, MalformedLine, ParsedResults, PassThrough, ProtocolError, ProviderId};
use crate::http::{HttpRequest, HttpResponse};

/// Marks a synthetic dry-run answer.
pub(crate) const DRY_RUN_HEADER: &str = "x-batchling-dry-run";
/// Text of the assistant message in dry-run answers: visible, and obviously not a model's.
pub(crate) const DRY_RUN_TEXT: &str = "[batchling dry run: request not sent]";

/// Splits off `?query` (and drops any `#fragment`).
pub(crate) fn split_query(url: &str) -> (&str, Option<&str>) {
    let url = url.split('#').next().unwrap_or(url);
    match url.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (url, None),
    }
}

/// Byte index where the path starts in `scheme://authority/path` (the length if there is none).
pub(crate) fn path_start(url: &str) -> usize {
    let authority = url.find("://").map_or(0, |i| i + 3);
    url[authority..]
        .find('/')
        .map_or(url.len(), |i| authority + i)
}

/// `scheme://authority` of an absolute URL.
pub(crate) fn origin(url: &str) -> &str {
    &url[..path_start(url)]
}

/// `Some(base)` when `url` (query already removed) is `base + suffix` and `suffix` lies wholly in
/// the path, so a host name can never be mistaken for a path segment.
pub(crate) fn strip_path_suffix<'a>(url: &'a str, suffix: &str) -> Option<&'a str> {
    let base = url.strip_suffix(suffix)?;
    (base.len() >= path_start(url)).then_some(base)
}

/// The raw value of `name` in a query string.
pub(crate) fn query_param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Headers that describe this one HTTP exchange or the SDK build, not what the batch call should
/// mean. Everything else is forwarded, and fingerprinted, so proxy auth headers we do not know of
/// still reach the batch calls; an unknown per-request header can only make batches smaller.
const NOISE_HEADERS: &[&str] = &[
    "accept",
    "accept-encoding",
    "accept-language",
    "baggage",
    "cache-control",
    "connection",
    "content-length",
    "content-type",
    "expect",
    "host",
    "idempotency-key",
    "keep-alive",
    "origin",
    "pragma",
    "priority",
    "proxy-connection",
    "referer",
    "te",
    "traceparent",
    "tracestate",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "user-agent",
    "x-goog-api-client",
];
const NOISE_PREFIXES: &[&str] = &["x-stainless-", "sec-", "x-batchling-"];

fn is_noise_header(lower_name: &str) -> bool {
    NOISE_HEADERS.contains(&lower_name) || NOISE_PREFIXES.iter().any(|p| lower_name.starts_with(p))
}

/// Headers whose value is a secret; redacted in `Debug` output.
pub(crate) fn is_secret_header(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    matches!(
        n.as_str(),
        "authorization" | "proxy-authorization" | "cookie"
    ) || n.contains("key")
        || n.contains("token")
        || n.contains("secret")
        || n.contains("auth")
}

/// The caller's headers a batch call must carry: lower-case names, noise removed, stably sorted by
/// name so equal header sets compare equal whatever order the SDK used.
pub(crate) fn forward_headers(headers: &[(String, String)]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
        .filter(|(k, _)| !is_noise_header(k))
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Hex SHA-256 over the provider, the base URL and every forwarded header. Each field is
/// length-prefixed so no two different inputs hash the same byte stream.
pub(crate) fn fingerprint(
    provider: ProviderId,
    base_url: &str,
    forward_headers: &[(String, String)],
) -> String {
    let mut sorted: Vec<&(String, String)> = forward_headers.iter().collect();
    sorted.sort();
    let mut h = Sha256::new();
    let mut field = |bytes: &[u8]| {
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    };
    field(provider.as_str().as_bytes());
    field(base_url.as_bytes());
    for (k, v) in sorted {
        field(k.as_bytes());
        field(v.as_bytes());
    }
    hex(&h.finalize())
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 0xf) as usize] as char);
    }
    s
}

/// The request body as a JSON object, or why it is not one.
pub(crate) fn json_object_body(req: &HttpRequest) -> Result<Map<String, Value>, PassThrough> {
    if let Some(ct) = req.header("content-type") {
        if !ct.to_ascii_lowercase().contains("json") {
            return Err(PassThrough::NotJson);
        }
    }
    match serde_json::from_str::<Value>(&req.body) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(PassThrough::NotJson),
    }
}

/// Rejects `stream: true`; removes `stream` and `stream_options` keeping the order of the rest.
pub(crate) fn strip_streaming(
    mut body: Map<String, Value>,
) -> Result<Map<String, Value>, PassThrough> {
    if body
        .get("stream")
        .is_some_and(|v| v != &Value::Bool(false) && !v.is_null())
    {
        return Err(PassThrough::Streaming);
    }
    body.shift_remove("stream");
    body.shift_remove("stream_options");
    Ok(body)
}

pub(crate) fn is_post(req: &HttpRequest) -> bool {
    req.method.eq_ignore_ascii_case("POST")
}

/// A JSON request carrying the route's forward headers.
pub(crate) fn json_request(
    method: &str,
    url: String,
    forward: &[(String, String)],
    body: Option<&Value>,
) -> HttpRequest {
    let mut headers = forward.to_vec();
    if body.is_some() {
        headers.push(("content-type".into(), "application/json".into()));
    }
    HttpRequest {
        method: method.into(),
        url,
        headers,
        body: body.map(Value::to_string).unwrap_or_default(),
    }
}

/// A synthetic JSON response (`content-type: application/json` plus `extra`).
/// The batch of a list answer (after an ambiguous create) whose entry `matches`, read by
/// `to_batch`. `list` is the answer's array, `None` when the answer left it out (proto3 JSON drops
/// an empty list); anything but an array is a protocol error.
pub(crate) fn find_listed(
    list: Option<&Value>,
    matches: impl Fn(&Value) -> bool,
    to_batch: impl Fn(&Value) -> Option<super::RemoteBatch>,
) -> Result<Option<super::RemoteBatch>, ProtocolError> {
    let Some(list) = list else {
        return Ok(None);
    };
    let entries = list
        .as_array()
        .ok_or_else(|| ProtocolError::new("batch list: the list is not an array"))?;
    Ok(entries.iter().find(|e| matches(e)).and_then(to_batch))
}

/// `GET {base}{path}` with the caller's forwarded headers: the poll, list and download calls.
pub(crate) fn get(ctx: &super::BatchContext, path: &str) -> HttpRequest {
    let url = format!("{}{path}", ctx.route.base_url);
    json_request("GET", url, &ctx.route.forward_headers, None)
}

/// A result line's id field (`custom_id`, `batch_request_id`, …): a string, or the line is bad.
pub(crate) fn id_field(obj: &Map<String, Value>, key: &str) -> Result<String, String> {
    obj.get(key)
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| format!("no string {key}"))
}

/// `POST {base}{path}` with a JSON body and the route's forwarded headers (batch creates).
pub(crate) fn post(ctx: &super::BatchContext, path: &str, body: &Value) -> HttpRequest {
    let url = format!("{}{path}", ctx.route.base_url);
    json_request("POST", url, &ctx.route.forward_headers, Some(body))
}

pub(crate) fn json_response(status: u16, body: &Value, extra: &[(&str, &str)]) -> HttpResponse {
    let mut resp = HttpResponse::json(status, body.to_string());
    resp.headers
        .extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    resp
}

/// Headers of a synthetic "your request did not run" answer (see the module docs of `providers`).
pub(crate) fn not_run_headers(batch_id: &str) -> [(&str, &str); 2] {
    [
        ("x-should-retry", "false"),
        ("x-batchling-batch-id", batch_id),
    ]
}

/// `verb phrase` for a message: "expired", "was cancelled", "failed".
pub(crate) fn end_phrase(kind: super::EndKind) -> &'static str {
    match kind {
        super::EndKind::Expired => "expired",
        super::EndKind::Cancelled => "was cancelled",
        super::EndKind::Failed => "failed",
    }
}

/// The message of a synthetic "did not run" error. Names the provider, batch id and end state.
pub(crate) fn not_run_message(
    provider: ProviderId,
    batch_id: &str,
    kind: super::EndKind,
    detail: &str,
) -> String {
    let mut m = format!(
        "batchling: {provider} batch {batch_id} {} ({kind}) before this request produced a result",
        end_phrase(kind)
    );
    if !detail.is_empty() {
        m.push_str(": ");
        m.push_str(detail);
    }
    m
}

/// The JSON body of a 2xx answer, or a [`ProtocolError`] naming what was expected.
pub(crate) fn ok_json(resp: &HttpResponse, what: &str) -> Result<Value, ProtocolError> {
    if !(200..300).contains(&resp.status) {
        return Err(ProtocolError::new(format!(
            "{what}: unexpected HTTP {}: {}",
            resp.status,
            describe_error(resp)
        )));
    }
    serde_json::from_str(&resp.body)
        .map_err(|e| ProtocolError::new(format!("{what}: answer is not JSON: {e}")))
}

pub(crate) fn describe_error(resp: &HttpResponse) -> String {
    if let Ok(v) = serde_json::from_str::<Value>(&resp.body) {
        // OpenAI, Anthropic and Gemini nest the message; Mistral's envelope has it on top.
        for pointer in ["/error/message", "/message"] {
            if let Some(m) = v.pointer(pointer).and_then(Value::as_str) {
                return m.to_string();
            }
        }
    }
    let body = resp.body.trim();
    let mut end = body.len().min(200);
    while !body.is_char_boundary(end) {
        end -= 1;
    }
    if body.is_empty() {
        format!("HTTP {}", resp.status)
    } else {
        body[..end].to_string()
    }
}

pub(crate) fn str_field<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer).and_then(Value::as_str)
}

/// A count that may be a JSON number or, as proto-JSON int64 fields are, a string.
pub(crate) fn count_field(v: &Value, pointer: &str) -> u64 {
    match v.pointer(pointer) {
        Some(Value::Number(n)) => n.as_u64().unwrap_or(0),
        Some(Value::String(s)) => s.trim().parse().unwrap_or(0),
        _ => 0,
    }
}

/// Collects results in order, keeping the first result per `custom_id` and reporting later ones.
#[derive(Default)]
pub(crate) struct ResultsBuilder {
    out: ParsedResults,
    seen: BTreeSet<String>,
}

impl ResultsBuilder {
    pub(crate) fn push(&mut self, line_number: usize, parsed: Result<ItemResult, String>) {
        match parsed {
            Ok(item) if self.seen.insert(item.custom_id.clone()) => self.out.items.push(item),
            Ok(item) => self.out.malformed.push(MalformedLine {
                line_number,
                reason: format!("duplicate custom_id {:?}", item.custom_id),
            }),
            Err(reason) => self.out.malformed.push(MalformedLine {
                line_number,
                reason,
            }),
        }
    }

    pub(crate) fn finish(self) -> ParsedResults {
        self.out
    }
}

/// Parses a JSONL results body. `line` turns one parsed line into a result or a reason it is
/// malformed. Blank lines (the trailing newline, CRLF leftovers) are skipped; a leading BOM is
/// ignored; a repeated `custom_id` keeps the first and reports the later line.
pub(crate) fn parse_jsonl(
    body: &str,
    mut line: impl FnMut(&Value) -> Result<ItemResult, String>,
) -> ParsedResults {
    let body = body.strip_prefix('\u{feff}').unwrap_or(body);
    let mut results = ResultsBuilder::default();
    for (i, raw) in body.split('\n').enumerate() {
        let text = raw.trim();
        if text.is_empty() {
            continue;
        }
        let parsed = serde_json::from_str::<Value>(text)
            .map_err(|e| format!("invalid JSON: {e}"))
            .and_then(|v| line(&v));
        results.push(i + 1, parsed);
    }
    results.finish()
}

/// gRPC status codes with their canonical names and the HTTP status Google's APIs map them to.
const GRPC_CODES: &[(i64, &str, u16)] = &[
    (1, "CANCELLED", 499),
    (2, "UNKNOWN", 500),
    (3, "INVALID_ARGUMENT", 400),
    (4, "DEADLINE_EXCEEDED", 504),
    (5, "NOT_FOUND", 404),
    (6, "ALREADY_EXISTS", 409),
    (7, "PERMISSION_DENIED", 403),
    (8, "RESOURCE_EXHAUSTED", 429),
    (9, "FAILED_PRECONDITION", 400),
    (10, "ABORTED", 409),
    (11, "OUT_OF_RANGE", 400),
    (12, "UNIMPLEMENTED", 501),
    (13, "INTERNAL", 500),
    (14, "UNAVAILABLE", 503),
    (15, "DATA_LOSS", 500),
    (16, "UNAUTHENTICATED", 401),
];

/// `(http status, status name)` for a `google.rpc.Status`, from its numeric code, else its name.
/// Anything unrecognised (including code 0, "OK", on an error) is reported as 500 UNKNOWN.
pub(crate) fn grpc_to_http(code: Option<i64>, name: Option<&str>) -> (u16, &'static str) {
    let by_code = code.and_then(|c| GRPC_CODES.iter().find(|(k, _, _)| *k == c));
    let by_name = || name.and_then(|n| GRPC_CODES.iter().find(|(_, k, _)| *k == n));
    by_code
        .or_else(by_name)
        .map_or((500, "UNKNOWN"), |(_, name, http)| (*http, *name))
}

/// `"AAAA…"`: base64 of `n_bytes` zero bytes (dry-run embeddings in `encoding_format: base64`).
pub(crate) fn base64_zeros(n_bytes: usize) -> String {
    let mut s = "AAAA".repeat(n_bytes / 3);
    match n_bytes % 3 {
        1 => s.push_str("AA=="),
        2 => s.push_str("AAA="),
        _ => {}
    }
    s
}

/// One `{custom_id, body}` line of an input file (Mistral's and Together's form), without the
/// newline. The body is serialized where it lies.
pub(crate) fn write_custom_id_body_line(w: impl std::io::Write, item: &super::BatchItem) {
    #[derive(serde::Serialize)]
    struct InputLine<'a> {
        custom_id: &'a str,
        body: &'a Value,
    }
    let line = InputLine {
        custom_id: &item.custom_id,
        body: &item.body,
    };
    serde_json::to_writer(w, &line).expect("a JSON value serializes into memory");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_helpers() {
        assert_eq!(split_query("http://h/a?b=1#f"), ("http://h/a", Some("b=1")));
        assert_eq!(split_query("http://h/a#f"), ("http://h/a", None));
        assert_eq!(
            origin("https://api.x.com:8443/v1/a"),
            "https://api.x.com:8443"
        );
        assert_eq!(origin("http://h"), "http://h");
        assert_eq!(
            strip_path_suffix("http://h/v1/chat/completions", "/chat/completions"),
            Some("http://h/v1")
        );
        assert_eq!(
            strip_path_suffix("http://h/chat/completions", "/chat/completions"),
            Some("http://h")
        );
        // The suffix may not reach into the authority.
        assert_eq!(
            strip_path_suffix("http://chat/completions", "/chat/completions"),
            None
        );
        assert_eq!(query_param("a=1&key=K&b", "key"), Some("K"));
        assert_eq!(query_param("a=1", "key"), None);
    }

    #[test]
    fn forward_headers_drop_noise_and_sort() {
        let h = vec![
            ("X-Stainless-Retry-Count".to_string(), "0".to_string()),
            ("Authorization".to_string(), "Bearer k".to_string()),
            ("Content-Type".to_string(), "application/json".to_string()),
            ("OpenAI-Project".to_string(), "p".to_string()),
            ("User-Agent".to_string(), "x".to_string()),
            ("Helicone-Auth".to_string(), "h".to_string()),
        ];
        assert_eq!(
            forward_headers(&h),
            vec![
                ("authorization".to_string(), "Bearer k".to_string()),
                ("helicone-auth".to_string(), "h".to_string()),
                ("openai-project".to_string(), "p".to_string()),
            ]
        );
    }

    #[test]
    fn grpc_table() {
        assert_eq!(grpc_to_http(Some(3), None), (400, "INVALID_ARGUMENT"));
        assert_eq!(
            grpc_to_http(None, Some("RESOURCE_EXHAUSTED")),
            (429, "RESOURCE_EXHAUSTED")
        );
        assert_eq!(grpc_to_http(Some(4), Some("x")), (504, "DEADLINE_EXCEEDED"));
        assert_eq!(grpc_to_http(Some(0), None), (500, "UNKNOWN"));
        assert_eq!(grpc_to_http(Some(99), None), (500, "UNKNOWN"));
    }

    #[test]
    fn base64_of_zeros() {
        assert_eq!(base64_zeros(0), "");
        assert_eq!(base64_zeros(1), "AA==");
        assert_eq!(base64_zeros(2), "AAA=");
        assert_eq!(base64_zeros(3), "AAAA");
        assert_eq!(base64_zeros(8), "AAAAAAAAAAA=");
    }

    #[test]
    fn describe_error_prefers_message() {
        let r = HttpResponse::json(
            400,
            r#"{"type":"error","error":{"type":"x","message":"bad"}}"#.into(),
        );
        assert_eq!(describe_error(&r), "bad");
        let r = HttpResponse {
            status: 502,
            headers: vec![],
            body: String::new(),
        };
        assert_eq!(describe_error(&r), "HTTP 502");
    }
}

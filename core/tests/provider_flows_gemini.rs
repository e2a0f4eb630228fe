//! Gemini batches in both flavours, driven with virtual time against a small scripted Gemini API
//! (providers.md §4): inline below the inline cap; above it, the Files API's resumable upload
//! (start → `upload, finalize`) → create naming the file → poll → download of the responses file.

mod support;

use std::collections::HashMap;

use batchling_core::http::{HttpRequest, HttpResponse};
use batchling_core::interceptor::{
    CallId, Input, Interceptor, InterceptorConfig, Output, RequestId, SerializableRequest,
};
use batchling_core::providers::{HostSpec, HostTable, ProviderId, GEMINI_MAX_INLINE_REQUEST_BYTES};
use serde_json::{json, Value};

use support::{gemini_gen, GEMINI_BASE as BASE, GEMINI_KEYS};

const ORIGIN: &str = "https://generativelanguage.googleapis.com";
/// Where the scripted start answer says the bytes go: another host, which the engine must not
/// send them (nor the key) to: like `@google/genai`, it moves the session URL onto its base.
const FOREIGN_UPLOADS: &str = "https://uploads.elsewhere.example";
const MODEL: &str = "gemini-2.5-flash";
const KEY: &str = GEMINI_KEYS[0];

fn gen(text: &str) -> HttpRequest {
    gemini_gen(KEY, MODEL, text)
}

fn config(max_inline_bytes: Option<usize>) -> InterceptorConfig {
    let hosts = match max_inline_bytes {
        Some(n) => HostTable::with_declared(&[HostSpec {
            base_url: BASE.into(),
            provider: ProviderId::Gemini,
            completion_window: None,
            max_requests: None,
            max_file_bytes: None,
            max_inline_bytes: Some(n),
        }])
        .unwrap(),
        None => HostTable::builtin(),
    };
    InterceptorConfig {
        batch_size: 3,
        batch_window_ms: 1_000,
        poll_interval_ms: 5_000,
        call_attempts: 4,
        backoff_ms: 1_000,
        max_backoff_ms: 10_000,
        hosts,
        ..InterceptorConfig::default()
    }
}

fn header<'a>(r: &'a SerializableRequest, name: &str) -> Option<&'a str> {
    r.headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn ok(body: Value) -> HttpResponse {
    HttpResponse::json(200, body.to_string())
}

fn text_of(request: &Value) -> &str {
    request["contents"][0]["parts"][0]["text"].as_str().unwrap()
}

fn echo(text: &str) -> Value {
    json!({"candidates": [{"content": {"role": "model", "parts": [{"text": format!("echo: {text}")}]}, "finishReason": "STOP", "index": 0}]})
}

#[derive(Default)]
struct Script {
    /// Creates whose answer is lost after the batch was made.
    create_drops: usize,
    /// The finalize answers `x-goog-upload-status: active` (the upload did not complete).
    finalize_not_final: bool,
}

struct Batch {
    name: String,
    display_name: String,
    /// (key, text) in input order.
    lines: Vec<(String, String)>,
    from_file: bool,
}

#[derive(Default)]
struct FakeGemini {
    script: Script,
    /// Upload session id → (display name, declared length).
    sessions: HashMap<String, (String, usize)>,
    /// "files/…" → bytes.
    files: HashMap<String, String>,
    batches: Vec<Batch>,
    log: Vec<SerializableRequest>,
}

enum Answer {
    Response(HttpResponse),
    Lost,
}

impl FakeGemini {
    fn scripted(script: Script) -> Self {
        FakeGemini {
            script,
            ..FakeGemini::default()
        }
    }

    fn answer(&mut self, r: &SerializableRequest) -> Answer {
        self.log.push(r.clone());
        assert!(
            r.url.starts_with(ORIGIN),
            "a call left the caller's origin: {} {}",
            r.method,
            r.url
        );
        assert_eq!(
            header(r, "x-goog-api-key"),
            Some(KEY),
            "{} {}",
            r.method,
            r.url
        );
        let path = &r.url[ORIGIN.len()..];
        let (path, query) = path.split_once('?').unwrap_or((path, ""));
        let api = path.strip_prefix("/v1beta").unwrap_or("");
        match (r.method.as_str(), path) {
            ("POST", "/upload/v1beta/files") if query.is_empty() => {
                assert_eq!(header(r, "x-goog-upload-protocol"), Some("resumable"));
                assert_eq!(header(r, "x-goog-upload-command"), Some("start"));
                assert_eq!(
                    header(r, "x-goog-upload-header-content-type"),
                    Some("application/jsonl")
                );
                let length: usize = header(r, "x-goog-upload-header-content-length")
                    .unwrap()
                    .parse()
                    .unwrap();
                let body: Value = serde_json::from_str(&r.body).unwrap();
                let display = body["file"]["displayName"].as_str().unwrap().to_string();
                let id = format!("up{}", self.sessions.len() + 1);
                self.sessions.insert(id.clone(), (display, length));
                Answer::Response(HttpResponse {
                    status: 200,
                    headers: vec![
                        (
                            "X-Goog-Upload-URL".into(),
                            format!("{FOREIGN_UPLOADS}/upload/v1beta/files?upload_id={id}&upload_protocol=resumable"),
                        ),
                        ("x-goog-upload-status".into(), "active".into()),
                    ],
                    body: String::new(),
                })
            }
            ("POST", "/upload/v1beta/files") => {
                let id = query
                    .split('&')
                    .find_map(|kv| kv.strip_prefix("upload_id="))
                    .unwrap();
                assert_eq!(header(r, "x-goog-upload-command"), Some("upload, finalize"));
                assert_eq!(header(r, "x-goog-upload-offset"), Some("0"));
                let (_, length) = self.sessions.remove(id).expect("a started session");
                assert_eq!(r.body.len(), length, "the declared length");
                if self.script.finalize_not_final {
                    return Answer::Response(HttpResponse {
                        status: 200,
                        headers: vec![("x-goog-upload-status".into(), "active".into())],
                        body: String::new(),
                    });
                }
                let name = format!("files/in-{id}");
                self.files.insert(name.clone(), r.body.clone());
                let mut resp = ok(
                    json!({"file": {"name": name, "mimeType": "application/jsonl", "state": "ACTIVE"}}),
                );
                resp.headers
                    .push(("x-goog-upload-status".into(), "final".into()));
                Answer::Response(resp)
            }
            ("POST", _) if api == format!("/models/{MODEL}:batchGenerateContent") => {
                let body: Value = serde_json::from_str(&r.body).unwrap();
                let batch = &body["batch"];
                let config = &batch["inputConfig"];
                let (lines, from_file) = match config["fileName"].as_str() {
                    Some(file) => {
                        assert!(config.get("requests").is_none());
                        let data = &self.files[file];
                        let lines = data
                            .lines()
                            .map(|l| {
                                let v: Value = serde_json::from_str(l).unwrap();
                                (
                                    v["key"].as_str().unwrap().to_string(),
                                    text_of(&v["request"]).to_string(),
                                )
                            })
                            .collect();
                        (lines, true)
                    }
                    None => {
                        let entries = config["requests"]["requests"].as_array().unwrap();
                        let lines = entries
                            .iter()
                            .map(|e| {
                                (
                                    e["metadata"]["key"].as_str().unwrap().to_string(),
                                    text_of(&e["request"]).to_string(),
                                )
                            })
                            .collect();
                        (lines, false)
                    }
                };
                let name = format!("batches/b{}", self.batches.len() + 1);
                self.batches.push(Batch {
                    name: name.clone(),
                    display_name: batch["displayName"].as_str().unwrap().to_string(),
                    lines,
                    from_file,
                });
                if self.script.create_drops > 0 {
                    self.script.create_drops -= 1;
                    return Answer::Lost;
                }
                Answer::Response(ok(
                    json!({"name": name, "metadata": {"name": name, "state": "BATCH_STATE_PENDING"}}),
                ))
            }
            ("GET", "/v1beta/batches") => Answer::Response(ok(json!({"operations": self
                .batches
                .iter()
                .map(|b| json!({"name": b.name, "metadata": {"displayName": b.display_name, "state": "BATCH_STATE_RUNNING"}}))
                .collect::<Vec<_>>()}))),
            ("GET", _) if api.starts_with("/batches/") => {
                let name = &api[1..];
                let b = self.batches.iter().find(|b| b.name == name).unwrap();
                let output = if b.from_file {
                    json!({"responsesFile": format!("files/out-{}", &name["batches/".len()..])})
                } else {
                    json!({"inlinedResponses": {"inlinedResponses": b
                        .lines
                        .iter()
                        .map(|(k, t)| json!({"metadata": {"key": k}, "response": echo(t)}))
                        .collect::<Vec<_>>()}})
                };
                Answer::Response(ok(json!({
                    "name": name,
                    "metadata": {"name": name, "state": "BATCH_STATE_SUCCEEDED", "output": output},
                    "done": true,
                    "response": output,
                })))
            }
            ("GET", _) if api.starts_with("/files/out-") && api.ends_with(":download") => {
                assert_eq!(query, "alt=media");
                let id = &api["/files/out-".len()..api.len() - ":download".len()];
                let b = self
                    .batches
                    .iter()
                    .find(|b| b.name == format!("batches/{id}"))
                    .unwrap();
                let body: String = b
                    .lines
                    .iter()
                    .map(|(k, t)| format!("{}\n", json!({"key": k, "response": echo(t)})))
                    .collect();
                Answer::Response(HttpResponse {
                    status: 200,
                    headers: vec![],
                    body,
                })
            }
            other => panic!("unexpected call {other:?} {}", r.url),
        }
    }
}

struct Driver {
    eng: Interceptor,
    now: u64,
    fake: FakeGemini,
    answers: HashMap<RequestId, Output>,
    next: RequestId,
}

impl Driver {
    fn new(fake: FakeGemini, config: InterceptorConfig) -> Self {
        Driver {
            eng: Interceptor::new(config, false, true, 1).unwrap(),
            now: 0,
            fake,
            answers: HashMap::new(),
            next: 1,
        }
    }

    /// Submit `texts` as one batch and run it to the end.
    fn run(&mut self, texts: &[&str]) -> Vec<RequestId> {
        let mut inputs = Vec::new();
        let ids = texts
            .iter()
            .map(|t| {
                let request = self.next;
                self.next += 1;
                inputs.push(Input::Submit {
                    request,
                    http: gen(t),
                    arrived_ms: self.now,
                });
                request
            })
            .collect();
        inputs.push(Input::Flush);
        for _ in 0..1_000 {
            for input in inputs.drain(..) {
                self.eng.handle(self.now, input);
            }
            for output in self.eng.drain_outputs() {
                match output {
                    Output::Send { call, http, .. } => inputs.push(self.call(call, &http)),
                    Output::Respond { request, .. } | Output::Fail { request, .. } => {
                        assert!(self.answers.insert(request, output).is_none());
                    }
                    _ => {}
                }
            }
            if inputs.is_empty() {
                match self.eng.next_deadline() {
                    Some(t) if self.eng.open_requests() > 0 => {
                        self.now = self.now.max(t);
                        inputs.push(Input::Tick);
                    }
                    _ => return ids,
                }
            }
        }
        panic!("the engine did not settle");
    }

    fn call(&mut self, call: CallId, http: &SerializableRequest) -> Input {
        match self.fake.answer(http) {
            Answer::Response(response) => Input::Response { call, response },
            Answer::Lost => Input::TransportError {
                call,
                message: "connection reset".into(),
            },
        }
    }

    fn text(&self, request: RequestId) -> String {
        match &self.answers[&request] {
            Output::Respond {
                status: 200, body, ..
            } => {
                let v: Value = serde_json::from_str(body).unwrap();
                v["candidates"][0]["content"]["parts"][0]["text"]
                    .as_str()
                    .unwrap()
                    .to_string()
            }
            other => panic!("request {request}: {other:?}"),
        }
    }

    /// "METHOD path" of every call, query removed.
    fn calls(&self) -> Vec<String> {
        self.fake
            .log
            .iter()
            .map(|r| {
                let url = r.url.split('?').next().unwrap();
                format!("{} {}", r.method, &url[ORIGIN.len()..])
            })
            .collect()
    }
}

const TEXTS: [&str; 3] = ["sky", "sea", "sand"];

fn answered_all(d: &Driver, ids: &[RequestId]) {
    for (id, text) in ids.iter().zip(TEXTS) {
        assert_eq!(d.text(*id), format!("echo: {text}"));
    }
}

#[test]
fn a_batch_over_the_inline_cap_goes_as_a_file_and_every_caller_is_answered() {
    let mut d = Driver::new(FakeGemini::default(), config(Some(300)));
    let ids = d.run(&TEXTS);
    answered_all(&d, &ids);
    let create = format!("POST /v1beta/models/{MODEL}:batchGenerateContent");
    assert_eq!(
        d.calls(),
        [
            "POST /upload/v1beta/files",
            "POST /upload/v1beta/files",
            &create,
            "GET /v1beta/batches/b1",
            "GET /v1beta/files/out-b1:download",
        ]
    );
    // The finalize went to the caller's origin, not the host the start answer named.
    assert!(d.fake.log[1]
        .url
        .starts_with(&format!("{ORIGIN}/upload/v1beta/files?upload_id=up1")));
    // The file holds `{key, request}` lines, the requests as the callers sent them.
    let file = d.fake.files.values().next().unwrap();
    let lines: Vec<Value> = file
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    for (line, text) in lines.iter().zip(TEXTS) {
        assert!(line["key"].is_string());
        let sent: Value = serde_json::from_str(&gen(text).body).unwrap();
        assert_eq!(line["request"], sent);
    }
    let b = &d.fake.batches[0];
    assert!(b.from_file);
    assert!(
        b.display_name.starts_with("batchling-"),
        "{}",
        b.display_name
    );
}

#[test]
fn a_batch_below_the_inline_cap_goes_inline_in_one_request() {
    let mut d = Driver::new(FakeGemini::default(), config(None));
    let ids = d.run(&TEXTS);
    answered_all(&d, &ids);
    assert_eq!(
        d.calls(),
        [
            format!("POST /v1beta/models/{MODEL}:batchGenerateContent"),
            "GET /v1beta/batches/b1".to_string(),
        ]
    );
    assert!(!d.fake.batches[0].from_file);
}

#[test]
fn the_cap_is_the_inline_create_bodys_exact_size() {
    // The inline create body of these three requests, measured.
    let mut d = Driver::new(FakeGemini::default(), config(None));
    d.run(&TEXTS);
    let inline_len = d.fake.log[0].body.len();

    let mut at_cap = Driver::new(FakeGemini::default(), config(Some(inline_len)));
    let ids = at_cap.run(&TEXTS);
    answered_all(&at_cap, &ids);
    assert!(
        !at_cap.fake.batches[0].from_file,
        "a body of exactly the cap goes inline"
    );
    assert_eq!(at_cap.fake.log[0].body.len(), inline_len);

    let mut over = Driver::new(FakeGemini::default(), config(Some(inline_len - 1)));
    let ids = over.run(&TEXTS);
    answered_all(&over, &ids);
    assert!(
        over.fake.batches[0].from_file,
        "one byte over goes as a file"
    );
}

#[test]
fn a_lost_file_batch_create_is_found_by_its_display_name_and_not_made_twice() {
    let fake = FakeGemini::scripted(Script {
        create_drops: 1,
        ..Script::default()
    });
    let mut d = Driver::new(fake, config(Some(300)));
    let ids = d.run(&TEXTS);
    answered_all(&d, &ids);
    assert_eq!(d.fake.batches.len(), 1, "found, not created again");
    let calls = d.calls();
    let count = |c: &str| calls.iter().filter(|x| *x == c).count();
    assert_eq!(count("GET /v1beta/batches"), 1, "looked up once");
    assert_eq!(count("POST /upload/v1beta/files"), 2, "uploaded once");
    assert!(d.fake.batches[0].from_file);
}

#[test]
fn an_upload_that_does_not_finalize_fails_its_callers_with_a_protocol_error() {
    let fake = FakeGemini::scripted(Script {
        finalize_not_final: true,
        ..Script::default()
    });
    let mut d = Driver::new(fake, config(Some(300)));
    let ids = d.run(&TEXTS);
    for id in ids {
        match &d.answers[&id] {
            Output::Fail { code, message, .. } => {
                assert_eq!(code.as_str(), "ERR_BATCHLING_PROTOCOL");
                assert!(message.contains("not final"), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(d.fake.batches.is_empty(), "no batch without its file");
}

fn declare(provider: ProviderId, max_inline_bytes: usize) -> Result<HostTable, String> {
    HostTable::with_declared(&[HostSpec {
        base_url: "https://gemini-proxy.example/v1beta".into(),
        provider,
        completion_window: None,
        max_requests: None,
        max_file_bytes: None,
        max_inline_bytes: Some(max_inline_bytes),
    }])
    .map_err(|e| e.message)
}

#[test]
fn max_inline_bytes_is_checked_when_declared() {
    assert!(declare(ProviderId::Gemini, 1_000).is_ok());
    assert!(declare(ProviderId::Gemini, GEMINI_MAX_INLINE_REQUEST_BYTES).is_ok());
    let zero = declare(ProviderId::Gemini, 0).unwrap_err();
    assert!(
        zero.contains("maxInlineBytes must be between 1 and 20000000"),
        "{zero}"
    );
    let over = declare(ProviderId::Gemini, GEMINI_MAX_INLINE_REQUEST_BYTES + 1).unwrap_err();
    assert!(over.contains("got 20000001"), "{over}");
    let openai = declare(ProviderId::OpenAi, 1_000).unwrap_err();
    assert!(openai.contains("gemini hosts only"), "{openai}");
    // Through the options JSON, as the JS layer passes it.
    let json =
        [json!({"baseUrl": "https://g.example/v1beta", "provider": "gemini", "maxInlineBytes": 0})];
    assert!(HostTable::with_declared_json(&json).is_err());
}

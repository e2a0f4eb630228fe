//! End-to-end tests of the provider batching engine ([`Interceptor`]) with virtual time: no clock,
//! no network. A small in-test fake of the three batch providers (OpenAI, Anthropic, Gemini; wire
//! formats from shared/providers.md §1, §3, §4) answers every `Output::Send` the engine emits, so
//! whole flows run: submit → (upload) → create → poll → download → respond.
//!
//! The fake answers each batch line with a deterministic function of the line itself
//! (`"echo:<model>:<text>"`), so a caller that receives another caller's answer is caught. A text
//! containing `#err=<token>` makes the fake answer that line with a per-line error. Every call the
//! fake serves is checked: a batch never holds the same custom id twice, never mixes groups, and
//! every call carries the headers of the callers whose requests it holds.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use batchling_core::cache;
use batchling_core::catalog::pricing;
use batchling_core::http::{HttpRequest, HttpResponse};
use batchling_core::interceptor::{
    CallId, Input, Interceptor, InterceptorConfig, LifecycleEvent, Output, RequestId,
    SerializableRequest,
};
use batchling_core::providers::{self, EndKind, ProviderId};
use proptest::prelude::*;
use serde_json::{json, Map, Value};

// ---- requests ------------------------------------------------------------------------------

/// The providers this file's fake speaks (the others are covered by the JS fake provider).
const FAKE_PROVIDERS: [ProviderId; 3] = [
    ProviderId::OpenAi,
    ProviderId::Anthropic,
    ProviderId::Gemini,
];

const OPENAI_BASE: &str = "https://api.openai.com/v1";
const ANTHROPIC_BASE: &str = "https://api.anthropic.com";
const GEMINI_BASE: &str = "https://generativelanguage.googleapis.com/v1beta";

const OPENAI_KEYS: [&str; 2] = ["sk-proj-ALPHA0000secret", "sk-proj-BRAVO1111secret"];
const ANTHROPIC_KEYS: [&str; 2] = [
    "sk-ant-api03-CHARLIE2222secret",
    "sk-ant-api03-DELTA3333secret",
];
const GEMINI_KEYS: [&str; 2] = ["AIzaSyECHO4444secret", "AIzaSyFOXTROT5555secret"];

const OPENAI_MODELS: [&str; 2] = ["gpt-4o-mini", "gpt-4.1-nano"];
const ANTHROPIC_MODELS: [&str; 2] = ["claude-sonnet-4-5", "claude-3-5-haiku-latest"];
const GEMINI_MODELS: [&str; 2] = ["gemini-2.5-flash", "gemini-2.5-pro"];

const WINDOW: u64 = 1_000;
const POLL: u64 = 5_000;

fn all_secrets() -> Vec<&'static str> {
    OPENAI_KEYS
        .iter()
        .chain(&ANTHROPIC_KEYS)
        .chain(&GEMINI_KEYS)
        .copied()
        .collect()
}

fn http(method: &str, url: String, headers: Vec<(&str, String)>, body: String) -> HttpRequest {
    HttpRequest {
        method: method.into(),
        url,
        headers: headers
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
        body,
    }
}

fn openai_json(key: &str, path: &str, body: Value) -> HttpRequest {
    http(
        "POST",
        format!("{OPENAI_BASE}{path}"),
        vec![
            ("Authorization", format!("Bearer {key}")),
            ("Content-Type", "application/json".into()),
            ("User-Agent", "OpenAI/JS 7.57.0".into()),
            ("X-Stainless-Retry-Count", "0".into()),
        ],
        body.to_string(),
    )
}

fn openai_chat(key: &str, model: &str, text: &str) -> HttpRequest {
    openai_json(
        key,
        "/chat/completions",
        json!({"model": model, "messages": [{"role": "user", "content": text}], "max_tokens": 16}),
    )
}

fn openai_embedding(key: &str, model: &str, text: &str) -> HttpRequest {
    openai_json(key, "/embeddings", json!({"model": model, "input": text}))
}

fn anthropic_msg(key: &str, model: &str, text: &str, beta: Option<&str>) -> HttpRequest {
    let mut headers = vec![
        ("x-api-key", key.to_string()),
        ("anthropic-version", "2023-06-01".to_string()),
        ("content-type", "application/json".to_string()),
        ("x-stainless-os", "Linux".to_string()),
    ];
    if let Some(beta) = beta {
        headers.push(("anthropic-beta", beta.to_string()));
    }
    http(
        "POST",
        format!("{ANTHROPIC_BASE}/v1/messages"),
        headers,
        json!({"model": model, "max_tokens": 64, "messages": [{"role": "user", "content": text}]})
            .to_string(),
    )
}

fn gemini_body(text: &str) -> String {
    json!({"contents": [{"role": "user", "parts": [{"text": text}]}], "generationConfig": {"maxOutputTokens": 32}})
        .to_string()
}

fn gemini_gen(key: &str, model: &str, text: &str) -> HttpRequest {
    http(
        "POST",
        format!("{GEMINI_BASE}/models/{model}:generateContent"),
        vec![
            ("x-goog-api-key", key.to_string()),
            ("content-type", "application/json".to_string()),
            ("x-goog-api-client", "google-genai-sdk/3.1.0".to_string()),
        ],
        gemini_body(text),
    )
}

/// The `?key=` flavour of Gemini auth.
fn gemini_gen_query_key(key: &str, model: &str, text: &str) -> HttpRequest {
    http(
        "POST",
        format!("{GEMINI_BASE}/models/{model}:generateContent?key={key}"),
        vec![("content-type", "application/json".to_string())],
        gemini_body(text),
    )
}

fn key_of(p: ProviderId, i: usize) -> &'static str {
    match p {
        ProviderId::OpenAi => OPENAI_KEYS[i],
        ProviderId::Anthropic => ANTHROPIC_KEYS[i],
        ProviderId::Gemini => GEMINI_KEYS[i],
        other => unreachable!("this fake speaks OpenAI, Anthropic and Gemini, not {other}"),
    }
}

fn model_of(p: ProviderId, i: usize) -> &'static str {
    match p {
        ProviderId::OpenAi => OPENAI_MODELS[i],
        ProviderId::Anthropic => ANTHROPIC_MODELS[i],
        ProviderId::Gemini => GEMINI_MODELS[i],
        other => unreachable!("this fake speaks OpenAI, Anthropic and Gemini, not {other}"),
    }
}

/// A batchable request of provider `p` with key `k` and model `m` (indices into the tables).
fn request(p: ProviderId, k: usize, m: usize, text: &str) -> HttpRequest {
    let (key, model) = (key_of(p, k), model_of(p, m));
    match p {
        ProviderId::OpenAi => openai_chat(key, model, text),
        ProviderId::Anthropic => anthropic_msg(key, model, text, None),
        ProviderId::Gemini => gemini_gen(key, model, text),
        other => unreachable!("this fake speaks OpenAI, Anthropic and Gemini, not {other}"),
    }
}

/// The same request with the body's top-level keys in reverse order.
fn reordered(mut req: HttpRequest) -> HttpRequest {
    let Ok(Value::Object(map)) = serde_json::from_str::<Value>(&req.body) else {
        panic!("JSON body expected");
    };
    let reversed: Map<String, Value> = map.into_iter().rev().collect();
    req.body = Value::Object(reversed).to_string();
    req
}

/// What the fake answers for a line: the model and the caller's text, quoted as a JSON string.
fn echo(model: &str, text: &str) -> String {
    format!("echo:{model}:{text}")
}

fn config(batch_size: usize) -> InterceptorConfig {
    InterceptorConfig {
        batch_size,
        batch_window_ms: WINDOW,
        poll_interval_ms: POLL,
        dry_run: false,
        call_attempts: 4,
        backoff_ms: 1_000,
        max_backoff_ms: 30_000,
        jitter_seed: 7,
        ..InterceptorConfig::default()
    }
}

// ---- the fake provider ---------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Step {
    Upload,
    Create,
    Find,
    Poll,
    Download,
}

/// How a created batch ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fate {
    Complete,
    Expire,
    Cancel,
    Fail,
}

impl Fate {
    fn end_kind(self) -> Option<EndKind> {
        match self {
            Fate::Complete => None,
            Fate::Expire => Some(EndKind::Expired),
            Fate::Cancel => Some(EndKind::Cancelled),
            Fate::Fail => Some(EndKind::Failed),
        }
    }
}

#[derive(Clone, Debug)]
enum Fault {
    /// Answer with this status (and `retry-after`), doing nothing.
    Status(u16, Option<&'static str>),
    /// The call never reached the provider.
    Transport,
    /// The provider did the work, but its answer was lost.
    LostAnswer,
}

enum Reply {
    Http(HttpResponse),
    Transport,
}

/// What the harness knows of a request it submitted, keyed by the custom id it must travel under.
#[derive(Clone, Debug)]
struct Expected {
    group: String,
    endpoint: String,
    model: String,
    forward: Vec<(String, String)>,
}

struct FakeBatch {
    provider: ProviderId,
    id: String,
    tag: Option<String>,
    model: String,
    endpoint: String,
    /// The forwarded headers of the create call; every later call on the batch must carry them.
    auth: Vec<(String, String)>,
    input_file: Option<String>,
    /// (custom id, request body) in the order of the create.
    lines: Vec<(String, Value)>,
    fate: Fate,
    polls_left: u32,
    /// The terminal object, fixed at the first terminal poll.
    terminal: Option<Value>,
    /// Anthropic results JSONL.
    results: Option<String>,
    /// Custom ids that got a real (model) result line.
    answered: HashSet<String>,
    /// Custom ids in the order their result lines were written.
    result_order: Vec<String>,
}

struct FakeFile {
    auth: Vec<(String, String)>,
    content: String,
    /// (custom id, url, body) of an input file.
    lines: Vec<(String, String, Value)>,
}

struct RandomFaults {
    state: u64,
    budget: u32,
    percent: u64,
}

impl RandomFaults {
    fn next(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn draw(&mut self) -> Option<Fault> {
        if self.budget == 0 || self.next() % 100 >= self.percent {
            return None;
        }
        self.budget -= 1;
        Some(match self.next() % 5 {
            0 => Fault::Status(429, Some("1")),
            1 => Fault::Status(500, None),
            2 => Fault::Status(503, None),
            3 => Fault::Transport,
            _ => Fault::LostAnswer,
        })
    }
}

struct Fake {
    batches: Vec<FakeBatch>,
    files: HashMap<String, FakeFile>,
    /// Fates of the next created batches, in order; then `Complete`.
    fates: VecDeque<Fate>,
    /// "Still running" answers before a batch's terminal one.
    polls_before_done: u32,
    /// Scripted faults: the first entry matching (provider, step) is used up by the next call.
    faults: Vec<(Option<ProviderId>, Step, Fault)>,
    random: Option<RandomFaults>,
    /// Results are always written in reverse line order; a non-zero seed shuffles them further.
    shuffle_seed: u64,
    expected: HashMap<String, Expected>,
    violations: Vec<String>,
    log: Vec<(ProviderId, Step, SerializableRequest)>,
}

impl Fake {
    fn new() -> Self {
        Fake {
            batches: Vec::new(),
            files: HashMap::new(),
            fates: VecDeque::new(),
            polls_before_done: 1,
            faults: Vec::new(),
            random: None,
            shuffle_seed: 0,
            expected: HashMap::new(),
            violations: Vec::new(),
            log: Vec::new(),
        }
    }

    fn fault(&mut self, provider: Option<ProviderId>, step: Step, fault: Fault) {
        self.faults.push((provider, step, fault));
    }

    fn served(&self, step: Step) -> usize {
        self.log.iter().filter(|(_, s, _)| *s == step).count()
    }

    fn serve(&mut self, req: &SerializableRequest) -> Reply {
        let Some((provider, step, target)) = classify_call(req) else {
            self.violations
                .push(format!("unexpected call {} {}", req.method, req.url));
            return Reply::Http(HttpResponse::json(
                404,
                r#"{"error":{"message":"no such route"}}"#.into(),
            ));
        };
        self.log.push((provider, step, req.clone()));
        match self.take_fault(provider, step) {
            Some(Fault::Status(status, retry_after)) => {
                Reply::Http(error_response(provider, status, retry_after))
            }
            Some(Fault::Transport) => Reply::Transport,
            Some(Fault::LostAnswer) => {
                let _ = self.apply(provider, step, &target, req);
                Reply::Transport
            }
            None => Reply::Http(self.apply(provider, step, &target, req)),
        }
    }

    fn take_fault(&mut self, provider: ProviderId, step: Step) -> Option<Fault> {
        let scripted = self
            .faults
            .iter()
            .position(|(p, s, _)| *s == step && p.is_none_or(|p| p == provider));
        if let Some(i) = scripted {
            return Some(self.faults.remove(i).2);
        }
        self.random.as_mut().and_then(RandomFaults::draw)
    }

    fn apply(
        &mut self,
        provider: ProviderId,
        step: Step,
        target: &str,
        req: &SerializableRequest,
    ) -> HttpResponse {
        let auth = auth_headers(&req.headers);
        match (provider, step) {
            (ProviderId::OpenAi, Step::Upload) => self.openai_upload(req, auth),
            (ProviderId::OpenAi, Step::Create) => self.openai_create(req, auth),
            (ProviderId::Anthropic, Step::Create) => self.anthropic_create(req, auth),
            (ProviderId::Gemini, Step::Create) => self.gemini_create(target, req, auth),
            (ProviderId::OpenAi | ProviderId::Gemini, Step::Find) => self.find(provider, &auth),
            (_, Step::Poll) => self.poll(provider, target, &auth),
            (ProviderId::OpenAi, Step::Download) => self.openai_download(target, &auth),
            (ProviderId::Anthropic, Step::Download) => self.anthropic_download(target, &auth),
            _ => {
                self.violations.push(format!(
                    "{provider} has no {step:?} call: {} {}",
                    req.method, req.url
                ));
                error_response(provider, 404, None)
            }
        }
    }

    // OpenAI §1: multipart JSONL upload, then POST /batches with the file id.
    fn openai_upload(
        &mut self,
        req: &SerializableRequest,
        auth: Vec<(String, String)>,
    ) -> HttpResponse {
        let content_type = header(&req.headers, "content-type").unwrap_or("");
        let Some(boundary) = content_type.strip_prefix("multipart/form-data; boundary=") else {
            self.violations
                .push(format!("upload is not multipart: {content_type}"));
            return error_response(ProviderId::OpenAi, 400, None);
        };
        let start = "Content-Type: application/jsonl\r\n\r\n";
        let end = format!("\r\n--{boundary}--\r\n");
        let (Some(at), true) = (req.body.find(start), req.body.ends_with(&end)) else {
            self.violations
                .push("upload body is not the expected multipart".into());
            return error_response(ProviderId::OpenAi, 400, None);
        };
        if !req.body.contains("name=\"purpose\"\r\n\r\nbatch\r\n") {
            self.violations.push("upload without purpose=batch".into());
        }
        let jsonl = &req.body[at + start.len()..req.body.len() - end.len()];
        let mut lines = Vec::new();
        for raw in jsonl.split('\n').filter(|l| !l.trim().is_empty()) {
            let Ok(v) = serde_json::from_str::<Value>(raw) else {
                self.violations
                    .push(format!("input line is not JSON: {raw}"));
                continue;
            };
            if v["method"] != "POST" {
                self.violations
                    .push(format!("input line method is not POST: {raw}"));
            }
            lines.push((
                v["custom_id"].as_str().unwrap_or("").to_string(),
                v["url"].as_str().unwrap_or("").to_string(),
                v["body"].clone(),
            ));
        }
        let id = format!("file-in{}", self.files.len() + 1);
        let bytes = jsonl.len();
        self.files.insert(
            id.clone(),
            FakeFile {
                auth,
                content: jsonl.to_string(),
                lines,
            },
        );
        ok(
            json!({"id": id, "object": "file", "bytes": bytes, "created_at": 1_763_880_000u64,
            "filename": "batch_in.jsonl", "purpose": "batch", "status": "processed",
            "expires_at": 1_766_472_000u64}),
        )
    }

    fn openai_create(
        &mut self,
        req: &SerializableRequest,
        auth: Vec<(String, String)>,
    ) -> HttpResponse {
        let body: Value = serde_json::from_str(&req.body).unwrap_or(Value::Null);
        let file_id = body["input_file_id"].as_str().unwrap_or("").to_string();
        let endpoint = body["endpoint"].as_str().unwrap_or("").to_string();
        if body["completion_window"] != "24h" {
            self.violations
                .push(format!("completion_window: {}", body["completion_window"]));
        }
        let tag = body
            .pointer("/metadata/batchling_tag")
            .and_then(Value::as_str)
            .map(str::to_string);
        let Some(file) = self.files.get(&file_id) else {
            self.violations
                .push(format!("create names unknown file {file_id:?}"));
            return error_response(ProviderId::OpenAi, 400, None);
        };
        let mut violations = Vec::new();
        if file.auth != auth {
            violations.push(format!(
                "create of {file_id} carries other headers than its upload"
            ));
        }
        let mut lines = Vec::new();
        for (custom_id, url, line_body) in &file.lines {
            if *url != endpoint {
                violations.push(format!(
                    "line url {url} is not the batch endpoint {endpoint}"
                ));
            }
            lines.push((custom_id.clone(), line_body.clone()));
        }
        self.violations.extend(violations);
        let model = lines
            .first()
            .and_then(|(_, b)| b["model"].as_str())
            .unwrap_or("")
            .to_string();
        let i = self.register(
            ProviderId::OpenAi,
            tag,
            model,
            endpoint,
            auth,
            lines,
            Some(file_id),
        );
        ok(self.running_object(i, "validating"))
    }

    // Anthropic §3: inline requests.
    fn anthropic_create(
        &mut self,
        req: &SerializableRequest,
        auth: Vec<(String, String)>,
    ) -> HttpResponse {
        let body: Value = serde_json::from_str(&req.body).unwrap_or(Value::Null);
        let mut lines = Vec::new();
        for r in body["requests"].as_array().cloned().unwrap_or_default() {
            let custom_id = r["custom_id"].as_str().unwrap_or("").to_string();
            let valid = (1..=64).contains(&custom_id.len())
                && custom_id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if !valid {
                self.violations
                    .push(format!("invalid anthropic custom_id {custom_id:?}"));
            }
            lines.push((custom_id, r["params"].clone()));
        }
        let model = lines
            .first()
            .and_then(|(_, b)| b["model"].as_str())
            .unwrap_or("")
            .to_string();
        let i = self.register(
            ProviderId::Anthropic,
            None,
            model,
            "/v1/messages".into(),
            auth,
            lines,
            None,
        );
        ok(self.running_object(i, "in_progress"))
    }

    // Gemini §4: inline batchGenerateContent; the batch is an Operation.
    fn gemini_create(
        &mut self,
        model: &str,
        req: &SerializableRequest,
        auth: Vec<(String, String)>,
    ) -> HttpResponse {
        let body: Value = serde_json::from_str(&req.body).unwrap_or(Value::Null);
        let tag = body
            .pointer("/batch/displayName")
            .and_then(Value::as_str)
            .map(str::to_string);
        let mut lines = Vec::new();
        let requests = body
            .pointer("/batch/inputConfig/requests/requests")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for r in requests {
            let key = r
                .pointer("/metadata/key")
                .and_then(Value::as_str)
                .unwrap_or("");
            lines.push((key.to_string(), r["request"].clone()));
        }
        let i = self.register(
            ProviderId::Gemini,
            tag,
            model.to_string(),
            "generateContent".into(),
            auth,
            lines,
            None,
        );
        ok(self.running_object(i, "BATCH_STATE_PENDING"))
    }

    /// Checks a new batch against what the callers sent, and stores it.
    #[allow(clippy::too_many_arguments)]
    fn register(
        &mut self,
        provider: ProviderId,
        tag: Option<String>,
        model: String,
        endpoint: String,
        auth: Vec<(String, String)>,
        lines: Vec<(String, Value)>,
        input_file: Option<String>,
    ) -> usize {
        let mut seen = HashSet::new();
        let mut groups = HashSet::new();
        for (custom_id, body) in &lines {
            if !seen.insert(custom_id.clone()) {
                self.violations.push(format!(
                    "{provider} batch holds custom id {custom_id} twice"
                ));
            }
            match self.expected.get(custom_id) {
                None => self.violations.push(format!(
                    "{provider} batch holds unknown custom id {custom_id}"
                )),
                Some(e) => {
                    groups.insert(e.group.clone());
                    if e.forward != auth {
                        self.violations.push(format!(
                            "{provider} create for {custom_id} does not carry its caller's headers"
                        ));
                    }
                    if e.model != model || e.endpoint != endpoint {
                        self.violations.push(format!(
                            "{custom_id} ({} {}) went into a {endpoint} {model} batch",
                            e.endpoint, e.model
                        ));
                    }
                }
            }
            if provider != ProviderId::Gemini && body["model"].as_str() != Some(model.as_str()) {
                self.violations.push(format!(
                    "{provider} batch mixes models: {} vs {model}",
                    body["model"]
                ));
            }
        }
        if groups.len() > 1 {
            self.violations
                .push(format!("{provider} batch mixes {} groups", groups.len()));
        }
        if lines.is_empty() {
            self.violations
                .push(format!("{provider} batch with no lines"));
        }
        let n = self.batches.len() + 1;
        let id = match provider {
            ProviderId::OpenAi => format!("batch_{n:04}"),
            ProviderId::Anthropic => format!("msgbatch_{n:04}"),
            ProviderId::Gemini => format!("batches/{n}"),
            other => unreachable!("this fake speaks OpenAI, Anthropic and Gemini, not {other}"),
        };
        let fate = self.fates.pop_front().unwrap_or(Fate::Complete);
        self.batches.push(FakeBatch {
            provider,
            id,
            tag,
            model,
            endpoint,
            auth,
            input_file,
            lines,
            fate,
            polls_left: self.polls_before_done,
            terminal: None,
            results: None,
            answered: HashSet::new(),
            result_order: Vec::new(),
        });
        self.batches.len() - 1
    }

    fn batch_index(&self, provider: ProviderId, id: &str) -> Option<usize> {
        self.batches
            .iter()
            .position(|b| b.provider == provider && b.id == id)
    }

    fn find(&mut self, provider: ProviderId, auth: &[(String, String)]) -> HttpResponse {
        let objects: Vec<Value> = (0..self.batches.len())
            .rev()
            .filter(|&i| self.batches[i].provider == provider && self.batches[i].auth == auth)
            .map(|i| self.current_object(i))
            .collect();
        match provider {
            ProviderId::OpenAi => {
                let first = objects
                    .first()
                    .map(|b| b["id"].clone())
                    .unwrap_or(Value::Null);
                let last = objects
                    .last()
                    .map(|b| b["id"].clone())
                    .unwrap_or(Value::Null);
                ok(
                    json!({"object": "list", "data": objects, "first_id": first, "last_id": last, "has_more": false}),
                )
            }
            _ if objects.is_empty() => ok(json!({})), // Gemini's empty list
            _ => ok(json!({"operations": objects})),
        }
    }

    fn poll(&mut self, provider: ProviderId, id: &str, auth: &[(String, String)]) -> HttpResponse {
        let Some(i) = self.batch_index(provider, id) else {
            self.violations
                .push(format!("poll of unknown {provider} batch {id}"));
            return error_response(provider, 404, None);
        };
        if self.batches[i].auth != auth {
            self.violations.push(format!(
                "poll of {id} carries other headers than its create"
            ));
        }
        if self.batches[i].terminal.is_none() {
            if self.batches[i].polls_left > 0 {
                self.batches[i].polls_left -= 1;
                let label = match provider {
                    ProviderId::OpenAi => "in_progress",
                    ProviderId::Anthropic => "in_progress",
                    ProviderId::Gemini => "BATCH_STATE_RUNNING",
                    other => {
                        unreachable!("this fake speaks OpenAI, Anthropic and Gemini, not {other}")
                    }
                };
                return ok(self.running_object(i, label));
            }
            self.finalize(i);
        }
        ok(self.batches[i].terminal.clone().expect("finalized"))
    }

    fn current_object(&self, i: usize) -> Value {
        match &self.batches[i].terminal {
            Some(t) => t.clone(),
            None => self.running_object(
                i,
                match self.batches[i].provider {
                    ProviderId::OpenAi | ProviderId::Anthropic => "in_progress",
                    ProviderId::Gemini => "BATCH_STATE_RUNNING",
                    other => {
                        unreachable!("this fake speaks OpenAI, Anthropic and Gemini, not {other}")
                    }
                },
            ),
        }
    }

    fn running_object(&self, i: usize, label: &str) -> Value {
        let b = &self.batches[i];
        let n = b.lines.len();
        match b.provider {
            ProviderId::OpenAi => openai_batch_json(b, label, None, None, (n, 0, 0), Value::Null),
            ProviderId::Anthropic => {
                anthropic_batch_json(b, label, [n, 0, 0, 0, 0], None, false, false)
            }
            ProviderId::Gemini => gemini_operation(b, label, false, None, None, (n, 0, 0)),
            other => unreachable!("this fake speaks OpenAI, Anthropic and Gemini, not {other}"),
        }
    }

    /// Result lines in the order the fake writes them: reversed, then shuffled by the seed.
    fn result_order(&self, i: usize, run: &[usize]) -> Vec<usize> {
        let mut order: Vec<usize> = run.iter().rev().copied().collect();
        if self.shuffle_seed != 0 {
            let mut rng = RandomFaults {
                state: self.shuffle_seed ^ i as u64,
                budget: 0,
                percent: 0,
            };
            for k in (1..order.len()).rev() {
                let j = (rng.next() % (k as u64 + 1)) as usize;
                order.swap(k, j);
            }
        }
        order
    }

    fn finalize(&mut self, i: usize) {
        match self.batches[i].provider {
            ProviderId::OpenAi => self.finalize_openai(i),
            ProviderId::Anthropic => self.finalize_anthropic(i),
            ProviderId::Gemini => self.finalize_gemini(i),
            other => unreachable!("this fake speaks OpenAI, Anthropic and Gemini, not {other}"),
        }
    }

    fn finalize_openai(&mut self, i: usize) {
        let n = self.batches[i].lines.len();
        let fate = self.batches[i].fate;
        let run: Vec<usize> = match fate {
            Fate::Complete => (0..n).collect(),
            Fate::Expire => (0..n / 2).collect(), // the rest has no line: it did not run
            Fate::Cancel | Fate::Fail => Vec::new(),
        };
        let order = self.result_order(i, &run);
        let b = &self.batches[i];
        let (mut out, mut err) = (String::new(), String::new());
        let mut order_ids = Vec::new();
        for &k in &order {
            let (custom_id, body) = &b.lines[k];
            let (line, is_error) = openai_line(k, custom_id, &b.endpoint, &b.model, body);
            let target = if is_error { &mut err } else { &mut out };
            target.push_str(&line.to_string());
            target.push('\n');
            order_ids.push(custom_id.clone());
        }
        let answered: HashSet<String> = run.iter().map(|&k| b.lines[k].0.clone()).collect();
        let (completed, failed) = (out.lines().count(), err.lines().count());
        let auth = b.auth.clone();
        let file = |files: &mut HashMap<String, FakeFile>, content: String, kind: &str| {
            if content.is_empty() {
                return None;
            }
            let id = format!("file-{kind}{}", files.len() + 1);
            files.insert(
                id.clone(),
                FakeFile {
                    auth: auth.clone(),
                    content,
                    lines: Vec::new(),
                },
            );
            Some(id)
        };
        let out_id = file(&mut self.files, out, "out");
        let err_id = file(&mut self.files, err, "err");
        let (status, errors) = match fate {
            Fate::Complete => ("completed", Value::Null),
            Fate::Expire => ("expired", Value::Null),
            Fate::Cancel => ("cancelled", Value::Null),
            Fate::Fail => (
                "failed",
                json!({"object": "list", "data": [{"code": "invalid_json_line", "message": "fake validation failure", "param": null, "line": 1}]}),
            ),
        };
        let b = &self.batches[i];
        let terminal = openai_batch_json(b, status, out_id, err_id, (n, completed, failed), errors);
        let b = &mut self.batches[i];
        b.terminal = Some(terminal);
        b.answered = answered;
        b.result_order = order_ids;
    }

    fn finalize_anthropic(&mut self, i: usize) {
        let n = self.batches[i].lines.len();
        let fate = self.batches[i].fate;
        let run: Vec<usize> = match fate {
            Fate::Complete => (0..n).collect(),
            Fate::Expire | Fate::Cancel => (0..n / 2).collect(),
            Fate::Fail => Vec::new(),
        };
        let all: Vec<usize> = if fate == Fate::Fail {
            Vec::new()
        } else {
            (0..n).collect()
        };
        let order = self.result_order(i, &all);
        let b = &self.batches[i];
        let mut counts = [0usize; 5]; // processing, succeeded, errored, canceled, expired
        let mut results = String::new();
        let mut order_ids = Vec::new();
        for &k in &order {
            let (custom_id, body) = &b.lines[k];
            let result = if run.contains(&k) {
                anthropic_result(custom_id, &b.model, body)
            } else if fate == Fate::Expire {
                json!({"type": "expired"})
            } else {
                json!({"type": "canceled"})
            };
            let slot = match result["type"].as_str() {
                Some("succeeded") => 1,
                Some("errored") => 2,
                Some("canceled") => 3,
                _ => 4,
            };
            counts[slot] += 1;
            results.push_str(&json!({"custom_id": custom_id, "result": result}).to_string());
            results.push('\n');
            order_ids.push(custom_id.clone());
        }
        let answered: HashSet<String> = run.iter().map(|&k| b.lines[k].0.clone()).collect();
        let terminal = if fate == Fate::Fail {
            // Ended without results: e.g. archived after 29 days.
            anthropic_batch_json(b, "ended", [0, 0, 0, 0, 0], None, false, true)
        } else {
            let url = format!("{ANTHROPIC_BASE}/v1/messages/batches/{}/results", b.id);
            anthropic_batch_json(b, "ended", counts, Some(url), fate == Fate::Cancel, false)
        };
        let b = &mut self.batches[i];
        b.terminal = Some(terminal);
        b.results = (fate != Fate::Fail).then_some(results);
        b.answered = answered;
        b.result_order = order_ids;
    }

    fn finalize_gemini(&mut self, i: usize) {
        let n = self.batches[i].lines.len();
        let fate = self.batches[i].fate;
        let b = &self.batches[i];
        let terminal = match fate {
            Fate::Complete => {
                let all: Vec<usize> = (0..n).collect();
                let order = self.result_order(i, &all);
                let mut entries = Vec::new();
                let mut failed = 0;
                for &k in &order {
                    let (key, body) = &b.lines[k];
                    let entry = gemini_inline(key, &b.model, body);
                    if entry.get("error").is_some() {
                        failed += 1;
                    }
                    entries.push(entry);
                }
                let order_ids: Vec<String> = order.iter().map(|&k| b.lines[k].0.clone()).collect();
                let output = json!({"inlinedResponses": {"inlinedResponses": entries}});
                let op = gemini_operation(
                    b,
                    "BATCH_STATE_SUCCEEDED",
                    true,
                    Some(output),
                    None,
                    (n, n - failed, failed),
                );
                let b = &mut self.batches[i];
                b.answered = b.lines.iter().map(|(c, _)| c.clone()).collect();
                b.result_order = order_ids;
                op
            }
            Fate::Expire => gemini_operation(b, "BATCH_STATE_EXPIRED", true, None, None, (n, 0, 0)),
            Fate::Cancel => {
                gemini_operation(b, "BATCH_STATE_CANCELLED", true, None, None, (n, 0, 0))
            }
            Fate::Fail => gemini_operation(
                b,
                "BATCH_STATE_FAILED",
                true,
                None,
                Some(json!({"code": 13, "message": "fake batch failure"})),
                (n, 0, n),
            ),
        };
        self.batches[i].terminal = Some(terminal);
    }

    fn openai_download(&mut self, file_id: &str, auth: &[(String, String)]) -> HttpResponse {
        let Some(file) = self.files.get(file_id) else {
            self.violations
                .push(format!("download of unknown file {file_id}"));
            return error_response(ProviderId::OpenAi, 404, None);
        };
        if file.auth != auth {
            self.violations.push(format!(
                "download of {file_id} carries other headers than its batch"
            ));
        }
        HttpResponse {
            status: 200,
            headers: vec![("content-type".into(), "application/octet-stream".into())],
            body: file.content.clone(),
        }
    }

    fn anthropic_download(&mut self, id: &str, auth: &[(String, String)]) -> HttpResponse {
        let Some(i) = self.batch_index(ProviderId::Anthropic, id) else {
            self.violations
                .push(format!("results of unknown batch {id}"));
            return error_response(ProviderId::Anthropic, 404, None);
        };
        if self.batches[i].auth != auth {
            self.violations.push(format!(
                "results of {id} carry other headers than its create"
            ));
        }
        let Some(results) = self.batches[i].results.clone() else {
            self.violations
                .push(format!("results of {id} fetched before it ended"));
            return error_response(ProviderId::Anthropic, 404, None);
        };
        HttpResponse {
            status: 200,
            headers: vec![("content-type".into(), "application/binary".into())],
            body: results,
        }
    }
}

/// (provider, step, target): the batch id, file id or (Gemini create) model the call is about.
fn classify_call(req: &SerializableRequest) -> Option<(ProviderId, Step, String)> {
    let method = req.method.as_str();
    if let Some(path) = req.url.strip_prefix(OPENAI_BASE) {
        let p = ProviderId::OpenAi;
        return match method {
            "POST" if path == "/files" => Some((p, Step::Upload, String::new())),
            "POST" if path == "/batches" => Some((p, Step::Create, String::new())),
            "GET" if path.starts_with("/batches?") => Some((p, Step::Find, String::new())),
            "GET" if path.starts_with("/batches/") => {
                Some((p, Step::Poll, path["/batches/".len()..].to_string()))
            }
            "GET" if path.starts_with("/files/") && path.ends_with("/content") => Some((
                p,
                Step::Download,
                path["/files/".len()..path.len() - "/content".len()].to_string(),
            )),
            _ => None,
        };
    }
    if let Some(path) = req.url.strip_prefix(ANTHROPIC_BASE) {
        let p = ProviderId::Anthropic;
        let rest = path.strip_prefix("/v1/messages/batches")?;
        return match method {
            "POST" if rest.is_empty() => Some((p, Step::Create, String::new())),
            "GET" => {
                let id = rest.strip_prefix('/')?;
                match id.strip_suffix("/results") {
                    Some(id) => Some((p, Step::Download, id.to_string())),
                    None => Some((p, Step::Poll, id.to_string())),
                }
            }
            _ => None,
        };
    }
    if let Some(path) = req.url.strip_prefix(GEMINI_BASE) {
        let p = ProviderId::Gemini;
        return match method {
            "POST" => {
                let model = path
                    .strip_prefix("/models/")?
                    .strip_suffix(":batchGenerateContent")?;
                Some((p, Step::Create, model.to_string()))
            }
            "GET" if path.starts_with("/batches?") => Some((p, Step::Find, String::new())),
            "GET" if path.starts_with("/batches/") => Some((p, Step::Poll, path[1..].to_string())),
            _ => None,
        };
    }
    None
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// The headers a batch call carries for its callers: everything but the call's own content type.
fn auth_headers(headers: &[(String, String)]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
        .filter(|(k, _)| k != "content-type")
        .collect();
    out.sort();
    out
}

fn ok(body: Value) -> HttpResponse {
    HttpResponse::json(200, body.to_string())
}

/// A provider's own error envelope for a failed call.
fn error_response(provider: ProviderId, status: u16, retry_after: Option<&str>) -> HttpResponse {
    let message = format!("fake provider error {status}");
    let body = match provider {
        ProviderId::OpenAi => {
            let (kind, code) = match status {
                401 => ("invalid_request_error", json!("invalid_api_key")),
                429 => ("rate_limit_exceeded", Value::Null),
                _ => ("server_error", Value::Null),
            };
            json!({"error": {"message": message, "type": kind, "param": null, "code": code}})
        }
        ProviderId::Anthropic => {
            let kind = match status {
                401 => "authentication_error",
                429 => "rate_limit_error",
                529 => "overloaded_error",
                404 => "not_found_error",
                _ => "api_error",
            };
            json!({"type": "error", "error": {"type": kind, "message": message}})
        }
        ProviderId::Gemini => {
            let name = match status {
                401 => "UNAUTHENTICATED",
                404 => "NOT_FOUND",
                429 => "RESOURCE_EXHAUSTED",
                503 => "UNAVAILABLE",
                _ => "INTERNAL",
            };
            json!({"error": {"code": status, "message": message, "status": name}})
        }
        other => unreachable!("this fake speaks OpenAI, Anthropic and Gemini, not {other}"),
    };
    let mut response = HttpResponse::json(status, body.to_string());
    if let Some(seconds) = retry_after {
        response
            .headers
            .push(("retry-after".into(), seconds.into()));
    }
    response
}

/// The caller's text inside a batch line body.
fn line_text(provider: ProviderId, body: &Value) -> String {
    let pointer = match provider {
        ProviderId::OpenAi if body.get("messages").is_some() => "/messages/0/content",
        ProviderId::OpenAi => "/input",
        ProviderId::Anthropic => "/messages/0/content",
        ProviderId::Gemini => "/contents/0/parts/0/text",
        other => unreachable!("this fake speaks OpenAI, Anthropic and Gemini, not {other}"),
    };
    body.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

fn marker(text: &str) -> Option<&str> {
    text.split_once("#err=").map(|(_, m)| m)
}

/// Whether the fake answers this line with a status the SDKs retry (408, 409, 429, 5xx), which
/// the engine does not cache.
fn transient_line(provider: ProviderId, body: &Value) -> bool {
    let text = line_text(provider, body);
    let Some(m) = marker(&text) else {
        return false;
    };
    match provider {
        ProviderId::OpenAi => {
            m == "timeout"
                || m.parse::<u16>()
                    .is_ok_and(|s| matches!(s, 408 | 409 | 429) || s >= 500)
        }
        ProviderId::Anthropic => matches!(m, "rate_limit_error" | "overloaded_error" | "api_error"),
        ProviderId::Gemini => matches!(m, "4" | "8" | "13" | "14"),
        other => unreachable!("this fake speaks OpenAI, Anthropic and Gemini, not {other}"),
    }
}

/// An OpenAI output/error line (§1.5) and whether it goes to the error file.
fn openai_line(
    k: usize,
    custom_id: &str,
    endpoint: &str,
    model: &str,
    body: &Value,
) -> (Value, bool) {
    let text = line_text(ProviderId::OpenAi, body);
    let id = format!("batch_req_{k}");
    let request_id = format!("req_{custom_id}");
    match marker(&text) {
        Some("timeout") => (
            json!({"id": id, "custom_id": custom_id, "response": null,
                   "error": {"code": "request_timeout", "message": "The request timed out."}}),
            true,
        ),
        Some(code) => {
            let status: u16 = code.parse().unwrap_or(400);
            (
                json!({"id": id, "custom_id": custom_id, "response": {"status_code": status, "request_id": request_id,
                       "body": {"error": {"message": format!("fake line error {status}"), "type": "invalid_request_error",
                                          "param": null, "code": format!("fake_{status}")}}}, "error": null}),
                true,
            )
        }
        None => {
            let answer = if endpoint == "/v1/embeddings" {
                json!({"object": "list", "data": [{"object": "embedding", "index": 0, "embedding": [text.len() as f64, 0.5]}],
                       "model": model, "usage": {"prompt_tokens": 1, "total_tokens": 1}, "echo": echo(model, &text)})
            } else {
                json!({"id": format!("chatcmpl-{custom_id}"), "object": "chat.completion", "created": 1_763_880_100u64,
                       "model": model, "choices": [{"index": 0, "message": {"role": "assistant", "content": echo(model, &text)},
                       "finish_reason": "stop"}], "usage": {"prompt_tokens": 12, "completion_tokens": 1, "total_tokens": 13}})
            };
            (
                json!({"id": id, "custom_id": custom_id,
                       "response": {"status_code": 200, "request_id": request_id, "body": answer}, "error": null}),
                false,
            )
        }
    }
}

fn openai_batch_json(
    b: &FakeBatch,
    status: &str,
    output: Option<String>,
    errors_file: Option<String>,
    (total, completed, failed): (usize, usize, usize),
    errors: Value,
) -> Value {
    json!({"id": b.id, "object": "batch", "endpoint": b.endpoint, "model": b.model, "errors": errors,
           "input_file_id": b.input_file, "completion_window": "24h", "status": status,
           "output_file_id": output, "error_file_id": errors_file, "created_at": 1_763_880_000u64,
           "in_progress_at": null, "expires_at": 1_763_966_400u64, "finalizing_at": null, "completed_at": null,
           "failed_at": null, "expired_at": null, "cancelling_at": null, "cancelled_at": null,
           "request_counts": {"total": total, "completed": completed, "failed": failed},
           "metadata": {"batchling_tag": b.tag}})
}

/// An Anthropic `result` (§3.3).
fn anthropic_result(custom_id: &str, model: &str, body: &Value) -> Value {
    let text = line_text(ProviderId::Anthropic, body);
    match marker(&text) {
        Some(kind) => json!({"type": "errored", "error": {"type": "error",
            "error": {"type": kind, "message": format!("fake {kind}")}, "request_id": format!("req_{custom_id}")}}),
        None => {
            json!({"type": "succeeded", "message": {"id": format!("msg_{custom_id}"), "type": "message",
            "role": "assistant", "model": model, "content": [{"type": "text", "text": echo(model, &text)}],
            "stop_reason": "end_turn", "stop_sequence": null, "usage": {"input_tokens": 8, "output_tokens": 4}}})
        }
    }
}

fn anthropic_batch_json(
    b: &FakeBatch,
    status: &str,
    [processing, succeeded, errored, canceled, expired]: [usize; 5],
    results_url: Option<String>,
    cancelled: bool,
    archived: bool,
) -> Value {
    let ended = (status == "ended").then_some("2026-11-23T10:41:02.000000Z");
    json!({"id": b.id, "type": "message_batch", "processing_status": status,
           "request_counts": {"processing": processing, "succeeded": succeeded, "errored": errored,
                              "canceled": canceled, "expired": expired},
           "created_at": "2026-11-23T10:00:00.000000Z", "expires_at": "2026-11-24T10:00:00.000000Z",
           "ended_at": ended, "cancel_initiated_at": cancelled.then_some("2026-11-23T10:10:00.000000Z"),
           "archived_at": archived.then_some("2026-12-22T10:00:00.000000Z"), "results_url": results_url})
}

/// A Gemini inlined response (§4.3).
fn gemini_inline(key: &str, model: &str, body: &Value) -> Value {
    let text = line_text(ProviderId::Gemini, body);
    match marker(&text) {
        Some(code) => json!({"metadata": {"key": key},
            "error": {"code": code.parse::<i64>().unwrap_or(2), "message": format!("fake rpc error {code}"), "details": []}}),
        None => json!({"metadata": {"key": key}, "response": {
            "candidates": [{"content": {"role": "model", "parts": [{"text": echo(model, &text)}]}, "finishReason": "STOP", "index": 0}],
            "usageMetadata": {"promptTokenCount": 8, "candidatesTokenCount": 20, "totalTokenCount": 28},
            "modelVersion": model, "responseId": format!("resp-{key}")}}),
    }
}

/// An Operation; the output goes in `metadata.output` (what the SDK reads) and, for every other
/// batch, in the REST `response` too.
fn gemini_operation(
    b: &FakeBatch,
    state: &str,
    done: bool,
    output: Option<Value>,
    error: Option<Value>,
    (total, succeeded, failed): (usize, usize, usize),
) -> Value {
    let pending = if done { 0 } else { total };
    let mut metadata = json!({"@type": "type.googleapis.com/google.ai.generativelanguage.v1beta.GenerateContentBatch",
        "model": format!("models/{}", b.model), "displayName": b.tag, "name": b.id,
        "createTime": "2026-11-23T10:00:00Z", "updateTime": "2026-11-23T10:20:00Z",
        "batchStats": {"requestCount": total.to_string(), "successfulRequestCount": succeeded.to_string(),
                       "failedRequestCount": failed.to_string(), "pendingRequestCount": pending.to_string()},
        "state": state});
    let mut op = json!({"name": b.id});
    if let Some(output) = &output {
        metadata["output"] = output.clone();
    }
    op["metadata"] = metadata;
    if done {
        op["done"] = json!(true);
    }
    let even =
        b.id.trim_start_matches("batches/")
            .parse::<u64>()
            .unwrap_or(0)
            % 2
            == 0;
    if let (Some(output), true) = (output, even) {
        let mut response = output;
        response["@type"] = json!(
            "type.googleapis.com/google.ai.generativelanguage.v1beta.GenerateContentBatchOutput"
        );
        op["response"] = response;
    }
    if let Some(error) = error {
        op["error"] = error;
    }
    op
}

// ---- the harness ---------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
enum Answer {
    Respond {
        status: u16,
        headers: Vec<(String, String)>,
        body: String,
    },
    Fail {
        code: String,
        message: String,
    },
    PassThrough {
        reason: String,
    },
}

impl Answer {
    fn status(&self) -> Option<u16> {
        match self {
            Answer::Respond { status, .. } => Some(*status),
            _ => None,
        }
    }

    fn header(&self, name: &str) -> Option<&str> {
        match self {
            Answer::Respond { headers, .. } => header(headers, name),
            _ => None,
        }
    }

    fn json(&self) -> Value {
        match self {
            Answer::Respond { body, .. } => serde_json::from_str(body).expect("JSON body"),
            other => panic!("not a response: {other:?}"),
        }
    }

    fn fail_code(&self) -> Option<&str> {
        match self {
            Answer::Fail { code, .. } => Some(code),
            _ => None,
        }
    }

    /// A 200 carrying the fake's answer for (model, text).
    fn is_echo(&self, model: &str, text: &str) -> bool {
        match self {
            Answer::Respond {
                status: 200, body, ..
            } => body.contains(&Value::String(echo(model, text)).to_string()),
            _ => false,
        }
    }
}

struct Harness {
    eng: Interceptor,
    now: u64,
    fake: Fake,
    inflight: VecDeque<(CallId, SerializableRequest)>,
    outputs: Vec<Output>,
    answers: BTreeMap<RequestId, Vec<Answer>>,
    answered_after_drained: Vec<RequestId>,
    journal: Vec<String>,
    events: Vec<LifecycleEvent>,
    sends: Vec<SerializableRequest>,
    drained: usize,
    next_request: RequestId,
    submitted: Vec<RequestId>,
    custom_ids: HashMap<RequestId, String>,
}

impl Harness {
    fn new(config: InterceptorConfig) -> Self {
        Harness::with(config, true, Fake::new())
    }

    fn with(config: InterceptorConfig, caching: bool, fake: Fake) -> Self {
        Harness {
            eng: Interceptor::new(config, caching, 0xfeed).expect("valid config"),
            now: 0,
            fake,
            inflight: VecDeque::new(),
            outputs: Vec::new(),
            answers: BTreeMap::new(),
            answered_after_drained: Vec::new(),
            journal: Vec::new(),
            events: Vec::new(),
            sends: Vec::new(),
            drained: 0,
            next_request: 1,
            submitted: Vec::new(),
            custom_ids: HashMap::new(),
        }
    }

    /// "kill -9": the engine and its in-flight calls are gone; the provider and journal remain.
    fn crash(self) -> (Fake, Vec<String>) {
        (self.fake, self.journal)
    }

    /// A new process on the same provider, loading the journal. Time goes on from `now`.
    fn restart(config: InterceptorConfig, fake: Fake, journal: &[String], now: u64) -> Self {
        let mut h = Harness::with(config, true, fake);
        h.now = now;
        h.eng.load_cache(journal.iter().map(String::as_str));
        h.collect();
        h
    }

    fn submit(&mut self, http: HttpRequest) -> RequestId {
        let id = self.next_request;
        self.next_request += 1;
        if let Ok(route) = providers::classify(&http) {
            let custom_id = cache::custom_id(&cache::fingerprint(&route));
            let group = format!(
                "{}|{}|{}|{}|{}",
                route.provider,
                route.base_url,
                route.endpoint,
                route.model,
                route.credential_fingerprint
            );
            self.fake.expected.insert(
                custom_id.clone(),
                Expected {
                    group,
                    endpoint: route.endpoint.clone(),
                    model: route.model.clone(),
                    forward: route.forward_headers.clone(),
                },
            );
            self.custom_ids.insert(id, custom_id);
        }
        self.submitted.push(id);
        self.handle(Input::Submit { request: id, http });
        id
    }

    fn handle(&mut self, input: Input) {
        self.eng.handle(self.now, input);
        self.collect();
    }

    fn collect(&mut self) {
        for out in self.eng.drain_outputs() {
            let answered = match &out {
                Output::Send { call, http } => {
                    self.inflight.push_back((*call, http.clone()));
                    self.sends.push(http.clone());
                    None
                }
                Output::Respond {
                    request,
                    status,
                    headers,
                    body,
                } => Some((
                    *request,
                    Answer::Respond {
                        status: *status,
                        headers: headers.clone(),
                        body: body.clone(),
                    },
                )),
                Output::Fail {
                    request,
                    code,
                    message,
                } => Some((
                    *request,
                    Answer::Fail {
                        code: code.clone(),
                        message: message.clone(),
                    },
                )),
                Output::PassThrough { request, reason } => Some((
                    *request,
                    Answer::PassThrough {
                        reason: reason.clone(),
                    },
                )),
                Output::Persist { line } => {
                    self.journal.push(line.clone());
                    None
                }
                Output::Event { event } => {
                    self.events.push(event.clone());
                    None
                }
                Output::Drained => {
                    self.drained += 1;
                    None
                }
            };
            if let Some((request, answer)) = answered {
                if self.drained > 0 {
                    self.answered_after_drained.push(request);
                }
                self.answers.entry(request).or_default().push(answer);
            }
            self.outputs.push(out);
        }
    }

    fn tick_at(&mut self, t: u64) {
        assert!(t >= self.now, "virtual time never goes back");
        self.now = t;
        self.handle(Input::Tick);
    }

    /// Answer the in-flight call at `index` through the fake.
    fn deliver_at(&mut self, index: usize) -> bool {
        let Some((call, req)) = self.inflight.remove(index) else {
            return false;
        };
        let input = match self.fake.serve(&req) {
            Reply::Http(response) => Input::Response { call, response },
            Reply::Transport => Input::TransportError {
                call,
                message: "connection reset by peer".into(),
            },
        };
        self.handle(input);
        true
    }

    fn deliver_next(&mut self) -> bool {
        self.deliver_at(0)
    }

    fn deliver_all(&mut self) {
        while self.deliver_next() {}
    }

    /// The next call reaches the provider, which acts on it, but the answer never comes back
    /// (the process is about to die).
    fn serve_without_answer(&mut self) -> SerializableRequest {
        let (_, req) = self.inflight.pop_front().expect("a call in flight");
        let _ = self.fake.serve(&req);
        req
    }

    /// Answer calls and fire timers until nothing is left to do (or `until`).
    fn run_until(&mut self, until: u64) {
        for _ in 0..100_000 {
            self.deliver_all();
            match self.eng.next_deadline() {
                Some(d) if d <= until => {
                    let t = self.now.max(d);
                    self.tick_at(t);
                }
                _ => return,
            }
        }
        panic!("the engine did not settle");
    }

    fn run(&mut self) {
        self.run_until(u64::MAX);
    }

    fn close_and_drain(&mut self) {
        self.handle(Input::Close);
        self.run();
        assert_eq!(
            self.drained,
            1,
            "Close must end with exactly one Drained; open: {}",
            self.eng.open_requests()
        );
        self.check_invariants();
    }

    /// Deliver calls one at a time (and fire timers) until `done` holds.
    fn step_until(&mut self, done: impl Fn(&Harness) -> bool) {
        for _ in 0..10_000 {
            if done(self) {
                return;
            }
            if !self.deliver_next() {
                let d = self.eng.next_deadline().expect("something must be pending");
                let t = self.now.max(d);
                self.tick_at(t);
            }
        }
        panic!("condition never reached");
    }

    fn journal_has(&self, record_type: &str) -> bool {
        self.journal
            .iter()
            .any(|l| serde_json::from_str::<Value>(l).is_ok_and(|v| v["type"] == record_type))
    }

    fn only(&self, id: RequestId) -> &Answer {
        let answers = self.answers.get(&id).map(Vec::as_slice).unwrap_or_default();
        assert_eq!(
            answers.len(),
            1,
            "request {id} must be answered exactly once: {answers:?}"
        );
        &answers[0]
    }

    fn sent(&self, step: Step) -> usize {
        self.sends
            .iter()
            .filter(|r| classify_call(r).is_some_and(|(_, s, _)| s == step))
            .count()
    }

    fn sent_steps(&self) -> Vec<Step> {
        self.sends
            .iter()
            .filter_map(|r| classify_call(r).map(|(_, s, _)| s))
            .collect()
    }

    fn retry_delays(&self) -> Vec<(String, u64)> {
        self.events
            .iter()
            .filter_map(|e| match e {
                LifecycleEvent::Retry { step, delay_ms, .. } => Some((step.clone(), *delay_ms)),
                _ => None,
            })
            .collect()
    }

    fn warnings(&self) -> Vec<String> {
        self.events
            .iter()
            .filter_map(|e| match e {
                LifecycleEvent::Warning { message } => Some(message.clone()),
                _ => None,
            })
            .collect()
    }

    /// Every submitted request answered once, nothing answered that was not submitted, the fake
    /// saw nothing wrong, and no key leaked into anything but the provider calls.
    fn check_invariants(&self) {
        for id in &self.submitted {
            self.only(*id);
        }
        for id in self.answers.keys() {
            assert!(
                self.submitted.contains(id),
                "answer for unknown request {id}"
            );
        }
        assert!(
            self.answered_after_drained.is_empty(),
            "answers after Drained: {:?}",
            self.answered_after_drained
        );
        assert!(
            self.fake.violations.is_empty(),
            "fake provider saw: {:#?}",
            self.fake.violations
        );
        self.check_no_secrets();
    }

    fn check_no_secrets(&self) {
        for out in &self.outputs {
            if matches!(out, Output::Send { .. }) {
                continue; // provider calls must carry the caller's credentials
            }
            let text = serde_json::to_string(out).expect("outputs serialize");
            for secret in all_secrets() {
                assert!(!text.contains(secret), "secret {secret} leaked into {text}");
            }
        }
        for line in &self.journal {
            for secret in all_secrets() {
                assert!(
                    !line.contains(secret),
                    "secret {secret} in journal line {line}"
                );
            }
        }
    }
}

// ---- 1. size and window triggers -----------------------------------------------------------

#[test]
fn size_trigger_cuts_exactly_batch_size_lines_at_once() {
    for p in FAKE_PROVIDERS {
        let mut h = Harness::new(config(4));
        let mut ids = Vec::new();
        for i in 0..3 {
            ids.push(h.submit(request(p, 0, 0, &format!("q{i}"))));
        }
        assert!(
            h.sends.is_empty(),
            "{p}: nothing goes out below the batch size"
        );
        assert_eq!(h.eng.next_deadline(), Some(WINDOW));
        ids.push(h.submit(request(p, 0, 0, "q3")));
        let first = if p == ProviderId::OpenAi {
            Step::Upload
        } else {
            Step::Create
        };
        assert_eq!(
            h.sent_steps(),
            vec![first],
            "{p}: the Nth request cuts at once, with no tick"
        );
        // Four more make a second full batch.
        for i in 4..8 {
            ids.push(h.submit(request(p, 0, 0, &format!("q{i}"))));
        }
        h.close_and_drain();
        assert_eq!(h.sent(Step::Create), 2, "{p}");
        assert_eq!(h.fake.batches.len(), 2);
        for b in &h.fake.batches {
            assert_eq!(b.lines.len(), 4, "{p}: each create holds batch_size lines");
        }
        for (i, id) in ids.iter().enumerate() {
            assert!(
                h.only(*id).is_echo(model_of(p, 0), &format!("q{i}")),
                "{p} q{i}: {:?}",
                h.only(*id)
            );
        }
        assert_eq!(
            h.sent(Step::Upload),
            if p == ProviderId::OpenAi { 2 } else { 0 }
        );
    }
}

#[test]
fn window_trigger_cuts_when_the_window_since_the_first_request_has_passed() {
    for p in FAKE_PROVIDERS {
        let mut h = Harness::new(config(10));
        h.now = 100;
        let a = h.submit(request(p, 0, 0, "first"));
        assert_eq!(h.eng.next_deadline(), Some(100 + WINDOW));
        h.now = 700;
        let b = h.submit(request(p, 0, 0, "second"));
        assert_eq!(
            h.eng.next_deadline(),
            Some(100 + WINDOW),
            "{p}: later requests do not move the window"
        );
        h.tick_at(100 + WINDOW - 1);
        assert!(
            h.sends.is_empty(),
            "{p}: not cut before the window has passed"
        );
        h.tick_at(100 + WINDOW);
        assert_eq!(
            h.sends.len(),
            1,
            "{p}: cut exactly when the window has passed"
        );
        // A request after the cut opens a window of its own.
        h.now = 1_500;
        let c = h.submit(request(p, 0, 0, "third"));
        h.deliver_all();
        assert_eq!(h.sent(Step::Create), 1, "{p}");
        let deadline = h.eng.next_deadline().expect("window and poll pending");
        assert!(
            deadline <= 1_500 + WINDOW,
            "{p}: the new window is due by {}",
            1_500 + WINDOW
        );
        h.close_and_drain();
        assert_eq!(
            h.fake
                .batches
                .iter()
                .map(|b| b.lines.len())
                .collect::<Vec<_>>(),
            vec![2, 1],
            "{p}"
        );
        assert!(h.only(a).is_echo(model_of(p, 0), "first"));
        assert!(h.only(b).is_echo(model_of(p, 0), "second"));
        assert!(h.only(c).is_echo(model_of(p, 0), "third"));
    }
}

#[test]
fn flush_cuts_every_queue_at_once() {
    let mut h = Harness::new(config(10));
    let ids: Vec<RequestId> = FAKE_PROVIDERS
        .iter()
        .map(|&p| h.submit(request(p, 0, 0, "now")))
        .collect();
    h.handle(Input::Flush);
    assert_eq!(
        h.sends.len(),
        3,
        "one first call per queue, without waiting for the window"
    );
    h.run();
    for (id, p) in ids.iter().zip(FAKE_PROVIDERS) {
        assert!(h.only(*id).is_echo(model_of(p, 0), "now"));
    }
    h.check_invariants();
}

// ---- 2. grouping ---------------------------------------------------------------------------

#[test]
fn models_endpoints_keys_and_betas_never_share_a_batch() {
    let mut h = Harness::new(config(10));
    let (ka, kb) = (OPENAI_KEYS[0], OPENAI_KEYS[1]);
    let mut expect: Vec<(RequestId, &str, &str)> = Vec::new();
    let mut sub = |h: &mut Harness, req: HttpRequest, model: &'static str, text: &'static str| {
        let id = h.submit(req);
        expect.push((id, model, text));
    };
    sub(
        &mut h,
        openai_chat(ka, "gpt-4o-mini", "o1"),
        "gpt-4o-mini",
        "o1",
    );
    sub(
        &mut h,
        openai_chat(ka, "gpt-4o-mini", "o2"),
        "gpt-4o-mini",
        "o2",
    );
    sub(
        &mut h,
        openai_chat(ka, "gpt-4.1-nano", "o3"),
        "gpt-4.1-nano",
        "o3",
    );
    sub(
        &mut h,
        openai_chat(kb, "gpt-4o-mini", "o4"),
        "gpt-4o-mini",
        "o4",
    );
    let emb = h.submit(openai_embedding(ka, "text-embedding-3-small", "o5"));
    let (ca, cb) = (ANTHROPIC_KEYS[0], ANTHROPIC_KEYS[1]);
    sub(
        &mut h,
        anthropic_msg(ca, "claude-sonnet-4-5", "a1", None),
        "claude-sonnet-4-5",
        "a1",
    );
    sub(
        &mut h,
        anthropic_msg(ca, "claude-sonnet-4-5", "a2", None),
        "claude-sonnet-4-5",
        "a2",
    );
    sub(
        &mut h,
        anthropic_msg(
            ca,
            "claude-sonnet-4-5",
            "a3",
            Some("output-128k-2025-02-19"),
        ),
        "claude-sonnet-4-5",
        "a3",
    );
    sub(
        &mut h,
        anthropic_msg(ca, "claude-sonnet-4-5", "a4", Some("context-1m-2025-08-07")),
        "claude-sonnet-4-5",
        "a4",
    );
    sub(
        &mut h,
        anthropic_msg(cb, "claude-sonnet-4-5", "a5", None),
        "claude-sonnet-4-5",
        "a5",
    );
    sub(
        &mut h,
        anthropic_msg(ca, "claude-3-5-haiku-latest", "a6", None),
        "claude-3-5-haiku-latest",
        "a6",
    );
    let (ga, gb) = (GEMINI_KEYS[0], GEMINI_KEYS[1]);
    sub(
        &mut h,
        gemini_gen(ga, "gemini-2.5-flash", "g1"),
        "gemini-2.5-flash",
        "g1",
    );
    sub(
        &mut h,
        gemini_gen(ga, "gemini-2.5-flash", "g2"),
        "gemini-2.5-flash",
        "g2",
    );
    // `?key=` is the same credential as the header: same group.
    sub(
        &mut h,
        gemini_gen_query_key(ga, "gemini-2.5-flash", "g3"),
        "gemini-2.5-flash",
        "g3",
    );
    sub(
        &mut h,
        gemini_gen(gb, "gemini-2.5-flash", "g4"),
        "gemini-2.5-flash",
        "g4",
    );
    sub(
        &mut h,
        gemini_gen(ga, "gemini-2.5-pro", "g5"),
        "gemini-2.5-pro",
        "g5",
    );
    h.close_and_drain();

    // The fake checked on every call that no batch mixes groups and that every call carries the
    // headers of the callers inside it (check_invariants asserts it saw nothing wrong).
    let mut sizes: BTreeMap<ProviderId, Vec<usize>> = BTreeMap::new();
    for b in &h.fake.batches {
        sizes.entry(b.provider).or_default().push(b.lines.len());
    }
    for v in sizes.values_mut() {
        v.sort_unstable();
    }
    assert_eq!(
        sizes[&ProviderId::OpenAi],
        vec![1, 1, 1, 2],
        "model, key and endpoint split"
    );
    assert_eq!(
        sizes[&ProviderId::Anthropic],
        vec![1, 1, 1, 1, 2],
        "betas, key and model split"
    );
    assert_eq!(
        sizes[&ProviderId::Gemini],
        vec![1, 1, 3],
        "key and model split; ?key= joins the header key"
    );
    for (id, model, text) in expect {
        assert!(h.only(id).is_echo(model, text), "{text}: {:?}", h.only(id));
    }
    assert!(h.only(emb).is_echo("text-embedding-3-small", "o5"));
    assert_eq!(h.only(emb).json()["object"], "list");

    // Each batch's calls carry exactly its callers' credentials, and nobody else's.
    for req in &h.sends {
        let (p, _, _) = classify_call(req).unwrap();
        let creds: Vec<&str> = all_secrets()
            .into_iter()
            .filter(|s| req.headers.iter().any(|(_, v)| v.contains(s)) || req.url.contains(s))
            .collect();
        assert_eq!(creds.len(), 1, "{p} call {} carries {creds:?}", req.url);
        assert!(
            !req.url.contains("key="),
            "the Gemini key travels as a header, never in a batch URL"
        );
    }
    let betas: HashSet<Option<&str>> = h
        .sends
        .iter()
        .filter(|r| {
            classify_call(r).is_some_and(|c| c.0 == ProviderId::Anthropic && c.1 == Step::Create)
        })
        .map(|r| header(&r.headers, "anthropic-beta"))
        .collect();
    assert_eq!(
        betas,
        HashSet::from([
            None,
            Some("output-128k-2025-02-19"),
            Some("context-1m-2025-08-07")
        ])
    );
}

// ---- 3. identical requests -----------------------------------------------------------------

#[test]
fn identical_requests_share_one_line_and_one_answer() {
    for p in FAKE_PROVIDERS {
        let mut h = Harness::new(config(10));
        let a = h.submit(request(p, 0, 0, "same"));
        let b = h.submit(request(p, 0, 0, "same"));
        let c = h.submit(reordered(request(p, 0, 0, "same")));
        let d = h.submit(request(p, 0, 0, "other"));
        h.close_and_drain();
        assert_eq!(h.fake.batches.len(), 1, "{p}");
        assert_eq!(
            h.fake.batches[0].lines.len(),
            2,
            "{p}: identical bodies share one line"
        );
        assert!(h.only(a).is_echo(model_of(p, 0), "same"), "{p}");
        assert_eq!(h.only(a), h.only(b), "{p}");
        assert_eq!(h.only(a), h.only(c), "{p}: key order does not matter");
        assert!(h.only(d).is_echo(model_of(p, 0), "other"), "{p}");
    }
}

#[test]
fn an_identical_request_arriving_while_its_batch_runs_joins_it() {
    for p in FAKE_PROVIDERS {
        let mut h = Harness::new(config(1));
        let a = h.submit(request(p, 0, 0, "same"));
        h.step_until(|h| h.journal_has("submitted"));
        let b = h.submit(request(p, 0, 0, "same"));
        assert!(h.inflight.is_empty(), "{p}: no new call for the joiner");
        h.close_and_drain();
        assert_eq!(h.sent(Step::Create), 1, "{p}");
        assert!(h.only(a).is_echo(model_of(p, 0), "same"));
        assert_eq!(h.only(a), h.only(b));
    }
}

#[test]
fn the_same_body_with_another_key_is_another_request() {
    for p in FAKE_PROVIDERS {
        let mut h = Harness::new(config(10));
        let a = h.submit(request(p, 0, 0, "same"));
        let b = h.submit(request(p, 1, 0, "same"));
        h.close_and_drain();
        assert_eq!(h.fake.batches.len(), 2, "{p}");
        assert!(h.only(a).is_echo(model_of(p, 0), "same"));
        assert!(h.only(b).is_echo(model_of(p, 0), "same"));
    }
}

// ---- 4. result mapping and per-line errors -------------------------------------------------

fn check_mapping(p: ProviderId, cases: &[(&str, u16)], check: impl Fn(&str, &Answer, &str)) {
    let mut h = Harness::new(config(cases.len()));
    h.fake.shuffle_seed = 0xabcdef;
    let ids: Vec<RequestId> = cases
        .iter()
        .map(|(text, _)| h.submit(request(p, 0, 0, text)))
        .collect();
    h.close_and_drain();
    assert_eq!(h.fake.batches.len(), 1);
    let batch = &h.fake.batches[0];
    let line_order: Vec<&String> = batch.lines.iter().map(|(c, _)| c).collect();
    let result_order: Vec<&String> = batch.result_order.iter().collect();
    assert_ne!(
        line_order, result_order,
        "{p}: the fake answers out of order"
    );
    for (id, (text, status)) in ids.iter().zip(cases) {
        let answer = h.only(*id);
        assert_eq!(answer.status(), Some(*status), "{p} {text}: {answer:?}");
        assert_eq!(
            answer.header("content-type"),
            Some("application/json"),
            "{p} {text}"
        );
        if *status == 200 {
            assert!(
                answer.is_echo(model_of(p, 0), text),
                "{p} {text}: {answer:?}"
            );
        }
        check(text, answer, &h.custom_ids[id]);
    }
}

#[test]
fn shuffled_openai_results_map_back_and_error_lines_keep_their_status() {
    check_mapping(
        ProviderId::OpenAi,
        &[
            ("q0", 200),
            ("q1", 200),
            ("q2 #err=400", 400),
            ("q3 #err=429", 429),
            ("q4 #err=timeout", 504),
            ("q5", 200),
            ("q6 #err=500", 500),
        ],
        |text, answer, custom_id| {
            let v = answer.json();
            match marker(text) {
                None => {
                    assert_eq!(v["object"], "chat.completion");
                    assert_eq!(
                        answer.header("x-request-id"),
                        Some(format!("req_{custom_id}").as_str())
                    );
                }
                Some("timeout") => {
                    assert_eq!(v["error"]["code"], "request_timeout");
                    assert_eq!(answer.header("x-batchling-batch-id"), Some("batch_0001"));
                }
                Some(code) => {
                    // The error file line's own envelope, untouched.
                    assert_eq!(v["error"]["code"], format!("fake_{code}"));
                    assert_eq!(v["error"]["type"], "invalid_request_error");
                    assert_eq!(
                        answer.header("x-request-id"),
                        Some(format!("req_{custom_id}").as_str())
                    );
                }
            }
        },
    );
}

#[test]
fn shuffled_anthropic_results_map_back_and_errored_lines_get_the_status_of_their_type() {
    check_mapping(
        ProviderId::Anthropic,
        &[
            ("q0", 200),
            ("q1 #err=invalid_request_error", 400),
            ("q2 #err=rate_limit_error", 429),
            ("q3 #err=overloaded_error", 529),
            ("q4 #err=api_error", 500),
            ("q5 #err=authentication_error", 401),
            ("q6 #err=permission_error", 403),
            ("q7", 200),
        ],
        |text, answer, custom_id| {
            let v = answer.json();
            match marker(text) {
                None => assert_eq!(v["type"], "message"),
                Some(kind) => {
                    assert_eq!(v["type"], "error");
                    assert_eq!(v["error"]["type"], kind);
                    assert_eq!(
                        answer.header("request-id"),
                        Some(format!("req_{custom_id}").as_str())
                    );
                }
            }
        },
    );
}

#[test]
fn shuffled_gemini_results_map_back_and_rpc_codes_become_http_statuses() {
    check_mapping(
        ProviderId::Gemini,
        &[
            ("q0", 200),
            ("q1 #err=3", 400),
            ("q2 #err=8", 429),
            ("q3 #err=14", 503),
            ("q4 #err=4", 504),
            ("q5 #err=16", 401),
            ("q6 #err=5", 404),
            ("q7", 200),
        ],
        |text, answer, _| {
            let v = answer.json();
            let names = HashMap::from([
                ("3", "INVALID_ARGUMENT"),
                ("8", "RESOURCE_EXHAUSTED"),
                ("14", "UNAVAILABLE"),
                ("4", "DEADLINE_EXCEEDED"),
                ("16", "UNAUTHENTICATED"),
                ("5", "NOT_FOUND"),
            ]);
            match marker(text) {
                None => assert_eq!(v["candidates"][0]["content"]["role"], "model"),
                Some(code) => {
                    assert_eq!(v["error"]["status"], names[code]);
                    assert_eq!(v["error"]["code"], answer.status().unwrap());
                }
            }
        },
    );
}

// ---- 5. exactly once, under random traffic -------------------------------------------------

#[derive(Debug, Clone)]
struct Spec {
    provider: usize,
    model: usize,
    key: usize,
    text: usize,
    /// 0: GET (passes through), 1: streaming (passes through), else batchable.
    kind: u8,
}

#[derive(Debug, Clone)]
enum Op {
    Submit(Spec),
    Cancel(usize),
    /// Time passes; with `tick` the host calls in at the new time.
    Advance {
        ms: u64,
        tick: bool,
    },
    /// Answer up to `count` in-flight calls, starting at position `pick` (out of order).
    Deliver {
        count: usize,
        pick: usize,
    },
    Flush,
}

fn spec_request(s: &Spec) -> HttpRequest {
    let p = FAKE_PROVIDERS[s.provider];
    let text = if s.text == 4 {
        match p {
            ProviderId::OpenAi => "t4 #err=400".to_string(),
            ProviderId::Anthropic => "t4 #err=rate_limit_error".to_string(),
            ProviderId::Gemini => "t4 #err=8".to_string(),
            other => unreachable!("this fake speaks OpenAI, Anthropic and Gemini, not {other}"),
        }
    } else {
        format!("t{}", s.text)
    };
    let mut req = request(p, s.key, s.model, &text);
    match (s.kind, p) {
        (0, _) => {
            req.method = "GET".into();
            req.body = String::new();
        }
        (1, ProviderId::Gemini) => {
            req.url = req
                .url
                .replace(":generateContent", ":streamGenerateContent");
        }
        (1, _) => {
            let mut v: Value = serde_json::from_str(&req.body).unwrap();
            v["stream"] = json!(true);
            req.body = v.to_string();
        }
        _ => {}
    }
    req
}

fn spec_text(s: &Spec) -> (ProviderId, &'static str, String) {
    let p = FAKE_PROVIDERS[s.provider];
    let req = spec_request(s);
    let text = match p {
        ProviderId::OpenAi | ProviderId::Anthropic => {
            let v: Value = serde_json::from_str(&req.body).unwrap_or(Value::Null);
            v["messages"][0]["content"]
                .as_str()
                .unwrap_or("")
                .to_string()
        }
        ProviderId::Gemini => {
            let v: Value = serde_json::from_str(&req.body).unwrap_or(Value::Null);
            v["contents"][0]["parts"][0]["text"]
                .as_str()
                .unwrap_or("")
                .to_string()
        }
        other => unreachable!("this fake speaks OpenAI, Anthropic and Gemini, not {other}"),
    };
    (p, model_of(p, s.model), text)
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (0..3usize, 0..2usize, 0..2usize, 0..5usize, 0..12u8).prop_map(|(provider, model, key, text, kind)| {
            Op::Submit(Spec { provider, model, key, text, kind })
        }),
        2 => any::<usize>().prop_map(Op::Cancel),
        3 => (0..3_000u64, any::<bool>()).prop_map(|(ms, tick)| Op::Advance { ms, tick }),
        4 => (1..4usize, any::<usize>()).prop_map(|(count, pick)| Op::Deliver { count, pick }),
        1 => Just(Op::Flush),
    ]
}

#[derive(Debug, Clone)]
struct Traffic {
    ops: Vec<Op>,
    fates: Vec<u8>,
    batch_size: usize,
    call_attempts: u32,
    backoff_ms: u64,
    polls_before_done: u32,
    fault_seed: u64,
    fault_budget: u32,
    shuffle_seed: u64,
    max_concurrent_batches: usize,
    cost_limit_usd: Option<f64>,
}

fn traffic() -> impl Strategy<Value = Traffic> {
    (
        prop::collection::vec(op_strategy(), 1..60),
        prop::collection::vec(0..4u8, 0..8),
        1..5usize,
        2..6u32,
        50..1_500u64,
        0..3u32,
        any::<u64>(),
        0..10u32,
        any::<u64>(),
        (
            prop_oneof![3 => Just(usize::MAX), 1 => 1..3usize],
            prop_oneof![4 => Just(None), 1 => (0.0..0.003f64).prop_map(Some)],
        ),
    )
        .prop_map(
            |(
                ops,
                fates,
                batch_size,
                call_attempts,
                backoff_ms,
                polls_before_done,
                fault_seed,
                fault_budget,
                shuffle_seed,
                (max_concurrent_batches, cost_limit_usd),
            )| {
                Traffic {
                    ops,
                    fates,
                    batch_size,
                    call_attempts,
                    backoff_ms,
                    polls_before_done,
                    fault_seed,
                    fault_budget,
                    shuffle_seed,
                    max_concurrent_batches,
                    cost_limit_usd,
                }
            },
        )
}

fn traffic_config(t: &Traffic) -> InterceptorConfig {
    let mut c = config(t.batch_size);
    c.poll_interval_ms = 2_000;
    c.call_attempts = t.call_attempts;
    c.backoff_ms = t.backoff_ms;
    c.max_backoff_ms = 5_000;
    c.jitter_seed = t.fault_seed ^ 1;
    c.max_concurrent_batches = t.max_concurrent_batches;
    c.cost_limit_usd = t.cost_limit_usd;
    c
}

/// A harness on a fake with the traffic's fates and faults, after its operations (no Close yet).
/// Returns the submitted requests in order.
fn start_traffic(t: &Traffic) -> (Harness, Vec<(RequestId, Spec)>) {
    let mut fake = Fake::new();
    fake.fates = t
        .fates
        .iter()
        .map(|f| [Fate::Complete, Fate::Expire, Fate::Cancel, Fate::Fail][*f as usize])
        .collect();
    fake.polls_before_done = t.polls_before_done;
    fake.shuffle_seed = t.shuffle_seed;
    fake.random = Some(RandomFaults {
        state: t.fault_seed,
        budget: t.fault_budget,
        percent: 30,
    });
    let mut h = Harness::with(traffic_config(t), true, fake);
    let mut specs = Vec::new();
    for op in &t.ops {
        match op {
            Op::Submit(s) => {
                let id = h.submit(spec_request(s));
                specs.push((id, s.clone()));
            }
            Op::Cancel(n) => {
                if !h.submitted.is_empty() {
                    let id = h.submitted[n % h.submitted.len()];
                    h.handle(Input::Cancel { request: id });
                }
            }
            Op::Advance { ms, tick } => {
                h.now += ms;
                if *tick {
                    h.handle(Input::Tick);
                }
            }
            Op::Deliver { count, pick } => {
                for _ in 0..*count {
                    if h.inflight.is_empty() {
                        break;
                    }
                    let i = pick % h.inflight.len();
                    h.deliver_at(i);
                }
            }
            Op::Flush => h.handle(Input::Flush),
        }
    }
    (h, specs)
}

/// One host step: answer the oldest call, else fire the next timer. False when idle.
fn host_step(h: &mut Harness) -> bool {
    if h.deliver_next() {
        return true;
    }
    match h.eng.next_deadline() {
        Some(d) => {
            let at = h.now.max(d);
            h.tick_at(at);
            true
        }
        None => false,
    }
}

/// Close, run to `Drained`, and check exactly-once and the fake's findings.
fn close_and_check(h: &mut Harness, specs: &[(RequestId, Spec)]) -> Result<(), TestCaseError> {
    h.handle(Input::Close);
    for _ in 0..20_000 {
        if (h.drained > 0 && h.inflight.is_empty()) || !host_step(h) {
            break;
        }
    }
    prop_assert_eq!(
        h.drained,
        1,
        "no Drained; {} requests open",
        h.eng.open_requests()
    );
    let specs: HashMap<RequestId, &Spec> = specs.iter().map(|(id, s)| (*id, s)).collect();
    for id in &h.submitted {
        let answers = h.answers.get(id).cloned().unwrap_or_default();
        prop_assert_eq!(answers.len(), 1, "request {} answered {:?}", id, answers);
        let s = specs[id];
        if s.kind < 2 {
            prop_assert!(
                matches!(answers[0], Answer::PassThrough { .. }),
                "{:?}",
                answers[0]
            );
        } else if answers[0].status() == Some(200) {
            let (_, model, text) = spec_text(s);
            prop_assert!(
                answers[0].is_echo(model, &text),
                "request {} got another's answer: {:?}",
                id,
                answers[0]
            );
        }
    }
    for id in h.answers.keys() {
        prop_assert!(h.submitted.contains(id));
    }
    prop_assert!(h.answered_after_drained.is_empty());
    prop_assert!(h.fake.violations.is_empty(), "{:#?}", h.fake.violations);
    h.check_no_secrets();
    Ok(())
}

fn run_traffic(t: &Traffic) -> Result<(), TestCaseError> {
    let (mut h, specs) = start_traffic(t);
    close_and_check(&mut h, &specs)
}

/// Run 1 goes on for `crash_after` host steps, then dies (its last call possibly reaching the
/// provider without an answer); run 2 loads its journal and submits the same requests again.
fn run_crash(t: &Traffic, crash_after: usize, last_call_lands: bool) -> Result<(), TestCaseError> {
    let (mut h1, specs) = start_traffic(t);
    for _ in 0..crash_after {
        if !host_step(&mut h1) {
            break;
        }
    }
    if last_call_lands && !h1.inflight.is_empty() {
        h1.serve_without_answer();
    }
    let now = h1.now;
    let (fake, journal) = h1.crash();
    let mut h2 = Harness::restart(traffic_config(t), fake, &journal, now + 1);
    let specs2: Vec<(RequestId, Spec)> = specs
        .iter()
        .map(|(_, s)| (h2.submit(spec_request(s)), s.clone()))
        .collect();
    close_and_check(&mut h2, &specs2)?;
    // Replaying the journal never submits a request to the provider twice, unless the batch it
    // was in ended without running it, or ran it into a transient error (429 / 5xx: not cached).
    let mut batches_of: HashMap<&str, Vec<&FakeBatch>> = HashMap::new();
    let mut transient: HashSet<&str> = HashSet::new();
    for b in &h2.fake.batches {
        for (custom_id, body) in &b.lines {
            batches_of.entry(custom_id).or_default().push(b);
            if transient_line(b.provider, body) {
                transient.insert(custom_id);
            }
        }
    }
    for (custom_id, batches) in batches_of {
        for later in 1..batches.len() {
            let reason = batches[..later].iter().any(|b| {
                b.terminal.is_some()
                    && (!b.answered.contains(custom_id) || transient.contains(custom_id))
            });
            prop_assert!(
                reason,
                "{} was submitted in {} while {} still held it",
                custom_id,
                batches[later].id,
                batches[later - 1].id
            );
        }
    }
    Ok(())
}

proptest! {
    // 256 cases unless PROPTEST_CASES says otherwise. No regressions file: the minimal failing
    // input is printed on failure.
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn every_request_is_answered_exactly_once_under_random_traffic_faults_and_fates(t in traffic()) {
        run_traffic(&t)?;
    }

    #[test]
    fn a_crash_at_any_point_and_a_replay_answer_everyone_and_never_submit_twice(
        t in traffic(),
        crash_after in 0..80usize,
        last_call_lands in any::<bool>(),
    ) {
        run_crash(&t, crash_after, last_call_lands)?;
    }
}

// ---- 6. retries ----------------------------------------------------------------------------

#[test]
fn a_429_with_retry_after_delays_the_retry_by_that_many_seconds() {
    for p in FAKE_PROVIDERS {
        let mut h = Harness::new(config(1));
        let first = if p == ProviderId::OpenAi {
            Step::Upload
        } else {
            Step::Create
        };
        h.fake.fault(Some(p), first, Fault::Status(429, Some("3")));
        h.now = 10_000;
        let id = h.submit(request(p, 0, 0, "slow down"));
        assert!(h.deliver_next());
        assert_eq!(
            h.eng.next_deadline(),
            Some(13_000),
            "{p}: Retry-After: 3 → 3000 ms"
        );
        assert_eq!(
            h.retry_delays(),
            vec![(format!("{first:?}").to_lowercase(), 3_000)]
        );
        h.tick_at(12_999);
        assert!(h.inflight.is_empty(), "{p}: no retry before Retry-After");
        h.tick_at(13_000);
        assert_eq!(h.inflight.len(), 1, "{p}: retried at 13000");
        h.close_and_drain();
        assert!(h.only(id).is_echo(model_of(p, 0), "slow down"));
        assert_eq!(h.sent(first), 2);
    }
}

#[test]
fn server_errors_back_off_exponentially_with_jitter_and_a_cap() {
    for (max_backoff, failures) in [(60_000u64, 5usize), (2_500, 5)] {
        let mut cfg = config(1);
        cfg.call_attempts = 8;
        cfg.max_backoff_ms = max_backoff;
        let mut h = Harness::new(cfg);
        for _ in 0..failures {
            h.fake.fault(
                Some(ProviderId::Anthropic),
                Step::Poll,
                Fault::Status(500, None),
            );
        }
        let id = h.submit(request(ProviderId::Anthropic, 0, 0, "again"));
        h.deliver_all(); // create
        let mut delays = Vec::new();
        for n in 0..failures {
            let due = h.eng.next_deadline().unwrap();
            h.tick_at(due);
            assert_eq!(h.inflight.len(), 1);
            let before = h.now;
            h.deliver_all();
            let next = h.eng.next_deadline().unwrap();
            let delay = next - before;
            let step = (1_000u64 << n).min(max_backoff);
            assert!(
                (step / 2..=step).contains(&delay),
                "failure {}: delay {delay} outside [{}, {step}]",
                n + 1,
                step / 2
            );
            delays.push(delay);
        }
        if max_backoff == 60_000 {
            // Uncapped, each range starts where the previous one ends.
            assert!(
                delays.windows(2).all(|w| w[0] <= w[1]),
                "delays grow: {delays:?}"
            );
            assert!(
                delays[4] >= 8_000,
                "the fifth wait is at least 8 s: {delays:?}"
            );
        }
        let logged: Vec<u64> = h.retry_delays().into_iter().map(|(_, d)| d).collect();
        assert_eq!(logged, delays, "Retry events report the waits");
        h.close_and_drain();
        assert!(h
            .only(id)
            .is_echo(model_of(ProviderId::Anthropic, 0), "again"));
    }
}

#[test]
fn callers_fail_with_provider_unavailable_after_call_attempts_failures() {
    for (p, step) in [
        (ProviderId::OpenAi, Step::Poll),
        (ProviderId::Gemini, Step::Create),
        (ProviderId::Anthropic, Step::Download),
        (ProviderId::OpenAi, Step::Upload),
    ] {
        let mut cfg = config(10);
        cfg.call_attempts = 3;
        let mut h = Harness::new(cfg);
        for _ in 0..10 {
            h.fake.fault(Some(p), step, Fault::Status(503, None));
        }
        let a = h.submit(request(p, 0, 0, "x"));
        let b = h.submit(request(p, 0, 0, "x"));
        let c = h.submit(request(p, 0, 0, "y"));
        h.close_and_drain();
        assert_eq!(h.sent(step), 3, "{p} {step:?}: exactly call_attempts tries");
        for id in [a, b, c] {
            assert_eq!(
                h.only(id).fail_code(),
                Some("ERR_BATCHLING_PROVIDER_UNAVAILABLE"),
                "{p} {step:?}"
            );
        }
    }
}

#[test]
fn transport_errors_are_retried_like_server_errors() {
    for p in FAKE_PROVIDERS {
        let mut h = Harness::new(config(1));
        h.fake.fault(Some(p), Step::Poll, Fault::Transport);
        h.fake.fault(Some(p), Step::Poll, Fault::Transport);
        let id = h.submit(request(p, 0, 0, "flaky"));
        h.close_and_drain();
        assert!(h.only(id).is_echo(model_of(p, 0), "flaky"), "{p}");
        assert_eq!(h.sent(Step::Create), 1);
    }
}

#[test]
fn a_401_on_create_answers_every_caller_with_that_401_and_is_not_retried() {
    for p in FAKE_PROVIDERS {
        let mut h = Harness::new(config(10));
        h.fake
            .fault(Some(p), Step::Create, Fault::Status(401, None));
        let a = h.submit(request(p, 0, 0, "x"));
        let b = h.submit(request(p, 0, 0, "x"));
        let c = h.submit(request(p, 0, 0, "y"));
        h.close_and_drain();
        assert_eq!(h.sent(Step::Create), 1, "{p}: a 401 is not retried");
        let expected = error_response(p, 401, None);
        for id in [a, b, c] {
            let answer = h.only(id);
            assert_eq!(answer.status(), Some(401), "{p}");
            assert_eq!(
                answer.json(),
                serde_json::from_str::<Value>(&expected.body).unwrap(),
                "{p}"
            );
        }
        assert!(
            !h.journal_has("result"),
            "{p}: a refused batch call is not a cached answer"
        );
    }
}

// ---- 7. ambiguous creates ------------------------------------------------------------------

#[test]
fn a_create_whose_answer_was_lost_is_found_by_tag_and_never_created_again() {
    for p in [ProviderId::OpenAi, ProviderId::Gemini] {
        let mut h = Harness::new(config(3));
        h.fake.fault(Some(p), Step::Create, Fault::LostAnswer);
        let ids: Vec<RequestId> = (0..3)
            .map(|i| h.submit(request(p, 0, 0, &format!("q{i}"))))
            .collect();
        h.close_and_drain();
        assert_eq!(h.fake.served(Step::Create), 1, "{p}: no second create");
        assert_eq!(h.fake.batches.len(), 1);
        let steps = h.sent_steps();
        let find = steps
            .iter()
            .position(|s| *s == Step::Find)
            .expect("a find after the lost create");
        let create = steps.iter().position(|s| *s == Step::Create).unwrap();
        assert!(create < find, "{p}: {steps:?}");
        assert_eq!(
            h.retry_delays().first().map(|(s, _)| s.as_str()),
            Some("find")
        );
        for (i, id) in ids.iter().enumerate() {
            assert!(h.only(*id).is_echo(model_of(p, 0), &format!("q{i}")), "{p}");
        }
    }
}

#[test]
fn a_create_that_never_reached_the_provider_is_created_exactly_once_more() {
    for p in [ProviderId::OpenAi, ProviderId::Gemini] {
        let mut h = Harness::new(config(3));
        h.fake.fault(Some(p), Step::Create, Fault::Transport);
        let ids: Vec<RequestId> = (0..3)
            .map(|i| h.submit(request(p, 0, 0, &format!("q{i}"))))
            .collect();
        h.close_and_drain();
        let steps = h.sent_steps();
        let creates: Vec<usize> = steps
            .iter()
            .enumerate()
            .filter(|(_, s)| **s == Step::Create)
            .map(|(i, _)| i)
            .collect();
        assert_eq!(creates.len(), 2, "{p}: exactly one new create: {steps:?}");
        let find = steps.iter().position(|s| *s == Step::Find).expect("a find");
        assert!(
            creates[0] < find && find < creates[1],
            "{p}: look before creating again: {steps:?}"
        );
        assert_eq!(h.fake.batches.len(), 1, "{p}: one batch at the provider");
        assert_eq!(h.fake.batches[0].lines.len(), 3);
        for (i, id) in ids.iter().enumerate() {
            assert!(h.only(*id).is_echo(model_of(p, 0), &format!("q{i}")), "{p}");
        }
    }
}

#[test]
fn an_anthropic_create_whose_answer_was_lost_fails_ambiguous_and_is_not_created_again() {
    for fault in [Fault::LostAnswer, Fault::Transport] {
        let mut h = Harness::new(config(2));
        h.fake
            .fault(Some(ProviderId::Anthropic), Step::Create, fault.clone());
        let a = h.submit(request(ProviderId::Anthropic, 0, 0, "a"));
        let b = h.submit(request(ProviderId::Anthropic, 0, 0, "b"));
        h.close_and_drain();
        assert_eq!(h.sent(Step::Create), 1, "{fault:?}: never created twice");
        assert_eq!(
            h.sent(Step::Find),
            0,
            "Anthropic batches carry no tag to find"
        );
        for id in [a, b] {
            assert_eq!(
                h.only(id).fail_code(),
                Some("ERR_BATCHLING_AMBIGUOUS_CREATE"),
                "{fault:?}"
            );
        }
    }
}

// ---- 8. crash and replay -------------------------------------------------------------------

/// Texts of the crash scenarios; one is a per-line error so cached errors are covered too.
fn crash_texts(p: ProviderId) -> Vec<String> {
    let err = match p {
        ProviderId::OpenAi => "c2 #err=400",
        ProviderId::Anthropic => "c2 #err=invalid_request_error",
        ProviderId::Gemini => "c2 #err=3",
        other => unreachable!("this fake speaks OpenAI, Anthropic and Gemini, not {other}"),
    };
    vec!["c0".into(), "c1".into(), err.into()]
}

/// What callers get from a run without any crash: (status, body) per text.
fn baseline(p: ProviderId) -> Vec<(u16, String)> {
    let mut h = Harness::new(config(3));
    let ids: Vec<RequestId> = crash_texts(p)
        .iter()
        .map(|t| h.submit(request(p, 0, 0, t)))
        .collect();
    h.close_and_drain();
    ids.iter().map(|id| status_body(h.only(*id))).collect()
}

fn status_body(a: &Answer) -> (u16, String) {
    match a {
        Answer::Respond { status, body, .. } => (*status, body.clone()),
        other => panic!("expected a response, got {other:?}"),
    }
}

fn resubmit(h: &mut Harness, p: ProviderId) -> Vec<RequestId> {
    crash_texts(p)
        .iter()
        .map(|t| h.submit(request(p, 0, 0, t)))
        .collect()
}

#[test]
fn after_a_crash_past_submit_a_rerun_polls_the_same_batch_without_creating() {
    for p in FAKE_PROVIDERS {
        let expected = baseline(p);
        let mut h1 = Harness::new(config(3));
        resubmit(&mut h1, p);
        h1.step_until(|h| h.journal_has("submitted"));
        let now = h1.now;
        let (fake, journal) = h1.crash();
        assert_eq!(fake.batches.len(), 1);
        let batch_id = fake.batches[0].id.clone();

        let mut h2 = Harness::restart(config(3), fake, &journal, now + 60_000);
        let ids = resubmit(&mut h2, p);
        h2.close_and_drain();
        assert_eq!(h2.sent(Step::Create), 0, "{p}: no new batch");
        assert_eq!(h2.sent(Step::Upload), 0, "{p}: no new upload");
        assert!(h2.sent(Step::Poll) >= 1, "{p}: it polls the batch it had");
        assert_eq!(h2.fake.batches.len(), 1);
        let polled: HashSet<String> = h2
            .sends
            .iter()
            .filter_map(classify_call)
            .filter(|c| c.1 == Step::Poll)
            .map(|c| c.2)
            .collect();
        assert_eq!(polled, HashSet::from([batch_id.clone()]), "{p}");
        let got: Vec<(u16, String)> = ids.iter().map(|id| status_body(h2.only(*id))).collect();
        assert_eq!(got, expected, "{p}: same answers as without the crash");
        let resumed: Vec<Option<String>> = h2
            .events
            .iter()
            .filter_map(|e| match e {
                LifecycleEvent::CacheHit { resumed_batch, .. } => Some(resumed_batch.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(resumed, vec![Some(batch_id); 3], "{p}");
    }
}

#[test]
fn after_a_crash_between_intent_and_create_answer_the_batch_is_found_by_tag() {
    for p in [ProviderId::OpenAi, ProviderId::Gemini] {
        let expected = baseline(p);
        let mut h1 = Harness::new(config(3));
        resubmit(&mut h1, p);
        if p == ProviderId::OpenAi {
            assert!(h1.deliver_next(), "upload");
        }
        assert!(h1.journal_has("intent"));
        let create = h1.serve_without_answer();
        assert_eq!(classify_call(&create).unwrap().1, Step::Create);
        assert!(!h1.journal_has("submitted"));
        let now = h1.now;
        let (fake, journal) = h1.crash();
        assert_eq!(fake.batches.len(), 1, "the provider did create it");

        let mut h2 = Harness::restart(config(3), fake, &journal, now + 1_000);
        let ids = resubmit(&mut h2, p);
        h2.close_and_drain();
        assert_eq!(h2.sent(Step::Create), 0, "{p}: found, not created again");
        assert_eq!(h2.sent(Step::Upload), 0, "{p}");
        assert!(h2.sent(Step::Find) >= 1, "{p}: looked up by tag");
        assert_eq!(h2.fake.batches.len(), 1);
        let got: Vec<(u16, String)> = ids.iter().map(|id| status_body(h2.only(*id))).collect();
        assert_eq!(got, expected, "{p}");
    }
}

#[test]
fn after_a_crash_before_the_create_reached_the_provider_it_is_created_exactly_once() {
    for p in [ProviderId::OpenAi, ProviderId::Gemini] {
        let expected = baseline(p);
        let mut h1 = Harness::new(config(3));
        resubmit(&mut h1, p);
        if p == ProviderId::OpenAi {
            assert!(h1.deliver_next(), "upload");
        }
        assert_eq!(
            h1.inflight.len(),
            1,
            "the create is in flight when the process dies"
        );
        let now = h1.now;
        let (fake, journal) = h1.crash();
        assert!(fake.batches.is_empty());

        let mut h2 = Harness::restart(config(3), fake, &journal, now + 1_000);
        let ids = resubmit(&mut h2, p);
        h2.close_and_drain();
        assert_eq!(h2.sent(Step::Find), 1, "{p}: looks first");
        assert_eq!(h2.sent(Step::Create), 1, "{p}: then creates once");
        assert_eq!(h2.fake.batches.len(), 1);
        let got: Vec<(u16, String)> = ids.iter().map(|id| status_body(h2.only(*id))).collect();
        assert_eq!(got, expected, "{p}");
    }
}

#[test]
fn after_a_crash_between_intent_and_create_answer_anthropic_callers_fail_ambiguous() {
    let p = ProviderId::Anthropic;
    let mut h1 = Harness::new(config(3));
    resubmit(&mut h1, p);
    h1.serve_without_answer();
    let (fake, journal) = h1.crash();
    let mut h2 = Harness::restart(config(3), fake, &journal, 5_000);
    let ids = resubmit(&mut h2, p);
    h2.close_and_drain();
    assert_eq!(h2.sent(Step::Create), 0, "never a second create");
    assert_eq!(h2.fake.batches.len(), 1);
    for id in ids {
        assert_eq!(
            h2.only(id).fail_code(),
            Some("ERR_BATCHLING_AMBIGUOUS_CREATE")
        );
    }
}

#[test]
fn a_finished_run_answers_a_repeat_run_with_zero_provider_calls() {
    let mut h1 = Harness::new(config(3));
    let mut reqs = Vec::new();
    for p in FAKE_PROVIDERS {
        for t in crash_texts(p) {
            reqs.push(request(p, 0, 0, &t));
        }
    }
    reqs.push(reqs[0].clone()); // a duplicate
    let first: Vec<RequestId> = reqs.iter().map(|r| h1.submit(r.clone())).collect();
    h1.close_and_drain();
    let h1_answers: Vec<(u16, String)> = first.iter().map(|id| status_body(h1.only(*id))).collect();
    let (fake, journal) = h1.crash();

    let mut h2 = Harness::restart(config(3), fake, &journal, 100_000);
    let ids: Vec<RequestId> = reqs.iter().map(|r| h2.submit(r.clone())).collect();
    assert_eq!(h2.eng.open_requests(), 0, "answered on submit");
    h2.close_and_drain();
    assert!(
        h2.sends.is_empty(),
        "zero provider calls: {:?}",
        h2.sent_steps()
    );
    let got: Vec<(u16, String)> = ids.iter().map(|id| status_body(h2.only(*id))).collect();
    assert_eq!(got, h1_answers);
    let hits = h2
        .events
        .iter()
        .filter(|e| {
            matches!(
                e,
                LifecycleEvent::CacheHit {
                    resumed_batch: None,
                    ..
                }
            )
        })
        .count();
    assert_eq!(
        hits,
        reqs.len(),
        "every request, the duplicate too, is a cache hit"
    );
    assert_eq!(
        h2.eng.report().iter().map(|r| r.cache_hits).sum::<u64>(),
        hits as u64
    );
}

#[test]
fn a_torn_journal_line_is_a_warning_and_the_other_records_still_work() {
    let p = ProviderId::OpenAi;
    let expected = baseline(p);
    let mut h1 = Harness::new(config(3));
    resubmit(&mut h1, p);
    h1.close_and_drain();
    let (fake, mut journal) = h1.crash();
    let kinds: Vec<String> = journal
        .iter()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["type"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(kinds, ["intent", "submitted", "result", "result", "result"]);
    // The process died while appending the last result.
    let last = journal.pop().unwrap();
    journal.push(last[..last.len() / 2].to_string());
    let torn_line = journal.len();

    let mut h2 = Harness::restart(config(3), fake, &journal, 100_000);
    let warnings = h2.warnings();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains(&format!("line {torn_line}")),
        "{}",
        warnings[0]
    );
    let ids = resubmit(&mut h2, p);
    h2.close_and_drain();
    assert_eq!(h2.sent(Step::Create), 0, "the submitted record still holds");
    assert_eq!(h2.sent(Step::Upload), 0);
    let got: Vec<(u16, String)> = ids.iter().map(|id| status_body(h2.only(*id))).collect();
    assert_eq!(got, expected);
    let resumed = h2
        .events
        .iter()
        .filter(|e| {
            matches!(
                e,
                LifecycleEvent::CacheHit {
                    resumed_batch: Some(_),
                    ..
                }
            )
        })
        .count();
    assert_eq!(
        resumed, 1,
        "only the request whose result line was torn polls again"
    );
}

// ---- 9. ended batches ----------------------------------------------------------------------

#[test]
fn expired_cancelled_and_failed_batches_answer_with_the_ended_response() {
    for p in FAKE_PROVIDERS {
        for fate in [Fate::Expire, Fate::Cancel, Fate::Fail] {
            let kind = fate.end_kind().unwrap();
            let mut h = Harness::new(config(4));
            h.fake.fates.push_back(fate);
            let ids: Vec<RequestId> = (0..4)
                .map(|i| h.submit(request(p, 0, 0, &format!("e{i}"))))
                .collect();
            h.close_and_drain();
            let batch = &h.fake.batches[0];
            let mut affected = 0;
            for (i, id) in ids.iter().enumerate() {
                let answer = h.only(*id);
                if batch.answered.contains(&h.custom_ids[id]) {
                    assert!(
                        answer.is_echo(model_of(p, 0), &format!("e{i}")),
                        "{p} {fate:?}: {answer:?}"
                    );
                    continue;
                }
                affected += 1;
                assert_eq!(
                    answer.status(),
                    Some(kind.http_status()),
                    "{p} {fate:?}: {answer:?}"
                );
                assert_eq!(
                    answer.header("x-batchling-batch-id"),
                    Some(batch.id.as_str()),
                    "{p} {fate:?}"
                );
                assert_eq!(
                    answer.header("x-should-retry"),
                    Some("false"),
                    "{p} {fate:?}"
                );
                let message = answer.json()["error"]["message"]
                    .as_str()
                    .unwrap_or("")
                    .to_string();
                assert!(
                    message.contains(&batch.id) && message.contains(kind.as_str()),
                    "{p} {fate:?}: the message names the batch and its state: {message}"
                );
            }
            assert!(affected >= 2, "{p} {fate:?}: some callers were affected");
            let finished = h.events.iter().any(|e| {
                matches!(e, LifecycleEvent::BatchFinished { batch_id, .. } if *batch_id == batch.id)
            });
            assert!(finished, "{p} {fate:?}");
        }
    }
}

// ---- 10. dry run ---------------------------------------------------------------------------

#[test]
fn dry_run_sends_nothing_answers_200_and_reports_requests_batches_and_costs() {
    let mut cfg = config(2);
    cfg.dry_run = true;
    let mut h = Harness::new(cfg);
    let reqs = [
        openai_chat(OPENAI_KEYS[0], "gpt-4o-mini", "d1"),
        openai_chat(OPENAI_KEYS[0], "gpt-4o-mini", "d2"),
        openai_chat(OPENAI_KEYS[0], "gpt-4o-mini", "d3"),
        openai_chat(OPENAI_KEYS[0], "gpt-4o-mini", "d1"), // a duplicate
        openai_chat(OPENAI_KEYS[0], "my-finetune-xyz", "d4"),
        anthropic_msg(ANTHROPIC_KEYS[0], "claude-sonnet-4-5", "d5", None),
        anthropic_msg(ANTHROPIC_KEYS[0], "claude-sonnet-4-5", "d6", None),
        gemini_gen(GEMINI_KEYS[0], "gemini-2.5-flash", "d7"),
    ];
    let ids: Vec<RequestId> = reqs.iter().map(|r| h.submit(r.clone())).collect();
    h.close_and_drain();
    assert!(h.sends.is_empty(), "a dry run sends nothing");
    assert!(h.journal.is_empty(), "and caches nothing");
    for id in &ids {
        let answer = h.only(*id);
        assert_eq!(answer.status(), Some(200));
        assert_eq!(answer.header("x-batchling-dry-run"), Some("1"));
        answer.json();
    }
    let report = h.eng.report();
    let row = |p: ProviderId, model: &str| {
        report
            .iter()
            .find(|r| r.provider == p && r.model == model)
            .unwrap_or_else(|| panic!("no row for {p} {model}: {report:?}"))
    };
    let expected_cost = |indices: &[usize]| {
        let mut sync = 0.0;
        let mut batch = 0.0;
        for &i in indices {
            let route = providers::classify(&reqs[i]).unwrap();
            let e = pricing::estimate(route.provider, &route.model, &route.body);
            sync += e.sync_usd.unwrap();
            batch += e.batch_usd.unwrap();
        }
        (sync, batch)
    };
    let close = |a: Option<f64>, b: f64| a.is_some_and(|a| (a - b).abs() < 1e-12);

    let mini = row(ProviderId::OpenAi, "gpt-4o-mini");
    assert_eq!(
        (mini.requests, mini.batches),
        (4, 2),
        "3 distinct requests in batches of 2"
    );
    assert_eq!(mini.endpoint, "/v1/chat/completions");
    let (sync, batch) = expected_cost(&[0, 1, 2, 3]);
    assert!(close(mini.estimated_sync_usd, sync), "{mini:?}");
    assert!(close(mini.estimated_batch_usd, batch), "{mini:?}");
    assert!(batch < sync);

    let unknown = row(ProviderId::OpenAi, "my-finetune-xyz");
    assert_eq!((unknown.requests, unknown.batches), (1, 1));
    assert_eq!(unknown.estimated_sync_usd, None);
    assert_eq!(unknown.estimated_batch_usd, None);
    assert_eq!(unknown.price_note, "unknown price");

    let claude = row(ProviderId::Anthropic, "claude-sonnet-4-5");
    assert_eq!((claude.requests, claude.batches), (2, 1));
    let (sync, batch) = expected_cost(&[5, 6]);
    assert!(
        close(claude.estimated_sync_usd, sync) && close(claude.estimated_batch_usd, batch),
        "{claude:?}"
    );

    let gemini = row(ProviderId::Gemini, "gemini-2.5-flash");
    assert_eq!((gemini.requests, gemini.batches), (1, 1));
    assert!(gemini.estimated_sync_usd.is_some());
    assert_eq!(report.len(), 4);
}

// ---- 11. secrets ---------------------------------------------------------------------------

#[test]
fn no_key_reaches_a_journal_line_an_event_or_a_caller_error() {
    let mut h = Harness::new(config(2));
    h.fake.fault(
        Some(ProviderId::OpenAi),
        Step::Upload,
        Fault::Status(429, Some("1")),
    );
    h.fake.fault(
        Some(ProviderId::Gemini),
        Step::Poll,
        Fault::Status(500, None),
    );
    h.fake.fault(
        Some(ProviderId::Anthropic),
        Step::Create,
        Fault::Status(529, None),
    );
    h.fake
        .fault(Some(ProviderId::OpenAi), Step::Create, Fault::LostAnswer);
    h.fake.fates.extend([Fate::Complete, Fate::Expire]);
    for (k, p) in [
        (0, ProviderId::OpenAi),
        (1, ProviderId::OpenAi),
        (0, ProviderId::Anthropic),
        (1, ProviderId::Anthropic),
        (0, ProviderId::Gemini),
        (1, ProviderId::Gemini),
    ] {
        h.submit(request(p, k, 0, "s1"));
        h.submit(request(p, k, 0, "s2 #err=400"));
    }
    h.submit(gemini_gen_query_key(GEMINI_KEYS[0], "gemini-2.5-pro", "s3"));
    h.submit(anthropic_msg(
        ANTHROPIC_KEYS[0],
        "claude-sonnet-4-5",
        "s4",
        Some("b1"),
    ));
    // A 401 on a separate key.
    h.fake.fault(
        Some(ProviderId::Gemini),
        Step::Create,
        Fault::Status(401, None),
    );
    h.submit(gemini_gen(GEMINI_KEYS[1], "gemini-2.5-pro", "s5"));
    h.close_and_drain(); // checks every output but the provider calls
    assert!(!h.journal.is_empty() && !h.events.is_empty());

    // A damaged journal and a crash replay: warnings and resumed batches are clean too.
    let (fake, mut journal) = h.crash();
    journal.insert(1, "{\"type\":\"submitted\",\"place\":".into());
    let mut h2 = Harness::restart(config(2), fake, &journal, 1_000_000);
    h2.submit(request(ProviderId::OpenAi, 0, 0, "s1"));
    h2.close_and_drain();
    assert_eq!(h2.warnings().len(), 1);
}

// ---- pass-through, cancel and close --------------------------------------------------------

#[test]
fn non_batchable_requests_pass_through_untouched() {
    let mut h = Harness::new(config(10));
    let mut get = openai_chat(OPENAI_KEYS[0], "gpt-4o-mini", "x");
    get.method = "GET".into();
    get.body = String::new();
    let mut stream = openai_chat(OPENAI_KEYS[0], "gpt-4o-mini", "x");
    stream.body = json!({"model": "gpt-4o-mini", "messages": [], "stream": true}).to_string();
    let mut gemini_stream = gemini_gen(GEMINI_KEYS[0], "gemini-2.5-flash", "x");
    gemini_stream.url = gemini_stream
        .url
        .replace(":generateContent", ":streamGenerateContent");
    let mut unknown = openai_chat(OPENAI_KEYS[0], "gpt-4o-mini", "x");
    unknown.url = format!("{OPENAI_BASE}/models");
    let mut no_model = anthropic_msg(ANTHROPIC_KEYS[0], "claude-sonnet-4-5", "x", None);
    no_model.body = json!({"max_tokens": 1, "messages": []}).to_string();
    let cases = [
        (get, "not_post"),
        (stream, "streaming"),
        (gemini_stream, "streaming"),
        (unknown, "unknown_url"),
        (no_model, "no_model"),
    ];
    for (req, reason) in cases {
        let id = h.submit(req);
        assert_eq!(
            h.only(id),
            &Answer::PassThrough {
                reason: reason.into()
            }
        );
    }
    h.close_and_drain();
    assert!(h.sends.is_empty());
}

#[test]
fn a_queued_request_cancelled_is_never_sent_and_fails_cancelled() {
    let mut h = Harness::new(config(10));
    let a = h.submit(request(ProviderId::OpenAi, 0, 0, "keep"));
    let b = h.submit(request(ProviderId::OpenAi, 0, 0, "drop"));
    h.handle(Input::Cancel { request: b });
    assert_eq!(h.only(b).fail_code(), Some("ERR_BATCHLING_CANCELLED"));
    h.handle(Input::Cancel { request: b }); // again: nothing more
    h.close_and_drain();
    assert_eq!(
        h.fake.batches[0].lines.len(),
        1,
        "the cancelled request never left"
    );
    assert!(h.only(a).is_echo("gpt-4o-mini", "keep"));
}

#[test]
fn a_request_cancelled_after_its_batch_went_out_fails_at_once_and_its_result_is_still_cached() {
    let mut h = Harness::new(config(2));
    let a = h.submit(request(ProviderId::Anthropic, 0, 0, "a"));
    let b = h.submit(request(ProviderId::Anthropic, 0, 0, "b"));
    let b2 = h.submit(request(ProviderId::Anthropic, 0, 0, "b"));
    h.step_until(|h| h.journal_has("submitted"));
    h.handle(Input::Cancel { request: b });
    assert_eq!(h.only(b).fail_code(), Some("ERR_BATCHLING_CANCELLED"));
    h.close_and_drain();
    assert!(h.only(a).is_echo(model_of(ProviderId::Anthropic, 0), "a"));
    assert!(
        h.only(b2).is_echo(model_of(ProviderId::Anthropic, 0), "b"),
        "the other waiter still gets it"
    );
    let results = h
        .journal
        .iter()
        .filter(|l| l.contains("\"type\":\"result\""))
        .count();
    assert_eq!(results, 2);
}

#[test]
fn close_flushes_drains_once_and_refuses_later_requests() {
    let mut h = Harness::new(config(10));
    let a = h.submit(request(ProviderId::Gemini, 0, 0, "last"));
    h.handle(Input::Close);
    assert_eq!(h.sends.len(), 1, "close cuts at once");
    let late = h.submit(request(ProviderId::Gemini, 0, 0, "late"));
    assert_eq!(h.only(late).fail_code(), Some("ERR_BATCHLING_CLOSED"));
    h.run();
    assert_eq!(h.drained, 1);
    assert!(h.only(a).is_echo(model_of(ProviderId::Gemini, 0), "last"));
    h.check_invariants();
}

// ---- regressions for bugs found while writing these tests ----------------------------------

/// Regression (fixed in 6dfa05b): `Interceptor::cancel` dropped every pending batcher action after
/// `Batcher::handle(Cancel)`, but the batcher also cuts windows that elapsed by then, so a
/// `RunBatch` is thrown away and its requests are stranded (never sent, never answered, no
/// `Drained`).
#[test]
fn a_cancel_arriving_after_an_elapsed_window_does_not_strand_the_cut_batch() {
    let mut h = Harness::new(config(10));
    let a = h.submit(request(ProviderId::OpenAi, 0, 0, "keep"));
    let b = h.submit(request(ProviderId::OpenAi, 0, 1, "drop")); // another queue
                                                                 // The host's timer for the window (1000) has not fired yet when the abort comes in.
    h.now = WINDOW + 5;
    h.handle(Input::Cancel { request: b });
    assert_eq!(h.only(b).fail_code(), Some("ERR_BATCHLING_CANCELLED"));
    h.handle(Input::Close);
    h.run();
    assert_eq!(
        h.sent(Step::Create),
        1,
        "the batch cut during the cancel must still go out"
    );
    assert!(h.answers.contains_key(&a), "request {a} was never answered");
    assert!(h.only(a).is_echo("gpt-4o-mini", "keep"));
    assert_eq!(h.drained, 1);
}

/// Regression (fixed in 6dfa05b): a job held one `retry_at` slot, but OpenAI downloads its output
/// and error files in parallel; when both fail, the second retry overwrites the first, one file is
/// never fetched again, and its callers wait forever.
#[test]
fn parallel_download_failures_are_each_retried() {
    let mut h = Harness::new(config(2));
    h.fake.fault(
        Some(ProviderId::OpenAi),
        Step::Download,
        Fault::Status(500, None),
    );
    h.fake.fault(
        Some(ProviderId::OpenAi),
        Step::Download,
        Fault::Status(500, None),
    );
    let ok_id = h.submit(request(ProviderId::OpenAi, 0, 0, "fine"));
    let err_id = h.submit(request(ProviderId::OpenAi, 0, 0, "bad #err=400"));
    h.handle(Input::Close);
    h.run();
    assert_eq!(
        h.sent(Step::Download),
        4,
        "both downloads are tried again: {:?}",
        h.sent_steps()
    );
    assert!(
        h.answers.contains_key(&ok_id) && h.answers.contains_key(&err_id),
        "a caller was stranded: {:?}",
        h.answers
    );
    assert!(h.only(ok_id).is_echo("gpt-4o-mini", "fine"));
    assert_eq!(h.only(err_id).status(), Some(400));
    assert_eq!(h.drained, 1);
}

/// Regression (fixed in 6dfa05b): after a restart, a request resumed into a job whose results are
/// already being downloaded joins that job, misses the result line that was absorbed before it
/// arrived, and is answered "completed without a result line" (500) although the provider has its
/// answer.
#[test]
fn a_resumed_request_arriving_mid_download_still_gets_its_line() {
    let p = ProviderId::OpenAi;
    let mut h1 = Harness::new(config(2));
    h1.submit(request(p, 0, 0, "lands in the error file #err=400"));
    h1.submit(request(p, 0, 0, "lands in the output file"));
    h1.step_until(|h| h.journal_has("submitted"));
    let (fake, journal) = h1.crash();

    let mut h2 = Harness::restart(config(2), fake, &journal, 100_000);
    let a = h2.submit(request(p, 0, 0, "lands in the error file #err=400"));
    // Poll until the batch is done and both downloads are in flight.
    h2.step_until(|h| h.inflight.len() == 2);
    let output_file = h2
        .inflight
        .iter()
        .position(|(_, r)| r.url.contains("file-out"))
        .expect("output file download");
    h2.deliver_at(output_file);
    // Only now does the script re-issue the second request.
    let b = h2.submit(request(p, 0, 0, "lands in the output file"));
    h2.close_and_drain();
    assert_eq!(h2.only(a).status(), Some(400));
    assert!(
        h2.only(b)
            .is_echo("gpt-4o-mini", "lands in the output file"),
        "the provider has this request's answer, but the caller got {:?}",
        h2.only(b)
    );
}

/// Regression (fixed in 6dfa05b by `released` records): an expired / cancelled / failed batch left
/// its `submitted` records in the journal, so every later run "resumes" the dead batch and answers
/// the same ended error at once; the requests can never run again until the cache file is deleted.
#[test]
fn a_rerun_after_an_expired_batch_submits_the_requests_again() {
    let p = ProviderId::Gemini;
    let mut h1 = Harness::new(config(1));
    h1.fake.fates.push_back(Fate::Expire);
    let first = h1.submit(request(p, 0, 0, "try again tomorrow"));
    h1.close_and_drain();
    assert_eq!(h1.only(first).status(), Some(504));
    let (fake, journal) = h1.crash();

    let mut h2 = Harness::restart(config(1), fake, &journal, 90_000_000);
    let again = h2.submit(request(p, 0, 0, "try again tomorrow"));
    h2.close_and_drain();
    assert_eq!(
        h2.sent(Step::Create),
        1,
        "the expired batch's requests are submitted anew"
    );
    assert!(
        h2.only(again).is_echo(model_of(p, 0), "try again tomorrow"),
        "{:?}",
        h2.only(again)
    );
}

/// Regression: a line that failed with a status the SDKs retry (429, 5xx) was cached as the
/// request's answer, so every retry (the SDK's own, an AI SDK / LangChain retry, a re-run) got the
/// same error back at once and the request could never run again until the cache was deleted.
/// Permanent errors (400) stay cached like any answer.
#[test]
fn a_transient_line_error_is_not_cached_and_a_retry_runs_the_request_again() {
    let cases = [
        (ProviderId::OpenAi, "t #err=500", 500, "p #err=400"),
        (ProviderId::OpenAi, "t #err=429", 429, "p #err=400"),
        (
            ProviderId::Anthropic,
            "t #err=overloaded_error",
            529,
            "p #err=invalid_request_error",
        ),
        (ProviderId::Gemini, "t #err=14", 503, "p #err=3"),
    ];
    for (p, transient, status, permanent) in cases {
        let mut h = Harness::new(config(2));
        let t1 = h.submit(request(p, 0, 0, transient));
        let p1 = h.submit(request(p, 0, 0, permanent));
        h.run();
        assert_eq!(h.sent(Step::Create), 1, "{p}");
        assert_eq!(h.only(t1).status(), Some(status), "{p}");
        assert_eq!(h.only(p1).status(), Some(400), "{p}");

        // A retry in the same run: the transient one travels again, the permanent one is cached.
        let t2 = h.submit(request(p, 0, 0, transient));
        let p2 = h.submit(request(p, 0, 0, permanent));
        h.run();
        assert_eq!(
            h.sent(Step::Create),
            2,
            "{p}: the transient error's retry is a new batch"
        );
        assert_eq!(status_body(h.only(t2)).0, status, "{p}");
        assert_eq!(
            status_body(h.only(p2)),
            status_body(h.only(p1)),
            "{p}: cached"
        );
        h.close_and_drain();

        // A re-run on the journal: the same.
        let now = h.now;
        let permanent_answer = status_body(h.only(p1));
        let (fake, journal) = h.crash();
        let mut h2 = Harness::restart(config(2), fake, &journal, now + 60_000);
        let t3 = h2.submit(request(p, 0, 0, transient));
        let p3 = h2.submit(request(p, 0, 0, permanent));
        h2.close_and_drain();
        assert_eq!(
            h2.sent(Step::Create),
            1,
            "{p}: the transient request runs again"
        );
        let polled: HashSet<String> = h2
            .sends
            .iter()
            .filter_map(classify_call)
            .filter(|c| c.1 == Step::Poll)
            .map(|c| c.2)
            .collect();
        let newest = h2.fake.batches.last().expect("a batch").id.clone();
        assert_eq!(
            polled,
            HashSet::from([newest]),
            "{p}: no old batch is resumed for it"
        );
        assert_eq!(status_body(h2.only(t3)).0, status, "{p}");
        assert_eq!(status_body(h2.only(p3)), permanent_answer, "{p}: cached");
    }
}

/// BUG: a request cancelled while its cut batch waits for a slot under `max_concurrent_batches`
/// keeps its entry (with no waiters), so `admit_jobs` still sends it when a slot frees up, although
/// its comment says requests cancelled while their batch waited are not sent.
#[test]
fn a_request_cancelled_while_its_batch_waits_for_a_slot_is_not_sent() {
    let mut cfg = config(1);
    cfg.max_concurrent_batches = 1;
    let mut h = Harness::new(cfg);
    let a = h.submit(request(ProviderId::Anthropic, 0, 0, "runs"));
    let b = h.submit(request(ProviderId::Anthropic, 0, 0, "waits"));
    assert_eq!(h.sent(Step::Create), 1, "one batch at a time");
    h.handle(Input::Cancel { request: b });
    assert_eq!(h.only(b).fail_code(), Some("ERR_BATCHLING_CANCELLED"));
    h.close_and_drain();
    assert!(h
        .only(a)
        .is_echo(model_of(ProviderId::Anthropic, 0), "runs"));
    assert_eq!(
        h.sent(Step::Create),
        1,
        "the cancelled request's waiting batch is never created"
    );
}

/// Guards the fix above: an identical request arriving after the cancel, while the batch still
/// waits, must travel once (not in the waiting batch and again in a new one) and be answered.
#[test]
fn an_identical_request_after_a_cancel_in_a_waiting_batch_is_sent_once() {
    let mut cfg = config(1);
    cfg.max_concurrent_batches = 2;
    let mut h = Harness::new(cfg);
    let a1 = h.submit(request(ProviderId::OpenAi, 0, 0, "runs 1"));
    let a2 = h.submit(request(ProviderId::OpenAi, 0, 0, "runs 2"));
    let b = h.submit(request(ProviderId::OpenAi, 0, 0, "again"));
    h.handle(Input::Cancel { request: b });
    let c = h.submit(request(ProviderId::OpenAi, 0, 0, "again"));
    h.close_and_drain();
    assert_eq!(h.only(b).fail_code(), Some("ERR_BATCHLING_CANCELLED"));
    assert!(h.only(a1).is_echo("gpt-4o-mini", "runs 1"));
    assert!(h.only(a2).is_echo("gpt-4o-mini", "runs 2"));
    assert!(h.only(c).is_echo("gpt-4o-mini", "again"));
    let lines_with_again = h
        .fake
        .batches
        .iter()
        .flat_map(|batch| &batch.lines)
        .filter(|(_, body)| line_text(ProviderId::OpenAi, body) == "again")
        .count();
    assert_eq!(lines_with_again, 1, "sent exactly once");
}

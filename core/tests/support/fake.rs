//! A small fake of the OpenAI, Anthropic and Gemini batch APIs that checks every call it serves.

use std::collections::{HashMap, HashSet, VecDeque};

use batchling_core::cache;
use batchling_core::http::{HttpRequest, HttpResponse};
use batchling_core::interceptor::SerializableRequest;
use batchling_core::providers::{self, EndKind, ProviderId};
use serde_json::{json, Value};

use super::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Step {
    Upload,
    Create,
    Find,
    Poll,
    Download,
    DeleteFile,
    /// A call to the normal (sync) endpoint: a deadline's fallback.
    Sync,
}

/// How a created batch ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    Complete,
    Expire,
    Cancel,
    Fail,
    /// Completed, but the last request has no result line: it did not run, and the counts say
    /// so (it is counted neither completed nor failed).
    Missing,
    /// Refused for the enqueued-token limit before any line ran: an OpenAI batch validates, then
    /// fails with `token_limit_exceeded`; an Anthropic or Gemini create is answered 429.
    TokenLimit,
}

impl Fate {
    pub fn end_kind(self) -> Option<EndKind> {
        match self {
            Fate::Complete | Fate::Missing => None,
            Fate::Expire => Some(EndKind::Expired),
            Fate::Cancel => Some(EndKind::Cancelled),
            Fate::Fail | Fate::TokenLimit => Some(EndKind::Failed),
        }
    }
}

#[derive(Clone, Debug)]
pub enum Fault {
    /// Answer with this status (and `retry-after`), doing nothing.
    Status(u16, Option<&'static str>),
    /// The call never reached the provider.
    Transport,
    /// The provider did the work, but its answer was lost.
    LostAnswer,
}

pub enum Reply {
    Http(HttpResponse),
    Transport,
}

/// What the harness knows of a request it submitted, keyed by the custom id it must travel under.
#[derive(Clone, Debug)]
pub struct Expected {
    pub group: String,
    pub endpoint: String,
    pub model: String,
    pub forward: Vec<(String, String)>,
}

pub struct FakeBatch {
    pub provider: ProviderId,
    pub id: String,
    pub tag: Option<String>,
    pub model: String,
    pub endpoint: String,
    /// The forwarded headers of the create call; every later call on the batch must carry them.
    pub auth: Vec<(String, String)>,
    pub input_file: Option<String>,
    /// (custom id, request body) in the order of the create.
    pub lines: Vec<(String, Value)>,
    pub fate: Fate,
    pub polls_left: u32,
    /// The terminal object, fixed at the first terminal poll.
    pub terminal: Option<Value>,
    /// Anthropic results JSONL.
    pub results: Option<String>,
    /// Custom ids that got a real (model) result line.
    pub answered: HashSet<String>,
    /// Custom ids in the order their result lines were written.
    pub result_order: Vec<String>,
}

pub struct FakeFile {
    pub auth: Vec<(String, String)>,
    pub content: String,
    /// (custom id, url, body) of an input file.
    pub lines: Vec<(String, String, Value)>,
}

pub struct RandomFaults {
    pub state: u64,
    pub budget: u32,
    pub percent: u64,
}

impl RandomFaults {
    pub fn next(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn draw(&mut self) -> Option<Fault> {
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

pub struct Fake {
    pub batches: Vec<FakeBatch>,
    pub files: HashMap<String, FakeFile>,
    /// Fates of the next created batches, in order; then `Complete`.
    pub fates: VecDeque<Fate>,
    /// "Still running" answers before a batch's terminal one.
    pub polls_before_done: u32,
    /// Scripted faults: the first entry matching (provider, step) is used up by the next call.
    pub faults: Vec<(Option<ProviderId>, Step, Fault)>,
    pub random: Option<RandomFaults>,
    /// Results are always written in reverse line order; a non-zero seed shuffles them further.
    pub shuffle_seed: u64,
    /// Enqueued-token limit per (credential, model), tokens counted as JSON chars / 4: a batch
    /// that would pass it, with the live batches it already holds, is refused (`TokenLimit`).
    pub token_cap: Option<u64>,
    pub expected: HashMap<String, Expected>,
    pub violations: Vec<String>,
    /// The next this many results downloads drop their first line (a flaky download: the
    /// batch's counts still count it).
    pub flaky_downloads: u32,
    /// Lines served by results downloads, in all.
    pub lines_downloaded: usize,
    pub log: Vec<(ProviderId, Step, SerializableRequest)>,
    /// The files deleted, in order.
    pub deleted: Vec<String>,
}

impl Fake {
    pub fn new() -> Self {
        Fake {
            batches: Vec::new(),
            files: HashMap::new(),
            fates: VecDeque::new(),
            polls_before_done: 1,
            faults: Vec::new(),
            random: None,
            shuffle_seed: 0,
            token_cap: None,
            expected: HashMap::new(),
            violations: Vec::new(),
            flaky_downloads: 0,
            lines_downloaded: 0,
            log: Vec::new(),
            deleted: Vec::new(),
        }
    }

    /// Expect the batch line of `http`, if it is batchable: the fake checks every batch holding
    /// it against its group, endpoint, model and forwarded headers. Its custom id.
    pub fn expect(&mut self, http: &HttpRequest) -> Option<String> {
        let route = providers::classify(http).ok()?;
        let custom_id = cache::custom_id(&cache::fingerprint(&route).to_string());
        let group = format!(
            "{}|{}|{}|{}|{}",
            route.provider,
            route.base_url,
            route.endpoint,
            route.model,
            route.credential_fingerprint
        );
        self.expected.insert(
            custom_id.clone(),
            Expected {
                group,
                endpoint: route.endpoint.clone(),
                model: route.model.clone(),
                forward: route.forward_headers.clone(),
            },
        );
        Some(custom_id)
    }

    pub fn fault(&mut self, provider: Option<ProviderId>, step: Step, fault: Fault) {
        self.faults.push((provider, step, fault));
    }

    pub fn served(&self, step: Step) -> usize {
        self.log.iter().filter(|(_, s, _)| *s == step).count()
    }

    pub fn serve(&mut self, req: &SerializableRequest) -> Reply {
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

    pub fn take_fault(&mut self, provider: ProviderId, step: Step) -> Option<Fault> {
        let scripted = self
            .faults
            .iter()
            .position(|(p, s, _)| *s == step && p.is_none_or(|p| p == provider));
        if let Some(i) = scripted {
            return Some(self.faults.remove(i).2);
        }
        self.random.as_mut().and_then(RandomFaults::draw)
    }

    pub fn apply(
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
            (ProviderId::OpenAi, Step::DeleteFile) => self.openai_delete(target, &auth),
            (ProviderId::OpenAi, Step::Sync) => {
                // Answered at once, its content marked so tests tell it from a batch line's.
                let body: Value = serde_json::from_str(&req.body).unwrap_or_default();
                let model = body["model"].as_str().unwrap_or_default().to_string();
                let text = line_text(provider, &body);
                ok(
                    json!({"id": "chatcmpl-sync", "object": "chat.completion", "model": model,
                          "choices": [{"index": 0, "message": {"role": "assistant",
                                       "content": format!("sync:{}", echo(&model, &text))},
                                       "finish_reason": "stop"}],
                          "usage": {"prompt_tokens": 12, "completion_tokens": 1, "total_tokens": 13}}),
                )
            }
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
    pub fn openai_upload(
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
        let id = format!("file-in{}", self.files.len() + self.deleted.len() + 1);
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

    pub fn openai_create(
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
        let refused = self.refuses(&auth, &model, &lines);
        let i = self.register(
            ProviderId::OpenAi,
            tag,
            model,
            endpoint,
            auth,
            lines,
            Some(file_id),
        );
        if refused {
            // Accepted, then failed while validating (its fate drawn by `register` goes back).
            let drawn = std::mem::replace(&mut self.batches[i].fate, Fate::TokenLimit);
            if drawn != Fate::Complete || !self.fates.is_empty() {
                self.fates.push_front(drawn);
            }
        }
        ok(self.running_object(i, "validating"))
    }

    // Anthropic §3: inline requests.
    pub fn anthropic_create(
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
        if self.refuses(&auth, &model, &lines) {
            return error_response(ProviderId::Anthropic, 429, None);
        }
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
    pub fn gemini_create(
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
        if self.refuses(&auth, model, &lines) {
            return error_response(ProviderId::Gemini, 429, None);
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

    /// Estimated tokens of batch lines, as OpenAI counts enqueued tokens (about chars / 4).
    pub fn line_tokens(lines: &[(String, Value)]) -> u64 {
        lines
            .iter()
            .map(|(_, body)| body.to_string().len() as u64 / 4)
            .sum()
    }

    /// Whether a new batch of these lines is refused for the enqueued-token limit: the next fate
    /// says so, or the limit would be passed with the live batches of the same credential and
    /// model. A refusing fate is used up.
    pub fn refuses(
        &mut self,
        auth: &[(String, String)],
        model: &str,
        lines: &[(String, Value)],
    ) -> bool {
        if self.fates.front() == Some(&Fate::TokenLimit) {
            self.fates.pop_front();
            return true;
        }
        let Some(cap) = self.token_cap else {
            return false;
        };
        let live: u64 = self
            .batches
            .iter()
            .filter(|b| b.terminal.is_none() && b.fate != Fate::TokenLimit)
            .filter(|b| b.auth == auth && b.model == model)
            .map(|b| Self::line_tokens(&b.lines))
            .sum();
        live + Self::line_tokens(lines) > cap
    }

    /// Checks a new batch against what the callers sent, and stores it.
    #[allow(clippy::too_many_arguments)]
    pub fn register(
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
        for (custom_id, _) in &lines {
            let live = self
                .batches
                .iter()
                .find(|b| b.terminal.is_none() && b.lines.iter().any(|(c, _)| c == custom_id));
            if let Some(live) = live {
                self.violations.push(format!(
                    "{custom_id} sent in a new batch while {} (live) holds it",
                    live.id
                ));
            }
        }
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

    pub fn batch_index(&self, provider: ProviderId, id: &str) -> Option<usize> {
        self.batches
            .iter()
            .position(|b| b.provider == provider && b.id == id)
    }

    pub fn find(&mut self, provider: ProviderId, auth: &[(String, String)]) -> HttpResponse {
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

    pub fn poll(
        &mut self,
        provider: ProviderId,
        id: &str,
        auth: &[(String, String)],
    ) -> HttpResponse {
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
                    _ if self.batches[i].fate == Fate::TokenLimit => "validating",
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

    pub fn current_object(&self, i: usize) -> Value {
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

    pub fn running_object(&self, i: usize, label: &str) -> Value {
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
    pub fn result_order(&self, i: usize, run: &[usize]) -> Vec<usize> {
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

    pub fn finalize(&mut self, i: usize) {
        match self.batches[i].provider {
            ProviderId::OpenAi => self.finalize_openai(i),
            ProviderId::Anthropic => self.finalize_anthropic(i),
            ProviderId::Gemini => self.finalize_gemini(i),
            other => unreachable!("this fake speaks OpenAI, Anthropic and Gemini, not {other}"),
        }
    }

    pub fn finalize_openai(&mut self, i: usize) {
        let n = self.batches[i].lines.len();
        let fate = self.batches[i].fate;
        let run: Vec<usize> = match fate {
            Fate::Complete => (0..n).collect(),
            Fate::Missing => (0..n.saturating_sub(1)).collect(),
            Fate::Expire => (0..n / 2).collect(), // the rest has no line: it did not run
            Fate::Cancel | Fate::Fail | Fate::TokenLimit => Vec::new(),
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
        // File ids are never reused: deleted files count too.
        let deleted = self.deleted.len();
        let file = |files: &mut HashMap<String, FakeFile>, content: String, kind: &str| {
            if content.is_empty() {
                return None;
            }
            let id = format!("file-{kind}{}", files.len() + deleted + 1);
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
            Fate::Complete | Fate::Missing => ("completed", Value::Null),
            Fate::Expire => ("expired", Value::Null),
            Fate::Cancel => ("cancelled", Value::Null),
            Fate::Fail => (
                "failed",
                json!({"object": "list", "data": [{"code": "invalid_json_line", "message": "fake validation failure", "param": null, "line": 1}]}),
            ),
            Fate::TokenLimit => (
                "failed",
                json!({"object": "list", "data": [{"code": "token_limit_exceeded", "message": format!("Enqueued token limit reached for {} in organization org-fake. Limit: {} enqueued tokens. Please try again once some in_progress batches have been completed.", self.batches[i].model, self.token_cap.unwrap_or(1_000)), "param": null, "line": null}]}),
            ),
        };
        let b = &self.batches[i];
        let terminal = openai_batch_json(b, status, out_id, err_id, (n, completed, failed), errors);
        let b = &mut self.batches[i];
        b.terminal = Some(terminal);
        b.answered = answered;
        b.result_order = order_ids;
    }

    pub fn finalize_anthropic(&mut self, i: usize) {
        let n = self.batches[i].lines.len();
        let fate = self.batches[i].fate;
        let run: Vec<usize> = match fate {
            Fate::Complete | Fate::TokenLimit => (0..n).collect(), // (refused at create)
            Fate::Missing => (0..n.saturating_sub(1)).collect(),
            Fate::Expire | Fate::Cancel => (0..n / 2).collect(),
            Fate::Fail => Vec::new(),
        };
        let all: Vec<usize> = match fate {
            Fate::Fail => Vec::new(),
            Fate::Missing => run.clone(),
            _ => (0..n).collect(),
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

    pub fn finalize_gemini(&mut self, i: usize) {
        let n = self.batches[i].lines.len();
        let fate = self.batches[i].fate;
        let b = &self.batches[i];
        let terminal = match fate {
            // (A refused Gemini batch is never created.)
            Fate::Complete | Fate::Missing | Fate::TokenLimit => {
                let all: Vec<usize> = match fate {
                    Fate::Missing => (0..n.saturating_sub(1)).collect(),
                    _ => (0..n).collect(),
                };
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
                let ran = order.len();
                let op = gemini_operation(
                    b,
                    "BATCH_STATE_SUCCEEDED",
                    true,
                    Some(output),
                    None,
                    (n, ran - failed, failed),
                );
                let b = &mut self.batches[i];
                b.answered = order_ids.iter().cloned().collect();
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

    pub fn openai_download(&mut self, file_id: &str, auth: &[(String, String)]) -> HttpResponse {
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
        let body = file.content.clone();
        HttpResponse {
            status: 200,
            headers: vec![("content-type".into(), "application/octet-stream".into())],
            body: self.flaky(body),
        }
    }

    /// OpenAI §1: `DELETE /files/{id}`; a second delete of a file is a 404, as OpenAI's.
    pub fn openai_delete(&mut self, file_id: &str, auth: &[(String, String)]) -> HttpResponse {
        let Some(file) = self.files.get(file_id) else {
            return error_response(ProviderId::OpenAi, 404, None);
        };
        if file.auth != auth {
            self.violations.push(format!(
                "delete of {file_id} carries other headers than its batch"
            ));
        }
        self.files.remove(file_id);
        self.deleted.push(file_id.to_string());
        ok(serde_json::json!({"id": file_id, "object": "file", "deleted": true}))
    }

    pub fn anthropic_download(&mut self, id: &str, auth: &[(String, String)]) -> HttpResponse {
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
            body: self.flaky(results),
        }
    }

    /// A results file as served: without its first line while downloads are flaky.
    fn flaky(&mut self, body: String) -> String {
        let body = if self.flaky_downloads > 0 && !body.is_empty() {
            self.flaky_downloads -= 1;
            body.split_once('\n')
                .map_or(String::new(), |(_, rest)| rest.to_string())
        } else {
            body
        };
        self.lines_downloaded += body.lines().count();
        body
    }
}

/// (provider, step, target): the batch id, file id or (Gemini create) model the call is about.
pub fn classify_call(req: &SerializableRequest) -> Option<(ProviderId, Step, String)> {
    let method = req.method.as_str();
    if let Some(path) = req.url.strip_prefix(OPENAI_BASE) {
        let p = ProviderId::OpenAi;
        return match method {
            "POST" if path == "/files" => Some((p, Step::Upload, String::new())),
            "POST" if path == "/batches" => Some((p, Step::Create, String::new())),
            "POST" if path == "/chat/completions" => Some((p, Step::Sync, String::new())),
            "GET" if path.starts_with("/batches?") => Some((p, Step::Find, String::new())),
            "GET" if path.starts_with("/batches/") => {
                Some((p, Step::Poll, path["/batches/".len()..].to_string()))
            }
            "GET" if path.starts_with("/files/") && path.ends_with("/content") => Some((
                p,
                Step::Download,
                path["/files/".len()..path.len() - "/content".len()].to_string(),
            )),
            "DELETE" if path.starts_with("/files/") => {
                Some((p, Step::DeleteFile, path["/files/".len()..].to_string()))
            }
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

pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// The headers a batch call carries for its callers: everything but the call's own content type.
pub fn auth_headers(headers: &[(String, String)]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
        .filter(|(k, _)| k != "content-type")
        .collect();
    out.sort();
    out
}

pub fn ok(body: Value) -> HttpResponse {
    HttpResponse::json(200, body.to_string())
}

/// A provider's own error envelope for a failed call.
pub fn error_response(
    provider: ProviderId,
    status: u16,
    retry_after: Option<&str>,
) -> HttpResponse {
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
pub fn line_text(provider: ProviderId, body: &Value) -> String {
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

pub fn marker(text: &str) -> Option<&str> {
    text.split_once("#err=").map(|(_, m)| m)
}

/// Whether the fake answers this line with a status the SDKs retry (408, 409, 429, 5xx), which
/// the engine does not cache.
pub fn transient_line(provider: ProviderId, body: &Value) -> bool {
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
pub fn openai_line(
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

pub fn openai_batch_json(
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
pub fn anthropic_result(custom_id: &str, model: &str, body: &Value) -> Value {
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

pub fn anthropic_batch_json(
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
pub fn gemini_inline(key: &str, model: &str, body: &Value) -> Value {
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
pub fn gemini_operation(
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

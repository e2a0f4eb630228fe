//! The xAI batch flow through the whole engine ([`Interceptor`]) with virtual time: create an
//! empty batch, add its requests (the adapter's after-create calls, retried like any step), poll
//! the counters, walk the paged results. A small in-test fake of xAI's REST batch API
//! (providers.md §8) answers every call; faults are injected per route.

mod support;

use std::collections::{BTreeMap, HashMap, VecDeque};

use batchling_core::http::{HttpRequest, HttpResponse};
use batchling_core::interceptor::{Input, Interceptor, InterceptorConfig, Output};
use serde_json::{json, Value};

use support::{chat_at, record_types};

const BASE: &str = "https://api.x.ai/v1";
const DATE: &str = "Mon, 23 Nov 2026 10:00:00 GMT";
const LATER: &str = "Tue, 24 Nov 2026 10:00:01 GMT";
const EXPIRE: &str = "2026-11-24T10:00:00Z";

fn chat(text: &str) -> HttpRequest {
    chat_at(BASE, "Bearer xai-KEY", "grok-4", text)
}

#[derive(Clone, Copy, Debug)]
enum Fault {
    Status(u16),
    /// The call is handled, but its answer is lost.
    LostAfter,
}

#[derive(Default)]
struct Batch {
    name: String,
    /// (batch_request_id, body) in the order added; a repeated add repeats them.
    requests: Vec<(String, Value)>,
    polls: u32,
    /// Requests from this index on never run (the batch expires with them pending).
    stuck_from: Option<usize>,
}

#[derive(Default)]
struct FakeXai {
    batches: BTreeMap<String, Batch>,
    faults: HashMap<&'static str, VecDeque<Fault>>,
    calls: Vec<String>,
    page_size: usize,
    polls_until_done: u32,
    stuck_from: Option<usize>,
}

fn answer(body: &Value) -> Value {
    let text = body["messages"][0]["content"].as_str().unwrap_or("");
    if text.contains("#err") {
        json!({"error": {"code": 3, "message": format!("bad request: {text}")}})
    } else {
        json!({"response": {"chat_get_completion": {
            "id": format!("c-{text}"), "object": "chat.completion", "model": "grok-4",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": format!("echo:{text}")}, "finish_reason": "stop"}],
        }}})
    }
}

impl FakeXai {
    fn new() -> Self {
        FakeXai {
            page_size: 2,
            polls_until_done: 2,
            ..Default::default()
        }
    }

    fn route(req: &HttpRequest) -> &'static str {
        let path = req.url.strip_prefix(BASE).unwrap_or(&req.url);
        match (req.method.as_str(), path) {
            ("POST", "/batches") => "create",
            ("GET", p) if p.starts_with("/batches?") => "list",
            ("POST", p) if p.ends_with("/requests") => "add",
            ("GET", p) if p.contains("/results?") => "results",
            ("GET", p) if p.starts_with("/batches/") => "get",
            _ => "unknown",
        }
    }

    fn batch_json(&self, id: &str) -> Value {
        let b = &self.batches[id];
        let total = b.requests.len();
        let done = b.polls >= self.polls_until_done && total > 0;
        let ran = if done {
            b.stuck_from.unwrap_or(total).min(total)
        } else {
            0
        };
        let errors = b.requests[..ran]
            .iter()
            .filter(|(_, body)| answer(body).get("error").is_some())
            .count();
        json!({
            "batch_id": id, "name": b.name, "create_time": "2026-11-23T10:00:00Z", "expire_time": EXPIRE,
            "state": {"num_requests": total, "num_pending": total - ran, "num_success": ran - errors, "num_error": errors},
        })
    }

    /// `None`: the answer is lost.
    fn serve(&mut self, req: &HttpRequest) -> Option<HttpResponse> {
        let route = Self::route(req);
        self.calls.push(route.to_string());
        let fault = self.faults.get_mut(route).and_then(VecDeque::pop_front);
        if let Some(Fault::Status(status)) = fault {
            return Some(HttpResponse::json(
                status,
                json!({"error": {"message": "injected"}}).to_string(),
            ));
        }
        assert_eq!(
            req.headers
                .iter()
                .find(|(k, _)| k == "authorization")
                .map(|(_, v)| v.as_str()),
            Some("Bearer xai-KEY")
        );
        let path = req.url.strip_prefix(BASE).unwrap().to_string();
        let body: Value = serde_json::from_str(&req.body).unwrap_or(Value::Null);
        let answer = match route {
            "create" => {
                let id = format!("batch-{}", self.batches.len() + 1);
                let batch = Batch {
                    name: body["name"].as_str().unwrap().to_string(),
                    stuck_from: self.stuck_from,
                    ..Default::default()
                };
                self.batches.insert(id.clone(), batch);
                self.batch_json(&id)
            }
            "list" => {
                let batches: Vec<Value> = self
                    .batches
                    .keys()
                    .rev()
                    .map(|id| self.batch_json(id))
                    .collect();
                json!({"batches": batches})
            }
            "add" => {
                let id = path
                    .trim_start_matches("/batches/")
                    .trim_end_matches("/requests");
                let batch = self.batches.get_mut(id).expect("add to a known batch");
                assert_eq!(batch.polls, 0, "requests are added before the first poll");
                for r in body["batch_requests"].as_array().unwrap() {
                    let rid = r["batch_request_id"].as_str().unwrap().to_string();
                    batch
                        .requests
                        .push((rid, r["batch_request"]["chat_get_completion"].clone()));
                }
                json!({})
            }
            "get" => {
                let id = path.trim_start_matches("/batches/");
                self.batches.get_mut(id).unwrap().polls += 1;
                self.batch_json(id)
            }
            "results" => {
                let (p, query) = path.split_once('?').unwrap();
                let id = p
                    .trim_start_matches("/batches/")
                    .trim_end_matches("/results");
                let start: usize = query
                    .split('&')
                    .find_map(|kv| kv.strip_prefix("pagination_token=tok%2F"))
                    .map_or(0, |n| n.parse().unwrap());
                let b = &self.batches[id];
                let ran = b
                    .stuck_from
                    .unwrap_or(b.requests.len())
                    .min(b.requests.len());
                let end = (start + self.page_size).min(ran);
                let results: Vec<Value> = b.requests[start..end]
                    .iter()
                    .map(|(rid, body)| json!({"batch_request_id": rid, "batch_result": answer(body)}))
                    .collect();
                let token = (end < ran).then(|| format!("tok/{end}"));
                json!({"results": results, "pagination_token": token})
            }
            other => panic!("unexpected call {other}: {} {}", req.method, req.url),
        };
        if let Some(Fault::LostAfter) = fault {
            return None;
        }
        let mut resp = HttpResponse::json(200, answer.to_string());
        let date = if self.stuck_from.is_some() && route == "get" {
            LATER
        } else {
            DATE
        };
        resp.headers.push(("date".into(), date.into()));
        Some(resp)
    }
}

struct Run {
    answers: HashMap<u64, (u16, Value)>,
    journal: Vec<String>,
}

fn config() -> InterceptorConfig {
    InterceptorConfig {
        batch_size: 100,
        batch_window_ms: 100,
        poll_interval_ms: 1_000,
        call_attempts: 5,
        backoff_ms: 10,
        max_backoff_ms: 100,
        ..InterceptorConfig::default()
    }
}

/// Submit `texts` (request ids 1..), then serve every call until all are answered.
fn run(fake: &mut FakeXai, journal: &[String], texts: &[&str]) -> Run {
    run_with(fake, config(), journal, texts)
}

fn run_with(
    fake: &mut FakeXai,
    config: InterceptorConfig,
    journal: &[String],
    texts: &[&str],
) -> Run {
    let mut ic = Interceptor::new(config, true, true, 7).unwrap();
    ic.load_cache(
        &journal
            .iter()
            .map(|line| format!("{line}\n"))
            .collect::<String>(),
    );
    let mut now = 0;
    for (i, text) in texts.iter().enumerate() {
        ic.handle(
            now,
            Input::Submit {
                request: i as u64 + 1,
                http: chat(text),
                arrived_ms: now,
            },
        );
    }
    let mut out = Run {
        answers: HashMap::new(),
        journal: journal.to_vec(),
    };
    let mut queue: VecDeque<Output> = VecDeque::new();
    for _ in 0..10_000 {
        queue.extend(ic.drain_outputs());
        let Some(output) = queue.pop_front() else {
            if out.answers.len() == texts.len() {
                return out;
            }
            now = ic.next_deadline().expect("something is pending").max(now);
            ic.handle(now, Input::Tick);
            continue;
        };
        match output {
            Output::Send { call, http, .. } => {
                let req = HttpRequest {
                    method: http.method,
                    url: http.url,
                    headers: http.headers,
                    body: http.body,
                };
                let input = match fake.serve(&req) {
                    Some(response) => Input::Response { call, response },
                    None => Input::TransportError {
                        call,
                        message: "connection reset".into(),
                    },
                };
                ic.handle(now, input);
            }
            Output::Respond {
                request,
                status,
                body,
                ..
            } => {
                assert!(out
                    .answers
                    .insert(request, (status, serde_json::from_str(&body).unwrap()))
                    .is_none());
            }
            Output::Persist { line } => out.journal.push(line),
            Output::RespondStored { request, place, .. } => {
                // The journal holds the answer's line at its place (by line, as a host reads).
                let stored: Value =
                    serde_json::from_str(&out.journal[place.line as usize]).unwrap();
                let body = stored["body"].as_str().unwrap();
                let status = stored["status"].as_u64().unwrap() as u16;
                assert!(out
                    .answers
                    .insert(request, (status, serde_json::from_str(body).unwrap()))
                    .is_none());
            }
            Output::Fail {
                request,
                code,
                message,
            } => panic!("request {request} failed: {code} {message}"),
            _ => {}
        }
    }
    panic!("the flow did not finish; calls: {:?}", fake.calls);
}

fn text_of(answer: &(u16, Value)) -> &str {
    answer.1["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or("")
}

#[test]
fn create_add_poll_and_paged_results() {
    let mut fake = FakeXai::new();
    let texts = ["a", "b", "c #err", "d", "e"];
    let run = run(&mut fake, &[], &texts);
    assert_eq!(
        fake.calls,
        ["create", "add", "get", "get", "results", "results", "results"]
    );
    assert_eq!(fake.batches["batch-1"].requests.len(), 5);
    for (i, text) in texts.iter().enumerate() {
        let answer = &run.answers[&(i as u64 + 1)];
        if text.contains("#err") {
            assert_eq!(answer.0, 400);
            assert_eq!(answer.1["error"]["code"], "INVALID_ARGUMENT");
        } else {
            assert_eq!(
                (answer.0, text_of(answer)),
                (200, format!("echo:{text}").as_str())
            );
        }
    }
    // The batch is journalled as submitted once it holds its requests.
    assert_eq!(&record_types(&run.journal)[..2], ["intent", "submitted"]);
}

#[test]
fn failed_and_lost_add_calls_are_retried_before_polling() {
    let mut fake = FakeXai::new();
    fake.faults.insert(
        "add",
        VecDeque::from([Fault::Status(500), Fault::Status(429)]),
    );
    fake.faults
        .insert("results", VecDeque::from([Fault::Status(503)]));
    let run1 = run(&mut fake, &[], &["a", "b", "c"]);
    assert_eq!(fake.calls[..5], ["create", "add", "add", "add", "get"]);
    assert_eq!(fake.batches["batch-1"].requests.len(), 3);
    assert_eq!(run1.answers.len(), 3);

    // A lost add answer: the call is made again and xAI (here) keeps both copies. Each id's
    // first result wins, in the answer and in the journal.
    let mut fake = FakeXai::new();
    fake.faults
        .insert("add", VecDeque::from([Fault::LostAfter]));
    let run2 = run(&mut fake, &[], &["a", "b", "c"]);
    assert_eq!(fake.batches["batch-1"].requests.len(), 6);
    assert_eq!(fake.calls.iter().filter(|c| *c == "results").count(), 3);
    for (i, text) in ["a", "b", "c"].iter().enumerate() {
        assert_eq!(
            text_of(&run2.answers[&(i as u64 + 1)]),
            format!("echo:{text}")
        );
    }
    let results = record_types(&run2.journal)
        .iter()
        .filter(|t| *t == "result")
        .count();
    assert_eq!(results, 3);
}

#[test]
fn a_lost_create_is_found_by_name_and_then_filled() {
    let mut fake = FakeXai::new();
    fake.faults
        .insert("create", VecDeque::from([Fault::LostAfter]));
    let run = run(&mut fake, &[], &["a", "b"]);
    assert_eq!(fake.calls[..3], ["create", "list", "add"]);
    assert_eq!(fake.batches.len(), 1);
    assert_eq!(run.answers.len(), 2);
}

#[test]
fn a_crash_between_create_and_add_resumes_by_finding_the_batch() {
    // First run: the create goes through, then the process dies before its add call is
    // answered. Only the journal lines written up to then survive.
    let mut fake = FakeXai::new();
    let mut ic = Interceptor::new(config(), true, true, 7).unwrap();
    ic.handle(
        0,
        Input::Submit {
            request: 1,
            http: chat("a"),
            arrived_ms: 0,
        },
    );
    ic.handle(
        0,
        Input::Submit {
            request: 2,
            http: chat("b"),
            arrived_ms: 0,
        },
    );
    ic.handle(200, Input::Tick);
    let mut journal = Vec::new();
    let mut create_call = None;
    for output in ic.drain_outputs() {
        match output {
            Output::Persist { line } => journal.push(line),
            Output::Send { call, http, .. } => create_call = Some((call, http)),
            _ => {}
        }
    }
    let (call, http) = create_call.expect("the create is sent");
    let req = HttpRequest {
        method: http.method,
        url: http.url,
        headers: http.headers,
        body: http.body,
    };
    let response = fake.serve(&req).unwrap();
    ic.handle(300, Input::Response { call, response });
    for output in ic.drain_outputs() {
        match output {
            Output::Persist { line } => journal.push(line),
            Output::Send { http, .. } => assert!(
                http.url.ends_with("/requests"),
                "the add follows the create"
            ),
            _ => {}
        }
    }
    // Nothing says "submitted" yet: the batch is empty.
    assert_eq!(record_types(&journal), ["intent"]);
    drop(ic); // the crash

    let run = run(&mut fake, &journal, &["a", "b"]);
    assert_eq!(fake.calls[..3], ["create", "list", "add"]);
    assert_eq!(fake.batches.len(), 1, "no second batch");
    assert_eq!(fake.batches["batch-1"].requests.len(), 2);
    assert_eq!(text_of(&run.answers[&2]), "echo:b");

    // A third run answers from the journal alone.
    let calls = fake.calls.len();
    let again = self::run(&mut fake, &run.journal, &["a", "b"]);
    assert_eq!(fake.calls.len(), calls);
    assert_eq!(text_of(&again.answers[&1]), "echo:a");
}

#[test]
fn an_expired_batch_resubmits_what_did_not_run_or_without_resubmission_answers_504() {
    let mut fake = FakeXai::new();
    fake.polls_until_done = 1;
    fake.stuck_from = Some(1);
    let run = run(&mut fake, &[], &["a", "b", "c"]);
    let mut statuses: Vec<u16> = run.answers.values().map(|a| a.0).collect();
    statuses.sort();
    // Every batch of this fake runs only its first request before it expires: what did not
    // run went into a second batch, and its rest into a third (lineAttempts 3).
    assert_eq!(statuses, [200, 200, 200]);
    assert_eq!(fake.batches.len(), 3);
    assert_eq!(fake.batches["batch-2"].requests.len(), 2);
    assert_eq!(fake.batches["batch-3"].requests.len(), 1);
    for (i, text) in ["a", "b", "c"].iter().enumerate() {
        assert_eq!(
            text_of(&run.answers[&(i as u64 + 1)]),
            format!("echo:{text}")
        );
    }

    // Without resubmission, they get the batch's end.
    let mut fake = FakeXai::new();
    fake.polls_until_done = 1;
    fake.stuck_from = Some(1);
    let run = run_with(
        &mut fake,
        InterceptorConfig {
            resubmit: false,
            ..config()
        },
        &[],
        &["a", "b", "c"],
    );
    let mut statuses: Vec<u16> = run.answers.values().map(|a| a.0).collect();
    statuses.sort();
    assert_eq!(statuses, [200, 504, 504]);
    let expired = run.answers.values().find(|a| a.0 == 504).unwrap();
    let message = expired.1["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("batch-1") && message.contains("expired"),
        "{message}"
    );
}

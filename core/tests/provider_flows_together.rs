//! The engine's generic two-request upload (`build_upload_finish`) and file-keyed find
//! (`LostCreateKey::UploadedFile`), driven through Together's adapter with virtual time against a small scripted
//! Together (providers.md §7): announce → 302 → PUT to storage → create `{job}` → poll → files.

mod support;

use std::collections::HashMap;

use batchling_core::http::{HttpRequest, HttpResponse};
use batchling_core::interceptor::{
    CallId, Input, Interceptor, InterceptorConfig, LifecycleEvent, Output, RequestId,
    SerializableRequest,
};
use batchling_core::providers::REDIRECT_MANUAL_HEADER;
use serde_json::{json, Value};

use support::chat_at;

const BASE: &str = "https://api.together.xyz/v1";
const STORAGE: &str = "https://storage.example/upload";
const KEY: &str = "Bearer tg-secret";

fn chat(text: &str) -> HttpRequest {
    chat_at(BASE, KEY, "meta-llama/Llama-3.3-70B-Instruct-Turbo", text)
}

fn config() -> InterceptorConfig {
    InterceptorConfig {
        batch_size: 3,
        batch_window_ms: 1_000,
        poll_interval_ms: 5_000,
        call_attempts: 4,
        backoff_ms: 1_000,
        max_backoff_ms: 10_000,
        ..InterceptorConfig::default()
    }
}

fn header<'a>(r: &'a SerializableRequest, name: &str) -> Option<&'a str> {
    r.headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn json_answer(status: u16, body: Value) -> HttpResponse {
    HttpResponse::json(status, body.to_string())
}

/// What the scripted provider does with the next calls of a kind.
#[derive(Default)]
struct Script {
    /// Statuses the storage PUT answers before it takes the file (e.g. 503).
    put_failures: Vec<u16>,
    /// Creates whose answer is lost after the batch was made.
    create_drops: usize,
    /// Creates answered 500 without making a batch.
    create_500s: usize,
}

#[derive(Default)]
struct FakeTogether {
    script: Script,
    /// Announced file id → uploaded bytes (None until the PUT).
    files: HashMap<String, Option<String>>,
    /// (batch id, input file id, polls).
    batches: Vec<(String, String, u32)>,
    log: Vec<SerializableRequest>,
    /// The files deleted, in order.
    deleted: Vec<String>,
}

enum Answer {
    Response(HttpResponse),
    Lost,
}

impl FakeTogether {
    fn scripted(script: Script) -> Self {
        FakeTogether {
            script,
            ..FakeTogether::default()
        }
    }

    fn answer(&mut self, r: &SerializableRequest) -> Answer {
        self.log.push(r.clone());
        let on_api = r.url.starts_with(BASE);
        if on_api {
            assert_eq!(
                header(r, "authorization"),
                Some(KEY),
                "{} {}",
                r.method,
                r.url
            );
        } else {
            assert!(
                !r.headers.iter().any(|(_, v)| v.contains("tg-secret")),
                "the key leaked to {}: {:?}",
                r.url,
                r.headers
            );
        }
        let path = r.url.strip_prefix(BASE).unwrap_or(&r.url);
        let ok = |body: Value| Answer::Response(json_answer(200, body));
        match (r.method.as_str(), path) {
            ("DELETE", p) if p.starts_with("/files/") => {
                let id = &p["/files/".len()..];
                self.deleted.push(id.to_string());
                ok(json!({"id": id, "object": "file", "deleted": true}))
            }
            ("POST", p) if p.starts_with("/files?") => {
                assert_eq!(r.redirect, Some("manual"));
                assert_eq!(header(r, REDIRECT_MANUAL_HEADER), None, "the marker is not sent");
                assert!(p.contains("purpose=batch-api"), "{p}");
                let id = format!("file-{}", self.files.len() + 1);
                self.files.insert(id.clone(), None);
                Answer::Response(HttpResponse {
                    status: 302,
                    headers: vec![
                        ("location".into(), format!("{STORAGE}/{id}")),
                        ("x-together-file-id".into(), id),
                    ],
                    body: String::new(),
                })
            }
            ("PUT", url) if url.starts_with(STORAGE) => {
                assert_eq!(header(r, "content-type"), Some("application/octet-stream"));
                if !self.script.put_failures.is_empty() {
                    let status = self.script.put_failures.remove(0);
                    return Answer::Response(HttpResponse {
                        status,
                        headers: vec![],
                        body: "<Error>SlowDown</Error>".into(),
                    });
                }
                let id = url.rsplit('/').next().unwrap().to_string();
                *self.files.get_mut(&id).expect("announced") = Some(r.body.clone());
                Answer::Response(HttpResponse {
                    status: 200,
                    headers: vec![],
                    body: String::new(),
                })
            }
            ("POST", "/batches") => {
                let body: Value = serde_json::from_str(&r.body).unwrap();
                let file = body["input_file_id"].as_str().unwrap().to_string();
                assert!(
                    self.files.get(&file).is_some_and(Option::is_some),
                    "create before the bytes were stored"
                );
                if self.script.create_500s > 0 {
                    self.script.create_500s -= 1;
                    return Answer::Response(json_answer(
                        500,
                        json!({"error": {"message": "boom"}}),
                    ));
                }
                let id = format!("batch-{}", self.batches.len() + 1);
                self.batches.push((id.clone(), file.clone(), 0));
                if self.script.create_drops > 0 {
                    self.script.create_drops -= 1;
                    return Answer::Lost;
                }
                ok(json!({"job": {"id": id, "status": "VALIDATING", "input_file_id": file}}))
            }
            ("GET", "/batches") => ok(Value::Array(
                self.batches
                    .iter()
                    .map(|(id, file, _)| json!({"id": id, "status": "VALIDATING", "input_file_id": file}))
                    .collect(),
            )),
            ("GET", p) if p.starts_with("/batches/") => {
                let id = &p["/batches/".len()..];
                let b = self.batches.iter_mut().find(|b| b.0 == id).unwrap();
                b.2 += 1;
                let (id, file) = (b.0.clone(), b.1.clone());
                ok(json!({"id": id, "status": "COMPLETED", "input_file_id": file, "output_file_id": format!("out-{file}"), "progress": 100}))
            }
            ("GET", p) if p.starts_with("/files/out-") => {
                let file = p["/files/out-".len()..].trim_end_matches("/content");
                let input = self.files[file].clone().unwrap();
                let lines: String = input
                    .lines()
                    .map(|l| {
                        let v: Value = serde_json::from_str(l).unwrap();
                        let text = v["body"]["messages"][0]["content"].as_str().unwrap();
                        format!(
                            "{}\n",
                            json!({"custom_id": v["custom_id"], "response": {"status_code": 200, "body": {"echo": text}}})
                        )
                    })
                    .collect();
                Answer::Response(HttpResponse {
                    status: 200,
                    headers: vec![],
                    body: lines,
                })
            }
            other => panic!("unexpected call {other:?}"),
        }
    }
}

struct Driver {
    eng: Interceptor,
    now: u64,
    fake: FakeTogether,
    answers: HashMap<RequestId, Output>,
    events: Vec<LifecycleEvent>,
    journal: Vec<String>,
    next: RequestId,
}

impl Driver {
    fn new(fake: FakeTogether, journal: &[String]) -> Self {
        let mut eng = Interceptor::new(config(), true, true, 1).unwrap();
        eng.load_cache(
            &journal
                .iter()
                .map(|line| format!("{line}\n"))
                .collect::<String>(),
        );
        Driver {
            eng,
            now: 0,
            fake,
            answers: HashMap::new(),
            events: Vec::new(),
            journal: journal.to_vec(),
            next: 1,
        }
    }

    /// Queue a request; calls it causes are answered, but no time passes.
    fn submit(&mut self, text: &str) -> RequestId {
        let request = self.next;
        self.next += 1;
        let http = chat(text);
        let arrived_ms = self.now;
        self.pump(
            Input::Submit {
                request,
                http,
                arrived_ms,
            },
            false,
        );
        request
    }

    /// Feed `input`, then answer every call the engine makes (in order) and fire its timers,
    /// until nothing is left to do.
    fn handle(&mut self, input: Input) {
        self.pump(input, true);
    }

    fn pump(&mut self, input: Input, let_time_pass: bool) {
        let mut inputs = vec![input];
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
                    Output::Event { event } => self.events.push(event),
                    Output::Persist { line } => self.journal.push(line),
                    _ => {}
                }
            }
            if inputs.is_empty() {
                match self.eng.next_deadline() {
                    Some(t) if let_time_pass && self.eng.open_requests() > 0 => {
                        self.now = self.now.max(t);
                        inputs.push(Input::Tick);
                    }
                    _ => return,
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

    /// Three requests, "a" "b" "c": one batch, run to the end.
    fn run_abc(&mut self) -> Vec<RequestId> {
        let ids = ["a", "b", "c"].iter().map(|t| self.submit(t)).collect();
        self.handle(Input::Flush);
        ids
    }

    fn body(&self, request: RequestId) -> Value {
        match &self.answers[&request] {
            Output::Respond {
                status: 200, body, ..
            } => serde_json::from_str(body).unwrap(),
            other => panic!("request {request}: {other:?}"),
        }
    }

    fn sent(&self, method: &str, prefix: &str) -> usize {
        self.fake
            .log
            .iter()
            .filter(|r| r.method == method && r.url.starts_with(prefix))
            .count()
    }
}

#[test]
fn the_upload_is_announced_then_put_then_created() {
    let mut d = Driver::new(FakeTogether::default(), &[]);
    let ids = d.run_abc();
    for (id, text) in ids.iter().zip(["a", "b", "c"]) {
        assert_eq!(d.body(*id), json!({"echo": text}));
    }
    let order: Vec<String> = d
        .fake
        .log
        .iter()
        .map(|r| format!("{} {}", r.method, r.url.split('?').next().unwrap()))
        .collect();
    assert_eq!(
        order[..3],
        [
            format!("POST {BASE}/files"),
            format!("PUT {STORAGE}/file-1"),
            format!("POST {BASE}/batches"),
        ]
    );
    assert_eq!(d.fake.batches.len(), 1);
}

#[test]
fn a_failed_put_is_retried_with_the_same_bytes() {
    let fake = FakeTogether::scripted(Script {
        put_failures: vec![503, 500],
        ..Script::default()
    });
    let mut d = Driver::new(fake, &[]);
    let a = d.submit("a");
    let b = d.submit("b");
    d.handle(Input::Flush);
    assert_eq!(d.body(a), json!({"echo": "a"}));
    assert_eq!(d.body(b), json!({"echo": "b"}));
    assert_eq!(
        d.sent("POST", &format!("{BASE}/files")),
        1,
        "announced once"
    );
    assert_eq!(d.sent("PUT", STORAGE), 3);
    let puts: Vec<&String> = d
        .fake
        .log
        .iter()
        .filter(|r| r.method == "PUT")
        .map(|r| &r.body)
        .collect();
    assert!(puts.iter().all(|b| *b == puts[0]));
    let retried: Vec<&str> = d
        .events
        .iter()
        .filter_map(|e| match e {
            LifecycleEvent::Retry { step, .. } => Some(step.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(retried, ["upload_finish", "upload_finish"]);
}

#[test]
fn a_lost_create_is_found_by_its_input_file_and_not_made_twice() {
    let fake = FakeTogether::scripted(Script {
        create_drops: 1,
        ..Script::default()
    });
    let mut d = Driver::new(fake, &[]);
    let ids = d.run_abc();
    assert_eq!(d.body(ids[2]), json!({"echo": "c"}));
    assert_eq!(d.fake.batches.len(), 1, "found, not created again");
    let listings = d
        .fake
        .log
        .iter()
        .filter(|r| r.method == "GET" && r.url == format!("{BASE}/batches"))
        .count();
    assert_eq!(listings, 1, "looked up once by its input file");
    assert_eq!(d.sent("POST", &format!("{BASE}/batches")), 1);
}

#[test]
fn a_create_that_failed_and_is_not_listed_is_created_again_from_the_same_file() {
    let fake = FakeTogether::scripted(Script {
        create_500s: 1,
        ..Script::default()
    });
    let mut d = Driver::new(fake, &[]);
    let ids = d.run_abc();
    assert_eq!(d.body(ids[0]), json!({"echo": "a"}));
    assert_eq!(d.sent("POST", &format!("{BASE}/batches")), 2);
    assert_eq!(d.sent("POST", &format!("{BASE}/files")), 1, "one upload");
    assert_eq!(d.fake.batches.len(), 1);
}

/// Run 1: submit "a", answer every call until `stop_at` matches a call, which is dropped there
/// (`made`: the fake still carries it out, as when the process dies after sending it). Returns
/// the fake and the journal run 1 wrote.
fn run_until_the_process_dies(
    script: Script,
    stop_at: impl Fn(&SerializableRequest) -> bool,
    made: bool,
) -> (FakeTogether, Vec<String>) {
    let mut d = Driver::new(FakeTogether::scripted(script), &[]);
    let r = d.next;
    d.next += 1;
    d.eng.handle(
        0,
        Input::Submit {
            request: r,
            http: chat("a"),
            arrived_ms: 0,
        },
    );
    d.eng.handle(0, Input::Flush);
    let mut pending: Vec<(CallId, SerializableRequest)> = Vec::new();
    let mut journal = Vec::new();
    loop {
        for o in d.eng.drain_outputs() {
            match o {
                Output::Send { call, http, .. } => pending.push((call, http)),
                Output::Persist { line } => journal.push(line),
                _ => {}
            }
        }
        let Some((call, http)) = pending.pop() else {
            panic!("run 1 ended before the call it should die at");
        };
        if stop_at(&http) {
            if made {
                d.fake.answer(&http);
            }
            return (d.fake, journal);
        }
        let input = d.call(call, &http);
        d.eng.handle(0, input);
    }
}

#[test]
fn a_previous_runs_lost_create_is_found_by_the_journalled_input_file_and_not_paid_twice() {
    // Run 1 dies with the create sent and unanswered; the journal holds the intent written
    // after the upload, with the uploaded file's id.
    let is_create =
        |r: &SerializableRequest| r.method == "POST" && r.url == format!("{BASE}/batches");
    let (fake, journal) = run_until_the_process_dies(Script::default(), is_create, true);
    assert_eq!(fake.batches.len(), 1);
    assert!(
        journal
            .iter()
            .any(|l| l.contains(r#""uploaded_file":"file-1""#)),
        "{journal:?}"
    );
    assert!(
        journal.iter().all(|l| !l.contains("tg-secret")),
        "no key in the journal"
    );

    let mut d2 = Driver::new(fake, &journal);
    let again = d2.submit("a");
    d2.handle(Input::Close);
    assert_eq!(
        d2.body(again),
        json!({"echo": "a"}),
        "run 1's batch, found and downloaded"
    );
    assert_eq!(d2.fake.batches.len(), 1, "nothing created twice");
    assert_eq!(
        d2.sent("POST", &format!("{BASE}/batches")),
        1,
        "run 2 created nothing"
    );
    assert_eq!(
        d2.sent("POST", &format!("{BASE}/files")),
        1,
        "nor uploaded anything"
    );
}

#[test]
fn a_previous_run_that_died_during_its_upload_is_submitted_again() {
    // Run 1 dies before its upload finished: no create can have been sent.
    let is_put = |r: &SerializableRequest| r.method == "PUT";
    let (fake, journal) = run_until_the_process_dies(Script::default(), is_put, false);
    assert!(fake.batches.is_empty());
    assert!(
        journal.iter().all(|l| !l.contains("uploaded_file")),
        "{journal:?}"
    );

    let mut d2 = Driver::new(fake, &journal);
    let again = d2.submit("a");
    d2.handle(Input::Close);
    assert_eq!(d2.body(again), json!({"echo": "a"}));
    assert_eq!(d2.fake.batches.len(), 1, "submitted once, in run 2");
}

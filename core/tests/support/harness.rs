//! The host: submits requests, answers the engine's calls through the fake, fires its timers and
//! records every output.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use batchling_core::cache::{CacheRecord, CompactLine};
use batchling_core::http::{HttpRequest, HttpResponse};
use batchling_core::interceptor::{
    CallId, Input, Interceptor, InterceptorConfig, LifecycleEvent, Output, RequestId,
    SerializableRequest,
};
use serde_json::Value;

use super::*;

#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
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
    /// A job's result line (`Input::SubmitJobs`).
    JobResult {
        ok: bool,
        line: String,
    },
}

impl Answer {
    pub fn status(&self) -> Option<u16> {
        match self {
            Answer::Respond { status, .. } => Some(*status),
            _ => None,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        match self {
            Answer::Respond { headers, .. } => header(headers, name),
            _ => None,
        }
    }

    pub fn json(&self) -> Value {
        match self {
            Answer::Respond { body, .. } => serde_json::from_str(body).expect("JSON body"),
            other => panic!("not a response: {other:?}"),
        }
    }

    pub fn fail_code(&self) -> Option<&str> {
        match self {
            Answer::Fail { code, .. } => Some(code),
            _ => None,
        }
    }

    /// A 200 carrying the fake's answer for (model, text).
    pub fn is_echo(&self, model: &str, text: &str) -> bool {
        match self {
            Answer::Respond {
                status: 200, body, ..
            } => body.contains(&Value::String(echo(model, text)).to_string()),
            _ => false,
        }
    }
}

pub struct Harness {
    pub eng: Interceptor,
    pub now: u64,
    pub fake: Fake,
    pub inflight: VecDeque<(CallId, SerializableRequest)>,
    pub outputs: Vec<Output>,
    pub answers: BTreeMap<RequestId, Vec<Answer>>,
    pub answered_after_drained: Vec<RequestId>,
    pub journal: Vec<String>,
    /// The journal as the host keeps it (the loaded one, then this run's lines): where stored
    /// answers are read, by line.
    pub stored: Vec<String>,
    pub events: Vec<LifecycleEvent>,
    pub sends: Vec<SerializableRequest>,
    pub drained: usize,
    pub next_request: RequestId,
    pub submitted: Vec<RequestId>,
    pub custom_ids: HashMap<RequestId, String>,
    /// Calls sent with `stream: "lines"`.
    pub streamed: HashSet<CallId>,
    /// `Some(seed)`: a 2xx answer to a streamed call is handed over in chunks of whole lines, of
    /// sizes drawn from `seed`, then the rest in the `Response` (as the JS host does).
    pub chunk_seed: Option<u64>,
    /// `ResponseChunk`s handed over.
    pub chunks: usize,
}

impl Harness {
    pub fn new(config: InterceptorConfig) -> Self {
        Harness::with(config, true, Fake::new())
    }

    pub fn with(config: InterceptorConfig, caching: bool, fake: Fake) -> Self {
        Harness {
            eng: Interceptor::new(config, caching, true, 0xfeed).expect("valid config"),
            now: 0,
            fake,
            inflight: VecDeque::new(),
            outputs: Vec::new(),
            answers: BTreeMap::new(),
            answered_after_drained: Vec::new(),
            journal: Vec::new(),
            stored: Vec::new(),
            events: Vec::new(),
            sends: Vec::new(),
            drained: 0,
            next_request: 1,
            submitted: Vec::new(),
            custom_ids: HashMap::new(),
            streamed: HashSet::new(),
            chunk_seed: None,
            chunks: 0,
        }
    }

    /// "kill -9": the engine and its in-flight calls are gone; the provider and journal remain.
    pub fn crash(self) -> (Fake, Vec<String>) {
        (self.fake, self.journal)
    }

    /// A new process on the same provider, loading the journal. Time goes on from `now`.
    pub fn restart(config: InterceptorConfig, fake: Fake, journal: &[String], now: u64) -> Self {
        let mut h = Harness::with(config, true, fake);
        h.now = now;
        let text: String = journal.iter().map(|line| format!("{line}\n")).collect();
        h.eng.load_cache(&text);
        h.stored = journal.to_vec();
        h.collect();
        h
    }

    /// [`Harness::restart`] whose host compacts the journal after loading it, if the core says
    /// so; the compacted journal is returned with the harness.
    pub fn restart_compacted(
        config: InterceptorConfig,
        fake: Fake,
        journal: &[String],
        now: u64,
    ) -> (Self, Option<Vec<String>>) {
        let mut h = Harness::restart(config, fake, journal, now);
        let Some(plan) = h.eng.journal_compaction() else {
            return (h, None);
        };
        let compacted: Vec<String> = plan
            .into_iter()
            .map(|line| match line {
                CompactLine::Write(text) => text,
                CompactLine::Copy(place) => h.stored[place.line as usize].clone(),
            })
            .collect();
        assert!(h.eng.journal_compacted());
        h.stored = compacted.clone();
        (h, Some(compacted))
    }

    /// Jobs in one `Input::SubmitJobs`, their requests built for `endpoint`.
    pub fn submit_jobs(
        &mut self,
        specs: Vec<batchling_core::jobs::JobSpec>,
        endpoint: &batchling_core::jobs::ProviderEndpoint,
    ) -> Vec<RequestId> {
        let mut jobs = Vec::new();
        for spec in specs {
            let http = batchling_core::jobs::build_request(&spec, endpoint).expect("job builds");
            let request = self.expect(&http);
            jobs.push(batchling_core::interceptor::JobSubmission {
                request,
                spec,
                http,
            });
        }
        let ids = jobs.iter().map(|job| job.request).collect();
        self.handle(Input::SubmitJobs { jobs });
        ids
    }

    pub fn submit(&mut self, http: HttpRequest) -> RequestId {
        let id = self.expect(&http);
        let arrived_ms = self.now;
        self.handle(Input::Submit {
            request: id,
            http,
            arrived_ms,
        });
        id
    }

    /// A new request id, its request's line expected by the fake.
    fn expect(&mut self, http: &HttpRequest) -> RequestId {
        let id = self.next_request;
        self.next_request += 1;
        if let Some(custom_id) = self.fake.expect(http) {
            self.custom_ids.insert(id, custom_id);
        }
        self.submitted.push(id);
        id
    }

    pub fn handle(&mut self, input: Input) {
        self.eng.handle(self.now, input);
        self.collect();
    }

    pub fn collect(&mut self) {
        for out in self.eng.drain_outputs() {
            let answered = match &out {
                Output::Send { call, http, stream } => {
                    if stream.is_some() {
                        self.streamed.insert(*call);
                    }
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
                        code: code.as_str().to_string(),
                        message: message.clone(),
                    },
                )),
                Output::JobResult {
                    request, ok, line, ..
                } => Some((
                    *request,
                    Answer::JobResult {
                        ok: *ok,
                        line: line.clone(),
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
                    self.stored.push(line.clone());
                    None
                }
                Output::RespondStored {
                    request,
                    fingerprint,
                    place,
                } => {
                    let line = &self.stored[place.line as usize];
                    match serde_json::from_str(line).expect("a stored answer is a record") {
                        CacheRecord::Result {
                            fingerprint: stored,
                            status,
                            headers,
                            body,
                            ..
                        } => {
                            assert_eq!(&stored, fingerprint, "the place holds this answer");
                            Some((
                                *request,
                                Answer::Respond {
                                    status,
                                    headers,
                                    body,
                                },
                            ))
                        }
                        other => panic!("{other:?} at an answer's place"),
                    }
                }
                Output::Event { event } => {
                    self.events.push(event.clone());
                    None
                }
                Output::Drained => {
                    self.drained += 1;
                    None
                }
                Output::Store { .. } => panic!("a store action outside fleet mode: {out:?}"),
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

    pub fn tick_at(&mut self, t: u64) {
        assert!(t >= self.now, "virtual time never goes back");
        self.now = t;
        self.handle(Input::Tick);
    }

    /// Answer the in-flight call at `index` through the fake.
    pub fn deliver_at(&mut self, index: usize) -> bool {
        let Some((call, req)) = self.inflight.remove(index) else {
            return false;
        };
        let input = match self.fake.serve(&req) {
            Reply::Http(response) => {
                let streamed = self.streamed.remove(&call);
                match self.chunk_seed {
                    Some(seed) if streamed && (200..300).contains(&response.status) => {
                        return self.deliver_in_chunks(call, response, seed);
                    }
                    _ => Input::Response { call, response },
                }
            }
            Reply::Transport => Input::TransportError {
                call,
                message: "connection reset by peer".into(),
            },
        };
        self.handle(input);
        true
    }

    /// `response`'s body in chunks of 1 to 4 whole lines (from `seed`), then the rest.
    pub fn deliver_in_chunks(
        &mut self,
        call: CallId,
        mut response: HttpResponse,
        seed: u64,
    ) -> bool {
        let body = std::mem::take(&mut response.body);
        let mut state = seed;
        let mut start = 0;
        let mut lines_in_chunk = 0;
        let mut want = 1 + (splitmix(&mut state) % 4) as usize;
        for (i, b) in body.bytes().enumerate() {
            if b != b'\n' {
                continue;
            }
            lines_in_chunk += 1;
            if lines_in_chunk == want {
                let text = body[start..=i].to_string();
                start = i + 1;
                lines_in_chunk = 0;
                want = 1 + (splitmix(&mut state) % 4) as usize;
                self.chunks += 1;
                self.handle(Input::ResponseChunk { call, text });
            }
        }
        response.body = body[start..].to_string();
        self.handle(Input::Response { call, response });
        true
    }

    pub fn deliver_next(&mut self) -> bool {
        self.deliver_at(0)
    }

    pub fn deliver_all(&mut self) {
        while self.deliver_next() {}
    }

    /// The next call reaches the provider, which acts on it, but the answer never comes back
    /// (the process is about to die).
    pub fn serve_without_answer(&mut self) -> SerializableRequest {
        let (_, req) = self.inflight.pop_front().expect("a call in flight");
        let _ = self.fake.serve(&req);
        req
    }

    /// Answer calls and fire timers until nothing is left to do (or `until`).
    pub fn run_until(&mut self, until: u64) {
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

    pub fn run(&mut self) {
        self.run_until(u64::MAX);
    }

    pub fn close_and_drain(&mut self) {
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
    pub fn step_until(&mut self, done: impl Fn(&Harness) -> bool) {
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

    pub fn journal_has(&self, record_type: &str) -> bool {
        self.journal
            .iter()
            .any(|l| serde_json::from_str::<Value>(l).is_ok_and(|v| v["type"] == record_type))
    }

    pub fn only(&self, id: RequestId) -> &Answer {
        let answers = self.answers.get(&id).map(Vec::as_slice).unwrap_or_default();
        assert_eq!(
            answers.len(),
            1,
            "request {id} must be answered exactly once: {answers:?}"
        );
        &answers[0]
    }

    pub fn sent(&self, step: Step) -> usize {
        self.sends
            .iter()
            .filter(|r| classify_call(r).is_some_and(|(_, s, _)| s == step))
            .count()
    }

    pub fn sent_steps(&self) -> Vec<Step> {
        self.sends
            .iter()
            .filter_map(|r| classify_call(r).map(|(_, s, _)| s))
            .collect()
    }

    pub fn retry_delays(&self) -> Vec<(String, u64)> {
        self.events
            .iter()
            .filter_map(|e| match e {
                LifecycleEvent::Retry { step, delay_ms, .. } => Some((step.clone(), *delay_ms)),
                _ => None,
            })
            .collect()
    }

    pub fn warnings(&self) -> Vec<String> {
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
    pub fn check_invariants(&self) {
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

    pub fn check_no_secrets(&self) {
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

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

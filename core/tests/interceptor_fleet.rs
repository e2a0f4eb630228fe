//! Fleet mode: several engines (`Interceptor`s, one per process) share one store through their
//! fleet members, and one provider (the shared fake, OpenAI's upload → create → poll →
//! download). Virtual time, deterministic. The store is simulated here with the semantics of
//! each `StoreAction` (keys with expiry, each action atomic), as Redis executes them.

mod support;

use std::collections::{BTreeMap, HashMap, VecDeque};

use batchling_core::cache;
use batchling_core::fleet::{ActionId, FleetConfig, StoreAction};
use batchling_core::http::HttpRequest;
use batchling_core::interceptor::{
    CallId, Input, Interceptor, InterceptorConfig, LifecycleEvent, Output, RequestId,
    SerializableRequest,
};
use batchling_core::providers::{self, ProviderId};
use proptest::prelude::*;

use support::*;

const LEASE_MS: u64 = 30_000;
const GRACE_MS: u64 = 10_000;
const POLL_MS: u64 = 1_000;

// ---- the processes --------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
enum Got {
    Respond { status: u16, body: String },
    Fail { code: String, message: String },
}

struct Node {
    eng: Interceptor,
    inflight: VecDeque<(CallId, SerializableRequest)>,
    stores: VecDeque<(ActionId, StoreAction, Option<String>)>,
    answers: BTreeMap<RequestId, Vec<Got>>,
    submitted: Vec<RequestId>,
    events: Vec<LifecycleEvent>,
    outputs: Vec<Output>,
    drained: bool,
    alive: bool,
}

fn fleet_config(owner: &str) -> InterceptorConfig {
    let mut fleet = FleetConfig::new(owner);
    fleet.lease_ms = LEASE_MS;
    fleet.grace_ms = GRACE_MS;
    fleet.poll_ms = POLL_MS;
    InterceptorConfig {
        fleet: Some(fleet),
        ..config(10)
    }
}

impl Node {
    fn new(owner: &str) -> Self {
        Node::with_config(owner, fleet_config(owner))
    }

    fn with_config(owner: &str, config: InterceptorConfig) -> Self {
        Node {
            eng: Interceptor::new(config, false, true, owner.len() as u64)
                .expect("valid fleet config"),
            inflight: VecDeque::new(),
            stores: VecDeque::new(),
            answers: BTreeMap::new(),
            submitted: Vec::new(),
            events: Vec::new(),
            outputs: Vec::new(),
            drained: false,
            alive: true,
        }
    }

    fn handle(&mut self, now: u64, input: Input) {
        self.eng.handle(now, input);
        for out in self.eng.drain_outputs() {
            match &out {
                Output::Send { call, http, .. } => self.inflight.push_back((*call, http.clone())),
                Output::Store { action, op, answer } => {
                    self.stores.push_back((*action, op.clone(), answer.clone()))
                }
                Output::Respond {
                    request,
                    status,
                    body,
                    ..
                } => self
                    .answers
                    .entry(*request)
                    .or_default()
                    .push(Got::Respond {
                        status: *status,
                        body: body.clone(),
                    }),
                Output::Fail {
                    request,
                    code,
                    message,
                } => self.answers.entry(*request).or_default().push(Got::Fail {
                    code: code.as_str().to_string(),
                    message: message.clone(),
                }),
                Output::Persist { line } => panic!("no journal line in fleet mode: {line}"),
                Output::RespondStored { .. } => panic!("no file cache in fleet mode"),
                Output::Event { event } => self.events.push(event.clone()),
                Output::Drained => self.drained = true,
                other => panic!("unexpected output {other:?}"),
            }
            self.outputs.push(out);
        }
    }

    fn only(&self, request: RequestId) -> &Got {
        let got = self.answers.get(&request).map(Vec::as_slice).unwrap_or(&[]);
        assert_eq!(got.len(), 1, "request {request} answered once: {got:?}");
        &got[0]
    }
}

struct World {
    now: u64,
    fake: Fake,
    store: FleetStore,
    nodes: Vec<Node>,
    next_request: RequestId,
}

impl World {
    fn new(owners: &[&str]) -> Self {
        World {
            now: 0,
            fake: Fake::new(),
            store: FleetStore::default(),
            nodes: owners.iter().map(|o| Node::new(o)).collect(),
            next_request: 1,
        }
    }

    fn submit(&mut self, node: usize, http: HttpRequest) -> RequestId {
        let request = self.next_request;
        self.next_request += 1;
        self.fake.expect(&http).expect("batchable");
        let n = &mut self.nodes[node];
        n.submitted.push(request);
        n.handle(
            self.now,
            Input::Submit {
                request,
                http,
                arrived_ms: self.now,
            },
        );
        request
    }

    fn input(&mut self, node: usize, input: Input) {
        self.nodes[node].handle(self.now, input);
    }

    /// Execute one store action of `node` and hand it its outcome.
    fn exec_store(&mut self, node: usize) -> bool {
        let Some((action, op, answer)) = self.nodes[node].stores.pop_front() else {
            return false;
        };
        let outcome = self.store.exec(self.now, &op, answer.as_ref());
        self.input(node, Input::StoreOutcome { action, outcome });
        true
    }

    /// Answer one provider call of `node` through the fake.
    fn deliver(&mut self, node: usize) -> bool {
        let Some((call, req)) = self.nodes[node].inflight.pop_front() else {
            return false;
        };
        let input = match self.fake.serve(&req) {
            Reply::Http(response) => Input::Response { call, response },
            Reply::Transport => Input::TransportError {
                call,
                message: "connection reset by peer".into(),
            },
        };
        self.input(node, input);
        true
    }

    /// Do everything that is due now, at every live node.
    fn settle(&mut self) {
        loop {
            let mut progressed = false;
            for i in 0..self.nodes.len() {
                if !self.nodes[i].alive {
                    continue;
                }
                while self.exec_store(i) || self.deliver(i) {
                    progressed = true;
                }
            }
            if !progressed {
                return;
            }
        }
    }

    fn next_deadline(&self) -> Option<u64> {
        self.nodes
            .iter()
            .filter(|n| n.alive)
            .filter_map(|n| n.eng.next_deadline())
            .min()
    }

    fn tick_to(&mut self, t: u64) {
        self.now = self.now.max(t);
        for i in 0..self.nodes.len() {
            if self.nodes[i].alive {
                self.input(i, Input::Tick);
            }
        }
    }

    /// Run until nothing is left to do, or time `until`.
    fn run_until(&mut self, until: u64) {
        for _ in 0..100_000 {
            self.settle();
            match self.next_deadline() {
                Some(d) if d <= until => self.tick_to(d),
                _ => return,
            }
        }
        panic!("the fleet did not settle");
    }

    /// Run until `done` holds (or panic after a day of virtual time).
    fn run_while(&mut self, mut busy: impl FnMut(&World) -> bool) {
        for _ in 0..100_000 {
            if !busy(self) {
                return;
            }
            self.settle();
            if !busy(self) {
                return;
            }
            let d = self.next_deadline().expect("something pending");
            self.tick_to(d);
            assert!(self.now < 86_400_000, "condition never reached");
        }
        panic!("condition never reached");
    }

    /// One thing at a time (a store action, else a provider call, else the next timer) until
    /// `done` holds.
    fn step_until(&mut self, done: impl Fn(&World) -> bool) {
        for _ in 0..100_000 {
            if done(self) {
                return;
            }
            let live: Vec<usize> = (0..self.nodes.len())
                .filter(|&i| self.nodes[i].alive)
                .collect();
            if live.iter().any(|&i| self.exec_store(i)) || live.iter().any(|&i| self.deliver(i)) {
                continue;
            }
            let d = self.next_deadline().expect("something pending");
            self.tick_to(d);
        }
        panic!("condition never reached");
    }

    fn kill(&mut self, node: usize) {
        let n = &mut self.nodes[node];
        n.alive = false;
        n.inflight.clear();
        n.stores.clear();
    }

    fn close_all(&mut self) {
        for i in 0..self.nodes.len() {
            if self.nodes[i].alive {
                self.input(i, Input::Close);
            }
        }
        self.run_while(|w| w.nodes.iter().any(|n| n.alive && !n.drained));
    }

    /// Lines per custom id over every batch the provider was asked to create.
    fn lines_per_request(&self) -> HashMap<String, usize> {
        let mut lines = HashMap::new();
        for batch in &self.fake.batches {
            for (custom_id, _) in &batch.lines {
                *lines.entry(custom_id.clone()).or_insert(0) += 1;
            }
        }
        lines
    }

    fn check(&self) {
        assert!(
            self.fake.violations.is_empty(),
            "the provider saw: {:#?}",
            self.fake.violations
        );
        for (key, value) in self.store.values() {
            for secret in all_secrets() {
                assert!(!value.contains(secret), "secret in the store at {key}");
                assert!(!key.contains(secret), "secret in a store key");
            }
        }
        for node in &self.nodes {
            for out in &node.outputs {
                if matches!(out, Output::Send { .. }) {
                    continue;
                }
                let text = serde_json::to_string(out).unwrap();
                for secret in all_secrets() {
                    assert!(!text.contains(secret), "secret leaked into {text}");
                }
            }
        }
    }
}

fn chat(text: &str) -> HttpRequest {
    openai_chat(OPENAI_KEYS[0], OPENAI_MODELS[0], text)
}

fn echoed(got: &Got, text: &str) -> bool {
    matches!(got, Got::Respond { status: 200, body } if body.contains(&echo(OPENAI_MODELS[0], text)))
}

fn cache_hits(node: &Node) -> usize {
    node.events
        .iter()
        .filter(|e| matches!(e, LifecycleEvent::CacheHit { .. }))
        .count()
}

// ---- tests ----------------------------------------------------------------------------------

#[test]
fn the_same_request_at_two_processes_is_one_batch_line_and_both_get_its_answer() {
    let mut w = World::new(&["w1", "w2"]);
    let a = w.submit(0, chat("hello fleet"));
    let b = w.submit(1, chat("hello fleet"));
    let other = w.submit(1, chat("only at w2"));
    w.run_until(u64::MAX);

    assert!(echoed(w.nodes[0].only(a), "hello fleet"));
    assert!(echoed(w.nodes[1].only(b), "hello fleet"));
    assert!(echoed(w.nodes[1].only(other), "only at w2"));
    assert_eq!(
        w.nodes[0].only(a),
        w.nodes[1].only(b),
        "both callers get the same answer"
    );
    let lines = w.lines_per_request();
    assert_eq!(lines.len(), 2, "two distinct requests: {lines:?}");
    assert!(lines.values().all(|&n| n == 1), "one line each: {lines:?}");
    assert_eq!(w.fake.served(Step::Create), 2, "one batch per process");
    // The waiter was answered from the store, not by a batch of its own.
    assert_eq!(cache_hits(&w.nodes[1]), 1);
    assert!(w
        .store
        .values()
        .any(|(k, v)| k.starts_with("answer:") && v.contains("hello fleet")));
    w.close_all();
    // Every claim is released once its answer is stored.
    assert!(
        !w.store.values().any(|(k, _)| k.starts_with("req:")),
        "claims left: {:?}",
        w.store.values().map(|(k, _)| k).collect::<Vec<_>>()
    );
    w.check();
}

#[test]
fn identical_requests_at_one_process_share_its_line_and_a_late_one_is_answered_from_the_store() {
    let mut w = World::new(&["w1", "w2"]);
    let a1 = w.submit(0, chat("shared"));
    let a2 = w.submit(0, reordered(chat("shared")));
    w.run_until(u64::MAX);
    assert!(echoed(w.nodes[0].only(a1), "shared"));
    assert_eq!(w.nodes[0].only(a1), w.nodes[0].only(a2));
    let creates = w.fake.served(Step::Create);

    // Much later, at the other process: straight from the store, no batch.
    w.now += 60_000;
    let late = w.submit(1, chat("shared"));
    w.run_until(u64::MAX);
    assert!(echoed(w.nodes[1].only(late), "shared"));
    assert_eq!(w.nodes[1].only(late), w.nodes[0].only(a1));
    assert_eq!(w.fake.served(Step::Create), creates, "no new batch");
    assert_eq!(cache_hits(&w.nodes[1]), 1);
    assert!(w.nodes[1].inflight.is_empty() && w.fake.served(Step::Upload) == 1);
    w.close_all();
    w.check();
}

#[test]
fn a_process_killed_after_its_create_is_taken_over_by_one_with_a_waiting_caller() {
    let mut w = World::new(&["w1", "w2"]);
    let a = w.submit(0, chat("orphaned"));
    // w1 claims, fences, uploads and creates; the create is answered and recorded.
    w.run_while(|w| w.fake.batches.is_empty() || !w.nodes[0].stores.is_empty());
    w.settle();
    assert_eq!(w.fake.batches.len(), 1);
    let b = w.submit(1, chat("orphaned"));
    w.settle();
    w.kill(0);
    assert!(
        !w.nodes[0].answers.contains_key(&a),
        "w1 died before answering"
    );

    w.run_until(u64::MAX);
    assert!(echoed(w.nodes[1].only(b), "orphaned"));
    assert_eq!(w.fake.served(Step::Create), 1, "never created twice");
    assert_eq!(w.lines_per_request().values().copied().max(), Some(1));
    // w2 polled the batch w1 created (after w1's lease lapsed).
    let polls_by_w2 = w.nodes[1]
        .outputs
        .iter()
        .filter(|o| matches!(o, Output::Send { http, .. } if classify_call(http).is_some_and(|(_, s, _)| s == Step::Poll)))
        .count();
    assert!(polls_by_w2 >= 1);
    assert!(w.now >= LEASE_MS, "taken over only after the lease");
    w.close_all();
    w.check();
}

#[test]
fn a_taken_over_batch_stores_every_line_it_holds_not_only_the_waiting_ones() {
    let mut w = World::new(&["w1", "w2"]);
    w.submit(0, chat("first of two"));
    w.submit(0, chat("second of two"));
    w.run_while(|w| w.fake.batches.is_empty() || !w.nodes[0].stores.is_empty());
    w.settle();
    assert_eq!(w.fake.batches.len(), 1);
    assert_eq!(w.fake.batches[0].lines.len(), 2, "one batch of both");
    let waiting = w.submit(1, chat("first of two"));
    w.settle();
    w.kill(0);
    w.run_until(u64::MAX);
    assert!(echoed(w.nodes[1].only(waiting), "first of two"));
    let stored = w
        .store
        .values()
        .filter(|(k, v)| k.starts_with("answer:") && v.contains("of two"))
        .count();
    assert_eq!(
        stored, 2,
        "the line no caller here waited for is stored too"
    );
    // So a later caller of it is answered from the store, with no batch of its own.
    let later = w.submit(1, chat("second of two"));
    w.run_until(u64::MAX);
    assert!(echoed(w.nodes[1].only(later), "second of two"));
    assert_eq!(w.fake.served(Step::Create), 1);
    w.close_all();
    w.check();
}

#[test]
fn a_process_killed_between_its_intent_and_the_create_answer_is_found_by_tag() {
    let mut w = World::new(&["w1", "w2"]);
    w.submit(0, chat("in doubt"));
    // Up to the create: w1 sends it, the provider creates the batch, w1 dies before the answer.
    w.step_until(|w| {
        w.nodes[0]
            .inflight
            .iter()
            .any(|(_, r)| classify_call(r).is_some_and(|(_, s, _)| s == Step::Create))
    });
    let (_, create) = w.nodes[0].inflight.pop_front().unwrap();
    let _ = w.fake.serve(&create);
    w.kill(0);
    let b = w.submit(1, chat("in doubt"));
    w.run_until(u64::MAX);
    assert!(echoed(w.nodes[1].only(b), "in doubt"));
    assert_eq!(
        w.fake.served(Step::Create),
        1,
        "found by its tag, not sent again"
    );
    assert!(w.fake.served(Step::Find) >= 1);
    w.close_all();
    w.check();
}

#[test]
fn a_lost_create_answer_is_looked_up_by_tag_after_the_grace_never_sent_twice() {
    let mut w = World::new(&["w1"]);
    w.fake
        .fault(Some(ProviderId::OpenAi), Step::Create, Fault::LostAnswer);
    let a = w.submit(0, chat("lost answer"));
    w.run_until(u64::MAX);
    assert!(echoed(w.nodes[0].only(a), "lost answer"));
    assert_eq!(w.fake.served(Step::Create), 1);
    assert_eq!(w.fake.served(Step::Find), 1);
    let create_at = w.fake.batches.len();
    assert_eq!(create_at, 1);
    w.close_all();
    w.check();
}

#[test]
fn a_create_lost_before_it_reached_the_provider_is_batched_again_once_the_look_up_finds_nothing() {
    let mut w = World::new(&["w1"]);
    w.fake
        .fault(Some(ProviderId::OpenAi), Step::Create, Fault::Transport);
    let a = w.submit(0, chat("never arrived"));
    w.run_until(u64::MAX);
    assert!(echoed(w.nodes[0].only(a), "never arrived"));
    assert_eq!(
        w.fake.served(Step::Create),
        2,
        "created again after the look-up"
    );
    assert_eq!(w.fake.served(Step::Find), 1);
    assert_eq!(w.fake.batches.len(), 1, "one batch exists");
    w.close_all();
    w.check();
}

#[test]
fn a_create_that_cannot_go_by_its_send_by_time_is_not_sent_and_looked_up_instead() {
    let mut w = World::new(&["w1"]);
    let a = w.submit(0, chat("slow upload"));
    w.step_until(|w| {
        w.nodes[0]
            .inflight
            .iter()
            .any(|(_, r)| classify_call(r).is_some_and(|(_, s, _)| s == Step::Upload))
    });
    // The upload's answer comes after the send-by time (the claims are renewed meanwhile, but
    // the create was due while the claims it was fenced under were surely held).
    let upload = w.nodes[0].inflight.pop_front().unwrap();
    w.run_until(w.now + LEASE_MS + 1);
    w.tick_to(w.now.max(LEASE_MS + 1));
    w.nodes[0].inflight.push_back(upload);
    w.deliver(0);
    assert_eq!(w.fake.served(Step::Create), 0, "too late: not sent");
    assert!(
        !w.nodes[0]
            .inflight
            .iter()
            .any(|(_, r)| classify_call(r).is_some_and(|(_, s, _)| s == Step::Create)),
        "no create in flight"
    );
    w.run_until(u64::MAX);
    assert!(echoed(w.nodes[0].only(a), "slow upload"));
    let steps: Vec<_> = w.fake.log.iter().map(|(_, s, _)| *s).collect();
    assert_eq!(
        w.fake.served(Step::Find),
        1,
        "looked up by its tag first: {steps:?}"
    );
    assert_eq!(w.fake.served(Step::Create), 1, "then created once");
    w.close_all();
    w.check();
}

/// Fail every store action of `node` whose op matches, until none is left; others execute.
fn fail_store_actions(w: &mut World, node: usize, fails: impl Fn(&StoreAction) -> bool) -> usize {
    let mut failed = 0;
    for _ in 0..1000 {
        let mut progressed = false;
        while let Some((action, op, answer)) = w.nodes[node].stores.pop_front() {
            progressed = true;
            if fails(&op) {
                failed += 1;
                let error = "connect ECONNREFUSED 127.0.0.1:6379".to_string();
                w.input(node, Input::StoreFailed { action, error });
            } else {
                let outcome = w.store.exec(w.now, &op, answer.as_ref());
                w.input(node, Input::StoreOutcome { action, outcome });
            }
        }
        while w.deliver(node) {
            progressed = true;
        }
        if !progressed {
            match w.next_deadline() {
                Some(d) if d < w.now + 200_000 => w.tick_to(d),
                _ => return failed,
            }
        }
        if w.nodes[node]
            .submitted
            .iter()
            .all(|r| w.nodes[node].answers.contains_key(r))
        {
            return failed;
        }
    }
    failed
}

#[test]
fn an_unreachable_store_fails_the_callers_with_a_typed_error_and_nothing_is_created() {
    // The claim cannot be written.
    let mut w = World::new(&["w1"]);
    let a = w.submit(0, chat("no store"));
    let b = w.submit(0, chat("no store"));
    let failed = fail_store_actions(&mut w, 0, |op| matches!(op, StoreAction::Claim { .. }));
    assert!(failed >= 1);
    for r in [a, b] {
        let Got::Fail { code, message } = w.nodes[0].only(r) else {
            panic!("expected a failure");
        };
        assert_eq!(code, "ERR_BATCHLING_STORE_UNAVAILABLE");
        assert!(
            message.contains("unreachable") && message.contains("ECONNREFUSED"),
            "{message}"
        );
        assert!(message.contains("nothing was sent"), "{message}");
    }
    assert!(w.fake.log.is_empty(), "no provider call at all");

    // Back: the caller's retry goes through.
    let again = w.submit(0, chat("no store"));
    w.run_until(u64::MAX);
    assert!(echoed(w.nodes[0].only(again), "no store"));
    w.close_all();
    w.check();

    // The intent cannot be written (claimed, then the store goes away): no create.
    let mut w = World::new(&["w1"]);
    let c = w.submit(0, chat("fence fails"));
    let d = w.submit(0, chat("fence fails too"));
    let failed = fail_store_actions(&mut w, 0, |op| {
        matches!(op, StoreAction::WriteIfOwner { .. })
    });
    assert_eq!(failed, 1, "one intent for the batch of both");
    for r in [c, d] {
        assert_eq!(
            w.nodes[0].only(r),
            &Got::Fail {
                code: "ERR_BATCHLING_STORE_UNAVAILABLE".into(),
                message: match w.nodes[0].only(r) {
                    Got::Fail { message, .. } => message.clone(),
                    other => panic!("{other:?}"),
                }
            }
        );
    }
    assert_eq!(
        w.fake.served(Step::Create),
        0,
        "never created without its intent"
    );
    assert_eq!(w.fake.served(Step::Upload), 0);
    w.close_all();
    w.check();
}

#[test]
fn a_waiter_whose_poll_fails_gets_the_typed_error_and_the_owner_is_unaffected() {
    let mut w = World::new(&["w1", "w2"]);
    let a = w.submit(0, chat("polled"));
    w.settle();
    let b = w.submit(1, chat("polled"));
    // w2's claim is refused (held by w1); its first poll of the answer fails.
    let failed = fail_store_actions(
        &mut w,
        1,
        |op| matches!(op, StoreAction::Read { keys } if keys.len() == 1),
    );
    assert!(failed >= 1);
    assert_eq!(
        w.nodes[1].only(b),
        &match w.nodes[1].only(b) {
            Got::Fail { code, message } if code == "ERR_BATCHLING_STORE_UNAVAILABLE" => Got::Fail {
                code: code.clone(),
                message: message.clone()
            },
            other => panic!("{other:?}"),
        }
    );
    w.run_until(u64::MAX);
    assert!(echoed(w.nodes[0].only(a), "polled"));
    w.close_all();
    w.check();
}

#[test]
fn close_waits_until_every_answer_is_stored_and_every_claim_released() {
    let mut w = World::new(&["w1"]);
    let a = w.submit(0, chat("closing"));
    w.input(0, Input::Close);
    w.step_until(|w| !w.nodes[0].answers.is_empty());
    assert!(echoed(w.nodes[0].only(a), "closing"));
    // The answer went out to the caller, but its put and release are still with the host.
    let pending: Vec<_> = w.nodes[0]
        .stores
        .iter()
        .map(|(_, op, _)| op.clone())
        .collect();
    assert!(
        pending
            .iter()
            .any(|op| matches!(op, StoreAction::PutAnswer { .. })),
        "{pending:?}"
    );
    assert!(
        !w.nodes[0].drained,
        "not drained before its answer is stored"
    );
    w.exec_store(0); // the put
    assert!(
        !w.nodes[0].drained,
        "not drained before its claim is released"
    );
    w.settle();
    assert!(w.nodes[0].drained);
    assert!(!w.store.values().any(|(k, _)| k.starts_with("req:")));
    w.check();
}

/// The request (of `texts`) with a line in two batches, and the one with a line in one.
fn split_by_lines(w: &World, texts: [&str; 2]) -> (&'static str, &'static str) {
    let lines = w.lines_per_request();
    let lines_of = |text: &str| {
        let route = providers::classify(&chat(text)).unwrap();
        lines[&cache::custom_id(&cache::fingerprint(&route).to_string())]
    };
    let texts: [&'static str; 2] = texts.map(|t| &*Box::leak(t.to_string().into_boxed_str()));
    match (lines_of(texts[0]), lines_of(texts[1])) {
        (2, 1) => (texts[0], texts[1]),
        (1, 2) => (texts[1], texts[0]),
        other => panic!("expected one request in two batches, one in one: {other:?}"),
    }
}

#[test]
fn a_line_that_did_not_run_goes_into_a_new_batch_and_no_process_resumes_the_ended_one() {
    let mut w = World::new(&["w1", "w2"]);
    // The first batch expires with half its lines run; the one left goes into a second batch.
    w.fake.fates.push_back(Fate::Expire);
    let a = w.submit(0, chat("runs first"));
    let b = w.submit(0, chat("runs second"));
    w.run_until(u64::MAX);
    assert!(echoed(w.nodes[0].only(a), "runs first"));
    assert!(echoed(w.nodes[0].only(b), "runs second"));
    assert_eq!(w.fake.served(Step::Create), 2);
    let (resubmitted, _) = split_by_lines(&w, ["runs first", "runs second"]);
    assert!(w.nodes[0]
        .events
        .iter()
        .any(|e| matches!(e, LifecycleEvent::LinesResubmitted { requests: 1, .. })));

    // Another process asking for it later gets the answer of the batch that ran it.
    let c = w.submit(1, chat(resubmitted));
    w.run_until(u64::MAX);
    assert!(echoed(w.nodes[1].only(c), resubmitted));
    assert_eq!(w.fake.served(Step::Create), 2, "answered from the store");
    assert_eq!(cache_hits(&w.nodes[1]), 1);
    w.close_all();
    assert!(!w.store.values().any(|(k, _)| k.starts_with("req:")));
    w.check();
}

#[test]
fn without_resubmission_a_line_that_did_not_run_is_answered_with_the_batch_end_and_batched_anew_later(
) {
    let config = |owner: &str| InterceptorConfig {
        resubmit: false,
        ..fleet_config(owner)
    };
    let mut w = World::new(&[]);
    w.nodes = vec![
        Node::with_config("w1", config("w1")),
        Node::with_config("w2", config("w2")),
    ];
    w.fake.fates.push_back(Fate::Expire);
    let a = w.submit(0, chat("one"));
    let b = w.submit(0, chat("two"));
    w.run_until(u64::MAX);
    let got = [w.nodes[0].only(a).clone(), w.nodes[0].only(b).clone()];
    let expired: Vec<&Got> = got
        .iter()
        .filter(|g| matches!(g, Got::Respond { status: 504, .. }))
        .collect();
    assert_eq!(expired.len(), 1, "one caller gets the batch's end: {got:?}");
    assert_eq!(w.fake.served(Step::Create), 1);
    let not_run = if echoed(&got[0], "one") { "two" } else { "one" };

    // The ended batch no longer holds it for the fleet: a later caller (an SDK's retry, at
    // another process) gets it batched anew, not the expired batch's end again.
    let c = w.submit(1, chat(not_run));
    w.run_until(u64::MAX);
    assert!(
        echoed(w.nodes[1].only(c), not_run),
        "{:?}",
        w.nodes[1].only(c)
    );
    assert_eq!(w.fake.served(Step::Create), 2);
    w.close_all();
    assert!(!w.store.values().any(|(k, _)| k.starts_with("req:")));
    w.check();
}

#[test]
fn fleet_options_are_checked_and_named() {
    let err = |json: &str| Interceptor::from_options_json(json).err().expect(json);
    let e = err(r#"{"fleet":{"owner":"has space"}}"#);
    assert_eq!(e.option, "fleet.owner");
    let e = err(r#"{"fleet":{"owner":"w1","leaseMs":2}}"#);
    assert_eq!(e.option, "fleet.leaseMs");
    assert!(e.message.contains("at least 3"), "{e}");
    let e = err(r#"{"fleet":{"owner":"w1","pollMs":0}}"#);
    assert_eq!(e.option, "fleet.pollMs");
    let e = err(r#"{"fleet":{"owner":"w1","graceMs":0}}"#);
    assert_eq!(e.option, "fleet.graceMs");
    let e = err(r#"{"fleet":{"owner":"w1","answerTtlMs":0}}"#);
    assert_eq!(e.option, "fleet.answerTtlMs");
    let e = err(r#"{"fleet":{"owner":"w1","recordTtlMs":0}}"#);
    assert_eq!(e.option, "fleet.recordTtlMs");
    let e = err(r#"{"fleet":{"owner":"w1","lease":5}}"#);
    assert!(e.message.contains("lease"), "{e}");
    let e = err(r#"{"fleet":{"owner":"w1"},"cache":true}"#);
    assert_eq!(e.option, "fleet");
    assert!(e.message.contains("cache"), "{e}");
    let e = err(r#"{"fleet":{"owner":"w1"},"deadlineMs":5000}"#);
    assert_eq!(e.option, "deadlineMs");
    assert!(e.message.contains("fleet"), "{e}");
    // Direct construction refuses the file cache alongside the fleet too.
    let e = Interceptor::new(fleet_config("w1"), true, true, 0)
        .err()
        .unwrap();
    assert_eq!(e.option, "fleet");
    // Valid: `cache` left out (off in fleet mode) or false.
    assert!(Interceptor::from_options_json(r#"{"fleet":{"owner":"w-1_A","leaseMs":3}}"#).is_ok());
    assert!(Interceptor::from_options_json(r#"{"fleet":{"owner":"w1"},"cache":false}"#).is_ok());
}

#[test]
fn a_dry_run_touches_no_store_and_a_deadline_header_is_refused_in_fleet_mode() {
    let mut config = fleet_config("w1");
    config.dry_run = true;
    let mut eng = Interceptor::new(config, false, true, 0).unwrap();
    eng.handle(
        0,
        Input::Submit {
            request: 1,
            http: chat("dry"),
            arrived_ms: 0,
        },
    );
    eng.handle(0, Input::Close);
    let outs = eng.drain_outputs();
    assert!(
        !outs.iter().any(|o| matches!(o, Output::Store { .. })),
        "{outs:?}"
    );
    assert!(outs
        .iter()
        .any(|o| matches!(o, Output::Respond { request: 1, .. })));
    assert!(outs.iter().any(|o| matches!(o, Output::Drained)));

    let mut w = World::new(&["w1"]);
    let mut http = chat("in a hurry");
    http.headers
        .push(("x-batchling-deadline-ms".into(), "5000".into()));
    let r = w.submit(0, http);
    let Got::Fail { code, message } = w.nodes[0].only(r) else {
        panic!("refused");
    };
    assert_eq!(code, "ERR_BATCHLING_INVALID_DEADLINE");
    assert!(message.contains("fleet"), "{message}");
    assert!(w.nodes[0].stores.is_empty());
}

#[test]
fn a_cancelled_queued_request_releases_its_claim() {
    let mut w = World::new(&["w1"]);
    let a = w.submit(0, chat("changed my mind"));
    w.settle(); // claimed, checked, queued
    assert!(w.store.values().any(|(k, _)| k.starts_with("req:")));
    w.input(0, Input::Cancel { request: a });
    w.settle();
    assert!(
        matches!(w.nodes[0].only(a), Got::Fail { code, .. } if code == "ERR_BATCHLING_CANCELLED")
    );
    assert!(
        !w.store.values().any(|(k, _)| k.starts_with("req:")),
        "claim released"
    );
    w.close_all();
    assert_eq!(w.fake.served(Step::Create), 0);
}

// ---- random crashes -------------------------------------------------------------------------

/// What one step of the random schedule does.
fn random_run(seed: u64, steps: usize) {
    let mut rng = RandomFaults {
        state: seed,
        budget: 0,
        percent: 0,
    };
    let owners = ["n0", "n1", "n2"];
    let mut w = World::new(&owners);
    let mut restarts = 0;
    let texts = ["a", "b", "c", "d", "e", "f"];
    for _ in 0..steps {
        let alive: Vec<usize> = (0..w.nodes.len()).filter(|&i| w.nodes[i].alive).collect();
        let node = alive[(rng.next() % alive.len() as u64) as usize];
        match rng.next() % 10 {
            0..=2 => {
                let text = texts[(rng.next() % texts.len() as u64) as usize];
                w.submit(node, chat(text));
            }
            3 if rng.next().is_multiple_of(4) => {
                // The store is unreachable for this one action.
                if let Some((action, _, _)) = w.nodes[node].stores.pop_front() {
                    let error = "connect ECONNREFUSED".to_string();
                    w.input(node, Input::StoreFailed { action, error });
                }
            }
            3..=4 => {
                w.exec_store(node);
            }
            5..=6 => {
                w.deliver(node);
            }
            7..=8 => {
                let d = w.next_deadline().unwrap_or(w.now + 1_000);
                let jump = rng.next() % 20_000;
                w.tick_to(d.min(w.now + jump).max(w.now));
            }
            _ => {
                if rng.next().is_multiple_of(6) {
                    // kill -9, and a new process (a new owner) takes its place.
                    w.kill(node);
                    restarts += 1;
                    w.nodes.push(Node::new(&format!("r{restarts}")));
                }
            }
        }
        let lines = w.lines_per_request();
        assert!(
            lines.values().all(|&n| n == 1),
            "seed {seed}: a request in two batches: {lines:?}"
        );
    }
    // No more crashes: time runs on until every caller of a live process is answered.
    w.run_until(u64::MAX);
    for node in w.nodes.iter().filter(|n| n.alive) {
        for r in &node.submitted {
            let got = node.only(*r);
            let unavailable =
                matches!(got, Got::Fail { code, .. } if code == "ERR_BATCHLING_STORE_UNAVAILABLE");
            assert!(
                matches!(got, Got::Respond { status: 200, .. }) || unavailable,
                "seed {seed}: request {r}: {got:?}"
            );
        }
    }
    assert!(w.lines_per_request().values().all(|&n| n == 1));
    w.check();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn random_crashes_never_put_a_request_in_two_batches(seed in any::<u64>(), steps in 20usize..160) {
        random_run(seed, steps);
    }
}

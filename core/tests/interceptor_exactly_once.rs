//! Exactly once, under random traffic: property tests over random submits, cancels, time, call
//! orders, faults, batch fates (with refusals for the enqueued-token limit, and batches missing a
//! line), flaky result downloads, resubmission of lines that did not run, concurrency, cost and
//! enqueued-token limits, with and without a crash. The fake also checks that no request is sent
//! in a new batch while a live one holds it.

mod support;

use std::collections::{HashMap, HashSet};

use batchling_core::http::HttpRequest;
use batchling_core::interceptor::{Input, InterceptorConfig, RequestId};
use batchling_core::providers::ProviderId;
use proptest::prelude::*;
use serde_json::{json, Value};

use support::*;

// ---- exactly once, under random traffic ----------------------------------------------------

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
    /// The fake's enqueued-token limit per (credential, model), and `maxEnqueuedTokens`.
    token_cap: Option<u64>,
    max_enqueued_tokens: Option<u64>,
}

fn traffic() -> impl Strategy<Value = Traffic> {
    (
        prop::collection::vec(op_strategy(), 1..60),
        prop::collection::vec(0..6u8, 0..8),
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
            prop_oneof![2 => Just(None), 1 => (20..120u64).prop_map(Some)],
            prop_oneof![3 => Just(None), 1 => (20..120u64).prop_map(Some)],
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
                (max_concurrent_batches, cost_limit_usd, token_cap, max_enqueued_tokens),
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
                    token_cap,
                    max_enqueued_tokens,
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
    c.line_attempts = 1 + (t.shuffle_seed % 3) as u32;
    c.max_enqueued_tokens = t.max_enqueued_tokens;
    c
}

/// Half the traffic gets its results files in chunks of whole lines, as the JS host streams them.
fn chunking(t: &Traffic) -> Option<u64> {
    (t.shuffle_seed % 2 == 1).then_some(t.shuffle_seed)
}

/// A harness on a fake with the traffic's fates and faults, after its operations (no Close yet).
/// Returns the submitted requests in order.
fn start_traffic(t: &Traffic) -> (Harness, Vec<(RequestId, Spec)>) {
    let mut fake = Fake::new();
    fake.fates = t
        .fates
        .iter()
        .map(|f| {
            [
                Fate::Complete,
                Fate::Expire,
                Fate::Cancel,
                Fate::Fail,
                Fate::Missing,
                Fate::TokenLimit,
            ][*f as usize]
        })
        .collect();
    fake.flaky_downloads = (t.fault_seed % 4) as u32;
    fake.polls_before_done = t.polls_before_done;
    fake.token_cap = t.token_cap;
    fake.shuffle_seed = t.shuffle_seed;
    fake.random = Some(RandomFaults {
        state: t.fault_seed,
        budget: t.fault_budget,
        percent: 30,
    });
    let mut h = Harness::with(traffic_config(t), true, fake);
    h.chunk_seed = chunking(t);
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
        } else if let Answer::Respond { body, .. } = &answers[0] {
            // A batch refused for the enqueued-token limit ran nothing: its requests go again.
            prop_assert!(
                !body.contains("token_limit_exceeded"),
                "request {} got the refusal: {}",
                id,
                body
            );
        }
        if s.kind >= 2 && answers[0].status() == Some(200) {
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
    h2.chunk_seed = chunking(t);
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

//! Intake: when a batch is cut (size, window, flush), which requests may share one (model,
//! endpoint, key, beta), identical requests sharing one line, and what passes through untouched.

mod support;

use std::collections::{BTreeMap, HashSet};

use batchling_core::http::HttpRequest;
use batchling_core::interceptor::{Input, RequestId};
use batchling_core::providers::ProviderId;
use serde_json::json;

use support::*;

// ---- size and window triggers --------------------------------------------------------------

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

// ---- grouping ------------------------------------------------------------------------------

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

// ---- identical requests --------------------------------------------------------------------

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

// ---- pass-through --------------------------------------------------------------------------

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

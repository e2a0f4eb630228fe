//! Results: each provider's result lines map back to their callers whatever their order, per-line
//! errors keep their status, and a batch that ended without running answers with its ended response.

mod support;

use std::collections::HashMap;

use batchling_core::interceptor::{InterceptorConfig, LifecycleEvent, RequestId};
use batchling_core::providers::ProviderId;

use support::*;

// ---- result mapping and per-line errors ----------------------------------------------------

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

// ---- ended batches -------------------------------------------------------------------------

#[test]
fn without_resubmission_expired_cancelled_and_failed_batches_answer_with_the_ended_response() {
    for p in FAKE_PROVIDERS {
        for fate in [Fate::Expire, Fate::Cancel, Fate::Fail] {
            let kind = fate.end_kind().unwrap();
            // Without resubmission: see interceptor_lines for what happens with it.
            let mut h = Harness::new(InterceptorConfig {
                resubmit: false,
                ..config(4)
            });
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

//! Results files read as a stream: the host hands a JSONL download over in chunks of whole lines
//! (`Input::ResponseChunk`) and the rest in the final `Input::Response`. Chunks cut at any line
//! boundary give the same answers as the whole body; callers are answered as their chunk
//! arrives; a malformed line is named by its line number in the whole file; the job ends only
//! with the final response.

mod support;

use std::collections::BTreeMap;

use batchling_core::http::HttpResponse;
use batchling_core::interceptor::{CallId, Input, LifecycleEvent, Output, RequestId};
use batchling_core::providers::ProviderId;

use support::*;

/// Requests with per-line errors among them, so error lines (OpenAI's error file) stream too.
const TEXTS: &[&str] = &[
    "a0",
    "a1",
    "a2 #err=400",
    "a3",
    "a4",
    "a5 #err=500",
    "a6",
    "a7",
    "a8",
    "a9",
    "a10",
    "a11",
];

fn run(p: ProviderId, chunk_seed: Option<u64>) -> (Vec<(RequestId, Vec<Answer>)>, usize) {
    let mut h = Harness::new(config(TEXTS.len()));
    h.fake.shuffle_seed = 0x5eed;
    h.chunk_seed = chunk_seed;
    for text in TEXTS {
        h.submit(request(p, 0, 0, text));
    }
    h.close_and_drain();
    let answers = h.answers.clone().into_iter().collect();
    (answers, h.chunks)
}

#[test]
fn chunks_at_any_line_boundary_answer_as_the_whole_body() {
    for p in [ProviderId::OpenAi, ProviderId::Anthropic] {
        let (whole, no_chunks) = run(p, None);
        assert_eq!(no_chunks, 0);
        assert_eq!(whole.len(), TEXTS.len());
        for (id, answers) in &whole {
            let text = TEXTS[*id as usize - 1];
            if marker(text).is_none() {
                assert!(answers[0].is_echo(model_of(p, 0), text), "{p} {text}");
            }
        }
        for seed in 1..=8u64 {
            let (chunked, chunks) = run(p, Some(seed));
            assert!(
                chunks >= 3,
                "{p} seed {seed}: the body came in {chunks} chunks"
            );
            assert_eq!(chunked, whole, "{p} seed {seed}");
        }
    }
}

#[test]
fn only_results_downloads_are_streamed() {
    let mut h = Harness::new(config(3));
    for text in ["x0", "x1", "x2"] {
        h.submit(request(ProviderId::OpenAi, 0, 0, text));
    }
    h.close_and_drain();
    let mut streamed = 0;
    for out in &h.outputs {
        if let Output::Send { http, stream, .. } = out {
            let step = classify_call(http).map(|(_, s, _)| s);
            assert_eq!(
                stream.is_some(),
                step == Some(Step::Download),
                "{} {}",
                http.method,
                http.url
            );
            streamed += usize::from(stream.is_some());
            if let Some(mode) = stream {
                assert_eq!(*mode, "lines");
            }
        }
    }
    assert!(streamed >= 1);
    // The wire form: `"stream":"lines"` on the download only.
    let json = serde_json::to_string(&h.outputs).unwrap();
    assert_eq!(json.matches(r#""stream":"lines""#).count(), streamed);
}

/// Run an OpenAI batch up to its output-file download and take that call out of flight, with
/// the body the provider would answer.
fn up_to_download(texts: &[&str]) -> (Harness, Vec<RequestId>, CallId, HttpResponse) {
    let mut h = Harness::new(config(texts.len()));
    let ids: Vec<RequestId> = texts
        .iter()
        .map(|t| h.submit(request(ProviderId::OpenAi, 0, 0, t)))
        .collect();
    h.handle(Input::Close);
    h.step_until(|h| {
        h.inflight
            .front()
            .is_some_and(|(_, r)| classify_call(r).is_some_and(|(_, s, _)| s == Step::Download))
    });
    let (call, req) = h.inflight.pop_front().unwrap();
    assert!(
        h.streamed.contains(&call),
        "the download is sent with stream: lines"
    );
    let Reply::Http(response) = h.fake.serve(&req) else {
        panic!("the fake answers downloads")
    };
    assert_eq!(response.status, 200);
    (h, ids, call, response)
}

fn answered(h: &Harness) -> usize {
    h.answers.len()
}

#[test]
fn callers_are_answered_as_their_chunk_arrives_and_the_job_ends_with_the_final_response() {
    let texts = ["s0", "s1", "s2", "s3", "s4", "s5"];
    let (mut h, ids, call, mut response) = up_to_download(&texts);
    let body = std::mem::take(&mut response.body);
    let lines: Vec<&str> = body.split_inclusive('\n').collect();
    assert_eq!(lines.len(), texts.len());
    // Two chunks of whole lines, the rest with the response.
    h.handle(Input::ResponseChunk {
        call,
        text: lines[..2].concat(),
    });
    assert_eq!(
        answered(&h),
        2,
        "the first chunk's callers are answered at once"
    );
    h.handle(Input::ResponseChunk {
        call,
        text: lines[2..5].concat(),
    });
    assert_eq!(answered(&h), 5);
    assert_eq!(h.drained, 0, "the job is open until the final response");
    assert_eq!(h.eng.live_batches(), 1);
    response.body = lines[5..].concat();
    h.handle(Input::Response { call, response });
    h.run();
    assert_eq!(h.drained, 1);
    assert_eq!(h.eng.live_batches(), 0);
    for (id, text) in ids.iter().zip(texts) {
        assert!(h.only(*id).is_echo(model_of(ProviderId::OpenAi, 0), text));
    }
    let received: Vec<usize> = h
        .events
        .iter()
        .filter_map(|e| match e {
            LifecycleEvent::ResultsReceived { results, .. } => Some(*results),
            _ => None,
        })
        .collect();
    assert_eq!(received, vec![2, 3, 1], "one event per part read");
    h.check_invariants();
}

/// The file lacks a line the batch's counts say ran (a download of ours gone wrong, not a line
/// that did not run): the results are downloaded again rather than the request resubmitted, and
/// the lines the first download answered are not answered twice.
#[test]
fn a_line_missing_from_the_download_but_counted_as_run_is_downloaded_again() {
    let texts = ["m0", "m1", "m2"];
    let (mut h, ids, call, mut response) = up_to_download(&texts);
    let body = std::mem::take(&mut response.body);
    let lines: Vec<&str> = body.split_inclusive('\n').collect();
    // The file lacks its last line: chunk the first two, end with an empty rest.
    h.handle(Input::ResponseChunk {
        call,
        text: lines[..2].concat(),
    });
    assert_eq!(answered(&h), 2);
    h.handle(Input::Response { call, response });
    assert_eq!(
        answered(&h),
        2,
        "no one is answered for the missing line yet"
    );
    h.run();
    for (id, text) in ids.iter().zip(texts) {
        assert!(h.only(*id).is_echo(model_of(ProviderId::OpenAi, 0), text));
    }
    assert_eq!(h.sent(Step::Download), 2, "downloaded once more");
    assert_eq!(h.fake.batches.len(), 1, "nothing resubmitted");
    let warned = h.events.iter().any(|e| {
        matches!(e, LifecycleEvent::Warning { message } if message.contains("downloading its results again"))
    });
    assert!(warned);
    h.check_invariants();
}

#[test]
fn malformed_line_numbers_count_across_chunks() {
    let texts = ["n0", "n1", "n2", "n3"];
    let (mut h, ids, call, mut response) = up_to_download(&texts);
    let body = std::mem::take(&mut response.body);
    let lines: Vec<&str> = body.split_inclusive('\n').collect();
    // The file, by line number: 1 good, 2 garbage, 3 good, 4 blank, 5 good, 6 garbage, 7 good.
    let chunk_a = format!("{}{{not json\n", lines[0]);
    let chunk_b = format!("{}\n{}", lines[1], lines[2]);
    let rest = format!("[1,2]\n{}", lines[3]);
    h.handle(Input::ResponseChunk {
        call,
        text: chunk_a,
    });
    h.handle(Input::ResponseChunk {
        call,
        text: chunk_b,
    });
    response.body = rest;
    h.handle(Input::Response { call, response });
    h.run();
    let warnings = h.warnings();
    let numbers: Vec<&str> = warnings
        .iter()
        .filter_map(|w| w.split("result line ").nth(1)?.split(' ').next())
        .collect();
    assert_eq!(numbers, vec!["2", "6"], "{warnings:?}");
    for (id, text) in ids.iter().zip(texts) {
        assert!(h.only(*id).is_echo(model_of(ProviderId::OpenAi, 0), text));
    }
}

#[test]
fn a_download_cut_off_mid_stream_is_retried_whole_and_answers_each_caller_once() {
    let texts = ["r0", "r1", "r2", "r3"];
    let (mut h, ids, call, response) = up_to_download(&texts);
    let lines: Vec<&str> = response.body.split_inclusive('\n').collect();
    h.handle(Input::ResponseChunk {
        call,
        text: format!("{}{{cut\n", lines[0]),
    });
    assert_eq!(answered(&h), 1);
    h.handle(Input::TransportError {
        call,
        message: "connection reset mid-body".into(),
    });
    // The retry downloads the file again, in other chunks: the earlier caller is not answered
    // twice, and line numbers start over.
    h.chunk_seed = Some(3);
    h.run();
    h.handle(Input::Close);
    h.run();
    assert_eq!(h.drained, 1);
    for (id, text) in ids.iter().zip(texts) {
        assert!(h.only(*id).is_echo(model_of(ProviderId::OpenAi, 0), text));
    }
    let warnings = h.warnings();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("result line 2 "), "{warnings:?}");
    h.check_invariants();
}

#[test]
fn a_chunk_for_a_call_that_is_not_a_streamed_download_is_ignored() {
    let mut h = Harness::new(config(2));
    let a = h.submit(request(ProviderId::OpenAi, 0, 0, "i0"));
    let b = h.submit(request(ProviderId::OpenAi, 0, 0, "i1"));
    // The upload is in flight: a stray chunk for it (or for no call) changes nothing.
    let (upload_call, _) = h.inflight.front().cloned().unwrap();
    let before = h.outputs.len();
    h.handle(Input::ResponseChunk {
        call: upload_call,
        text: "{\"custom_id\":\"x\"}\n".into(),
    });
    h.handle(Input::ResponseChunk {
        call: 9_999,
        text: "{}\n".into(),
    });
    assert_eq!(h.outputs.len(), before);
    h.close_and_drain();
    let answers: BTreeMap<_, _> = [a, b]
        .iter()
        .map(|id| (*id, h.only(*id).status()))
        .collect();
    assert!(answers.values().all(|s| *s == Some(200)), "{answers:?}");
}

#[test]
fn the_host_refuses_a_chunk_that_ends_mid_line() {
    let mut host = batchling_core::host::InterceptorHost::new("{}").expect("default options");
    let err = host
        .response_chunk(0.0, 1.0, "{\"custom_id\":\"a\"}\n{\"custom_id\":".into())
        .expect_err("a cut line is refused");
    assert!(err.0.contains("responseChunk"), "{err}");
    assert!(err.0.contains("ends mid-line"), "{err}");
    let err = host
        .response_chunk(0.0, 1.0, String::new())
        .expect_err("empty");
    assert!(err.0.contains("ends mid-line"), "{err}");
    // Whole lines are taken (for no open call: nothing happens).
    let out: serde_json::Value =
        serde_json::from_str(&host.response_chunk(0.0, 1.0, "{}\n".into()).unwrap()).unwrap();
    assert_eq!(out["outputs"], serde_json::json!([]));
}

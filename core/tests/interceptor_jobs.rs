//! Jobs in bulk (`Input::SubmitJobs`): a chunk of the job builder's jobs crosses in one input,
//! and each is answered with its result line (extracted by the core), never a synthetic
//! response; identical jobs share one batch line and each gets its own result.

mod support;

use batchling_core::jobs::{JobResult, JobSpec, Message, ProviderEndpoint};
use batchling_core::providers::ProviderId;

use support::*;

fn job(id: &str, text: &str) -> JobSpec {
    JobSpec {
        id: id.into(),
        model: "gpt-4o-mini".into(),
        messages: Some(vec![Message {
            role: "user".into(),
            content: text.into(),
        }]),
        file: None,
        prompt: None,
        system: None,
        temperature: None,
        max_tokens: None,
        response_schema: None,
        extra: None,
        price: None,
    }
}

#[test]
fn jobs_submitted_in_bulk_are_answered_with_their_result_lines() {
    let mut h = Harness::new(config(3));
    let endpoint = ProviderEndpoint::default_for(ProviderId::OpenAi, OPENAI_KEYS[0]);
    // Two chunks: the first cuts a batch of 3; "j3" is the same request as "j0".
    let first = h.submit_jobs(
        vec![job("j0", "a"), job("j1", "b"), job("j2", "c")],
        &endpoint,
    );
    let second = h.submit_jobs(vec![job("j3", "a"), job("j4", "d")], &endpoint);
    h.close_and_drain();
    let ids: Vec<_> = first.iter().chain(&second).copied().collect();
    let texts = ["a", "b", "c", "a", "d"];
    for (i, (id, text)) in ids.iter().zip(texts).enumerate() {
        let Answer::JobResult { ok, line } = h.only(*id) else {
            panic!("job {i} answered with {:?}", h.only(*id));
        };
        let result: JobResult = serde_json::from_str(line).expect("a result line");
        assert!(*ok && result.ok, "job {i}: {line}");
        assert_eq!(result.job_id, format!("j{i}"));
        assert_eq!(result.status, 200);
        assert_eq!(
            result.response.as_deref(),
            Some(echo("gpt-4o-mini", text).as_str())
        );
    }
    assert!(
        !h.outputs
            .iter()
            .any(|o| matches!(o, batchling_core::interceptor::Output::Respond { .. })),
        "no synthetic response for a job"
    );
    // "j3" joined "j0"'s line: 4 distinct lines in 2 batches.
    assert_eq!(h.sent(Step::Create), 2);
    h.check_invariants();
    h.check_no_secrets();
}

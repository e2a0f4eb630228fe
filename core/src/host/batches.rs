//! `batchling batches list|status|cancel`: the provider batches a cache journal (or a job run's
//! state file) says are live, and the provider calls that poll or cancel one, JSON in and JSON
//! out. The host reads the journal, sends the calls with the API key from its environment and
//! appends the record a cancel leaves; the journal's meaning and the providers' calls stay here.
//!
//! Every answer is `{"ok": true, …}` or `{"ok": false, "code": …, "error": …}`.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::refusal;
use crate::cache::{BatchPlace, CacheRecord};
use crate::catalog::pricing;
use crate::http::{HttpRequest, HttpResponse};
use crate::interceptor::io::SerializableRequest;
use crate::interceptor::report::answer_cost;
use crate::providers::{adapter, BatchContext, PollState, ProviderId, Route};

/// A provider batch of the journal with requests that have no answer yet.
#[cfg_attr(test, derive(ts_rs::TS))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LiveBatch {
    pub batch_id: String,
    pub provider: crate::providers::ProviderId,
    pub base_url: String,
    pub endpoint: String,
    pub model: String,
    /// The batch's requests, and those of them with no answer in the journal; `None` in a job
    /// run's state file, which keeps its answers in the results directory (a batch there is
    /// listed until its requests are released; the provider says whether it ended).
    pub requests: u64,
    pub pending: Option<u64>,
    /// A `batchling batches cancel` of it is journalled.
    pub cancelled: bool,
    /// When the provider accepted it (wall clock, ms since the epoch), and how long before the
    /// `now_ms` the host passed in; `None` for lines written before batchling recorded the time.
    pub submitted_at_ms: Option<u64>,
    pub age_ms: Option<u64>,
    /// What its requests answered in the journal cost, at the batch price of the pricing table
    /// (the rule of the close report's `actualBatchUsd`, without a run's `prices` overrides),
    /// from the usage each answer reports. `None` in a job run's state file (its answers are in
    /// the results directory) and for a model of unknown price; `0` before any answer.
    pub cost_so_far_usd: Option<f64>,
    /// The answers `cost_so_far_usd` covers (2xx answers reporting usage).
    pub answers_costed: u64,
    /// The environment variable the provider's API key is read from, if the host knows one.
    pub api_key_env: Option<String>,
}

/// A submitted batch of the journal, folded.
struct Submitted {
    batch_id: String,
    place: BatchPlace,
    fingerprints: Vec<String>,
    /// The earliest time a record of it names.
    at_ms: Option<u64>,
}

struct Folded {
    /// Submitted batches in journal order.
    batches: Vec<Submitted>,
    answered: HashSet<String>,
    /// The batch (an index of `batches`) that held a request when its last answer came, and
    /// what that answer cost: 2xx answers reporting usage, of a model with a known price.
    costs: HashMap<String, (usize, f64)>,
    released: HashSet<String>,
    cancelled: HashSet<String>,
    /// A job run's state file: answers are not in it.
    state_file: bool,
}

/// Fold a journal (or state file) text: lines that are not records (a state file's header,
/// damaged lines) are skipped, as a run's load skips them.
fn fold(journal: &str) -> Folded {
    let mut folded = Folded {
        batches: Vec::new(),
        answered: HashSet::new(),
        costs: HashMap::new(),
        released: HashSet::new(),
        cancelled: HashSet::new(),
        state_file: journal
            .lines()
            .next()
            .and_then(|first| serde_json::from_str::<serde_json::Value>(first).ok())
            .is_some_and(|header| {
                header.get("batchling").and_then(|v| v.as_str()) == Some("state")
            }),
    };
    let mut index: HashMap<String, usize> = HashMap::new();
    // The batch each request was last submitted in.
    let mut holder: HashMap<String, usize> = HashMap::new();
    let no_overrides = pricing::PriceOverrides::new();
    for line in journal.lines() {
        let Ok(record) = serde_json::from_str::<CacheRecord>(line) else {
            continue;
        };
        match record {
            CacheRecord::Submitted {
                place,
                batch_id,
                fingerprints,
                at_ms,
            } => {
                let i = match index.get(&batch_id) {
                    Some(&i) => i,
                    None => {
                        index.insert(batch_id.clone(), folded.batches.len());
                        folded.batches.push(Submitted {
                            batch_id,
                            place,
                            fingerprints: Vec::new(),
                            at_ms: None,
                        });
                        folded.batches.len() - 1
                    }
                };
                for fp in &fingerprints {
                    folded.released.remove(fp);
                    holder.insert(fp.clone(), i);
                }
                // A compacted journal may name one batch twice: its fingerprints add up.
                let batch = &mut folded.batches[i];
                batch.fingerprints.extend(fingerprints);
                batch.at_ms = match (batch.at_ms, at_ms) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }
            CacheRecord::Result {
                fingerprint,
                status,
                body,
                ..
            } => {
                // The last answer of a request counts: an earlier one's cost goes.
                let cost = holder.get(&fingerprint).and_then(|&i| {
                    let place = &folded.batches[i].place;
                    let usd = (200..300)
                        .contains(&status)
                        .then(|| answer_cost(place.provider, &place.model, &body, &no_overrides));
                    usd.flatten().map(|usd| (i, usd))
                });
                match cost {
                    Some(cost) => folded.costs.insert(fingerprint.clone(), cost),
                    None => folded.costs.remove(&fingerprint),
                };
                folded.answered.insert(fingerprint);
            }
            CacheRecord::Released { fingerprints } => folded.released.extend(fingerprints),
            CacheRecord::Cancelled { batch_id, .. } => {
                folded.cancelled.insert(batch_id);
            }
            CacheRecord::Intent { .. } | CacheRecord::SyncFallback { .. } => {}
        }
    }
    folded
}

/// The live batches of a journal, in the order they were submitted; `now_ms` (wall clock, ms
/// since the epoch) is the time their ages count to.
pub fn live_batches(journal: &str, now_ms: u64) -> Vec<LiveBatch> {
    let folded = fold(journal);
    folded
        .batches
        .iter()
        .enumerate()
        .filter_map(|(i, batch)| {
            let place = &batch.place;
            let unique: HashSet<&String> = batch.fingerprints.iter().collect();
            let pending = unique
                .iter()
                .filter(|fp| !folded.answered.contains(**fp) && !folded.released.contains(**fp))
                .count() as u64;
            if pending == 0 {
                return None;
            }
            let costs: Vec<f64> = unique
                .iter()
                .filter_map(|fp| folded.costs.get(*fp))
                .filter(|(holder, _)| *holder == i)
                .map(|(_, usd)| *usd)
                .collect();
            let priced =
                pricing::rates(place.provider, &place.model, &Default::default()).is_some();
            let cost_so_far_usd = (priced && !folded.state_file).then(|| costs.iter().sum());
            Some(LiveBatch {
                batch_id: batch.batch_id.clone(),
                provider: place.provider,
                base_url: place.base_url.clone(),
                endpoint: place.endpoint.clone(),
                model: place.model.clone(),
                requests: unique.len() as u64,
                pending: (!folded.state_file).then_some(pending),
                cancelled: folded.cancelled.contains(&batch.batch_id),
                submitted_at_ms: batch.at_ms,
                age_ms: batch.at_ms.map(|at| now_ms.saturating_sub(at)),
                cost_so_far_usd,
                answers_costed: costs.len() as u64,
                api_key_env: place.provider.descriptor().api_key_env.map(str::to_string),
            })
        })
        .collect()
}

/// `{"ok":true,"batches":[LiveBatch, …]}`.
pub fn live_batches_json(journal: &str, now_ms: u64) -> String {
    json!({ "ok": true, "batches": live_batches(journal, now_ms) }).to_string()
}

fn find(journal: &str, batch_id: &str) -> Result<(BatchPlace, Vec<String>), String> {
    let folded = fold(journal);
    let known: Vec<String> = folded.batches.iter().map(|b| b.batch_id.clone()).collect();
    let Some(Submitted {
        place,
        fingerprints: fps,
        ..
    }) = folded.batches.into_iter().find(|b| b.batch_id == batch_id)
    else {
        let listed = if known.is_empty() {
            "the journal names no batch".to_string()
        } else {
            format!("the journal names {}", known.join(", "))
        };
        return Err(refusal(
            "ERR_BATCHLING_UNKNOWN_BATCH",
            format!("no batch {batch_id:?} in this journal ({listed})"),
        ));
    };
    let pending: Vec<String> = fps
        .into_iter()
        .filter(|fp| !folded.answered.contains(fp) && !folded.released.contains(fp))
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    Ok((place, pending))
}

/// The route a CLI call uses: the place's provider, host and model, with the API key in the
/// header the provider's SDK sends it in.
fn route(place: &BatchPlace, api_key: &str) -> Result<Route, String> {
    let descriptor = place.provider.descriptor();
    if api_key.is_empty() {
        return Err(refusal(
            "ERR_BATCHLING_NO_API_KEY",
            format!(
                "no API key for {}: set {}",
                descriptor.name,
                descriptor.api_key_env.unwrap_or("its API key variable")
            ),
        ));
    }
    let forward_headers = match descriptor.jobs {
        Some(format) => format.target(&place.base_url, &place.model, api_key).1,
        // Azure OpenAI takes a key in `api-key` (a bearer token is an Entra token); the
        // OpenAI-compatible hosts and Mistral a bearer key (providers.md).
        None if place.provider == ProviderId::Azure => vec![("api-key".into(), api_key.into())],
        None => vec![("authorization".into(), format!("Bearer {api_key}"))],
    };
    Ok(Route {
        provider: place.provider,
        endpoint: place.endpoint.clone(),
        model: place.model.clone(),
        base_url: place.base_url.clone(),
        forward_headers,
        credential_fingerprint: String::new(),
        body: serde_json::Value::Null,
        settings: Default::default(),
    })
}

fn call(
    place: &BatchPlace,
    batch_id: &str,
    action: &str,
    api_key: &str,
) -> Result<HttpRequest, String> {
    let route = route(place, api_key)?;
    let ctx = BatchContext {
        route: &route,
        tag: &place.tag,
    };
    let adapter = adapter(place.provider);
    match action {
        "poll" => Ok(adapter.build_poll(&ctx, batch_id)),
        "cancel" => adapter.build_cancel(&ctx, batch_id).ok_or_else(|| {
            refusal(
                "ERR_BATCHLING_UNSUPPORTED_PROVIDER",
                format!("{} offers no way to cancel a batch", place.provider),
            )
        }),
        other => Err(refusal(
            "ERR_BATCHLING_INVALID_ARGUMENT",
            format!("unknown batch action {other:?}: poll or cancel"),
        )),
    }
}

/// `{"ok":true,"request":{method,url,headers,body}}`: the call that polls (`action` "poll") or
/// cancels ("cancel") the journal's batch `batch_id`, carrying `api_key`.
pub fn batch_call_json(journal: &str, batch_id: &str, action: &str, api_key: &str) -> String {
    let result =
        find(journal, batch_id).and_then(|(place, _)| call(&place, batch_id, action, api_key));
    match result {
        Ok(request) => {
            json!({ "ok": true, "request": SerializableRequest::from(request) }).to_string()
        }
        Err(refusal) => refusal,
    }
}

/// A batch's progress as its poll answer says.
#[cfg_attr(test, derive(ts_rs::TS))]
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchProgress {
    /// The provider's own state ("in_progress", "ended", "BATCH_STATE_RUNNING", …).
    pub state: String,
    pub total: u64,
    pub completed: u64,
    pub failed: u64,
    /// The provider holds no more work for it (completed, cancelled, expired, failed).
    pub ended: bool,
}

/// `{"ok":true,"progress":BatchProgress}` from the answer to the poll call; a non-2xx answer is
/// refused with the provider's error (e.g. a bad key).
pub fn batch_progress_json(
    journal: &str,
    batch_id: &str,
    status: u16,
    headers_json: &str,
    body: &str,
) -> String {
    let (place, _) = match find(journal, batch_id) {
        Ok(found) => found,
        Err(refusal) => return refusal,
    };
    let response = match answer(status, headers_json, body) {
        Ok(response) => response,
        Err(refusal) => return refusal,
    };
    if !(200..300).contains(&status) {
        return refusal(
            "ERR_BATCHLING_PROVIDER",
            format!(
                "{} answered the poll of {batch_id} with HTTP {status}: {}",
                place.provider,
                crate::providers::describe_error(&response)
            ),
        );
    }
    match adapter(place.provider).parse_poll(&response, &[]) {
        Ok(report) => {
            let progress = BatchProgress {
                ended: !matches!(report.state, PollState::Running),
                state: report.state_label,
                total: report.total,
                completed: report.completed,
                failed: report.failed,
            };
            json!({ "ok": true, "progress": progress }).to_string()
        }
        Err(e) => refusal(
            "ERR_BATCHLING_PROTOCOL",
            format!("the poll answer of {batch_id}: {e}"),
        ),
    }
}

/// `{"ok":true,"line":"…"}`: the journal record a cancel leaves once the provider accepted it
/// (a 2xx answer): the batch's requests without an answer are cancelled for good. A non-2xx
/// answer is refused with the provider's error.
pub fn cancel_record_json(
    journal: &str,
    batch_id: &str,
    status: u16,
    headers_json: &str,
    body: &str,
) -> String {
    let (place, mut pending) = match find(journal, batch_id) {
        Ok(found) => found,
        Err(refusal) => return refusal,
    };
    let response = match answer(status, headers_json, body) {
        Ok(response) => response,
        Err(refusal) => return refusal,
    };
    if !(200..300).contains(&status) {
        return refusal(
            "ERR_BATCHLING_PROVIDER",
            format!(
                "{} refused to cancel {batch_id}: HTTP {status}: {}",
                place.provider,
                crate::providers::describe_error(&response)
            ),
        );
    }
    pending.sort();
    let line = CacheRecord::Cancelled {
        batch_id: batch_id.to_string(),
        fingerprints: pending,
    }
    .to_line();
    json!({ "ok": true, "line": line }).to_string()
}

fn answer(status: u16, headers_json: &str, body: &str) -> Result<HttpResponse, String> {
    let headers: Vec<(String, String)> = serde_json::from_str(headers_json).map_err(|e| {
        refusal(
            "ERR_BATCHLING_INVALID_ARGUMENT",
            format!("headers must be a JSON array of [name, value] pairs: {e}"),
        )
    })?;
    Ok(HttpResponse {
        status,
        headers,
        body: body.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    const FP_A: &str = "aa00000000000000000000000000000000000000000000000000000000000000";
    const FP_B: &str = "bb00000000000000000000000000000000000000000000000000000000000000";
    const FP_C: &str = "cc00000000000000000000000000000000000000000000000000000000000000";
    /// When the test journals' batch was submitted, and the virtual "now" ages count to.
    const SUBMITTED_AT: u64 = 1_700_000_000_000;
    const NOW: u64 = SUBMITTED_AT + 90 * 60_000;

    fn place(provider: ProviderId, base_url: &str, model: &str) -> BatchPlace {
        BatchPlace {
            provider,
            base_url: base_url.into(),
            endpoint: "/v1/chat/completions".into(),
            model: model.into(),
            tag: "batchling-t".into(),
            uploaded_file: None,
        }
    }

    fn journal(provider: ProviderId, base_url: &str, extra: &[CacheRecord]) -> String {
        let mut lines = vec![CacheRecord::Submitted {
            place: place(provider, base_url, "m"),
            batch_id: "batch_1".into(),
            fingerprints: vec![FP_A.into(), FP_B.into()],
            at_ms: Some(SUBMITTED_AT),
        }
        .to_line()];
        lines.extend(extra.iter().map(CacheRecord::to_line));
        lines.join("\n") + "\n"
    }

    fn result(fp: &str) -> CacheRecord {
        CacheRecord::Result {
            fingerprint: fp.into(),
            status: 200,
            headers: vec![],
            body: "{}".into(),
            at_ms: None,
        }
    }

    #[test]
    fn a_batch_is_live_until_every_request_is_answered_or_released() {
        let j = journal(
            ProviderId::OpenAi,
            "https://api.openai.com/v1",
            &[result(FP_A)],
        );
        let live = live_batches(&j, NOW);
        assert_eq!(live.len(), 1);
        assert_eq!((live[0].requests, live[0].pending), (2, Some(1)));
        assert_eq!(live[0].api_key_env.as_deref(), Some("OPENAI_API_KEY"));
        assert!(!live[0].cancelled);
        let released = CacheRecord::Released {
            fingerprints: vec![FP_B.into()],
        };
        let j = journal(
            ProviderId::OpenAi,
            "https://api.openai.com/v1",
            &[result(FP_A), released],
        );
        assert!(live_batches(&j, NOW).is_empty());
    }

    fn submitted(model: &str, batch_id: &str, fps: &[&str], at_ms: Option<u64>) -> CacheRecord {
        CacheRecord::Submitted {
            place: place(ProviderId::OpenAi, "https://api.openai.com/v1", model),
            batch_id: batch_id.into(),
            fingerprints: fps.iter().map(|fp| fp.to_string()).collect(),
            at_ms,
        }
    }

    /// An OpenAI chat answer reporting `input` prompt tokens (`cached` of them cached) and
    /// `output` completion tokens.
    fn answer(fp: &str, status: u16, input: u64, cached: u64, output: u64) -> CacheRecord {
        let body = json!({
            "object": "chat.completion",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}}],
            "usage": {"prompt_tokens": input, "completion_tokens": output,
                      "prompt_tokens_details": {"cached_tokens": cached}},
        });
        CacheRecord::Result {
            fingerprint: fp.into(),
            status,
            headers: vec![],
            body: body.to_string(),
            at_ms: None,
        }
    }

    fn lines(records: &[CacheRecord]) -> String {
        records.iter().map(|r| r.to_line() + "\n").collect()
    }

    #[test]
    fn a_batch_is_as_old_as_the_now_passed_in_says() {
        let j = journal(ProviderId::OpenAi, "https://api.openai.com/v1", &[]);
        let live = live_batches(&j, NOW);
        assert_eq!(live[0].submitted_at_ms, Some(SUBMITTED_AT));
        assert_eq!(live[0].age_ms, Some(90 * 60_000));
        // Virtual time: a later now, an older batch; a clock behind the journal, age 0.
        assert_eq!(live_batches(&j, NOW + 5)[0].age_ms, Some(90 * 60_000 + 5));
        assert_eq!(live_batches(&j, SUBMITTED_AT - 1)[0].age_ms, Some(0));
        // A line from before batchling dated batches has no age.
        let undated = lines(&[submitted("m", "batch_1", &[FP_A], None)]);
        let live = live_batches(&undated, NOW);
        assert_eq!((live[0].submitted_at_ms, live[0].age_ms), (None, None));
        // A compacted journal naming the batch twice: the earliest time.
        let twice = lines(&[
            submitted("m", "batch_1", &[FP_A], Some(SUBMITTED_AT + 10)),
            submitted("m", "batch_1", &[FP_B], Some(SUBMITTED_AT)),
        ]);
        assert_eq!(
            live_batches(&twice, NOW)[0].submitted_at_ms,
            Some(SUBMITTED_AT)
        );
    }

    #[test]
    fn cost_so_far_adds_up_the_answered_requests_at_the_batch_price() {
        let model = "gpt-4o-mini";
        let j = lines(&[
            submitted(model, "batch_1", &[FP_A, FP_B, FP_C], Some(SUBMITTED_AT)),
            answer(FP_A, 200, 1_000, 0, 200),
            answer(FP_B, 200, 2_000, 1_024, 50),
        ]);
        let live = live_batches(&j, NOW);
        assert_eq!(live[0].pending, Some(1));
        assert_eq!(live[0].answers_costed, 2);
        // gpt-4o-mini: $0.15 in, $0.075 cached, $0.60 out per million tokens; batches half.
        let expected = ((1_000.0 * 0.15 + 200.0 * 0.6)
            + ((2_000.0 - 1_024.0) * 0.15 + 1_024.0 * 0.075 + 50.0 * 0.6))
            / 1e6
            * 0.5;
        let cost = live[0].cost_so_far_usd.unwrap();
        assert!((cost - expected).abs() < 1e-12, "{cost} vs {expected}");
        // The close report's rule, answer by answer.
        let engine = |record: &CacheRecord| match record {
            CacheRecord::Result { body, .. } => {
                answer_cost(ProviderId::OpenAi, model, body, &Default::default()).unwrap()
            }
            _ => unreachable!(),
        };
        let report = engine(&answer(FP_A, 200, 1_000, 0, 200))
            + engine(&answer(FP_B, 200, 2_000, 1_024, 50));
        assert!((cost - report).abs() < 1e-15);

        // Nothing answered yet: $0, none costed.
        let fresh = lines(&[submitted(model, "batch_1", &[FP_A], Some(SUBMITTED_AT))]);
        let live = live_batches(&fresh, NOW);
        assert_eq!(
            (live[0].cost_so_far_usd, live[0].answers_costed),
            (Some(0.0), 0)
        );
    }

    #[test]
    fn cost_so_far_leaves_out_errors_other_batches_answers_and_unknown_prices() {
        let model = "gpt-4o-mini";
        let j = lines(&[
            // batch_0 ran FP_A; FP_B's line did not run and went into batch_1 with FP_C.
            submitted(model, "batch_0", &[FP_A, FP_B], Some(SUBMITTED_AT)),
            answer(FP_A, 200, 1_000, 0, 100),
            CacheRecord::Released {
                fingerprints: vec![FP_B.into()],
            },
            submitted(model, "batch_1", &[FP_B, FP_C, FP_A], Some(SUBMITTED_AT)),
            // A per-line error (not billed) and a later answer with no usage.
            answer(FP_B, 400, 1_000, 0, 100),
        ]);
        let live = live_batches(&j, NOW);
        assert_eq!(live.len(), 1);
        assert_eq!(live[0].batch_id, "batch_1");
        assert_eq!(live[0].pending, Some(1));
        // FP_A's answer came while batch_0 held it: not batch_1's cost.
        assert_eq!(
            (live[0].cost_so_far_usd, live[0].answers_costed),
            (Some(0.0), 0)
        );

        // A model without a price: unknown, not zero.
        let unpriced = lines(&[
            submitted("my-fine-tune", "batch_1", &[FP_A, FP_B], Some(SUBMITTED_AT)),
            answer(FP_A, 200, 1_000, 0, 100),
        ]);
        let live = live_batches(&unpriced, NOW);
        assert_eq!((live[0].cost_so_far_usd, live[0].answers_costed), (None, 0));
        // A state file keeps no answers: unknown.
        let header = crate::host::run_state::header_line("out", &["a".into()], &[]);
        let state = format!(
            "{header}\n{}",
            lines(&[submitted(model, "batch_1", &[FP_A], Some(SUBMITTED_AT))])
        );
        let live = live_batches(&state, NOW);
        assert_eq!(live[0].cost_so_far_usd, None);
        assert_eq!(live[0].age_ms, Some(NOW - SUBMITTED_AT));
    }

    #[test]
    fn a_state_file_lists_its_batches_with_answers_unknown() {
        let header = crate::host::run_state::header_line("out", &["a".into()], &[]);
        let j = format!(
            "{header}\n{}",
            journal(ProviderId::OpenAi, "https://api.openai.com/v1", &[])
        );
        let live = live_batches(&j, NOW);
        assert_eq!(live.len(), 1);
        assert_eq!((live[0].requests, live[0].pending), (2, None));
    }

    fn request(json: &str) -> Value {
        let v: Value = serde_json::from_str(json).unwrap();
        assert_eq!(v["ok"], true, "{v}");
        v["request"].clone()
    }

    fn header<'a>(req: &'a Value, name: &str) -> Option<&'a str> {
        req["headers"]
            .as_array()?
            .iter()
            .find(|h| h[0] == name)
            .and_then(|h| h[1].as_str())
    }

    #[test]
    fn cancel_requests_use_each_providers_endpoint_and_key_header() {
        let j = journal(ProviderId::OpenAi, "https://api.openai.com/v1", &[]);
        let r = request(&batch_call_json(&j, "batch_1", "cancel", "sk-1"));
        assert_eq!(r["method"], "POST");
        assert_eq!(r["url"], "https://api.openai.com/v1/batches/batch_1/cancel");
        assert_eq!(header(&r, "authorization"), Some("Bearer sk-1"));

        let j = journal(ProviderId::Anthropic, "https://api.anthropic.com", &[]);
        let r = request(&batch_call_json(&j, "batch_1", "cancel", "sk-ant"));
        assert_eq!(r["method"], "POST");
        assert_eq!(
            r["url"],
            "https://api.anthropic.com/v1/messages/batches/batch_1/cancel"
        );
        assert_eq!(header(&r, "x-api-key"), Some("sk-ant"));
        assert!(header(&r, "anthropic-version").is_some());

        let base = "https://generativelanguage.googleapis.com/v1beta";
        let j = journal(ProviderId::Gemini, base, &[]);
        let r = request(&batch_call_json(&j, "batch_1", "cancel", "g-key"));
        assert_eq!(r["method"], "POST");
        assert_eq!(r["url"], format!("{base}/batches/batch_1:cancel"));
        assert_eq!(header(&r, "x-goog-api-key"), Some("g-key"));

        let r = request(&batch_call_json(&j, "batch_1", "poll", "g-key"));
        assert_eq!(r["method"], "GET");
        assert_eq!(r["url"], format!("{base}/batches/batch_1"));

        // Providers the job builder does not serve: their own key header.
        let j = journal(ProviderId::Groq, "https://api.groq.com/openai/v1", &[]);
        let r = request(&batch_call_json(&j, "batch_1", "cancel", "gsk"));
        assert_eq!(
            r["url"],
            "https://api.groq.com/openai/v1/batches/batch_1/cancel"
        );
        assert_eq!(header(&r, "authorization"), Some("Bearer gsk"));

        let base = "https://res.openai.azure.com/openai/v1";
        let j = journal(ProviderId::Azure, base, &[]);
        let r = request(&batch_call_json(&j, "batch_1", "poll", "az"));
        assert_eq!(r["url"], format!("{base}/batches/batch_1"));
        assert_eq!(header(&r, "api-key"), Some("az"));
        assert_eq!(header(&r, "authorization"), None);

        let j = journal(ProviderId::Mistral, "https://api.mistral.ai/v1", &[]);
        let r = request(&batch_call_json(&j, "batch_1", "cancel", "mk"));
        assert_eq!(r["method"], "POST");
        assert_eq!(
            r["url"],
            "https://api.mistral.ai/v1/batch/jobs/batch_1/cancel"
        );
        assert_eq!(header(&r, "authorization"), Some("Bearer mk"));
        let (code, error) = {
            let v: Value =
                serde_json::from_str(&batch_call_json(&j, "batch_1", "cancel", "")).unwrap();
            (v["code"].clone(), v["error"].as_str().unwrap().to_string())
        };
        assert_eq!(code, "ERR_BATCHLING_NO_API_KEY");
        assert!(error.contains("MISTRAL_API_KEY"), "{error}");

        // xAI: polled with its bearer key; no cancel call is built for it.
        let j = journal(ProviderId::Xai, "https://api.x.ai/v1", &[]);
        let r = request(&batch_call_json(&j, "batch_1", "poll", "xk"));
        assert_eq!(r["url"], "https://api.x.ai/v1/batches/batch_1");
        assert_eq!(header(&r, "authorization"), Some("Bearer xk"));
        let v: Value =
            serde_json::from_str(&batch_call_json(&j, "batch_1", "cancel", "xk")).unwrap();
        assert_eq!(v["code"], "ERR_BATCHLING_UNSUPPORTED_PROVIDER");
    }

    #[test]
    fn calls_are_refused_with_a_named_reason() {
        let j = journal(ProviderId::OpenAi, "https://api.openai.com/v1", &[]);
        let refused = |json: String| -> (String, String) {
            let v: Value = serde_json::from_str(&json).unwrap();
            assert_eq!(v["ok"], false);
            (
                v["code"].as_str().unwrap().into(),
                v["error"].as_str().unwrap().into(),
            )
        };
        let (code, error) = refused(batch_call_json(&j, "batch_9", "cancel", "k"));
        assert_eq!(code, "ERR_BATCHLING_UNKNOWN_BATCH");
        assert!(
            error.contains("batch_9") && error.contains("batch_1"),
            "{error}"
        );
        let (code, error) = refused(batch_call_json(&j, "batch_1", "cancel", ""));
        assert_eq!(code, "ERR_BATCHLING_NO_API_KEY");
        assert!(error.contains("OPENAI_API_KEY"), "{error}");
        let (code, _) = refused(batch_call_json(&j, "batch_1", "delete", "k"));
        assert_eq!(code, "ERR_BATCHLING_INVALID_ARGUMENT");
        let (code, error) = refused(cancel_record_json(
            &j,
            "batch_1",
            404,
            "[]",
            "{\"error\":{\"message\":\"gone\"}}",
        ));
        assert_eq!(code, "ERR_BATCHLING_PROVIDER");
        assert!(error.contains("404"), "{error}");
    }

    #[test]
    fn a_cancel_record_names_the_unanswered_requests_and_marks_the_batch() {
        let j = journal(
            ProviderId::OpenAi,
            "https://api.openai.com/v1",
            &[result(FP_A)],
        );
        let v: Value =
            serde_json::from_str(&cancel_record_json(&j, "batch_1", 200, "[]", "{}")).unwrap();
        let line = v["line"].as_str().unwrap();
        let record: CacheRecord = serde_json::from_str(line).unwrap();
        assert_eq!(
            record,
            CacheRecord::Cancelled {
                batch_id: "batch_1".into(),
                fingerprints: vec![FP_B.into()],
            }
        );
        let j = format!("{j}{line}\n");
        assert!(live_batches(&j, NOW)[0].cancelled);
        // A fold of the journal answers the cancelled request's fingerprint as cancelled.
        let mut cache = crate::cache::Cache::new(true);
        assert!(cache.load(&j).is_empty());
        let fp = crate::cache::Fingerprint::parse(FP_B).unwrap();
        assert_eq!(cache.cancelled(&fp), Some("batch_1"));
        assert_eq!(
            cache.cancelled(&crate::cache::Fingerprint::parse(FP_A).unwrap()),
            None
        );
    }

    #[test]
    fn progress_is_read_from_the_providers_poll_answer() {
        let j = journal(ProviderId::OpenAi, "https://api.openai.com/v1", &[]);
        let body = r#"{"id":"batch_1","status":"in_progress","request_counts":{"total":10,"completed":4,"failed":1}}"#;
        let v: Value =
            serde_json::from_str(&batch_progress_json(&j, "batch_1", 200, "[]", body)).unwrap();
        assert_eq!(v["ok"], true, "{v}");
        assert_eq!(v["progress"]["state"], "in_progress");
        assert_eq!(v["progress"]["total"], 10);
        assert_eq!(v["progress"]["completed"], 4);
        assert_eq!(v["progress"]["failed"], 1);
        assert_eq!(v["progress"]["ended"], false);
    }
}

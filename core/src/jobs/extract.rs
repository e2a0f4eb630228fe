//! Results: a provider's answer (status and body) becomes a job's result: text, parsed
//! structured output, citations, tokens and cost.

use serde_json::Value;

use crate::catalog::models::ModelInfo;

use super::prepare::{effective_max_tokens, resolve_model};
use super::{JobError, JobResult, JobSpec};
use crate::catalog::pricing::{self, Rates};
use crate::http::HttpResponse;
use crate::json_schema::{drop_introduced_nulls, validate_json};
use crate::providers;

/// Turns the (synthetic) synchronous response to `job`'s request into its result. Never panics;
/// anything unusable becomes `ok: false` with a reason.
pub fn extract_result(job: &JobSpec, status: u16, body: &str) -> JobResult {
    let mut r = JobResult {
        job_id: job.id.clone(),
        ok: false,
        status,
        response: None,
        parsed_response: None,
        citations: Vec::new(),
        input_tokens: None,
        output_tokens: None,
        cost_usd: None,
        finish_reason: None,
        truncated: false,
        error: None,
    };
    let info = match resolve_model(job) {
        Ok(info) => info,
        Err(JobError::UnknownModel { error, .. }) => {
            r.error = Some(error.to_string());
            return r;
        }
        Err(e) => {
            r.error = Some(e.to_string());
            return r;
        }
    };
    let Some(format) = info.provider.descriptor().jobs else {
        r.error = Some(format!("the job builder does not serve {}", info.provider));
        return r;
    };
    if !(200..300).contains(&status) {
        let resp = HttpResponse {
            status,
            headers: Vec::new(),
            body: body.to_string(),
        };
        r.error = Some(format!(
            "HTTP {status}: {}",
            providers::describe_error(&resp)
        ));
        return r;
    }
    let v: Value = match serde_json::from_str(body) {
        Ok(v) => v,
        Err(e) => {
            r.error = Some(format!("the response body is not JSON: {e}"));
            return r;
        }
    };
    let out = format.output(&v);
    r.input_tokens = out.input_tokens;
    r.output_tokens = out.output_tokens;
    r.cost_usd = out
        .usage()
        .zip(job_rates(job, info))
        .map(|(usage, rates)| pricing::usage_cost(&rates, &usage));
    r.citations = out.citations;
    r.finish_reason = out.finish_reason;
    r.truncated = out.truncated;
    r.response = out.text;
    let cap_hint = || match effective_max_tokens(job, info, format) {
        Some(n) => format!(" (the output hit the {n}-token cap; raise `maxTokens`)"),
        None => " (the output hit the model's token cap)".to_string(),
    };
    if let Some(problem) = out.problem {
        r.error = Some(problem);
        return r;
    }
    match &job.response_schema {
        None => {
            if r.response.as_deref().is_some_and(|t| !t.is_empty()) {
                r.ok = true;
            } else if r.truncated {
                r.error = Some(format!(
                    "the answer is empty: the model used every output token before writing any \
                     (thinking and reasoning count towards the cap){}",
                    cap_hint()
                ));
            } else {
                r.error = Some("the answer is empty".to_string());
            }
        }
        Some(schema) => {
            let parsed = match out.structured {
                Some(v) => Ok(v),
                None => parse_json_answer(r.response.as_deref().unwrap_or_default()),
            };
            let truncated = if r.truncated {
                cap_hint()
            } else {
                String::new()
            };
            match parsed {
                Err(e) => r.error = Some(format!("the answer is not valid JSON: {e}{truncated}")),
                Ok(mut value) => {
                    // Strict mode made the model write null for the optional fields it left out.
                    if format.strict_schema() {
                        drop_introduced_nulls(schema, &mut value);
                    }
                    match validate_json(schema, &value) {
                        Ok(()) => {
                            r.ok = true;
                            r.parsed_response = Some(value);
                        }
                        Err(e) => {
                            r.error = Some(format!(
                                "the answer does not match responseSchema: {e}{truncated}"
                            ))
                        }
                    }
                }
            }
        }
    }
    r
}

/// The rates `job` is billed at: its price override, else the catalog's row for its model.
pub(super) fn job_rates(job: &JobSpec, info: &ModelInfo) -> Option<Rates> {
    match &job.price {
        Some(o) => Some(Rates::of_override(info.provider, o)),
        None => info.price().map(Rates::of_row),
    }
}

/// Parses a JSON answer, tolerating surrounding whitespace and a Markdown code fence.
pub(super) fn parse_json_answer(text: &str) -> Result<Value, String> {
    let mut t = text.trim();
    if let Some(rest) = t.strip_prefix("```") {
        let rest = rest.strip_prefix("json").unwrap_or(rest);
        t = rest.strip_suffix("```").unwrap_or(rest).trim();
    }
    if t.is_empty() {
        return Err("the answer is empty".to_string());
    }
    serde_json::from_str(t).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn job(model: &str, price: Option<Value>) -> JobSpec {
        let mut spec = json!({"id": "j", "model": model, "prompt": "hi"});
        if let Some(price) = price {
            spec["price"] = price;
        }
        serde_json::from_value(spec).unwrap()
    }

    fn cost(job: &JobSpec, body: Value) -> f64 {
        let r = extract_result(job, 200, &body.to_string());
        assert!(r.ok, "{:?}", r.error);
        r.cost_usd.unwrap()
    }

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-12, "{a} != {b}");
    }

    #[test]
    fn anthropic_usage_with_cache_writes_and_reads() {
        let body = |usage: Value| {
            json!({"type":"message","role":"assistant","content":[{"type":"text","text":"ok"}],
                "stop_reason":"end_turn","usage": usage})
        };
        let j = job("claude-sonnet-4-6", None);
        // $3 in, $15 out; writes 5m $3.75, 1h $6, reads $0.30; half in batches.
        let written = cost(
            &j,
            body(json!({"input_tokens": 50, "output_tokens": 20,
                "cache_creation_input_tokens": 3000, "cache_read_input_tokens": 0,
                "cache_creation": {"ephemeral_5m_input_tokens": 2000, "ephemeral_1h_input_tokens": 1000}})),
        );
        close(
            written,
            (50.0 * 3.0 + 2000.0 * 3.75 + 1000.0 * 6.0 + 20.0 * 15.0) / 1e6 * 0.5,
        );
        // Without the breakdown, every write is a 5-minute one.
        let read = cost(
            &j,
            body(json!({"input_tokens": 50, "output_tokens": 20,
                "cache_creation_input_tokens": 0, "cache_read_input_tokens": 3000})),
        );
        close(read, (50.0 * 3.0 + 3000.0 * 0.30 + 20.0 * 15.0) / 1e6 * 0.5);
        let r = extract_result(
            &j,
            200,
            &body(
                json!({"input_tokens": 50, "output_tokens": 20, "cache_read_input_tokens": 3000}),
            )
            .to_string(),
        );
        assert_eq!(r.input_tokens, Some(3050));
        assert!(read < written);
    }

    #[test]
    fn openai_cached_tokens_and_reasoning() {
        let j = job("o4-mini", None);
        // $1.10 in, $0.275 cached, $4.40 out; reasoning tokens are in completion_tokens.
        let c = cost(
            &j,
            json!({"choices":[{"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],
                "usage":{"prompt_tokens": 2048, "completion_tokens": 500,
                    "prompt_tokens_details": {"cached_tokens": 1920},
                    "completion_tokens_details": {"reasoning_tokens": 450}}}),
        );
        close(
            c,
            (128.0 * 1.10 + 1920.0 * 0.275 + 500.0 * 4.40) / 1e6 * 0.5,
        );
    }

    #[test]
    fn gemini_cached_content_and_thoughts() {
        let j = job("gemini-2.5-flash", None);
        let c = cost(
            &j,
            json!({"candidates":[{"content":{"parts":[{"text":"ok"}],"role":"model"},"finishReason":"STOP"}],
                "usageMetadata":{"promptTokenCount": 1000, "cachedContentTokenCount": 800,
                    "candidatesTokenCount": 10, "thoughtsTokenCount": 90}}),
        );
        close(c, (200.0 * 0.30 + 800.0 * 0.03 + 100.0 * 2.50) / 1e6 * 0.5);
    }

    #[test]
    fn a_priced_fine_tune_is_accepted_and_costed() {
        let answer = json!({"choices":[{"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],
            "usage":{"prompt_tokens": 1000, "completion_tokens": 100}});
        let unpriced = job("ft:gpt-4o-mini:acme::x1", None);
        let r = extract_result(&unpriced, 200, &answer.to_string());
        assert!(!r.ok);
        assert!(r.error.unwrap().contains("unknown model"));
        let priced = job(
            "ft:gpt-4o-mini:acme::x1",
            Some(json!({"provider": "openai", "inputPerMTok": 0.30, "outputPerMTok": 1.20})),
        );
        close(
            cost(&priced, answer.clone()),
            (1000.0 * 0.30 + 100.0 * 1.20) / 1e6 * 0.5,
        );
        assert_eq!(
            crate::jobs::job_provider(&priced).unwrap(),
            crate::provider_id::ProviderId::OpenAi
        );
        // A known model's override replaces its catalog price.
        let known = job(
            "gpt-4o-mini",
            Some(json!({"inputPerMTok": 1.0, "outputPerMTok": 2.0})),
        );
        close(
            cost(&known, answer),
            (1000.0 * 1.0 + 100.0 * 2.0) / 1e6 * 0.5,
        );
    }
}

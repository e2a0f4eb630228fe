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

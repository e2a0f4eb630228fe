//! The provider batching engine as the bindings drive it: strings and numbers in, one JSON
//! string out per call (`{"deadline": ms | null, "outputs": [...]}`, see
//! [`crate::interceptor::Output`]).

use std::collections::BTreeMap;

use crate::fleet::StoreOutcome;
use crate::http::{HttpRequest, HttpResponse};
use crate::interceptor::{outputs_json, Input, Interceptor, JobSubmission};
use crate::jobs::{self, JobSpec, ProviderEndpoint};
use crate::options::OptionError;

use super::{ms, refusal, HostArgError};

pub struct InterceptorHost {
    inner: Interceptor,
}

fn parse_headers(json: &str) -> Result<Vec<(String, String)>, HostArgError> {
    serde_json::from_str(json)
        .map_err(|e| HostArgError(format!("headers must be [[name, value], …]: {e}")))
}

impl InterceptorHost {
    /// Options as JSON (camelCase); errors name the option.
    pub fn new(options_json: &str) -> Result<Self, OptionError> {
        Ok(InterceptorHost {
            inner: Interceptor::from_options_json(options_json)?,
        })
    }

    fn input(&mut self, now_ms: f64, input: Input) -> String {
        self.inner.handle(ms(now_ms), input);
        outputs_json(&mut self.inner)
    }

    /// A chunk of the journal from a previous run: whole lines in order (see
    /// [`crate::cache::Cache::load`]); damaged ones become warning events.
    pub fn load_cache(&mut self, text: &str) -> String {
        self.inner.load_cache(text);
        outputs_json(&mut self.inner)
    }

    /// After the load: `null`, or the journal's live lines as JSON (`[{"write": line} |
    /// {"copy": place}]`) for the host to write in place of its journal, atomically, before
    /// it calls [`InterceptorHost::journal_compacted`].
    pub fn journal_compaction(&mut self) -> String {
        serde_json::to_string(&self.inner.journal_compaction()).expect("compaction serializes")
    }

    pub fn journal_compacted(&mut self) -> bool {
        self.inner.journal_compacted()
    }

    /// `batchling cache prune`: the journal's live lines as JSON (as
    /// [`InterceptorHost::journal_compaction`]), whatever share of it is superseded.
    pub fn journal_prune(&mut self) -> String {
        serde_json::to_string(&self.inner.journal_prune()).expect("compaction serializes")
    }

    /// `batchling cache stats`: the loaded journal's [`crate::cache::CacheStats`] as JSON.
    pub fn cache_stats(&self) -> String {
        serde_json::to_string(&self.inner.cache_stats()).expect("stats serialize")
    }

    // The arguments as a host passes them, one JS value each (no object to build per call).
    #[allow(clippy::too_many_arguments)]
    pub fn submit(
        &mut self,
        now_ms: f64,
        request: f64,
        method: String,
        url: String,
        headers_json: &str,
        body: String,
        arrived_ms: Option<f64>,
    ) -> Result<String, HostArgError> {
        let http = HttpRequest {
            method,
            url,
            headers: parse_headers(headers_json)?,
            body,
        };
        let request = request as u64;
        // When the call reached the host; the submit time where the host does not say.
        let arrived_ms = ms(arrived_ms.unwrap_or(now_ms));
        Ok(self.input(
            now_ms,
            Input::Submit {
                request,
                http,
                arrived_ms,
            },
        ))
    }

    /// Jobs of the job builder in one call: `specs_json` is `[JobSpec, …]`, whose requests are
    /// `first_request`, `first_request + 1`, …; `endpoints_json` the providers' endpoints (as
    /// [`super::jobs::build_request`] takes them). Each job's request is built here and answered
    /// with its result line (`Output::JobResult`). A job that does not build refuses the whole
    /// call (`{"ok": false, "code", "error"}` naming the job) and none is submitted.
    pub fn submit_jobs(
        &mut self,
        now_ms: f64,
        first_request: f64,
        specs_json: &str,
        endpoints_json: &str,
    ) -> String {
        let specs: Vec<JobSpec> = match serde_json::from_str(specs_json) {
            Ok(specs) => specs,
            Err(e) => return refusal("ERR_BATCHLING_INVALID_JOB", format!("bad jobs: {e}")),
        };
        let endpoints: BTreeMap<String, ProviderEndpoint> =
            match serde_json::from_str(endpoints_json) {
                Ok(endpoints) => endpoints,
                Err(e) => {
                    return refusal(
                        "ERR_BATCHLING_INVALID_OPTION",
                        format!("bad endpoints: {e}"),
                    )
                }
            };
        let mut submissions = Vec::with_capacity(specs.len());
        for (request, spec) in (first_request as u64..).zip(specs) {
            match jobs::job_endpoint(&spec, &endpoints)
                .and_then(|endpoint| jobs::build_request(&spec, endpoint))
            {
                Ok(http) => submissions.push(JobSubmission {
                    request,
                    spec,
                    http,
                }),
                Err(e) => return refusal(e.code(), e),
            }
        }
        self.input(now_ms, Input::SubmitJobs { jobs: submissions })
    }

    pub fn response(
        &mut self,
        now_ms: f64,
        call: f64,
        status: u32,
        headers_json: &str,
        body: String,
    ) -> Result<String, HostArgError> {
        let response = HttpResponse {
            status: status as u16,
            headers: parse_headers(headers_json)?,
            body,
        };
        let call = call as u64;
        Ok(self.input(now_ms, Input::Response { call, response }))
    }

    /// Whole lines of a 2xx answer to a call sent with `stream: "lines"` (see
    /// [`Input::ResponseChunk`]); the call ends with [`InterceptorHost::response`] and the rest.
    /// A chunk that does not end with a newline is refused: a line cut across two chunks would
    /// be read as two malformed ones.
    pub fn response_chunk(
        &mut self,
        now_ms: f64,
        call: f64,
        text: String,
    ) -> Result<String, HostArgError> {
        if !text.ends_with('\n') {
            return Err(HostArgError(format!(
                "responseChunk: a chunk must be whole lines ending with a newline (split the body \
                 after its last newline and send the rest on); this one ({} bytes) ends mid-line",
                text.len()
            )));
        }
        let call = call as u64;
        Ok(self.input(now_ms, Input::ResponseChunk { call, text }))
    }

    pub fn transport_error(&mut self, now_ms: f64, call: f64, message: String) -> String {
        let call = call as u64;
        self.input(now_ms, Input::TransportError { call, message })
    }

    pub fn tick(&mut self, now_ms: f64) -> String {
        self.input(now_ms, Input::Tick)
    }

    /// Fleet mode: how the store action `action` (an `Output::Store`) went, as JSON
    /// (`StoreOutcome`, e.g. `{"kind":"values","values":["…",null]}`: a read's values are the
    /// keys' full values). JSON that is not an outcome is refused.
    pub fn store_outcome(
        &mut self,
        now_ms: f64,
        action: f64,
        outcome_json: &str,
    ) -> Result<String, HostArgError> {
        let outcome: StoreOutcome = serde_json::from_str(outcome_json)
            .map_err(|e| HostArgError(format!("storeOutcome: not a store outcome: {e}")))?;
        let action = action as u64;
        Ok(self.input(now_ms, Input::StoreOutcome { action, outcome }))
    }

    /// Fleet mode: the store could not execute `action` (unreachable past the host's retries);
    /// `error` says why (no secret: it ends up in the callers' errors).
    pub fn store_failed(&mut self, now_ms: f64, action: f64, error: String) -> String {
        let action = action as u64;
        self.input(now_ms, Input::StoreFailed { action, error })
    }

    pub fn cancel(&mut self, now_ms: f64, request: f64) -> String {
        let request = request as u64;
        self.input(now_ms, Input::Cancel { request })
    }

    /// The caller's signal aborted; `timeout_reason`: its reason is a `TimeoutError`. The core
    /// keeps the call if it was its client's own timer, else cancels it.
    pub fn abort(&mut self, now_ms: f64, request: f64, timeout_reason: bool) -> String {
        let request = request as u64;
        let input = Input::Abort {
            request,
            timeout_reason,
        };
        self.input(now_ms, input)
    }

    pub fn flush(&mut self, now_ms: f64) -> String {
        self.input(now_ms, Input::Flush)
    }

    pub fn close(&mut self, now_ms: f64) -> String {
        self.input(now_ms, Input::Close)
    }

    /// Provider batches not yet ended, in flight or waiting for admission
    /// ([`Interceptor::live_batches`]).
    pub fn live_batches(&self) -> u32 {
        self.inner.live_batches() as u32
    }

    /// Per queue: provider, endpoint, model, requests, batches, cache hits, estimated cost.
    pub fn report(&self) -> String {
        serde_json::to_string(&self.inner.report()).expect("report serializes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn outputs(json: &str) -> Vec<Value> {
        let v: Value = serde_json::from_str(json).unwrap();
        v["outputs"].as_array().unwrap().clone()
    }

    #[test]
    fn fleet_store_actions_cross_as_json() {
        let mut host = InterceptorHost::new(r#"{"fleet":{"owner":"w1","leaseMs":3000}}"#).unwrap();
        let body = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#;
        let out = host
            .submit(
                0.0,
                1.0,
                "POST".into(),
                "https://api.openai.com/v1/chat/completions".into(),
                r#"[["authorization","Bearer sk-proj-secret"],["content-type","application/json"]]"#,
                body.into(),
                None,
            )
            .unwrap();
        let outs = outputs(&out);
        let claim = outs
            .iter()
            .find(|o| o["type"] == "store")
            .expect("a store action");
        assert_eq!(claim["op"]["kind"], "claim");
        assert!(claim["op"]["key"].as_str().unwrap().starts_with("req:"));
        assert!(
            claim.get("answer").is_none(),
            "only a put carries an answer"
        );
        assert!(!out.contains("sk-proj-secret"));
        let action = claim["action"].as_f64().unwrap();

        let out = host
            .store_outcome(1.0, action, r#"{"kind":"claimed"}"#)
            .unwrap();
        let read = outputs(&out)
            .into_iter()
            .find(|o| o["type"] == "store")
            .unwrap();
        assert_eq!(read["op"]["kind"], "read");

        let e = host
            .store_outcome(1.0, action, r#"{"kind":"nope"}"#)
            .unwrap_err();
        assert!(e.0.contains("storeOutcome"), "{e}");

        let read_action = read["action"].as_f64().unwrap();
        let out = host.store_failed(2.0, read_action, "connect ECONNREFUSED".into());
        let fail = outputs(&out)
            .into_iter()
            .find(|o| o["type"] == "fail")
            .unwrap();
        assert_eq!(fail["request"], 1);
        assert_eq!(fail["code"], "ERR_BATCHLING_STORE_UNAVAILABLE");
        assert!(fail["message"].as_str().unwrap().contains("ECONNREFUSED"));
    }
}

//! Jobs handed over in bulk (the job builder's run): each request carries its job's spec, and
//! the engine answers it with the job's result line rather than a synthetic response, so a
//! whole chunk of jobs crosses the boundary in one call each way and the host neither builds a
//! `Response` nor extracts a result per job.
//!
//! A job's spec is kept only while its request is open; a failure or a pass-through (which a
//! job cannot take: there is no caller's request to send) answers it as a `Fail`.

use crate::http::HttpRequest;
use crate::jobs::{self, JobSpec};

use super::io::{FailCode, Output, RequestId};
use super::Interceptor;

/// One job of a bulk submission: the host's request id, its spec and its built request.
#[derive(Debug, Clone, PartialEq)]
pub struct JobSubmission {
    pub request: RequestId,
    pub spec: JobSpec,
    pub http: HttpRequest,
}

impl Interceptor {
    pub(super) fn submit_jobs(&mut self, now_ms: u64, jobs: Vec<JobSubmission>) {
        for job in jobs {
            self.job_specs.insert(job.request, job.spec);
            self.submit(now_ms, job.request, job.http, now_ms);
        }
    }

    /// The outputs of a step with every answer to a job request turned into its result line.
    pub(super) fn answer_jobs(&mut self, outputs: Vec<Output>) -> Vec<Output> {
        if self.job_specs.is_empty() {
            return outputs;
        }
        outputs
            .into_iter()
            .map(|output| match output {
                Output::Respond {
                    request,
                    status,
                    body,
                    headers,
                } => match self.job_specs.remove(&request) {
                    Some(spec) => {
                        let result = jobs::extract_result(&spec, status, &body);
                        Output::JobResult {
                            request,
                            ok: result.ok,
                            cost_usd: result.cost_usd,
                            line: serde_json::to_string(&result).expect("results serialize"),
                        }
                    }
                    None => Output::Respond {
                        request,
                        status,
                        headers,
                        body,
                    },
                },
                Output::Fail { request, .. } => {
                    self.job_specs.remove(&request);
                    output
                }
                Output::PassThrough { request, reason }
                    if self.job_specs.remove(&request).is_some() =>
                {
                    Output::Fail {
                        request,
                        code: FailCode::Protocol,
                        message: format!("the job's request cannot be batched: {reason}"),
                    }
                }
                other => other,
            })
            .collect()
    }
}

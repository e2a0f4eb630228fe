//! Telling a client's own timeout from its caller's abort. SDKs and frameworks abort the signal
//! they pass to fetch when their timeout for a synchronous call runs out (the Stainless SDKs after
//! 10 min or 1 min by default); a batch takes minutes to hours, so a batched call outlives that
//! timer and keeps waiting for its batch, while a caller's own abort cancels it at once.
//!
//! At submit the engine keeps, per request, what the rule needs from its headers and when the call
//! reached the host ([`ClientTimer`]); the host reports an abort with the one thing only the runtime knows,
//! whether its reason is a `TimeoutError` ([`super::Input::Abort`]).

use crate::http::HttpRequest;

use super::{Interceptor, RequestId};

/// The shortest default timeout of the Stainless SDKs (Groq's and Together's; OpenAI's and
/// Anthropic's are 10 min).
const STAINLESS_SHORTEST_DEFAULT_MS: u64 = 60_000;

/// Timer callbacks may run a little before the measured elapsed time says they should.
const TIMER_SLACK_MS: u64 = 20;

/// What an abort of an intercepted call was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum AbortKind {
    /// The client's timer: the call stays in its batch (the client's fetch stays pending).
    ClientTimeout,
    /// A timeout signal the caller handed to a client that enforces it itself whatever the fetch
    /// answers (the Stainless SDKs rethrow it; LangChain races it): cancelled, like any abort.
    CallerTimeout,
    /// The caller's abort: cancelled at once.
    CallerAbort,
    /// An abort of a client that does not declare its timeout, sooner than any default one:
    /// cancelled as the caller's, though it may have been a shorter timeout of the client's.
    UndeclaredAbort,
}

impl AbortKind {
    /// The warning for an abort that may have been a client's timeout which cannot be outlived,
    /// given once per engine.
    pub(super) fn warning(self) -> Option<&'static str> {
        match self {
            AbortKind::CallerTimeout => Some(
                "a batched call was aborted by a timeout signal its caller gave the SDK (LangChain's per-call `timeout`, or `signal: AbortSignal.timeout(…)`); \
                 the SDK enforces such a signal itself whatever the batch answers, so the call is cancelled. Batches take up to their completion window (24 h): \
                 leave per-call timeouts off batched calls, or set them to at least that (e.g. `timeout: 24 * 3600 * 1000`); the SDKs' own `timeout` option is outlived.",
            ),
            AbortKind::UndeclaredAbort => Some(
                "a batched call was aborted within a minute by a client that does not declare its timeout (openai 6, as inside @langchain/openai), so the abort is taken as its caller's and the call is cancelled. \
                 If it was the client's own `timeout` instead, that timeout cannot be outlived: leave the client's `timeout` at its default (outlived), or give it per request, which the SDK declares \
                 (openai: the request option `{ timeout: 24 * 3600 * 1000 }`; LangChain: `new ChatOpenAI({ configuration: { timeout: 24 * 3600 * 1000 } })`).",
            ),
            AbortKind::ClientTimeout | AbortKind::CallerAbort => None,
        }
    }
}

impl Interceptor {
    /// A client's own timeout is outlived: the call stays in its batch and its fetch pending
    /// until the batch answers. Any other abort cancels the call at once, with a warning (once
    /// per kind) when it may have been a client's timeout that cannot be outlived.
    pub(super) fn abort(&mut self, now_ms: u64, request: RequestId, timeout_reason: bool) {
        let Some(waiting) = self.request_entry.get(&request) else {
            return;
        };
        let kind = waiting.timer.classify(timeout_reason, now_ms);
        if kind == AbortKind::ClientTimeout {
            return;
        }
        if let Some(warning) = kind.warning() {
            if self.warned_aborts.insert(kind) {
                self.warn(warning.into());
            }
        }
        self.cancel(now_ms, request);
    }
}

/// What a request's headers say about its client's timer, and when it was submitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ClientTimer {
    /// The shortest timeout the request's timeout header allows, in ms.
    declared_floor_ms: Option<u64>,
    /// Sent by a Stainless SDK (`x-stainless-retry-count`), which arms a timer even when it
    /// does not declare it.
    stainless: bool,
    /// When the call reached the host: the client armed its timer then.
    arrived_ms: u64,
}

impl ClientTimer {
    pub(super) fn of(http: &HttpRequest, arrived_ms: u64) -> Self {
        ClientTimer {
            declared_floor_ms: declared_timeout_floor_ms(http),
            stainless: http.header("x-stainless-retry-count").is_some(),
            arrived_ms,
        }
    }

    /// Classify an abort at `now_ms` from the request's headers, whether the abort's reason is a
    /// `TimeoutError` and the time since the call reached the host. Clients that declare their timeout on the request
    /// are judged by timing: the Stainless SDKs (OpenAI, Anthropic, Groq, Together) send
    /// `x-stainless-timeout` (whole seconds, rounded down) and arm their timer as they call
    /// fetch; Google's SDK sends `x-server-timeout` (rounded up). Their timers abort without a
    /// reason, so an abort sooner than the declared timeout is the caller's, and a `TimeoutError`
    /// reason is a caller's timeout signal. Older Stainless SDKs declare a timeout only when it
    /// is given per request: without it, an abort after their shortest default timeout (1 min)
    /// is taken as their timer. Clients that declare nothing (Mistral's `timeoutMs`, the AI
    /// SDK's `timeout`) time out with `AbortSignal.timeout`, whose reason is a `TimeoutError`.
    pub(super) fn classify(&self, timeout_reason: bool, now_ms: u64) -> AbortKind {
        let reached =
            |timeout_ms: u64| now_ms.saturating_sub(self.arrived_ms) + TIMER_SLACK_MS >= timeout_ms;
        if let Some(soonest) = self.declared_floor_ms {
            if timeout_reason {
                return AbortKind::CallerTimeout;
            }
            return if reached(soonest) {
                AbortKind::ClientTimeout
            } else {
                AbortKind::CallerAbort
            };
        }
        // A Stainless SDK that does not declare its timeout (openai 6 unless it is given per
        // request) still arms one, at least its default unless configured shorter.
        if self.stainless {
            return if reached(STAINLESS_SHORTEST_DEFAULT_MS) {
                AbortKind::ClientTimeout
            } else {
                AbortKind::UndeclaredAbort
            };
        }
        if timeout_reason {
            AbortKind::ClientTimeout
        } else {
            AbortKind::CallerAbort
        }
    }
}

/// The shortest timeout the request's timeout header allows, in ms; `None` without one.
fn declared_timeout_floor_ms(http: &HttpRequest) -> Option<u64> {
    if let Some(stainless) = whole_seconds(http.header("x-stainless-timeout")) {
        return Some(stainless.saturating_mul(1000));
    }
    let google = whole_seconds(http.header("x-server-timeout"))?;
    Some(google.saturating_sub(1).saturating_mul(1000))
}

fn whole_seconds(value: Option<&str>) -> Option<u64> {
    let value = value?.trim();
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // Digits only: the one failure left is overflow, a timeout no abort reaches.
    Some(value.parse().unwrap_or(u64::MAX))
}

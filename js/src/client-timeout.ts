// Telling a client's own timeout from its caller's abort. SDKs and frameworks abort the signal
// they pass to fetch when their timeout for a synchronous call runs out (the Stainless SDKs after
// 10 min or 1 min by default); a batch takes minutes to hours, so a batched call outlives that
// timer and keeps waiting for its batch, while a caller's own abort cancels it at once.

/** What an abort of an intercepted call was. */
export type AbortKind =
  /** The client's timer: the call stays in its batch (the client's fetch stays pending). */
  | "clientTimeout"
  /** A timeout signal the caller handed to a client that enforces it itself whatever the fetch
   * answers (the Stainless SDKs rethrow it; LangChain races it): cancelled, like any abort. */
  | "callerTimeout"
  /** The caller's abort: cancelled at once. */
  | "callerAbort"
  /** An abort of a client that does not declare its timeout, sooner than any default one:
   * cancelled as the caller's, though it may have been a shorter timeout of the client's. */
  | "undeclaredAbort";

/** The shortest default timeout of the Stainless SDKs (Groq's and Together's; OpenAI's and
 * Anthropic's are 10 min). */
const STAINLESS_SHORTEST_DEFAULT_MS = 60_000;

/** Timer callbacks may run a little before the measured elapsed time says they should. */
const TIMER_SLACK_MS = 20;

/**
 * Classify an abort from the request's headers, the abort's reason and the time since the call
 * reached the host. Clients that declare their timeout on the request are judged by timing: the
 * Stainless SDKs (OpenAI, Anthropic, Groq, Together) send `x-stainless-timeout` (whole seconds,
 * rounded down) and arm their timer as they call fetch; Google's SDK sends `x-server-timeout`
 * (rounded up). Their timers abort without a reason, so an abort sooner than the declared
 * timeout is the caller's, and a `TimeoutError` reason is a caller's timeout signal. Older
 * Stainless SDKs declare a timeout only when it is given per request: without it, an abort
 * after their shortest default timeout (1 min) is taken as their timer. Clients that declare nothing (Mistral's `timeoutMs`, the AI SDK's
 * `timeout`) time out with `AbortSignal.timeout`, whose reason is a `TimeoutError`.
 */
export function classifyAbort(headers: Headers, reason: unknown, elapsedMs: number): AbortKind {
  const timeoutError = reason instanceof DOMException && reason.name === "TimeoutError";
  const soonest = declaredTimeoutFloorMs(headers);
  if (soonest !== undefined) {
    if (timeoutError) return "callerTimeout";
    return elapsedMs + TIMER_SLACK_MS >= soonest ? "clientTimeout" : "callerAbort";
  }
  // A Stainless SDK that does not declare its timeout (openai 6 unless it is given per request)
  // still arms one, at least its default unless configured shorter.
  if (headers.has("x-stainless-retry-count")) {
    return elapsedMs + TIMER_SLACK_MS >= STAINLESS_SHORTEST_DEFAULT_MS ? "clientTimeout" : "undeclaredAbort";
  }
  return timeoutError ? "clientTimeout" : "callerAbort";
}

/** The shortest timeout the request's timeout header allows, in ms; undefined without one. */
function declaredTimeoutFloorMs(headers: Headers): number | undefined {
  const stainless = wholeSeconds(headers.get("x-stainless-timeout"));
  if (stainless !== undefined) return stainless * 1000;
  const google = wholeSeconds(headers.get("x-server-timeout"));
  if (google !== undefined) return Math.max(0, google - 1) * 1000;
  return undefined;
}

function wholeSeconds(value: string | null): number | undefined {
  if (value === null || !/^\d+$/.test(value.trim())) return undefined;
  return Number(value.trim());
}

/** The warning for each abort that may have been a client's timeout which cannot be outlived,
 * given once per context. */
export const ABORT_WARNINGS: Partial<Record<AbortKind, string>> = {
  callerTimeout:
    "a batched call was aborted by a timeout signal its caller gave the SDK (LangChain's per-call `timeout`, or `signal: AbortSignal.timeout(…)`); " +
    "the SDK enforces such a signal itself whatever the batch answers, so the call is cancelled. Batches take up to their completion window (24 h): " +
    "leave per-call timeouts off batched calls, or set them to at least that (e.g. `timeout: 24 * 3600 * 1000`); the SDKs' own `timeout` option is outlived.",
  undeclaredAbort:
    "a batched call was aborted within a minute by a client that does not declare its timeout (openai 6, as inside @langchain/openai), so the abort is taken as its caller's and the call is cancelled. " +
    "If it was the client's own `timeout` instead, that timeout cannot be outlived: leave the client's `timeout` at its default (outlived), or give it per request, which the SDK declares " +
    "(openai: the request option `{ timeout: 24 * 3600 * 1000 }`; LangChain: `new ChatOpenAI({ configuration: { timeout: 24 * 3600 * 1000 } })`).",
};

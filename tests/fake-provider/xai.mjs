// Fake xAI (Grok) API under /xai/v1: sync chat completions (OpenAI-compatible) and xAI's own
// Batch API (providers.md §8): create an empty batch, add requests, poll `state` counters,
// page through results, cancel.
//
// providers.md marks the wire shapes third-party; where nothing says, this fake assumes (as the
// adapter core/src/providers/xai.rs does):
// - the list answer is `{batches: [...], pagination_token}` (xAI's gRPC ListBatchesResponse);
// - a `batch_request_id` the batch already holds is ignored on a repeated add (deduplicated);
// - an expired batch keeps its unfinished requests pending and its `expire_time` lies in the
//   past (by the server's clock, which the `Date` header of every answer carries); there is no
//   "expired" state;
// - a batch xAI rejects carries `cancel_by_xai_message` (the "failed" fate); a cancelled one has
//   `cancel_time` and every unfinished request in `num_cancelled`;
// - a per-request error is `{code: <gRPC code>, message}`: FAIL:<status> maps the status to its
//   gRPC code (400 → 3 INVALID_ARGUMENT), EXPIRE_LINE gives 4 (DEADLINE_EXCEEDED).

import {
  batchesNewestFirst,
  errorResponse,
  grpcForHttp,
  isPlainObject,
  markTerminal,
  nowSeconds,
  openaiErrorBody,
  parseTriggers,
  registerBatch,
  shuffleForOutput,
} from './common.mjs';
import { openaiAnswer, openaiUserText } from './openai.mjs';

const CHAT = '/v1/chat/completions';
/** Documented: at most 25 MB per add-requests call. */
const MAX_ADD_BYTES = 25_000_000;
/** Results per page unless `config.xaiResultsPageSize` says otherwise: small, so paging runs. */
const DEFAULT_PAGE_SIZE = 2;

const iso = (seconds) => new Date(seconds * 1000).toISOString();

/** The answer to one chat request: the same as the sync endpoint's (`openaiAnswer`). */
export function xaiAnswer(body) {
  return openaiAnswer(CHAT, body);
}

/** One batch request's result entry. */
function execute(state, request) {
  const error = (status, message) => ({ error: { code: grpcForHttp(status)[0], message } });
  const text = isPlainObject(request.body) ? openaiUserText(CHAT, request.body) : '';
  if (parseTriggers(text).expireLine) return error(504, 'The request expired before it ran.');
  if (state.config.rejectStreamInBatch && request.body?.stream === true) {
    return error(400, 'Streaming is not supported in batch requests.');
  }
  const answer = xaiAnswer(request.body);
  if (answer.status >= 200 && answer.status < 300) return { response: { chat_get_completion: answer.body } };
  return error(answer.status, answer.body?.error?.message ?? `HTTP ${answer.status}`);
}

/** Run the batch's requests (half of them when it expires, none when it fails or is cancelled) and make it terminal. */
function finish(state, record, fate) {
  const n = record.requests.length;
  const t = nowSeconds();
  const ran = fate === 'expired' ? Math.floor(n / 2) : fate ? 0 : n;
  record.results = record.requests.slice(0, ran).map((request) => ({
    batch_request_id: request.customId,
    batch_result: execute(state, request),
  }));
  if (fate === 'failed') {
    record.cancelByXaiMessage = 'The batch was rejected by xAI (injected fault).';
    record.cancelTime = t;
  } else if (fate === 'cancelled') {
    record.cancelTime = t;
  } else if (fate === 'expired') {
    record.expireTime = t - 1; // the rest stays pending, past its expiry
  }
  markTerminal(state, record);
}

function counters(record) {
  const n = record.requests.length;
  const results = record.results ?? [];
  const errors = results.filter((r) => r.batch_result.error).length;
  const stopped = record.cancelTime !== undefined;
  const ran = results.length;
  return {
    num_requests: n,
    num_pending: stopped ? 0 : n - ran,
    num_success: ran - errors,
    num_error: errors,
    num_cancelled: stopped ? n - ran : 0,
  };
}

/** One poll: at `pollsUntilDone` polls a batch holding requests ends as its fate says. */
function advance(state, record) {
  if (record.terminal) return;
  record.polls += 1;
  if (record.requests.length > 0 && record.polls >= state.config.pollsUntilDone) finish(state, record, record.fate);
}

function batchObject(record) {
  return {
    batch_id: record.id,
    name: record.name,
    create_time: iso(record.createTime),
    expire_time: iso(record.expireTime),
    create_api_key_id: 'key-fake',
    cancel_time: record.cancelTime === undefined ? null : iso(record.cancelTime),
    cancel_by_xai_message: record.cancelByXaiMessage ?? null,
    state: counters(record),
    cost_breakdown: { total_cost_usd_ticks: 0 },
  };
}

function getBatch(state, id) {
  const record = state.batches.get(id);
  return record?.provider === 'xai' ? record : null;
}

const notFound = (id) => errorResponse('xai', 404, `Batch ${id} not found`);
const bad = (message) => errorResponse('xai', 400, message);

/** `?limit=` bounded by `max`, default `max`. */
function pageLimit(url, max) {
  const limit = Number(url.searchParams.get('limit'));
  return Number.isInteger(limit) && limit > 0 ? Math.min(limit, max) : max;
}

/** An opaque page token, with characters a client must percent-encode. */
const tokenFor = (offset) => `page/${offset}=`;
const offsetOf = (token) => Number(/^page\/(\d+)=$/.exec(token ?? '')?.[1] ?? 0);

/** Validate an add-requests body; returns the requests or an error message. */
function parseAdd(json, bytes) {
  if (bytes > MAX_ADD_BYTES) return { error: `The request is larger than ${MAX_ADD_BYTES} bytes.`, status: 413 };
  const list = json?.batch_requests;
  if (!Array.isArray(list) || list.length === 0) return { error: 'batch_requests must be a non-empty array.' };
  const requests = [];
  for (const [i, entry] of list.entries()) {
    const id = entry?.batch_request_id;
    if (typeof id !== 'string' || id === '') return { error: `batch_requests[${i}].batch_request_id is required.` };
    const wrapper = entry.batch_request;
    const keys = isPlainObject(wrapper) ? Object.keys(wrapper) : [];
    if (keys.length !== 1 || keys[0] !== 'chat_get_completion' || !isPlainObject(wrapper.chat_get_completion)) {
      return { error: `batch_requests[${i}].batch_request must hold one chat_get_completion object.` };
    }
    requests.push({ customId: id, body: wrapper.chat_get_completion });
  }
  return { requests };
}

// ---------------------------------------------------------------------------
// Routes

export function xaiRoutes() {
  const route = (name, method, pattern, handle, extra = {}) => ({ provider: 'xai', name, method, pattern, handle, ...extra });
  const ID = '([^/:]+)';
  return [
    route('xai.chat.completions', 'POST', /^\/xai\/v1\/chat\/completions$/, (ctx) => {
      if (ctx.jsonError) return errorResponse('xai', 400, ctx.jsonError);
      if (ctx.json?.stream === true) return errorResponse('xai', 400, 'The fake provider does not implement streaming responses.');
      const answer = xaiAnswer(ctx.json);
      return { status: answer.status, json: answer.body, headers: { 'x-request-id': answer.requestId } };
    }, { sync: true }),

    route('xai.batches.create', 'POST', /^\/xai\/v1\/batches$/, (ctx) => {
      if (ctx.jsonError) return bad(ctx.jsonError);
      const name = ctx.json?.name;
      if (typeof name !== 'string' || name === '') return bad('name is required.');
      const createTime = nowSeconds();
      const record = {
        provider: 'xai',
        id: `batch-fake-${ctx.state.nextId()}`,
        name,
        requests: [],
        headers: ctx.headers,
        polls: 0,
        createTime,
        expireTime: createTime + 24 * 3600,
      };
      registerBatch(ctx.state, record);
      return { status: 200, json: batchObject(record) };
    }),

    route('xai.batches.addRequests', 'POST', new RegExp(`^/xai/v1/batches/${ID}/requests$`), (ctx, [id]) => {
      const record = getBatch(ctx.state, id);
      if (!record) return notFound(id);
      if (ctx.jsonError) return bad(ctx.jsonError);
      if (record.terminal) return bad(`Batch ${id} has ended; no requests can be added.`);
      const parsed = parseAdd(ctx.json, ctx.body.length);
      if (parsed.error) return errorResponse('xai', parsed.status ?? 400, parsed.error);
      const known = new Set(record.requests.map((r) => r.customId));
      for (const request of parsed.requests) {
        if (known.has(request.customId)) continue; // assumed: a repeated id is deduplicated
        known.add(request.customId);
        record.requests.push(request);
      }
      const size = ctx.state.counters.batchSizes.find((b) => b.provider === 'xai' && b.id === id);
      if (size) size.size = record.requests.length;
      if (ctx.state.config.pollsUntilDone <= 0) finish(ctx.state, record, record.fate);
      return { status: 200, json: {} };
    }),

    route('xai.batches.listRequests', 'GET', new RegExp(`^/xai/v1/batches/${ID}/requests$`), (ctx, [id]) => {
      const record = getBatch(ctx.state, id);
      if (!record) return notFound(id);
      const done = new Set((record.results ?? []).map((r) => r.batch_request_id));
      const metadata = record.requests.map((r) => ({
        batch_request_id: r.customId,
        endpoint: CHAT,
        model: r.body.model ?? '',
        state: done.has(r.customId) ? 'STATE_SUCCEEDED' : 'STATE_PENDING',
      }));
      return { status: 200, json: { batch_request_metadata: metadata, pagination_token: null } };
    }),

    route('xai.batches.results', 'GET', new RegExp(`^/xai/v1/batches/${ID}/results$`), (ctx, [id]) => {
      const record = getBatch(ctx.state, id);
      if (!record) return notFound(id);
      const all = shuffleForOutput(record.results ?? [], ctx.state.config);
      const offset = offsetOf(ctx.url.searchParams.get('pagination_token'));
      const end = offset + pageLimit(ctx.url, ctx.state.config.xaiResultsPageSize ?? DEFAULT_PAGE_SIZE);
      return {
        status: 200,
        json: { results: all.slice(offset, end), pagination_token: end < all.length ? tokenFor(end) : null },
      };
    }),

    route('xai.batches.retrieve', 'GET', new RegExp(`^/xai/v1/batches/${ID}$`), (ctx, [id]) => {
      const record = getBatch(ctx.state, id);
      if (!record) return notFound(id);
      advance(ctx.state, record);
      return { status: 200, json: batchObject(record) };
    }),

    route('xai.batches.list', 'GET', /^\/xai\/v1\/batches$/, (ctx) => {
      const all = batchesNewestFirst(ctx.state, 'xai');
      const offset = offsetOf(ctx.url.searchParams.get('pagination_token'));
      const end = offset + pageLimit(ctx.url, 100);
      return {
        status: 200,
        json: { batches: all.slice(offset, end).map(batchObject), pagination_token: end < all.length ? tokenFor(end) : null },
      };
    }),

    route('xai.batches.cancel', 'POST', new RegExp(`^/xai/v1/batches/${ID}:cancel$`), (ctx, [id]) => {
      const record = getBatch(ctx.state, id);
      if (!record) return notFound(id);
      if (!record.terminal) {
        record.results ??= [];
        record.cancelTime = nowSeconds();
        markTerminal(ctx.state, record);
      }
      return { status: 200, json: batchObject(record) };
    }),
  ];
}

export function xaiAuthError(headers) {
  if (/^Bearer\s+\S+/i.test(headers.authorization ?? '')) return null;
  return { status: 401, json: openaiErrorBody(401, 'Incorrect API key provided. Obtain an API key from https://console.x.ai.') };
}

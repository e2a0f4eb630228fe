// Fake Anthropic API: Messages (sync) and Message Batches.
// Wire formats follow providers.md §3 and the `@anthropic-ai/sdk` npm SDK.

import { anthropicPromptCache } from './prompt-cache.mjs';
import {
  anthropicErrorBody,
  answerSeed,
  batchesNewestFirst,
  bodyDigest,
  errorResponse,
  estimateTokens,
  isPlainObject,
  isoFromSeconds,
  markTerminal,
  nowSeconds,
  parseTriggers,
  overEnqueuedLimit,
  registerBatch,
  shuffleForOutput,
  stripStreamFields,
  structuredValue,
  toJsonl,
} from './common.mjs';

const CUSTOM_ID = /^[a-zA-Z0-9_-]{1,64}$/;

// ---------------------------------------------------------------------------
// Deterministic answers

export function anthropicUserText(body) {
  const users = (Array.isArray(body?.messages) ? body.messages : []).filter((m) => m?.role === 'user');
  const content = users.at(-1)?.content;
  if (typeof content === 'string') return content;
  if (Array.isArray(content)) {
    return content.filter((b) => b?.type === 'text' && typeof b.text === 'string').map((b) => b.text).join('\n');
  }
  return '';
}

function validate(body) {
  if (!isPlainObject(body)) return 'The request body must be a JSON object.';
  if (typeof body.model !== 'string' || body.model === '') return 'model: Field required';
  if (!Number.isInteger(body.max_tokens)) return 'max_tokens: Field required';
  if (!Array.isArray(body.messages) || body.messages.length === 0) return 'messages: Field required';
  return null;
}

/** The tool a request forces the model to call, if any. */
function forcedTool(body) {
  const tools = Array.isArray(body.tools) ? body.tools.filter((t) => isPlainObject(t) && typeof t.name === 'string') : [];
  const choice = body.tool_choice;
  if (choice?.type === 'tool') return tools.find((t) => t.name === choice.name) ?? null;
  if (choice?.type === 'any') return tools[0] ?? null;
  return null;
}

/**
 * The answer to one Messages request: `{status, body, requestId}`; a pure
 * function of the body minus stream fields, shared by sync and batch.
 */
export function anthropicAnswer(rawBody) {
  const body = stripStreamFields(rawBody);
  const digest = bodyDigest(body);
  const seed = answerSeed('anthropic', '/v1/messages', body?.model, digest);
  const requestId = `req_fake${seed.slice(0, 24)}`;
  const invalid = validate(body);
  if (invalid) return { status: 400, requestId, body: anthropicErrorBody(400, invalid, requestId) };
  const text = anthropicUserText(body);
  const { failStatus, badJson } = parseTriggers(text);
  if (failStatus) {
    const message = `Fake failure triggered by FAIL:${failStatus} (body sha256 ${digest})`;
    return { status: failStatus, requestId, body: anthropicErrorBody(failStatus, message, requestId) };
  }
  // A forced tool (`tool_choice: {type: "tool", name}`, or `any` with tools) is answered with
  // one tool_use block whose input is generated from the tool's input_schema.
  const tool = forcedTool(body);
  let reply;
  let content;
  if (tool) {
    const input = structuredValue(tool.input_schema ?? {}, text, { bad: badJson });
    reply = JSON.stringify(input);
    content = [{ type: 'tool_use', id: `toolu_fake${seed.slice(24, 48)}`, name: tool.name, input }];
  } else {
    reply = `echo: ${text}`;
    content = [{ type: 'text', text: reply }];
  }
  return {
    status: 200,
    requestId,
    body: {
      id: `msg_fake${seed.slice(0, 24)}`,
      type: 'message',
      role: 'assistant',
      model: body.model,
      content,
      stop_reason: tool ? 'tool_use' : 'end_turn',
      stop_sequence: null,
      usage: {
        input_tokens: estimateTokens(JSON.stringify(body)),
        output_tokens: estimateTokens(reply),
        cache_creation_input_tokens: 0,
        cache_read_input_tokens: 0,
      },
      fake_body_sha256: digest,
    },
  };
}

// ---------------------------------------------------------------------------
// Batches

function executeRequest(state, request, fate, index = 0, count = 1) {
  // Expired: the first half ran before the 24 h ran out; the rest did not.
  if (fate === 'expired' && index >= Math.floor(count / 2)) return { type: 'expired' };
  if (fate === 'cancelled') return { type: 'canceled' };
  if (fate === 'failed') {
    return { type: 'errored', error: anthropicErrorBody(500, 'The batch failed (injected fault).') };
  }
  if (parseTriggers(anthropicUserText(request.body)).expireLine) return { type: 'expired' };
  if (state.config.rejectStreamInBatch && request.body?.stream === true) {
    return { type: 'errored', error: anthropicErrorBody(400, 'stream: Streaming is not supported in message batches.') };
  }
  const answer = anthropicAnswer(request.body);
  anthropicPromptCache(state, request.body, answer);
  return answer.status >= 200 && answer.status < 300
    ? { type: 'succeeded', message: answer.body }
    : { type: 'errored', error: answer.body };
}

const COUNT_KEY = { succeeded: 'succeeded', errored: 'errored', canceled: 'canceled', expired: 'expired' };

function finish(state, record, fate) {
  // Fate `missing`: the last request did not run and has no result line (nor a count).
  const ran = fate === 'missing' ? record.requests.slice(0, -1) : record.requests;
  record.results = ran.map((request, index) => ({
    custom_id: request.customId,
    result: executeRequest(state, request, fate, index, ran.length),
  }));
  record.requestCounts = { processing: 0, succeeded: 0, errored: 0, canceled: 0, expired: 0 };
  for (const { result } of record.results) record.requestCounts[COUNT_KEY[result.type]] += 1;
  record.state = 'ended';
  record.endedAt = nowSeconds();
  if (fate === 'cancelled') record.cancelInitiatedAt ??= record.endedAt;
  markTerminal(state, record);
}

function advance(state, record) {
  if (record.terminal) return;
  record.polls += 1;
  if (record.cancelRequested) return finish(state, record, 'cancelled');
  if (record.polls >= state.config.pollsUntilDone) finish(state, record, record.fate);
}

function batchObject(record, baseUrl) {
  const ended = record.state === 'ended';
  return {
    id: record.id,
    type: 'message_batch',
    processing_status: record.state,
    request_counts: record.requestCounts ?? {
      processing: record.requests.length, succeeded: 0, errored: 0, canceled: 0, expired: 0,
    },
    ended_at: isoFromSeconds(record.endedAt),
    created_at: isoFromSeconds(record.createdAt),
    expires_at: isoFromSeconds(record.createdAt + 24 * 3600),
    archived_at: null,
    cancel_initiated_at: isoFromSeconds(record.cancelInitiatedAt),
    results_url: ended ? `${baseUrl}/v1/messages/batches/${record.id}/results` : null,
  };
}

function getBatch(state, id) {
  const record = state.batches.get(id);
  return record?.provider === 'anthropic' ? record : null;
}

const notFound = (id) => errorResponse('anthropic', 404, `message batch not found: ${id}`);

function validateCreate(body) {
  if (!isPlainObject(body) || !Array.isArray(body.requests)) return 'requests: Field required';
  if (body.requests.length === 0) return 'requests: List should have at least 1 item after validation, not 0';
  if (body.requests.length > 100000) return 'requests: List should have at most 100000 items';
  const seen = new Set();
  for (const [i, item] of body.requests.entries()) {
    if (!isPlainObject(item) || typeof item.custom_id !== 'string' || !CUSTOM_ID.test(item.custom_id)) {
      return `requests.${i}.custom_id: String should match pattern '^[a-zA-Z0-9_-]{1,64}$'`;
    }
    if (seen.has(item.custom_id)) return `requests.${i}.custom_id: Duplicate custom_id '${item.custom_id}'`;
    seen.add(item.custom_id);
    if (!isPlainObject(item.params)) return `requests.${i}.params: Field required`;
  }
  return null;
}

// ---------------------------------------------------------------------------
// Routes

export function anthropicRoutes() {
  const route = (name, method, pattern, handle, extra = {}) => ({ provider: 'anthropic', name, method, pattern, handle, ...extra });
  return [
    route('anthropic.messages', 'POST', /^\/v1\/messages$/, (ctx) => {
      if (ctx.jsonError) return errorResponse('anthropic', 400, ctx.jsonError);
      if (ctx.json?.stream === true) {
        return errorResponse('anthropic', 400, 'The fake provider does not implement streaming responses.');
      }
      const answer = anthropicAnswer(ctx.json);
      anthropicPromptCache(ctx.state, ctx.json, answer);
      return { status: answer.status, json: answer.body, headers: { 'request-id': answer.requestId } };
    }, { sync: true }),

    route('anthropic.batches.create', 'POST', /^\/v1\/messages\/batches$/, (ctx) => {
      if (ctx.jsonError) return errorResponse('anthropic', 400, ctx.jsonError);
      const invalid = validateCreate(ctx.json);
      if (invalid) return errorResponse('anthropic', 400, invalid);
      const requests = ctx.json.requests.map((r) => ({ customId: r.custom_id, body: r.params }));
      if (overEnqueuedLimit(ctx.state, { provider: 'anthropic', headers: ctx.headers, model: requests[0]?.body?.model, requests })) {
        ctx.state.counters.enqueuedLimitRefusals += 1;
        return errorResponse('anthropic', 429, 'Number of enqueued batch requests exceeds the processing-queue limit for your organization.');
      }
      const record = {
        provider: 'anthropic',
        id: `msgbatch_fake${ctx.state.nextId()}`,
        requests,
        headers: ctx.headers,
        metadata: null,
        state: 'in_progress',
        polls: 0,
        createdAt: nowSeconds(),
      };
      registerBatch(ctx.state, record);
      if (ctx.state.config.pollsUntilDone <= 0) finish(ctx.state, record, record.fate);
      return { status: 200, json: batchObject(record, ctx.baseUrl) };
    }),

    route('anthropic.batches.list', 'GET', /^\/v1\/messages\/batches$/, (ctx) => {
      const q = ctx.url.searchParams;
      const limit = Math.min(1000, Math.max(1, Number(q.get('limit') ?? 20) || 20));
      let all = batchesNewestFirst(ctx.state, 'anthropic');
      if (q.get('after_id')) {
        const index = all.findIndex((b) => b.id === q.get('after_id'));
        all = index === -1 ? [] : all.slice(index + 1);
      } else if (q.get('before_id')) {
        const index = all.findIndex((b) => b.id === q.get('before_id'));
        all = index === -1 ? [] : all.slice(Math.max(0, index - limit), index);
      }
      const data = all.slice(0, limit).map((r) => batchObject(r, ctx.baseUrl));
      return {
        status: 200,
        json: { data, has_more: all.length > limit, first_id: data[0]?.id ?? null, last_id: data.at(-1)?.id ?? null },
      };
    }),

    route('anthropic.batches.retrieve', 'GET', /^\/v1\/messages\/batches\/([^/]+)$/, (ctx, [id]) => {
      const record = getBatch(ctx.state, id);
      if (!record) return notFound(id);
      advance(ctx.state, record);
      return { status: 200, json: batchObject(record, ctx.baseUrl) };
    }),

    route('anthropic.batches.cancel', 'POST', /^\/v1\/messages\/batches\/([^/]+)\/cancel$/, (ctx, [id]) => {
      const record = getBatch(ctx.state, id);
      if (!record) return notFound(id);
      if (!record.terminal) {
        record.cancelRequested = true;
        record.cancelInitiatedAt = nowSeconds();
        record.state = 'canceling';
      }
      return { status: 200, json: batchObject(record, ctx.baseUrl) };
    }),

    route('anthropic.batches.results', 'GET', /^\/v1\/messages\/batches\/([^/]+)\/results$/, (ctx, [id]) => {
      const record = getBatch(ctx.state, id);
      if (!record) return notFound(id);
      if (record.state !== 'ended') {
        return errorResponse('anthropic', 400, `Message batch ${id} has not finished processing yet.`);
      }
      return { status: 200, raw: Buffer.from(toJsonl(shuffleForOutput(record.results, ctx.state.config))), contentType: 'application/x-jsonl' };
    }),

    route('anthropic.batches.delete', 'DELETE', /^\/v1\/messages\/batches\/([^/]+)$/, (ctx, [id]) => {
      const record = getBatch(ctx.state, id);
      if (!record) return notFound(id);
      if (record.state !== 'ended') {
        return errorResponse('anthropic', 400, `Message batch ${id} cannot be deleted while it is processing; cancel it first.`);
      }
      ctx.state.batches.delete(id);
      return { status: 200, json: { id, type: 'message_batch_deleted' } };
    }),
  ];
}

export function anthropicAuthError(headers) {
  const bearer = /^Bearer\s+\S+/i.test(headers.authorization ?? '');
  if (!headers['x-api-key'] && !bearer) {
    return { status: 401, json: anthropicErrorBody(401, 'x-api-key header is required') };
  }
  if (!headers['anthropic-version']) {
    return { status: 400, json: anthropicErrorBody(400, 'anthropic-version: header is required') };
  }
  return null;
}

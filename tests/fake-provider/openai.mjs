// Fake OpenAI API: Files, Batches and the sync endpoints (chat completions,
// responses, embeddings). Wire formats follow providers.md §1 and the
// `openai` npm SDK.
//
// The same code serves the hosts that clone it (providers.md §2, §6, §9), each
// under its own path prefix with its own route names (`groq.batches.create`, …):
// see FLAVOURS below.

import { openaiPromptCache } from './prompt-cache.mjs';
import {
  FIXED_CREATED,
  answerSeed,
  batchesNewestFirst,
  bodyDigest,
  deterministicVector,
  errorResponse,
  estimateTokens,
  float32Base64,
  isPlainObject,
  markTerminal,
  nowSeconds,
  openaiErrorBody,
  overEnqueuedLimit,
  parseJsonl,
  parseMultipart,
  longReply,
  parseTriggers,
  registerBatch,
  sha256Hex,
  shuffleForOutput,
  stripStreamFields,
  structuredValue,
  toJsonl,
  tokenLimitError,
} from './common.mjs';

const SYNC_ENDPOINTS = ['/v1/chat/completions', '/v1/responses', '/v1/embeddings'];
const TERMINAL = new Set(['completed', 'failed', 'expired', 'cancelled']);
const CHAT = '/v1/chat/completions';
const EMBEDDINGS = '/v1/embeddings';

/** "36h" -> 36, "7d" -> 168; null for anything else. */
function windowHours(window) {
  const m = /^(\d+)(h|d)$/.exec(String(window ?? ''));
  return m ? Number(m[1]) * (m[2] === 'd' ? 24 : 1) : null;
}

/**
 * The OpenAI clones this module serves. Each flavour: `provider` (route names, counters,
 * records), `prefix` (where its API lives), `sync` (sync endpoints served), `batch` (the batch
 * `endpoint` values accepted; a line's `url` must equal it), `window(w)` (accepted completion
 * windows), `maxFileBytes` (an upload above it is refused with 400), and for Azure classic
 * `apiVersion` (every call needs `?api-version=`, else 400) and `deployments` (sync calls under
 * `/deployments/{name}/…`, the name is the model; batch endpoints without the `/v1` prefix).
 */
export const FLAVOURS = {
  openai: { provider: 'openai', prefix: '/v1', sync: SYNC_ENDPOINTS, batch: SYNC_ENDPOINTS, window: (w) => w === '24h' },
  // Groq (§6): base /openai/v1; the SDK types only chat completions as a batch endpoint; 24h to
  // 7d windows; input files up to 100 MB. It also serves responses synchronously (not batched).
  groq: {
    provider: 'groq', prefix: '/groq/openai/v1', sync: [CHAT, '/v1/responses'], batch: [CHAT],
    window: (w) => windowHours(w) !== null && windowHours(w) >= 24 && windowHours(w) <= 168,
    maxFileBytes: 100_000_000,
  },
  // Doubleword (§9): chat completions and embeddings, 200 MB; the "1h" tier is assumed to be
  // spelled like OpenAI's window (the docs describe faster tiers without naming the value).
  doubleword: {
    provider: 'doubleword', prefix: '/doubleword/v1', sync: [CHAT, EMBEDDINGS], batch: [CHAT, EMBEDDINGS],
    window: (w) => w === '24h' || w === '1h', maxFileBytes: 200_000_000,
  },
  // Azure OpenAI classic (§2): /openai/deployments/{name}/chat/completions?api-version=…, files
  // and batches under /openai/…?api-version=…, `api-key` header, lines `"url":"/chat/completions"`
  // with `body.model` = the deployment. Whether Azure checks that `body.model` names an existing
  // deployment is not documented: the fake takes any name as a deployment.
  azure: {
    provider: 'azure', prefix: '/azure/openai', sync: [CHAT, EMBEDDINGS], batch: ['/chat/completions', '/embeddings'],
    window: (w) => w === '24h', maxFileBytes: 200_000_000, apiVersion: true, deployments: true,
  },
  // Azure OpenAI v1 surface (§2): /openai/v1/…, OpenAI's shapes, no api-version needed.
  azureV1: {
    provider: 'azure', prefix: '/azure/openai/v1', sync: [CHAT, EMBEDDINGS], batch: [CHAT, EMBEDDINGS],
    window: (w) => w === '24h', maxFileBytes: 200_000_000,
  },
};

/** The sync endpoint a batch endpoint stands for (Azure classic drops the `/v1`). */
const answerEndpoint = (endpoint) => (endpoint.startsWith('/v1/') ? endpoint : `/v1${endpoint}`);

// ---------------------------------------------------------------------------
// Deterministic answers

function textOfContent(content) {
  if (typeof content === 'string') return content;
  if (Array.isArray(content)) {
    return content
      .filter((p) => p && typeof p.text === 'string')
      .map((p) => p.text)
      .join('\n');
  }
  return '';
}

/** Text of the last user message of a request, used for the echo and the triggers. */
export function openaiUserText(endpoint, body) {
  if (endpoint === '/v1/chat/completions') {
    const users = (body.messages ?? []).filter((m) => m?.role === 'user');
    return textOfContent(users.at(-1)?.content);
  }
  if (endpoint === '/v1/responses') {
    if (typeof body.input === 'string') return body.input;
    const items = Array.isArray(body.input) ? body.input.filter((m) => m?.role === 'user') : [];
    return textOfContent(items.at(-1)?.content);
  }
  if (endpoint === '/v1/embeddings') {
    const inputs = Array.isArray(body.input) ? body.input : [body.input];
    return inputs.filter((x) => typeof x === 'string').join('\n');
  }
  return '';
}

/**
 * A chat completion as the server-sent events of `stream: true`: the same message in four
 * `chat.completion.chunk` deltas, then the finish reason (and the usage when asked), then `[DONE]`.
 */
function chatChunks(completion, includeUsage) {
  const choice = completion.choices[0];
  const text = choice.message.content ?? '';
  const size = Math.max(1, Math.ceil(text.length / 4));
  const chunk = (delta, finishReason, extra = {}) => ({
    id: completion.id, object: 'chat.completion.chunk', created: completion.created, model: completion.model,
    choices: [{ index: 0, delta, logprobs: null, finish_reason: finishReason }], ...extra,
  });
  const events = [chunk({ role: 'assistant', content: '' }, null)];
  for (let i = 0; i < text.length; i += size) events.push(chunk({ content: text.slice(i, i + size) }, null));
  events.push(chunk({}, choice.finish_reason));
  if (includeUsage) events.push({ ...chunk({}, null), choices: [], usage: completion.usage });
  return [...events.map((e) => JSON.stringify(e)), '[DONE]'];
}

function validate(endpoint, body) {
  if (!isPlainObject(body)) return { param: null, message: 'The request body must be a JSON object.' };
  if (typeof body.model !== 'string' || body.model === '') {
    return { param: 'model', message: 'you must provide a model parameter' };
  }
  if (endpoint === '/v1/chat/completions' && (!Array.isArray(body.messages) || body.messages.length === 0)) {
    return { param: 'messages', message: "Invalid 'messages': empty array. Expected an array with minimum length 1." };
  }
  if (endpoint === '/v1/embeddings' && (body.input === undefined || body.input === '' ||
      (Array.isArray(body.input) && body.input.length === 0))) {
    return { param: 'input', message: "'input' is a required property" };
  }
  return null;
}

/**
 * The JSON Schema a request asks the answer to follow: chat completions
 * `response_format: {type: "json_schema", json_schema: {schema}}`, responses
 * `text.format: {type: "json_schema", schema}`; `undefined` for a free-text answer.
 */
function openaiResponseSchema(endpoint, body) {
  if (endpoint === '/v1/chat/completions' && body.response_format?.type === 'json_schema') {
    return body.response_format.json_schema?.schema ?? {};
  }
  if (endpoint === '/v1/responses' && body.text?.format?.type === 'json_schema') {
    return body.text.format.schema ?? {};
  }
  return undefined;
}

/**
 * The answer to one request: `{status, body, requestId}`. A pure function of
 * (endpoint, body minus stream fields), shared by the sync endpoints and the
 * batch executor so both give deep-equal bodies.
 */
export function openaiAnswer(endpoint, rawBody) {
  const body = stripStreamFields(rawBody);
  const digest = bodyDigest(body);
  const seed = answerSeed('openai', endpoint, body?.model, digest);
  const requestId = `req_${seed.slice(0, 24)}`;
  const invalid = validate(endpoint, body);
  if (invalid) {
    return { status: 400, requestId, body: openaiErrorBody(400, invalid.message, { param: invalid.param }) };
  }
  const text = openaiUserText(endpoint, body);
  const { failStatus, badJson, longChars } = parseTriggers(text);
  if (failStatus) {
    const message = `Fake failure triggered by FAIL:${failStatus} (body sha256 ${digest})`;
    return { status: failStatus, requestId, body: openaiErrorBody(failStatus, message, { code: 'fake_failure' }) };
  }
  const promptTokens = estimateTokens(JSON.stringify(body));
  // Structured output: a JSON text generated from the requested schema.
  const schema = openaiResponseSchema(endpoint, body);
  const echo = longChars > 0 ? longReply(text, longChars) : `echo: ${text}`;
  const reply = schema === undefined ? echo : JSON.stringify(structuredValue(schema, text, { bad: badJson }));
  const completionTokens = estimateTokens(reply);

  if (endpoint === '/v1/chat/completions') {
    const n = Number.isInteger(body.n) && body.n > 0 ? body.n : 1;
    return {
      status: 200,
      requestId,
      body: {
        id: `chatcmpl-${seed.slice(0, 24)}`,
        object: 'chat.completion',
        created: FIXED_CREATED,
        model: body.model,
        choices: Array.from({ length: n }, (_, index) => ({
          index,
          message: { role: 'assistant', content: reply, refusal: null, annotations: [] },
          logprobs: null,
          finish_reason: 'stop',
        })),
        usage: {
          prompt_tokens: promptTokens,
          completion_tokens: completionTokens * n,
          total_tokens: promptTokens + completionTokens * n,
          prompt_tokens_details: { cached_tokens: 0, audio_tokens: 0 },
          completion_tokens_details: {
            reasoning_tokens: 0, audio_tokens: 0, accepted_prediction_tokens: 0, rejected_prediction_tokens: 0,
          },
        },
        service_tier: 'default',
        system_fingerprint: `fp_${digest.slice(0, 10)}`,
        fake_body_sha256: digest,
      },
    };
  }

  if (endpoint === '/v1/responses') {
    return {
      status: 200,
      requestId,
      body: {
        id: `resp_${seed.slice(0, 32)}`,
        object: 'response',
        created_at: FIXED_CREATED,
        status: 'completed',
        background: false,
        error: null,
        incomplete_details: null,
        instructions: body.instructions ?? null,
        max_output_tokens: body.max_output_tokens ?? null,
        model: body.model,
        output: [{
          type: 'message',
          id: `msg_${seed.slice(32, 64)}`,
          status: 'completed',
          role: 'assistant',
          content: [{ type: 'output_text', text: reply, annotations: [], logprobs: [] }],
        }],
        parallel_tool_calls: body.parallel_tool_calls ?? true,
        previous_response_id: body.previous_response_id ?? null,
        reasoning: { effort: null, summary: null },
        service_tier: 'default',
        store: body.store ?? true,
        temperature: body.temperature ?? 1,
        text: body.text ?? { format: { type: 'text' } },
        tool_choice: body.tool_choice ?? 'auto',
        tools: body.tools ?? [],
        top_p: body.top_p ?? 1,
        truncation: body.truncation ?? 'disabled',
        usage: {
          input_tokens: promptTokens,
          input_tokens_details: { cached_tokens: 0 },
          output_tokens: completionTokens,
          output_tokens_details: { reasoning_tokens: 0 },
          total_tokens: promptTokens + completionTokens,
        },
        user: body.user ?? null,
        metadata: body.metadata ?? {},
        fake_body_sha256: digest,
      },
    };
  }

  // /v1/embeddings
  const inputs = Array.isArray(body.input) ? body.input : [body.input];
  const dimensions = Number.isInteger(body.dimensions) && body.dimensions > 0 ? body.dimensions : 8;
  const base64 = body.encoding_format === 'base64';
  return {
    status: 200,
    requestId,
    body: {
      object: 'list',
      data: inputs.map((_, index) => {
        const vector = deterministicVector(seed, index, dimensions);
        return { object: 'embedding', index, embedding: base64 ? float32Base64(vector) : vector };
      }),
      model: body.model,
      usage: { prompt_tokens: promptTokens, total_tokens: promptTokens },
      fake_body_sha256: digest,
    },
  };
}

// ---------------------------------------------------------------------------
// Files

function createFile(state, { filename, purpose, data }, provider = 'openai') {
  const id = `file-fake${state.nextId()}`;
  const createdAt = nowSeconds();
  const file = {
    provider,
    id,
    data,
    object: {
      id,
      object: 'file',
      bytes: data.length,
      created_at: createdAt,
      filename,
      purpose,
      status: 'processed',
      expires_at: createdAt + 30 * 24 * 3600,
      status_details: null,
    },
  };
  state.files.set(id, file);
  return file;
}

function getFile(state, id, provider = 'openai') {
  const file = state.files.get(id);
  return file?.provider === provider ? file : null;
}

// ---------------------------------------------------------------------------
// Batches

/** Parse and validate the input file; returns `{requests, model, errors}`. */
function parseBatchInput(text, endpoint) {
  const requests = [];
  const errors = [];
  const seen = new Set();
  let model = null;
  const lines = parseJsonl(text);
  if (lines.length === 0) errors.push({ code: 'empty_file', message: 'The input file is empty.', param: null, line: null });
  for (const { line, value, error } of lines) {
    const fail = (code, message, param = null) => errors.push({ code, message, param, line });
    if (error) { fail('invalid_json_line', `This line is not parseable as valid JSON: ${error}`); continue; }
    if (typeof value?.custom_id !== 'string' || value.custom_id === '') {
      fail('missing_required_parameter', 'Missing required parameter: custom_id.', 'custom_id'); continue;
    }
    if (seen.has(value.custom_id)) {
      fail('duplicate_custom_id', `The custom_id for this request is a duplicate of another request: ${value.custom_id}`, 'custom_id');
      continue;
    }
    seen.add(value.custom_id);
    if (value.method !== 'POST') { fail('invalid_method', 'The method must be POST.', 'method'); continue; }
    if (value.url !== endpoint) {
      fail('mismatched_endpoint', `The url ${value.url} does not match the batch endpoint ${endpoint}.`, 'url'); continue;
    }
    if (!isPlainObject(value.body)) { fail('invalid_body', 'The body must be a JSON object.', 'body'); continue; }
    if (model === null) model = value.body.model ?? null;
    else if (value.body.model !== model) {
      fail('mismatched_model', `The model ${value.body.model} does not match the model ${model} of the other requests in the file.`, 'body.model');
      continue;
    }
    requests.push({ customId: value.custom_id, body: value.body, method: value.method, url: value.url });
  }
  return { requests, model, errors };
}

function emptyUsage() {
  return {
    input_tokens: 0, input_tokens_details: { cached_tokens: 0 },
    output_tokens: 0, output_tokens_details: { reasoning_tokens: 0 }, total_tokens: 0,
  };
}

function addUsage(usage, endpoint, body) {
  const u = body.usage ?? {};
  const input = endpoint === '/v1/responses' ? u.input_tokens : u.prompt_tokens;
  const output = endpoint === '/v1/responses' ? u.output_tokens : u.completion_tokens ?? 0;
  usage.input_tokens += input ?? 0;
  usage.output_tokens += output ?? 0;
  usage.total_tokens += (input ?? 0) + (output ?? 0);
}

/** The output/error line of one request in a finished batch. */
function executeLine(state, record, request) {
  const lineId = `batch_req_${sha256Hex(`${record.id}:${request.customId}`).slice(0, 24)}`;
  const endpoint = answerEndpoint(record.endpoint);
  const text = isPlainObject(request.body) ? openaiUserText(endpoint, request.body) : '';
  if (parseTriggers(text).expireLine) return notExecutedLine(lineId, request, 'batch_expired');
  if (state.config.rejectStreamInBatch && request.body?.stream === true) {
    return {
      ok: false,
      line: {
        id: lineId, custom_id: request.customId, error: null,
        response: {
          status_code: 400,
          request_id: `req_${sha256Hex(lineId).slice(0, 24)}`,
          body: openaiErrorBody(400, 'Streaming is not supported in the Batch API.', { param: 'stream', code: 'unsupported_value' }),
        },
      },
    };
  }
  const answer = openaiAnswer(endpoint, request.body);
  if (record.provider === 'openai') openaiPromptCache(state, endpoint, request.body, answer);
  return {
    ok: answer.status >= 200 && answer.status < 300,
    body: answer.body,
    line: {
      id: lineId,
      custom_id: request.customId,
      response: { status_code: answer.status, request_id: answer.requestId, body: answer.body },
      error: null,
    },
  };
}

function notExecutedLine(lineId, request, code) {
  const message = code === 'batch_expired'
    ? 'This request could not be executed before the completion window expired.'
    : 'This request was not executed because the batch was cancelled.';
  return { ok: false, line: { id: lineId, custom_id: request.customId, response: null, error: { code, message } } };
}

/** Run the requests and write the output and error files. */
function writeResults(state, record, { expireFrom = Infinity } = {}) {
  const outputs = [];
  const errors = [];
  const usage = emptyUsage();
  // Fate `missing`: the last request did not run and has no line (the counts leave it out).
  const ran = record.fate === 'missing' ? record.requests.slice(0, -1) : record.requests;
  ran.forEach((request, index) => {
    const lineId = `batch_req_${sha256Hex(`${record.id}:${request.customId}`).slice(0, 24)}`;
    const result = index >= expireFrom
      ? notExecutedLine(lineId, request, 'batch_expired')
      : executeLine(state, record, request);
    if (result.ok) {
      outputs.push(result.line);
      addUsage(usage, answerEndpoint(record.endpoint), result.body);
    } else {
      errors.push(result.line);
    }
  });
  const writeFile = (lines, kind) => (lines.length === 0 ? null : createFile(state, {
    filename: `${record.id}_${kind}.jsonl`,
    purpose: 'batch_output',
    data: Buffer.from(toJsonl(shuffleForOutput(lines, state.config))),
  }, record.provider).id);
  record.outputFileId = writeFile(outputs, 'output');
  record.errorFileId = writeFile(errors, 'error');
  record.requestCounts = { total: record.requests.length, completed: outputs.length, failed: errors.length };
  record.usage = usage;
}

function finish(state, record, status) {
  const t = nowSeconds();
  record.state = status;
  if (status === 'completed') {
    writeResults(state, record);
    record.times.finalizing_at ??= t;
    record.times.completed_at = t;
  } else if (status === 'expired') {
    // Half of the requests ran; the rest come back as batch_expired lines.
    writeResults(state, record, { expireFrom: Math.floor(record.requests.length / 2) });
    record.times.expired_at = t;
  } else if (status === 'cancelled') {
    record.times.cancelling_at ??= t;
    record.times.cancelled_at = t;
  } else if (status === 'failed') {
    record.times.failed_at = t;
    if (!record.errors) {
      record.errors = [{ code: 'fake_batch_failure', message: 'The batch failed (injected fault).', param: null, line: null }];
    }
  }
  markTerminal(state, record);
}

/** One poll: advance the lifecycle as providers.md §1.3 describes. */
function advance(state, record) {
  if (record.terminal) return;
  record.polls += 1;
  if (record.errors) return finish(state, record, 'failed'); // validation failure
  if (record.cancelRequested) return finish(state, record, 'cancelled');
  if (record.polls >= state.config.pollsUntilDone) return finish(state, record, fateStatus(record.fate));
  const t = nowSeconds();
  record.times.in_progress_at ??= t;
  record.state = record.polls >= 2 && record.polls === state.config.pollsUntilDone - 1 ? 'finalizing' : 'in_progress';
  if (record.state === 'finalizing') record.times.finalizing_at ??= t;
}

function fateStatus(fate) {
  return { failed: 'failed', expired: 'expired', cancelled: 'cancelled' }[fate] ?? 'completed';
}

function batchObject(record) {
  const counts = record.requestCounts ?? { total: record.terminal ? record.requests.length : 0, completed: 0, failed: 0 };
  return {
    id: record.id,
    object: 'batch',
    endpoint: record.endpoint,
    model: record.model,
    errors: record.errors ? { object: 'list', data: record.errors } : null,
    input_file_id: record.inputFileId,
    completion_window: record.completionWindow,
    status: record.state,
    output_file_id: record.outputFileId ?? null,
    error_file_id: record.errorFileId ?? null,
    created_at: record.createdAt,
    in_progress_at: record.times.in_progress_at ?? null,
    expires_at: record.createdAt + (windowHours(record.completionWindow) ?? 24) * 3600,
    finalizing_at: record.times.finalizing_at ?? null,
    completed_at: record.times.completed_at ?? null,
    failed_at: record.times.failed_at ?? null,
    expired_at: record.times.expired_at ?? null,
    cancelling_at: record.times.cancelling_at ?? null,
    cancelled_at: record.times.cancelled_at ?? null,
    request_counts: counts,
    usage: record.usage ?? emptyUsage(),
    metadata: record.metadata ?? null,
  };
}

function getBatch(state, id, provider = 'openai') {
  const record = state.batches.get(id);
  return record?.provider === provider ? record : null;
}

// ---------------------------------------------------------------------------
// Routes

const escapeRegExp = (text) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** The routes of one flavour (default: OpenAI itself, under /v1). */
export function openaiRoutes(flavour = FLAVOURS.openai) {
  const { provider, prefix } = flavour;
  const base = escapeRegExp(prefix);
  const notFound = (what, id) => errorResponse(provider, 404, `No such ${what}: '${id}'`);
  const route = (name, method, pattern, handle, extra = {}) => ({
    provider,
    name: `${provider}.${name}`,
    method,
    pattern: new RegExp(`^${base}${pattern}$`),
    // Azure classic: every call names its API version.
    handle: flavour.apiVersion
      ? (ctx, params) => (ctx.url.searchParams.get('api-version')
        ? handle(ctx, params)
        : errorResponse(provider, 400, 'Missing required query parameter: api-version.'))
      : handle,
    ...extra,
  });

  const sync = (endpoint) => {
    const name = endpoint.slice('/v1/'.length).replaceAll('/', '.');
    const tail = escapeRegExp(endpoint.slice('/v1'.length));
    return route(name, 'POST', flavour.deployments ? `/deployments/([^/]+)${tail}` : tail, (ctx, [deployment]) => {
      if (ctx.jsonError) return errorResponse(provider, 400, ctx.jsonError);
      if (ctx.json?.stream === true && endpoint !== CHAT) {
        return errorResponse(provider, 400, 'The fake provider streams chat completions only.');
      }
      // Azure runs the deployment named in the path, whatever the body's model says.
      const body = deployment !== undefined && isPlainObject(ctx.json) ? { ...ctx.json, model: deployment } : ctx.json;
      const answer = openaiAnswer(endpoint, body);
      if (provider === 'openai') openaiPromptCache(ctx.state, endpoint, body, answer);
      if (ctx.json?.stream === true && answer.status === 200) {
        return { status: 200, events: chatChunks(answer.body, ctx.json.stream_options?.include_usage === true), headers: { 'x-request-id': answer.requestId } };
      }
      return { status: answer.status, json: answer.body, headers: { 'x-request-id': answer.requestId } };
    }, { sync: true });
  };

  return [
    ...flavour.sync.map(sync),

    route('files.create', 'POST', '/files', (ctx) => {
      let form;
      try {
        form = parseMultipart(ctx.body, ctx.headers['content-type']);
      } catch (err) {
        return errorResponse(provider, 400, `Invalid multipart body: ${err.message}`);
      }
      const file = form.files.file;
      if (!file) return { status: 400, json: openaiErrorBody(400, "Missing required parameter: 'file'.", { param: 'file' }) };
      const purpose = form.fields.purpose;
      if (!purpose) return { status: 400, json: openaiErrorBody(400, "Missing required parameter: 'purpose'.", { param: 'purpose' }) };
      if (flavour.maxFileBytes !== undefined && file.data.length > flavour.maxFileBytes) {
        return { status: 400, json: openaiErrorBody(400, `File is larger than ${flavour.maxFileBytes} bytes.`, { param: 'file' }) };
      }
      return { status: 200, json: createFile(ctx.state, { filename: file.filename, purpose, data: file.data }, provider).object };
    }),

    route('files.retrieve', 'GET', '/files/([^/]+)', (ctx, [id]) => {
      const file = getFile(ctx.state, id, provider);
      return file ? { status: 200, json: file.object } : notFound('File', id);
    }),

    route('files.content', 'GET', '/files/([^/]+)/content', (ctx, [id]) => {
      const file = getFile(ctx.state, id, provider);
      if (!file) return notFound('File', id);
      return { status: 200, raw: file.data, contentType: 'application/octet-stream' };
    }),

    route('files.delete', 'DELETE', '/files/([^/]+)', (ctx, [id]) => {
      if (!getFile(ctx.state, id, provider)) return notFound('File', id);
      ctx.state.files.delete(id);
      return { status: 200, json: { id, object: 'file', deleted: true } };
    }),

    route('batches.create', 'POST', '/batches', (ctx) => {
      if (ctx.jsonError) return errorResponse(provider, 400, ctx.jsonError);
      const body = ctx.json ?? {};
      const bad = (message, param) => ({ status: 400, json: openaiErrorBody(400, message, { param }) });
      if (typeof body.input_file_id !== 'string') return bad("Missing required parameter: 'input_file_id'.", 'input_file_id');
      if (!flavour.batch.includes(body.endpoint)) {
        return bad(`Invalid 'endpoint': the fake provider supports ${flavour.batch.join(', ')}.`, 'endpoint');
      }
      if (!flavour.window(body.completion_window)) {
        return bad(flavour.window === FLAVOURS.openai.window
          ? "Invalid 'completion_window': only '24h' is supported."
          : `Invalid 'completion_window': '${body.completion_window}' is not supported.`, 'completion_window');
      }
      const file = getFile(ctx.state, body.input_file_id, provider);
      if (!file) return bad(`Invalid 'input_file_id': '${body.input_file_id}'. File not found.`, 'input_file_id');
      if (file.object.purpose !== 'batch') return bad(`File '${file.id}' does not have purpose 'batch'.`, 'input_file_id');

      const { requests, model, errors } = parseBatchInput(file.data.toString('utf8'), body.endpoint);
      const record = {
        provider,
        id: `batch_fake${ctx.state.nextId()}`,
        requests,
        headers: ctx.headers,
        metadata: body.metadata ?? null,
        endpoint: body.endpoint,
        model,
        inputFileId: body.input_file_id,
        completionWindow: body.completion_window,
        state: 'validating',
        polls: 0,
        errors: errors.length ? errors : null,
        createdAt: nowSeconds(),
        times: {},
      };
      // Over the enqueued-token limit: accepted, then failed while validating, nothing run.
      if (!record.errors && overEnqueuedLimit(ctx.state, record)) {
        record.refusedForTokens = true;
        record.errors = [tokenLimitError(model, ctx.state.config.enqueuedTokenLimit)];
      }
      registerBatch(ctx.state, record);
      if (record.refusedForTokens) ctx.state.counters.enqueuedLimitRefusals += 1;
      if (ctx.state.config.pollsUntilDone <= 0 && !record.errors) finish(ctx.state, record, fateStatus(record.fate));
      return { status: 200, json: batchObject(record) };
    }),

    route('batches.retrieve', 'GET', '/batches/([^/]+)', (ctx, [id]) => {
      const record = getBatch(ctx.state, id, provider);
      if (!record) return notFound('batch', id);
      advance(ctx.state, record);
      return { status: 200, json: batchObject(record) };
    }),

    route('batches.list', 'GET', '/batches', (ctx) => {
      const limit = Math.min(100, Math.max(1, Number(ctx.url.searchParams.get('limit') ?? 20) || 20));
      let all = batchesNewestFirst(ctx.state, provider);
      const after = ctx.url.searchParams.get('after');
      if (after) {
        const index = all.findIndex((b) => b.id === after);
        all = index === -1 ? [] : all.slice(index + 1);
      }
      const data = all.slice(0, limit).map(batchObject);
      return {
        status: 200,
        json: { object: 'list', data, first_id: data[0]?.id ?? null, last_id: data.at(-1)?.id ?? null, has_more: all.length > limit },
      };
    }),

    route('batches.cancel', 'POST', '/batches/([^/]+)/cancel', (ctx, [id]) => {
      const record = getBatch(ctx.state, id, provider);
      if (!record) return notFound('batch', id);
      if (TERMINAL.has(record.state)) {
        return errorResponse(provider, 400, `Cannot cancel a batch with status '${record.state}'.`);
      }
      record.cancelRequested = true;
      record.state = 'cancelling';
      record.times.cancelling_at = nowSeconds();
      return { status: 200, json: batchObject(record) };
    }),
  ];
}

export function openaiAuthError(headers) {
  const auth = headers.authorization ?? '';
  if (/^Bearer\s+\S+/i.test(auth)) return null;
  return {
    status: 401,
    json: openaiErrorBody(401, "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).", { type: 'invalid_request_error' }),
  };
}

/** Azure OpenAI: an `api-key` header (or an Entra `Authorization: Bearer` token). */
export function azureAuthError(headers) {
  if (typeof headers['api-key'] === 'string' && headers['api-key'] !== '') return null;
  if (!openaiAuthError(headers)) return null;
  return {
    status: 401,
    json: { error: { code: '401', message: 'Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key for an active subscription and use a correct regional API endpoint for your resource.' } },
  };
}

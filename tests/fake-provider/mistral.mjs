// Fake Mistral API under the path prefix /mistral/v1: Files, Batch jobs and the sync endpoints
// (chat completions, embeddings, FIM completions). Wire formats follow providers.md §5 and the
// `@mistralai/mistralai` npm SDK (2.7): `new Mistral({ serverURL: `${fake.url}/mistral` })`.
//
// Assumed where providers.md §5 is uncertain (the same assumptions as core/src/providers/mistral.rs):
// - result lines are OpenAI-like `{id, custom_id, response: {status_code, body}, error}`; a
//   failed request goes to `error_file` with its status and Mistral's error envelope as body;
// - an EXPIRE_LINE request gets `{response: null, error: {code: "batch_expired", message}}`;
// - a TIMEOUT_EXCEEDED job keeps the files of the first half of its requests and has no line for
//   the rest; FAILED has `errors: [{message, count}]` and no files; CANCELLED has no files;
// - a line body may carry `model` (it must then equal the job's) or omit it (the job's applies);
// - the list's `metadata` query filter is read as a JSON object (exploded `key=value` pairs, as
//   the SDK sends them, are ignored like any unknown parameter).

import {
  FIXED_CREATED,
  answerSeed,
  batchesNewestFirst,
  bodyDigest,
  deterministicVector,
  estimateTokens,
  isPlainObject,
  markTerminal,
  nowSeconds,
  parseJsonl,
  parseMultipart,
  parseTriggers,
  registerBatch,
  sha256Hex,
  shuffleForOutput,
  stripStreamFields,
  structuredValue,
  toJsonl,
} from './common.mjs';

const PREFIX = '/mistral/v1';
const SYNC_ENDPOINTS = ['/v1/chat/completions', '/v1/embeddings', '/v1/fim/completions'];
const TERMINAL = new Set(['SUCCESS', 'FAILED', 'TIMEOUT_EXCEEDED', 'CANCELLED']);

// ---------------------------------------------------------------------------
// Error envelopes

const ERROR_TYPES = { 400: 'invalid_request_error', 404: 'not_found', 429: 'rate_limit_exceeded' };

/** Mistral's error envelope: `{object: "error", message, type, param, code}`. */
export function mistralErrorBody(status, message, { param = null, code = null } = {}) {
  return {
    object: 'error',
    message,
    type: ERROR_TYPES[status] ?? (status >= 500 ? 'internal_server_error' : 'invalid_request_error'),
    param,
    code,
  };
}

const error = (status, message, extra) => ({ status, json: mistralErrorBody(status, message, extra) });

// ---------------------------------------------------------------------------
// Deterministic answers

function textOfContent(content) {
  if (typeof content === 'string') return content;
  if (Array.isArray(content)) return content.filter((c) => typeof c?.text === 'string').map((c) => c.text).join('\n');
  return '';
}

/** The text the echo and the triggers are read from. */
export function mistralUserText(endpoint, body) {
  if (endpoint === '/v1/chat/completions') {
    const users = (Array.isArray(body.messages) ? body.messages : []).filter((m) => m?.role === 'user');
    return textOfContent(users.at(-1)?.content);
  }
  if (endpoint === '/v1/fim/completions') return typeof body.prompt === 'string' ? body.prompt : '';
  const inputs = Array.isArray(body.input) ? body.input : [body.input];
  return inputs.filter((x) => typeof x === 'string').join('\n');
}

function validate(endpoint, body) {
  if (!isPlainObject(body)) return 'The request body must be a JSON object.';
  if (typeof body.model !== 'string' || body.model === '') return 'model: Field required';
  if (endpoint === '/v1/chat/completions' && (!Array.isArray(body.messages) || body.messages.length === 0)) {
    return 'messages: Field required';
  }
  if (endpoint === '/v1/fim/completions' && typeof body.prompt !== 'string') return 'prompt: Field required';
  if (endpoint === '/v1/embeddings' && (body.input === undefined || (Array.isArray(body.input) && body.input.length === 0))) {
    return 'input: Field required';
  }
  return null;
}

/**
 * The answer to one request, `{status, body}`: a pure function of (endpoint, body minus stream
 * fields), shared by the sync endpoints and the batch executor.
 */
export function mistralAnswer(endpoint, rawBody) {
  const body = stripStreamFields(rawBody);
  const digest = bodyDigest(body);
  const invalid = validate(endpoint, body);
  if (invalid) return { status: 400, body: mistralErrorBody(400, invalid) };
  const seed = answerSeed('mistral', endpoint, body.model, digest);
  const text = mistralUserText(endpoint, body);
  const { failStatus, badJson } = parseTriggers(text);
  if (failStatus) {
    return { status: failStatus, body: mistralErrorBody(failStatus, `Fake failure triggered by FAIL:${failStatus} (body sha256 ${digest})`) };
  }
  const promptTokens = estimateTokens(JSON.stringify(body));
  if (endpoint === '/v1/embeddings') {
    const inputs = Array.isArray(body.input) ? body.input : [body.input];
    const dimensions = Number.isInteger(body.output_dimension) && body.output_dimension > 0 ? body.output_dimension : 8;
    return {
      status: 200,
      body: {
        id: `embd-${seed.slice(0, 24)}`,
        object: 'list',
        model: body.model,
        data: inputs.map((_, index) => ({ object: 'embedding', embedding: deterministicVector(seed, index, dimensions), index })),
        usage: { prompt_tokens: promptTokens, completion_tokens: 0, total_tokens: promptTokens },
      },
    };
  }
  const schema = body.response_format?.type === 'json_schema' ? body.response_format.json_schema?.schema ?? {} : undefined;
  const reply = schema === undefined ? `echo: ${text}` : JSON.stringify(structuredValue(schema, text, { bad: badJson }));
  const completionTokens = estimateTokens(reply);
  return {
    status: 200,
    body: {
      id: `cmpl-${seed.slice(0, 24)}`,
      object: 'chat.completion',
      model: body.model,
      created: FIXED_CREATED,
      choices: [{ index: 0, message: { role: 'assistant', content: reply, tool_calls: null, prefix: false }, finish_reason: 'stop' }],
      usage: { prompt_tokens: promptTokens, completion_tokens: completionTokens, total_tokens: promptTokens + completionTokens },
    },
  };
}

// ---------------------------------------------------------------------------
// Files

/** A UUID-shaped id (Mistral's ids are UUIDs), distinct per kind and sequence number. */
const uuid = (state, kind) => `${sha256Hex(kind).slice(0, 8)}-0000-4000-8000-${state.nextId().padStart(12, '0')}`;

function createFile(state, { filename, purpose, data, sampleType = 'batch_request' }) {
  const id = uuid(state, 'file');
  const file = {
    provider: 'mistral',
    id,
    data,
    object: {
      id,
      object: 'file',
      bytes: data.length, // the wire name (the SDK maps it to sizeBytes)
      created_at: nowSeconds(),
      filename,
      purpose,
      sample_type: purpose === 'batch' ? sampleType : 'pretrain',
      num_lines: parseJsonl(data.toString('utf8')).length,
      mimetype: 'application/jsonl',
      source: 'upload',
      signature: null,
    },
  };
  state.files.set(id, file);
  return file;
}

function getFile(state, id) {
  const file = state.files.get(id);
  return file?.provider === 'mistral' ? file : null;
}

// ---------------------------------------------------------------------------
// Batch jobs

/** The job's requests from its input files (or inline `requests`), or a reason to refuse it. */
function jobRequests(state, body) {
  let entries = [];
  if (Array.isArray(body.input_files) && body.input_files.length > 0) {
    for (const id of body.input_files) {
      const file = getFile(state, id);
      if (!file) return { invalid: `File ${id} not found` };
      if (file.object.purpose !== 'batch') return { invalid: `File ${id} does not have purpose 'batch'` };
      for (const { line, value, error: parseError } of parseJsonl(file.data.toString('utf8'))) {
        if (parseError) return { invalid: `File ${id}, line ${line}: invalid JSON: ${parseError}` };
        entries.push(value);
      }
    }
  } else if (Array.isArray(body.requests) && body.requests.length > 0) {
    entries = body.requests;
  } else {
    return { invalid: 'input_files or requests: one of them is required' };
  }
  const seen = new Set();
  const requests = [];
  for (const [index, entry] of entries.entries()) {
    if (!isPlainObject(entry) || !isPlainObject(entry.body)) return { invalid: `Request ${index}: body must be an object` };
    const customId = entry.custom_id ?? String(index);
    if (typeof customId !== 'string' || seen.has(customId)) return { invalid: `Request ${index}: duplicate or invalid custom_id` };
    seen.add(customId);
    if (entry.body.model !== undefined && entry.body.model !== body.model) {
      return { invalid: `Request ${index}: model ${entry.body.model} differs from the job's model ${body.model}` };
    }
    requests.push({ customId, body: entry.body });
  }
  return { requests };
}

/** The result line of one request. */
function executeLine(state, record, request, index) {
  const id = `batch-${record.id}-${index}`;
  const effective = { model: record.model, ...request.body };
  if (parseTriggers(mistralUserText(record.endpoint, effective)).expireLine) {
    return { ok: false, line: { id, custom_id: request.customId, response: null, error: { code: 'batch_expired', message: 'The job timed out before this request ran.' } } };
  }
  const answer = state.config.rejectStreamInBatch && request.body.stream === true
    ? { status: 400, body: mistralErrorBody(400, 'stream: streaming is not supported in batch jobs', { param: 'stream' }) }
    : mistralAnswer(record.endpoint, effective);
  return {
    ok: answer.status >= 200 && answer.status < 300,
    line: { id, custom_id: request.customId, response: { status_code: answer.status, body: answer.body }, error: null },
  };
}

function writeResults(state, record, count) {
  const outputs = [];
  const errors = [];
  record.requests.slice(0, count).forEach((request, index) => {
    const { ok, line } = executeLine(state, record, request, index);
    (ok ? outputs : errors).push(line);
  });
  if (record.inline) {
    record.outputs = shuffleForOutput([...outputs, ...errors], state.config);
  } else {
    const write = (lines, kind) => (lines.length === 0 ? null : createFile(state, {
      filename: `${record.id}_${kind}.jsonl`,
      purpose: 'batch',
      sampleType: kind === 'output' ? 'batch_result' : 'batch_error',
      data: Buffer.from(toJsonl(shuffleForOutput(lines, state.config))),
    }).id);
    record.outputFile = write(outputs, 'output');
    record.errorFile = write(errors, 'error');
  }
  record.counts = { completed: outputs.length + errors.length, succeeded: outputs.length, failed: errors.length };
}

function finish(state, record, status) {
  record.state = status;
  record.completedAt = nowSeconds();
  if (status === 'SUCCESS') writeResults(state, record, record.requests.length);
  if (status === 'TIMEOUT_EXCEEDED') writeResults(state, record, Math.floor(record.requests.length / 2));
  if (status === 'FAILED') record.errors = [{ message: 'The job failed (injected fault).', count: record.requests.length }];
  markTerminal(state, record);
}

const FATE_STATUS = { failed: 'FAILED', expired: 'TIMEOUT_EXCEEDED', cancelled: 'CANCELLED' };

/** One poll: QUEUED → RUNNING → terminal at `pollsUntilDone`. */
function advance(state, record) {
  if (record.terminal) return;
  record.polls += 1;
  if (record.cancelRequested) return finish(state, record, 'CANCELLED');
  if (record.polls >= state.config.pollsUntilDone) return finish(state, record, FATE_STATUS[record.fate] ?? 'SUCCESS');
  record.state = 'RUNNING';
  record.startedAt ??= nowSeconds();
}

function jobObject(record, { inline = false } = {}) {
  const counts = record.counts ?? { completed: 0, succeeded: 0, failed: 0 };
  return {
    id: record.id,
    object: 'batch',
    input_files: record.inputFiles,
    metadata: record.metadata,
    endpoint: record.endpoint,
    model: record.model,
    agent_id: null,
    output_file: record.outputFile ?? null,
    error_file: record.errorFile ?? null,
    errors: record.errors ?? [],
    outputs: inline && record.outputs ? record.outputs : null,
    status: record.state,
    created_at: record.createdAt,
    total_requests: record.requests.length,
    completed_requests: counts.completed,
    succeeded_requests: counts.succeeded,
    failed_requests: counts.failed,
    started_at: record.startedAt ?? null,
    completed_at: record.completedAt ?? null,
  };
}

function getJob(state, id) {
  const record = state.batches.get(id);
  return record?.provider === 'mistral' ? record : null;
}

const notFound = (what, id) => error(404, `${what} ${id} not found`);

/** Records matching the list query (model, status, metadata as a JSON object). */
function listFilter(query) {
  let metadata = null;
  try {
    metadata = query.get('metadata') ? JSON.parse(query.get('metadata')) : null;
  } catch {
    metadata = null;
  }
  const statuses = query.getAll('status');
  return (r) => (!query.get('model') || r.model === query.get('model')) &&
    (statuses.length === 0 || statuses.includes(r.state)) &&
    (!isPlainObject(metadata) || Object.entries(metadata).every(([k, v]) => r.metadata?.[k] === v));
}

// ---------------------------------------------------------------------------
// Routes

export function mistralRoutes() {
  const route = (name, method, path, handle, extra = {}) =>
    ({ provider: 'mistral', name, method, pattern: new RegExp(`^${PREFIX}${path}$`), handle, ...extra });

  const sync = (endpoint, name) => route(name, 'POST', endpoint.slice(3), (ctx) => {
    if (ctx.jsonError) return error(400, ctx.jsonError);
    if (ctx.json?.stream === true) return error(400, 'The fake provider does not implement streaming responses.');
    const answer = mistralAnswer(endpoint, ctx.json);
    return { status: answer.status, json: answer.body };
  }, { sync: true });

  return [
    sync('/v1/chat/completions', 'mistral.chat.completions'),
    sync('/v1/embeddings', 'mistral.embeddings'),
    sync('/v1/fim/completions', 'mistral.fim.completions'),

    route('mistral.files.create', 'POST', '/files', (ctx) => {
      let form;
      try {
        form = parseMultipart(ctx.body, ctx.headers['content-type']);
      } catch (err) {
        return error(400, `Invalid multipart body: ${err.message}`);
      }
      const file = form.files.file;
      if (!file) return error(422, 'file: Field required', { param: 'file' });
      const purpose = form.fields.purpose ?? 'fine-tune';
      if (!['fine-tune', 'batch', 'ocr'].includes(purpose)) return error(422, `purpose: invalid value ${purpose}`, { param: 'purpose' });
      return { status: 200, json: createFile(ctx.state, { filename: file.filename, purpose, data: file.data }).object };
    }),

    route('mistral.files.retrieve', 'GET', '/files/([^/]+)', (ctx, [id]) => {
      const file = getFile(ctx.state, id);
      return file ? { status: 200, json: { ...file.object, deleted: false } } : notFound('File', id);
    }),

    route('mistral.files.content', 'GET', '/files/([^/]+)/content', (ctx, [id]) => {
      const file = getFile(ctx.state, id);
      return file ? { status: 200, raw: file.data, contentType: 'application/octet-stream' } : notFound('File', id);
    }),

    // DELETE /v1/files/{id} → {id, object:"file", deleted:true} (the SDK's files.delete).
    route('mistral.files.delete', 'DELETE', '/files/([^/]+)', (ctx, [id]) => {
      if (!getFile(ctx.state, id)) return notFound('File', id);
      ctx.state.files.delete(id);
      return { status: 200, json: { id, object: 'file', deleted: true } };
    }),

    route('mistral.batches.create', 'POST', '/batch/jobs', (ctx) => {
      if (ctx.jsonError) return error(400, ctx.jsonError);
      const body = ctx.json ?? {};
      if (!SYNC_ENDPOINTS.includes(body.endpoint)) {
        return error(400, `endpoint: the fake provider supports ${SYNC_ENDPOINTS.join(', ')}`, { param: 'endpoint' });
      }
      if (typeof body.model !== 'string' || body.model === '') {
        return error(400, 'model: the fake provider needs a model (agents are not supported)', { param: 'model' });
      }
      const { requests, invalid } = jobRequests(ctx.state, body);
      if (invalid) return error(400, invalid);
      const record = {
        provider: 'mistral',
        id: uuid(ctx.state, 'batch'),
        requests,
        headers: ctx.headers,
        metadata: isPlainObject(body.metadata) ? body.metadata : null,
        endpoint: body.endpoint,
        model: body.model,
        inputFiles: Array.isArray(body.input_files) ? body.input_files : [],
        inline: !(Array.isArray(body.input_files) && body.input_files.length > 0),
        timeoutHours: body.timeout_hours ?? 24,
        state: 'QUEUED',
        polls: 0,
        createdAt: nowSeconds(),
      };
      registerBatch(ctx.state, record);
      if (ctx.state.config.pollsUntilDone <= 0) finish(ctx.state, record, FATE_STATUS[record.fate] ?? 'SUCCESS');
      return { status: 200, json: jobObject(record) };
    }),

    route('mistral.batches.list', 'GET', '/batch/jobs', (ctx) => {
      const q = ctx.url.searchParams;
      const page = Math.max(0, Number(q.get('page') ?? 0) || 0);
      const pageSize = Math.max(1, Number(q.get('page_size') ?? 100) || 100);
      let all = batchesNewestFirst(ctx.state, 'mistral').filter(listFilter(q));
      if (q.get('order_by') === 'created') all = all.reverse();
      const data = all.slice(page * pageSize, (page + 1) * pageSize).map((r) => jobObject(r));
      return { status: 200, json: { object: 'list', data, total: all.length } };
    }),

    route('mistral.batches.retrieve', 'GET', '/batch/jobs/([^/]+)', (ctx, [id]) => {
      const record = getJob(ctx.state, id);
      if (!record) return notFound('Batch job', id);
      advance(ctx.state, record);
      return { status: 200, json: jobObject(record, { inline: ctx.url.searchParams.get('inline') !== 'false' }) };
    }),

    route('mistral.batches.cancel', 'POST', '/batch/jobs/([^/]+)/cancel', (ctx, [id]) => {
      const record = getJob(ctx.state, id);
      if (!record) return notFound('Batch job', id);
      if (!TERMINAL.has(record.state)) {
        record.cancelRequested = true;
        record.state = 'CANCELLATION_REQUESTED';
      }
      return { status: 200, json: jobObject(record) };
    }),
  ];
}

/** Bearer auth; otherwise Mistral's 401 body. */
export function mistralAuthError(headers) {
  if (/^Bearer\s+\S+/i.test(headers.authorization ?? '')) return null;
  return { status: 401, json: { message: 'Unauthorized', request_id: sha256Hex(String(Date.now())).slice(0, 32) } };
}

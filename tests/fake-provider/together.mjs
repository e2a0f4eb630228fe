// Fake Together AI API under /together/v1/...: the presigned file upload, batches and the sync
// chat completions endpoint. Wire formats follow providers.md §7 and the `together-ai` npm SDK
// (0.52: resources/batches, resources/files, lib/upload.js).
//
// Upload: POST /together/v1/files?file_name&file_type&purpose answers 302 with `Location` (a PUT
// route on this server, /together-storage/<id>, which takes no auth and refuses any Authorization
// header with 403, so a test proves the API key never reaches the storage host) and
// `x-together-file-id`. Create answers `{job: BatchJob}`; retrieve a bare BatchJob; list a JSON
// array; statuses VALIDATING → IN_PROGRESS → COMPLETED / FAILED / EXPIRED / CANCELLED.
//
// ASSUMED (providers.md §7 found no official example): result lines are OpenAI-shaped,
// `{id, custom_id, response: {status_code, request_id, body}, error: null}`; per-request failures
// (HTTP errors, and `{response: null, error: {code: "batch_expired"}}` for EXPIRE_LINE) go to the
// error file even when the batch is COMPLETED; error bodies use OpenAI's `{error: {message, type,
// param, code}}` envelope. Answers are the OpenAI fake's (`openaiAnswer`), so the sync endpoint and
// a batch line agree.

import {
  batchesNewestFirst,
  errorResponse,
  isPlainObject,
  markTerminal,
  nowSeconds,
  openaiErrorBody,
  parseJsonl,
  parseTriggers,
  registerBatch,
  sha256Hex,
  shuffleForOutput,
  toJsonl,
} from './common.mjs';
import { openaiAnswer, openaiUserText } from './openai.mjs';

const PREFIX = '/together/v1';
const STORAGE_PREFIX = '/together-storage';
const CHAT = '/v1/chat/completions';
const BATCH_ENDPOINTS = ['/v1/chat/completions', '/v1/audio/transcriptions', '/v1/audio/translations'];
const PURPOSES = ['fine-tune', 'eval', 'batch-api'];
const FILE_TYPES = ['jsonl', 'parquet', 'csv'];
const TERMINAL = new Set(['COMPLETED', 'FAILED', 'EXPIRED', 'CANCELLED']);
const MAX_CUSTOM_ID = 64;

const iso = (seconds) => new Date(seconds * 1000).toISOString();
const error = (status, message, extra) => ({ status, json: openaiErrorBody(status, message, extra) });
const notFound = (what, id) => errorResponse('together', 404, `${what} not found: '${id}'`);

// ---------------------------------------------------------------------------
// Files

function getFile(state, id) {
  const file = state.files.get(id);
  return file?.provider === 'together' ? file : null;
}

function fileObject(file) {
  return {
    id: file.id,
    object: 'file',
    created_at: file.createdAt,
    filename: file.filename,
    bytes: file.data?.length ?? 0,
    purpose: file.purpose,
    FileType: file.fileType,
    Processed: file.data !== null,
    LineCount: file.data ? parseJsonl(file.data.toString('utf8')).length : 0,
  };
}

function createFile(state, { filename, purpose, fileType, data = null }) {
  const id = `file-together-${state.nextId()}`;
  const file = { provider: 'together', id, filename, purpose, fileType, data, createdAt: nowSeconds() };
  state.files.set(id, file);
  return file;
}

// ---------------------------------------------------------------------------
// Batches

/** Input lines `{custom_id, body}` (OpenAI's `method` / `url` tolerated); returns `{requests, model, errors}`. */
function parseBatchInput(text, endpoint) {
  const requests = [];
  const errors = [];
  const seen = new Set();
  let model = null;
  const lines = parseJsonl(text);
  if (lines.length === 0) errors.push('line 0: the input file is empty');
  for (const { line, value, error: jsonError } of lines) {
    const fail = (message) => errors.push(`line ${line}: ${message}`);
    if (jsonError) { fail(`invalid JSON: ${jsonError}`); continue; }
    const id = value?.custom_id;
    if (typeof id !== 'string' || id === '') { fail('missing custom_id'); continue; }
    if (id.length > MAX_CUSTOM_ID) { fail(`custom_id longer than ${MAX_CUSTOM_ID} characters`); continue; }
    if (seen.has(id)) { fail(`duplicate custom_id ${id}`); continue; }
    seen.add(id);
    if (value.method !== undefined && value.method !== 'POST') { fail('method must be POST'); continue; }
    if (value.url !== undefined && value.url !== endpoint) { fail(`url ${value.url} is not the batch endpoint ${endpoint}`); continue; }
    if (!isPlainObject(value.body)) { fail('body must be a JSON object'); continue; }
    if (model === null) model = value.body.model ?? null;
    else if (value.body.model !== model) { fail(`model ${value.body.model} differs from ${model}`); continue; }
    requests.push({ customId: id, body: value.body });
  }
  return { requests, model, errors };
}

/** The result line of one request: `{ok, line}` (see the header comment: assumed OpenAI-shaped). */
function executeLine(state, record, request) {
  const lineId = `batch_req_${sha256Hex(`${record.id}:${request.customId}`).slice(0, 24)}`;
  const text = openaiUserText(CHAT, request.body);
  if (parseTriggers(text).expireLine) return notExecutedLine(lineId, request);
  if (state.config.rejectStreamInBatch && request.body?.stream === true) {
    const body = openaiErrorBody(400, 'Streaming is not supported in batch requests.', { param: 'stream' });
    return { ok: false, line: { id: lineId, custom_id: request.customId, response: { status_code: 400, request_id: lineId, body }, error: null } };
  }
  const answer = openaiAnswer(CHAT, request.body);
  return {
    ok: answer.status >= 200 && answer.status < 300,
    line: {
      id: lineId,
      custom_id: request.customId,
      response: { status_code: answer.status, request_id: answer.requestId, body: answer.body },
      error: null,
    },
  };
}

function notExecutedLine(lineId, request) {
  const error = { code: 'batch_expired', message: 'This request could not be executed before the completion window expired.' };
  return { ok: false, line: { id: lineId, custom_id: request.customId, response: null, error } };
}

/** Run the first `upTo` requests into the output and error files; the rest get no line. */
function writeResults(state, record, upTo = Infinity) {
  const outputs = [];
  const errors = [];
  record.requests.slice(0, upTo).forEach((request) => {
    const result = executeLine(state, record, request);
    (result.ok ? outputs : errors).push(result.line);
  });
  const write = (lines, kind) => (lines.length === 0 ? null : createFile(state, {
    filename: `${record.id}_${kind}.jsonl`,
    purpose: 'batch-api',
    fileType: 'jsonl',
    data: Buffer.from(toJsonl(shuffleForOutput(lines, state.config))),
  }).id);
  record.outputFileId = write(outputs, 'output');
  record.errorFileId = write(errors, 'error');
}

function finish(state, record, status) {
  record.state = status;
  record.completedAt = nowSeconds();
  if (status === 'COMPLETED') {
    writeResults(state, record);
    record.progress = 100;
  } else if (status === 'EXPIRED') {
    // Half of the requests ran; the others have no line (they did not run).
    writeResults(state, record, Math.floor(record.requests.length / 2));
  } else if (status === 'FAILED') {
    record.error ??= 'The batch failed (injected fault).';
  }
  markTerminal(state, record);
}

function fateStatus(fate) {
  return { failed: 'FAILED', expired: 'EXPIRED', cancelled: 'CANCELLED' }[fate] ?? 'COMPLETED';
}

function advance(state, record) {
  if (record.terminal) return;
  record.polls += 1;
  if (record.error) return finish(state, record, 'FAILED'); // the input file was refused
  if (record.polls >= state.config.pollsUntilDone) return finish(state, record, fateStatus(record.fate));
  record.state = 'IN_PROGRESS';
  record.progress = Math.min(99, Math.round((100 * record.polls) / state.config.pollsUntilDone));
}

function batchJob(record) {
  return {
    id: record.id,
    user_id: 'user-fake',
    input_file_id: record.inputFileId,
    file_size_bytes: record.fileSizeBytes,
    status: record.state,
    job_deadline: iso(record.createdAt + 24 * 3600),
    created_at: iso(record.createdAt),
    endpoint: record.endpoint,
    progress: record.progress,
    model_id: record.modelId,
    output_file_id: record.outputFileId ?? undefined,
    error_file_id: record.errorFileId ?? undefined,
    error: record.terminal ? (record.error ?? undefined) : undefined,
    completed_at: record.completedAt ? iso(record.completedAt) : undefined,
  };
}

function getBatch(state, id) {
  const record = state.batches.get(id);
  return record?.provider === 'together' ? record : null;
}

// ---------------------------------------------------------------------------
// Routes

export function togetherRoutes() {
  const route = (name, method, path, handle, extra = {}) => ({
    provider: 'together', name, method, pattern: new RegExp(`^${path}$`), handle, ...extra,
  });
  const P = PREFIX.replace(/\//g, '\\/');

  return [
    route('together.chat.completions', 'POST', `${P}\\/chat\\/completions`, (ctx) => {
      if (ctx.jsonError) return error(400, ctx.jsonError);
      if (ctx.json?.stream === true) return error(400, 'The fake provider does not implement streaming responses.');
      const answer = openaiAnswer(CHAT, ctx.json);
      return { status: answer.status, json: answer.body, headers: { 'x-request-id': answer.requestId } };
    }, { sync: true }),

    // Step 1 of the upload (lib/upload.js): the parameters come as the query and as a form body.
    route('together.files.create', 'POST', `${P}\\/files`, (ctx) => {
      const q = ctx.url.searchParams;
      const form = new URLSearchParams(ctx.body.toString('utf8'));
      const param = (name) => q.get(name) ?? form.get(name);
      const fileName = param('file_name');
      if (!fileName) return error(400, "Missing required parameter: 'file_name'.", { param: 'file_name' });
      if (!PURPOSES.includes(param('purpose'))) return error(400, `Invalid purpose '${param('purpose')}'.`, { param: 'purpose' });
      if (!FILE_TYPES.includes(param('file_type'))) return error(400, `Invalid file_type '${param('file_type')}'.`, { param: 'file_type' });
      const file = createFile(ctx.state, { filename: fileName, purpose: param('purpose'), fileType: param('file_type') });
      return { status: 302, headers: { location: `${ctx.baseUrl}${STORAGE_PREFIX}/${file.id}`, 'x-together-file-id': file.id } };
    }),

    // Step 2: the presigned storage URL. Not Together's API: no auth, and an API key arriving
    // here is a leak.
    route('together.files.upload', 'PUT', `\\/together-storage\\/([^/]+)`, (ctx, [id]) => {
      if (ctx.headers.authorization) {
        return { status: 403, raw: Buffer.from('<Error><Code>AccessDenied</Code><Message>Authorization header sent to a presigned URL</Message></Error>'), contentType: 'application/xml' };
      }
      const file = getFile(ctx.state, id);
      if (!file) return { status: 404, raw: Buffer.from('<Error><Code>NoSuchUpload</Code></Error>'), contentType: 'application/xml' };
      file.data = ctx.body;
      return { status: 200, raw: Buffer.alloc(0) };
    }, { auth: false }),

    route('together.files.retrieve', 'GET', `${P}\\/files\\/([^/]+)`, (ctx, [id]) => {
      const file = getFile(ctx.state, id);
      return file ? { status: 200, json: fileObject(file) } : notFound('File', id);
    }),

    route('together.files.content', 'GET', `${P}\\/files\\/([^/]+)\\/content`, (ctx, [id]) => {
      const file = getFile(ctx.state, id);
      if (!file?.data) return notFound('File', id);
      return { status: 200, raw: file.data, contentType: 'application/octet-stream' };
    }),

    // DELETE /v1/files/{id} → {id, deleted:true} (the SDK's files.delete).
    route('together.files.delete', 'DELETE', `${P}\\/files\\/([^/]+)`, (ctx, [id]) => {
      if (!getFile(ctx.state, id)) return notFound('File', id);
      ctx.state.files.delete(id);
      return { status: 200, json: { id, deleted: true } };
    }),

    route('together.batches.create', 'POST', `${P}\\/batches`, (ctx) => {
      if (ctx.jsonError) return error(400, ctx.jsonError);
      const body = ctx.json ?? {};
      if (!BATCH_ENDPOINTS.includes(body.endpoint)) return error(400, `Invalid endpoint '${body.endpoint}'.`, { param: 'endpoint' });
      if (body.endpoint !== CHAT) return error(400, 'The fake provider batches chat completions only.', { param: 'endpoint' });
      const file = getFile(ctx.state, body.input_file_id);
      if (!file) return error(400, `Invalid input_file_id '${body.input_file_id}': file not found.`, { param: 'input_file_id' });
      if (file.purpose !== 'batch-api') return error(400, `File '${file.id}' does not have purpose 'batch-api'.`, { param: 'input_file_id' });
      if (!file.data) return error(400, `File '${file.id}' was never uploaded.`, { param: 'input_file_id' });
      const { requests, model, errors } = parseBatchInput(file.data.toString('utf8'), body.endpoint);
      const record = {
        provider: 'together',
        id: `batch-fake${ctx.state.nextId()}`,
        requests,
        headers: ctx.headers,
        metadata: null,
        endpoint: body.endpoint,
        model,
        modelId: body.model_id ?? model,
        completionWindow: body.completion_window ?? null,
        inputFileId: file.id,
        fileSizeBytes: file.data.length,
        state: 'VALIDATING',
        progress: 0,
        polls: 0,
        error: errors.length ? errors.join('; ') : null,
        createdAt: nowSeconds(),
      };
      registerBatch(ctx.state, record);
      if (ctx.state.config.pollsUntilDone <= 0) advance(ctx.state, record);
      return { status: 200, json: { job: batchJob(record) } };
    }),

    route('together.batches.retrieve', 'GET', `${P}\\/batches\\/([^/]+)`, (ctx, [id]) => {
      const record = getBatch(ctx.state, id);
      if (!record) return notFound('Batch', id);
      advance(ctx.state, record);
      return { status: 200, json: batchJob(record) };
    }),

    route('together.batches.list', 'GET', `${P}\\/batches`, (ctx) => ({
      status: 200,
      json: batchesNewestFirst(ctx.state, 'together').map(batchJob),
    })),

    route('together.batches.cancel', 'POST', `${P}\\/batches\\/([^/]+)\\/cancel`, (ctx, [id]) => {
      const record = getBatch(ctx.state, id);
      if (!record) return notFound('Batch', id);
      if (TERMINAL.has(record.state)) return error(400, `Cannot cancel a batch with status '${record.state}'.`);
      finish(ctx.state, record, 'CANCELLED');
      return { status: 200, json: batchJob(record) };
    }),
  ];
}

export function togetherAuthError(headers) {
  if (/^Bearer\s+\S+/i.test(headers.authorization ?? '')) return null;
  return error(401, 'Invalid API key provided. You can find your API key at https://api.together.xyz/settings/api-keys.', { type: 'invalid_request_error' });
}

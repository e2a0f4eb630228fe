// Fake Gemini Developer API: generateContent (sync), Batch Mode
// (batchGenerateContent, batches get/list/cancel/delete) and the Files API
// pieces batch mode needs (resumable upload, metadata, download).
// Wire formats follow providers.md §4 and the `@google/genai` npm SDK.
//
// Where each fact of the file flow comes from (providers.md §4 sources):
// - Resumable upload start `POST /upload/{v}/files` with `X-Goog-Upload-Protocol: resumable`,
//   `X-Goog-Upload-Command: start`, `X-Goog-Upload-Header-Content-Length` / `-Content-Type` and a
//   `{file: {displayName}}` body, answered with the session URL in `X-Goog-Upload-URL`: the batch
//   guide's REST example (ai.google.dev/gemini-api/docs/batch-api) and `fetchUploadUrl` in
//   `@google/genai` (dist/node/index.mjs).
// - The bytes: `POST <session url>` with `X-Goog-Upload-Offset` and `X-Goog-Upload-Command:
//   upload` per chunk, `upload, finalize` on the last (the whole file at offset 0 in the guide's
//   curl; 8 MB chunks in the SDK's `uploadBlob`), each answered with `x-goog-upload-status`
//   `active` / `final`, the final one with `{file: File}`: the SDK's `uploadBlob` and the guide.
// - `inputConfig.fileName` input whose JSONL lines are `{key, request}`, and the output's
//   `responsesFile` of `{key, response|error}` lines, downloaded at `files/{id}:download?alt=media`
//   (the SDK) or `/download/{v}/files/{id}:download?alt=media` (the guide): the guide and
//   gemini-rust's `BatchResponseFileItem`.
// - 20 MB per inline create request, 2 GB per input file: the guide.
// Assumed, not documented: the status and message of an over-size inline create (400
// INVALID_ARGUMENT here), and that a finalize whose bytes differ from the declared length is
// refused (400 here; the fake is strict so a client's miscount shows).
//
// Every route is served under both `/v1beta/` and `/v1/`: @google/genai 3.x
// defaults to API version `v1` when given `httpOptions.baseUrl`.

import { createHash } from 'node:crypto';
import {
  batchesNewestFirst,
  bodyDigest,
  errorResponse,
  estimateTokens,
  geminiErrorBody,
  grpcForHttp,
  isPlainObject,
  isoFromSeconds,
  markTerminal,
  nowSeconds,
  parseJsonl,
  parseTriggers,
  overEnqueuedLimit,
  registerBatch,
  stripStreamFields,
  structuredValue,
  toJsonl,
} from './common.mjs';

const V = '(v1beta|v1)';
const BATCH_TYPE = 'type.googleapis.com/google.ai.generativelanguage.v1beta.GenerateContentBatch';
const OUTPUT_TYPE = 'type.googleapis.com/google.ai.generativelanguage.v1beta.GenerateContentBatchOutput';
/** Documented: an inline create request must stay under 20 MB. */
const MAX_INLINE_REQUEST_BYTES = 20_000_000;
const FATE_STATES = { failed: 'BATCH_STATE_FAILED', expired: 'BATCH_STATE_EXPIRED', cancelled: 'BATCH_STATE_CANCELLED' };

/** proto-JSON accepts camelCase and snake_case field names. */
const pick = (obj, camel, snake) => (isPlainObject(obj) ? obj[camel] ?? obj[snake] : undefined);

// ---------------------------------------------------------------------------
// Deterministic answers

export function geminiUserText(request) {
  const contents = Array.isArray(request?.contents) ? request.contents : [];
  const users = contents.filter((c) => c && (c.role === undefined || c.role === 'user'));
  const parts = users.at(-1)?.parts;
  return Array.isArray(parts) ? parts.filter((p) => typeof p?.text === 'string').map((p) => p.text).join('\n') : '';
}

/**
 * The answer to one GenerateContentRequest: `{status, body}` where body is a
 * GenerateContentResponse or the sync error envelope. A pure function of
 * (model from the URL, request minus stream fields and `model`).
 */
export function geminiAnswer(model, rawRequest) {
  const modelName = model.startsWith('models/') ? model : `models/${model}`;
  const request = stripStreamFields(rawRequest);
  const digest = bodyDigest(request, { provider: 'gemini' });
  if (!isPlainObject(request) || !Array.isArray(request.contents) || request.contents.length === 0) {
    return { status: 400, body: geminiErrorBody(400, '* GenerateContentRequest.contents: contents is not specified') };
  }
  const text = geminiUserText(request);
  const { failStatus, badJson } = parseTriggers(text);
  if (failStatus) {
    return { status: failStatus, body: geminiErrorBody(failStatus, `Fake failure triggered by FAIL:${failStatus} (body sha256 ${digest})`) };
  }
  // JSON mode: the part text is JSON generated from responseJsonSchema (or the OpenAPI-subset
  // responseSchema); without a schema, `{"response": "echo: …"}`.
  const config = pick(request, 'generationConfig', 'generation_config');
  const jsonMode = pick(config, 'responseMimeType', 'response_mime_type') === 'application/json';
  const schema = pick(config, 'responseJsonSchema', 'response_json_schema') ?? pick(config, 'responseSchema', 'response_schema') ??
    { type: 'object', properties: { response: { type: 'string' } }, required: ['response'] };
  const reply = jsonMode ? JSON.stringify(structuredValue(schema, text, { bad: badJson })) : `echo: ${text}`;
  const promptTokens = estimateTokens(JSON.stringify(request));
  const candidateTokens = estimateTokens(reply);
  return {
    status: 200,
    body: {
      candidates: [{ content: { parts: [{ text: reply }], role: 'model' }, finishReason: 'STOP', index: 0 }],
      usageMetadata: {
        promptTokenCount: promptTokens,
        candidatesTokenCount: candidateTokens,
        totalTokenCount: promptTokens + candidateTokens,
        promptTokensDetails: [{ modality: 'TEXT', tokenCount: promptTokens }],
      },
      modelVersion: modelName.slice('models/'.length),
      responseId: digest,
    },
  };
}

/** google.rpc.Status for a failed item, from an HTTP status. */
function rpcStatus(httpStatus, message) {
  const [code, name] = grpcForHttp(httpStatus);
  return { code, message, status: name };
}

// ---------------------------------------------------------------------------
// Files

function fileObject(baseUrl, version, { id, displayName, mimeType, data, createdAt, source }) {
  const hex = createHash('sha256').update(data).digest('hex');
  return {
    name: `files/${id}`,
    displayName,
    mimeType,
    sizeBytes: String(data.length),
    createTime: isoFromSeconds(createdAt),
    updateTime: isoFromSeconds(createdAt),
    expirationTime: isoFromSeconds(createdAt + 48 * 3600),
    sha256Hash: Buffer.from(hex).toString('base64'),
    uri: `${baseUrl}/${version}/files/${id}`,
    downloadUri: `${baseUrl}/download/${version}/files/${id}:download?alt=media`,
    state: 'ACTIVE',
    source,
  };
}

function storeFile(state, baseUrl, version, { id, displayName, mimeType, data, source }) {
  const file = { provider: 'gemini', id, data, meta: { id, displayName, mimeType, data, createdAt: nowSeconds(), source } };
  file.object = fileObject(baseUrl, version, file.meta);
  state.files.set(`files/${id}`, file);
  return file;
}

const getFile = (state, id) => state.files.get(`files/${id}`) ?? null;

// ---------------------------------------------------------------------------
// Batches

function parseSource(state, inputConfig) {
  const fileName = pick(inputConfig, 'fileName', 'file_name');
  const inline = pick(pick(inputConfig, 'requests', 'requests'), 'requests', 'requests');
  if ((fileName === undefined) === (inline === undefined)) {
    return { error: 'batch.input_config: exactly one of requests or file_name must be set' };
  }
  if (inline !== undefined) {
    if (!Array.isArray(inline) || inline.length === 0) return { error: 'batch.input_config.requests.requests: must not be empty' };
    const requests = [];
    for (const [i, item] of inline.entries()) {
      if (!isPlainObject(item?.request)) return { error: `batch.input_config.requests.requests[${i}].request: field is required` };
      requests.push({ customId: item.metadata?.key ?? null, body: item.request, metadata: item.metadata });
    }
    return { kind: 'inline', requests };
  }
  const file = typeof fileName === 'string' ? state.files.get(fileName) : null;
  if (!file || file.provider !== 'gemini') return { error: `File ${fileName} not found.`, status: 404 };
  const requests = [];
  for (const { line, value, error } of parseJsonl(file.data.toString('utf8'))) {
    if (error || !isPlainObject(value?.request)) return { error: `Invalid request on line ${line} of ${fileName}.` };
    requests.push({ customId: value.key ?? null, body: value.request });
  }
  if (requests.length === 0) return { error: `File ${fileName} contains no requests.` };
  return { kind: 'file', requests, fileName };
}

function executeItem(state, record, request) {
  if (parseTriggers(geminiUserText(request.body)).expireLine) {
    return { error: rpcStatus(504, 'The request expired before it could be processed.') };
  }
  if (state.config.rejectStreamInBatch && request.body?.stream === true) {
    return { error: rpcStatus(400, 'Streaming is not supported in batch mode.') };
  }
  const answer = geminiAnswer(record.model, request.body);
  if (answer.status >= 200 && answer.status < 300) return { response: answer.body };
  return { error: rpcStatus(answer.status, answer.body.error.message) };
}

function finish(state, record, fate, baseUrl) {
  const t = nowSeconds();
  record.updatedAt = t;
  record.endedAt = t;
  if (fate && FATE_STATES[fate]) {
    record.state = FATE_STATES[fate];
    if (fate === 'failed') record.error = { code: 13, message: 'The batch failed (injected fault).' };
    record.stats = { requestCount: record.requests.length, successful: 0, failed: 0, pending: 0 };
    return markTerminal(state, record);
  }
  const items = record.requests.map((request) => executeItem(state, record, request));
  const successful = items.filter((item) => item.response).length;
  record.stats = { requestCount: items.length, successful, failed: items.length - successful, pending: 0 };
  if (record.source === 'inline') {
    // Inline results keep input order and carry the item's metadata back.
    const inlined = items.map((item, i) => {
      const out = { ...item };
      if (item.error) out.error = { code: item.error.code, message: item.error.message, details: [] };
      if (record.requests[i].metadata !== undefined) out.metadata = record.requests[i].metadata;
      return out;
    });
    record.output = { inlinedResponses: { inlinedResponses: inlined } };
  } else {
    const lines = items.map((item, i) => ({ key: record.requests[i].customId, ...item }));
    const file = storeFile(state, baseUrl, record.version, {
      id: `batch-${record.id}`,
      displayName: `${record.id}-responses`,
      mimeType: 'application/jsonl',
      data: Buffer.from(toJsonl(lines)),
      source: 'GENERATED',
    });
    record.output = { responsesFile: file.object.name };
  }
  record.state = 'BATCH_STATE_SUCCEEDED';
  markTerminal(state, record);
}

function advance(state, record, baseUrl) {
  if (record.terminal) return;
  record.polls += 1;
  record.updatedAt = nowSeconds();
  if (record.cancelRequested) return finish(state, record, 'cancelled', baseUrl);
  if (record.polls >= state.config.pollsUntilDone) return finish(state, record, record.fate, baseUrl);
  record.state = 'BATCH_STATE_RUNNING';
}

function operation(record) {
  const stats = record.stats ?? { requestCount: record.requests.length, successful: 0, failed: 0, pending: record.requests.length };
  const metadata = {
    '@type': BATCH_TYPE,
    model: record.model,
    displayName: record.displayName,
    name: `batches/${record.id}`,
    ...(record.source === 'file' ? { inputConfig: { fileName: record.inputFileName } } : {}),
    createTime: isoFromSeconds(record.createdAt),
    updateTime: isoFromSeconds(record.updatedAt),
    ...(record.endedAt ? { endTime: isoFromSeconds(record.endedAt) } : {}),
    batchStats: {
      requestCount: String(stats.requestCount),
      successfulRequestCount: String(stats.successful),
      failedRequestCount: String(stats.failed),
      pendingRequestCount: String(stats.pending),
    },
    state: record.state,
    ...(record.output ? { output: record.output } : {}),
  };
  const op = { name: `batches/${record.id}`, metadata };
  if (record.terminal) {
    op.done = true;
    if (record.output) op.response = { '@type': OUTPUT_TYPE, ...record.output };
    if (record.error) op.error = record.error;
  }
  return op;
}

function getBatch(state, id) {
  const record = state.batches.get(id);
  return record?.provider === 'gemini' ? record : null;
}

const notFound = (what) => errorResponse('gemini', 404, `${what} not found.`);

// ---------------------------------------------------------------------------
// Routes

export function geminiRoutes() {
  const route = (name, method, pattern, handle, extra = {}) => ({ provider: 'gemini', name, method, pattern, handle, ...extra });
  const needJson = (ctx) => (ctx.jsonError ? errorResponse('gemini', 400, ctx.jsonError) : null);

  return [
    route('gemini.generateContent', 'POST', new RegExp(`^/${V}/(models/[^/:]+):generateContent$`), (ctx, [, model]) => {
      const bad = needJson(ctx);
      if (bad) return bad;
      const answer = geminiAnswer(model, ctx.json);
      return { status: answer.status, json: answer.body };
    }, { sync: true }),

    route('gemini.batches.create', 'POST', new RegExp(`^/${V}/(models/[^/:]+):batchGenerateContent$`), (ctx, [version, model]) => {
      const bad = needJson(ctx);
      if (bad) return bad;
      const batch = pick(ctx.json, 'batch', 'batch');
      if (!isPlainObject(batch)) return errorResponse('gemini', 400, 'batch: field is required');
      const inlineRequests = pick(pick(batch, 'inputConfig', 'input_config'), 'requests', 'requests');
      if (inlineRequests !== undefined && ctx.body.length > MAX_INLINE_REQUEST_BYTES) {
        return errorResponse('gemini', 400, `Request payload size exceeds the limit: ${MAX_INLINE_REQUEST_BYTES} bytes.`);
      }
      const source = parseSource(ctx.state, pick(batch, 'inputConfig', 'input_config'));
      if (source.error) return errorResponse('gemini', source.status ?? 400, source.error);
      if (overEnqueuedLimit(ctx.state, { provider: 'gemini', headers: ctx.headers, model, requests: source.requests })) {
        ctx.state.counters.enqueuedLimitRefusals += 1;
        return errorResponse('gemini', 429, 'Resource has been exhausted (e.g. check quota): enqueued batch tokens.');
      }
      const id = `fake${ctx.state.nextId()}`;
      const now = nowSeconds();
      const record = {
        provider: 'gemini',
        id,
        name: `batches/${id}`,
        version,
        model,
        displayName: pick(batch, 'displayName', 'display_name') ?? id,
        source: source.kind,
        inputFileName: source.fileName,
        requests: source.requests,
        headers: ctx.headers,
        metadata: null,
        state: 'BATCH_STATE_PENDING',
        polls: 0,
        createdAt: now,
        updatedAt: now,
      };
      registerBatch(ctx.state, record);
      if (ctx.state.config.pollsUntilDone <= 0) finish(ctx.state, record, record.fate, ctx.baseUrl);
      return { status: 200, json: operation(record) };
    }),

    route('gemini.batches.list', 'GET', new RegExp(`^/${V}/batches$`), (ctx) => {
      const q = ctx.url.searchParams;
      const pageSize = Math.min(1000, Math.max(1, Number(q.get('pageSize') ?? 50) || 50));
      const offset = Number(q.get('pageToken') ?? 0) || 0;
      const all = batchesNewestFirst(ctx.state, 'gemini');
      const page = all.slice(offset, offset + pageSize);
      const json = { operations: page.map(operation) };
      if (offset + pageSize < all.length) json.nextPageToken = String(offset + pageSize);
      return { status: 200, json };
    }),

    route('gemini.batches.retrieve', 'GET', new RegExp(`^/${V}/batches/([^/:]+)$`), (ctx, [, id]) => {
      const record = getBatch(ctx.state, id);
      if (!record) return notFound(`Batch batches/${id}`);
      advance(ctx.state, record, ctx.baseUrl);
      return { status: 200, json: operation(record) };
    }),

    route('gemini.batches.cancel', 'POST', new RegExp(`^/${V}/batches/([^/:]+):cancel$`), (ctx, [, id]) => {
      const record = getBatch(ctx.state, id);
      if (!record) return notFound(`Batch batches/${id}`);
      if (!record.terminal) record.cancelRequested = true;
      return { status: 200, json: {} };
    }),

    route('gemini.batches.delete', 'DELETE', new RegExp(`^/${V}/batches/([^/:]+)$`), (ctx, [, id]) => {
      const record = getBatch(ctx.state, id);
      if (!record) return notFound(`Batch batches/${id}`);
      markTerminal(ctx.state, record);
      ctx.state.batches.delete(id);
      return { status: 200, json: {} };
    }),

    // Resumable upload, step 1: start a session, answer with X-Goog-Upload-URL.
    route('gemini.files.upload', 'POST', new RegExp(`^/upload/${V}/files$`), (ctx, [version]) => {
      const bad = needJson(ctx);
      if (bad) return bad;
      if ((ctx.headers['x-goog-upload-protocol'] ?? '').toLowerCase() !== 'resumable') {
        return errorResponse('gemini', 400, 'X-Goog-Upload-Protocol must be "resumable".');
      }
      if ((ctx.headers['x-goog-upload-command'] ?? '').toLowerCase() !== 'start') {
        return errorResponse('gemini', 400, 'X-Goog-Upload-Command must be "start" for a new upload.');
      }
      const declared = ctx.headers['x-goog-upload-header-content-length'];
      if (declared !== undefined && !/^\d+$/.test(declared)) {
        return errorResponse('gemini', 400, `Invalid X-Goog-Upload-Header-Content-Length ${declared}.`);
      }
      const file = pick(ctx.json, 'file', 'file') ?? {};
      const uploadId = `up${ctx.state.nextId()}`;
      ctx.state.uploads.set(uploadId, {
        version,
        name: typeof file.name === 'string' ? file.name.replace(/^files\//, '') : null,
        displayName: pick(file, 'displayName', 'display_name') ?? null,
        mimeType: ctx.headers['x-goog-upload-header-content-type'] ?? pick(file, 'mimeType', 'mime_type') ?? 'application/octet-stream',
        declaredLength: declared === undefined ? null : Number(declared),
        chunks: [],
        received: 0,
      });
      return {
        status: 200,
        raw: Buffer.alloc(0),
        headers: {
          'x-goog-upload-url': `${ctx.baseUrl}/upload/${version}/files?upload_id=${uploadId}&upload_protocol=resumable`,
          'x-goog-upload-status': 'active',
          'x-goog-upload-chunk-granularity': '8388608',
        },
      };
    }, { when: (ctx) => !ctx.url.searchParams.has('upload_id') }),

    // Resumable upload, step 2..n: `upload` chunks, the last one with `finalize`.
    route('gemini.files.uploadChunk', 'POST', new RegExp(`^/upload/${V}/files$`), (ctx) => {
      const uploadId = ctx.url.searchParams.get('upload_id');
      const session = ctx.state.uploads.get(uploadId);
      if (!session) return errorResponse('gemini', 404, `Upload session ${uploadId} not found.`);
      const offset = Number(ctx.headers['x-goog-upload-offset'] ?? 0);
      if (offset !== session.received) {
        return errorResponse('gemini', 400, `Invalid X-Goog-Upload-Offset ${offset}; expected ${session.received}.`);
      }
      session.chunks.push(ctx.body);
      session.received += ctx.body.length;
      const commands = (ctx.headers['x-goog-upload-command'] ?? '').split(',').map((s) => s.trim().toLowerCase());
      if (!commands.includes('finalize')) {
        return { status: 200, raw: Buffer.alloc(0), headers: { 'x-goog-upload-status': 'active' } };
      }
      ctx.state.uploads.delete(uploadId);
      if (session.declaredLength !== null && session.received !== session.declaredLength) {
        return errorResponse('gemini', 400, `Upload finalized with ${session.received} bytes; ${session.declaredLength} were declared.`);
      }
      const id = session.name ?? `fakefile${ctx.state.nextId()}`;
      const file = storeFile(ctx.state, ctx.baseUrl, session.version, {
        id,
        displayName: session.displayName ?? id,
        mimeType: session.mimeType,
        data: Buffer.concat(session.chunks),
        source: 'UPLOADED',
      });
      return { status: 200, json: { file: file.object }, headers: { 'x-goog-upload-status': 'final' } };
    }, { auth: false, when: (ctx) => ctx.url.searchParams.has('upload_id') }),

    route('gemini.files.retrieve', 'GET', new RegExp(`^/${V}/files/([^/:]+)$`), (ctx, [, id]) => {
      const file = getFile(ctx.state, id);
      return file ? { status: 200, json: file.object } : notFound(`File files/${id}`);
    }),

    route('gemini.files.download', 'GET', new RegExp(`^(?:/download)?/${V}/files/([^/:]+):download$`), (ctx, [, id]) => {
      const file = getFile(ctx.state, id);
      if (!file) return notFound(`File files/${id}`);
      return { status: 200, raw: file.data, contentType: file.object.mimeType };
    }),

    route('gemini.files.delete', 'DELETE', new RegExp(`^/${V}/files/([^/:]+)$`), (ctx, [, id]) => {
      if (!getFile(ctx.state, id)) return notFound(`File files/${id}`);
      ctx.state.files.delete(`files/${id}`);
      return { status: 200, json: {} };
    }),
  ];
}

export function geminiAuthError(headers, url) {
  if (headers['x-goog-api-key'] || url.searchParams.get('key')) return null;
  return {
    status: 403,
    json: {
      error: {
        code: 403,
        message: "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API.",
        status: 'PERMISSION_DENIED',
      },
    },
  };
}

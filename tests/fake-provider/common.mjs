// Shared helpers for the fake LLM provider: canonical JSON and digests,
// deterministic "model" answers, per-request triggers, error envelopes,
// multipart parsing and the batch store bookkeeping.
//
// Only Node built-ins are used. Nothing here writes to disk or stdout.

import { createHash } from 'node:crypto';

export const PROVIDERS = ['openai', 'anthropic', 'gemini', 'groq', 'doubleword', 'azure', 'mistral', 'together', 'xai'];

/** Fixed timestamp (unix seconds) used in every generated answer body. */
export const FIXED_CREATED = 1763880000;

// ---------------------------------------------------------------------------
// Canonical JSON and digests

/** JSON with object keys sorted recursively (arrays keep their order). */
export function canonicalJson(value) {
  return JSON.stringify(sortKeys(value));
}

function sortKeys(value) {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (value && typeof value === 'object') {
    const out = {};
    for (const key of Object.keys(value).sort()) {
      if (value[key] !== undefined) out[key] = sortKeys(value[key]);
    }
    return out;
  }
  return value;
}

export function sha256Hex(data) {
  return createHash('sha256').update(data).digest('hex');
}

/** The body with the transport-only fields (`stream`, `stream_options`) removed. */
export function stripStreamFields(body) {
  if (!body || typeof body !== 'object' || Array.isArray(body)) return body;
  const { stream: _stream, stream_options: _streamOptions, ...rest } = body;
  return rest;
}

/**
 * Digest of a request body as the fake sees it: sha256 hex of the canonical
 * JSON of the body minus `stream`/`stream_options` (and minus `model` for
 * Gemini, where the model is part of the URL). Tests can compute the same
 * digest for the body they meant to send.
 */
export function bodyDigest(body, { provider } = {}) {
  let canonical = stripStreamFields(body);
  if (provider === 'gemini' && canonical && typeof canonical === 'object') {
    const { model: _model, ...rest } = canonical;
    canonical = rest;
  }
  return sha256Hex(canonicalJson(canonical ?? null));
}

/** Seed of an answer: a pure function of (provider, endpoint, model, body digest). */
export function answerSeed(provider, endpoint, model, digest) {
  return sha256Hex(`${provider}\n${endpoint}\n${model ?? ''}\n${digest}`);
}

/** Rough token estimate: a quarter of the character count, at least 1. */
export function estimateTokens(text) {
  return Math.max(1, Math.ceil(String(text ?? '').length / 4));
}

/** Deterministic float vector in [-1, 1] derived from a hex seed. */
export function deterministicVector(seedHex, index, dimensions) {
  const values = [];
  let block = '';
  for (let i = 0; values.length < dimensions; i++) {
    if (block.length < 8) block += sha256Hex(`${seedHex}:${index}:${i}`);
    const word = parseInt(block.slice(0, 8), 16);
    block = block.slice(8);
    // Round through float32 so base64 and float encodings agree exactly.
    values.push(Math.fround(word / 0xffffffff * 2 - 1));
  }
  return values;
}

export function float32Base64(values) {
  const buf = Buffer.alloc(values.length * 4);
  values.forEach((v, i) => buf.writeFloatLE(v, i * 4));
  return buf.toString('base64');
}

// ---------------------------------------------------------------------------
// Per-request triggers found in the last user text

/**
 * `FAIL:<status>` makes the request fail with that HTTP status (sync and
 * batch alike); `EXPIRE_LINE` makes the request expire inside a batch.
 */
export function parseTriggers(text) {
  const s = String(text ?? '');
  const fail = /FAIL:(\d{3})/.exec(s);
  const long = /LONG:(\d+)/.exec(s);
  return {
    failStatus: fail ? Number(fail[1]) : null,
    expireLine: s.includes('EXPIRE_LINE'),
    badJson: s.includes('BADJSON'),
    longChars: long ? Number(long[1]) : 0,
  };
}

/**
 * The `LONG:<n>` trigger's free-text answer: `echo: <text>` then a newline and `n` characters of
 * `<text> ` repeated (cut at `n`), so a long answer is still a pure function of the request and
 * a test can rebuild it. Non-ASCII in the text makes multi-byte characters run across the
 * reads of a streamed results file.
 */
export function longReply(text, n) {
  const unit = `${text} `;
  return `echo: ${text}\n${unit.repeat(Math.ceil(n / unit.length)).slice(0, n)}`;
}

// ---------------------------------------------------------------------------
// Structured output: a deterministic instance of a JSON Schema

/** The word every string after the first gets in a structured answer. */
export const STRUCTURED_WORD = 'fake';

/**
 * A value that matches `schema`, generated deterministically: the first string
 * (depth first, in property order) is `echo: <userText>`, every other string
 * {@link STRUCTURED_WORD}; number / integer 1 (or `minimum` when above 1);
 * boolean true; null null; arrays `max(1, minItems)` generated items; objects
 * every listed property; `enum` its first value, `const` its value; a type list
 * or `nullable` picks the first non-null type; `anyOf` / `oneOf` the first
 * non-null alternative, `allOf` merges its parts; local `$ref`s are followed.
 * Gemini's OpenAPI type names (`STRING`, `OBJECT`, ...) are accepted too.
 *
 * With `bad: true` (the `BADJSON` trigger) the value is made to violate the
 * schema: the root's first required property is dropped, or else the first
 * property (or the root) gets a value of the wrong type.
 *
 * With the `SKIP_OPTIONAL` trigger in `userText`, an object's properties that
 * are not in its `required` are left out, and required ones whose schema
 * accepts null are null: what a model leaves out when it may.
 */
export function structuredValue(schema, userText, { bad = false } = {}) {
  const text = String(userText ?? '');
  const st = { root: schema, echoed: false, userText: text, skipOptional: text.includes('SKIP_OPTIONAL') };
  const value = generate(schema, st, 0);
  return bad ? violate(resolveSchema(schema, schema), value) : value;
}

const MAX_DEPTH = 24;

function resolveSchema(schema, root, hops = 0) {
  if (!isPlainObject(schema) || typeof schema.$ref !== 'string' || hops > MAX_DEPTH) return schema;
  const ref = schema.$ref;
  if (!ref.startsWith('#')) return schema;
  let target = root;
  for (const raw of ref.slice(1).split('/').filter((p) => p !== '')) {
    const key = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    target = isPlainObject(target) || Array.isArray(target) ? target[key] : undefined;
  }
  return target === undefined ? schema : resolveSchema(target, root, hops + 1);
}

const isNullSchema = (s) => isPlainObject(s) && (s.type === 'null' || String(s.type).toUpperCase() === 'NULL');

/** Whether `schema` lets the value be null (type list, `nullable`, a null `anyOf` / `oneOf` branch). */
function acceptsNull(schema, root) {
  const s = resolveSchema(schema, root);
  if (!isPlainObject(s)) return false;
  if (isNullSchema(s) || s.nullable === true) return true;
  if (Array.isArray(s.type) && s.type.some((t) => String(t).toLowerCase() === 'null')) return true;
  return ['anyOf', 'oneOf'].some((k) => Array.isArray(s[k]) && s[k].some((alt) => isNullSchema(resolveSchema(alt, root))));
}

function schemaType(schema) {
  let type = schema.type;
  if (Array.isArray(type)) type = type.find((t) => String(t).toLowerCase() !== 'null') ?? 'null';
  if (typeof type === 'string') return type.toLowerCase();
  if (isPlainObject(schema.properties)) return 'object';
  if (schema.items !== undefined || Array.isArray(schema.prefixItems)) return 'array';
  return 'string';
}

function generate(rawSchema, st, depth) {
  if (depth > MAX_DEPTH) return null;
  const schema = resolveSchema(rawSchema, st.root);
  if (!isPlainObject(schema)) return nextString(st); // `true` / `{}`: anything goes
  if ('const' in schema) return structuredClone(schema.const);
  if (Array.isArray(schema.enum) && schema.enum.length > 0) return structuredClone(schema.enum[0]);
  for (const key of ['anyOf', 'oneOf']) {
    const alternatives = schema[key];
    if (Array.isArray(alternatives) && alternatives.length > 0 && schema.type === undefined) {
      const pick = alternatives.find((alt) => !isNullSchema(resolveSchema(alt, st.root))) ?? alternatives[0];
      return generate(pick, st, depth + 1);
    }
  }
  if (Array.isArray(schema.allOf) && schema.allOf.length > 0 && schema.type === undefined && !schema.properties) {
    const parts = schema.allOf.map((part) => generate(part, st, depth + 1));
    return parts.every(isPlainObject) ? Object.assign({}, ...parts) : parts[0];
  }
  switch (schemaType(schema)) {
    case 'number':
    case 'integer':
      return typeof schema.minimum === 'number' && schema.minimum > 1 ? Math.ceil(schema.minimum) : 1;
    case 'boolean':
      return true;
    case 'null':
      return null;
    case 'array': {
      if (schema.maxItems === 0) return [];
      const count = Math.max(1, Number.isInteger(schema.minItems) ? schema.minItems : 1);
      const prefix = Array.isArray(schema.prefixItems) ? schema.prefixItems : [];
      return Array.from({ length: Math.max(count, prefix.length) }, (_, i) =>
        generate(prefix[i] ?? (Array.isArray(schema.items) ? schema.items[i] : schema.items) ?? {}, st, depth + 1));
    }
    case 'object': {
      const out = {};
      const required = Array.isArray(schema.required) ? schema.required : [];
      for (const [key, sub] of Object.entries(isPlainObject(schema.properties) ? schema.properties : {})) {
        if (st.skipOptional && !required.includes(key)) continue;
        out[key] = st.skipOptional && acceptsNull(sub, st.root) ? null : generate(sub, st, depth + 1);
      }
      return out;
    }
    default:
      return nextString(st);
  }
}

function nextString(st) {
  if (st.echoed) return STRUCTURED_WORD;
  st.echoed = true;
  return `echo: ${st.userText}`;
}

function violate(schema, value) {
  const wrong = (v) => (typeof v === 'string' ? 12345 : 'BADJSON');
  if (isPlainObject(value) && isPlainObject(schema)) {
    const required = Array.isArray(schema.required) ? schema.required.filter((k) => k in value) : [];
    if (required.length > 0) {
      const { [required[0]]: _dropped, ...rest } = value;
      return rest;
    }
    const first = Object.keys(value)[0];
    if (first !== undefined) return { ...value, [first]: wrong(value[first]) };
    return 'BADJSON';
  }
  return wrong(value);
}

// ---------------------------------------------------------------------------
// Error envelopes

const OPENAI_ERROR_TYPES = {
  400: 'invalid_request_error', 401: 'invalid_request_error', 403: 'permission_denied',
  404: 'invalid_request_error', 409: 'invalid_request_error', 422: 'invalid_request_error',
  429: 'requests',
};

/** OpenAI sync error envelope `{error:{message,type,param,code}}`. */
export function openaiErrorBody(status, message, { param = null, code = null, type } = {}) {
  return {
    error: {
      message,
      type: type ?? OPENAI_ERROR_TYPES[status] ?? (status >= 500 ? 'server_error' : 'invalid_request_error'),
      param,
      code: code ?? (status === 429 ? 'rate_limit_exceeded' : null),
    },
  };
}

/** Anthropic `error.type` for an HTTP status (providers.md §3.4, inverted). */
export const ANTHROPIC_ERROR_TYPES = {
  400: 'invalid_request_error', 401: 'authentication_error', 402: 'billing_error',
  403: 'permission_error', 404: 'not_found_error', 413: 'request_too_large',
  429: 'rate_limit_error', 500: 'api_error', 504: 'timeout_error', 529: 'overloaded_error',
};

export function anthropicErrorType(status) {
  return ANTHROPIC_ERROR_TYPES[status] ?? (status >= 500 ? 'api_error' : 'invalid_request_error');
}

/** Anthropic error envelope `{type:"error",error:{type,message},request_id}`. */
export function anthropicErrorBody(status, message, requestId) {
  return {
    type: 'error',
    error: { type: anthropicErrorType(status), message },
    request_id: requestId ?? `req_fake${sha256Hex(`${status}:${message}`).slice(0, 20)}`,
  };
}

/** HTTP status -> [gRPC code, canonical name] (providers.md §4.4, inverted). */
const GRPC_BY_HTTP = {
  400: [3, 'INVALID_ARGUMENT'], 401: [16, 'UNAUTHENTICATED'], 403: [7, 'PERMISSION_DENIED'],
  404: [5, 'NOT_FOUND'], 409: [10, 'ABORTED'], 429: [8, 'RESOURCE_EXHAUSTED'],
  499: [1, 'CANCELLED'], 500: [13, 'INTERNAL'], 501: [12, 'UNIMPLEMENTED'],
  503: [14, 'UNAVAILABLE'], 504: [4, 'DEADLINE_EXCEEDED'],
};

export function grpcForHttp(status) {
  return GRPC_BY_HTTP[status] ?? (status >= 500 ? [13, 'INTERNAL'] : [3, 'INVALID_ARGUMENT']);
}

/** Gemini sync error envelope `{error:{code,message,status}}`. */
export function geminiErrorBody(status, message) {
  return { error: { code: status, message, status: grpcForHttp(status)[1] } };
}

export function errorBodyFor(provider, status, message) {
  if (provider === 'anthropic') return anthropicErrorBody(status, message);
  if (provider === 'gemini') return geminiErrorBody(status, message);
  return openaiErrorBody(status, message);
}

/** A handler result carrying a provider error envelope. */
export function errorResponse(provider, status, message, headers = {}) {
  return { status, json: errorBodyFor(provider, status, message), headers };
}

// ---------------------------------------------------------------------------
// Request/response helpers

export function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on('data', (chunk) => chunks.push(chunk));
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

/** Parse a JSON request body; returns `{ok:true,value}` or `{ok:false,message}`. */
export function parseJsonBody(buffer) {
  if (!buffer || buffer.length === 0) return { ok: true, value: undefined };
  try {
    return { ok: true, value: JSON.parse(buffer.toString('utf8')) };
  } catch (err) {
    return { ok: false, message: `Invalid JSON body: ${err.message}` };
  }
}

export function isPlainObject(value) {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

/** Headers of an IncomingMessage as a plain object with lower-case keys. */
export function headersObject(req) {
  return { ...req.headers };
}

export function parseJsonl(text) {
  const lines = [];
  String(text).split('\n').forEach((raw, index) => {
    if (raw.trim() === '') return;
    try {
      lines.push({ line: index + 1, value: JSON.parse(raw), error: null });
    } catch (err) {
      lines.push({ line: index + 1, value: null, error: err.message });
    }
  });
  return lines;
}

export function toJsonl(values) {
  return values.map((v) => JSON.stringify(v)).join('\n') + (values.length ? '\n' : '');
}

/** Results are returned in reversed order to prove callers join by id, not position. */
export function shuffleForOutput(values, config) {
  return config.shuffleResults === false ? [...values] : [...values].reverse();
}

/**
 * Minimal multipart/form-data parser.
 * Returns `{fields: {name: string}, files: {name: {filename, contentType, data}}}`.
 */
export function parseMultipart(buffer, contentType) {
  const match = /boundary=(?:"([^"]+)"|([^;]+))/i.exec(contentType ?? '');
  if (!match) throw new Error('multipart boundary missing');
  const delimiter = Buffer.from(`--${match[1] ?? match[2]}`);
  const fields = {};
  const files = {};
  let pos = buffer.indexOf(delimiter);
  while (pos !== -1) {
    pos += delimiter.length;
    if (buffer.slice(pos, pos + 2).toString() === '--') break; // closing delimiter
    if (buffer.slice(pos, pos + 2).toString() === '\r\n') pos += 2;
    const next = buffer.indexOf(delimiter, pos);
    if (next === -1) throw new Error('unterminated multipart body');
    const part = buffer.slice(pos, next - 2); // drop the CRLF before the delimiter
    const headerEnd = part.indexOf('\r\n\r\n');
    const headerText = part.slice(0, headerEnd).toString('utf8');
    const data = part.slice(headerEnd + 4);
    const headers = {};
    for (const line of headerText.split('\r\n')) {
      const colon = line.indexOf(':');
      if (colon > 0) headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
    }
    const disposition = headers['content-disposition'] ?? '';
    const name = /\bname="([^"]*)"/.exec(disposition)?.[1];
    const filename = /\bfilename="([^"]*)"/.exec(disposition)?.[1];
    if (name !== undefined) {
      if (filename !== undefined) {
        files[name] = { filename, contentType: headers['content-type'] ?? 'application/octet-stream', data };
      } else {
        fields[name] = data.toString('utf8');
      }
    }
    pos = next;
  }
  return { fields, files };
}

export const nowSeconds = () => Math.floor(Date.now() / 1000);
export const isoFromSeconds = (s) => (s == null ? null : new Date(s * 1000).toISOString());

// ---------------------------------------------------------------------------
// Shared state: counters, batch store, active-batch tracking

export function emptyCounters() {
  const perProvider = (extra = {}) => ({ ...Object.fromEntries(PROVIDERS.map((p) => [p, 0])), ...extra });
  return {
    requests: {},
    lastHeaders: {},
    headerNames: {},
    lastPaths: {},
    batchesCreated: perProvider(),
    batchSizes: [],
    syncCalls: 0,
    syncCallsByProvider: perProvider(),
    activeBatches: perProvider({ total: 0 }),
    maxConcurrentActiveBatches: perProvider({ total: 0 }),
    faultsTriggered: 0,
    enqueuedLimitRefusals: 0,
  };
}

/** Replace the contents of `target` with `source` in place (keeps live references valid). */
export function assignInPlace(target, source) {
  for (const key of Object.keys(target)) delete target[key];
  Object.assign(target, source);
}

/** Record a newly created batch in the store and the counters. */
export function registerBatch(state, record) {
  const { counters } = state;
  record.seq = state.nextSeq();
  record.terminal = false;
  state.batches.set(record.id, record);
  counters.batchesCreated[record.provider] += 1;
  counters.batchSizes.push({ provider: record.provider, id: record.id, size: record.requests.length });
  counters.activeBatches[record.provider] += 1;
  counters.activeBatches.total += 1;
  const max = counters.maxConcurrentActiveBatches;
  max[record.provider] = Math.max(max[record.provider], counters.activeBatches[record.provider]);
  max.total = Math.max(max.total, counters.activeBatches.total);
  record.fate = state.takeBatchFate(record.provider);
}

// ---------------------------------------------------------------------------
// Enqueued-token limit (`config.enqueuedTokenLimit`)

/** The credential a batch counts under: its API key (the fake's stand-in for an organization). */
export function orgKey(headers) {
  return headers.authorization ?? headers['x-api-key'] ?? headers['api-key'] ?? headers['x-goog-api-key'] ?? '';
}

/** Estimated input tokens of a batch's requests, as OpenAI counts enqueued tokens (chars / 4). */
export function batchTokens(requests) {
  return requests.reduce((sum, r) => sum + estimateTokens(JSON.stringify(r.body ?? null)), 0);
}

/**
 * Whether a new batch of `requests` (provider, credential, model) passes `config.enqueuedTokenLimit`
 * together with the live batches it already holds (not terminal, not refused). `null`: no limit.
 */
export function overEnqueuedLimit(state, { provider, headers, model, requests }) {
  const limit = state.config.enqueuedTokenLimit;
  if (limit == null) return false;
  const key = orgKey(headers);
  let live = 0;
  for (const b of state.batches.values()) {
    if (b.provider !== provider || b.terminal || b.refusedForTokens) continue;
    if (orgKey(b.headers) !== key || (b.model ?? b.requests[0]?.body?.model) !== model) continue;
    live += batchTokens(b.requests);
  }
  return live + batchTokens(requests) > limit;
}

/** The OpenAI / Azure refusal of a batch over the limit (`errors.data[]` of the failed batch). */
export function tokenLimitError(model, limit) {
  return {
    code: 'token_limit_exceeded',
    message: `Enqueued token limit reached for ${model} in organization org-fake. Limit: ${limit.toLocaleString('en-US')} enqueued tokens. Please try again once some in_progress batches have been completed.`,
    param: null,
    line: null,
  };
}

/** Mark a batch terminal (idempotent) and update the active-batch counters. */
export function markTerminal(state, record) {
  if (record.terminal) return;
  record.terminal = true;
  state.counters.activeBatches[record.provider] -= 1;
  state.counters.activeBatches.total -= 1;
}

/** Batches of one provider, newest first. */
export function batchesNewestFirst(state, provider) {
  return [...state.batches.values()]
    .filter((b) => b.provider === provider)
    .sort((a, b) => b.seq - a.seq);
}

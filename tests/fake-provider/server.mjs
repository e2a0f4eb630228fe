// Fake LLM provider HTTP server for tests: OpenAI, Anthropic and Gemini batch
// and sync APIs on one 127.0.0.1 origin. See README.md in this directory.
//
//   const fake = await startFakeProvider({ pollsUntilDone: 1 });
//   new OpenAI({ baseURL: `${fake.url}/v1`, apiKey: 'k' });
//   new Anthropic({ baseURL: fake.url, apiKey: 'k' });
//   new GoogleGenAI({ apiKey: 'k', httpOptions: { baseUrl: fake.url } });
//   ...
//   await fake.close();

import http from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  PROVIDERS,
  assignInPlace,
  emptyCounters,
  errorBodyFor,
  headersObject,
  parseJsonBody,
  readBody,
} from './common.mjs';
import { FLAVOURS, azureAuthError, openaiAuthError, openaiRoutes } from './openai.mjs';
import { anthropicAuthError, anthropicRoutes } from './anthropic.mjs';
import { geminiAuthError, geminiRoutes } from './gemini.mjs';
import { mistralAuthError, mistralRoutes } from './mistral.mjs';
import { togetherAuthError, togetherRoutes } from './together.mjs';
import { xaiAuthError, xaiRoutes } from './xai.mjs';

export { bodyDigest, canonicalJson } from './common.mjs';

const DEFAULT_CONFIG = {
  pollsUntilDone: 1, // GETs of a batch before it is terminal (0: terminal at creation)
  delayMs: 0, // artificial latency added to every response
  rejectStreamInBatch: true, // a batch line with `stream: true` fails
  shuffleResults: true, // OpenAI/Anthropic results come back in reversed order
  enqueuedTokenLimit: null, // per (API key, model): tokens (chars / 4) of live batches; null = none
  streamIntervalMs: 20, // between two server-sent events of a streamed chat completion
};

const FATES = ['failed', 'expired', 'cancelled', 'missing'];

// One entry per provider the fake speaks: its routes and its auth check. Providers added after
// the first three serve under their own path prefix (e.g. /mistral/v1/...).
const MODULES = [
  { provider: 'openai', routes: openaiRoutes, authError: openaiAuthError },
  { provider: 'anthropic', routes: anthropicRoutes, authError: anthropicAuthError },
  { provider: 'gemini', routes: geminiRoutes, authError: geminiAuthError },
  { provider: 'groq', routes: () => openaiRoutes(FLAVOURS.groq), authError: openaiAuthError },
  { provider: 'doubleword', routes: () => openaiRoutes(FLAVOURS.doubleword), authError: openaiAuthError },
  {
    provider: 'azure',
    routes: () => [...openaiRoutes(FLAVOURS.azureV1), ...openaiRoutes(FLAVOURS.azure)],
    authError: azureAuthError,
  },
  { provider: 'mistral', routes: mistralRoutes, authError: mistralAuthError },
  { provider: 'together', routes: togetherRoutes, authError: togetherAuthError },
  { provider: 'xai', routes: xaiRoutes, authError: xaiAuthError },
];
const AUTH = Object.fromEntries(MODULES.map((m) => [m.provider, m.authError]));

// ---------------------------------------------------------------------------
// Fault injection

function routeMatcher(pattern) {
  if (!pattern.includes('*')) return (name) => name === pattern;
  const re = new RegExp(`^${pattern.split('*').map((s) => s.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*')}$`);
  return (name) => re.test(name);
}

function createFaults() {
  const rules = [];
  const fates = Object.fromEntries(PROVIDERS.map((p) => [p, []]));
  return {
    /**
     * `{route, status, count=1, retryAfterSeconds?, body?}`: answer the next
     * `count` requests to `route` with that status and the provider's error
     * envelope (or `body`). `{route, drop:true, count=1, afterHandling=false}`:
     * destroy the socket, before or after really handling the request.
     * `route` may use `*` wildcards (e.g. `openai.*`).
     */
    add(spec) {
      if (!spec || typeof spec.route !== 'string') throw new TypeError('faults.add: route is required');
      if (!spec.drop && !spec.dropFirstLine && !Number.isInteger(spec.status)) {
        throw new TypeError('faults.add: status, drop or dropFirstLine is required');
      }
      const rule = {
        route: spec.route,
        matches: routeMatcher(spec.route),
        status: spec.status,
        remaining: spec.count ?? 1,
        retryAfterSeconds: spec.retryAfterSeconds,
        body: spec.body,
        drop: Boolean(spec.drop),
        afterHandling: Boolean(spec.afterHandling),
        dropFirstLine: Boolean(spec.dropFirstLine),
      };
      rules.push(rule);
      return rule;
    },
    /** The next batch created for `provider` ends in that terminal state. */
    nextBatchFate(provider, fate) {
      if (!PROVIDERS.includes(provider)) throw new TypeError(`faults.nextBatchFate: unknown provider ${provider}`);
      if (!FATES.includes(fate)) throw new TypeError(`faults.nextBatchFate: fate must be one of ${FATES.join(', ')}`);
      fates[provider].push(fate);
    },
    /** Remaining fault rules (a copy). */
    get pending() {
      return rules.map(({ matches: _m, ...rule }) => rule);
    },
    clear() {
      rules.length = 0;
      for (const p of PROVIDERS) fates[p].length = 0;
    },
    take(routeName) {
      const index = rules.findIndex((r) => r.remaining > 0 && r.matches(routeName));
      if (index === -1) return null;
      const rule = rules[index];
      rule.remaining -= 1;
      if (rule.remaining <= 0) rules.splice(index, 1);
      return rule;
    },
    takeFate(provider) {
      return fates[provider].shift() ?? null;
    },
  };
}

// ---------------------------------------------------------------------------
// Routing

const ROUTES = MODULES.flatMap((m) => m.routes());
const BY_PROVIDER = Object.fromEntries(PROVIDERS.map((p) => [p, ROUTES.filter((r) => r.provider === p)]));

/**
 * `/v1/...` is shared: OpenAI and Anthropic live there, and so does Gemini
 * when @google/genai uses its default API version `v1`. Requests that carry a
 * Google API key (or use a Google-only prefix) try the Gemini routes first.
 */
function selectRoute(ctx) {
  const p = ctx.pathname;
  const google = Boolean(ctx.headers['x-goog-api-key']) || ctx.url.searchParams.has('key') ||
    p.startsWith('/v1beta/') || p.startsWith('/upload/') || p.startsWith('/download/');
  const shared = google ? ['gemini', 'openai', 'anthropic'] : ['openai', 'anthropic', 'gemini'];
  // Prefixed providers first: their paths never collide with the shared /v1/ ones.
  const order = [...PROVIDERS.filter((p) => !shared.includes(p)), ...shared];
  for (const provider of order) {
    for (const route of BY_PROVIDER[provider]) {
      if (route.method !== ctx.method) continue;
      const match = route.pattern.exec(p);
      if (!match || (route.when && !route.when(ctx))) continue;
      return { route, params: match.slice(1) };
    }
  }
  return null;
}

/** Server-sent events, one `data:` event every `streamIntervalMs` (so a client sees them arrive
 * one by one). */
async function writeEvents(res, out, intervalMs) {
  res.writeHead(out.status, { ...out.headers, 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
  for (const data of out.events) {
    if (res.destroyed) return;
    res.write(`data: ${data}\n\n`);
    if (intervalMs > 0) await sleep(intervalMs);
  }
  res.end();
}

function writeResponse(res, out) {
  const headers = { ...out.headers };
  let payload;
  if (out.json !== undefined) {
    payload = Buffer.from(JSON.stringify(out.json));
    headers['content-type'] = 'application/json; charset=utf-8';
  } else {
    payload = out.raw ?? Buffer.alloc(0);
    if (out.contentType) headers['content-type'] = out.contentType;
  }
  headers['content-length'] = payload.length;
  res.writeHead(out.status, headers);
  res.end(payload);
}

function faultResponse(provider, rule) {
  const headers = rule.retryAfterSeconds !== undefined ? { 'retry-after': String(rule.retryAfterSeconds) } : {};
  if (rule.body === undefined) {
    return { status: rule.status, json: errorBodyFor(provider, rule.status, `Injected fault: HTTP ${rule.status}`), headers };
  }
  if (typeof rule.body === 'string' || Buffer.isBuffer(rule.body)) {
    return { status: rule.status, raw: Buffer.from(rule.body), contentType: 'text/plain', headers };
  }
  return { status: rule.status, json: rule.body, headers };
}

// ---------------------------------------------------------------------------
// CORS, for browser tests (tests/browser.test.mjs): a page on another 127.0.0.1 port calls this
// server the way a browser app calls a provider. Every answer allows any origin and exposes
// its headers (retry-after, x-request-id, x-goog-upload-url, …); an OPTIONS preflight gets a
// 204 that allows the requested method and headers (authorization, x-api-key,
// anthropic-version, x-stainless-*, …) and is neither routed nor counted.

const CORS_METHODS = 'GET, POST, PUT, PATCH, DELETE, OPTIONS';
const CORS_DEFAULT_HEADERS = [
  'authorization', 'content-type', 'x-api-key', 'anthropic-version', 'anthropic-beta',
  'anthropic-dangerous-direct-browser-access', 'x-goog-api-key', 'x-goog-api-client',
  'x-goog-upload-protocol', 'x-goog-upload-command', 'x-goog-upload-offset',
  'x-goog-upload-header-content-length', 'x-goog-upload-header-content-type',
  'openai-organization', 'openai-project', 'idempotency-key',
].join(', ');

/** Adds the CORS headers to `res`; answers (and returns true for) an OPTIONS preflight. */
function answerCors(req, res) {
  res.setHeader('access-control-allow-origin', '*');
  res.setHeader('access-control-expose-headers', '*');
  if (req.method !== 'OPTIONS') return false;
  // Reflect what the browser asks for (every x-stainless-* header too); `*` would not cover
  // `authorization`. A bare OPTIONS (no preflight headers) gets the usual SDK headers.
  const requested = req.headers['access-control-request-headers'];
  res.setHeader('access-control-allow-methods', CORS_METHODS);
  res.setHeader('access-control-allow-headers', requested || CORS_DEFAULT_HEADERS);
  res.setHeader('access-control-max-age', '600');
  if (req.headers['access-control-request-private-network'] === 'true') {
    res.setHeader('access-control-allow-private-network', 'true');
  }
  res.writeHead(204, { 'content-length': 0 });
  res.end();
  req.resume();
  return true;
}

// ---------------------------------------------------------------------------
// Server

export async function startFakeProvider(options = {}) {
  const initialConfig = { ...DEFAULT_CONFIG, ...options };
  const config = { ...initialConfig };
  const counters = emptyCounters();
  const faults = createFaults();
  let idSeq = 0;
  let orderSeq = 0;
  const state = {
    config,
    counters,
    batches: new Map(),
    files: new Map(),
    uploads: new Map(),
    /** Prompt-cache prefixes seen (prompt-cache.mjs). */
    promptCache: new Map(),
    nextId: () => String(++idSeq).padStart(6, '0'),
    nextSeq: () => ++orderSeq,
    takeBatchFate: (provider) => faults.takeFate(provider),
  };
  let baseUrl = '';

  async function handle(req, res) {
    const url = new URL(req.url, baseUrl);
    let pathname;
    try {
      pathname = decodeURIComponent(url.pathname);
    } catch {
      pathname = url.pathname;
    }
    const body = await readBody(req);
    const parsed = parseJsonBody(body);
    const ctx = {
      req, url, pathname, body, state, baseUrl,
      method: req.method,
      headers: headersObject(req),
      json: parsed.ok ? parsed.value : undefined,
      jsonError: parsed.ok ? null : parsed.message,
    };
    const selected = selectRoute(ctx);
    const name = selected?.route.name ?? 'unknown';
    counters.requests[name] = (counters.requests[name] ?? 0) + 1;
    counters.lastHeaders[name] = ctx.headers;
    for (const header of Object.keys(ctx.headers)) {
      counters.headerNames[header] = (counters.headerNames[header] ?? 0) + 1;
    }
    counters.lastPaths[name] = `${req.method} ${req.url}`;
    if (config.delayMs > 0) await sleep(config.delayMs);

    if (!selected) {
      return writeResponse(res, { status: 404, json: { error: { message: `Fake provider: no route for ${req.method} ${url.pathname}` } } });
    }
    const { route, params } = selected;

    const fault = faults.take(name);
    if (fault) counters.faultsTriggered += 1;
    if (fault?.drop && !fault.afterHandling) return req.socket.destroy();
    if (fault && !fault.drop && !fault.dropFirstLine) return writeResponse(res, faultResponse(route.provider, fault));

    let out = route.auth === false ? null : AUTH[route.provider](ctx.headers, url);
    if (!out) {
      if (route.sync) {
        counters.syncCalls += 1;
        counters.syncCallsByProvider[route.provider] += 1;
      }
      try {
        out = await route.handle(ctx, params);
      } catch (err) {
        out = { status: 500, json: errorBodyFor(route.provider, 500, `Fake provider internal error: ${err?.message}`) };
      }
    }
    if (fault?.drop) return req.socket.destroy(); // afterHandling: the action happened, the answer is lost
    if (fault?.dropFirstLine && out?.raw) {
      // A flaky download: the body as served lacks its first line.
      const cut = out.raw.indexOf(0x0a);
      out = { ...out, raw: cut === -1 ? Buffer.alloc(0) : out.raw.subarray(cut + 1) };
    }
    if (out?.events) return writeEvents(res, out, config.streamIntervalMs);
    writeResponse(res, out);
  }

  const server = http.createServer((req, res) => {
    if (answerCors(req, res)) return;
    handle(req, res).catch((err) => {
      if (!res.headersSent && !res.destroyed) {
        writeResponse(res, { status: 500, json: { error: { message: `Fake provider internal error: ${err?.message}` } } });
      }
    });
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const { port } = server.address();
  baseUrl = `http://127.0.0.1:${port}`;

  return {
    url: baseUrl,
    port,
    counters,
    faults,
    config,
    batches: state.batches,
    files: state.files,
    /** How many times each batch line's body was received, over every batch held: a request
     * submitted twice (in two batches, or twice in one) counts 2. */
    linesPerBody() {
      const counts = new Map();
      for (const record of state.batches.values()) {
        for (const request of record.requests ?? []) {
          const key = typeof request.body === 'string' ? request.body : JSON.stringify(request.body);
          counts.set(key, (counts.get(key) ?? 0) + 1);
        }
      }
      return counts;
    },
    /** Clear counters, batches, files, upload sessions and faults; restore the initial config. */
    reset() {
      assignInPlace(counters, emptyCounters());
      state.batches.clear();
      state.files.clear();
      state.uploads.clear();
      state.promptCache.clear();
      faults.clear();
      assignInPlace(config, initialConfig);
    },
    async close() {
      await new Promise((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
  };
}

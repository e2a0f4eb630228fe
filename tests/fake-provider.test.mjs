// Contract tests for the fake LLM provider (tests/fake-provider/): drive it
// with the official SDKs' own batch methods and check that the answers a
// batch gives are deep-equal to the sync answers for the same request.
//
// Run: node --test tests/fake-provider.test.mjs

import { after, before, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import OpenAI, { toFile } from 'openai';
import Anthropic from '@anthropic-ai/sdk';
import { ApiError, GoogleGenAI } from '@google/genai';
import { bodyDigest, startFakeProvider } from './fake-provider/server.mjs';

let fake;
before(async () => { fake = await startFakeProvider(); });
after(async () => { await fake.close(); });
beforeEach(() => fake.reset());

const openaiClient = () => new OpenAI({ baseURL: `${fake.url}/v1`, apiKey: 'sk-test-openai', maxRetries: 0 });
const anthropicClient = () => new Anthropic({ baseURL: fake.url, apiKey: 'sk-test-anthropic', maxRetries: 0 });
const geminiClient = (httpOptions = {}) => new GoogleGenAI({ apiKey: 'test-gemini-key', httpOptions: { baseUrl: fake.url, ...httpOptions } });

const parseJsonl = (text) => text.split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l));
/** Plain JSON view of an SDK object (drops class prototypes, undefined and `sdkHttpResponse`). */
const plain = (value) => {
  const { sdkHttpResponse: _ignored, ...rest } = JSON.parse(JSON.stringify(value));
  return rest;
};

async function pollUntil(fn, isDone, maxPolls = 10) {
  for (let i = 0; i < maxPolls; i++) {
    const value = await fn();
    if (isDone(value)) return value;
  }
  throw new Error('batch did not reach a terminal state');
}

// ---------------------------------------------------------------------------

describe('OpenAI', () => {
  const chat = (text) => ({ model: 'gpt-test-mini', messages: [{ role: 'user', content: text }], max_completion_tokens: 50 });

  async function uploadBatch(client, endpoint, lines) {
    const jsonl = lines.map((l) => JSON.stringify(l)).join('\n') + '\n';
    const file = await client.files.create({ file: await toFile(Buffer.from(jsonl), 'batch_in.jsonl'), purpose: 'batch' });
    return client.batches.create({ input_file_id: file.id, endpoint, completion_window: '24h', metadata: { job: 'contract' } });
  }

  test('chat completions batch: results keyed by custom_id equal the sync answers', async () => {
    const client = openaiClient();
    const bodies = { a: chat('first question'), b: chat('second question'), c: chat('please FAIL:400'), d: chat('EXPIRE_LINE now') };
    const lines = Object.entries(bodies).map(([id, body]) => ({ custom_id: id, method: 'POST', url: '/v1/chat/completions', body }));

    const created = await uploadBatch(client, '/v1/chat/completions', lines);
    assert.equal(created.status, 'validating');
    assert.equal(created.object, 'batch');
    assert.deepEqual(created.metadata, { job: 'contract' });
    assert.equal(fake.counters.lastHeaders['openai.batches.create'].authorization, 'Bearer sk-test-openai');

    const done = await pollUntil(() => client.batches.retrieve(created.id), (b) => b.status === 'completed');
    assert.deepEqual(done.request_counts, { total: 4, completed: 2, failed: 2 });
    assert.equal(done.model, 'gpt-test-mini');
    assert.ok(done.usage.input_tokens > 0 && done.usage.output_tokens > 0);

    const output = parseJsonl(await (await client.files.content(done.output_file_id)).text());
    const errors = parseJsonl(await (await client.files.content(done.error_file_id)).text());
    assert.deepEqual(output.map((l) => l.custom_id), ['b', 'a'], 'output is not in input order');

    for (const line of output) {
      const body = bodies[line.custom_id];
      const sync = await client.chat.completions.create(body);
      assert.equal(line.response.status_code, 200);
      assert.deepEqual(line.response.body, sync);
      assert.equal(sync.fake_body_sha256, bodyDigest(body));
      assert.equal(sync.choices[0].message.content, `echo: ${body.messages[0].content}`);
    }

    const byId = Object.fromEntries(errors.map((l) => [l.custom_id, l]));
    assert.equal(byId.c.response.status_code, 400);
    await assert.rejects(client.chat.completions.create(bodies.c), (err) => {
      assert.ok(err instanceof OpenAI.BadRequestError);
      assert.deepEqual(err.error, byId.c.response.body.error);
      return true;
    });
    assert.equal(byId.d.response, null);
    assert.equal(byId.d.error.code, 'batch_expired');

    const record = fake.batches.get(created.id);
    assert.deepEqual(record.requests.map((r) => r.customId), ['a', 'b', 'c', 'd']);
    assert.deepEqual(record.requests[0].body, bodies.a);
    assert.equal(fake.counters.requests['openai.files.create'], 1);
    assert.equal(fake.counters.requests['openai.batches.create'], 1);
    assert.equal(fake.counters.requests['openai.files.content'], 2);
    assert.equal(fake.counters.syncCalls, 3);
    assert.deepEqual(fake.counters.batchSizes, [{ provider: 'openai', id: created.id, size: 4 }]);
  });

  test('responses and embeddings batches match their sync endpoints; stream lines fail', async () => {
    const client = openaiClient();
    const resp = { model: 'gpt-test', input: [{ role: 'user', content: 'summarize this' }], max_output_tokens: 40 };
    const streamed = { model: 'gpt-test', input: 'streamed', stream: true };
    const batch1 = await uploadBatch(client, '/v1/responses', [
      { custom_id: 'r1', method: 'POST', url: '/v1/responses', body: resp },
      { custom_id: 'r2', method: 'POST', url: '/v1/responses', body: streamed },
    ]);
    const done1 = await pollUntil(() => client.batches.retrieve(batch1.id), (b) => b.status === 'completed');
    const [line] = parseJsonl(await (await client.files.content(done1.output_file_id)).text());
    const { output_text: outputText, ...sync } = await client.responses.create(resp);
    assert.equal(outputText, 'echo: summarize this');
    assert.deepEqual(line.response.body, sync);
    const [streamLine] = parseJsonl(await (await client.files.content(done1.error_file_id)).text());
    assert.equal(streamLine.custom_id, 'r2');
    assert.equal(streamLine.response.status_code, 400);

    const emb = { model: 'text-embedding-test', input: ['alpha', 'beta'], encoding_format: 'float', dimensions: 4 };
    const batch2 = await uploadBatch(client, '/v1/embeddings', [{ custom_id: 'e1', method: 'POST', url: '/v1/embeddings', body: emb }]);
    const done2 = await pollUntil(() => client.batches.retrieve(batch2.id), (b) => b.status === 'completed');
    const [embLine] = parseJsonl(await (await client.files.content(done2.output_file_id)).text());
    const syncEmb = await client.embeddings.create(emb);
    assert.deepEqual(embLine.response.body, syncEmb);
    assert.equal(syncEmb.data.length, 2);
    assert.equal(syncEmb.data[0].embedding.length, 4);
    assert.notDeepEqual(syncEmb.data[0].embedding, syncEmb.data[1].embedding);

    // The SDK's default (base64 on the wire) decodes to the same vectors.
    const { encoding_format: _ef, ...defaultEmb } = emb;
    const decoded = await client.embeddings.create(defaultEmb);
    assert.equal(fake.counters.lastHeaders['openai.embeddings']['content-type'], 'application/json');
    assert.equal(decoded.data[0].embedding.length, 4);
  });

  test('invalid input file fails the batch with errors.data; list is newest first', async () => {
    const client = openaiClient();
    const good = await uploadBatch(client, '/v1/chat/completions', [
      { custom_id: 'x', method: 'POST', url: '/v1/chat/completions', body: chat('ok') },
    ]);
    const bad = await uploadBatch(client, '/v1/chat/completions', [
      { custom_id: 'x', method: 'POST', url: '/v1/chat/completions', body: chat('one') },
      { custom_id: 'x', method: 'POST', url: '/v1/chat/completions', body: chat('dup') },
      { custom_id: 'y', method: 'POST', url: '/v1/embeddings', body: chat('wrong url') },
      { custom_id: 'z', method: 'POST', url: '/v1/chat/completions', body: { ...chat('other'), model: 'gpt-other' } },
    ]);
    const failed = await client.batches.retrieve(bad.id);
    assert.equal(failed.status, 'failed');
    assert.deepEqual(failed.errors.data.map((e) => [e.code, e.line]),
      [['duplicate_custom_id', 2], ['mismatched_endpoint', 3], ['mismatched_model', 4]]);

    const page = await client.batches.list({ limit: 1 });
    assert.deepEqual(page.data.map((b) => b.id), [bad.id]);
    assert.equal(page.has_more, true);
    const all = [];
    for await (const b of client.batches.list({ limit: 1 })) all.push(b.id);
    assert.deepEqual(all, [bad.id, good.id]);
    assert.equal(fake.counters.requests['openai.batches.list'], 3);

    await assert.rejects(client.batches.create({ input_file_id: 'file-missing', endpoint: '/v1/chat/completions', completion_window: '24h' }),
      OpenAI.BadRequestError);
  });

  test('lifecycle follows pollsUntilDone; cancel ends in cancelled', async () => {
    const client = openaiClient();
    fake.config.pollsUntilDone = 3;
    const b = await uploadBatch(client, '/v1/chat/completions', [{ custom_id: 'x', method: 'POST', url: '/v1/chat/completions', body: chat('slow') }]);
    const states = [b.status];
    for (let i = 0; i < 3; i++) states.push((await client.batches.retrieve(b.id)).status);
    assert.deepEqual(states, ['validating', 'in_progress', 'finalizing', 'completed']);
    assert.equal(fake.counters.requests['openai.batches.retrieve'], 3);

    const c = await uploadBatch(client, '/v1/chat/completions', [{ custom_id: 'x', method: 'POST', url: '/v1/chat/completions', body: chat('cancel me') }]);
    assert.equal((await client.batches.cancel(c.id)).status, 'cancelling');
    const cancelled = await client.batches.retrieve(c.id);
    assert.equal(cancelled.status, 'cancelled');
    assert.equal(cancelled.output_file_id, null);
    await assert.rejects(client.batches.cancel(c.id), OpenAI.BadRequestError);
  });

  test('auth is required', async () => {
    const res = await fetch(`${fake.url}/v1/batches`);
    assert.equal(res.status, 401);
    assert.equal((await res.json()).error.type, 'invalid_request_error');
  });
});

// ---------------------------------------------------------------------------

describe('Anthropic', () => {
  const msg = (text, model = 'claude-test') => ({ model, max_tokens: 64, messages: [{ role: 'user', content: text }] });

  test('message batch results equal messages.create answers', async () => {
    const client = anthropicClient();
    const params = { ok1: msg('hello there'), ok2: msg('second', 'claude-other'), bad: msg('FAIL:400 please'), exp: msg('EXPIRE_LINE') };
    const created = await client.messages.batches.create(
      { requests: Object.entries(params).map(([custom_id, p]) => ({ custom_id, params: p })) },
      { headers: { 'anthropic-beta': 'test-beta-2026' } },
    );
    assert.equal(created.processing_status, 'in_progress');
    assert.equal(created.results_url, null);
    assert.equal(created.request_counts.processing, 4);
    const record = fake.batches.get(created.id);
    assert.equal(record.headers['anthropic-beta'], 'test-beta-2026');
    assert.equal(record.headers['anthropic-version'], '2026-10-21');
    assert.equal(record.headers.authorization, 'Bearer sk-test-anthropic');

    const ended = await pollUntil(() => client.messages.batches.retrieve(created.id), (b) => b.processing_status === 'ended');
    assert.deepEqual(ended.request_counts, { processing: 0, succeeded: 2, errored: 1, canceled: 0, expired: 1 });
    assert.equal(ended.results_url, `${fake.url}/v1/messages/batches/${created.id}/results`);

    const results = [];
    for await (const r of await client.messages.batches.results(created.id)) results.push(r);
    assert.deepEqual(results.map((r) => r.custom_id), ['exp', 'bad', 'ok2', 'ok1'], 'results are not in input order');
    const byId = Object.fromEntries(results.map((r) => [r.custom_id, r.result]));

    for (const id of ['ok1', 'ok2']) {
      assert.equal(byId[id].type, 'succeeded');
      const sync = await client.messages.create(params[id]);
      assert.deepEqual(byId[id].message, sync);
      assert.equal(sync.fake_body_sha256, bodyDigest(params[id]));
      assert.equal(sync.content[0].text, `echo: ${params[id].messages[0].content}`);
    }
    assert.equal(byId.bad.type, 'errored');
    assert.equal(byId.bad.error.error.type, 'invalid_request_error');
    await assert.rejects(client.messages.create(params.bad), (err) => {
      assert.ok(err instanceof Anthropic.BadRequestError);
      assert.deepEqual(err.error, byId.bad.error);
      return true;
    });
    assert.deepEqual(byId.exp, { type: 'expired' });
    assert.equal(fake.counters.requests['anthropic.batches.results'], 1);
    assert.equal(fake.counters.syncCallsByProvider.anthropic, 3);
  });

  test('create validates custom_id; list, cancel and auth headers', async () => {
    const client = anthropicClient();
    await assert.rejects(
      client.messages.batches.create({ requests: [{ custom_id: 'bad id!', params: msg('x') }] }),
      (err) => err instanceof Anthropic.BadRequestError && err.error.error.type === 'invalid_request_error',
    );
    await assert.rejects(
      client.messages.batches.create({ requests: [{ custom_id: 'a', params: msg('x') }, { custom_id: 'a', params: msg('y') }] }),
      Anthropic.BadRequestError,
    );
    assert.equal(fake.counters.batchesCreated.anthropic, 0);

    const first = await client.messages.batches.create({ requests: [{ custom_id: 'a', params: msg('x') }] });
    const second = await client.messages.batches.create({ requests: [{ custom_id: 'a', params: msg('y') }] });
    const page = await client.messages.batches.list({ limit: 10 });
    assert.deepEqual(page.data.map((b) => b.id), [second.id, first.id]);
    assert.equal(page.first_id, second.id);

    assert.equal((await client.messages.batches.cancel(second.id)).processing_status, 'canceling');
    const cancelled = await client.messages.batches.retrieve(second.id);
    assert.equal(cancelled.processing_status, 'ended');
    assert.equal(cancelled.request_counts.canceled, 1);
    assert.ok(cancelled.cancel_initiated_at);

    // Classic x-api-key auth works too; anthropic-version is required.
    const headers = { 'content-type': 'application/json', 'x-api-key': 'k' };
    const res = await fetch(`${fake.url}/v1/messages`, { method: 'POST', headers: { ...headers, 'anthropic-version': '2023-06-01' }, body: JSON.stringify(msg('raw')) });
    assert.equal(res.status, 200);
    assert.equal((await res.json()).content[0].text, 'echo: raw');
    const noVersion = await fetch(`${fake.url}/v1/messages`, { method: 'POST', headers, body: JSON.stringify(msg('raw')) });
    assert.equal(noVersion.status, 400);
    const noKey = await fetch(`${fake.url}/v1/messages`, { method: 'POST', headers: { 'anthropic-version': '2023-06-01' }, body: '{}' });
    assert.equal(noKey.status, 401);
    assert.equal((await noKey.json()).error.type, 'authentication_error');
  });
});

// ---------------------------------------------------------------------------

describe('Gemini', () => {
  const MODEL = 'gemini-test-flash';
  const req = (text) => ({ contents: [{ role: 'user', parts: [{ text }] }] });

  test('inline batch: inlinedResponses equal generateContent answers', async () => {
    const ai = geminiClient();
    const items = [
      { ...req('why is the sky blue'), metadata: { key: 'k1' } },
      { ...req('FAIL:429 overload'), metadata: { key: 'k2' } },
      { ...req('tell me more'), metadata: { key: 'k3' } },
    ];
    const job = await ai.batches.create({ model: MODEL, src: items, config: { displayName: 'contract-job' } });
    assert.match(job.name, /^batches\//);
    assert.equal(job.state, 'JOB_STATE_PENDING');
    assert.equal(job.displayName, 'contract-job');
    // @google/genai 3.x defaults to API version v1 with a custom baseUrl.
    assert.equal(fake.counters.lastPaths['gemini.batches.create'], `POST /v1/models/${MODEL}:batchGenerateContent`);
    assert.equal(fake.counters.lastHeaders['gemini.batches.create']['x-goog-api-key'], 'test-gemini-key');

    const done = await pollUntil(() => ai.batches.get({ name: job.name }), (j) => j.state === 'JOB_STATE_SUCCEEDED');
    const responses = done.dest.inlinedResponses;
    assert.deepEqual(responses.map((r) => r.metadata.key), ['k1', 'k2', 'k3'], 'inline results keep input order');

    for (const i of [0, 2]) {
      const sync = await ai.models.generateContent({ model: MODEL, contents: items[i].contents });
      assert.deepEqual(plain(responses[i].response), plain(sync));
      assert.equal(sync.text, `echo: ${items[i].contents[0].parts[0].text}`);
      assert.equal(sync.responseId, bodyDigest({ contents: items[i].contents }, { provider: 'gemini' }));
    }
    assert.equal(responses[1].error.code, 8); // RESOURCE_EXHAUSTED
    await assert.rejects(ai.models.generateContent({ model: MODEL, contents: items[1].contents }), (err) => {
      assert.ok(err instanceof ApiError);
      assert.equal(err.status, 429);
      const body = JSON.parse(err.message);
      assert.equal(body.error.status, 'RESOURCE_EXHAUSTED');
      assert.equal(body.error.message, responses[1].error.message);
      return true;
    });

    // The raw Operation carries the wire state, string int64 stats and both output fields.
    const op = await (await fetch(`${fake.url}/v1beta/${job.name}?key=test-gemini-key`)).json();
    assert.equal(op.done, true);
    assert.equal(op.metadata.state, 'BATCH_STATE_SUCCEEDED');
    assert.deepEqual(op.metadata.batchStats, { requestCount: '3', successfulRequestCount: '2', failedRequestCount: '1', pendingRequestCount: '0' });
    assert.deepEqual(op.response.inlinedResponses, op.metadata.output.inlinedResponses);
    assert.equal(fake.counters.syncCallsByProvider.gemini, 3);
  });

  test('file batch: resumable upload, responsesFile download, list', async () => {
    const ai = geminiClient({ apiVersion: 'v1beta' });
    const lines = [{ key: 'f1', request: req('from a file') }, { key: 'f2', request: req('FAIL:400 bad') }];
    const jsonl = lines.map((l) => JSON.stringify(l)).join('\n') + '\n';
    const file = await ai.files.upload({ file: new Blob([jsonl]), config: { mimeType: 'application/jsonl', displayName: 'batch-input' } });
    assert.match(file.name, /^files\//);
    assert.equal(file.sizeBytes, String(Buffer.byteLength(jsonl)));
    assert.equal(fake.counters.lastHeaders['gemini.files.upload']['x-goog-upload-protocol'], 'resumable');
    assert.match(fake.counters.lastPaths['gemini.files.uploadChunk'], /^POST \/upload\/v1beta\/files\?upload_id=/);

    const job = await ai.batches.create({ model: MODEL, src: file.name });
    const inline = await ai.batches.create({ model: MODEL, src: [{ ...req('inline'), metadata: { key: 'i' } }] });
    const done = await pollUntil(() => ai.batches.get({ name: job.name }), (j) => j.state === 'JOB_STATE_SUCCEEDED');
    assert.match(done.dest.fileName, /^files\//);

    const dir = await mkdtemp(path.join(tmpdir(), 'fake-provider-'));
    try {
      const target = path.join(dir, 'out.jsonl');
      await ai.files.download({ file: done.dest.fileName, downloadPath: target });
      const out = parseJsonl(await readFile(target, 'utf8'));
      assert.deepEqual(out.map((l) => l.key), ['f1', 'f2']);
      const sync = await ai.models.generateContent({ model: MODEL, contents: lines[0].request.contents });
      // Downloaded lines are raw wire JSON; the SDK result is its parsed view of the same JSON.
      assert.deepEqual(out[0].response, plain(sync));
      assert.deepEqual(out[1].error, { code: 3, message: out[1].error.message, status: 'INVALID_ARGUMENT' });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
    const alt = await fetch(`${fake.url}/download/v1beta/${done.dest.fileName}:download?alt=media`, { headers: { 'x-goog-api-key': 'k' } });
    assert.equal(alt.status, 200);
    assert.equal(parseJsonl(await alt.text()).length, 2);

    const names = [];
    for await (const j of await ai.batches.list({ config: { pageSize: 1 } })) names.push(j.name);
    assert.deepEqual(names, [inline.name, job.name]);
    assert.equal(fake.counters.requests['gemini.batches.list'], 2);
  });

  test('cancel and auth', async () => {
    const ai = geminiClient();
    const job = await ai.batches.create({ model: MODEL, src: [{ ...req('x'), metadata: { key: 'x' } }] });
    await ai.batches.cancel({ name: job.name });
    const cancelled = await ai.batches.get({ name: job.name });
    assert.equal(cancelled.state, 'JOB_STATE_CANCELLED');
    assert.equal(cancelled.dest, undefined);

    const res = await fetch(`${fake.url}/v1beta/models/${MODEL}:generateContent`, { method: 'POST', body: JSON.stringify(req('x')) });
    assert.equal(res.status, 403);
    assert.equal((await res.json()).error.status, 'PERMISSION_DENIED');
  });
});

// ---------------------------------------------------------------------------

describe('faults and counters', () => {
  const auth = { authorization: 'Bearer k', 'content-type': 'application/json' };

  test('status faults answer with the provider envelope and retry-after', async () => {
    fake.faults.add({ route: 'openai.batches.create', status: 429, retryAfterSeconds: 7 });
    const res = await fetch(`${fake.url}/v1/batches`, { method: 'POST', headers: auth, body: '{}' });
    assert.equal(res.status, 429);
    assert.equal(res.headers.get('retry-after'), '7');
    assert.equal((await res.json()).error.code, 'rate_limit_exceeded');
    // The fault is used up: the next call is handled (and rejected for its empty body).
    const next = await fetch(`${fake.url}/v1/batches`, { method: 'POST', headers: auth, body: '{}' });
    assert.equal(next.status, 400);
    assert.equal(fake.counters.requests['openai.batches.create'], 2);
    assert.equal(fake.counters.faultsTriggered, 1);

    fake.faults.add({ route: 'anthropic.*', status: 529, count: 2 });
    await assert.rejects(anthropicClient().messages.batches.list(), (err) => {
      assert.equal(err.status, 529);
      assert.equal(err.error.error.type, 'overloaded_error');
      return true;
    });
    fake.faults.add({ route: 'gemini.generateContent', status: 503, body: { error: { code: 503, message: 'custom', status: 'UNAVAILABLE' } } });
    await assert.rejects(geminiClient().models.generateContent({ model: 'g', contents: 'x' }), (err) => err.status === 503 && /custom/.test(err.message));
    assert.equal(fake.faults.pending.length, 1); // one anthropic.* use left
  });

  test('dropped sockets: before handling nothing happens, after handling the batch exists', async () => {
    fake.faults.add({ route: 'openai.batches.list', drop: true });
    await assert.rejects(fetch(`${fake.url}/v1/batches`, { headers: auth }), TypeError);
    assert.equal((await fetch(`${fake.url}/v1/batches`, { headers: auth })).status, 200);

    const client = anthropicClient();
    fake.faults.add({ route: 'anthropic.batches.create', drop: true, afterHandling: true });
    await assert.rejects(
      client.messages.batches.create({ requests: [{ custom_id: 'a', params: { model: 'm', max_tokens: 5, messages: [{ role: 'user', content: 'x' }] } }] }),
      Anthropic.APIConnectionError,
    );
    const page = await client.messages.batches.list();
    assert.equal(page.data.length, 1);
    assert.equal(fake.counters.batchesCreated.anthropic, 1);
  });

  test('enqueuedTokenLimit: over the limit per (key, model), OpenAI fails the batch, Anthropic and Gemini answer 429', async () => {
    const oa = openaiClient();
    const body = (i) => ({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: `q${i} ${'x'.repeat(80)}` }] });
    const perRequest = Math.ceil(JSON.stringify(body(0)).length / 4);
    fake.config.enqueuedTokenLimit = perRequest * 3;
    const upload = async (from, n, client = oa) => {
      const lines = Array.from({ length: n }, (_, i) => JSON.stringify({ custom_id: `r${from + i}`, method: 'POST', url: '/v1/chat/completions', body: body(from + i) }));
      const file = await client.files.create({ file: await toFile(Buffer.from(lines.join('\n')), 'in.jsonl'), purpose: 'batch' });
      return client.batches.create({ input_file_id: file.id, endpoint: '/v1/chat/completions', completion_window: '24h' });
    };
    const first = await upload(0, 2);
    const second = await upload(2, 2); // 4 requests' tokens with the first: over
    assert.equal(second.status, 'validating');
    const refused = await oa.batches.retrieve(second.id);
    assert.equal(refused.status, 'failed');
    assert.equal(refused.errors.data[0].code, 'token_limit_exceeded');
    assert.match(refused.errors.data[0].message, new RegExp(`Limit: ${(perRequest * 3).toLocaleString('en-US')} enqueued tokens`));
    assert.equal(refused.output_file_id, null);
    // Another key has its own limit; the first batch, once ended, frees its tokens.
    const other = new OpenAI({ baseURL: `${fake.url}/v1`, apiKey: 'sk-other', maxRetries: 0 });
    assert.equal((await other.batches.retrieve((await upload(4, 2, other)).id)).status, 'completed');
    assert.equal((await oa.batches.retrieve(first.id)).status, 'completed');
    assert.equal((await oa.batches.retrieve((await upload(2, 2)).id)).status, 'completed');
    assert.equal(fake.counters.enqueuedLimitRefusals, 1);

    const an = anthropicClient();
    const msg = (i) => ({ custom_id: `a${i}`, params: { model: 'claude-haiku-4-5', max_tokens: 10, messages: [{ role: 'user', content: 'y'.repeat(perRequest * 16) }] } });
    await assert.rejects(an.messages.batches.create({ requests: [msg(0)] }), Anthropic.RateLimitError);
    const gemini = geminiClient();
    await assert.rejects(
      gemini.batches.create({ model: 'gemini-2.5-flash', src: [{ contents: [{ role: 'user', parts: [{ text: 'z'.repeat(perRequest * 16) }] }] }] }),
      (e) => e instanceof ApiError && e.status === 429 && /RESOURCE_EXHAUSTED/.test(e.message),
    );
    assert.equal(fake.counters.enqueuedLimitRefusals, 3);
  });

  test('nextBatchFate gives each terminal state', async () => {
    const oa = openaiClient();
    const upload = async (n) => {
      const lines = Array.from({ length: n }, (_, i) => JSON.stringify({
        custom_id: `r${i}`, method: 'POST', url: '/v1/chat/completions',
        body: { model: 'm', messages: [{ role: 'user', content: `q${i}` }] },
      }));
      const file = await oa.files.create({ file: await toFile(Buffer.from(lines.join('\n')), 'in.jsonl'), purpose: 'batch' });
      return oa.batches.create({ input_file_id: file.id, endpoint: '/v1/chat/completions', completion_window: '24h' });
    };
    fake.faults.nextBatchFate('openai', 'failed');
    fake.faults.nextBatchFate('openai', 'expired');
    const failed = await oa.batches.retrieve((await upload(2)).id);
    assert.equal(failed.status, 'failed');
    assert.equal(failed.errors.data[0].code, 'fake_batch_failure');
    const expired = await oa.batches.retrieve((await upload(4)).id);
    assert.equal(expired.status, 'expired');
    assert.deepEqual(expired.request_counts, { total: 4, completed: 2, failed: 2 });
    const expiredLines = parseJsonl(await (await oa.files.content(expired.error_file_id)).text());
    assert.deepEqual(expiredLines.map((l) => l.error.code), ['batch_expired', 'batch_expired']);
    assert.equal((await oa.batches.retrieve((await upload(1)).id)).status, 'completed'); // fates are used up

    const an = anthropicClient();
    const params = { model: 'm', max_tokens: 5, messages: [{ role: 'user', content: 'x' }] };
    // Expired: the first half ran, the rest expired.
    for (const [fate, types] of [['expired', ['succeeded', 'expired']], ['cancelled', ['canceled', 'canceled']], ['failed', ['errored', 'errored']]]) {
      fake.faults.nextBatchFate('anthropic', fate);
      const b = await an.messages.batches.create({ requests: [{ custom_id: 'a', params }, { custom_id: 'b', params }] });
      const ended = await an.messages.batches.retrieve(b.id);
      assert.equal(ended.processing_status, 'ended');
      for (const type of new Set(types)) assert.equal(ended.request_counts[type], types.filter((t) => t === type).length, fate);
      const byId = {};
      for await (const r of await an.messages.batches.results(b.id)) byId[r.custom_id] = r.result.type;
      assert.deepEqual(byId, { a: types[0], b: types[1] }, fate);
    }

    // Missing: the last request has no line, and the counts leave it out.
    fake.faults.nextBatchFate('openai', 'missing');
    const missing = await oa.batches.retrieve((await upload(3)).id);
    assert.equal(missing.status, 'completed');
    assert.deepEqual(missing.request_counts, { total: 3, completed: 2, failed: 0 });
    const missingLines = parseJsonl(await (await oa.files.content(missing.output_file_id)).text());
    assert.deepEqual(missingLines.map((l) => l.custom_id).sort(), ['r0', 'r1']);
    fake.faults.nextBatchFate('anthropic', 'missing');
    const am = await an.messages.batches.create({ requests: [{ custom_id: 'a', params }, { custom_id: 'b', params }] });
    const amEnded = await an.messages.batches.retrieve(am.id);
    assert.equal(amEnded.request_counts.succeeded, 1);
    const amIds = [];
    for await (const r of await an.messages.batches.results(am.id)) amIds.push(r.custom_id);
    assert.deepEqual(amIds, ['a']);

    // A flaky download: served once without its first line, then whole.
    fake.faults.add({ route: 'openai.files.content', dropFirstLine: true });
    const flaky = parseJsonl(await (await oa.files.content(missing.output_file_id)).text());
    assert.equal(flaky.length, 1);
    assert.equal(parseJsonl(await (await oa.files.content(missing.output_file_id)).text()).length, 2);

    const ai = geminiClient();
    for (const [fate, state] of [['failed', 'JOB_STATE_FAILED'], ['expired', 'JOB_STATE_EXPIRED'], ['cancelled', 'JOB_STATE_CANCELLED']]) {
      fake.faults.nextBatchFate('gemini', fate);
      const job = await ai.batches.create({ model: 'g', src: [{ contents: 'x', metadata: { key: 'a' } }] });
      const got = await ai.batches.get({ name: job.name });
      assert.equal(got.state, state);
      assert.equal(got.dest, undefined);
    }
    const failedRecord = [...fake.batches.values()].at(-3); // the gemini 'failed' batch
    assert.deepEqual(failedRecord.error, { code: 13, message: 'The batch failed (injected fault).' });
  });

  test('active-batch concurrency, sync counters, delay and reset', async () => {
    const an = anthropicClient();
    const params = { model: 'm', max_tokens: 5, messages: [{ role: 'user', content: 'x' }] };
    const a = await an.messages.batches.create({ requests: [{ custom_id: 'a', params }] });
    const b = await an.messages.batches.create({ requests: [{ custom_id: 'a', params }, { custom_id: 'b', params }] });
    await geminiClient().batches.create({ model: 'g', src: [{ contents: 'x' }] });
    // Only the providers this test uses (the fake knows more).
    const three = ({ openai, anthropic, gemini, total }) => ({ openai, anthropic, gemini, total });
    assert.deepEqual(three(fake.counters.activeBatches), { openai: 0, anthropic: 2, gemini: 1, total: 3 });
    await an.messages.batches.retrieve(a.id);
    await an.messages.batches.retrieve(b.id);
    assert.deepEqual(three(fake.counters.activeBatches), { openai: 0, anthropic: 0, gemini: 1, total: 1 });
    assert.deepEqual(three(fake.counters.maxConcurrentActiveBatches), { openai: 0, anthropic: 2, gemini: 1, total: 3 });
    assert.deepEqual(fake.counters.batchSizes.map((s) => s.size), [1, 2, 1]);

    fake.config.delayMs = 60;
    const start = Date.now();
    await an.messages.create(params);
    assert.ok(Date.now() - start >= 55);
    assert.equal(fake.counters.syncCalls, 1);
    await an.messages.create(params, { headers: { 'X-Probe-Header': 'v' } });
    assert.equal(fake.counters.headerNames['x-probe-header'], 1, 'every received header name is counted');
    const anthropicRequests = Object.entries(fake.counters.requests).filter(([route]) => route.startsWith('anthropic.'));
    assert.equal(fake.counters.headerNames['anthropic-version'], anthropicRequests.reduce((sum, [, n]) => sum + n, 0));

    const counters = fake.counters;
    fake.reset();
    assert.equal(fake.counters, counters, 'counters stay the same live object');
    assert.equal(counters.syncCalls, 0);
    assert.deepEqual(counters.requests, {});
    assert.equal(fake.batches.size, 0);
    assert.equal(fake.config.delayMs, 0);
  });
});

describe('prompt caching', () => {
  const LONG = 'Shared instructions for every request in this run. '.repeat(120);

  test('Anthropic: the first request with a cache_control prefix writes it, later ones read it; reset() forgets', async () => {
    const client = anthropicClient();
    const ask = (question, ttl) => client.messages.create({
      model: 'claude-haiku-4-5',
      max_tokens: 20,
      system: [{ type: 'text', text: LONG, cache_control: { type: 'ephemeral', ...(ttl ? { ttl } : {}) } }],
      messages: [{ role: 'user', content: question }],
    });
    const first = (await ask('one')).usage;
    const second = (await ask('two')).usage;
    assert.ok(first.cache_creation_input_tokens >= 1024, JSON.stringify(first));
    assert.equal(first.cache_read_input_tokens, 0);
    assert.equal(first.cache_creation.ephemeral_5m_input_tokens, first.cache_creation_input_tokens);
    assert.equal(second.cache_creation_input_tokens, 0);
    assert.equal(second.cache_read_input_tokens, first.cache_creation_input_tokens);
    assert.ok(second.input_tokens > 0, 'the question after the breakpoint is plain input');
    // Another model has its own cache; a short prefix is not cached; reset() forgets.
    const other = await client.messages.create({ model: 'claude-sonnet-4-6', max_tokens: 5, system: [{ type: 'text', text: LONG, cache_control: { type: 'ephemeral' } }], messages: [{ role: 'user', content: 'x' }] });
    assert.ok(other.usage.cache_creation_input_tokens > 0);
    const short = await client.messages.create({ model: 'claude-haiku-4-5', max_tokens: 5, system: [{ type: 'text', text: 'short', cache_control: { type: 'ephemeral' } }], messages: [{ role: 'user', content: 'x' }] });
    assert.equal(short.usage.cache_creation_input_tokens, 0);
    fake.reset();
    const hour = (await ask('three', '1h')).usage;
    assert.equal(hour.cache_creation.ephemeral_1h_input_tokens, hour.cache_creation_input_tokens);
    assert.ok(hour.cache_creation_input_tokens > 0);
  });

  test('OpenAI: a shared prefix of 1024+ tokens is reported as cached tokens from the second request on', async () => {
    const client = openaiClient();
    const ask = (question) => client.chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'system', content: LONG }, { role: 'user', content: question }],
    });
    const first = (await ask('one')).usage;
    const second = (await ask('two')).usage;
    assert.equal(first.prompt_tokens_details.cached_tokens, 0);
    const cached = second.prompt_tokens_details.cached_tokens;
    assert.ok(cached >= 1024 && cached % 128 === 0 && cached <= second.prompt_tokens, JSON.stringify(second));
    // No shared prefix, no cache hit.
    const alone = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: LONG }] });
    assert.equal(alone.usage.prompt_tokens_details.cached_tokens, 0);
  });
});

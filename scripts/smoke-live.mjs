#!/usr/bin/env node
// `npm run smoke:live`: the opt-in live check, for maintainers. With real API keys in the
// environment, a handful of requests per provider go through the real batch APIs (a few cents),
// and the same requests through the fake provider (tests/fake-provider/); the report says, per
// provider and request, what matched the fake and what did not: the HTTP status, and the shape
// of the answer (each JSON path and its type). Providers without a key are skipped with a line
// saying so. Not part of `npm test` or CI. Needs `npm run build` first.
//
// Environment: OPENAI_API_KEY, ANTHROPIC_API_KEY, GEMINI_API_KEY (and their *_BASE_URL),
// SMOKE_TIMEOUT_MIN (default 60: batches usually end within minutes, the providers allow 24 h),
// SMOKE_POLL_MS (default 30000).
import { batchify } from "../dist/index.js";
import { startFakeProvider } from "../tests/fake-provider/server.mjs";

const TIMEOUT_MIN = Number(process.env.SMOKE_TIMEOUT_MIN ?? 60);
const POLL_MS = Number(process.env.SMOKE_POLL_MS ?? 30_000);

// Each request as a path under the provider's base URL, its body, and how the key is sent.
const PROVIDERS = [
  {
    name: "openai",
    keyEnv: "OPENAI_API_KEY",
    baseUrl: process.env.OPENAI_BASE_URL ?? "https://api.openai.com/v1",
    fakeBase: (url) => `${url}/v1`,
    headers: (key) => ({ authorization: `Bearer ${key}` }),
    requests: [
      { name: "chat", path: "/chat/completions", body: { model: "gpt-4o-mini", max_tokens: 16, messages: [{ role: "user", content: "Say OK." }] } },
      { name: "embedding", path: "/embeddings", body: { model: "text-embedding-3-small", input: "batchling smoke" } },
      { name: "bad request", path: "/chat/completions", body: { model: "gpt-4o-mini", max_tokens: -1, messages: [{ role: "user", content: "x" }] } },
    ],
  },
  {
    name: "anthropic",
    keyEnv: "ANTHROPIC_API_KEY",
    baseUrl: process.env.ANTHROPIC_BASE_URL ?? "https://api.anthropic.com",
    fakeBase: (url) => url,
    headers: (key) => ({ "x-api-key": key, "anthropic-version": "2023-06-01" }),
    requests: [
      { name: "message", path: "/v1/messages", body: { model: "claude-3-5-haiku-latest", max_tokens: 16, messages: [{ role: "user", content: "Say OK." }] } },
      { name: "bad request", path: "/v1/messages", body: { model: "claude-3-5-haiku-latest", max_tokens: 16, messages: [] } },
    ],
  },
  {
    name: "gemini",
    keyEnv: "GEMINI_API_KEY",
    baseUrl: process.env.GEMINI_BASE_URL ?? "https://generativelanguage.googleapis.com/v1beta",
    fakeBase: (url) => `${url}/v1beta`,
    headers: (key) => ({ "x-goog-api-key": key }),
    requests: [
      { name: "generateContent", path: "/models/gemini-2.0-flash:generateContent", body: { contents: [{ role: "user", parts: [{ text: "Say OK." }] }], generationConfig: { maxOutputTokens: 16 } } },
    ],
  },
];

/** Every JSON path of a value with its type: `choices[].message.content: string`. */
function shape(value, path = "", out = new Set()) {
  if (Array.isArray(value)) {
    out.add(`${path || "."}: array`);
    for (const item of value) shape(item, `${path}[]`, out);
  } else if (value !== null && typeof value === "object") {
    out.add(`${path || "."}: object`);
    for (const [k, v] of Object.entries(value)) shape(v, `${path}.${k}`, out);
  } else {
    out.add(`${path || "."}: ${value === null ? "null" : typeof value}`);
  }
  return out;
}

/** The provider's requests through batchify at `base`; each answer's status and JSON body. */
async function runThrough(provider, base, key, onEvent) {
  const ctx = batchify({ batchWindowMs: 1_000, pollIntervalMs: base.startsWith("http://127.0.0.1") ? 20 : POLL_MS, cache: false, onEvent });
  const timeout = AbortSignal.timeout(TIMEOUT_MIN * 60_000);
  try {
    return await ctx.run(() =>
      Promise.all(provider.requests.map(async (r) => {
        const response = await fetch(base + r.path, {
          method: "POST",
          headers: { "content-type": "application/json", ...provider.headers(key) },
          body: JSON.stringify(r.body),
          signal: timeout,
        });
        const text = await response.text();
        let body;
        try {
          body = JSON.parse(text);
        } catch {
          body = text;
        }
        return { status: response.status, body };
      })),
    );
  } finally {
    await ctx.close().catch(() => {});
  }
}

function compare(real, fake) {
  const a = shape(real.body);
  const b = shape(fake.body);
  return {
    statusMatched: real.status === fake.status,
    onlyReal: [...a].filter((p) => !b.has(p)),
    onlyFake: [...b].filter((p) => !a.has(p)),
  };
}

const log = (line) => process.stdout.write(line + "\n");

async function main() {
  log("batchling smoke:live: real batch APIs against the fake provider");
  const fake = await startFakeProvider({ pollsUntilDone: 1 });
  let ran = 0;
  let mismatches = 0;
  try {
    for (const provider of PROVIDERS) {
      const key = process.env[provider.keyEnv];
      if (!key) {
        log(`${provider.name}: skipped (no ${provider.keyEnv} in the environment)`);
        continue;
      }
      ran++;
      log(`${provider.name}: ${provider.requests.length} requests through ${provider.baseUrl} (as batches)…`);
      const progress = (event) => {
        if (event.kind === "batchSubmitted") log(`  submitted ${event.batchId}`);
        if (event.kind === "batchPolled") log(`  ${event.batchId}: ${event.state} ${event.completed + event.failed}/${event.total}${event.etaMs ? `, about ${Math.ceil(event.etaMs / 60_000)} min left` : ""}`);
        if (event.kind === "retry") log(`  retry ${event.attempt}/${event.maxAttempts} of ${event.step} in ${Math.round(event.delayMs / 1000)} s: ${event.reason}`);
      };
      let real;
      try {
        real = await runThrough(provider, provider.baseUrl, key, progress);
      } catch (error) {
        mismatches++;
        log(`  FAILED: ${error instanceof Error ? error.message : String(error)}`);
        continue;
      }
      const simulated = await runThrough(provider, provider.fakeBase(fake.url), "sk-fake", () => {});
      provider.requests.forEach((r, i) => {
        const c = compare(real[i], simulated[i]);
        const same = c.statusMatched && c.onlyReal.length === 0 && c.onlyFake.length === 0;
        if (!same) mismatches++;
        log(`  ${r.name}: status ${real[i].status} (fake ${simulated[i].status}) ${c.statusMatched ? "matched" : "DIFFERS"}; shape ${c.onlyReal.length + c.onlyFake.length === 0 ? "matched" : "DIFFERS"}`);
        for (const p of c.onlyReal) log(`    only real: ${p}`);
        for (const p of c.onlyFake) log(`    only fake: ${p}`);
      });
    }
  } finally {
    await fake.close();
  }
  if (ran === 0) {
    log("no keys: nothing was sent (set OPENAI_API_KEY, ANTHROPIC_API_KEY or GEMINI_API_KEY to run the live check)");
    return 0;
  }
  log(mismatches === 0 ? "everything matched the fake" : `${mismatches} ${mismatches === 1 ? "difference" : "differences"} from the fake (see above)`);
  return mismatches === 0 ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (error) => {
    process.stderr.write(`smoke:live failed: ${error instanceof Error ? error.stack : String(error)}\n`);
    process.exit(1);
  },
);

// The page's script: batchify() hands its ctx.fetch to plain fetch calls (or to an SDK:
// `new OpenAI({ fetch: ctx.fetch, dangerouslyAllowBrowser: true })`).
import { ready, batchify } from "batchling";

const $ = (id) => document.getElementById(id);
const log = (line) => ($("log").textContent += `${line}\n`);

/** localStorage as batchling's cache storage: any async get / put / delete store fits. */
const localStorageKv = {
  get: async (key) => localStorage.getItem(key),
  put: async (key, value) => localStorage.setItem(key, value),
  delete: async (key) => localStorage.removeItem(key),
};

// Query-string presets, e.g. ?baseUrl=http://127.0.0.1:8787/v1&apiKey=…&dryRun=0&pollMs=1000
const params = new URL(location.href).searchParams;
for (const id of ["baseUrl", "apiKey", "model"]) if (params.has(id)) $(id).value = params.get(id);
if (params.has("dryRun")) $("dryRun").checked = params.get("dryRun") !== "0";
const pollIntervalMs = Number(params.get("pollMs") ?? 30_000); // provider batches take minutes to hours

async function ask(fetchFn, baseUrl, apiKey, model, content) {
  const response = await fetchFn(`${baseUrl}/chat/completions`, {
    method: "POST",
    headers: { authorization: `Bearer ${apiKey}`, "content-type": "application/json" },
    body: JSON.stringify({ model, messages: [{ role: "user", content }] }),
  });
  const body = await response.json();
  if (!response.ok) throw new Error(body.error?.message ?? `HTTP ${response.status}`);
  return body.choices[0].message.content;
}

async function run(event) {
  event.preventDefault();
  const prompts = $("prompts").value.split("\n").map((p) => p.trim()).filter(Boolean);
  const dryRun = $("dryRun").checked;
  $("run").disabled = true;
  $("status").textContent = "running…";
  $("answers").replaceChildren();
  log(`— run: ${prompts.length} prompts${dryRun ? " (dry run)" : ""} —`);
  const ctx = batchify({
    batchSize: 100,
    batchWindowMs: 200,
    pollIntervalMs,
    dryRun,
    cache: dryRun ? false : { storage: localStorageKv, prefix: "batchling-example" },
    onEvent: (e) => log(`${e.kind}${e.batchId ? ` ${e.batchId}` : ""}${e.state ? ` (${e.state})` : ""}`),
  });
  const items = prompts.map(() => $("answers").appendChild(document.createElement("li")));
  const settled = await Promise.allSettled(
    prompts.map(async (prompt, i) => {
      items[i].textContent = `${prompt} → …`;
      const answer = await ask(ctx.fetch, $("baseUrl").value, $("apiKey").value, $("model").value, prompt);
      items[i].textContent = `${prompt} → ${answer}`;
      return answer;
    }),
  );
  settled.forEach((s, i) => s.status === "rejected" && (items[i].textContent = `${prompts[i]} → error: ${s.reason.message}`));
  const report = await ctx.close();
  for (const q of report.queues) {
    const usd = (x) => (x == null ? "?" : `$${x.toFixed(4)}`);
    log(`${q.provider} ${q.model}: ${q.requests} requests in ${q.batches} batch(es), ${q.cacheHits} from cache; ` +
      `estimated ${usd(q.estimatedBatchUsd)} batched vs ${usd(q.estimatedSyncUsd)} one by one`);
  }
  $("status").textContent = "done";
  $("run").disabled = false;
}

await ready; // loads the .wasm engine (next to the glue) once
$("form").addEventListener("submit", run);
$("run").disabled = false;
$("status").textContent = "ready";

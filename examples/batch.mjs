// The Batch job builder: a few LLM jobs run through a provider's batch API (about half the price
// of sync calls), with a cost limit, progress, status and results.
//
//   node examples/batch.mjs --fake                  # offline: the repo's fake provider on 127.0.0.1
//   OPENAI_API_KEY=sk-... node examples/batch.mjs   # real OpenAI batch (can take minutes to hours)
//
// With --fake the example starts tests/fake-provider/server.mjs (a local server that speaks the
// OpenAI batch API and answers "echo: <prompt>"; structured answers are generated from the
// schema) and points the `providers` option at it, so it runs without a key or network. The
// state file and results then go to a temp dir that is removed at the end.
//
// Without --fake it needs OPENAI_API_KEY (the model is gpt-4o-mini; OPENAI_BASE_URL is honoured).
// The state and results go to ./.batchling/example/: if you stop it (Ctrl-C), running it again
// resumes the batch already submitted instead of paying for it twice.
//
// Uses dist/ through the package's own name: run `npm run build` (or `npx tsup`) first.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Batch } from "batchling";

const fakeMode = process.argv.includes("--fake");
if (!fakeMode && !process.env.OPENAI_API_KEY) {
  console.log(
    "examples/batch.mjs needs an OpenAI key to submit a real batch:\n" +
      "  OPENAI_API_KEY=sk-... node examples/batch.mjs\n" +
      "or run it offline against the repo's fake provider:\n" +
      "  node examples/batch.mjs --fake",
  );
  process.exit(0);
}

// --fake: the fake provider, in this process. Each batch stays in progress for two polls.
let fake;
if (fakeMode) {
  const { startFakeProvider } = await import("../tests/fake-provider/server.mjs");
  fake = await startFakeProvider({ pollsUntilDone: 3 });
}

// A text file for the file job (written to a temp dir; removed at the end).
const tmp = mkdtempSync(join(tmpdir(), "batchling-example-"));
const notes = join(tmp, "meeting-notes.txt");
writeFileSync(
  notes,
  "Weekly sync, 12 March.\n- Launch moved to 2 April: the payment provider needs one more week.\n" +
    "- Dana owns the migration checklist.\n- Next sync: 19 March.\n",
);

const dir = fakeMode ? tmp : join(".batchling", "example");
const batch = new Batch({
  stateFile: join(dir, "state.json"),
  resultsDir: join(dir, "results"),
  maxConcurrent: 5,
  itemsPerBatch: 1000,
  // A real batch takes minutes at least: poll every 30 s. The fake answers at once.
  pollIntervalMs: fakeMode ? 20 : 30_000,
  ...(fakeMode ? { providers: { openai: { apiKey: "sk-fake", baseURL: `${fake.url}/v1` } } } : {}),
});

// A JSON Schema for structured output, as you would write it (a zod 4 schema works too). For
// OpenAI the core sends its strict form (objects closed, `stars` required but nullable) and drops
// a null `stars` from the answer again: an omitted optional field is simply absent.
const reviewSchema = {
  type: "object",
  properties: {
    sentiment: { type: "string", enum: ["positive", "negative", "mixed"] },
    summary: { type: "string" },
    stars: { type: "integer", minimum: 1, maximum: 5 },
  },
  required: ["sentiment", "summary"],
};

batch
  .defaults({ model: "gpt-4o-mini", temperature: 0, maxTokens: 200 })
  .addCostLimit({ usd: 0.05 }) // no batch whose estimate would pass 5 cents is submitted
  .addJob({ id: "capital", messages: [{ role: "user", content: "What is the capital of Australia? One word." }] })
  .addJob({
    id: "haiku",
    system: "You write haiku.",
    messages: [{ role: "user", content: "A haiku about batch processing." }],
  })
  .addJob({ id: "notes", file: notes, prompt: "When is the launch now, and why did it move? One sentence." })
  .addJob({
    id: "review",
    messages: [{ role: "user", content: "Review: 'Fast delivery, but the lid cracked after a week.'" }],
    responseModel: reviewSchema,
  });

// One progress line from the run's statistics, rewritten in place on a terminal (printed when it
// changes otherwise). Lifecycle events (batch submitted, polled, ...) are on batch.onEvent(fn).
let lastLine = "";
batch.onProgress((stats) => {
  const line = `jobs ${stats.completed}/${stats.total} done (${stats.failed} failed), batches ${stats.batchesCompleted}/${stats.batches} ended, $${stats.costUsd.toFixed(6)}`;
  if (line === lastLine) return;
  lastLine = line;
  if (process.stdout.isTTY) process.stdout.write(`\r${line}\x1b[K`);
  else console.log(line);
});

try {
  const run = batch.run();
  await run.wait();
  if (process.stdout.isTTY) process.stdout.write("\n");

  run.status({ print: true });
  const results = run.results(); // by job id: { jobId, response, parsedResponse, citations, inputTokens, outputTokens, costUsd, error }
  const oneLine = (text) => (text.length > 120 ? `${text.slice(0, 117)}...` : text).replace(/\s*\n\s*/g, " | ");
  for (const id of ["capital", "haiku", "notes", "review"]) {
    const result = results[id];
    const answer = !result.ok
      ? `ERROR ${result.error}`
      : result.parsedResponse !== null
        ? JSON.stringify(result.parsedResponse) // the structured answer, checked against the schema
        : oneLine(result.response ?? "");
    const cost = result.costUsd === null ? "" : `, $${result.costUsd.toFixed(6)}`;
    console.log(`- ${id}: ${answer} (tokens in ${result.inputTokens ?? "?"} / out ${result.outputTokens ?? "?"}${cost})`);
  }
  console.log(
    fakeMode
      ? "(--fake: the state file and results were in a temp dir, removed now)"
      : `results on disk: ${join(dir, "results")} (one <id>.json per job, plus results.jsonl)`,
  );
} finally {
  await fake?.close();
  rmSync(tmp, { recursive: true, force: true });
}

// `batchling batches list|status|cancel [batchId] [--cache-path P | --state-file S]`: the provider
// batches a cache journal (or a Batch run's state file) says are live, their progress at the
// provider, and cancelling one. Which batches are live, the provider calls and the record a
// cancel leaves are the core's (core/src/host/batches.rs); this file reads the journal, sends
// the calls with the API key from the environment, and appends the record.
import { appendFileSync, existsSync, readFileSync, statSync } from "node:fs";
import { resolve as resolvePath } from "node:path";
import { coreAnswer } from "./core-errors.js";
import { formatDuration, formatUsd } from "./cli-format.js";
import { loadJobsBackend } from "./engine.js";
import { BatchlingError } from "./errors.js";
import type { BatchProgress, LiveBatch, SerializableRequest as ProviderCall } from "./generated/core.js";

export const BATCHES_USAGE =
  "usage: batchling batches list | status [batchId] | cancel <batchId>  [--cache-path P | --state-file S]";

export const BATCHES_HELP_TEXT = `${BATCHES_USAGE}

The provider batches a run submitted whose answers are not all in (live batches), from the
request cache journal (default .batchling/cache.jsonl) or a Batch run's state file.

  list                 the live batches: provider, model, requests still waiting, age, cost so
                       far (the answers in the journal at batch prices), whether cancelled
  status [batchId]     each live batch's (or one batch's) state and progress at the provider
  cancel <batchId>     cancel the batch at the provider and journal it: its requests that did not
                       run get the cancelled answer (499) and are never submitted again

status and cancel read the provider's API key from the environment (OPENAI_API_KEY,
ANTHROPIC_API_KEY, GEMINI_API_KEY, GROQ_API_KEY, DOUBLEWORD_API_KEY, AZURE_OPENAI_API_KEY,
MISTRAL_API_KEY, TOGETHER_API_KEY, XAI_API_KEY).

Exit status: 0 success, 1 a batch or provider problem, 2 usage error.`;


class BatchesUsageError extends Error {}
class BatchesError extends Error {}

interface BatchesCommand {
  action: "list" | "status" | "cancel";
  batchId: string | undefined;
  journal: string;
}

function parseBatchesArgs(argv: readonly string[]): BatchesCommand | "help" {
  if (argv.includes("-h") || argv.includes("--help")) return "help";
  const positional: string[] = [];
  let journal: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const token = argv[i]!;
    const flag = token.split("=", 1)[0]!;
    if (flag === "--cache-path" || flag === "--state-file") {
      const value = token.includes("=") ? token.slice(flag.length + 1) : argv[++i];
      if (value === undefined || value === "") throw new BatchesUsageError(`${flag} needs a path`);
      if (journal !== undefined) throw new BatchesUsageError("give one of --cache-path and --state-file");
      journal = value;
    } else if (token.startsWith("--")) {
      throw new BatchesUsageError(`unknown option "${token}"`);
    } else {
      positional.push(token);
    }
  }
  const [action, batchId, ...rest] = positional;
  if (action === undefined) throw new BatchesUsageError("missing the action: list, status or cancel");
  if (action !== "list" && action !== "status" && action !== "cancel") {
    throw new BatchesUsageError(`unknown action "${action}": use list, status or cancel`);
  }
  if (action === "list" && batchId !== undefined) throw new BatchesUsageError(`unexpected argument "${batchId}"`);
  if (action === "cancel" && batchId === undefined) throw new BatchesUsageError("missing the batch id, e.g. batchling batches cancel batch_abc");
  if (rest.length > 0) throw new BatchesUsageError(`unexpected argument "${rest[0]}"`);
  return { action, batchId, journal: journal ?? ".batchling/cache.jsonl" };
}

function readJournal(path: string): string {
  const shown = resolvePath(path);
  if (!existsSync(shown)) throw new BatchesError(`no journal at ${shown} (give --cache-path or --state-file)`);
  if (statSync(shown).isDirectory()) throw new BatchesError(`${shown} is a directory, not a journal`);
  return readFileSync(shown, "utf8");
}

/** A core refusal as a BatchesError (exit 1). */
function answer<T>(json: string): T {
  try {
    return coreAnswer<T>(json);
  } catch (error) {
    if (error instanceof BatchlingError) throw new BatchesError(`${error.message} (${error.code})`);
    throw error;
  }
}

async function send(call: ProviderCall): Promise<{ status: number; headersJson: string; body: string }> {
  const init: RequestInit = { method: call.method, headers: call.headers };
  if (call.method !== "GET" && call.method !== "HEAD" && call.body !== "") init.body = call.body;
  let response: Response;
  try {
    response = await fetch(call.url, init);
  } catch (error) {
    const cause = (error as { cause?: unknown }).cause;
    throw new BatchesError(`${call.method} ${call.url} failed: ${(error as Error).message}${cause ? ` (${String(cause)})` : ""}`);
  }
  return { status: response.status, headersJson: JSON.stringify([...response.headers]), body: await response.text() };
}

function apiKey(batch: LiveBatch): string {
  return (batch.apiKeyEnv ? process.env[batch.apiKeyEnv] : undefined) ?? "";
}

function describeBatch(b: LiveBatch): string {
  const cancelled = b.cancelled ? " · cancelled" : "";
  const waiting = b.pending === null ? `${b.requests} requests (answers are in the run's results directory)` : `${b.pending}/${b.requests} requests waiting`;
  // Journal lines from before batchling dated batches have no age.
  const age = b.ageMs === null ? "age —" : `age ${formatDuration(b.ageMs)}`;
  // A state file keeps no answers, and a model of unknown price has no cost.
  const cost = b.costSoFarUsd === null
    ? `cost so far — (${b.pending === null ? "answers are not in the state file" : `unknown price for ${b.model}`})`
    : `cost so far ${formatUsd(b.costSoFarUsd)} (${b.answersCosted} ${b.answersCosted === 1 ? "answer" : "answers"})`;
  return `${b.batchId}  ${b.provider} ${b.model} (${b.baseUrl})  ${waiting} · ${age} · ${cost}${cancelled}`;
}

function formatEta(progress: BatchProgress): string {
  const done = progress.completed + progress.failed;
  return `${progress.state} ${done}/${progress.total}${progress.failed ? ` (${progress.failed} failed)` : ""}${progress.ended ? " · ended" : ""}`;
}

function write(stream: NodeJS.WriteStream, text: string): Promise<void> {
  return new Promise((resolve) => stream.write(text, () => resolve()));
}

/** Run `batchling batches …` (argv: the arguments after `batches`); resolves with the exit status. */
export async function runBatchesCommand(argv: readonly string[]): Promise<number> {
  let command: BatchesCommand | "help";
  try {
    command = parseBatchesArgs(argv);
  } catch (error) {
    await write(process.stderr, `batchling: ${(error as Error).message}\n${BATCHES_USAGE}\n`);
    return 2;
  }
  if (command === "help") {
    await write(process.stdout, BATCHES_HELP_TEXT + "\n");
    return 0;
  }
  try {
    const core = loadJobsBackend();
    const journal = readJournal(command.journal);
    const live = answer<{ batches: LiveBatch[] }>(core.batchesLive(journal, Date.now())).batches;
    if (command.action === "list") {
      const text = live.length === 0 ? "no live batches\n" : live.map(describeBatch).join("\n") + "\n";
      await write(process.stdout, text);
      return 0;
    }
    const targets = command.batchId === undefined ? live : live.filter((b) => b.batchId === command.batchId);
    if (command.batchId !== undefined && targets.length === 0) {
      const known = live.map((b) => b.batchId).join(", ");
      throw new BatchesError(`no live batch "${command.batchId}" in ${resolvePath(command.journal)}${known ? ` (live: ${known})` : " (no live batches)"}`);
    }
    if (command.action === "status") {
      if (targets.length === 0) await write(process.stdout, "no live batches\n");
      for (const batch of targets) {
        const call = answer<{ request: ProviderCall }>(core.batchesCall(journal, batch.batchId, "poll", apiKey(batch))).request;
        const reply = await send(call);
        const progress = answer<{ progress: BatchProgress }>(
          core.batchesProgress(journal, batch.batchId, reply.status, reply.headersJson, reply.body),
        ).progress;
        await write(process.stdout, `${describeBatch(batch)}\n  ${formatEta(progress)}\n`);
      }
      return 0;
    }
    const batch = targets[0]!;
    const call = answer<{ request: ProviderCall }>(core.batchesCall(journal, batch.batchId, "cancel", apiKey(batch))).request;
    const reply = await send(call);
    const line = answer<{ line: string }>(
      core.batchesCancelRecord(journal, batch.batchId, reply.status, reply.headersJson, reply.body),
    ).line;
    // Ends the journal's last line first if a run left it unterminated.
    const needsNewline = journal.length > 0 && !journal.endsWith("\n");
    appendFileSync(resolvePath(command.journal), `${needsNewline ? "\n" : ""}${line}\n`);
    await write(process.stdout, `cancelled ${batch.batchId} (${batch.provider}): its ${batch.pending === null ? "unfinished" : `${batch.pending} waiting`} requests get the cancelled answer (499)\n`);
    return 0;
  } catch (error) {
    if (error instanceof BatchesError) {
      await write(process.stderr, `batchling: ${error.message}\n`);
      return 1;
    }
    throw error;
  }
}

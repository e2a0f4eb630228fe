#!/usr/bin/env node
// `batchling script.mjs:fn [args] [--flags]`: runs an exported function of a script inside
// batchify(), so the SDK calls it makes become provider batch jobs. Flags and arguments: cli-args.ts.
import { existsSync, statSync } from "node:fs";
import { resolve as resolvePath } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { inspect } from "node:util";
import { batchify, type BatchifyReport, type BatchlingEvent, type QueueReport } from "./batchify.js";
import { BatchlingError } from "./errors.js";
import { CliUsageError, HELP_TEXT, parseCliArgs, redisFlagError, type CliArgs } from "./cli-args.js";
import { runJobsCommand } from "./cli-jobs.js";
import { runBatchesCommand } from "./cli-batches.js";
import { runCacheCommand } from "./cli-cache.js";
import { runServeCommand } from "./cli-serve.js";
import { formatDuration, formatUsd } from "./cli-format.js";

/** A problem the user can fix without a stack trace (missing script, missing export): exit 1. */
class CliError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "CliError";
  }
}

// ---------------------------------------------------------------------------------------------
// Progress on stderr: one line rewritten in place on a terminal; without one, one line per retry
// and per warning.

const RENDER_EVERY_MS = 100;

class Progress {
  #queued = 0;
  #cacheHits = 0;
  #batches = 0;
  #dryRunBatches = 0;
  #finished = 0;
  #results = 0;
  #retries = 0;
  #state = "";
  /** Why it waits: the last retry's cause and delay, until the next provider progress. */
  #waiting = "";
  #shown = false;
  #stopped = false;
  #lastRender = 0;
  #timer: ReturnType<typeof setTimeout> | undefined;

  constructor(
    private readonly stream: NodeJS.WriteStream,
    private readonly live: boolean,
  ) {}

  readonly onEvent = (event: BatchlingEvent): void => {
    switch (event.kind) {
      case "requestQueued":
        this.#queued++;
        break;
      case "cacheHit":
        this.#cacheHits++;
        break;
      case "batchSubmitting":
        if (event.dryRun) this.#dryRunBatches++;
        break;
      case "batchSubmitted":
        this.#batches++;
        this.#state = `${event.provider} ${event.batchId}: submitted`;
        break;
      case "batchPolled": {
        const eta = event.etaMs == null ? "" : `, about ${formatDuration(event.etaMs)} left`;
        this.#state = `${event.batchId}: ${event.state} ${event.completed + event.failed}/${event.total}${eta}`;
        this.#waiting = "";
        break;
      }
      case "batchFinished":
        this.#finished++;
        this.#state = `${event.batchId}: ${event.state}`;
        break;
      case "resultsReceived":
        this.#results += event.results;
        break;
      case "retry": {
        this.#retries++;
        this.#waiting = `${retryCause(event.reason, event.host)}, retry ${event.attempt}/${event.maxAttempts} in ${formatDuration(event.delayMs)}`;
        if (!this.live) this.stream.write(`batchling: ${event.step}: ${this.#waiting}\n`);
        break;
      }
      case "warning":
        this.warn(event.message);
        return;
    }
    this.#schedule();
  };

  warn(message: string): void {
    if (this.#stopped) {
      this.stream.write(`batchling: warning: ${message}\n`);
      return;
    }
    this.#clear();
    this.stream.write(`batchling: warning: ${message}\n`);
    this.#schedule();
  }

  /** Stop rendering and erase the progress line. */
  stop(): void {
    this.#stopped = true;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#clear();
  }

  /** e.g. `batchling: 7 queued · 3 batches submitted (1 finished) · 2 results · 1 retry · batch_abc: in_progress 2/3` */
  line(): string {
    const parts = [`${this.#queued} queued`];
    if (this.#cacheHits) parts.push(`${this.#cacheHits} from cache`);
    if (this.#dryRunBatches) parts.push(`${this.#dryRunBatches} ${plural(this.#dryRunBatches, "batch", "batches")} (dry run)`);
    if (this.#batches || !this.#dryRunBatches) {
      const finished = this.#finished ? ` (${this.#finished} finished)` : "";
      parts.push(`${this.#batches} ${plural(this.#batches, "batch", "batches")} submitted${finished}`);
    }
    parts.push(`${this.#results} ${plural(this.#results, "result")}`);
    if (this.#retries) parts.push(`${this.#retries} ${plural(this.#retries, "retry", "retries")}`);
    if (this.#waiting) parts.push(this.#waiting);
    // Last: the latest provider state, the part cut first on a narrow terminal.
    if (this.#state) parts.push(this.#state);
    return `batchling: ${parts.join(" · ")}`;
  }

  #schedule(): void {
    if (!this.live || this.#stopped || this.#timer !== undefined) return;
    const wait = this.#lastRender + RENDER_EVERY_MS - Date.now();
    if (wait <= 0) {
      this.#render();
      return;
    }
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#render();
    }, wait);
    this.#timer.unref();
  }

  #render(): void {
    if (this.#stopped) return;
    this.#lastRender = Date.now();
    // Never wrap: a wrapped line cannot be rewritten with \r.
    const width = Math.max(20, (this.stream.columns || 80) - 1);
    let line = this.line();
    if (line.length > width) line = line.slice(0, width - 1) + "…";
    this.stream.write(`\r${line}\x1b[K`);
    this.#shown = true;
  }

  #clear(): void {
    if (!this.#shown) return;
    this.stream.write("\r\x1b[K");
    this.#shown = false;
  }
}

/** The retry's cause in a few words: `connection refused: api.openai.com`, `429 from api.openai.com: …`. */
function retryCause(reason: string, host: string): string {
  const http = /^HTTP (\d{3}): ?(.*)$/s.exec(reason);
  if (http) return `${http[1]} from ${host}${http[2] ? `: ${http[2].slice(0, 80)}` : ""}`;
  const codes: [RegExp, string][] = [
    [/ECONNREFUSED/, "connection refused"],
    [/ENOTFOUND|EAI_AGAIN/, "host not found"],
    [/ECONNRESET|socket hang up|other side closed/i, "connection reset"],
    [/ETIMEDOUT|timeout/i, "timed out"],
  ];
  for (const [pattern, cause] of codes) if (pattern.test(reason)) return `${cause}: ${host}`;
  return `${reason.slice(0, 80)} (${host})`;
}

function plural(n: number, one: string, many = `${one}s`): string {
  return n === 1 ? one : many;
}

// ---------------------------------------------------------------------------------------------
// Dry-run report.

/** The dry-run report as a table: one row per queue (provider, endpoint, model) and a total. */
function formatReport(report: BatchifyReport): string {
  const head = "batchling dry run: nothing was sent to any provider. Batches that would be created:";
  if (report.queues.length === 0) return "batchling dry run: no batchable LLM requests were made.\n";
  const cost = (v: number | null): string => (v === null ? "unknown price" : formatUsd(v));
  const rows: string[][] = [["provider", "endpoint", "model", "requests", "batches", "cache hits", "batch cost", "sync cost"]];
  const notes: string[] = [];
  for (const q of report.queues) {
    rows.push([q.provider, q.endpoint, q.model, String(q.requests), String(q.batches), String(q.cacheHits), cost(q.estimatedBatchUsd), cost(q.estimatedSyncUsd)]);
    if (q.priceNote) notes.push(`${q.provider} ${q.model}: ${q.priceNote}`);
  }
  const sum = (pick: (q: QueueReport) => number): number => report.queues.reduce((total, q) => total + pick(q), 0);
  const priced = report.queues.filter((q) => q.estimatedBatchUsd !== null && q.estimatedSyncUsd !== null);
  const unpriced = report.queues.length - priced.length;
  const batchUsd = priced.reduce((t, q) => t + (q.estimatedBatchUsd ?? 0), 0);
  const syncUsd = priced.reduce((t, q) => t + (q.estimatedSyncUsd ?? 0), 0);
  const mark = unpriced ? "*" : "";
  rows.push([
    "total", "", "",
    String(sum((q) => q.requests)), String(sum((q) => q.batches)), String(sum((q) => q.cacheHits)),
    priced.length ? formatUsd(batchUsd) + mark : "unknown price",
    priced.length ? formatUsd(syncUsd) + mark : "unknown price",
  ]);
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  const numeric = (c: number): boolean => c >= 3;
  const render = (r: string[]): string =>
    r.map((cell, c) => (numeric(c) ? cell.padStart(widths[c]!) : cell.padEnd(widths[c]!))).join("  ").trimEnd();
  const rule = widths.map((w) => "-".repeat(w)).join("  ");
  const lines = [head, "", render(rows[0]!), rule, ...rows.slice(1, -1).map(render), rule, render(rows.at(-1)!)];
  if (priced.length && syncUsd > 0) {
    const saved = syncUsd - batchUsd;
    lines.push("", `estimated cost: ${formatUsd(batchUsd)} as batches vs ${formatUsd(syncUsd)} as sync calls (saves ${formatUsd(saved)}, ${Math.round((saved / syncUsd) * 100)}%)`);
  }
  if (unpriced) lines.push(`* ${unpriced} ${plural(unpriced, "queue")} with an unknown price ${unpriced === 1 ? "is" : "are"} not included`);
  for (const note of notes) lines.push(`note: ${note}`);
  return lines.join("\n") + "\n";
}

/** After a run that sent requests: their batches, what the answers cost next to the estimate
 * (both at batch prices), and the provider files deleted once their answers were journalled. */
function formatRunSummary(report: BatchifyReport): string {
  const sum = (pick: (q: QueueReport) => number): number => report.queues.reduce((total, q) => total + pick(q), 0);
  const requests = sum((q) => q.requests);
  if (requests === 0) return "";
  const batches = sum((q) => q.batches);
  const hits = sum((q) => q.cacheHits);
  const costed = sum((q) => q.answersCosted);
  const priced = report.queues.filter((q) => q.estimatedBatchUsd !== null);
  const unpriced = report.queues.length - priced.length;
  const actual = report.queues.some((q) => q.actualBatchUsd !== null) ? sum((q) => q.actualBatchUsd ?? 0) : null;
  const estimate = priced.length ? formatUsd(sum((q) => q.estimatedBatchUsd ?? 0)) + (unpriced ? ` without ${unpriced} ${plural(unpriced, "queue")} of unknown price` : "") : "unknown price";
  let cost = `cost: ${formatUsd(actual ?? 0)} for ${costed} ${plural(costed, "answer")} (estimated ${estimate}) at batch prices`;
  if (actual === null) cost = batches === 0 ? "no batch cost" : `cost: unknown, no answer reported usage at a known price (estimated ${estimate} at batch prices)`;
  const deleted = sum((q) => q.filesDeleted);
  const kept = sum((q) => q.fileDeletesFailed);
  const files = deleted + kept > 0 ? `; provider files: ${deleted} deleted${kept ? `, ${kept} kept (delete failed)` : ""}` : "";
  const cache = hits ? `, ${hits} from the cache` : "";
  return `batchling: ${requests} ${plural(requests, "request")} in ${batches} new ${plural(batches, "batch", "batches")}${cache}; ${cost}${files}\n`;
}

// ---------------------------------------------------------------------------------------------
// Running the target.

function typeName(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "array";
  return typeof value;
}

function describe(value: unknown): string {
  const name = typeName(value);
  return name === "null" || name === "undefined" ? name : `${/^[aeiou]/.test(name) ? "an" : "a"} ${name}`;
}

function exportList(namespace: Record<string, unknown>): string {
  const names = Object.keys(namespace).sort();
  if (names.length === 0) return "it has no exports";
  return `its exports are: ${names.map((n) => `${n} (${typeName(namespace[n])})`).join(", ")}`;
}

async function loadFunction(args: CliArgs): Promise<(...a: unknown[]) => unknown> {
  const { file, exportName } = args.target;
  let url: URL;
  let shown = file;
  if (/^file:/i.test(file)) {
    url = new URL(file);
    shown = fileURLToPath(url);
  } else {
    const path = resolvePath(process.cwd(), file);
    url = pathToFileURL(path);
    shown = path;
  }
  if (!existsSync(shown)) throw new CliError(`cannot find the script "${file}" (looked for ${shown})`);
  if (statSync(shown).isDirectory()) throw new CliError(`"${file}" is a directory, not a script`);
  const namespace = (await import(url.href)) as Record<string, unknown>;
  const fn = namespace[exportName];
  if (typeof fn !== "function") {
    const problem = fn === undefined ? `has no export named "${exportName}"` : `exports "${exportName}" as ${describe(fn)}, not a function`;
    throw new CliError(`${file} ${problem}; ${exportList(namespace)}`);
  }
  return fn as (...a: unknown[]) => unknown;
}

function formatResult(value: unknown): string {
  if (typeof value === "string") return value;
  if (typeof value !== "object" || value === null) return value === null ? "null" : String(value);
  try {
    const json = JSON.stringify(value, (_, v: unknown) => (typeof v === "bigint" ? v.toString() : v), 2);
    if (json !== undefined) return json;
  } catch {
    // circular: fall back to inspect
  }
  return inspect(value, { depth: null });
}

function formatError(error: unknown): string {
  if (error instanceof CliUsageError) return `batchling: ${error.message}`;
  if (error instanceof CliError) return `batchling: ${error.message}`;
  if (error instanceof BatchlingError) return `batchling: ${error.message} (${error.code})`;
  if (error instanceof Error) return `batchling: the script failed:\n${inspect(error)}`;
  return `batchling: the script threw a non-error value: ${inspect(error)}`;
}

function write(stream: NodeJS.WriteStream, text: string): Promise<void> {
  return new Promise((resolve) => {
    if (text === "") resolve();
    else stream.write(text, () => resolve());
  });
}

async function runCli(argv: readonly string[]): Promise<number> {
  // `batchling jobs status|results <stateFile>`: inspect a Batch run (cli-jobs.ts).
  if (argv[0] === "jobs") return runJobsCommand(argv.slice(1));
  // `batchling cache stats|prune`: the request cache's journal (cli-cache.ts).
  if (argv[0] === "cache") return runCacheCommand(argv.slice(1));
  // `batchling batches list|status|cancel`: live provider batches of a journal (cli-batches.ts).
  if (argv[0] === "batches") return runBatchesCommand(argv.slice(1));
  // `batchling serve`: the batching HTTP server for clients in any language (cli-serve.ts).
  if (argv[0] === "serve") return runServeCommand(argv.slice(1));
  let args: CliArgs;
  try {
    args = parseCliArgs(argv);
  } catch (error) {
    if (error instanceof CliUsageError) {
      await write(process.stderr, formatError(error) + "\n");
      return 2;
    }
    throw error;
  }
  if (args.help) {
    await write(process.stdout, HELP_TEXT + "\n");
    return 0;
  }

  const progress = new Progress(process.stderr, process.stderr.isTTY === true);
  const onSigint = (): void => {
    progress.stop();
    process.stderr.write("batchling: interrupted\n", () => process.exit(130));
  };
  process.once("SIGINT", onSigint);
  try {
    // batchify() first: it installs the fetch hook, so SDK clients the script creates when it is
    // imported (which capture globalThis.fetch) still route through the batching scope.
    let ctx;
    try {
      ctx = batchify({ ...args.batchify, onEvent: progress.onEvent });
    } catch (error) {
      throw redisFlagError(error) ?? error;
    }
    const fn = await loadFunction(args);
    // The keywords object is one extra, last argument, given only when there are keywords, so a
    // function of plain positional parameters sees exactly the positional tokens.
    const callArgs: unknown[] = [...args.positional];
    if (Object.keys(args.keywords).length > 0) callArgs.push({ ...args.keywords });
    const result = await ctx.run(() => fn(...callArgs));
    const report = await ctx.close();
    progress.stop();
    await write(process.stderr, report.dryRun ? formatReport(report) : formatRunSummary(report));
    if (result !== undefined) await write(process.stdout, formatResult(result) + "\n");
    return 0;
  } catch (error) {
    progress.stop();
    await write(process.stderr, formatError(error) + "\n");
    return error instanceof CliUsageError ? 2 : 1;
  } finally {
    process.removeListener("SIGINT", onSigint);
  }
}

runCli(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error: unknown) => {
    process.stderr.write(formatError(error) + "\n", () => process.exit(1));
  },
);

// `batchling cache stats|prune [--path P] [--max-age-days N] [--json]`: what the request cache's
// journal holds, and the journal rewritten without what is no longer needed (answers past the
// age limit, superseded batch records, damaged lines). The core folds the journal and decides
// what is live (core/src/cache.rs); this file reads and rewrites the file. Nothing is sent to any
// provider.
import { existsSync, statSync } from "node:fs";
import { resolve as resolvePath } from "node:path";
import { DEFAULT_CACHE_PATH, FileJournal } from "./batchify.js";
import { newEngine } from "./batchify-host.js";
import { loadInterceptorBackend, type InterceptorEngine } from "./engine.js";
import { InvalidOptionError } from "./errors.js";
import type { CacheStats, CompactLine } from "./generated/core.js";

export const CACHE_USAGE = "usage: batchling cache stats|prune [--path <journal>] [--max-age-days <n>] [--json]";

export const CACHE_HELP_TEXT = `${CACHE_USAGE}

The request cache's journal (default ${DEFAULT_CACHE_PATH}); sends nothing to any provider.

  stats     answers kept, expired, batches still to resume, superseded and damaged lines
  prune     rewrite the journal with only its live lines: answers within the age limit and
            batches still to resume (a run also does this at start when worth it)

  --path <journal>       the journal file (default ${DEFAULT_CACHE_PATH})
  --max-age-days <n>     answers journalled longer ago are expired (default 30, the providers'
                         result retention); answers from versions that recorded no time are kept
  --json                 stats as JSON

Do not prune a journal a running batchify() is appending to.
Exit status: 0 success, 1 no journal or it could not be rewritten, 2 usage error.`;

/** A malformed `cache` command line: exit 2. */
class CacheUsageError extends Error {}
/** A journal the command cannot use: exit 1. */
class CacheError extends Error {}

interface CacheCommand {
  action: "stats" | "prune";
  path: string;
  maxAgeDays: number | undefined;
  json: boolean;
}

function parseCacheArgs(argv: readonly string[]): CacheCommand | "help" {
  if (argv.includes("-h") || argv.includes("--help")) return "help";
  const positional: string[] = [];
  let path: string | undefined;
  let maxAge: string | undefined;
  let json = false;
  for (let i = 0; i < argv.length; i++) {
    const token = argv[i]!;
    const flag = /^(--path|--max-age-days)(?:=(.*))?$/.exec(token);
    if (flag) {
      const value = flag[2] ?? argv[++i];
      if (value === undefined || value === "") throw new CacheUsageError(`${flag[1]} needs a value`);
      if (flag[1] === "--path") path = value;
      else maxAge = value;
    } else if (token === "--json") {
      json = true;
    } else if (token.startsWith("-")) {
      throw new CacheUsageError(`unknown option "${token}"`);
    } else {
      positional.push(token);
    }
  }
  const [action, ...rest] = positional;
  if (action === undefined) throw new CacheUsageError("missing the action: stats or prune");
  if (action !== "stats" && action !== "prune") throw new CacheUsageError(`unknown action "${action}": use stats or prune`);
  if (rest.length > 0) throw new CacheUsageError(`unexpected argument "${rest[0]}"`);
  if (json && action !== "stats") throw new CacheUsageError("--json applies to `cache stats` only");
  let maxAgeDays: number | undefined;
  if (maxAge !== undefined) {
    maxAgeDays = Number(maxAge);
    if (!/^\s*[0-9.eE+-]+\s*$/.test(maxAge) || Number.isNaN(maxAgeDays)) {
      throw new CacheUsageError(`--max-age-days must be a number of days, got "${maxAge}"`);
    }
  }
  return { action, path: path ?? DEFAULT_CACHE_PATH, maxAgeDays, json };
}

/** An engine that only folds the journal, with the age limit checked by the core. */
function cacheEngine(path: string, maxAgeDays: number | undefined): InterceptorEngine {
  const cache = maxAgeDays === undefined ? { path } : { path, maxAgeDays };
  try {
    return newEngine(loadInterceptorBackend().NativeInterceptor, { cache }, true, 0);
  } catch (error) {
    if (error instanceof InvalidOptionError && error.option === "cache.maxAgeDays") {
      throw new CacheUsageError(`--max-age-days ${error.message.replace(/^invalid option `cache\.maxAgeDays`: /, "")}`);
    }
    throw error;
  }
}

function day(ms: number | null): string {
  return ms === null ? "-" : new Date(ms).toISOString().slice(0, 10);
}

function kb(bytes: number): string {
  return bytes < 1024 ? `${bytes} B` : bytes < 1 << 20 ? `${(bytes / 1024).toFixed(1)} kB` : `${(bytes / (1 << 20)).toFixed(1)} MB`;
}

function formatStats(path: string, bytes: number, s: CacheStats): string {
  const days = s.maxAgeMs === null ? "" : ` (older than ${+(s.maxAgeMs / 86_400_000).toFixed(3)} days)`;
  const undated = s.undatedAnswers ? ` (${s.undatedAnswers} without a time, kept)` : "";
  return [
    `cache journal: ${path} (${kb(bytes)}, ${s.lines} lines)`,
    `answers: ${s.answers}${undated}; oldest ${day(s.oldestAnswerMs)}, newest ${day(s.newestAnswerMs)}`,
    `expired answers${days}: ${s.expiredAnswers}`,
    `batches to resume: ${s.liveBatches}; creates to look up: ${s.intents}`,
    `lines a prune would drop: ${s.lines - s.liveLines} (of which damaged: ${s.damagedLines})`,
  ].join("\n");
}

async function run(command: CacheCommand): Promise<number> {
  const path = resolvePath(command.path);
  // The options first: a bad --max-age-days is a usage error wherever the journal is.
  const engine = cacheEngine(path, command.maxAgeDays);
  if (!existsSync(path)) throw new CacheError(`no cache journal at ${path}`);
  if (statSync(path).isDirectory()) throw new CacheError(`${path} is a directory, not a cache journal`);
  const journal = new FileJournal(path);
  await journal.load((text) => void engine.loadCache(text));
  const stats = JSON.parse(engine.cacheStats()) as CacheStats;
  const bytes = statSync(path).size;
  if (command.action === "stats") {
    process.stdout.write((command.json ? JSON.stringify({ path, bytes, ...stats }, null, 2) : formatStats(path, bytes, stats)) + "\n");
    return 0;
  }
  const plan = JSON.parse(engine.journalPrune()) as CompactLine[];
  if (plan.length === stats.lines) {
    process.stdout.write(`nothing to prune in ${path} (${stats.lines} lines, all live)\n`);
    journal.close();
    return 0;
  }
  const done = await journal.compact(plan);
  journal.close();
  if (!done) throw new CacheError(`could not rewrite ${path}; it is unchanged`);
  const after = statSync(path).size;
  process.stdout.write(
    `pruned ${path}: ${stats.lines} → ${plan.length} lines, ${kb(bytes)} → ${kb(after)} ` +
      `(${stats.expiredAnswers} expired answers, ${stats.lines - plan.length - stats.expiredAnswers} superseded or damaged lines dropped)\n`,
  );
  return 0;
}

/** `batchling cache …`: the exit status. */
export async function runCacheCommand(argv: readonly string[]): Promise<number> {
  try {
    const command = parseCacheArgs(argv);
    if (command === "help") {
      process.stdout.write(CACHE_HELP_TEXT + "\n");
      return 0;
    }
    return await run(command);
  } catch (error) {
    if (error instanceof CacheUsageError) {
      process.stderr.write(`batchling cache: ${error.message}\n${CACHE_USAGE}\n`);
      return 2;
    }
    if (error instanceof CacheError) {
      process.stderr.write(`batchling cache: ${error.message}\n`);
      return 1;
    }
    throw error;
  }
}

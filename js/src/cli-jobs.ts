// `batchling jobs status <stateFile>` and `batchling jobs results <stateFile> [--format csv|json]`:
// read what a `Batch` run (js/src/batch.ts) left on disk. The state file names the results
// directory and the run's job ids; each finished job has its line in `results.jsonl` there (and,
// from older runs or with `resultFiles: "per-job"`, its own JSON file). Nothing is sent to any
// provider and nothing is written.
import { existsSync, readFileSync, statSync } from "node:fs";
import { join, resolve as resolvePath } from "node:path";
import { RESULTS_LOG, exportResults, forEachLineSync, readResultFiles, readStateFile, type StateFile } from "./batch-files.js";
import type { JobResult } from "./batch-types.js";
import { BatchlingError } from "./errors.js";
import type { RunSummary } from "./generated/core.js";

export const JOBS_USAGE = "usage: batchling jobs status <stateFile> | batchling jobs results <stateFile> [--format csv|json]";

export const JOBS_HELP_TEXT = `${JOBS_USAGE}

Reads what a Batch run left on disk (its state file and results directory); sends nothing.

  status <stateFile>                    counts: jobs, completed, failed, pending; batches submitted; total cost
  results <stateFile> [--format F]      every finished job's result on stdout, F = json (default) or csv

Exit status: 0 success, 1 unreadable state or results, 2 usage error.`;

/** A malformed `jobs` command line: exit 2. */
class JobsUsageError extends Error {}
/** A state file or result the command cannot use: exit 1. */
class JobsError extends Error {}

interface JobsCommand {
  action: "status" | "results";
  stateFile: string;
  format: "json" | "csv";
}

function parseJobsArgs(argv: readonly string[]): JobsCommand | "help" {
  if (argv.includes("-h") || argv.includes("--help")) return "help";
  const positional: string[] = [];
  let format: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const token = argv[i]!;
    if (token === "--format" || token.startsWith("--format=")) {
      const value = token === "--format" ? argv[++i] : token.slice("--format=".length);
      if (value === undefined) throw new JobsUsageError("--format needs a value: csv or json");
      format = value;
    } else if (token.startsWith("--")) {
      throw new JobsUsageError(`unknown option "${token}"`);
    } else {
      positional.push(token);
    }
  }
  const [action, stateFile, ...rest] = positional;
  if (action === undefined) throw new JobsUsageError("missing the action: status or results");
  if (action !== "status" && action !== "results") {
    throw new JobsUsageError(`unknown action "${action}": use status or results`);
  }
  if (stateFile === undefined || stateFile === "") throw new JobsUsageError(`missing the state file, e.g. batchling jobs ${action} .batchling/state.json`);
  if (rest.length > 0) throw new JobsUsageError(`unexpected argument "${rest[0]}"`);
  if (format !== undefined && action !== "results") throw new JobsUsageError("--format applies to `jobs results` only");
  if (format !== undefined && format !== "csv" && format !== "json") {
    throw new JobsUsageError(`--format must be csv or json, got "${format}"`);
  }
  return { action, stateFile, format: (format as "csv" | "json" | undefined) ?? "json" };
}

/** The state file, read and checked by the core (core/src/host/run_state.rs). */
function loadState(path: string): StateFile {
  const shown = resolvePath(path);
  if (!existsSync(shown)) throw new JobsError(`state file not found: ${shown}`);
  if (statSync(shown).isDirectory()) throw new JobsError(`${shown} is a directory, not a state file`);
  try {
    return readStateFile(shown);
  } catch (error) {
    throw new JobsError(`${shown} is not a batchling state file: ${error instanceof Error ? error.message : String(error)}`);
  }
}

/** The finished jobs' results and the run's summary (by the core): the jobs the state header
 * lists (those added one by one) in their order, then the others in the order they finished. A job's result is its line
 * in `results.jsonl` (the first, if several), else its own JSON file (runs that wrote them). */
function loadResults(state: StateFile): { results: JobResult[]; summary: RunSummary } {
  const log = join(state.resultsDir, RESULTS_LOG);
  const fromLog = new Map<string, string>();
  try {
    const torn = forEachLineSync(log, (text, lineNo) => {
      let id: unknown;
      try {
        const parsed = JSON.parse(text) as { jobId?: unknown; id?: unknown };
        id = parsed?.jobId ?? parsed?.id;
      } catch (error) {
        throw new JobsError(`${log} line ${lineNo} is unreadable: ${(error as Error).message}`);
      }
      if (typeof id === "string" && !fromLog.has(id)) fromLog.set(id, text);
    });
    if (torn !== null) process.emitWarning(`${log}: its last line is torn (${torn.bytes} bytes, a run stopped while writing it): skipped`, "BatchlingWarning");
  } catch (error) {
    if (error instanceof JobsError) throw error;
    throw new JobsError(`cannot read ${log}: ${(error as Error).message}`);
  }
  const ids: string[] = [];
  const paths: (string | null)[] = [];
  const texts: (string | null)[] = [];
  state.jobIds.forEach((id, i) => {
    const text = fromLog.get(id);
    fromLog.delete(id);
    const path = join(state.resultsDir, state.resultFiles[i]!);
    ids.push(id);
    paths.push(text === undefined ? path : null);
    texts.push(text ?? (existsSync(path) ? readFileSync(path, "utf8") : null));
  });
  // A source's jobs are not listed: the ones with a result, in the order they finished, and
  // the rest pending. (When the header lists every job, other ids are another run's.)
  if (state.jobs > state.jobIds.length) {
    for (const [id, text] of fromLog) {
      if (texts.length >= state.jobs) break;
      ids.push(id);
      paths.push(null);
      texts.push(text);
    }
  }
  while (texts.length < state.jobs) texts.push(null);
  try {
    const { results, summary } = readResultFiles(texts);
    return { results: results.filter((r): r is JobResult => r !== null), summary };
  } catch (error) {
    if (!(error instanceof BatchlingError)) throw error;
    const index = (error as BatchlingError & { index: number }).index;
    throw new JobsError(`the result of job \`${ids[index]}\` (${paths[index] ?? log}) is unreadable: ${error.message}`);
  }
}

function formatUsd(value: number): string {
  if (value === 0) return "$0.00";
  return value >= 0.01 ? `$${value.toFixed(4)}` : `$${value.toPrecision(3)}`;
}

function statusText(path: string, state: StateFile): string {
  const { summary } = loadResults(state);
  const unpriced = summary.unpriced;
  const lines = [
    `state file: ${resolvePath(path)}`,
    `results:    ${state.resultsDir}`,
    `jobs:       ${summary.jobs}`,
    `completed:  ${summary.completed}`,
    `failed:     ${summary.failed}`,
    `pending:    ${summary.pending}`,
    `batches:    ${state.batchesSubmitted} submitted`,
    `cost:       ${formatUsd(summary.costUsd)}${unpriced ? ` (${unpriced} ok ${unpriced === 1 ? "job has" : "jobs have"} no known price)` : ""}`,
    `complete:   ${summary.complete ? "yes" : "no"}`,
  ];
  return lines.join("\n") + "\n";
}

function write(stream: NodeJS.WriteStream, text: string): Promise<void> {
  return new Promise((resolve) => {
    if (text === "") resolve();
    else stream.write(text, () => resolve());
  });
}

/** Run `batchling jobs …` (argv: the arguments after `jobs`); resolves with the exit status. */
export async function runJobsCommand(argv: readonly string[]): Promise<number> {
  let command: JobsCommand | "help";
  try {
    command = parseJobsArgs(argv);
  } catch (error) {
    await write(process.stderr, `batchling: ${(error as Error).message}\n${JOBS_USAGE}\n`);
    return 2;
  }
  if (command === "help") {
    await write(process.stdout, JOBS_HELP_TEXT + "\n");
    return 0;
  }
  try {
    const state = loadState(command.stateFile);
    if (command.action === "status") {
      await write(process.stdout, statusText(command.stateFile, state));
    } else {
      const text = exportResults(loadResults(state).results, command.format);
      await write(process.stdout, text.endsWith("\n") ? text : text + "\n");
    }
    return 0;
  } catch (error) {
    if (error instanceof JobsError) {
      await write(process.stderr, `batchling: ${error.message}\n`);
      return 1;
    }
    throw error;
  }
}

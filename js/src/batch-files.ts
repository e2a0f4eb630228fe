// A run's files: the state file (header and journal, read and checked by the core), the
// results log and result files, line reading, and the JSON / CSV export.
import { closeSync, createReadStream, existsSync, fstatSync, mkdirSync, openSync, readFileSync, readSync, renameSync, appendFileSync, writeSync } from "node:fs";
import { once } from "node:events";
import { dirname, join } from "node:path";
import { coreAnswer } from "./core-errors.js";
import { loadJobsBackend } from "./engine.js";
import { BatchlingError } from "./errors.js";
import type { JobSource, RunState, RunSummary } from "./generated/core.js";
import type { JournalStore } from "./storage.js";
import type { JobResult } from "./batch-types.js";


/**
 * The state file, as JSON lines: a header line (`resultsDir`, the number of jobs, the ids of
 * those added one by one, each source: a source's jobs are its lines, not listed) written atomically
 * (temporary file + rename) when a run starts, then one line per engine journal record,
 * appended after each submission and each batch that ends. Appending keeps every save
 * proportional to what it records: rewriting the whole state per save made a run quadratic
 * (BENCHMARKS.md). A crash can tear only the last line, which the next run reports and skips;
 * answers are not kept here but in the results directory.
 */
export type StateFile = RunState;

/** Read a run's state file (read by the core's rules, core/src/host/run_state.rs). Throws
 * `ERR_BATCHLING_INVALID_STATE` on a file that is not one. */
export function readStateFile(path: string): StateFile {
  return coreAnswer<{ state: RunState }>(loadJobsBackend().jobReadState(readFileSync(path, "utf8"))).state;
}

/** A state file's header (its first line), read and checked by the core without the journal
 * that follows it (its `journal` is empty): a resume at a million jobs reads 134 MB otherwise. */
export function readStateHeader(path: string): StateFile {
  return coreAnswer<{ state: RunState }>(loadJobsBackend().jobReadState(firstLine(path).text)).state;
}

/** The first line of a file, and the byte offset just after it (its newline). */
function firstLine(path: string): { text: string; end: number } {
  const fd = openSync(path, "r");
  try {
    const chunk = Buffer.allocUnsafe(1 << 16);
    const parts: Buffer[] = [];
    let position = 0;
    for (let read = readSync(fd, chunk, 0, chunk.length, position); read > 0; read = readSync(fd, chunk, 0, chunk.length, position)) {
      const nl = chunk.subarray(0, read).indexOf(0x0a);
      if (nl !== -1) {
        parts.push(Buffer.from(chunk.subarray(0, nl)));
        return { text: Buffer.concat(parts).toString("utf8"), end: position + nl + 1 };
      }
      parts.push(Buffer.from(chunk.subarray(0, read)));
      position += read;
    }
    return { text: Buffer.concat(parts).toString("utf8"), end: position };
  } finally {
    closeSync(fd);
  }
}

export class StateFileJournal implements JournalStore {
  constructor(
    readonly path: string,
    readonly resultsDir: string,
    /** The ids of the jobs added one by one (not from a source). */
    readonly jobIds: string[],
    readonly sources: JobSource[],
  ) {}

  /** Answers are not kept here: the engine indexes none. */
  readonly keepsAnswers = false;

  async load(consume: (text: string) => void): Promise<void> {
    // (Re)write the header with this run's jobs, keeping the journal: once per run. The journal
    // is copied and handed to the engine 1 MiB at a time, never held whole.
    const journalStart = existsSync(this.path) ? firstLine(this.path).end : -1;
    if (journalStart >= 0) readStateHeader(this.path); // refuses a file that is not a state file
    mkdirSync(dirname(this.path), { recursive: true });
    const header = coreAnswer<{ line: string }>(loadJobsBackend().jobStateHeader(this.resultsDir, JSON.stringify(this.jobIds), JSON.stringify(this.sources))).line;
    const tmp = `${this.path}.${process.pid}.tmp`;
    const out = openSync(tmp, "w", 0o600);
    try {
      writeSync(out, header + "\n");
      if (journalStart >= 0) copyJournal(this.path, journalStart, out, consume);
    } finally {
      closeSync(out);
    }
    renameSync(tmp, this.path);
  }

  read(): string {
    throw new BatchlingError("ERR_BATCHLING_INTERNAL", "the state file keeps no answers to read");
  }

  async append(lines: string[]): Promise<void> {
    // Answers live in the results directory.
    const kept = lines.filter((line) => loadJobsBackend().jobStateKeeps(line));
    if (kept.length > 0) appendFileSync(this.path, kept.join("\n") + "\n");
  }
}

/** Copies `path` from byte `start` to `out`, handing `consume` the same bytes as chunks of whole
 * lines. A torn last line (a crash while it was appended) gets its newline, so that the next
 * append starts a line; the engine reports it as damaged and goes on. */
function copyJournal(path: string, start: number, out: number, consume: (text: string) => void): void {
  const fd = openSync(path, "r");
  try {
    const chunk = Buffer.allocUnsafe(1 << 20);
    let carry: Buffer | undefined;
    let position = start;
    for (let read = readSync(fd, chunk, 0, chunk.length, position); read > 0; read = readSync(fd, chunk, 0, chunk.length, position)) {
      position += read;
      const bytes = chunk.subarray(0, read);
      writeSync(out, bytes);
      const last = bytes.lastIndexOf(0x0a);
      if (last === -1) {
        carry = carry ? Buffer.concat([carry, bytes]) : Buffer.from(bytes);
        continue;
      }
      const whole = bytes.subarray(0, last + 1);
      consume((carry ? Buffer.concat([carry, whole]) : whole).toString("utf8"));
      carry = last + 1 < read ? Buffer.from(bytes.subarray(last + 1)) : undefined;
    }
    if (carry && carry.length > 0) {
      writeSync(out, "\n");
      consume(carry.toString("utf8") + "\n");
    }
  } finally {
    closeSync(fd);
  }
}

/** A job's result file name in the results directory (the core's rule: ids are sanitised,
 * and disambiguated by a hash when sanitising changed them). */
export function resultFileName(id: string): string {
  return loadJobsBackend().jobResultFileName(id);
}


/** The results a run's result files hold (each job's file text, or null where there is none),
 * read by the core (files from before the spec's names, `id` and `responseText`, are read under
 * the new ones) with their summary. A file that is not JSON throws
 * `ERR_BATCHLING_INVALID_RESULT`, its `index` the job's position. */
export function readResultFiles(texts: (string | null)[]): { summary: RunSummary; results: (JobResult | null)[] } {
  const answer = JSON.parse(loadJobsBackend().jobSummarizeResults(JSON.stringify(texts))) as
    | { ok: true; summary: RunSummary; results: (JobResult | null)[] }
    | { ok: false; code: string; index: number; error: string };
  if (!answer.ok) throw Object.assign(new BatchlingError(answer.code, answer.error), { index: answer.index });
  return answer;
}

/** The results log in a run's results directory: one result per line, in the order they came. */
export const RESULTS_LOG = "results.jsonl";

/** Calls `fn` with each non-blank line of `path` (none if it does not exist), reading 1 MiB at a
 * time. A last line without its newline is not passed: it is returned (its offset and length)
 * as torn, a write a crash cut short. */
export function forEachLineSync(path: string, fn: (text: string, lineNo: number) => void): { offset: number; bytes: number } | null {
  if (!existsSync(path)) return null;
  const fd = openSync(path, "r");
  try {
    const chunk = Buffer.allocUnsafe(1 << 20);
    let carry: Buffer[] = [];
    let position = 0;
    let lineStart = 0;
    let lineNo = 0;
    for (let read = readSync(fd, chunk, 0, chunk.length, position); read > 0; read = readSync(fd, chunk, 0, chunk.length, position)) {
      let from = 0;
      for (let nl = chunk.indexOf(0x0a, from); nl !== -1 && nl < read; nl = chunk.indexOf(0x0a, from)) {
        const piece = chunk.subarray(from, nl);
        const text = (carry.length ? Buffer.concat([...carry, piece]) : piece).toString("utf8");
        carry = [];
        lineNo++;
        if (text.trim() !== "") fn(text, lineNo);
        from = nl + 1;
        lineStart = position + from;
      }
      if (from < read) carry.push(Buffer.from(chunk.subarray(from, read)));
      position += read;
    }
    if (position > lineStart && Buffer.concat(carry).toString("utf8").trim() !== "") return { offset: lineStart, bytes: position - lineStart };
    return null;
  } finally {
    closeSync(fd);
  }
}

/** The non-blank lines of `path`, streamed (none if it does not exist); a torn last line (no
 * newline) is left out. */
export async function* readLines(path: string): AsyncGenerator<string> {
  if (!existsSync(path)) return;
  let carry: Buffer[] = [];
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 }) as AsyncIterable<Buffer>) {
    let from = 0;
    for (let nl = chunk.indexOf(0x0a); nl !== -1; nl = chunk.indexOf(0x0a, from)) {
      const piece = chunk.subarray(from, nl);
      const text = (carry.length ? Buffer.concat([...carry, piece]) : piece).toString("utf8");
      carry = [];
      from = nl + 1;
      if (text.trim() !== "") yield text;
    }
    if (from < chunk.length) carry.push(chunk.subarray(from));
  }
}

export function statSize(path: string): number {
  const fd = openSync(path, "r");
  try {
    return fstatSync(fd).size;
  } finally {
    closeSync(fd);
  }
}
/** The CSV export's columns: the JobResult fields, in the spec's order. */
export const EXPORT_COLUMNS = ["jobId", "ok", "response", "parsedResponse", "citations", "inputTokens", "outputTokens", "costUsd", "error"] as const;

/** Results as JSON (an array) or CSV (one row per job; nested values as JSON). */
export function exportResults(results: JobResult[], format: "json" | "csv"): string {
  if (format === "json") return JSON.stringify(results, null, 2);
  const columns = EXPORT_COLUMNS;
  const cell = (value: unknown): string => {
    const text = value === null || value === undefined ? "" : typeof value === "string" ? value : JSON.stringify(value);
    return /[",\n\r]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
  };
  return [columns.join(","), ...results.map((r) => columns.map((c) => cell(r[c])).join(","))].join("\n") + "\n";
}


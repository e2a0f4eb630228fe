// The `batchling` command line, parsed without side effects (no process, no fs): cli.ts runs it.
//
//   batchling path/to/script.mjs[:fn] [args...] [--batch-size N] [--batch-window-ms N]
//             [--poll-interval-ms N] [--dry-run] [--no-cache] [--cache-path P] [--redis URL]
//             [--host provider=baseUrl ...] [--name value ...]
//
// Rules:
// - The first positional token is the target `file[:export]`; the export defaults to `main`.
// - Recognised flags (below) configure batchify(); they take `--flag value` or `--flag=value`.
// - Every other positional token is passed to the function as a positional argument (a string).
// - Every other `--name value` / `--name=value` becomes a keyword argument (a string) in one
//   options object, its name converted from kebab-case to camelCase (`--max-items` → `maxItems`).
//   A bare `--name` (last, or followed by another `--…` token) becomes `true`. The last
//   occurrence of a repeated name wins.
// - `--` ends option parsing: every later token is positional, even `--x`.
// - `-h` / `--help` (before `--`) asks for the help text; no target is needed then.
// - Single-dash tokens other than `-h` (`-1`, `-`) are ordinary values, never options.
import type { HostSpec, ProviderId } from "./generated/core.js";

export interface CliTarget {
  /** The script path as written (resolved against the working directory by the CLI). */
  file: string;
  /** The export to call: the part after the last `:`, or `main`. */
  exportName: string;
}

export interface CliBatchifyOptions {
  batchSize?: number;
  batchWindowMs?: number;
  pollIntervalMs?: number;
  dryRun?: boolean;
  /** `false` for `--no-cache`, `{ path }` for `--cache-path`, `{ redis }` for `--redis`; absent
   * means batchify's default. */
  cache?: false | { path: string } | { redis: string };
  /** `--host provider=baseUrl`, in command-line order. */
  hosts?: HostSpec[];
}

export interface CliArgs {
  target: CliTarget;
  positional: string[];
  keywords: Record<string, string | true>;
  batchify: CliBatchifyOptions;
  help: boolean;
}

export const USAGE_LINE = "usage: batchling <script.mjs>[:<export>] [args...] [--<name> <value>...] [batching options]";

export const HELP_TEXT = `usage: batchling <script.mjs>[:<export>] [args...] [--<name> <value>...]
                 [--batch-size N] [--batch-window-ms N] [--poll-interval-ms N]
                 [--dry-run] [--no-cache | --cache-path P | --redis URL] [--host provider=baseUrl ...]

Runs an exported function of a script inside batchify(): the LLM SDK calls it makes
(OpenAI, Anthropic, Gemini) are collected into provider batch jobs, then answered as usual.

Target:
  <script.mjs>[:<export>]   path relative to the current directory; <export> defaults to main

Batching options:
  --batch-size N            requests per provider batch (integer >= 1, default 100)
  --batch-window-ms N       how long a queue's first request waits for others (integer >= 0, default 2000)
  --poll-interval-ms N      time between two polls of a provider batch (integer >= 1, default 10000)
  --dry-run                 queue and group as usual but send nothing; print what would be sent and its cost
  --no-cache                do not read or write the request cache
  --cache-path P            request cache file (default .batchling/cache.jsonl)
  --redis URL               share the request journal in Redis with every other process that uses it
                            (redis://host:port/db; needs ioredis and a Redis with appendonly yes), so a
                            request is batched once across them; replaces the cache file
  --host provider=baseUrl   a batch host besides the built-in ones (repeatable), e.g.
                            --host openai=https://api.novita.ai/openai/v1 for an OpenAI-compatible host
  -h, --help                show this help

Arguments for the function:
  other tokens              positional arguments, as strings, in order
  --<name> <value>          keyword arguments, as strings (also --<name>=<value>); kebab-case names become
                            camelCase (--max-items 5 -> { maxItems: "5" }); a bare --<name> is true
  --                        everything after it is positional
  The function is called as fn(...positional, keywords): the keywords object is passed as one extra,
  last argument only when at least one keyword was given.

Output:
  The function's return value is printed on stdout (JSON for objects, nothing for undefined).
  Progress (on a terminal), warnings and the dry-run report go to stderr.
  Exit status: 0 success, 1 failure, 2 usage error.

Job runs (a Batch's state file; nothing is sent):
  batchling jobs status <stateFile>                     jobs, ok, failed, pending and total cost
  batchling jobs results <stateFile> [--format csv|json] every finished job's result on stdout

The request cache (its journal; nothing is sent):
  batchling cache stats [--path P] [--max-age-days N] [--json]   answers kept and expired, batches to resume
  batchling cache prune [--path P] [--max-age-days N]            drop expired answers and superseded lines

The batching HTTP server, for clients in any language (see batchling serve --help):
  batchling serve [--port N] [--listen ADDR] [--token T] [batching options]

Live provider batches of a journal (list reads it; status and cancel call the provider):
  batchling batches list [--cache-path P | --state-file S]        batches with requests still unanswered
  batchling batches status [batchId] [--cache-path P | --state-file S]   their state and progress
  batchling batches cancel <batchId> [--cache-path P | --state-file S]   cancel one at the provider

Example:
  batchling examples/summarize.mjs:main --count=2 --dry-run`;

/** A malformed command line. The CLI prints the message (which includes the usage line) and exits with 2. */
export class CliUsageError extends Error {
  readonly code = "ERR_BATCHLING_USAGE";
  /** The problem alone, without the usage lines. */
  readonly problem: string;
  constructor(problem: string) {
    super(`${problem}\n${USAGE_LINE}\nRun \`batchling --help\` for details.`);
    this.name = "CliUsageError";
    this.problem = problem;
  }
}

type IntegerFlag = "--batch-size" | "--batch-window-ms" | "--poll-interval-ms";
const INTEGER_FLAGS: Record<IntegerFlag, { key: "batchSize" | "batchWindowMs" | "pollIntervalMs"; min: number }> = {
  "--batch-size": { key: "batchSize", min: 1 },
  "--batch-window-ms": { key: "batchWindowMs", min: 0 },
  "--poll-interval-ms": { key: "pollIntervalMs", min: 1 },
};
const SWITCHES = new Set(["--dry-run", "--no-cache"]);
const VALUE_EXAMPLES: Record<string, string> = {
  "--cache-path": ".batchling/cache.jsonl",
  "--redis": "redis://127.0.0.1:6379/0",
  "--host": "openai=https://api.novita.ai/openai/v1",
};
const IDENTIFIER = /^[A-Za-z_$][\w$]*$/;

/** `max-items` → `maxItems`; `dry_run` and `already` stay as written. */
export function kebabToCamel(name: string): string {
  return name.replace(/-+([A-Za-z0-9])/g, (_, c: string) => c.toUpperCase());
}

/** `a/b.mjs:run` → { file: "a/b.mjs", exportName: "run" }; `a/b.mjs` → export `main`. */
export function parseTarget(token: string): CliTarget {
  const colon = token.lastIndexOf(":");
  const after = colon === -1 ? "" : token.slice(colon + 1);
  // No `:`, or a colon that belongs to the path (`C:\x.mjs`, `file:///x.mjs`): the default export name.
  if (colon === -1 || /[\\/]/.test(after)) {
    return { file: token, exportName: "main" };
  }
  const file = token.slice(0, colon);
  if (file === "") throw new CliUsageError(`missing script path before ":${after}" in target "${token}"`);
  if (after === "") throw new CliUsageError(`missing export name after ":" in target "${token}" (omit ":" to call main)`);
  if (!IDENTIFIER.test(after)) {
    throw new CliUsageError(`export name "${after}" in target "${token}" is not a JavaScript identifier`);
  }
  return { file, exportName: after };
}

function parseInteger(flag: IntegerFlag, value: string): number {
  const { min } = INTEGER_FLAGS[flag];
  const n = /^\d+$/.test(value) ? Number(value) : NaN;
  if (!Number.isSafeInteger(n) || n < min) {
    throw new CliUsageError(`${flag} must be an integer >= ${min}, got "${value}"`);
  }
  return n;
}

/** `--no-cache`, `--cache-path` and `--redis` as given, checked together once the line is read. */
interface CacheChoice {
  noCache: boolean;
  cachePath?: string;
  redis?: string;
}

function applyCacheChoice(choice: CacheChoice, batchify: CliBatchifyOptions): void {
  if (choice.noCache && choice.cachePath !== undefined) {
    throw new CliUsageError("--cache-path and --no-cache cannot be used together");
  }
  if (choice.redis !== undefined && (choice.noCache || choice.cachePath !== undefined)) {
    const other = choice.noCache ? "--no-cache" : "--cache-path";
    throw new CliUsageError(`--redis and ${other} cannot be used together: with --redis the journal is in Redis`);
  }
  if (choice.noCache) batchify.cache = false;
  if (choice.cachePath !== undefined) batchify.cache = { path: choice.cachePath };
  // The URL's rules are the core's (batchify() refuses a bad one, naming cache.redis).
  if (choice.redis !== undefined) batchify.cache = { redis: choice.redis };
}

/** The core's refusal of `--redis`'s URL (it checks `cache.redis` when batchify() is built) as
 * the flag's usage error; `undefined` for any other error. */
export function redisFlagError(error: unknown): CliUsageError | undefined {
  const refused = error as { code?: unknown; option?: unknown; message?: unknown } | null;
  if (refused?.code !== "ERR_BATCHLING_INVALID_OPTION" || refused.option !== "cache.redis") return undefined;
  return new CliUsageError(`--redis ${String(refused.message).replace(/^invalid option `cache\.redis`: /, "")}`);
}

/**
 * A batching flag (`--batch-size`, `--host`, `--dry-run`, …) into `batchify`: how many tokens
 * after this one it used (0 or 1), or `undefined` when `flag` is not a batching flag.
 */
function takeBatchingFlag(
  flag: string,
  token: string,
  inlineValue: string | undefined,
  next: string | undefined,
  batchify: CliBatchifyOptions,
  cache: CacheChoice,
): number | undefined {
  if (flag in INTEGER_FLAGS || flag === "--cache-path" || flag === "--host" || flag === "--redis") {
    let value = inlineValue;
    let used = 0;
    if (value === undefined) {
      if (next === undefined) throw new CliUsageError(`${flag} needs a value, e.g. ${flag} ${VALUE_EXAMPLES[flag] ?? "100"}`);
      value = next;
      used = 1;
    }
    if (flag === "--host") {
      const sep = value.indexOf("=");
      const provider = value.slice(0, sep);
      const baseUrl = value.slice(sep + 1);
      if (sep <= 0 || baseUrl === "") {
        throw new CliUsageError(`--host needs provider=baseUrl, e.g. --host ${VALUE_EXAMPLES["--host"]}; got "${value}"`);
      }
      // The engine checks the name when batchify() builds it, listing the providers it knows.
      (batchify.hosts ??= []).push({ provider: provider as ProviderId, baseUrl });
    } else if (flag === "--redis") {
      if (value === "") throw new CliUsageError(`--redis needs a URL, e.g. --redis ${VALUE_EXAMPLES["--redis"]}`);
      cache.redis = value;
    } else if (flag === "--cache-path") {
      if (value === "") throw new CliUsageError("--cache-path needs a non-empty path");
      cache.cachePath = value;
    } else {
      const f = flag as IntegerFlag;
      batchify[INTEGER_FLAGS[f].key] = parseInteger(f, value);
    }
    return used;
  }
  if (SWITCHES.has(flag)) {
    if (inlineValue !== undefined) throw new CliUsageError(`${flag} takes no value, got "${token}"`);
    if (flag === "--dry-run") batchify.dryRun = true;
    else cache.noCache = true;
    return 0;
  }
  return undefined;
}

/**
 * Parse the arguments after `batchling` (i.e. `process.argv.slice(2)`). Throws CliUsageError.
 * `-h` / `--help` wins over any other problem on the line: `help` is then true.
 */
export function parseCliArgs(argv: readonly string[]): CliArgs {
  try {
    return parse(argv);
  } catch (error) {
    const end = argv.indexOf("--");
    const options = end === -1 ? argv : argv.slice(0, end);
    if (options.includes("-h") || options.includes("--help")) {
      return { target: { file: "", exportName: "main" }, positional: [], keywords: {}, batchify: {}, help: true };
    }
    throw error;
  }
}

function parse(argv: readonly string[]): CliArgs {
  let targetToken: string | undefined;
  const positional: string[] = [];
  const keywords: Record<string, string | true> = {};
  const batchify: CliBatchifyOptions = {};
  let help = false;
  const cacheChoice: CacheChoice = { noCache: false };
  let optionsEnded = false;

  const addPositional = (token: string): void => {
    if (targetToken === undefined) targetToken = token;
    else positional.push(token);
  };

  for (let i = 0; i < argv.length; i++) {
    const token = argv[i]!;
    if (optionsEnded) {
      addPositional(token);
      continue;
    }
    if (token === "--") {
      optionsEnded = true;
      continue;
    }
    if (token === "-h" || token === "--help") {
      help = true;
      continue;
    }
    if (!token.startsWith("--")) {
      addPositional(token);
      continue;
    }

    const eq = token.indexOf("=");
    const flag = eq === -1 ? token : token.slice(0, eq);
    const inlineValue = eq === -1 ? undefined : token.slice(eq + 1);
    // The value of `--flag value`: the next token, unless there is none or it is another option.
    const next = argv[i + 1];
    const nextIsValue = next !== undefined && !next.startsWith("--");

    const taken = takeBatchingFlag(flag, token, inlineValue, nextIsValue ? next : undefined, batchify, cacheChoice);
    if (taken !== undefined) {
      i += taken;
      continue;
    }

    // A keyword argument for the function.
    const raw = flag.slice(2);
    if (raw === "" || raw.startsWith("-")) throw new CliUsageError(`malformed option "${token}"`);
    const name = kebabToCamel(raw);
    if (name === "__proto__") throw new CliUsageError(`"${token}" cannot be used as a keyword argument name`);
    if (targetToken === undefined) {
      throw new CliUsageError(`keyword argument "${flag}" comes before the script: put the target first`);
    }
    if (inlineValue !== undefined) {
      keywords[name] = inlineValue;
    } else if (nextIsValue) {
      keywords[name] = next;
      i++;
    } else {
      keywords[name] = true;
    }
  }

  applyCacheChoice(cacheChoice, batchify);

  if (targetToken === undefined) {
    if (help) return { target: { file: "", exportName: "main" }, positional, keywords, batchify, help };
    throw new CliUsageError("missing the script to run, e.g. batchling path/to/script.mjs:main");
  }
  if (targetToken === "") throw new CliUsageError("the script path is empty");
  return { target: parseTarget(targetToken), positional, keywords, batchify, help };
}

export interface ServeArgs {
  port: number;
  listen: string;
  /** `--token`, else the `BATCHLING_SERVE_TOKEN` environment variable (kept out of `ps`). */
  token?: string;
  batchify: CliBatchifyOptions;
  help: boolean;
}

export const SERVE_HELP_TEXT = `usage: batchling serve [--port N] [--listen ADDR] [--token T] [batching options]

An HTTP server that batches what clients in any language send: point an SDK's base URL at
http://127.0.0.1:8787/<provider>/… (e.g. /openai/v1, /anthropic, /gemini) and its calls become
provider batch jobs; what cannot be batched (streaming, GETs, files) passes through unchanged.

Server options:
  --port N                  port to listen on (0-65535, default 8787; 0 picks a free one)
  --listen ADDR             address to listen on (default 127.0.0.1); any non-loopback address needs --token
  --token T                 clients must send it in the x-batchling-token header (never sent upstream);
                            also read from BATCHLING_SERVE_TOKEN

Batching options:
  --batch-size N            requests per provider batch (default 100)
  --batch-window-ms N       how long a queue's first request waits for others (default 2000)
  --poll-interval-ms N      time between two polls of a provider batch (default 10000)
  --dry-run                 send nothing: callers get synthetic 200s
  --no-cache | --cache-path P   the request cache (default .batchling/cache.jsonl)
  --redis URL               share the journal in Redis across replicas (redis://host:port/db; needs
                            ioredis and appendonly yes): a request sent to two replicas is batched once
  --host provider=baseUrl   replace a provider's upstream (repeatable), e.g. --host openai=http://127.0.0.1:9000/v1

Endpoints: GET /healthz, GET /metrics (Prometheus text). SIGINT / SIGTERM stop it; requests in
batches stay in the journal, and a client's retry after a restart is answered from it.`;

/** `batchling serve …` (the arguments after `serve`). Throws CliUsageError. */
export function parseServeArgs(argv: readonly string[], env: Record<string, string | undefined> = {}): ServeArgs {
  const batchify: CliBatchifyOptions = {};
  const cacheChoice: CacheChoice = { noCache: false };
  const args: ServeArgs = { port: 8787, listen: "127.0.0.1", batchify, help: false };
  const envToken = env.BATCHLING_SERVE_TOKEN;
  if (envToken !== undefined && envToken !== "") args.token = envToken;
  for (let i = 0; i < argv.length; i++) {
    const token = argv[i]!;
    if (token === "-h" || token === "--help") {
      args.help = true;
      continue;
    }
    if (!token.startsWith("--")) throw new CliUsageError(`batchling serve takes no positional argument, got "${token}"`);
    const eq = token.indexOf("=");
    const flag = eq === -1 ? token : token.slice(0, eq);
    const inlineValue = eq === -1 ? undefined : token.slice(eq + 1);
    const next = argv[i + 1];
    const value = (): string => {
      if (inlineValue !== undefined) return inlineValue;
      if (next === undefined || next.startsWith("--")) throw new CliUsageError(`${flag} needs a value`);
      i++;
      return next;
    };
    if (flag === "--port") {
      const raw = value();
      const port = /^\d+$/.test(raw) ? Number(raw) : NaN;
      if (!(port >= 0 && port <= 65535)) throw new CliUsageError(`--port must be an integer from 0 to 65535, got "${raw}"`);
      args.port = port;
      continue;
    }
    if (flag === "--listen") {
      const listen = value();
      if (listen === "") throw new CliUsageError("--listen needs an address, e.g. --listen 127.0.0.1");
      args.listen = listen;
      continue;
    }
    if (flag === "--token") {
      // An empty token is the core's to refuse, with the other start-up checks.
      args.token = value();
      continue;
    }
    const taken = takeBatchingFlag(flag, token, inlineValue, next !== undefined && !next.startsWith("--") ? next : undefined, batchify, cacheChoice);
    if (taken === undefined) throw new CliUsageError(`unknown option "${flag}" for batchling serve (see batchling serve --help)`);
    i += taken;
  }
  applyCacheChoice(cacheChoice, batchify);
  return args;
}

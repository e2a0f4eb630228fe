// The fleet protocol's store in Redis (issue 17). The rules live in the core's `FleetMember`
// (core/src/fleet): it emits store actions, and this executor runs each against Redis
// atomically, as one command or one Lua script, and hands back the outcome the core reads. It
// decides nothing: what to claim, renew, write or release is the core's.
//
// The Redis client (ioredis) is an optional peer dependency, loaded only when a store is opened.
// Every action is safe to run twice (a claim finding its own token counts as taken), so an
// action whose connection dropped is sent again once Redis is back, for up to `retryForMs`;
// after that it fails with ERR_BATCHLING_REDIS_UNAVAILABLE. There is no fallback without the
// store: a request sent without its claim could be paid twice.
//
// batchify({ cache: { redis } }) (batchify.ts) opens it and runs the engine's store outputs here.
import "./engine-node.js";
import { loadEngineModule, type FleetMemberEngine } from "./engine.js";
import { refusalError, type CoreRefusal } from "./core-errors.js";
import { BatchlingError, InvalidOptionError } from "./errors.js";
import type { FleetEvent, FleetMemberConfig, FleetOutput, StoreAction, StoreOutcome } from "./generated/core.js";

export type { FleetEvent, FleetMemberConfig, FleetOutput, StoreAction, StoreOutcome };

/** The optional Redis client is not installed. */
export class RedisClientMissingError extends BatchlingError {
  constructor(cause: unknown) {
    super(
      "ERR_BATCHLING_REDIS_CLIENT",
      "the Redis journal needs the ioredis package, which is not installed: run `npm install ioredis`",
      { cause },
    );
  }
}

/** Redis cannot be reached (or stopped answering): nothing is sent without the journal. */
export class RedisUnavailableError extends BatchlingError {
  constructor(what: string, cause?: unknown) {
    super("ERR_BATCHLING_REDIS_UNAVAILABLE", `Redis is unavailable: ${what}; nothing was sent without the journal (start Redis or fix the URL, then retry)`, { cause });
  }
}

/** A warning about the Redis set-up (`code` is stable). */
export interface RedisWarning {
  code: "BATCHLING_REDIS_NOT_PERSISTENT" | "BATCHLING_REDIS_PERSISTENCE_UNKNOWN";
  message: string;
}

export interface FleetRedisOptions {
  /** `redis://[user:password@]host:port[/db]` (or `rediss://`). Default `redis://127.0.0.1:6379`. */
  url?: string;
  /** Put before every key; default `batchling:`. */
  prefix?: string;
  /** How long the first connection may take. Default 2000. */
  connectTimeoutMs?: number;
  /** How long an action waits for Redis to come back before it fails. Default 10000. */
  retryForMs?: number;
  /** Where set-up warnings go; default `process.emitWarning(message, { type: "BatchlingWarning", code })`. */
  onWarning?: (warning: RedisWarning) => void;
}

// KEYS: the claim key. ARGV: token, lease (ms). → {1} claimed (or already ours: the retry of a
// claim whose reply was lost), {0, holder} held by another.
const CLAIM = `
local ok = redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2])
if ok then return {1} end
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then return {1} end
return {0, holder}`;

// KEYS: claim keys. ARGV: lease (ms), then one token per key. → the keys renewed.
const RENEW = `
local kept = {}
for i, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[i + 1] then
    redis.call('PEXPIRE', key, ARGV[1])
    kept[#kept + 1] = key
  end
end
return kept`;

// KEYS: n claim keys, then the record keys. ARGV: n, ttl (ms), n tokens, then one value per
// record. → the claim keys not holding their token (nothing written), or {} (all written).
const WRITE_IF_OWNER = `
local n = tonumber(ARGV[1])
local lost = {}
for i = 1, n do
  if redis.call('GET', KEYS[i]) ~= ARGV[2 + i] then lost[#lost + 1] = KEYS[i] end
end
if #lost > 0 then return lost end
for j = n + 1, #KEYS do
  redis.call('SET', KEYS[j], ARGV[2 + j], 'PX', ARGV[2])
end
return lost`;

// KEYS: the claim key. ARGV: token. Deletes it only while it holds the token.
const RELEASE = `
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1`;

/** The part of ioredis this executor uses. */
interface RedisClient {
  status: string;
  connect(): Promise<void>;
  disconnect(): void;
  quit(): Promise<unknown>;
  on(event: "error", listener: (error: Error) => void): unknown;
  once(event: "ready", listener: () => void): unknown;
  defineCommand(name: string, definition: { numberOfKeys?: number; lua: string }): void;
  call(command: string, ...args: (string | number)[]): Promise<unknown>;
  mget(...keys: string[]): Promise<(string | null)[]>;
  set(key: string, value: string, px: "PX", ms: number): Promise<unknown>;
  config(op: "GET", name: string): Promise<unknown>;
  [script: string]: unknown;
}

type ScriptFn = (...args: (string | number)[]) => Promise<unknown>;

const PREFIX_RE = /^[\x21-\x7e]{0,64}$/;

async function loadRedisClass(): Promise<new (url: string, options: object) => RedisClient> {
  let mod: { Redis?: unknown; default?: unknown };
  try {
    mod = (await import("ioredis")) as { Redis?: unknown; default?: unknown };
  } catch (error) {
    throw new RedisClientMissingError(error);
  }
  const Redis = mod.Redis ?? (mod.default as { Redis?: unknown } | undefined)?.Redis ?? mod.default;
  if (typeof Redis !== "function") throw new RedisClientMissingError(new Error("ioredis exports no Redis class"));
  return Redis as new (url: string, options: object) => RedisClient;
}

/** Open the store: connects, checks persistence (a warning when `appendonly` is not `yes`). */
export async function openFleetRedis(options: FleetRedisOptions = {}): Promise<FleetRedisStore> {
  const url = options.url ?? "redis://127.0.0.1:6379";
  if (typeof url !== "string" || !/^rediss?:\/\//.test(url)) {
    throw new InvalidOptionError("redis", "must be a redis:// or rediss:// URL");
  }
  const prefix = options.prefix ?? "batchling:";
  if (typeof prefix !== "string" || !PREFIX_RE.test(prefix)) {
    throw new InvalidOptionError("redis.prefix", "must be 0 to 64 visible ASCII characters, no spaces");
  }
  const connectTimeoutMs = positive("redis.connectTimeoutMs", options.connectTimeoutMs, 2000);
  const retryForMs = positive("redis.retryForMs", options.retryForMs, 10_000);
  const warn =
    options.onWarning ??
    ((w: RedisWarning) => process.emitWarning(w.message, { type: "BatchlingWarning", code: w.code }));

  const Redis = await loadRedisClass();
  const client = new Redis(url, {
    lazyConnect: true,
    connectTimeout: connectTimeoutMs,
    // While Redis is away, commands wait (offline queue) and reconnects go on every 100 ms; an
    // action gives up after `retryForMs` (see FleetRedisStore.execute).
    retryStrategy: () => 100,
    maxRetriesPerRequest: null,
    enableOfflineQueue: true,
  });
  let lastError: Error | undefined;
  client.on("error", (error) => {
    lastError = error;
  });
  const where = redactedUrl(url);
  try {
    // A refused first attempt is tried again (every 100 ms, the retry strategy) until
    // `connectTimeoutMs`: a Redis that is restarting is not unreachable yet.
    const ready = new Promise<void>((resolve) => client.once("ready", () => resolve()));
    client.connect().catch(() => {});
    await withDeadline(ready, connectTimeoutMs, () => `no connection to ${where} within ${connectTimeoutMs} ms`);
  } catch (error) {
    client.disconnect();
    const why = lastError ? ` (${lastError.message})` : "";
    throw new RedisUnavailableError(`cannot connect to ${where} within ${connectTimeoutMs} ms${why}`, lastError ?? error);
  }
  client.defineCommand("batchlingClaim", { numberOfKeys: 1, lua: CLAIM });
  client.defineCommand("batchlingRelease", { numberOfKeys: 1, lua: RELEASE });
  client.defineCommand("batchlingRenew", { lua: RENEW });
  client.defineCommand("batchlingWriteIfOwner", { lua: WRITE_IF_OWNER });

  let appendonly: string | undefined;
  try {
    const reply = (await withDeadline(client.config("GET", "appendonly"), connectTimeoutMs, () => "CONFIG GET timed out")) as string[];
    appendonly = reply[1];
  } catch (error) {
    warn({
      code: "BATCHLING_REDIS_PERSISTENCE_UNKNOWN",
      message: `batchling: could not check Redis persistence at ${where} (CONFIG GET appendonly: ${(error as Error).message}); claims and leases survive a Redis restart only with appendonly yes`,
    });
  }
  if (appendonly !== undefined && appendonly !== "yes") {
    warn({
      code: "BATCHLING_REDIS_NOT_PERSISTENT",
      message: `batchling: Redis at ${where} runs with appendonly ${appendonly}: a Redis restart would forget claims, leases and intents, and a request could be paid twice; set appendonly yes`,
    });
  }
  return new FleetRedisStore(client, prefix, retryForMs, () => lastError);
}

/** Executes the core's store actions in Redis. */
export class FleetRedisStore {
  readonly prefix: string;
  readonly #client: RedisClient;
  readonly #retryForMs: number;
  readonly #lastError: () => Error | undefined;
  #closed = false;

  constructor(client: RedisClient, prefix: string, retryForMs: number, lastError: () => Error | undefined) {
    this.#client = client;
    this.prefix = prefix;
    this.#retryForMs = retryForMs;
    this.#lastError = lastError;
  }

  /**
   * Run one action atomically and answer its outcome. `answerOf(fingerprint)` gives the body a
   * `putAnswer` stores (the host holds it; the core never sees answers). A `read` answers every
   * value as stored, answers included, for the host to keep.
   */
  async execute(op: StoreAction, answerOf?: (fingerprint: string) => string | undefined): Promise<StoreOutcome> {
    if (this.#closed) throw new BatchlingError("ERR_BATCHLING_CLOSED", "the Redis store is closed");
    const deadline = Date.now() + this.#retryForMs;
    let last: unknown;
    const attempts = async (): Promise<StoreOutcome> => {
      for (;;) {
        try {
          return await this.#run(op, answerOf);
        } catch (error) {
          if (error instanceof BatchlingError) throw error;
          if (isRefusal(error)) {
            throw new BatchlingError("ERR_BATCHLING_REDIS", `Redis refused ${op.kind}: ${(error as Error).message}`, { cause: error });
          }
          last = error;
          if (this.#closed || Date.now() >= deadline) throw error;
          await new Promise((resolve) => setTimeout(resolve, 100));
        }
      }
    };
    const run = attempts();
    try {
      return await withDeadline(run, this.#retryForMs, () => `no answer within ${this.#retryForMs} ms`);
    } catch (error) {
      if (error instanceof BatchlingError && error.code !== "ERR_BATCHLING_REDIS_UNAVAILABLE") throw error;
      run.catch(() => {}); // it may still settle once Redis is back: every action is safe to repeat
      const cause = (last ?? this.#lastError() ?? error) as Error;
      throw new RedisUnavailableError(`${op.kind} got no answer within ${this.#retryForMs} ms (${cause.message})`, cause);
    }
  }

  async #run(op: StoreAction, answerOf?: (fingerprint: string) => string | undefined): Promise<StoreOutcome> {
    const p = this.prefix;
    const script = (name: string) => (this.#client[name] as ScriptFn).bind(this.#client);
    switch (op.kind) {
      case "claim": {
        const reply = (await script("batchlingClaim")(p + op.key, op.token, op.leaseMs)) as [number, string?];
        return reply[0] === 1 ? { kind: "claimed" } : { kind: "heldBy", owner: reply[1] ?? "" };
      }
      case "renew": {
        if (op.claims.length === 0) return { kind: "renewed", keys: [] };
        const keys = op.claims.map((c) => p + c.key);
        const kept = (await script("batchlingRenew")(keys.length, ...keys, op.leaseMs, ...op.claims.map((c) => c.token))) as string[];
        return { kind: "renewed", keys: kept.map((k) => k.slice(p.length)) };
      }
      case "writeIfOwner": {
        if (op.records.length === 0 && op.claims.length === 0) return { kind: "written" };
        const keys = [...op.claims.map((c) => p + c.key), ...op.records.map((r) => p + r.key)];
        const args = [op.claims.length, op.ttlMs, ...op.claims.map((c) => c.token), ...op.records.map((r) => r.value)];
        const lost = (await script("batchlingWriteIfOwner")(keys.length, ...keys, ...args)) as string[];
        return lost.length === 0 ? { kind: "written" } : { kind: "notOwner", lost: lost.map((k) => k.slice(p.length)) };
      }
      case "read": {
        if (op.keys.length === 0) return { kind: "values", values: [] };
        return { kind: "values", values: await this.#client.mget(...op.keys.map((k) => p + k)) };
      }
      case "release":
        await script("batchlingRelease")(p + op.key, op.token);
        return { kind: "done" };
      case "putAnswer": {
        const body = answerOf?.(op.fingerprint);
        if (body === undefined) {
          throw new BatchlingError("ERR_BATCHLING_FLEET", `putAnswer for ${op.fingerprint}: the host holds no answer for it`);
        }
        await this.#client.set(p + op.key, body, "PX", op.ttlMs);
        return { kind: "done" };
      }
      default:
        throw new BatchlingError("ERR_BATCHLING_FLEET", `unknown store action ${JSON.stringify(op)}`);
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    try {
      await withDeadline(this.#client.quit(), 1000, () => "quit timed out");
    } catch {
      this.#client.disconnect();
    }
  }
}

/** A fleet member (the core's `FleetMember`) with typed events and outputs. */
export class FleetMember {
  readonly #engine: FleetMemberEngine;

  constructor(config: FleetMemberConfig) {
    const { NativeFleetMember } = loadEngineModule();
    try {
      this.#engine = new NativeFleetMember(JSON.stringify(config));
    } catch (error) {
      const m = /^invalid option `([^`]+)`: ([\s\S]*)$/.exec((error as Error).message);
      if (m) throw new InvalidOptionError(m[1]!, m[2]!);
      throw error;
    }
  }

  /** The outputs the event led to; a refused event throws its typed error. */
  handle(nowMs: number, event: FleetEvent): FleetOutput[] {
    const answer = JSON.parse(this.#engine.handle(nowMs, JSON.stringify(event))) as
      | { ok: true; outputs: FleetOutput[] }
      | (CoreRefusal & { outputs: FleetOutput[] });
    if (!answer.ok) throw refusalError(answer);
    return answer.outputs;
  }

  nextDeadline(): number | null {
    return this.#engine.nextDeadline();
  }
}

/** A reply error Redis would give again (a script bug, a wrong type), not a passing state. */
function isRefusal(error: unknown): boolean {
  if (!(error instanceof Error) || error.name !== "ReplyError") return false;
  return !/^(LOADING|BUSY|TRYAGAIN|MASTERDOWN|READONLY|CLUSTERDOWN)\b/.test(error.message);
}

function positive(option: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== "number" || !Number.isFinite(value) || value <= 0) {
    throw new InvalidOptionError(option, `must be a number of ms > 0, got ${String(value)}`);
  }
  return value;
}

/** The URL without its password (it names where Redis is in messages, never a secret). */
function redactedUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = "***";
    return u.toString();
  } catch {
    return "the Redis URL";
  }
}

function withDeadline<T>(promise: Promise<T>, ms: number, what: () => string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new RedisUnavailableError(what())), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

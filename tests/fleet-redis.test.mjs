// The fleet protocol with a real Redis as its store: the core's FleetMember (through the
// binding, native or wasm) decides, js/src/fleet-redis.ts executes each store action in a
// redis-server these tests start on a free port (append-only persistence, in a temporary
// directory). A small simulated provider creates batches by tag, finds them by tag, and answers
// every line after some ms; the workers here are the hosts, with real timers.
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { Redis } from "ioredis";
import { FleetMember, openFleetRedis, RedisUnavailableError } from "../dist/fleet-redis.js";
import { freePort, startRedis } from "./support/redis.mjs";

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const DIST = join(dirname(fileURLToPath(import.meta.url)), "..", "dist", "fleet-redis.js");

// The credential every simulated caller sends: it must never reach Redis.
const API_KEY = "sk-test-FLEETSECRET0123456789";
const AUTH_HEADER = `Authorization: Bearer ${API_KEY}`;

const fingerprint = (text) => createHash("sha256").update(`${API_KEY}\n${text}`).digest("hex");
const answerFor = (fp) => JSON.stringify({ id: `resp_${fp.slice(0, 12)}`, choices: [{ message: { content: `the answer to ${fp}` } }] });

/** The provider: batches by id with their tag and lines; every line ever created is counted. */
class Provider {
  constructor(durationMs) {
    this.durationMs = durationMs;
    this.batches = new Map();
    this.lineCount = new Map();
    this.next = 1;
  }
  async create(tag, fingerprints, headers) {
    assert.equal(headers.authorization, `Bearer ${API_KEY}`, "the create carries the caller's key");
    await sleep(5);
    const id = `batch_${this.next++}`;
    this.batches.set(id, { tag, fingerprints: [...fingerprints], endsAt: Date.now() + this.durationMs });
    for (const fp of fingerprints) this.lineCount.set(fp, (this.lineCount.get(fp) ?? 0) + 1);
    return id;
  }
  async findByTag(tag) {
    await sleep(3);
    for (const [id, batch] of this.batches) if (batch.tag === tag) return id;
    return null;
  }
  async poll(id) {
    await sleep(2);
    const batch = this.batches.get(id);
    if (!batch || Date.now() < batch.endsAt) return null;
    return batch.fingerprints.map((fp) => [fp, answerFor(fp)]);
  }
}

/** One process of the fleet: a FleetMember, its store, its line and the batches it polls. */
class Worker {
  constructor(name, store, provider, timing) {
    this.name = name;
    this.store = store;
    this.provider = provider;
    this.member = new FleetMember({ owner: name, ...timing });
    this.held = new Map(); // fingerprint → answer body (from a batch or read from the store)
    this.line = new Set();
    this.requests = new Map();
    this.nextRequest = 1;
    this.timers = new Set();
    this.tickTimer = undefined;
    this.tickAt = null;
    this.cutTimer = undefined;
    this.polling = new Set();
    this.dead = false;
    this.errors = [];
  }

  ask(fp) {
    return new Promise((resolve) => {
      const request = this.nextRequest++;
      this.requests.set(request, { fp, resolve });
      this.feed({ kind: "arrive", request, fingerprint: fp });
    });
  }

  /** kill -9: every timer and pending callback is dropped; the unanswered callers' fingerprints. */
  kill() {
    this.dead = true;
    for (const t of this.timers) clearTimeout(t);
    clearTimeout(this.tickTimer);
    clearTimeout(this.cutTimer);
    return [...this.requests.values()];
  }

  later(ms, fn) {
    const t = setTimeout(() => {
      this.timers.delete(t);
      if (!this.dead) fn();
    }, Math.max(0, ms));
    this.timers.add(t);
    return t;
  }

  feed(event) {
    if (this.dead) return;
    let outputs;
    try {
      outputs = this.member.handle(Date.now(), event);
    } catch (error) {
      this.errors.push(error);
      return;
    }
    for (const output of outputs) this.act(output);
    const deadline = this.member.nextDeadline();
    if (deadline !== null && deadline !== this.tickAt) {
      clearTimeout(this.tickTimer);
      this.tickAt = deadline;
      this.tickTimer = setTimeout(() => {
        this.tickAt = null;
        this.feed({ kind: "tick" });
      }, Math.max(0, deadline - Date.now()));
    }
  }

  act(output) {
    switch (output.kind) {
      case "store":
        this.store.execute(output.op, (fp) => this.held.get(fp)).then(
          (outcome) => {
            if (this.dead) return;
            if (output.op.kind === "read") {
              output.op.keys.forEach((key, i) => {
                const value = outcome.values[i];
                if (key.startsWith("answer:") && value !== null) this.held.set(key.slice("answer:".length), value);
              });
            }
            this.feed({ kind: "storeOutcome", action: output.action, outcome });
          },
          (error) => this.errors.push(error),
        );
        break;
      case "enqueue":
        this.line.add(output.fingerprint);
        if (this.cutTimer === undefined) {
          this.cutTimer = this.later(25, () => {
            this.cutTimer = undefined;
            const fingerprints = [...this.line];
            this.line.clear();
            if (fingerprints.length > 0) this.feed({ kind: "cut", fingerprints });
          });
        }
        break;
      case "waitForAnswer":
        this.line.delete(output.fingerprint);
        break;
      case "createBatch":
        if (Date.now() > output.sendByMs) {
          this.feed({ kind: "createUnknown", tag: output.tag });
          break;
        }
        // The caller's key goes to the provider only, in the header.
        this.provider.create(output.tag, output.fingerprints, { authorization: `Bearer ${API_KEY}` }).then((batchId) => {
          if (this.dead) return;
          this.feed({ kind: "batchCreated", tag: output.tag, batchId });
          this.poll(batchId);
        });
        break;
      case "findBatch":
        this.provider.findByTag(output.tag).then((batchId) => this.feed({ kind: "batchFound", tag: output.tag, batchId }));
        break;
      case "resume":
        this.poll(output.batchId);
        break;
      case "answer": {
        const request = this.requests.get(output.request);
        assert.ok(request, `${this.name}: an answer for request ${output.request}, unknown or answered already`);
        assert.equal(request.fp, output.fingerprint);
        this.requests.delete(output.request);
        request.resolve(this.held.get(output.fingerprint));
        break;
      }
      case "scheduleTimer":
        break; // nextDeadline() after each call sets the one timer
      default:
        this.errors.push(new Error(`unknown output ${JSON.stringify(output)}`));
    }
  }

  poll(batchId) {
    if (this.polling.has(batchId)) return;
    this.polling.add(batchId);
    const round = async () => {
      const lines = await this.provider.poll(batchId);
      if (this.dead) return;
      if (lines === null) return void this.later(20, round);
      for (const [fp, body] of lines) {
        this.held.set(fp, body);
        this.feed({ kind: "batchAnswered", fingerprint: fp });
      }
    };
    this.later(20, round);
  }
}

const TIMING = { leaseMs: 900, graceMs: 200, pollMs: 40 };

async function allKeys(raw, prefix) {
  const keys = [];
  let cursor = "0";
  do {
    const [next, batch] = await raw.scan(cursor, "MATCH", `${prefix}*`, "COUNT", 500);
    cursor = next;
    keys.push(...batch);
  } while (cursor !== "0");
  return keys.sort();
}

/** No key, value or name in Redis holds the API key or an auth header. */
async function assertNoSecrets(raw) {
  const keys = await allKeys(raw, "");
  assert.ok(keys.length > 0);
  const values = keys.length ? await raw.mget(...keys) : [];
  keys.forEach((key, i) => {
    for (const text of [key, values[i] ?? ""]) {
      assert.ok(!text.includes(API_KEY), `${key} holds the API key`);
      assert.ok(!/authorization|bearer/i.test(text), `${key} holds an auth header: ${text}`);
    }
  });
  return keys.length;
}

function assertEveryLineOnce(provider, fingerprints) {
  for (const fp of fingerprints) assert.equal(provider.lineCount.get(fp), 1, `${fp.slice(0, 12)}… is in ${provider.lineCount.get(fp) ?? 0} batch lines`);
  assert.equal([...provider.lineCount.values()].reduce((a, b) => a + b, 0), fingerprints.length, "no other line was ever sent");
}

describe("fleet protocol on a real Redis", { timeout: 120_000 }, () => {
  let dir;
  let redis;
  let port;
  let raw;
  const stores = [];
  const open = async (options = {}) => {
    const store = await openFleetRedis({ url: `redis://127.0.0.1:${port}`, ...options });
    stores.push(store);
    return store;
  };

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "batchling-redis-"));
    port = await freePort();
    redis = await startRedis(port, dir);
    raw = new Redis({ port, host: "127.0.0.1", lazyConnect: true, retryStrategy: () => 100 });
    raw.on("error", () => {});
    await raw.connect();
  });

  after(async () => {
    for (const store of stores) await store.close();
    raw?.disconnect();
    await redis?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test("each store action in Redis: claim, renew, write-if-owner, read, release, put answer", async () => {
    const warnings = [];
    const store = await open({ prefix: "t1:", onWarning: (w) => warnings.push(w) });
    assert.deepEqual(warnings, [], "appendonly yes: no warning");

    // Claim: set if absent, with the lease as expiry; a second claimant learns the holder.
    assert.deepEqual(await store.execute({ kind: "claim", key: "req:a", token: "w1.1", leaseMs: 5000 }), { kind: "claimed" });
    assert.deepEqual(await store.execute({ kind: "claim", key: "req:a", token: "w2.7", leaseMs: 5000 }), { kind: "heldBy", owner: "w1.1" });
    // The same claim sent again (its reply lost) is still the claimant's.
    assert.deepEqual(await store.execute({ kind: "claim", key: "req:a", token: "w1.1", leaseMs: 5000 }), { kind: "claimed" });
    assert.equal(await raw.get("t1:req:a"), "w1.1");
    const pttl = await raw.pttl("t1:req:a");
    assert.ok(pttl > 4000 && pttl <= 5000, `lease as expiry, got ${pttl}`);

    // Renew: only keys still holding their token; the others are named by their absence.
    await store.execute({ kind: "claim", key: "req:b", token: "w2.2", leaseMs: 5000 });
    const renewed = await store.execute({
      kind: "renew",
      claims: [{ key: "req:a", token: "w1.1" }, { key: "req:b", token: "w1.9" }],
      leaseMs: 60_000,
    });
    assert.deepEqual(renewed, { kind: "renewed", keys: ["req:a"] });
    assert.ok((await raw.pttl("t1:req:a")) > 50_000);
    assert.ok((await raw.pttl("t1:req:b")) <= 5000, "another's claim keeps its expiry");

    // A renew after the lease lapsed renews nothing and never recreates the key.
    await store.execute({ kind: "claim", key: "req:short", token: "w1.3", leaseMs: 40 });
    await sleep(120);
    assert.deepEqual(await store.execute({ kind: "renew", claims: [{ key: "req:short", token: "w1.3" }], leaseMs: 60_000 }), { kind: "renewed", keys: [] });
    assert.equal(await raw.exists("t1:req:short"), 0);
    // …and so the next claimant takes it.
    assert.deepEqual(await store.execute({ kind: "claim", key: "req:short", token: "w2.4", leaseMs: 5000 }), { kind: "claimed" });

    // Write-if-owner: all or nothing.
    const records = [
      { key: "batch:w1-1", value: JSON.stringify({ state: "intent", fingerprints: ["a", "b"] }) },
      { key: "line:a", value: "w1-1" },
      { key: "line:b", value: "w1-1" },
    ];
    const refused = await store.execute({
      kind: "writeIfOwner",
      claims: [{ key: "req:a", token: "w1.1" }, { key: "req:b", token: "w1.5" }, { key: "req:gone", token: "w1.6" }],
      records,
      ttlMs: 60_000,
    });
    assert.deepEqual(refused, { kind: "notOwner", lost: ["req:b", "req:gone"] });
    assert.equal(await raw.exists("t1:batch:w1-1", "t1:line:a", "t1:line:b"), 0, "nothing written");
    const written = await store.execute({ kind: "writeIfOwner", claims: [{ key: "req:a", token: "w1.1" }], records, ttlMs: 60_000 });
    assert.deepEqual(written, { kind: "written" });
    assert.deepEqual(await raw.mget("t1:batch:w1-1", "t1:line:a", "t1:line:b"), records.map((r) => r.value));
    const recordTtl = await raw.pttl("t1:line:b");
    assert.ok(recordTtl > 50_000 && recordTtl <= 60_000, `records expire after ttlMs, got ${recordTtl}`);
    // No claims: written unconditionally.
    assert.deepEqual(await store.execute({ kind: "writeIfOwner", claims: [], records: [{ key: "batch:x", value: "{}" }], ttlMs: 1000 }), { kind: "written" });

    // Read: one value per key, null for an absent one.
    assert.deepEqual(await store.execute({ kind: "read", keys: ["line:a", "answer:a", "batch:w1-1"] }), {
      kind: "values",
      values: ["w1-1", null, records[0].value],
    });

    // Release: compare-and-delete.
    assert.deepEqual(await store.execute({ kind: "release", key: "req:a", token: "w1.999" }), { kind: "done" });
    assert.equal(await raw.get("t1:req:a"), "w1.1", "a release with another token deletes nothing");
    assert.deepEqual(await store.execute({ kind: "release", key: "req:a", token: "w1.1" }), { kind: "done" });
    assert.equal(await raw.exists("t1:req:a"), 0);

    // Put answer: the host's body, with its TTL.
    const body = answerFor("a");
    assert.deepEqual(await store.execute({ kind: "putAnswer", key: "answer:a", fingerprint: "a", ttlMs: 30_000 }, (fp) => (fp === "a" ? body : undefined)), { kind: "done" });
    assert.equal(await raw.get("t1:answer:a"), body);
    await assert.rejects(store.execute({ kind: "putAnswer", key: "answer:z", fingerprint: "z", ttlMs: 30_000 }, () => undefined), { code: "ERR_BATCHLING_FLEET" });

    // Every key under the prefix.
    for (const key of await allKeys(raw, "")) if (!key.startsWith("batchling:")) assert.ok(key.startsWith("t1:"), key);
  });

  test("four members, overlapping requests: every request in exactly one batch line, every caller the same answer", async () => {
    const provider = new Provider(120);
    const workers = [];
    for (let i = 0; i < 4; i++) workers.push(new Worker(`w${i}`, await open(), provider, TIMING));
    const fps = Array.from({ length: 40 }, (_, i) => fingerprint(`overlap request ${i}`));
    const asks = [];
    workers.forEach((worker, w) => {
      fps.forEach((fp, i) => {
        // Each request at 3 or 4 of the 4 workers at about the same time (they race for its
        // claim), the requests staggered over 200 ms.
        if ((i + w) % 4 === 3 && i % 2 === 0) return;
        asks.push(sleep((i % 10) * 20 + w).then(() => worker.ask(fp).then((answer) => ({ fp, answer }))));
      });
    });
    const answers = await Promise.all(asks);
    for (const { fp, answer } of answers) assert.equal(answer, answerFor(fp));
    assert.ok(answers.length > fps.length * 2);
    assertEveryLineOnce(provider, fps);
    for (const worker of workers) assert.deepEqual(worker.errors, [], worker.name);
    // The answers are in the store for any later caller, the claims are released.
    const stored = await raw.mget(...fps.map((fp) => `batchling:answer:${fp}`));
    stored.forEach((value, i) => assert.equal(value, answerFor(fps[i])));
    await sleep(50);
    assert.equal((await allKeys(raw, "batchling:req:")).length, 0, "every claim released");
    await assertNoSecrets(raw);
    for (const worker of workers) worker.kill();
  });

  test("a member killed mid-run: another takes over after its lease lapses, every answer delivered, no line twice", async () => {
    const provider = new Provider(250);
    const prefix = "kill:";
    const workers = [];
    for (let i = 0; i < 3; i++) workers.push(new Worker(`k${i}`, await open({ prefix }), provider, TIMING));
    const [victim, ...survivors] = workers;
    const fps = Array.from({ length: 30 }, (_, i) => fingerprint(`kill request ${i}`));
    const answered = [];
    const asks = [];
    // The victim gets the first 20, over 200 ms (several batches); the survivors the last 15.
    const victimAsked = fps.slice(0, 20).map((fp, i) => sleep(i * 10).then(() => void victim.ask(fp)));
    fps.slice(15).forEach((fp, i) => {
      const worker = survivors[i % 2];
      asks.push(sleep(i * 10).then(() => worker.ask(fp).then((answer) => answered.push({ fp, answer }))));
    });
    // kill -9 once a batch of the victim's is at the provider and more of its work is in flight.
    while (![...provider.batches.values()].some((b) => b.tag.startsWith("k0-"))) await sleep(5);
    await sleep(30);
    victim.kill();
    const killedAt = Date.now();
    await Promise.all(victimAsked); // callers that came after the kill are orphans too
    const orphans = [...victim.requests.values()];
    assert.ok(orphans.length > 0, "the victim had callers waiting");
    // Its callers retry at the survivors.
    const retried = await Promise.all(
      orphans.map(({ fp }, i) => survivors[i % 2].ask(fp).then((answer) => ({ fp, answer, at: Date.now() }))),
    );
    await Promise.all(asks);
    for (const { fp, answer } of [...retried, ...answered]) assert.equal(answer, answerFor(fp));
    assertEveryLineOnce(provider, fps);
    for (const worker of survivors) assert.deepEqual(worker.errors, [], worker.name);
    // Some retried request (held by the victim's claim) was only answered after its lease lapsed.
    assert.ok(retried.some((r) => r.at - killedAt >= TIMING.leaseMs / 2), "a takeover waited for the lease");
    const resumed = [...provider.batches.values()].filter((b) => b.tag.startsWith("k0-"));
    assert.ok(resumed.length > 0);
    await assertNoSecrets(raw);
    for (const worker of survivors) worker.kill();
  });

  test("Redis restarted mid-run (SIGTERM, then again on the same port and directory): claims and records survive, every answer once", async () => {
    const provider = new Provider(150);
    const prefix = "restart:";
    const workers = [];
    for (let i = 0; i < 3; i++) workers.push(new Worker(`r${i}`, await open({ prefix }), provider, TIMING));
    const sentinel = await open({ prefix });
    const fps = Array.from({ length: 36 }, (_, i) => fingerprint(`restart request ${i}`));
    const asks = [];
    let answeredCount = 0;
    workers.forEach((worker, w) => {
      fps.forEach((fp, i) => {
        if (i % 3 === w) return; // each request at 2 of the 3
        asks.push(sleep((i % 18) * 25).then(() => worker.ask(fp).then((answer) => (answeredCount++, { fp, answer }))));
      });
    });
    // Mid-run: a claim and a record of our own, then what the fleet wrote so far.
    await sleep(150);
    assert.deepEqual(await sentinel.execute({ kind: "claim", key: "req:sentinel", token: "s.1", leaseMs: 120_000 }), { kind: "claimed" });
    assert.deepEqual(
      await sentinel.execute({ kind: "writeIfOwner", claims: [{ key: "req:sentinel", token: "s.1" }], records: [{ key: "line:sentinel", value: "s-1" }], ttlMs: 120_000 }),
      { kind: "written" },
    );
    const before = await allKeys(raw, `${prefix}batch:`);
    const answeredBefore = answeredCount;
    await redis.stop();
    await sleep(300);
    redis = await startRedis(port, dir);
    const answers = await Promise.all(asks);
    assert.ok(answeredBefore < answers.length, `the restart came mid-run (${answeredBefore} of ${answers.length} answered before)`);
    for (const { fp, answer } of answers) assert.equal(answer, answerFor(fp));
    assertEveryLineOnce(provider, fps);
    for (const worker of workers) assert.deepEqual(worker.errors, [], worker.name);
    assert.equal(await raw.get(`${prefix}req:sentinel`), "s.1", "the claim survived the restart");
    assert.ok((await raw.pttl(`${prefix}req:sentinel`)) > 100_000, "with its lease");
    assert.equal(await raw.get(`${prefix}line:sentinel`), "s-1");
    assert.ok(before.length > 0, "batches were recorded before the restart");
    const afterKeys = new Set(await allKeys(raw, `${prefix}batch:`));
    for (const key of before) assert.ok(afterKeys.has(key), `${key} survived the restart`);
    await assertNoSecrets(raw);
    for (const worker of workers) worker.kill();
  });

  test("set-up: no appendonly gives a typed warning; a bad prefix or owner is refused", async () => {
    const plainDir = await mkdtemp(join(tmpdir(), "batchling-redis-plain-"));
    const plainPort = await freePort();
    const plain = await startRedis(plainPort, plainDir, { appendonly: "no" });
    try {
      const warnings = [];
      const store = await openFleetRedis({ url: `redis://127.0.0.1:${plainPort}`, onWarning: (w) => warnings.push(w) });
      await store.close();
      assert.equal(warnings.length, 1);
      assert.equal(warnings[0].code, "BATCHLING_REDIS_NOT_PERSISTENT");
      assert.match(warnings[0].message, /appendonly yes/);
    } finally {
      await plain.stop();
      await rm(plainDir, { recursive: true, force: true });
    }
    await assert.rejects(openFleetRedis({ url: `redis://127.0.0.1:${port}`, prefix: "has space:" }), { code: "ERR_BATCHLING_INVALID_OPTION", option: "redis.prefix" });
    await assert.rejects(openFleetRedis({ url: "http://127.0.0.1:1" }), { code: "ERR_BATCHLING_INVALID_OPTION", option: "redis" });
    assert.throws(() => new FleetMember({ owner: "no spaces allowed" }), { code: "ERR_BATCHLING_INVALID_OPTION", option: "fleet.owner" });
    assert.throws(() => new FleetMember({ owner: "w", leaseMs: 1 }), { code: "ERR_BATCHLING_INVALID_OPTION", option: "fleet.leaseMs" });
    const member = new FleetMember({ owner: "w" });
    assert.throws(() => member.handle(0, { kind: "arrive", request: 1, fingerprint: "has space" }), { code: "ERR_BATCHLING_FLEET" });
    assert.throws(() => member.handle(0, { kind: "storeOutcome", action: 42, outcome: { kind: "done" } }), { code: "ERR_BATCHLING_FLEET", message: /42/ });
  });

  test("Redis missing: a typed error, at connect and for an action once Redis is gone", async () => {
    const nobody = await freePort();
    await assert.rejects(openFleetRedis({ url: `redis://127.0.0.1:${nobody}`, connectTimeoutMs: 500 }), (error) => {
      assert.ok(error instanceof RedisUnavailableError);
      assert.equal(error.code, "ERR_BATCHLING_REDIS_UNAVAILABLE");
      assert.match(error.message, new RegExp(`127\\.0\\.0\\.1:${nobody}`));
      return true;
    });
    const goneDir = await mkdtemp(join(tmpdir(), "batchling-redis-gone-"));
    const gonePort = await freePort();
    const gone = await startRedis(gonePort, goneDir);
    const store = await openFleetRedis({ url: `redis://127.0.0.1:${gonePort}`, retryForMs: 400 });
    try {
      assert.deepEqual(await store.execute({ kind: "claim", key: "req:x", token: "w.1", leaseMs: 1000 }), { kind: "claimed" });
      await gone.stop();
      const started = Date.now();
      await assert.rejects(store.execute({ kind: "claim", key: "req:y", token: "w.2", leaseMs: 1000 }), { code: "ERR_BATCHLING_REDIS_UNAVAILABLE" });
      assert.ok(Date.now() - started >= 350, "it waited for Redis to come back first");
    } finally {
      await store.close();
      await gone.stop();
      await rm(goneDir, { recursive: true, force: true });
    }
  });

  test("ioredis not installed: a typed error saying how to install it", () => {
    // A child process in which "ioredis" cannot be resolved (a resolve hook refuses it).
    const hook = `data:text/javascript,${encodeURIComponent(
      'export async function resolve(s, c, next) { if (s === "ioredis") { const e = new Error("Cannot find package \'ioredis\'"); e.code = "ERR_MODULE_NOT_FOUND"; throw e; } return next(s, c); }',
    )}`;
    const script = `
      import { register } from "node:module";
      register(${JSON.stringify(hook)});
      const { openFleetRedis } = await import(${JSON.stringify(DIST)});
      try { await openFleetRedis({ url: "redis://127.0.0.1:1" }); console.log("no error"); }
      catch (e) { console.log(JSON.stringify({ code: e.code, message: e.message })); }`;
    const r = spawnSync(process.execPath, ["--input-type=module", "-e", script], { encoding: "utf8" });
    assert.equal(r.status, 0, r.stderr);
    const out = JSON.parse(r.stdout.trim().split("\n").pop());
    assert.equal(out.code, "ERR_BATCHLING_REDIS_CLIENT");
    assert.match(out.message, /npm install ioredis/);
  });
});

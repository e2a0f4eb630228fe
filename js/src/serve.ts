// `batchling serve`: an HTTP server that batches what clients in any language send. The host
// only moves bytes: each request's route and admission are decided by the core (core/src/serve.rs),
// and what reaches a provider goes through batchify()'s `ctx.fetch`, which batches it or passes
// it through (streaming, GETs, files) as the core decides.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { Socket } from "node:net";
import { Counter, Gauge, Registry } from "prom-client";
import { batchify, type BatchifyContext, type BatchifyOptions, type BatchlingEvent } from "./batchify.js";
import { coreAnswer } from "./core-errors.js";
import { loadEngineModule, type ServeRouterEngine } from "./engine.js";
import { BatchlingError } from "./errors.js";
import type { ProviderId, ServeDecision, ServeRoute } from "./generated/core.js";

export interface ServeOptions {
  /** 0: any free port. Default 8787. */
  port?: number;
  /** Default 127.0.0.1; any other address needs `token`. */
  listen?: string;
  /** Clients send it in the `x-batchling-token` header. */
  token?: string;
  /** The batching engine's options (`hosts` also replace the routes' upstreams). */
  batchify?: BatchifyOptions;
}

export interface ServeHandle {
  /** `http://127.0.0.1:8787` */
  url: string;
  port: number;
  routes: ServeRoute[];
  /** Stop accepting, drop open connections (their requests stay in their batches and their
   * answers go to the journal), release the engine's timers. */
  close(): Promise<void>;
}

/** Idle TCP connections are probed this often, so a client waiting hours for a batch keeps its
 * connection through NATs and load balancers that drop silent ones. */
const TCP_KEEPALIVE_MS = 30_000;
/** How long a kept-alive connection may sit idle between two requests. */
const IDLE_KEEPALIVE_MS = 120_000;
/** Answers relayed chunk by chunk as they arrive (server-sent events, JSON lines); any other
 * answer is relayed whole. */
const STREAMED = /^(text\/event-stream|application\/(x-)?ndjson|application\/jsonl)/i;
/** Batches whose provider the metrics remember, to count results that arrive after their end. */
const MAX_JOBS_REMEMBERED = 10_000;
/** Response headers not relayed: the body is relayed decoded and re-framed by this server. */
const UNRELAYED = new Set(["content-encoding", "content-length", "transfer-encoding", "connection", "keep-alive"]);

/** The server's Prometheus metrics, fed by the engine's events and the requests it serves. */
class ServeMetrics {
  readonly registry = new Registry();
  readonly requests = new Counter({
    name: "batchling_serve_requests_total",
    help: "Requests answered by the server, by route (provider, healthz, metrics, refused) and HTTP status",
    labelNames: ["route", "status"] as const,
    registers: [this.registry],
  });
  readonly inFlight = new Gauge({
    name: "batchling_serve_requests_in_flight",
    help: "Client requests waiting for their answer (queued, in a batch, or passed through)",
    registers: [this.registry],
  });
  readonly #queued = new Counter({
    name: "batchling_requests_queued_total",
    help: "Requests queued for a provider batch",
    labelNames: ["provider", "model"] as const,
    registers: [this.registry],
  });
  readonly #cacheHits = new Counter({
    name: "batchling_cache_hits_total",
    help: "Requests answered from the request cache, or resuming a batch it records",
    labelNames: ["provider"] as const,
    registers: [this.registry],
  });
  readonly #submitted = new Counter({
    name: "batchling_batches_submitted_total",
    help: "Provider batches created",
    labelNames: ["provider"] as const,
    registers: [this.registry],
  });
  readonly #batchesInFlight = new Gauge({
    name: "batchling_batches_in_flight",
    help: "Provider batches created and not yet ended",
    labelNames: ["provider"] as const,
    registers: [this.registry],
  });
  readonly #answered = new Counter({
    name: "batchling_results_total",
    help: "Answers received from provider batches",
    labelNames: ["provider"] as const,
    registers: [this.registry],
  });
  readonly #retries = new Counter({
    name: "batchling_retries_total",
    help: "Provider calls retried (429, 5xx, transport errors)",
    registers: [this.registry],
  });
  /** The provider of each engine job (batch events name the job, not the provider). */
  readonly #jobs = new Map<number, ProviderId>();

  constructor(report: () => ReturnType<BatchifyContext["report"]>) {
    const estimated = new Gauge({
      name: "batchling_estimated_cost_usd",
      help: "Estimated cost of the requests queued so far, as batches and as sync calls (upper bound)",
      labelNames: ["provider", "model", "pricing"] as const,
      registers: [this.registry],
      collect() {
        estimated.reset();
        for (const q of report().queues) {
          if (q.estimatedBatchUsd != null) estimated.set({ provider: q.provider, model: q.model, pricing: "batch" }, q.estimatedBatchUsd);
          if (q.estimatedSyncUsd != null) estimated.set({ provider: q.provider, model: q.model, pricing: "sync" }, q.estimatedSyncUsd);
        }
      },
    });
    const actual = new Gauge({
      name: "batchling_actual_cost_usd",
      help: "Cost of the answers received so far, from the usage each reported, at batch prices",
      labelNames: ["provider", "model"] as const,
      registers: [this.registry],
      collect() {
        actual.reset();
        for (const q of report().queues) {
          if (q.actualBatchUsd != null) actual.set({ provider: q.provider, model: q.model }, q.actualBatchUsd);
        }
      },
    });
  }

  readonly onEvent = (event: BatchlingEvent): void => {
    switch (event.kind) {
      case "requestQueued":
        this.#queued.inc({ provider: event.provider, model: event.model });
        break;
      case "cacheHit":
        this.#cacheHits.inc({ provider: event.provider });
        break;
      case "batchSubmitting":
        this.#jobs.set(event.job, event.provider);
        break;
      case "batchSubmitted":
        this.#submitted.inc({ provider: event.provider });
        this.#batchesInFlight.inc({ provider: event.provider });
        break;
      case "batchFinished": {
        const provider = this.#jobs.get(event.job);
        if (provider) this.#batchesInFlight.dec({ provider });
        // Kept for the batch's results, which follow its end; the oldest go past a bound.
        if (this.#jobs.size > MAX_JOBS_REMEMBERED) this.#jobs.delete(this.#jobs.keys().next().value!);
        break;
      }
      case "resultsReceived": {
        const provider = this.#jobs.get(event.job);
        if (provider) this.#answered.inc({ provider }, event.results);
        break;
      }
      case "retry":
        this.#retries.inc();
        break;
    }
  };
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
  res.end(text);
}

/** The error body clients' SDKs read (`error.message`, `error.type`, `error.code`). */
function errorBody(code: string, message: string): unknown {
  return { type: "error", error: { type: "batchling_error", code, message } };
}

function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => resolve(Buffer.concat(chunks)));
    req.on("error", reject);
  });
}

/** Start the server. Refuses (`ERR_BATCHLING_SERVE_CONFIG`) before binding anything when the
 * configuration would make it an open relay or a route unusable. */
export async function serve(options: ServeOptions = {}): Promise<ServeHandle> {
  const engine = loadEngineModule();
  const listen = options.listen ?? "127.0.0.1";
  const requestedPort = options.port ?? 8787;
  const hosts = options.batchify?.hosts ?? [];
  const config = (port: number): string => JSON.stringify({ listen, port, token: options.token, hosts });
  // Checked before binding: a refused configuration never listens, even for a moment.
  const checked = coreAnswer<{ routes: ServeRoute[]; strippedHeaders: string[]; tokenHeader: string }>(
    engine.serveCheck(config(requestedPort)),
  );
  const stripped = new Set(checked.strippedHeaders);

  let metrics: ServeMetrics | undefined;
  const ctx = batchify({
    ...options.batchify,
    onEvent: (event) => {
      metrics?.onEvent(event);
      options.batchify?.onEvent?.(event);
    },
  });
  metrics = new ServeMetrics(() => ctx.report());
  const liveMetrics = metrics;
  let router: ServeRouterEngine | undefined;
  const sockets = new Set<Socket>();

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const token = req.headers[checked.tokenHeader];
    const decision = JSON.parse(
      router!.decide(req.method ?? "GET", req.url ?? "/", req.headers.host ?? "", typeof token === "string" ? token : ""),
    ) as ServeDecision;
    switch (decision.kind) {
      case "health":
        liveMetrics.requests.inc({ route: "healthz", status: 200 });
        return sendJson(res, 200, { ok: true });
      case "metrics": {
        const text = await liveMetrics.registry.metrics();
        res.writeHead(200, { "content-type": liveMetrics.registry.contentType });
        res.end(text);
        liveMetrics.requests.inc({ route: "metrics", status: 200 });
        return;
      }
      case "refuse":
        liveMetrics.requests.inc({ route: "refused", status: decision.status });
        return sendJson(res, decision.status, errorBody(decision.code, `batchling serve: ${decision.message}`));
      case "forward":
        return forward(req, res, decision.provider, decision.url);
    }
  };

  const forward = async (req: IncomingMessage, res: ServerResponse, provider: ProviderId, url: string): Promise<void> => {
    liveMetrics.inFlight.inc();
    let status = 502;
    try {
      const method = req.method ?? "GET";
      const body = method === "GET" || method === "HEAD" ? undefined : await readBody(req);
      const headers = new Headers();
      const raw = req.rawHeaders;
      for (let i = 0; i + 1 < raw.length; i += 2) {
        if (!stripped.has(raw[i]!.toLowerCase())) headers.append(raw[i]!, raw[i + 1]!);
      }
      let response: Response;
      try {
        // No signal: a client that goes away leaves its request in its batch, and the answer in
        // the journal for its retry.
        response = await ctx.fetch(url, { method, headers, body: body as unknown as BodyInit | undefined, redirect: "manual" });
      } catch (error) {
        const code = error instanceof BatchlingError ? error.code : "ERR_BATCHLING_UPSTREAM";
        const cause = (error as { cause?: unknown }).cause;
        const message = `${(error as Error).message}${cause ? ` (${String(cause)})` : ""}`;
        if (!res.destroyed) sendJson(res, 502, errorBody(code, `batchling serve: ${message}`));
        return;
      }
      status = response.status;
      const out: Record<string, string | string[]> = {};
      response.headers.forEach((value, name) => {
        if (!UNRELAYED.has(name)) out[name] = value;
      });
      const cookies = response.headers.getSetCookie();
      if (cookies.length) out["set-cookie"] = cookies;
      if (res.destroyed) {
        await response.body?.cancel();
        return;
      }
      if (!response.body || !STREAMED.test(response.headers.get("content-type") ?? "")) {
        // A whole answer (every batched one): one write, with its length.
        const body = Buffer.from(await response.arrayBuffer());
        out["content-length"] = String(body.length);
        if (res.destroyed) return;
        res.writeHead(response.status, out);
        res.end(body);
        return;
      }
      res.writeHead(response.status, out);
      // Relayed chunk by chunk, so a streamed answer (server-sent events) reaches the client as
      // it comes; a client that goes away cancels the upstream stream.
      res.flushHeaders();
      const reader = response.body.getReader();
      const onClose = (): void => void reader.cancel().catch(() => {});
      res.once("close", onClose);
      try {
        for (;;) {
          const { done, value } = await reader.read();
          if (done) break;
          if (!res.write(value)) await new Promise<void>((resolve) => res.once("drain", resolve));
        }
        res.end();
      } catch {
        res.destroy();
      } finally {
        res.removeListener("close", onClose);
      }
    } finally {
      liveMetrics.inFlight.dec();
      liveMetrics.requests.inc({ route: provider, status });
    }
  };

  const server: Server = createServer({ requestTimeout: 0, keepAliveTimeout: IDLE_KEEPALIVE_MS }, (req, res) => {
    handle(req, res).catch((error: unknown) => {
      if (!res.headersSent && !res.destroyed) {
        sendJson(res, 500, errorBody("ERR_BATCHLING_INTERNAL", `batchling serve: ${(error as Error).message}`));
      } else {
        res.destroy();
      }
    });
  });
  // Batches take minutes to hours: no socket timeout; TCP keep-alive probes instead.
  server.timeout = 0;
  server.headersTimeout = 60_000;
  server.on("connection", (socket: Socket) => {
    socket.setKeepAlive(true, TCP_KEEPALIVE_MS);
    // Each write goes out at once: a streamed event is not held back to fill a packet.
    socket.setNoDelay(true);
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(requestedPort, listen, () => {
      server.removeListener("error", reject);
      resolve();
    });
  });
  const address = server.address();
  const port = typeof address === "object" && address ? address.port : requestedPort;
  router = new engine.NativeServeRouter(config(port));
  const hostPart = listen.includes(":") ? `[${listen}]` : listen;
  return {
    url: `http://${hostPart}:${port}`,
    port,
    routes: checked.routes,
    async close() {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const socket of sockets) socket.destroy();
      });
      // Nothing is flushed: a request still queued was never sent, and its client's retry
      // queues it again; batches already created are in the journal.
    },
  };
}

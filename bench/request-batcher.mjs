// npm run bench: RequestBatcher against DataLoader, @yornaath/batshit and a minimal pure-JS
// batcher, on one workload in one run: 200,000 adds, batch size 100, async no-op handler.
// Prints the median items/s of each and the ratios. Reproduce: `npm run bench`.
import { Bench } from "tinybench";
import DataLoader from "dataloader";
import { create, indexedResolver, windowedFiniteBatchScheduler } from "@yornaath/batshit";
import { RequestBatcher, backend } from "../dist/index.js";

const ITEMS = Number(process.env.BENCH_ITEMS ?? 200_000);
const BATCH = 100;
const keys = Array.from({ length: ITEMS }, (_, i) => i);

/** The least a per-tick batcher can do: collect, cut at BATCH, run the handler, resolve. */
class MinimalBatcher {
  constructor(handler) {
    this.handler = handler;
    this.items = [];
    this.resolvers = [];
    this.scheduled = false;
  }
  add(item) {
    return new Promise((resolve, reject) => {
      this.items.push(item);
      this.resolvers.push({ resolve, reject });
      if (this.items.length >= BATCH) this.dispatch();
      else if (!this.scheduled) {
        this.scheduled = true;
        queueMicrotask(() => this.dispatch());
      }
    });
  }
  dispatch() {
    this.scheduled = false;
    if (this.items.length === 0) return;
    const items = this.items;
    const resolvers = this.resolvers;
    this.items = [];
    this.resolvers = [];
    this.handler(items).then(
      (results) => results.forEach((r, i) => resolvers[i].resolve(r)),
      (error) => resolvers.forEach((r) => r.reject(error)),
    );
  }
}

const double = async (items) => items.map((x) => x * 2);

async function runBatchling() {
  const batcher = new RequestBatcher({ maxBatchSize: BATCH, maxDelayMs: 0, batchHandler: double });
  await Promise.all(keys.map((k) => batcher.add(k)));
  await batcher.close();
}

async function runDataLoader() {
  const loader = new DataLoader(double, { maxBatchSize: BATCH, cache: false });
  await Promise.all(keys.map((k) => loader.load(k)));
}

async function runBatshit() {
  const batcher = create({
    fetcher: async (ids) => {
      const out = {};
      for (const id of ids) out[id] = id * 2;
      return out;
    },
    resolver: indexedResolver(),
    scheduler: windowedFiniteBatchScheduler({ windowMs: 0, maxBatchSize: BATCH }),
  });
  await Promise.all(keys.map((k) => batcher.fetch(k)));
}

async function runMinimal() {
  const batcher = new MinimalBatcher(double);
  await Promise.all(keys.map((k) => batcher.add(k)));
}

const ITERATIONS = Number(process.env.BENCH_ITERATIONS ?? 15);
const bench = new Bench({ iterations: ITERATIONS, warmupIterations: 3, time: 0, warmupTime: 0 });
bench
  .add("batchling RequestBatcher", runBatchling)
  .add("dataloader", runDataLoader)
  .add("@yornaath/batshit", runBatshit)
  .add("minimal pure-JS batcher", runMinimal);
await bench.run();

const rows = bench.tasks.map((task) => {
  const medianMs = task.result.latency?.p50 ?? task.result.p50;
  return { name: task.name, medianMs, itemsPerSec: ITEMS / (medianMs / 1000) };
});
const by = Object.fromEntries(rows.map((r) => [r.name, r]));
const ours = by["batchling RequestBatcher"].itemsPerSec;
console.log(`workload: ${ITEMS} adds, batch size ${BATCH}, async no-op handler; median of ${ITERATIONS} runs (node ${process.version}, ${backend().name} engine)`);
console.table(
  rows.map((r) => ({
    batcher: r.name,
    "median ms": r.medianMs.toFixed(1),
    "items/s": Math.round(r.itemsPerSec).toLocaleString("en-US"),
    "batchling ÷ this": (ours / r.itemsPerSec).toFixed(2),
  })),
);
console.log(`batchling / dataloader: ${(ours / by["dataloader"].itemsPerSec).toFixed(2)}x (target >= 1.25x)`);
console.log(`batchling / minimal:    ${(ours / by["minimal pure-JS batcher"].itemsPerSec).toFixed(2)}x (target >= 0.80x)`);

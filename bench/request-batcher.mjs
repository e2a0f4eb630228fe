// npm run bench: RequestBatcher against DataLoader, @yornaath/batshit and a minimal pure-JS
// batcher, on one workload: 200,000 adds, batch size 100, async no-op handler.
// Reproduce: `npm run bench` (native engine) and `BATCHLING_BACKEND=wasm npm run bench`.
//
// How it measures, and why: the contenders take turns within each round (the order rotates
// from round to round) and a full GC runs before every timed run (`node --expose-gc`, which the
// npm script passes). Running all iterations of one contender and then the next (what a plain
// tinybench suite does) let each contender inherit the previous one's heap and the machine's
// load of that moment: the same build measured 0.77–1.06× DataLoader from one run to the next.
// Interleaved, with a clean heap per run, the ratio of the same build stays within a few
// percent. Ratios are the median of the per-round ratios (each round's contenders ran side by
// side), times are medians over the rounds.
import DataLoader from "dataloader";
import { create, indexedResolver, windowedFiniteBatchScheduler } from "@yornaath/batshit";
import { RequestBatcher, backend } from "../dist/index.js";

if (typeof globalThis.gc !== "function") {
  throw new Error("run with node --expose-gc (npm run bench does): every timed run starts from a collected heap");
}

const ITEMS = Number(process.env.BENCH_ITEMS ?? 200_000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 30);
const WARMUP_ROUNDS = 5;
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

const contenders = {
  "batchling RequestBatcher": async () => {
    const batcher = new RequestBatcher({ maxBatchSize: BATCH, maxDelayMs: 0, batchHandler: double });
    await Promise.all(keys.map((k) => batcher.add(k)));
    await batcher.close();
  },
  dataloader: async () => {
    const loader = new DataLoader(double, { maxBatchSize: BATCH, cache: false });
    await Promise.all(keys.map((k) => loader.load(k)));
  },
  "@yornaath/batshit": async () => {
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
  },
  "minimal pure-JS batcher": async () => {
    const batcher = new MinimalBatcher(double);
    await Promise.all(keys.map((k) => batcher.add(k)));
  },
};

const names = Object.keys(contenders);
const ms = Object.fromEntries(names.map((name) => [name, []]));
for (let round = 0; round < WARMUP_ROUNDS + ROUNDS; round++) {
  for (let k = 0; k < names.length; k++) {
    const name = names[(k + round) % names.length];
    globalThis.gc();
    const start = performance.now();
    await contenders[name]();
    const elapsed = performance.now() - start;
    if (round >= WARMUP_ROUNDS) ms[name].push(elapsed);
  }
}

const median = (xs) => {
  const sorted = [...xs].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
};
const quartiles = (xs) => {
  const sorted = [...xs].sort((a, b) => a - b);
  return [sorted[Math.floor(sorted.length / 4)], sorted[Math.floor((3 * sorted.length) / 4)]];
};
const ours = "batchling RequestBatcher";
/** batchling's items/s ÷ `name`'s, per round (same round: side by side), then the median. */
const ratios = (name) => ms[name].map((theirs, round) => theirs / ms[ours][round]);

console.log(
  `workload: ${ITEMS} adds, batch size ${BATCH}, async no-op handler; ${ROUNDS} rounds after ${WARMUP_ROUNDS} warm-up, ` +
    `contenders interleaved, full GC before each run (node ${process.version}, ${backend().name} engine)`,
);
console.table(
  names.map((name) => {
    const [q1, q3] = quartiles(ratios(name));
    return {
      batcher: name,
      "median ms": median(ms[name]).toFixed(1),
      "items/s": Math.round(ITEMS / (median(ms[name]) / 1000)).toLocaleString("en-US"),
      "batchling ÷ this (median of rounds)": median(ratios(name)).toFixed(2),
      "quartiles": `${q1.toFixed(2)}–${q3.toFixed(2)}`,
    };
  }),
);
console.log(`batchling / dataloader: ${median(ratios("dataloader")).toFixed(2)}x (targets: >= 1.25x native, >= 1.0x wasm)`);
console.log(`batchling / minimal:    ${median(ratios("minimal pure-JS batcher")).toFixed(2)}x (target >= 0.80x)`);

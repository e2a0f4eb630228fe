// One contender alone in this process, 25 rounds of the `npm run bench` workload (200,000 adds,
// batch size 100, async no-op handler); prints the median CPU and wall ms of the last 20. For
// GC counts, run it under --trace-gc-nvp and sum the scavenges' `promoted=` and `pause=`:
//   node bench/request-batcher-solo.mjs batchling      (or: dataloader)
//   node --trace-gc-nvp bench/request-batcher-solo.mjs batchling | grep gc=s
import DataLoader from "dataloader";
import { RequestBatcher } from "../dist/index.js";

const which = process.argv[2] ?? "batchling";
const keys = Array.from({ length: 200_000 }, (_, i) => i);
const double = async (items) => items.map((x) => x * 2);
const run = {
  batchling: async () => {
    const batcher = new RequestBatcher({ maxBatchSize: 100, maxDelayMs: 0, batchHandler: double });
    await Promise.all(keys.map((k) => batcher.add(k)));
    await batcher.close();
  },
  dataloader: async () => {
    const loader = new DataLoader(double, { maxBatchSize: 100, cache: false });
    await Promise.all(keys.map((k) => loader.load(k)));
  },
}[which];
if (!run) throw new Error(`usage: request-batcher-solo.mjs batchling|dataloader`);
const times = [];
for (let round = 0; round < 25; round++) {
  const cpu = process.cpuUsage();
  const start = performance.now();
  await run();
  times.push([process.cpuUsage(cpu).user / 1000, performance.now() - start]);
}
const median = (i) => times.slice(5).map((t) => t[i]).sort((a, b) => a - b)[10].toFixed(1);
console.log(`${which}: median of 20 rounds: CPU ${median(0)} ms, wall ${median(1)} ms per 200,000 items`);

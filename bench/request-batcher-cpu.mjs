// CPU time of batchling's RequestBatcher against DataLoader, alternating the two in one process
// (200,000 adds, batch size 100, async no-op handler; median of 20 runs after 4 warm-ups).
// Run it with and without a larger young generation to see how much is garbage collection:
//   node bench/request-batcher-cpu.mjs
//   node --max-semi-space-size=256 bench/request-batcher-cpu.mjs
import DataLoader from "dataloader";
import { RequestBatcher } from "../dist/index.js";

const keys = Array.from({ length: 200_000 }, (_, i) => i);
const double = async (items) => items.map((x) => x * 2);
const ours = [];
const theirs = [];
for (let round = 0; round < 24; round++) {
  let cpu = process.cpuUsage();
  const batcher = new RequestBatcher({ maxBatchSize: 100, maxDelayMs: 0, batchHandler: double });
  await Promise.all(keys.map((k) => batcher.add(k)));
  await batcher.close();
  ours.push(process.cpuUsage(cpu).user / 1000);
  cpu = process.cpuUsage();
  const loader = new DataLoader(double, { maxBatchSize: 100, cache: false });
  await Promise.all(keys.map((k) => loader.load(k)));
  theirs.push(process.cpuUsage(cpu).user / 1000);
}
const median = (xs) => xs.slice(4).sort((a, b) => a - b)[Math.floor((xs.length - 4) / 2)];
console.log(
  `CPU ms per 200,000 items: batchling ${median(ours).toFixed(1)}, dataloader ${median(theirs).toFixed(1)}; ` +
    `batchling items/s ÷ dataloader: ${(median(theirs) / median(ours)).toFixed(2)}`,
);
